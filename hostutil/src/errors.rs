//! An error and its causes as one line, the way rbuild shows every error: what failed, then
//! why, each cause once (no error's own message repeats its source; each crate's errors are
//! written so). Used where an error ends as text: the CLI's `rbuild: error:` line, the report a
//! sandbox's init sends its parent, the reason a monitor records.

use std::error::Error;

/// `e`, then each error in its `source()` chain, joined by `": "`. An OS error reads as the OS
/// says it (`Permission denied`, without Rust's ` (os error 13)`).
pub fn one_line(e: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let text = match c.downcast_ref::<std::io::Error>() {
            Some(io) if io.raw_os_error().is_some() => {
                let s = io.to_string();
                s.rsplit_once(" (os error ").map_or(s.clone(), |(m, _)| m.to_string())
            }
            _ => c.to_string(),
        };
        if !text.is_empty() {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading /x")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_follow_their_error_once() {
        let e = Outer(std::io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(one_line(&e), "reading /x: Permission denied");
        let plain = std::io::Error::other("no route");
        assert_eq!(one_line(&plain), "no route");
    }
}
