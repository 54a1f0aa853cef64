//! `.dockerignore`: which context paths a build never sees, with Docker's exact rules.
//!
//! Reading follows `ignorefile.ReadAll` (moby/patternmatcher): a UTF-8 BOM on the first line is
//! dropped; a line *starting* with `#` is a comment (checked before trimming, so ` #x` is a
//! pattern); lines are trimmed and blank ones skipped; a leading `!` re-includes (the rest is
//! trimmed again); the pattern is cleaned like Go's `filepath.Clean` and one leading `/` is
//! dropped. Matching follows `PatternMatcher.MatchesOrParentMatches`: the *last* pattern that
//! matches the path or any of its parent directories decides; `**` spans any number of
//! directories; `*`, `?`, `[...]` and `\` escapes as Go's `filepath.Match` within a segment
//! (patterns are turned into regular expressions exactly the way patternmatcher does it,
//! including its fast exact/prefix/suffix cases).
//!
//! Per-Dockerfile ignore files (BuildKit): `<Dockerfile>.dockerignore` next to the Dockerfile
//! replaces `<context>/.dockerignore`.

// Wired into the solver by lib.rs; until then only the tests and the bench use it.

use std::io;
use std::path::{Path, PathBuf};

use hostutil::gopath;
use regex::Regex;

/// The parsed rules of one ignore file.
#[derive(Debug, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
    /// Whether any pattern starts with `!`.
    exclusions: bool,
}

#[derive(Debug)]
struct Pattern {
    /// The cleaned pattern, without the `!`.
    text: String,
    exclusion: bool,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// No wildcard: the path must equal the pattern.
    Exact,
    /// `foo**`: the path starts with `foo`.
    Prefix(String),
    /// `**foo` (with nothing special after the `**`): the path ends with `foo`, or is `foo` minus
    /// its leading `/`.
    Suffix(String),
    Regex(Regex),
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(p) => path.starts_with(p.as_str()),
            Kind::Suffix(s) => path.ends_with(s.as_str()) || s.strip_prefix('/').is_some_and(|t| path == t),
            Kind::Regex(re) => re.is_match(path),
        }
    }

    /// Whether this pattern might match some path strictly below `dir` (conservative: true
    /// when unsure).
    fn may_match_below(&self, dir: &str) -> bool {
        match &self.kind {
            Kind::Suffix(_) => true,
            Kind::Prefix(p) => {
                let d = format!("{dir}/");
                p.starts_with(&d) || d.starts_with(p.as_str())
            }
            Kind::Exact | Kind::Regex(_) => {
                let segs: Vec<&str> = self.text.split('/').collect();
                let comps: Vec<&str> = dir.split('/').collect();
                for (i, comp) in comps.iter().enumerate() {
                    let Some(seg) = segs.get(i) else { return false };
                    if seg.contains("**") || seg.contains('[') || seg.contains('\\') {
                        return true;
                    }
                    if !go_match(seg, comp).unwrap_or(true) {
                        return false;
                    }
                }
                segs.len() > comps.len()
            }
        }
    }
}

/// A pattern of an ignore file that Docker would refuse, by line.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("line {line}: illegal exclusion pattern: \"!\"")]
    LoneExclusion { line: usize },
    #[error("line {line}: syntax error in pattern {pattern:?}")]
    Syntax { line: usize, pattern: String },
    #[error("line {line}: bad pattern {pattern:?}")]
    Regex {
        line: usize,
        pattern: String,
        #[source]
        source: regex::Error,
    },
}

/// Why the ignore file of a build could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}", path.display())]
    Pattern {
        path: PathBuf,
        #[source]
        source: PatternError,
    },
}

impl DockerIgnore {
    /// Parses the text of an ignore file. A malformed pattern is an error naming its line.
    pub fn parse(text: &str) -> Result<DockerIgnore, PatternError> {
        let mut out = DockerIgnore::default();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // bufio.ScanLines: split on \n, drop one trailing \r.
        for (n, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('#') {
                continue;
            }
            let mut p = go_trim(line);
            if p.is_empty() {
                continue;
            }
            // ignorefile.ReadAll
            let invert = p.starts_with('!');
            if invert {
                p = go_trim(&p[1..]);
            }
            let mut read = String::new();
            if !p.is_empty() {
                let c = gopath::clean(p);
                read = match c.strip_prefix('/') {
                    Some(rest) if !rest.is_empty() => rest.to_string(),
                    _ => c,
                };
            }
            if invert {
                read.insert(0, '!');
            }
            // patternmatcher.New
            let mut p = gopath::clean(go_trim(&read));
            let exclusion = p.starts_with('!');
            if exclusion {
                if p.len() == 1 {
                    return Err(PatternError::LoneExclusion { line: n + 1 });
                }
                p.remove(0);
            }
            if go_match(&p, ".").is_err() {
                return Err(PatternError::Syntax { line: n + 1, pattern: p });
            }
            let kind = compile(&p).map_err(|source| PatternError::Regex {
                line: n + 1,
                pattern: p.clone(),
                source,
            })?;
            out.exclusions |= exclusion;
            out.patterns.push(Pattern { text: p, exclusion, kind });
        }
        Ok(out)
    }

    /// As `COPY --exclude` rules: whether they leave out an entry whose path below a directory
    /// source is `below` (empty for a file source, matched by its `name`). BuildKit matches
    /// each source's own paths: `--exclude=setup/** dir/` leaves out `dir/setup/...`, and
    /// `--exclude=*.txt hom*` the `.txt` files `hom*` matches.
    pub fn excludes_copied(&self, below: &Path, name: &str) -> bool {
        if below.as_os_str().is_empty() { self.is_excluded(Path::new(name)) } else { self.is_excluded(below) }
    }

    /// Whether `rel` (relative to the context root) is excluded: the last pattern matching it or
    /// one of its parent directories decides. Pure pattern logic; the root itself never is.
    pub fn is_excluded(&self, rel: &Path) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let file = gopath::clean(&rel.to_string_lossy());
        if file == "." {
            return false;
        }
        let parents: Vec<&str> = match file.rfind('/') {
            Some(i) => file[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            // An inclusion cannot change an excluded path, nor an exclusion an included one.
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.matches(&file);
            if !hit && !parents.is_empty() {
                let mut prefix = String::with_capacity(file.len());
                for (i, d) in parents.iter().enumerate() {
                    if i > 0 {
                        prefix.push('/');
                    }
                    prefix.push_str(d);
                    if p.matches(&prefix) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// True when `rel_dir` is excluded and no `!` pattern could re-include anything below it, so
    /// a walker may skip the whole directory.
    pub fn can_skip_dir(&self, rel_dir: &Path) -> bool {
        if !self.is_excluded(rel_dir) {
            return false;
        }
        if !self.exclusions {
            return true;
        }
        let dir = gopath::clean(&rel_dir.to_string_lossy());
        !self.patterns.iter().any(|p| p.exclusion && p.may_match_below(&dir))
    }

    /// Whether a plain pattern excludes every entry of the root (`*`, `**`, `**/*`): BuildKit's
    /// `copySourceRootIgnored`, for CopyIgnoredFile on `COPY . dest`.
    pub fn excludes_root_entries(&self) -> bool {
        self.patterns.iter().any(|p| !p.exclusion && matches!(p.text.as_str(), "*" | "**" | "**/*"))
    }

    /// Patterns, none of them a `!` exception: then a path is in the context exactly when
    /// [`DockerIgnore::is_excluded`] says no for it, and CopyIgnoredFile can be decided.
    pub fn is_plain(&self) -> bool {
        !self.patterns.is_empty() && !self.exclusions
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// The ignore file for a build: `<dockerfile>.dockerignore` next to the Dockerfile if it exists
/// (BuildKit), else `<context>/.dockerignore`, else no rules.
pub fn load(context: &Path, dockerfile: Option<&Path>) -> Result<DockerIgnore, LoadError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(df) = dockerfile
        && let Some(name) = df.file_name()
    {
        let mut n = name.to_os_string();
        n.push(".dockerignore");
        candidates.push(df.with_file_name(n));
    }
    candidates.push(context.join(".dockerignore"));
    for path in candidates {
        match std::fs::read(&path) {
            Ok(bytes) => {
                return DockerIgnore::parse(&String::from_utf8_lossy(&bytes))
                    .map_err(|source| LoadError::Pattern { path, source });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(LoadError::Read { path, source }),
        }
    }
    Ok(DockerIgnore::default())
}

/// Go's `strings.TrimSpace` (Unicode white space).
fn go_trim(s: &str) -> &str {
    s.trim_matches(char::is_whitespace)
}

/// Turns a cleaned pattern into a matcher the way patternmatcher's `compile` does.
fn compile(pattern: &str) -> Result<Kind, regex::Error> {
    #[derive(PartialEq)]
    enum T {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut re = String::from("^");
    let mut t = T::Exact;
    let chars: Vec<char> = pattern.chars().collect();
    let mut k = 0;
    let mut i = 0;
    while k < chars.len() {
        let ch = chars[k];
        k += 1;
        match ch {
            '*' if chars.get(k) == Some(&'*') => {
                k += 1;
                if chars.get(k) == Some(&'/') {
                    k += 1;
                }
                if k == chars.len() {
                    if t == T::Exact {
                        t = T::Prefix;
                    } else {
                        re.push_str(".*");
                        t = T::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    t = T::Regex;
                }
                if i == 0 {
                    t = T::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                t = T::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                t = T::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => match chars.get(k) {
                Some(&next) => {
                    k += 1;
                    if next.is_ascii_alphanumeric() {
                        re.push('\\');
                        re.push(next);
                    } else {
                        re.push_str(&regex::escape(&next.to_string()));
                    }
                    t = T::Regex;
                }
                None => re.push_str("\\\\"),
            },
            '[' | ']' => {
                re.push(ch);
                t = T::Regex;
            }
            c => re.push(c),
        }
        i += 1;
    }
    Ok(match t {
        T::Exact => Kind::Exact,
        T::Prefix => Kind::Prefix(pattern[..pattern.len() - 2].to_string()),
        T::Suffix => Kind::Suffix(pattern[2..].to_string()),
        T::Regex => {
            re.push('$');
            Kind::Regex(Regex::new(&re)?)
        }
    })
}

/// Go's `filepath.Match` on Unix: `Err(())` for a malformed pattern (checked in full, as Go
/// does since 1.16, even when the name already failed to match).
pub(crate) fn go_match(pattern: &str, name: &str) -> Result<bool, ()> {
    let mut pattern = pattern.as_bytes();
    let mut name = name.as_bytes();
    'outer: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains(&b'/'));
        }
        let (t, ok, err) = match_chunk(chunk, name);
        if ok && (t.is_empty() || !pattern.is_empty()) {
            name = t;
            continue;
        }
        if err {
            return Err(());
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                let (t, ok, err) = match_chunk(chunk, &name[i + 1..]);
                if ok {
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'outer;
                }
                if err {
                    return Err(());
                }
                i += 1;
            }
        }
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            if match_chunk(chunk, b"").2 {
                return Err(());
            }
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while let [b'*', rest @ ..] = pattern {
        pattern = rest;
        star = true;
    }
    let mut inrange = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => inrange = true,
            b']' => inrange = false,
            b'*' if !inrange => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// The first rune of `s` and its length; an invalid byte is U+FFFD of length 1, as in Go.
fn decode_rune(s: &[u8]) -> (u32, usize) {
    let n = match s.first() {
        None => return (0xFFFD, 0),
        Some(b) if *b < 0x80 => 1,
        Some(b) if *b >= 0xF0 => 4,
        Some(b) if *b >= 0xE0 => 3,
        Some(_) => 2,
    };
    match s.get(..n).and_then(|b| std::str::from_utf8(b).ok()).and_then(|c| c.chars().next()) {
        Some(c) => (c as u32, n),
        None => (0xFFFD, 1),
    }
}

/// Returns (rest of s, matched, bad pattern).
fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> (&'a [u8], bool, bool) {
    let mut failed = false;
    while !chunk.is_empty() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match chunk[0] {
            b'[' => {
                let mut r = 0;
                if !failed {
                    let (c, n) = decode_rune(s);
                    r = c;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if chunk.first() == Some(&b'^') {
                    negated = true;
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if chunk.first() == Some(&b']') && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let Some((lo, rest)) = get_esc(chunk) else { return (&[], false, true) };
                    chunk = rest;
                    let mut hi = lo;
                    if chunk[0] == b'-' {
                        let Some((h, rest)) = get_esc(&chunk[1..]) else { return (&[], false, true) };
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == b'/' {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            c => {
                let mut c = c;
                if c == b'\\' {
                    chunk = &chunk[1..];
                    match chunk.first() {
                        None => return (&[], false, true),
                        Some(&e) => c = e,
                    }
                }
                if !failed {
                    if c != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    if failed { (&[], false, false) } else { (s, true, false) }
}

/// One (possibly escaped) character of a class; None when malformed.
fn get_esc(mut chunk: &[u8]) -> Option<(u32, &[u8])> {
    if chunk.is_empty() || chunk[0] == b'-' || chunk[0] == b']' {
        return None;
    }
    if chunk[0] == b'\\' {
        chunk = &chunk[1..];
        if chunk.is_empty() {
            return None;
        }
    }
    let (r, n) = decode_rune(chunk);
    if r == 0xFFFD && n == 1 && chunk[0] >= 0x80 {
        return None;
    }
    let rest = &chunk[n..];
    if rest.is_empty() {
        return None;
    }
    Some((r, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(rules: &str, path: &str) -> bool {
        DockerIgnore::parse(rules).unwrap().is_excluded(Path::new(path))
    }

    #[test]
    fn comments_blank_lines_and_whitespace() {
        let rules = "\u{feff}# a comment\n\n   \n  foo  \r\n #bar\n";
        assert!(ex(rules, "foo"));
        assert!(!ex(rules, "# a comment"));
        // Only a line *starting* with # is a comment: " #bar" is the pattern "#bar".
        assert!(ex(rules, "#bar"));
        assert!(!ex(rules, "bar"));
        assert!(DockerIgnore::parse("# only\n\n").unwrap().is_empty());
    }

    #[test]
    fn exclamation_reincludes_and_the_last_match_wins() {
        let rules = "*.md\n!README.md\n";
        assert!(ex(rules, "a.md"));
        assert!(!ex(rules, "README.md"));
        // Order matters: the later *.md excludes README.md again.
        assert!(ex("!README.md\n*.md\n", "README.md"));
        assert!(ex("*.md\n!README*.md\nREADME-secret.md", "README-secret.md"));
        assert!(!ex("*.md\n!README*.md\nREADME-secret.md", "README-public.md"));
        // "! /x" is trimmed and cleaned like any other pattern.
        assert!(!ex("x/*\n! /x/keep", "x/keep"));
        assert!(DockerIgnore::parse("!\n").unwrap_err().to_string().contains("line 1"));
        assert!(DockerIgnore::parse("a\n! \n").unwrap_err().to_string().contains("line 2"));
    }

    #[test]
    fn reincluding_a_file_inside_an_excluded_directory() {
        let rules = "build\n!build/keep.txt\n";
        assert!(ex(rules, "build"));
        assert!(ex(rules, "build/other.txt"));
        assert!(ex(rules, "build/sub/x"));
        assert!(!ex(rules, "build/keep.txt"));
        let di = DockerIgnore::parse(rules).unwrap();
        assert!(!di.can_skip_dir(Path::new("build")));
        assert!(di.can_skip_dir(Path::new("build/sub")));
        let di = DockerIgnore::parse("node_modules\n!**/keep\n").unwrap();
        assert!(!di.can_skip_dir(Path::new("node_modules")));
        assert!(!di.is_excluded(Path::new("node_modules/a/keep")));
        assert!(DockerIgnore::parse("node_modules\n!src\n").unwrap().can_skip_dir(Path::new("node_modules")));
        assert!(!DockerIgnore::parse("x\n").unwrap().can_skip_dir(Path::new("y")));
    }

    #[test]
    fn double_star_leading_middle_and_trailing() {
        // leading
        assert!(ex("**/*.go", "a.go"));
        assert!(ex("**/*.go", "x/y/a.go"));
        assert!(ex("**/vendor", "vendor"));
        assert!(ex("**/vendor", "a/b/vendor/c.txt"));
        assert!(!ex("**/vendor", "a/notvendor"));
        // patternmatcher's suffix fast path: **foo matches any path ending in foo
        assert!(ex("**foo", "a/barfoo"));
        // middle
        assert!(ex("a/**/b", "a/b"));
        assert!(ex("a/**/b", "a/x/y/b"));
        assert!(ex("a/**/b", "a/x/b/c"));
        assert!(!ex("a/**/b", "a/x/c"));
        assert!(ex("a/**/*.txt", "a/1/2/z.txt"));
        // trailing: everything below, not the directory itself
        assert!(ex("a/**", "a/x"));
        assert!(ex("a/**", "a/x/y"));
        assert!(!ex("a/**", "a"));
        assert!(!ex("a/**", "ab"));
        assert!(ex("a*/**", "ab/c"));
        // everything
        assert!(ex("**", "x/y"));
        assert!(ex("**", "x"));
    }

    #[test]
    fn leading_and_trailing_slashes_and_dots() {
        assert!(ex("/foo", "foo"));
        assert!(ex("/foo", "foo/bar"));
        assert!(ex("foo/", "foo/bar"));
        assert!(ex("./foo/./bar/", "foo/bar"));
        assert!(ex("foo/../bar", "bar"));
        assert!(ex("/../foo", "foo"));
        assert!(!ex("../foo", "foo"));
        // "." and "/" clean to patterns no relative path equals.
        assert!(!ex(".", "a"));
        assert!(!ex("/", "a"));
        assert!(!ex("*", ""));
        assert!(ex(".*", ".git"));
        assert!(ex(".git", ".git/config"));
        assert!(!ex(".git", ".github"));
    }

    #[test]
    fn star_question_and_classes_stay_within_a_segment() {
        assert!(ex("*.txt", "a.txt"));
        assert!(!ex("*.txt", "d/a.txt"));
        assert!(ex("*/*.txt", "d/a.txt"));
        assert!(ex("*", "d/a.txt")); // the parent d matches
        assert!(ex("?.c", "x.c"));
        assert!(!ex("?.c", "xy.c"));
        assert!(!ex("?", "/"));
        assert!(ex("[a-c].txt", "b.txt"));
        assert!(!ex("[a-c].txt", "d.txt"));
        assert!(ex("[^a-c].txt", "d.txt"));
        assert!(ex("file\\*", "file*"));
        assert!(!ex("file\\*", "filex"));
        assert!(ex("a.b", "a.b"));
        assert!(!ex("a.b", "axb"));
        assert!(ex("a+(b)", "a+(b)"));
        assert!(DockerIgnore::parse("[a-").unwrap_err().to_string().contains("line 1"));
        assert!(DockerIgnore::parse("ok\nx[]").unwrap_err().to_string().contains("line 2"));
        assert!(DockerIgnore::parse("a\\").is_err());
    }

    #[test]
    fn directory_exclusion_covers_its_contents() {
        assert!(ex("target", "target"));
        assert!(ex("target", "target/debug/x"));
        assert!(!ex("target", "src/target"));
        assert!(ex("*/target", "src/target/x"));
        assert!(DockerIgnore::parse("target").unwrap().can_skip_dir(Path::new("target")));
    }

    #[test]
    fn go_match_agrees_with_go() {
        assert_eq!(go_match("*", "abc"), Ok(true));
        assert_eq!(go_match("*", "a/b"), Ok(false));
        assert_eq!(go_match("a*b*c", "axxbyyc"), Ok(true));
        assert_eq!(go_match("a*b", "axbxc"), Ok(false));
        assert_eq!(go_match("[!a]", "!"), Ok(true));
        assert_eq!(go_match("[^a]", "b"), Ok(true));
        assert_eq!(go_match("[\\]]", "]"), Ok(true));
        assert_eq!(go_match("?", "é"), Ok(true));
        assert_eq!(go_match("a[", "x"), Err(()));
        assert_eq!(go_match("*x", "y"), Ok(false));
        assert_eq!(go_match("x*[", "y"), Err(()));
    }

    #[test]
    fn per_dockerfile_ignore_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "a\n").unwrap();
        std::fs::write(dir.path().join("app.Dockerfile"), "FROM scratch\n").unwrap();
        let root = load(dir.path(), None).unwrap();
        assert!(root.is_excluded(Path::new("a")));
        let plain = load(dir.path(), Some(&dir.path().join("app.Dockerfile"))).unwrap();
        assert!(plain.is_excluded(Path::new("a")));
        std::fs::write(dir.path().join("app.Dockerfile.dockerignore"), "b\n").unwrap();
        let own = load(dir.path(), Some(&dir.path().join("app.Dockerfile"))).unwrap();
        assert!(!own.is_excluded(Path::new("a")));
        assert!(own.is_excluded(Path::new("b")));
        let none = tempfile::tempdir().unwrap();
        assert!(load(none.path(), None).unwrap().is_empty());
    }
}
