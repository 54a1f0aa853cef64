//! `/proc/self/mountinfo`: what is mounted where in this mount namespace.
//!
//! A line is `id parent major:minor root mountpoint options [optional...] - fstype source
//! superoptions`; the kernel writes space, tab, newline and backslash in paths as `\ooo`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One mount, as a line of mountinfo describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u32,
    pub parent: u32,
    /// `major:minor` of the filesystem (one per cgroup v1 hierarchy, say).
    pub dev: String,
    /// The directory of the filesystem that is mounted (`/` unless a bind mount of a subtree).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,relatime`).
    pub options: String,
    pub fstype: String,
    pub source: String,
    /// Per-filesystem options (`rw,memory` for a cgroup v1 hierarchy).
    pub super_options: String,
}

/// Parses a mountinfo text; lines that do not parse are skipped. Paths need not be UTF-8.
pub fn parse(text: impl AsRef<[u8]>) -> Vec<Mount> {
    text.as_ref().split(|&b| b == b'\n').filter_map(parse_line).collect()
}

/// This process's mounts, as `/proc/self/mountinfo` lists them (parents before children).
pub fn read() -> std::io::Result<Vec<Mount>> {
    Ok(parse(std::fs::read("/proc/self/mountinfo")?))
}

/// The mount points at or below `dir` (as given: compare with a canonical path), in the order
/// they were mounted; empty when mountinfo cannot be read.
pub fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    read().unwrap_or_default().into_iter().map(|m| m.mount_point).filter(|p| p.starts_with(dir)).collect()
}

/// Whether something is mounted exactly at `path` (canonicalized first).
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(path) = std::fs::canonicalize(path) else { return false };
    read().unwrap_or_default().iter().any(|m| m.mount_point == path)
}

fn parse_line(line: &[u8]) -> Option<Mount> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    if fields.len() < 10 {
        return None;
    }
    let text = |f: &[u8]| String::from_utf8_lossy(f).into_owned();
    // Optional fields (`shared:5`, `master:1`) run until the lone `-`.
    let dash = fields.iter().skip(6).position(|f| *f == b"-")? + 6;
    Some(Mount {
        id: text(fields[0]).parse().ok()?,
        parent: text(fields[1]).parse().ok()?,
        dev: text(fields[2]),
        root: unescape(fields[3]),
        mount_point: unescape(fields[4]),
        options: text(fields[5]),
        fstype: text(fields.get(dash + 1)?),
        source: unescape(fields.get(dash + 2)?).to_string_lossy().into_owned(),
        super_options: text(fields.get(dash + 3)?),
    })
}

/// Undoes mountinfo's octal escapes (`\040` is a space, `\134` a backslash); a backslash not
/// followed by three octal digits is itself.
pub fn unescape(field: impl AsRef<[u8]>) -> PathBuf {
    let b = field.as_ref();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unescaped() {
        assert_eq!(unescape(r"/a\040b\011c\134d"), PathBuf::from("/a b\tc\\d"));
        assert_eq!(unescape(r"/plain\04"), PathBuf::from(r"/plain\04"));
        assert_eq!(unescape(r"/x\"), PathBuf::from(r"/x\"));
    }

    #[test]
    fn lines_parse_with_and_without_optional_fields() {
        let text = "\
22 20 0:21 / /sys/fs/cgroup/memory\\040limits rw,nosuid,nodev,noexec,relatime shared:5 - cgroup cgroup rw,memory
36 25 0:32 /sub /mnt/bind rw,relatime - ext4 /dev/vda rw
garbage line
";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, PathBuf::from("/sys/fs/cgroup/memory limits"));
        assert_eq!((m[0].id, m[0].parent, m[0].dev.as_str()), (22, 20, "0:21"));
        assert_eq!((m[0].fstype.as_str(), m[0].super_options.as_str()), ("cgroup", "rw,memory"));
        assert_eq!(m[1].root, PathBuf::from("/sub"));
        assert_eq!((m[1].source.as_str(), m[1].options.as_str()), ("/dev/vda", "rw,relatime"));
    }

    #[test]
    fn paths_need_not_be_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let m = parse(b"40 25 0:50 / /mnt/\xff\\040x rw - tmpfs tmpfs rw\n");
        assert_eq!(m[0].mount_point.as_os_str().as_bytes(), b"/mnt/\xff x");
    }

    #[test]
    fn this_process_has_a_root_mount() {
        assert!(read().expect("mountinfo").iter().any(|m| m.mount_point == Path::new("/")));
        assert!(is_mount_point(Path::new("/proc")));
        assert!(!mount_points_under(Path::new("/proc")).is_empty());
    }
}
