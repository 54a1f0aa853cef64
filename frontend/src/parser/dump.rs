//! BuildKit's `Node.Dump()` format and Go's `strconv.Quote`.

use std::fmt::Write as _;

use super::Instruction;

/// Go's `strconv.Quote`: `"` and `\` escaped, `\a \b \f \n \r \t \v` for those controls, other
/// non-printable characters as `\xHH` (ASCII), `\uHHHH` or `\UHHHHHHHH`; printable characters
/// as they are.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` without Unicode tables: controls, blanks other
/// than the space, the common format characters, private-use characters and noncharacters
/// are not printable (unassigned code points are taken as printable).
fn is_go_printable(c: char) -> bool {
    let n = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format = matches!(n,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff
        | 0xfff9..=0xfffb | 0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3
        | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f);
    let private = matches!(n, 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd);
    let nonchar = (n & 0xfffe) == 0xfffe || (0xfdd0..=0xfdef).contains(&n);
    !(format || private || nonchar)
}

impl Instruction {
    /// This instruction as BuildKit's `Node.Dump()` prints it, without parentheses:
    /// `copy ["--from=a"] "src" "dst"`.
    pub fn dump(&self) -> String {
        let mut out = self.keyword.to_lowercase();
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            let _ = write!(out, " [{}]", flags.join(" "));
        }
        if let Some(sub) = &self.sub {
            let _ = write!(out, " ({})", sub.dump());
        }
        for arg in &self.args {
            out.push(' ');
            out.push_str(&go_quote(arg));
        }
        out.trim().to_owned()
    }
}

/// The whole AST: one `(instruction ...)` line each.
pub fn dump(instructions: &[Instruction]) -> String {
    let mut out = String::new();
    for i in instructions {
        let _ = writeln!(out, "({})", i.dump());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quoting() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\t\u{1b}"), r#""\x00\t\x1b""#);
        assert_eq!(go_quote("♥ 한국어"), "\"♥ 한국어\"");
        assert_eq!(go_quote("\u{a0}\u{feff}\u{85}"), r#""\u00a0\ufeff\u0085""#);
    }
}
