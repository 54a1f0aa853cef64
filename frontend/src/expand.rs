//! BuildKit's shell-word processing (`ProcessWord` / `ProcessWords` in
//! `frontend/dockerfile/shell/lex.go`): variable expansion, quote removal and escapes.
//!
//! Errors ([`ExpandError`]) read as BuildKit's bare messages (e.g. `syntax error: bad
//! substitution`); the lowering wraps them with the word and the location.

/// Why a word could not be expanded, in BuildKit's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(char),
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${NAME?message}` / `${NAME:?message}` of an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
}

/// Expands `$VAR`, `${VAR}` and BuildKit's `${VAR:-word}` family in `word`, removing quotes and
/// escapes (`\` is the escape character). Unknown variables expand to nothing. `env` is searched
/// from the end: the last definition of a name wins.
pub fn expand_word(word: &str, env: &[(String, String)]) -> Result<String, ExpandError> {
    expand_word_with_escape(word, env, '\\')
}

/// [`expand_word`] with another escape character (the `# escape=` directive: `\` or `` ` ``).
pub fn expand_word_with_escape(
    word: &str,
    env: &[(String, String)],
    escape: char,
) -> Result<String, ExpandError> {
    Lexer::new(word, env, escape).process_stop_on(None, false).map(|(word, _)| word)
}

/// Like [`expand_word_with_escape`], then splits the result into words on whitespace that was
/// not quoted or escaped (BuildKit's `ProcessWords`; splitting happens after expansion, so a
/// variable holding `a b` gives two words unless it is quoted).
pub fn expand_words(word: &str, env: &[(String, String)], escape: char) -> Result<Vec<String>, ExpandError> {
    Lexer::new(word, env, escape).process_stop_on(None, false).map(|(_, words)| words)
}

/// Looks `name` up in `env`, the last definition winning.
pub fn env_get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a [(String, String)],
    escape: char,
}

/// Collects the words of `ProcessWords` alongside the single-word result.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

fn is_digit(ch: char) -> bool {
    ch.is_ascii_digit() || (!ch.is_ascii() && ch.is_numeric())
}

fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

impl<'a> Lexer<'a> {
    fn new(word: &str, env: &'a [(String, String)], escape: char) -> Self {
        Lexer { chars: word.chars().collect(), pos: 0, env, escape }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get_env(&self, name: &str) -> Option<String> {
        env_get(self.env, name).map(str::to_owned)
    }

    /// Processes until `stop` (consumed) or the end. `raw_escapes` keeps escape characters in
    /// the result (used for patterns, which interpret them later).
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '\'' => {
                    let tmp = self.single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '"' => {
                    let tmp = self.double_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '$' => {
                    let tmp = self.dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                _ => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.escape {
                        if raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape character escapes the next one; alone at the end it is
                        // dropped.
                        match self.next() {
                            None => break,
                            Some(c) => ch = c,
                        }
                        words.add_raw_char(ch);
                    } else {
                        words.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        if let Some(stop) = stop {
            return Err(ExpandError::Unterminated(stop));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Result<String, ExpandError> {
        // Everything up to the next ' is literal; ' itself cannot be escaped.
        self.next();
        let mut result = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(ExpandError::UnterminatedSingleQuote);
                }
                Some('\'') => return Ok(result),
                Some(c) => result.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, ExpandError> {
        // Literal except `$` and the escape character, which only escapes `"`, `$` and itself.
        self.next();
        let mut result = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(ExpandError::UnterminatedDoubleQuote);
                }
                Some('"') => {
                    self.next();
                    return Ok(result);
                }
                Some('$') => result.push_str(&self.dollar()?),
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.escape {
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                // Positional parameters: all the digits, never set.
                while let Some(c) = self.peek().filter(|c| is_digit(*c)) {
                    name.push(c);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphabetic() || is_digit(ch) || ch == '_') {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }

    fn dollar(&mut self) -> Result<String, ExpandError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.get_env(&name).unwrap_or_default());
        }
        self.next();
        match self.peek() {
            None => return Err(ExpandError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else { return Err(ExpandError::MissingBrace) };
        let mut chs = ch.to_string();
        match ch {
            '}' => Ok(self.get_env(&name).unwrap_or_default()),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                if null_is_unset {
                    let Some(c) = self.next() else { return Err(ExpandError::MissingBrace) };
                    ch = c;
                    chs.push(c);
                }
                let raw_escapes = ch == '#' || ch == '%';
                if null_is_unset && raw_escapes {
                    return Err(ExpandError::UnsupportedModifier(chs));
                }
                let word = match self.process_stop_on(Some('}'), raw_escapes) {
                    Ok((word, _)) => word,
                    Err(_) if self.peek().is_none() => return Err(ExpandError::MissingBrace),
                    Err(e) => return Err(e),
                };
                let value = self.get_env(&name);
                let unset = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
                match ch {
                    '-' => Ok(if unset { word } else { value.unwrap_or_default() }),
                    '+' => Ok(if unset { String::new() } else { word }),
                    '?' => match value {
                        None => Err(ExpandError::Required {
                            message: if word.is_empty() { "is not allowed to be unset".into() } else { word },
                            name,
                        }),
                        Some(v) if null_is_unset && v.is_empty() => Err(ExpandError::Required {
                            message: if word.is_empty() { "is not allowed to be empty".into() } else { word },
                            name,
                        }),
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        let value = value.unwrap_or_default();
                        let (greedy, pattern) = match word.strip_prefix(ch) {
                            Some(rest) => (true, rest.to_owned()),
                            None => (false, word),
                        };
                        let pattern: Vec<char> = pattern.chars().collect();
                        Ok(if ch == '#' {
                            trim_prefix(&pattern, &value, greedy, self.escape)
                        } else {
                            trim_suffix(&pattern, &value, greedy, self.escape)
                        })
                    }
                    _ => Err(ExpandError::UnsupportedModifier(chs)),
                }
            }
            '/' => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((p, _)) => p,
                    Err(_) if self.peek().is_none() => {
                        return Err(ExpandError::MissingSlash);
                    }
                    Err(e) => return Err(e),
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((r, _)) => r,
                    Err(_) if self.peek().is_none() => return Err(ExpandError::MissingBrace),
                    Err(e) => return Err(e),
                };
                let value = self.get_env(&name).unwrap_or_default();
                let pattern: Vec<char> = pattern.chars().collect();
                let replacement = unescape(&replacement, self.escape);
                Ok(replace(&pattern, &value, &replacement, replace_all, self.escape))
            }
            _ => Err(ExpandError::UnsupportedModifier(chs)),
        }
    }
}

/// Removes escape characters (used on `${VAR/pattern/replacement}` replacements).
fn unescape(s: &str, escape: char) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Shell pattern matching (`*`, `?`, `[...]`, escapes) of the whole of `text`.
fn glob_match(pattern: &[char], text: &[char], escape: char) -> bool {
    let Some((&p, rest)) = pattern.split_first() else { return text.is_empty() };
    match p {
        '*' => (0..=text.len()).any(|i| glob_match(rest, &text[i..], escape)),
        '?' => !text.is_empty() && glob_match(rest, &text[1..], escape),
        '[' => {
            let Some((&c, text_rest)) = text.split_first() else { return false };
            let mut i = 0;
            let negate = matches!(rest.first(), Some('!' | '^'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            while i < rest.len() && (first || rest[i] != ']') {
                first = false;
                let lo = rest[i];
                if i + 2 < rest.len() && rest[i + 1] == '-' && rest[i + 2] != ']' {
                    matched |= lo <= c && c <= rest[i + 2];
                    i += 3;
                } else {
                    matched |= lo == c;
                    i += 1;
                }
            }
            if i >= rest.len() {
                // No closing bracket: a literal `[`.
                return c == '[' && glob_match(rest, text_rest, escape);
            }
            matched != negate && glob_match(&rest[i + 1..], text_rest, escape)
        }
        _ => {
            let (lit, rest) = if p == escape && !rest.is_empty() { (rest[0], &rest[1..]) } else { (p, rest) };
            text.first() == Some(&lit) && glob_match(rest, &text[1..], escape)
        }
    }
}

fn trim_prefix(pattern: &[char], value: &str, greedy: bool, escape: char) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut ends: Box<dyn Iterator<Item = usize>> =
        if greedy { Box::new((0..=chars.len()).rev()) } else { Box::new(0..=chars.len()) };
    match ends.find(|&end| glob_match(pattern, &chars[..end], escape)) {
        Some(end) => chars[end..].iter().collect(),
        None => value.to_owned(),
    }
}

fn trim_suffix(pattern: &[char], value: &str, greedy: bool, escape: char) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut starts: Box<dyn Iterator<Item = usize>> =
        if greedy { Box::new(0..=chars.len()) } else { Box::new((0..=chars.len()).rev()) };
    match starts.find(|&start| glob_match(pattern, &chars[start..], escape)) {
        Some(start) => chars[..start].iter().collect(),
        None => value.to_owned(),
    }
}

fn replace(pattern: &[char], value: &str, replacement: &str, all: bool, escape: char) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i <= chars.len() {
        if !replaced || all {
            // Leftmost, then longest match.
            if let Some(end) =
                (i..=chars.len()).rev().find(|&end| glob_match(pattern, &chars[i..end], escape))
            {
                out.push_str(replacement);
                replaced = true;
                if end > i {
                    i = end;
                    continue;
                }
            }
        }
        if i < chars.len() {
            out.push(chars[i]);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![("A".into(), "1".into()), ("P".into(), "/usr/local/bin".into()), ("A".into(), "2".into())]
    }

    #[test]
    fn last_definition_wins() {
        assert_eq!(expand_word("$A-${A}", &env()).unwrap(), "2-2");
    }

    #[test]
    fn pattern_modifiers() {
        let env = env();
        assert_eq!(expand_word("${P#*/}", &env).unwrap(), "usr/local/bin");
        assert_eq!(expand_word("${P##*/}", &env).unwrap(), "bin");
        assert_eq!(expand_word("${P%/*}", &env).unwrap(), "/usr/local");
        assert_eq!(expand_word("${P%%/l*}", &env).unwrap(), "/usr");
        assert_eq!(expand_word("${P/usr/opt}", &env).unwrap(), "/opt/local/bin");
        assert_eq!(expand_word("${P//l/L}", &env).unwrap(), "/usr/LocaL/bin");
        assert!(expand_word("${P:#x}", &env).is_err());
    }

    #[test]
    fn backtick_escape() {
        assert_eq!(expand_word_with_escape("a`$A\\b", &env(), '`').unwrap(), "a$A\\b");
    }

    #[test]
    fn words_split_after_expansion() {
        let env = vec![("X".into(), "a  b".into())];
        assert_eq!(expand_words("$X \"$X\" c\\ d", &env, '\\').unwrap(), ["a", "b", "a  b", "c d"]);
    }
}
