//! BuildKit's `split_command.go` and `line_parsers.go`: a logical line to an [`Instruction`].

use super::{Instruction, LineMap, ParseError, is_re_whitespace, is_space};

/// Arguments as a line parser returns them: the values, each with its offset in the logical
/// line, and whether they were JSON.
#[derive(Default)]
struct Args {
    values: Vec<(String, usize)>,
    json: bool,
    sub: Option<Box<Instruction>>,
}

impl Args {
    fn one(value: &str, offset: usize) -> Args {
        Args { values: vec![(value.to_owned(), offset)], ..Args::default() }
    }
}

/// BuildKit's `newNodeFromLine` for the logical line `map.text[start..]`.
pub(crate) fn node_from_line(map: &LineMap, start: usize, escape: char) -> Result<Instruction, ParseError> {
    let line = map.text.get(start..).unwrap_or_default();
    let lead = line.len() - line.trim_start_matches(is_space).len();
    let trimmed = line.trim_matches(is_space);
    let cmd_start = start + lead;
    let (keyword, flags, rest, rest_offset) = match trimmed.find(is_re_whitespace) {
        Some(i) => {
            let after = &trimmed[i..];
            let after = after.trim_start_matches(is_re_whitespace);
            let after_offset = cmd_start + trimmed.len() - after.len();
            let (args, args_offset, flags) = extract_builder_flags(after, escape);
            let args_lead = args.len() - args.trim_start_matches(is_space).len();
            let flags: Vec<(String, usize)> = flags.into_iter().map(|(f, o)| (f, after_offset + o)).collect();
            (&trimmed[..i], flags, args.trim_matches(is_space), after_offset + args_offset + args_lead)
        }
        None => (trimmed, Vec::new(), "", start + line.len()),
    };
    let name = keyword.to_lowercase();
    let args_pos = map.pos(rest_offset);
    let error = |e: ArgsError| ParseError::new(args_pos, e);
    let args = match name.as_str() {
        "add" | "copy" | "volume" => parse_maybe_json_to_list(rest, rest_offset).map_err(error)?,
        "arg" => parse_name_or_name_val(rest, rest_offset, escape),
        "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(rest, rest_offset).map_err(error)?,
        "env" => parse_name_val(rest, rest_offset, "ENV", escape).map_err(error)?,
        "label" => parse_name_val(rest, rest_offset, "LABEL", escape).map_err(error)?,
        "expose" | "from" => parse_strings_whitespace_delimited(rest, rest_offset),
        "healthcheck" => parse_health_config(rest, rest_offset).map_err(error)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => parse_string(rest, rest_offset),
        "onbuild" if !rest.is_empty() => {
            let sub = node_from_line(map, rest_offset, escape)?;
            Args { sub: Some(Box::new(sub)), ..Args::default() }
        }
        _ => Args::default(),
    };
    let cmd_pos = map.pos(cmd_start);
    Ok(Instruction {
        name,
        keyword: keyword.to_owned(),
        original: line.to_owned(),
        flag_positions: flags.iter().map(|(_, o)| map.pos(*o)).collect(),
        flags: flags.into_iter().map(|(f, _)| f).collect(),
        arg_positions: args.values.iter().map(|(_, o)| map.pos(*o)).collect(),
        args: args.values.into_iter().map(|(v, _)| v).collect(),
        args_pos,
        json: args.json,
        sub: args.sub,
        heredocs: Vec::new(),
        comments: Vec::new(),
        start_line: cmd_pos.line,
        end_line: cmd_pos.line,
        column: cmd_pos.column,
    })
}

/// BuildKit's `extractBuilderFlags`: peels the `--flag` words off the front of `line`. Returns
/// the rest of the line, its offset in `line`, and the flags (quotes and escapes removed) with
/// their offsets. A `--` word ends the flags and is dropped.
fn extract_builder_flags(line: &str, escape: char) -> (&str, usize, Vec<(String, usize)>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = 0;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut chars = line.char_indices().peekable();
    while let Some((pos, ch)) = chars.next() {
        if phase == Phase::Spaces {
            if is_space(ch) {
                continue;
            }
            if ch != '-' || !line[pos + 1..].starts_with('-') {
                return (&line[pos..], pos, words);
            }
            phase = Phase::Word;
            word_start = pos;
        }
        let mut ch = ch;
        if phase == Phase::Word {
            if is_space(ch) {
                phase = Phase::Spaces;
                if word == "--" {
                    return (&line[pos..], pos, words);
                }
                if blank_ok || !word.is_empty() {
                    words.push((std::mem::take(&mut word), word_start));
                }
                word.clear();
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                continue;
            }
            if ch == escape {
                match chars.next() {
                    None => continue,
                    Some((_, c)) => ch = c,
                }
            }
            word.push(ch);
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
            continue;
        }
        if ch == escape {
            match chars.next() {
                None => {
                    phase = Phase::Word;
                    continue;
                }
                Some((_, c)) => ch = c,
            }
        }
        word.push(ch);
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        words.push((word, word_start));
    }
    ("", line.len(), words)
}

/// BuildKit's `parseWords`: splits on whitespace outside quotes, keeping quotes and escapes;
/// each word with its offset in `rest`.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<(String, usize)> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = 0;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut chars = rest.char_indices().peekable();
    while let Some((pos, ch)) = chars.next() {
        if phase == Phase::Spaces {
            if is_space(ch) {
                continue;
            }
            phase = Phase::Word;
            word_start = pos;
        }
        let mut ch = ch;
        if phase == Phase::Word {
            if is_space(ch) {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push((std::mem::take(&mut word), word_start));
                }
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                let Some((_, next)) = chars.next() else { continue };
                word.push(ch);
                ch = next;
            }
            word.push(ch);
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            let Some((_, next)) = chars.next() else {
                phase = Phase::Word;
                continue;
            };
            word.push(ch);
            ch = next;
        }
        word.push(ch);
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push((word, word_start));
    }
    words
}

/// Splits on BuildKit's `reWhitespace`, with offsets.
fn split_re_whitespace(rest: &str, base: usize, limit: Option<usize>) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = rest.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if limit.is_some_and(|l| out.len() + 1 == l) {
            break;
        }
        if is_re_whitespace(c) {
            out.push((rest[start..i].to_owned(), base + start));
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = iter.peek() {
                if !is_re_whitespace(d) {
                    break;
                }
                end = j + d.len_utf8();
                iter.next();
            }
            start = end;
        }
    }
    out.push((rest[start..].to_owned(), base + start));
    out
}

fn parse_strings_whitespace_delimited(rest: &str, offset: usize) -> Args {
    if rest.is_empty() {
        return Args::default();
    }
    Args { values: split_re_whitespace(rest, offset, None), ..Args::default() }
}

fn parse_string(rest: &str, offset: usize) -> Args {
    if rest.is_empty() { Args::default() } else { Args::one(rest, offset) }
}

enum JsonError {
    NotStringArray,
    Other,
}

/// BuildKit's `parseJSON`.
fn parse_json(rest: &str, offset: usize) -> Result<Args, JsonError> {
    let rest = rest.trim_start_matches(is_space);
    if !rest.starts_with('[') {
        return Err(JsonError::Other);
    }
    let values: Vec<serde_json::Value> = serde_json::from_str(rest).map_err(|_| JsonError::Other)?;
    let mut out = Vec::new();
    for v in values {
        match v {
            serde_json::Value::String(s) => out.push((s, offset)),
            _ => return Err(JsonError::NotStringArray),
        }
    }
    Ok(Args { values: out, json: true, sub: None })
}

/// Arguments BuildKit's line parsers refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray,
    #[error("{0} must have two arguments")]
    TwoArguments(&'static str),
    #[error("Syntax error - can't find = in {}. Must be of the form: name=value", super::go_quote(.0))]
    NoEquals(String),
}

fn parse_maybe_json(rest: &str, offset: usize) -> Result<Args, ArgsError> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    match parse_json(rest, offset) {
        Ok(args) => Ok(args),
        Err(JsonError::NotStringArray) => Err(ArgsError::NotStringArray),
        Err(JsonError::Other) => Ok(Args::one(rest, offset)),
    }
}

fn parse_maybe_json_to_list(rest: &str, offset: usize) -> Result<Args, ArgsError> {
    match parse_json(rest, offset) {
        Ok(args) => Ok(args),
        Err(JsonError::NotStringArray) => Err(ArgsError::NotStringArray),
        Err(JsonError::Other) => Ok(parse_strings_whitespace_delimited(rest, offset)),
    }
}

/// ENV and LABEL: `k=v ...` (separator `=`) or the legacy `k v` (separator empty).
fn parse_name_val(rest: &str, offset: usize, key: &'static str, escape: char) -> Result<Args, ArgsError> {
    let words = parse_words(rest, escape);
    let Some((first, _)) = words.first() else { return Ok(Args::default()) };
    if !first.contains('=') {
        let parts = split_re_whitespace(rest, offset, Some(2));
        let [(k, ko), (v, vo)] = parts.as_slice() else {
            return Err(ArgsError::TwoArguments(key));
        };
        return Ok(Args {
            values: vec![(k.clone(), *ko), (v.clone(), *vo), (String::new(), *vo)],
            ..Args::default()
        });
    }
    let mut values = Vec::new();
    for (word, o) in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(ArgsError::NoEquals(word));
        };
        values.push((k.to_owned(), offset + o));
        values.push((v.to_owned(), offset + o));
        values.push(("=".to_owned(), offset + o));
    }
    Ok(Args { values, ..Args::default() })
}

fn parse_name_or_name_val(rest: &str, offset: usize, escape: char) -> Args {
    Args {
        values: parse_words(rest, escape).into_iter().map(|(w, o)| (w, offset + o)).collect(),
        ..Args::default()
    }
}

/// HEALTHCHECK: the type word, then the command as `parseMaybeJSON` gives it.
fn parse_health_config(rest: &str, offset: usize) -> Result<Args, ArgsError> {
    let sep = rest.find(is_space).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Args::default());
    }
    let after = &rest[sep..];
    let next = sep + after.len() - after.trim_start_matches(is_space).len();
    let cmd = parse_maybe_json(&rest[next..], offset + next)?;
    let mut values = vec![(rest[..sep].to_owned(), offset)];
    values.extend(cmd.values);
    Ok(Args { values, json: cmd.json, sub: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        parse_words(s, '\\').into_iter().map(|(w, _)| w).collect()
    }

    #[test]
    fn buildkit_parse_words() {
        assert_eq!(words("foo bar 'abc xyz'"), ["foo", "bar", "'abc xyz'"]);
        assert_eq!(words("foo\\ bar"), ["foo\\ bar"]);
        assert_eq!(words("föo bàr \"âbc xÿz\""), ["föo", "bàr", "\"âbc xÿz\""]);
        assert_eq!(words("a=\"\""), ["a=\"\""]);
    }

    #[test]
    fn flags() {
        let (rest, off, flags) = extract_builder_flags("--a=1 --b='x y' -- --c", '\\');
        assert_eq!((rest, off), (" --c", 18));
        assert_eq!(flags, [("--a=1".to_string(), 0), ("--b=x y".to_string(), 6)]);
        let (rest, _, flags) = extract_builder_flags("--doit", '\\');
        assert_eq!((rest, flags.len()), ("", 1));
    }
}
