//! Parser directives (`# syntax=`, `# escape=`, `# check=`), as BuildKit's
//! `frontend/dockerfile/parser/directives.go` reads them: only in the comment lines at the very
//! top of the file, before any instruction, empty line or other comment; each at most once.

/// A directive found at the top of the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// `syntax`, `escape` or `check`, lowercased.
    pub name: String,
    pub value: String,
    /// 1-based line of the directive.
    pub line: usize,
}

/// A directive given twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("only one {0} parser directive can be used")]
pub struct DuplicateDirective(pub String);

/// BuildKit's `DirectiveParser`: fed every line, it stops looking at the first line that is not a
/// directive.
#[derive(Debug, Default)]
pub(crate) struct DirectiveParser {
    line: usize,
    done: bool,
    seen: Vec<String>,
}

impl DirectiveParser {
    /// Looks at one line (newline trimmed). `Ok(Some)` for a directive.
    pub(crate) fn parse_line(&mut self, line: &str) -> Result<Option<Directive>, DuplicateDirective> {
        self.line += 1;
        if self.done {
            return Ok(None);
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(None);
        };
        let rest = rest.trim_start();
        // `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
        let name_len = rest
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
            .map_or(rest.len(), |(i, _)| i);
        let name = &rest[..name_len];
        let after = rest[name_len..].trim_start_matches(is_re_space);
        let (Some(raw), false) = (after.strip_prefix('='), name.is_empty()) else {
            self.done = true;
            return Ok(None);
        };
        let mut value = raw.trim_matches(is_re_space);
        if value.is_empty() {
            // `(.+?)` needs one character: the regex then takes the last blank.
            match raw.char_indices().last() {
                Some((i, _)) => value = &raw[i..],
                None => {
                    self.done = true;
                    return Ok(None);
                }
            }
        }
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(None);
        }
        if self.seen.contains(&name) {
            return Err(DuplicateDirective(name));
        }
        self.seen.push(name.clone());
        Ok(Some(Directive { name, value: value.to_owned(), line: self.line }))
    }
}

/// RE2's `\s`: ASCII blanks only.
fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_at_the_top() {
        let mut p = DirectiveParser::default();
        assert_eq!(
            p.parse_line("# syntax = docker/dockerfile:1").unwrap().unwrap().value,
            "docker/dockerfile:1"
        );
        assert_eq!(p.parse_line("#escape=`").unwrap().unwrap().value, "`");
        assert!(p.parse_line("# escape=\\").is_err());
        assert!(p.parse_line("# other=1").unwrap().is_none());
        assert!(p.parse_line("# check=skip=all").unwrap().is_none());
        let mut p = DirectiveParser::default();
        assert_eq!(p.parse_line("# check = skip=all ").unwrap().unwrap().value, "skip=all");
        assert!(p.parse_line("# comment").unwrap().is_none());
        assert!(p.parse_line("# escape=`").unwrap().is_none());
    }
}
