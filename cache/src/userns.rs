//! What the store does differently in a user namespace (rootless rbuild, or root inside somebody
//! else's user namespace): overlayfs there must be mounted with `userxattr` and keeps its
//! metadata in `user.overlay.*` instead of `trusted.overlay.*`; only the ids the namespace maps
//! can own files; device nodes cannot be made.
//!
//! Decided from `/proc/self/uid_map`, read once per process: the process must have entered its
//! namespace (rbuild does so at the top of `main`) before the store is first used.

use std::sync::OnceLock;

/// `(inside, outside, count)` lines of this process's uid map, read once.
fn uid_map() -> &'static [(u32, u32, u32)] {
    static MAP: OnceLock<Vec<(u32, u32, u32)>> = OnceLock::new();
    MAP.get_or_init(|| parse_map(&std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default()))
}

fn parse_map(map: &str) -> Vec<(u32, u32, u32)> {
    map.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some((f.next()??, f.next()??, f.next()??))
        })
        .collect()
}

/// True when this process is in a user namespace other than the initial one. Without a readable
/// uid map (no /proc), the initial namespace is assumed.
pub fn in_userns() -> bool {
    let map = uid_map();
    !map.is_empty() && map != [(0, 0, u32::MAX)]
}

/// True in a user namespace that maps a single uid (no subordinate range): `chown` to any other
/// id fails with `EINVAL`.
pub fn single_id() -> bool {
    in_userns() && uid_map().iter().map(|&(_, _, c)| u64::from(c)).sum::<u64>() == 1
}

/// The xattr with which overlayfs marks a directory opaque.
pub fn opaque_xattr() -> &'static str {
    if in_userns() { "user.overlay.opaque" } else { "trusted.overlay.opaque" }
}

/// Whether an xattr belongs to overlayfs (in either namespace): it never goes into a layer and is
/// never taken from one (a layer must not plant redirects, metacopy or whiteout metadata).
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Extra options of a writable overlay mount: keep the upper a plain diff of the lowers (no
/// index, no redirects, no metacopy files). In a user namespace `redirect_dir=off` conflicts with
/// `userxattr` (`redirect_dir=nofollow` is the equivalent for an upper we write to).
pub fn rw_options() -> &'static str {
    if in_userns() {
        ",userxattr,index=off,redirect_dir=nofollow,metacopy=off"
    } else {
        ",index=off,redirect_dir=off,metacopy=off"
    }
}

/// Extra options of a read-only overlay mount: in a user namespace, `userxattr`, without which
/// `user.overlay.opaque` in a lower is ignored.
pub fn ro_options() -> &'static str {
    if in_userns() { ",userxattr" } else { "" }
}

/// The highest id the namespace maps (from 0 up, without gaps, as rbuild maps them).
pub fn top_mapped_id() -> u64 {
    uid_map().iter().map(|&(inside, _, c)| u64::from(inside) + u64::from(c)).max().unwrap_or(1) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_parse() {
        assert_eq!(parse_map("         0          0 4294967295\n"), vec![(0, 0, u32::MAX)]);
        assert_eq!(parse_map("0 1001 1\n1 100000 65536\n"), vec![(0, 1001, 1), (1, 100000, 65536)]);
    }

    #[test]
    fn overlay_xattrs_in_both_namespaces() {
        assert!(is_overlay_xattr(b"trusted.overlay.opaque"));
        assert!(is_overlay_xattr(b"user.overlay.origin"));
        assert!(!is_overlay_xattr(b"user.foo"));
        assert!(!is_overlay_xattr(b"security.capability"));
    }
}
