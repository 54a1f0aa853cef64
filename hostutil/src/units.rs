//! Sizes as Docker reads them: go-units' `RAMInBytes`, the syntax of `--memory`, `--shm-size`,
//! `RUN --mount=type=tmpfs,size=`, `--tmpfs /x:size=` and `--mount ...,tmpfs-size=`.

/// go-units' `RAMInBytes` (v0.5.0, the version BuildKit vendors): a number (Go float syntax),
/// an optional space, and an optional case-insensitive suffix `b`, or `k`/`m`/`g`/`t`/`p` with an
/// optional `b` or `ib`, all binary (`64m` = `64MB` = `64MiB` = 64 * 1024 * 1024). `None` if `s`
/// is not such a size.
pub fn ram_in_bytes(s: &str) -> Option<u64> {
    let sep = s.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')?;
    let (num, suffix) =
        if s.as_bytes()[sep] == b' ' { (&s[..sep], &s[sep + 1..]) } else { s.split_at(sep + 1) };
    let size = go_parse_float(num)?;
    if size < 0.0 {
        return None;
    }
    if suffix.is_empty() {
        return Some(size as u64);
    }
    if suffix.len() > 3 {
        return None;
    }
    let suffix = suffix.to_lowercase();
    let bytes = suffix.as_bytes();
    if bytes[0] == b'b' {
        return (bytes.len() == 1).then_some(size as u64);
    }
    let shift = match bytes[0] {
        b'k' => 10,
        b'm' => 20,
        b'g' => 30,
        b't' => 40,
        b'p' => 50,
        _ => return None,
    };
    let ok = match bytes.len() {
        2 => bytes[1] == b'b',
        3 => &bytes[1..] == b"ib",
        _ => true,
    };
    ok.then(|| (size * (1u64 << shift) as f64) as u64)
}

/// Go's `strconv.ParseFloat` for decimal input (`1`, `1.5`, `.5`, `1e3`, `+2`); Go's words
/// (`inf`, `nan`) and hex floats cannot reach here, as the number must end in a digit or `.`.
fn go_parse_float(s: &str) -> Option<f64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_sizes_as_go_units_reads_them() {
        assert_eq!(ram_in_bytes("64m"), Some(64 << 20));
        assert_eq!(ram_in_bytes("64M"), Some(64 << 20));
        assert_eq!(ram_in_bytes("64MB"), Some(64 << 20));
        assert_eq!(ram_in_bytes("64mib"), Some(64 << 20));
        assert_eq!(ram_in_bytes("1 GiB"), Some(1 << 30));
        assert_eq!(ram_in_bytes("2k"), Some(2048));
        assert_eq!(ram_in_bytes("1.5k"), Some(1536));
        assert_eq!(ram_in_bytes("100"), Some(100));
        assert_eq!(ram_in_bytes("100b"), Some(100));
        assert_eq!(ram_in_bytes("1t"), Some(1 << 40));
        assert_eq!(ram_in_bytes("1p"), Some(1 << 50));
        assert_eq!(ram_in_bytes("10 kb"), Some(10 << 10));
        assert_eq!(ram_in_bytes("7b"), Some(7));
        for bad in
            ["", "m", "64x", "64mb2", "64mbb", "64bb", "64kiB1", "-1", "64 mx", "1_0", "0x10", "50%", "1bb"]
        {
            assert_eq!(ram_in_bytes(bad), None, "{bad}");
        }
    }
}
