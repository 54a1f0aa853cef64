//! What the store does differently in a user namespace (rootless rbuild, or root inside somebody
//! else's user namespace): overlayfs there must be mounted with `userxattr` and keeps its
//! metadata in `user.overlay.*` instead of `trusted.overlay.*`; only the ids the namespace maps
//! can own files; device nodes cannot be made.
//!
//! Decided from `/proc/self/uid_map`, read once per process: the process must have entered its
//! namespace (rbuild does so at the top of `main`) before the store is first used.

use std::sync::OnceLock;

use hostutil::idmap::{IdKind, IdMap};

/// This process's uid map, read once; `None` without /proc (the initial namespace is assumed).
fn uid_map() -> Option<&'static IdMap> {
    static MAP: OnceLock<Option<IdMap>> = OnceLock::new();
    MAP.get_or_init(|| IdMap::of_self(IdKind::Uid)).as_ref()
}

/// True when this process is in a user namespace other than the initial one.
pub fn in_userns() -> bool {
    uid_map().is_some_and(|m| !m.is_identity())
}

/// True in a user namespace that maps a single uid (no subordinate range): `chown` to any other
/// id fails with `EINVAL`.
pub fn single_id() -> bool {
    in_userns() && uid_map().is_some_and(|m| m.count() == 1)
}

/// The xattr with which overlayfs marks a directory opaque.
pub fn opaque_xattr() -> &'static str {
    if in_userns() { "user.overlay.opaque" } else { "trusted.overlay.opaque" }
}

/// Whether `meta` is overlayfs's whiteout: a character device 0:0.
pub fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether overlayfs marked the directory `path` opaque (in the store's xattr namespace). A
/// file system without xattrs has no opaque directories; any other failure to read is an error.
pub fn is_opaque(path: &std::path::Path) -> std::io::Result<bool> {
    match xattr::get(path, opaque_xattr()) {
        Ok(v) => Ok(v.as_deref() == Some(b"y")),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(false),
        Err(e) => Err(e),
    }
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
    uid_map().map_or(u64::from(u32::MAX) - 1, IdMap::top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_xattrs_in_both_namespaces() {
        assert!(is_overlay_xattr(b"trusted.overlay.opaque"));
        assert!(is_overlay_xattr(b"user.overlay.origin"));
        assert!(!is_overlay_xattr(b"user.foo"));
        assert!(!is_overlay_xattr(b"security.capability"));
    }
}
