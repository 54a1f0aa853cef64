//! Heredoc detection as BuildKit's parser does it (`heredocsFromLine`, `ParseHeredoc`).
//!
//! BuildKit splits the instruction's line into shell words with its lexer (quotes and escapes
//! kept, unset variables left as written) and takes every word matching
//! `^(\d*)<<(-?)\s*([^<]*)$` whose rest is a single shell word as a heredoc. The delimiter is
//! that word with quotes removed; the content is expanded only when no part of it was quoted.

use crate::expand::ExpandError;

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when absent.
    pub file_descriptor: u32,
    /// Whether variables in the content are expanded: `false` when the delimiter was quoted.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the content lines and the terminator.
    pub chomp: bool,
    /// The content, each line with its line ending, not including the terminator line.
    pub content: String,
}

/// A heredoc word BuildKit's `ParseHeredoc` refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeredocError {
    #[error(transparent)]
    Lex(#[from] ExpandError),
    #[error("internal lexing of heredoc produced inconsistent results: {0}")]
    Inconsistent(String),
}

/// Splits `text` into shell words as BuildKit's lexer (escape `\`, no environment, unset
/// variables kept as written). `raw_quotes` keeps quote characters, `raw_escapes` keeps escape
/// characters. Errors on an unterminated quote.
fn shell_words(text: &str, raw_quotes: bool, raw_escapes: bool) -> Result<Vec<String>, HeredocError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                in_word = true;
                if raw_quotes {
                    word.push('\'');
                }
                loop {
                    match chars.next() {
                        None => {
                            return Err(ExpandError::UnterminatedSingleQuote.into());
                        }
                        Some('\'') => break,
                        Some(c) => word.push(c),
                    }
                }
                if raw_quotes {
                    word.push('\'');
                }
            }
            '"' => {
                in_word = true;
                if raw_quotes {
                    word.push('"');
                }
                loop {
                    match chars.next() {
                        None => {
                            return Err(ExpandError::UnterminatedDoubleQuote.into());
                        }
                        Some('"') => break,
                        Some('\\') => match chars.peek() {
                            Some(&c) if matches!(c, '"' | '$' | '\\') => {
                                if raw_escapes {
                                    word.push('\\');
                                }
                                word.push(c);
                                chars.next();
                            }
                            _ => word.push('\\'),
                        },
                        Some(c) => word.push(c),
                    }
                }
                if raw_quotes {
                    word.push('"');
                }
            }
            '\\' => {
                if raw_escapes {
                    word.push('\\');
                }
                match chars.next() {
                    None => break,
                    Some(c) => {
                        word.push(c);
                        in_word = true;
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word && !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    Ok(words)
}

/// BuildKit's `ParseHeredoc`: `Ok(None)` when `word` is not a heredoc word.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, HeredocError> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(rest) = word[digits..].strip_prefix("<<") else { return Ok(None) };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\x0c', '\r']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let words = shell_words(rest, false, false)?;
    let [name] = words.as_slice() else { return Ok(None) };
    let raw = shell_words(rest, true, false)?;
    let [raw] = raw.as_slice() else {
        return Err(HeredocError::Inconsistent(rest.to_string()));
    };
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    Ok(Some(Heredoc {
        name: name.clone(),
        file_descriptor: word[..digits].parse().unwrap_or(0),
        expand: quotes(name) == quotes(raw),
        chomp,
        content: String::new(),
    }))
}

/// Whether `word` is a heredoc word (BuildKit's `MustParseHeredoc` giving a heredoc).
pub fn heredoc_word(word: &str) -> Option<Heredoc> {
    parse_heredoc(word).ok().flatten()
}

/// BuildKit's `heredocsFromLine`: the heredocs a line introduces, in order.
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, HeredocError> {
    let words = shell_words(line, true, true).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// BuildKit's `ChompHeredocContent`: removes leading tabs from every line.
pub fn chomp_heredoc_content(content: &str) -> String {
    content.split_inclusive('\n').map(|line| line.trim_start_matches('\t')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, bool, bool)> {
        heredocs_from_line(line).unwrap().into_iter().map(|h| (h.name, h.expand, h.chomp)).collect()
    }

    #[test]
    fn detection() {
        assert_eq!(names("RUN <<EOF"), [("EOF".into(), true, false)]);
        assert_eq!(names("RUN <<-'EOF' cat"), [("EOF".into(), false, true)]);
        assert_eq!(names("COPY <<A <<\"B\" /dst"), [("A".into(), true, false), ("B".into(), false, false)]);
        assert_eq!(names("RUN python3 <<EOF > /out"), [("EOF".into(), true, false)]);
        assert!(names("RUN echo '<<EOF'").is_empty());
        assert!(names("RUN echo << EOF").is_empty());
        assert!(names("RUN echo a<<EOF").is_empty());
        assert_eq!(names("RUN 3<<E\"O\"F x"), [("EOF".into(), false, false)]);
        assert_eq!(heredoc_word("3<<EOF").unwrap().file_descriptor, 3);
    }

    #[test]
    fn chomp() {
        assert_eq!(chomp_heredoc_content("\t\ta\n\tb\n c\n"), "a\nb\n c\n");
    }
}
