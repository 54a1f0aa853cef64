//! The Dockerfile parser: text to an AST, as BuildKit's `frontend/dockerfile/parser` does it.
//!
//! - [`parse`] follows `parser.go`'s `Parse`: lines are read one by one, the parser directives
//!   are recognized at the top (`directives.go`), continuation lines are joined with the escape
//!   character (comment lines and empty lines inside a continuation are dropped, the latter with
//!   a warning), each logical line is split into the instruction, its `--flags` and the rest
//!   (`split_command.go`), and the rest goes to the instruction's line parser
//!   (`line_parsers.go`, here in [`line_parsers`]).
//! - Heredocs (`<<EOF`) are read after the line that introduces them, for RUN, COPY and ADD
//!   (also inside ONBUILD), as `heredocsFromLine` decides ([`heredoc`]).
//! - [`Instruction`] is BuildKit's `Node` for one instruction; [`Instruction::dump`] is
//!   `Node.Dump()`.

mod directives;
mod dump;
mod heredoc;
mod line_parsers;

pub use directives::Directive;
pub(crate) use directives::DirectiveParser;
pub use dump::{dump, go_quote};
pub use heredoc::{Heredoc, HeredocError, chomp_heredoc_content, heredoc_word, parse_heredoc};

/// A place in the Dockerfile, 1-based; columns count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// One instruction: BuildKit's `parser.Node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The instruction's name, lowercased (`run`).
    pub name: String,
    /// The name as written (`Run`).
    pub keyword: String,
    /// The logical line as BuildKit's `Node.Original`: continuations joined, the first line's
    /// indentation removed.
    pub original: String,
    /// The `--flag[=value]` words before the arguments, quotes and escapes removed.
    pub flags: Vec<String>,
    /// Where each flag starts.
    pub flag_positions: Vec<Pos>,
    /// The arguments as the instruction's line parser gives them (for ENV and LABEL:
    /// key, value, separator triples; for HEALTHCHECK: the type, then the command).
    pub args: Vec<String>,
    /// Where each argument starts, as far as the line parser knows (JSON elements and the
    /// ENV/LABEL triples all point at the start of the arguments).
    pub arg_positions: Vec<Pos>,
    /// Where the arguments (after the flags) start; the end of the line when there are none.
    pub args_pos: Pos,
    /// Whether the arguments were a JSON array (exec form).
    pub json: bool,
    /// ONBUILD's trigger instruction.
    pub sub: Option<Box<Instruction>>,
    /// Heredocs read after the line (RUN, COPY, ADD, and ONBUILD of those).
    pub heredocs: Vec<Heredoc>,
    /// The comments right above the instruction, `#` and surrounding blanks removed
    /// (BuildKit's `Node.PrevComment`): an empty `#` line starts them afresh, blank lines do not,
    /// directives are not among them. The build checks read them (a `# check=` there, and
    /// InvalidDefinitionDescription).
    pub comments: Vec<String>,
    /// First and last line (the last includes heredoc bodies), 1-based.
    pub start_line: usize,
    pub end_line: usize,
    /// The column of the instruction's name on its first line.
    pub column: usize,
}

/// A parser warning (BuildKit's empty continuation line warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub message: String,
    pub line: usize,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub instructions: Vec<Instruction>,
    pub directives: Vec<Directive>,
    /// `\` or `` ` `` (the `# escape=` directive).
    pub escape: char,
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// The value of directive `name` (`syntax`, `escape`, `check`).
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives.iter().find(|d| d.name == name).map(|d| d.value.as_str())
    }
}

/// A syntax error at a place in the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub pos: Pos,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(pos: Pos, message: impl std::fmt::Display) -> Self {
        ParseError { pos, message: message.to_string() }
    }
}

/// Every instruction BuildKit knows.
pub const INSTRUCTIONS: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// BuildKit's `suggest.Search`: the closest option at an edit distance below 3, in the case of
/// `value` when not `case_sensitive` (all lower or all upper).
pub fn suggest(value: &str, options: &[&str], case_sensitive: bool) -> Option<String> {
    let folded = if case_sensitive { value.to_owned() } else { value.to_lowercase() };
    let mut best: Option<String> = None;
    let mut min = 3;
    for opt in options {
        let opt = if case_sensitive { opt.to_string() } else { opt.to_lowercase() };
        if folded == opt {
            return None;
        }
        let d = edit_distance(&folded, &opt);
        if d < min {
            min = d;
            best = Some(if case_sensitive {
                opt
            } else if value == value.to_lowercase() {
                opt.to_lowercase()
            } else if value == value.to_uppercase() {
                opt.to_uppercase()
            } else {
                opt
            });
        }
    }
    best
}

/// `unknown instruction: COPPY (did you mean COPY?)`.
pub fn unknown_instruction_message(keyword: &str) -> String {
    let upper: Vec<String> = INSTRUCTIONS.iter().map(|s| s.to_uppercase()).collect();
    let options: Vec<&str> = upper.iter().map(String::as_str).collect();
    match suggest(keyword, &options, false) {
        Some(s) => format!("unknown instruction: {keyword} (did you mean {s}?)"),
        None => format!("unknown instruction: {keyword}"),
    }
}

/// Go's `unicode.IsSpace` (the same set as Rust's `char::is_whitespace`).
fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]`.
pub(crate) fn is_re_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(s: &str) -> bool {
    s.trim_start_matches(is_space).starts_with('#')
}

/// BuildKit's `trimContinuationCharacter`: the line without its continuation escape (and the
/// blanks after it), and whether the logical line ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    match body.strip_suffix(escape) {
        Some("") => ("", false),
        Some(before) if !before.ends_with(escape) => (before, false),
        _ => (line, true),
    }
}

/// The pieces a logical line is made of, to map offsets in it back to the source.
#[derive(Debug, Clone, Default)]
pub(crate) struct LineMap {
    /// (offset in the logical line, source line, column of that offset).
    segments: Vec<(usize, usize, usize)>,
    text: String,
}

impl LineMap {
    /// The source position of byte `offset` of the logical line.
    pub(crate) fn pos(&self, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let Some(&(start, line, column)) = self.segments.iter().rev().find(|s| s.0 <= offset) else {
            return Pos { line: 1, column: 1 };
        };
        let chars = self.text.get(start..offset).map_or(0, |s| s.chars().count());
        Pos { line, column: column + chars }
    }
}

/// Parses a Dockerfile's text (already valid UTF-8).
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    if let Some(first) = lines.first_mut() {
        *first = first.strip_prefix('\u{feff}').unwrap_or(first);
    }
    let mut escape = '\\';
    let mut directive_parser = directives::DirectiveParser::default();
    let mut directives = Vec::new();
    let mut instructions = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut current = 0;
    let mut idx = 0;
    while idx < lines.len() {
        let raw = trim_newline(lines[idx]);
        idx += 1;
        let token = raw.trim_start_matches(is_space);
        let indent = raw[..raw.len() - token.len()].chars().count();
        current += 1;
        if is_comment(token) {
            // BuildKit cuts the raw line's first byte (`bytesRead[1:]`): an indented `  # x`
            // keeps its `#` in the comment.
            match raw.get(1..).unwrap_or_default().trim_matches(is_space) {
                "" => comments.clear(),
                comment => comments.push(comment.to_owned()),
            }
        }
        match directive_parser.parse_line(token) {
            Err(message) => return Err(ParseError::new(Pos { line: current, column: 1 }, message)),
            Ok(Some(d)) => {
                if d.name == "escape" {
                    escape = match d.value.as_str() {
                        "`" => '`',
                        "\\" => '\\',
                        other => {
                            return Err(ParseError::new(
                                Pos { line: current, column: 1 },
                                format!("invalid escape token '{other}' does not match ` or \\"),
                            ));
                        }
                    };
                }
                directives.push(d);
                comments.pop();
            }
            Ok(None) => {}
        }
        let token = if is_comment(token) { "" } else { token };
        let start_line = current;
        let (piece, mut end) = trim_continuation(token, escape);
        if end && piece.is_empty() {
            continue;
        }
        let mut map = LineMap::default();
        map.segments.push((0, current, indent + 1));
        map.text.push_str(piece);
        let mut empty_continuation = false;
        while !end && idx < lines.len() {
            let raw = trim_newline(lines[idx]);
            idx += 1;
            current += 1;
            let _ = directive_parser.parse_line(raw);
            if is_comment(raw) {
                continue;
            }
            if raw.trim_start_matches(is_space).is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, e) = trim_continuation(raw, escape);
            end = e;
            map.segments.push((map.text.len(), current, 1));
            map.text.push_str(piece);
        }
        if empty_continuation {
            warnings.push(Warning {
                message: format!("Empty continuation line found in: {}", map.text),
                line: current,
            });
        }
        let mut node = line_parsers::node_from_line(&map, 0, escape)?;
        node.start_line = start_line;
        if node.can_contain_heredoc() && map.text.contains("<<") {
            let docs = heredoc::heredocs_from_line(&map.text)
                .map_err(|e| ParseError::new(Pos { line: start_line, column: node.column }, e))?;
            for mut doc in docs {
                let mut terminated = false;
                while idx < lines.len() {
                    let raw = lines[idx];
                    idx += 1;
                    current += 1;
                    let mut candidate = trim_newline(raw);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err(ParseError::new(
                        Pos { line: start_line, column: node.column },
                        format!("unterminated heredoc {}", doc.name),
                    ));
                }
                node.heredocs.push(doc);
            }
        }
        node.end_line = current;
        node.comments = std::mem::take(&mut comments);
        instructions.push(node);
    }
    if instructions.is_empty() {
        return Err(ParseError::new(Pos { line: 1, column: 1 }, "file with no instructions"));
    }
    Ok(Dockerfile { instructions, directives, escape, warnings })
}

/// [`parse`], then checks every instruction is one BuildKit knows (BuildKit does this when it
/// turns the AST into instructions).
pub fn parse_checked(text: &str) -> Result<Dockerfile, ParseError> {
    let dockerfile = parse(text)?;
    for i in &dockerfile.instructions {
        if !INSTRUCTIONS.contains(&i.name.as_str()) {
            return Err(ParseError::new(
                Pos { line: i.start_line, column: i.column },
                unknown_instruction_message(&i.keyword),
            ));
        }
    }
    Ok(dockerfile)
}

impl Instruction {
    /// Whether heredocs are read after this instruction (BuildKit's `canContainHeredoc`).
    fn can_contain_heredoc(&self) -> bool {
        let node = match (&*self.name, &self.sub) {
            ("onbuild", Some(sub)) => sub,
            _ => self,
        };
        matches!(node.name.as_str(), "run" | "copy" | "add") && !node.json
    }

    /// The position of argument `i`, or of the arguments.
    pub fn arg_pos(&self, i: usize) -> Pos {
        self.arg_positions.get(i).copied().unwrap_or(self.args_pos)
    }

    /// The arguments as BuildKit's `nodeArgs` gives them (ONBUILD: the trigger's name and its
    /// arguments).
    pub fn node_args(&self) -> Vec<String> {
        match &self.sub {
            Some(sub) => {
                let mut args = vec![sub.keyword.clone()];
                args.extend(sub.node_args());
                args
            }
            None => self.args.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(unknown_instruction_message("COPPY"), "unknown instruction: COPPY (did you mean COPY?)");
        assert_eq!(unknown_instruction_message("fromm"), "unknown instruction: fromm (did you mean from?)");
        assert_eq!(unknown_instruction_message("XYZZY"), "unknown instruction: XYZZY");
    }

    #[test]
    fn positions_and_heredocs() {
        let df = parse("FROM a\n  RUN --mount=x \\\n   echo <<A <<-B\nhi $x\nA\n\tyo\n\tB\nCMD x\n").unwrap();
        let run = &df.instructions[1];
        assert_eq!((run.start_line, run.end_line, run.column), (2, 7, 3));
        assert_eq!(run.flags, ["--mount=x"]);
        assert_eq!(run.flag_positions[0], Pos { line: 2, column: 7 });
        assert_eq!(run.args, ["echo <<A <<-B"]);
        assert_eq!(run.args_pos, Pos { line: 3, column: 4 });
        assert_eq!(run.heredocs.len(), 2);
        assert_eq!(run.heredocs[0].content, "hi $x\n");
        assert_eq!(run.heredocs[1].content, "\tyo\n");
        assert_eq!(df.instructions[2].start_line, 8);
        assert!(parse("FROM a\nRUN <<EOF\nx\n").unwrap_err().message.contains("unterminated heredoc"));
    }

    #[test]
    fn directives_only_at_top() {
        let df = parse("# syntax=x\n# escape=`\nFROM a\n").unwrap();
        assert_eq!((df.escape, df.directive("syntax")), ('`', Some("x")));
        let df = parse("\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(df.escape, '\\');
    }
}
