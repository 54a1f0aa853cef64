//! Go's `path` package, which Docker and BuildKit write their path rules in: a Dockerfile's
//! `WORKDIR`, a mount target, a `.dockerignore` pattern and a `docker cp` path are all cleaned
//! this way, so ours must give the same strings.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Go's `path.Clean`: `.` and `..` resolved lexically, repeated slashes collapsed, no trailing
/// slash; `""` is `.`, `..` at the root stays at the root, and a relative path stays relative
/// (keeping leading `..`).
pub fn clean(path: &str) -> String {
    // Splitting at `/` keeps UTF-8 sequences whole, so the bytes are UTF-8 again.
    String::from_utf8(clean_bytes(path.as_bytes())).unwrap_or_default()
}

/// `path` made absolute, then [`clean`]ed: `a//b/./c/..` is `/a/b`, `../x` is `/x`.
pub fn clean_absolute(path: &str) -> String {
    if path.starts_with('/') { clean(path) } else { clean(&format!("/{path}")) }
}

/// [`clean_absolute`] for a path that need not be UTF-8 (a symlink's target, say).
pub fn clean_absolute_path(path: &Path) -> PathBuf {
    let mut bytes = b"/".to_vec();
    bytes.extend_from_slice(path.as_os_str().as_bytes());
    PathBuf::from(OsString::from_vec(clean_bytes(&bytes)))
}

fn clean_bytes(path: &[u8]) -> Vec<u8> {
    let rooted = path.starts_with(b"/");
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.last().is_some_and(|p| *p != b"..") {
                    parts.pop();
                } else if !rooted {
                    parts.push(b"..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join(&b'/');
    match (rooted, joined.is_empty()) {
        (true, _) => [b"/".as_slice(), &joined].concat(),
        (false, true) => b".".to_vec(),
        (false, false) => joined,
    }
}

/// Go's `path.Base`: the last element, trailing slashes ignored; `""` is `.`, `/` is `/`.
pub fn base(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from Go's own `path.TestClean`.
    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("", "."),
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            ("abc/", "abc"),
            ("abc/def/", "abc/def"),
            ("/abc/", "/abc"),
            ("//abc", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
            ("abc/../../././../def", "../../def"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn absolute_and_base() {
        assert_eq!(clean_absolute("a//b/./c/.."), "/a/b");
        assert_eq!(clean_absolute("../x"), "/x");
        assert_eq!(clean_absolute(""), "/");
        assert_eq!(clean_absolute_path(Path::new("/etc/.")), Path::new("/etc"));
        let odd = OsString::from_vec(b"a/\xff/../b".to_vec());
        assert_eq!(clean_absolute_path(Path::new(&odd)), Path::new("/a/b"));
        assert_eq!(base(""), ".");
        assert_eq!(base("/"), "/");
        assert_eq!(base("/a/b/"), "b");
        assert_eq!(base("c"), "c");
    }
}
