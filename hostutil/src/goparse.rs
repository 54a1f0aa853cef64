//! What Docker's and BuildKit's Go code reads with Go's standard library, read the same way:
//! `strconv.ParseBool`, `strconv.ParseUint` with an explicit radix, `time.ParseDuration`
//! (HEALTHCHECK's flags, `builder prune --filter until=`), and one `encoding/csv` record (the
//! syntax of `--mount` for `docker run` and `RUN --mount`).

/// Go's `csv.ParseError` for one line (columns are 1-based byte offsets), or `EOF` for an
/// empty value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("EOF")]
    Eof,
    #[error("parse error on line 1, column {column}: bare \" in non-quoted-field")]
    BareQuote { column: usize },
    #[error("parse error on line 1, column {column}: extraneous or missing \" in quoted-field")]
    Quote { column: usize },
}

/// A Go duration (`time.ParseDuration`) that does not parse, in Go's words.
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    #[error("time: invalid duration \"{0}\"")]
    Invalid(String),
    #[error("time: missing unit in duration \"{0}\"")]
    MissingUnit(String),
    #[error("time: unknown unit \"{unit}\" in duration \"{duration}\"")]
    UnknownUnit { unit: String, duration: String },
}

/// Go's `time.ParseDuration`, in nanoseconds (negative allowed).
pub fn parse_go_duration(s: &str) -> Result<i128, DurationError> {
    let invalid = || DurationError::Invalid(s.to_string());
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(DurationError::MissingUnit(s.to_string())),
            other => {
                return Err(DurationError::UnknownUnit { unit: other.to_string(), duration: s.to_string() });
            }
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let ns = total.round() as i128;
    Ok(if neg { -ns } else { ns })
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(s, radix, 32)` with an explicit radix: digits only, no sign.
pub fn parse_u32(s: &str, radix: u32) -> Option<u32> {
    if s.is_empty() || !s.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(s, radix).ok()
}

/// One CSV record as `go-csvvalue`'s `Fields` (Go's `encoding/csv` for one line) reads it:
/// fields split at `,`; a field that starts with `"` is quoted (`""` is a quote, the closing
/// quote must end the field); a quote elsewhere is an error. Errors are Go's `csv.ParseError`
/// texts (columns are 1-based byte offsets); an empty value is `EOF`.
pub fn csv_fields(line: &str) -> Result<Vec<String>, CsvError> {
    let mut line = line;
    if let Some(l) = line.strip_suffix('\n') {
        line = l.strip_suffix('\r').unwrap_or(l);
    }
    if line.is_empty() {
        return Err(CsvError::Eof);
    }
    let mut fields: Vec<String> = Vec::new();
    let mut pos = 0;
    'field: loop {
        let Some(quoted) = line.strip_prefix('"') else {
            let end = line.find(',');
            let field = &line[..end.unwrap_or(line.len())];
            if let Some(j) = field.find('"') {
                return Err(CsvError::BareQuote { column: pos + j + 1 });
            }
            fields.push(field.to_owned());
            match end {
                Some(i) => {
                    line = &line[i + 1..];
                    pos += i + 1;
                    continue;
                }
                None => break,
            }
        };
        line = quoted;
        pos += 1;
        let mut half_open = false;
        loop {
            let Some(i) = line.find('"') else { return Err(CsvError::Quote { column: pos + 1 }) };
            if half_open {
                if let Some(last) = fields.last_mut() {
                    last.push_str(&line[..i]);
                }
            } else {
                fields.push(line[..i].to_owned());
            }
            line = &line[i + 1..];
            pos += i + 1;
            if let Some(rest) = line.strip_prefix('"') {
                // `""`: a quote inside the field.
                if let Some(last) = fields.last_mut() {
                    last.push('"');
                }
                line = rest;
                pos += 1;
                half_open = true;
            } else if let Some(rest) = line.strip_prefix(',') {
                line = rest;
                pos += 1;
                continue 'field;
            } else if line.is_empty() {
                break 'field;
            } else {
                return Err(CsvError::Quote { column: pos });
            }
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_go_duration("500ms").unwrap(), 500_000_000);
        assert_eq!(parse_go_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_go_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_go_duration("0").unwrap(), 0);
        assert_eq!(parse_go_duration("10").unwrap_err().to_string(), "time: missing unit in duration \"10\"");
        assert_eq!(
            parse_go_duration("7d").unwrap_err().to_string(),
            "time: unknown unit \"d\" in duration \"7d\""
        );
        assert!(parse_go_duration("1x").is_err() && parse_go_duration("").is_err());
    }

    #[test]
    fn csv_like_go() {
        assert_eq!(csv_fields("a,b=c,,d").unwrap(), ["a", "b=c", "", "d"]);
        assert_eq!(csv_fields("a,").unwrap(), ["a", ""]);
        assert_eq!(csv_fields("\"a,b\",c").unwrap(), ["a,b", "c"]);
        assert_eq!(csv_fields("\"say \"\"hi\"\"\"").unwrap(), ["say \"hi\""]);
        assert_eq!(csv_fields("\"\"").unwrap(), [""]);
        assert_eq!(csv_fields("x\n").unwrap(), ["x"]);
        assert_eq!(csv_fields("").unwrap_err().to_string(), "EOF");
        assert_eq!(
            csv_fields("ab\"c").unwrap_err().to_string(),
            "parse error on line 1, column 3: bare \" in non-quoted-field"
        );
        assert_eq!(
            csv_fields("x,\"ab\"c").unwrap_err().to_string(),
            "parse error on line 1, column 6: extraneous or missing \" in quoted-field"
        );
        assert_eq!(
            csv_fields("\"abc").unwrap_err().to_string(),
            "parse error on line 1, column 2: extraneous or missing \" in quoted-field"
        );
    }

    #[test]
    fn strconv_like_go() {
        assert_eq!(parse_u32("0755", 8), Some(0o755));
        assert_eq!(parse_u32("+1", 10), None);
        assert_eq!(parse_u32("8", 8), None);
        assert_eq!(parse_u32("4294967296", 10), None);
        assert_eq!(parse_bool("T"), Some(true));
        assert_eq!(parse_bool("yes"), None);
    }
}
