//! Unpacking a layer blob into a directory in overlay format.
//!
//! A layer may come from anywhere, so extraction trusts nothing in it:
//! - entry paths are normalized; a `..` component anywhere is rejected, and absolute paths are
//!   *confined* (the leading `/` is dropped, as docker and containerd do, so `/etc/x` lands at
//!   `<layer>/etc/x`);
//! - no symlink is ever followed while writing: every parent of an entry must be a real
//!   directory inside the target (the target starts empty and only this unpacking writes to
//!   it, so every directory in it was made by this layer), checked with `lstat` component by
//!   component; an entry below a symlink is rejected; the entry itself is created with
//!   `O_NOFOLLOW`/`O_EXCL` after removing whatever the layer put there before;
//! - hardlink targets obey the same rules and must already exist inside the layer;
//! - xattrs in overlayfs's own namespaces (`trusted.overlay.*`, `user.overlay.*`) are never
//!   taken from the tar.
//!
//! In a user namespace (rootless rbuild, see [`crate::userns`]) opaque directories get
//! `user.overlay.opaque`; with a single mapped id, owners other than root stay root (as
//! containers/storage's `ignore_chown_errors`); device nodes, which cannot be made there, are
//! left out (as Docker does in a user namespace); `trusted.*` and `security.*` xattrs (other than
//! `security.capability`) the kernel refuses are left out.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::tarw::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use super::{HashingReader, decompressed};
use crate::error::{Error, IoContext, Result};
use crate::oci::Layer;

/// Unpacks `blob` (gzip, zstd or plain tar, told apart by its first bytes) into the empty directory
/// `root`, verifying the blob against `layer.digest` and the tar against `layer.diff_id`.
/// On error `root` is left half-written; the caller throws it away.
pub(super) fn unpack_blob(blob: impl Read, layer: &Layer, root: &Path) -> Result<()> {
    let name = layer.digest.to_string();
    let bad = |reason: String| Error::Layer { layer: name.clone(), reason };
    let (outer, blob_hash) = HashingReader::new(BufReader::with_capacity(256 * 1024, blob));
    let decoded = decompressed(outer).map_err(|e| bad(format!("reading the blob: {e}")))?;
    let (inner, diff_hash) = HashingReader::new(decoded);
    let mut archive = tar::Archive::new(inner);
    let mut unpacker = Unpacker { root, layer: &name, dirs: Vec::new() };
    let result = unpacker.unpack_all(&mut archive);
    // Read to the end so the hashes cover the whole stream, also after an error: a blob that
    // does not match its digest is reported as such rather than as whatever broke in it.
    let drained = io::copy(&mut archive.into_inner(), &mut io::sink());
    let digest = blob_hash.borrow().clone().finish();
    if digest != layer.digest {
        return Err(Error::DigestMismatch { expected: layer.digest.clone(), actual: digest });
    }
    result?;
    drained.map_err(|e| bad(format!("reading the blob: {e}")))?;
    let diff_id = diff_hash.borrow().clone().finish();
    if diff_id != layer.diff_id {
        return Err(bad(format!(
            "uncompressed content hashes to {diff_id}, not to its diff id {}",
            layer.diff_id
        )));
    }
    Ok(())
}

struct Unpacker<'a> {
    root: &'a Path,
    layer: &'a str,
    /// Directories and their mtimes, set once all entries are written (writing into a
    /// directory changes its mtime).
    dirs: Vec<(PathBuf, u64)>,
}

/// What one tar entry says, read out of the header and its PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Unpacker<'_> {
    fn bad(&self, entry: &str, reason: impl std::fmt::Display) -> Error {
        Error::Layer { layer: self.layer.to_string(), reason: format!("entry '{entry}': {reason}") }
    }

    fn unpack_all<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<()> {
        let entries = archive.entries().map_err(|e| Error::Layer {
            layer: self.layer.to_string(),
            reason: format!("reading the tar: {e}"),
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::Layer {
                layer: self.layer.to_string(),
                reason: format!("reading the tar: {e}"),
            })?;
            self.entry(entry)?;
        }
        for (dir, mtime) in self.dirs.iter().rev() {
            set_mtime(dir, *mtime)?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let rel = normalize(&raw).map_err(|r| self.bad(&shown, r.to_string()))?;
        let meta = self.meta(&mut entry, &shown)?;

        let Some(name) = rel.file_name().map(|n| n.as_bytes().to_vec()) else {
            // The layer's root directory itself (`./`).
            if kind != EntryType::Directory {
                return Err(self.bad(&shown, "only a directory can be the layer root"));
            }
            let root = self.root.to_path_buf();
            return self.apply_meta(&root, &meta, true, &shown);
        };
        let parent = self.ensure_parents(&rel, &shown)?;

        if name == OPAQUE_MARKER {
            return xattr::set(&parent, crate::userns::opaque_xattr(), b"y").at(&parent);
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // Other `.wh..wh.*` names are aufs bookkeeping (hardlink dirs and such) with no
                // meaning for overlayfs; docker skips them too.
                return Ok(());
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(self.bad(&shown, "invalid whiteout name"));
            }
            let target = parent.join(OsStr::from_bytes(hidden));
            remove_existing(&target)?;
            // An overlay whiteout: a character device 0/0.
            return mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .map_err(|e| Error::Io { path: target.clone(), source: e.into() });
        }

        let target = parent.join(OsStr::from_bytes(&name));
        if kind == EntryType::Link {
            let link =
                entry.link_name_bytes().ok_or_else(|| self.bad(&shown, "hardlink without a target"))?;
            let link_rel = normalize(&link).map_err(|r| self.bad(&shown, format!("hardlink target: {r}")))?;
            let source = self.existing_in_layer(&link_rel, &shown)?;
            if source == target {
                return Err(self.bad(&shown, "hardlink to itself"));
            }
            remove_existing(&target)?;
            // link(2) does not follow a symlink in its last component, and the parents of
            // both paths were checked to be real directories.
            return fs::hard_link(&source, &target).at(&target);
        }

        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() && kind == EntryType::Directory => {}
            Ok(_) => remove_existing(&target)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io { path: target, source: e }),
        }

        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&target)
                    .at(&target)?;
                self.copy_data(&mut entry, &mut file, &target, &shown)?;
                drop(file);
                self.apply_meta(&target, &meta, false, &shown)
            }
            EntryType::Directory => {
                if !super::is_dir(&target) {
                    DirBuilder::new().mode(0o700).create(&target).at(&target)?;
                }
                self.apply_meta(&target, &meta, true, &shown)
            }
            EntryType::Symlink => {
                let link =
                    entry.link_name_bytes().ok_or_else(|| self.bad(&shown, "symlink without a target"))?;
                // The target is stored as is: it is only ever resolved inside the container.
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target).at(&target)?;
                self.chown(&target, &meta, &shown)?;
                self.set_xattrs(&target, &meta)?;
                set_mtime(&target, meta.mtime)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (sflag, dev) = if kind == EntryType::Fifo {
                    (SFlag::S_IFIFO, 0)
                } else {
                    let h = entry.header();
                    let bad_dev = |e| self.bad(&shown, format!("device number: {e}"));
                    let major = h.device_major().map_err(bad_dev)?.unwrap_or(0);
                    let minor = h.device_minor().map_err(bad_dev)?.unwrap_or(0);
                    let sflag = if kind == EntryType::Char { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
                    (sflag, makedev(u64::from(major), u64::from(minor)))
                };
                match mknod(&target, sflag, Mode::from_bits_truncate(0o600), dev) {
                    // A user namespace may not make device nodes; as Docker there, leave them out.
                    Err(nix::errno::Errno::EPERM)
                        if kind != EntryType::Fifo && crate::userns::in_userns() =>
                    {
                        return Ok(());
                    }
                    r => r.map_err(|e| Error::Io { path: target.clone(), source: e.into() })?,
                }
                self.apply_meta(&target, &meta, false, &shown)
            }
            other => Err(self.bad(&shown, format!("unsupported entry type {other:?}"))),
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<Meta> {
        let h = entry.header();
        let old = h.as_old();
        let mode = number(&old.mode, h.mode().map(u64::from)).map_err(|e| self.bad(shown, e))? & 0o7777;
        // tar applies PAX uid/gid records to the header for us.
        let uid = number(&old.uid, h.uid()).map_err(|e| self.bad(shown, e))?;
        let gid = number(&old.gid, h.gid()).map_err(|e| self.bad(shown, e))?;
        let mut mtime = number(&old.mtime, h.mtime()).map_err(|e| self.bad(shown, e))?;
        let mode = u32::try_from(mode).unwrap_or(0);
        let uid = u32::try_from(uid).map_err(|_| self.bad(shown, format!("uid {uid} out of range")))?;
        let gid = u32::try_from(gid).map_err(|_| self.bad(shown, format!("gid {gid} out of range")))?;
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(|e| self.bad(shown, e))? {
            for ext in exts {
                let ext = ext.map_err(|e| self.bad(shown, e))?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if !crate::userns::is_overlay_xattr(name) && !name.is_empty() {
                        xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                    }
                } else if key == b"mtime" {
                    // `<seconds>[.<fraction>]`; whole seconds are what we keep.
                    let v = ext.value_bytes();
                    let secs = v.split(|&b| b == b'.').next().unwrap_or_default();
                    if let Some(s) = std::str::from_utf8(secs).ok().and_then(|s| s.parse::<u64>().ok()) {
                        mtime = s;
                    }
                }
            }
        }
        Ok(Meta { mode, uid, gid, mtime, xattrs })
    }

    fn copy_data(&self, from: &mut impl Read, to: &mut File, path: &Path, shown: &str) -> Result<()> {
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.bad(shown, format!("reading its data: {e}"))),
            };
            to.write_all(&buf[..n]).at(path)?;
        }
    }

    /// Owner, then mode (chown clears setuid bits), then xattrs (chown clears
    /// `security.capability`), then mtime (deferred for directories).
    fn apply_meta(&mut self, path: &Path, meta: &Meta, is_dir: bool, shown: &str) -> Result<()> {
        self.chown(path, meta, shown)?;
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode)).at(path)?;
        self.set_xattrs(path, meta)?;
        if is_dir {
            self.dirs.push((path.to_path_buf(), meta.mtime));
            Ok(())
        } else {
            set_mtime(path, meta.mtime)
        }
    }

    /// `lchown` to the entry's owner. In a user namespace, `EINVAL` means the id is not mapped:
    /// with a single mapped id that is expected (the file stays root's); with subordinate ids the
    /// id is beyond the range, which the error says.
    fn chown(&self, path: &Path, meta: &Meta, shown: &str) -> Result<()> {
        match std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && crate::userns::in_userns() => {
                if crate::userns::single_id() {
                    return Ok(());
                }
                let top = crate::userns::top_mapped_id();
                let (kind, id) =
                    if u64::from(meta.uid) > top { ("uid", meta.uid) } else { ("gid", meta.gid) };
                Err(self.bad(
                    shown,
                    format!(
                        "its {kind} {id} is not mapped in rootless rbuild's user namespace (0-{top}): widen \
                         your range in /etc/sub{kind}"
                    ),
                ))
            }
            r => r.at(path),
        }
    }

    fn set_xattrs(&self, path: &Path, meta: &Meta) -> Result<()> {
        for (name, value) in &meta.xattrs {
            match xattr::set(path, OsStr::from_bytes(name), value) {
                // In a user namespace `trusted.*` (and some `security.*`, such as SELinux labels)
                // cannot be set; they mean nothing to a rootless sandbox either.
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP))
                        && (name.starts_with(b"trusted.")
                            || (name.starts_with(b"security.") && name != b"security.capability"))
                        && crate::userns::in_userns() => {}
                r => r.at(path)?,
            }
        }
        Ok(())
    }

    /// Makes sure every parent of `rel` is a real directory under the root, creating missing
    /// ones, and returns the parent's path. Fails if any of them is not a directory (e.g. a
    /// symlink the layer created), so nothing is ever written through a symlink.
    fn ensure_parents(&self, rel: &Path, shown: &str) -> Result<PathBuf> {
        let mut cur = self.root.to_path_buf();
        for comp in rel.parent().into_iter().flat_map(Path::components) {
            cur.push(comp);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    let p = cur.strip_prefix(self.root).unwrap_or(&cur).display().to_string();
                    return Err(self.bad(shown, format!("its parent '{p}' is not a directory")));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    DirBuilder::new().mode(0o755).create(&cur).at(&cur)?;
                }
                Err(e) => return Err(Error::Io { path: cur, source: e }),
            }
        }
        Ok(cur)
    }

    /// The path of `rel`, which must exist in the layer (not being a directory) below real
    /// directories only: a hardlink's source.
    fn existing_in_layer(&self, rel: &Path, shown: &str) -> Result<PathBuf> {
        if rel.as_os_str().is_empty() {
            return Err(self.bad(shown, "hardlink to the layer root"));
        }
        let mut cur = self.root.to_path_buf();
        let comps: Vec<_> = rel.components().collect();
        for (i, comp) in comps.iter().enumerate() {
            cur.push(comp);
            let last = i + 1 == comps.len();
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() != last => {}
                _ => {
                    return Err(self.bad(
                        shown,
                        format!("hardlink target '{}' is not a file in this layer", rel.display()),
                    ));
                }
            }
        }
        Ok(cur)
    }
}

/// A layer entry name that climbs (`..`): never unpacked.
#[derive(Debug, thiserror::Error)]
#[error("path has a '..' component")]
struct DotDot;

/// `a/./b//c` -> `a/b/c`, a leading `/` dropped; an error for any `..`.
fn normalize(raw: &[u8]) -> Result<PathBuf, DotDot> {
    let mut out = PathBuf::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(DotDot),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// A numeric header field, where an empty one (all NULs or spaces, as some writers leave
/// fields they do not fill) counts as 0 as it does for other tar readers.
fn number(field: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    if field.iter().all(|&b| b == 0 || b == b' ') { Ok(0) } else { parsed }
}

/// Removes whatever is at `path` without following symlinks.
fn remove_existing(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).at(path),
        Ok(_) => fs::remove_file(path).at(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io { path: path.to_path_buf(), source: e }),
    }
}

fn set_mtime(path: &Path, mtime: u64) -> Result<()> {
    let t = TimeSpec::new(i64::try_from(mtime).unwrap_or(i64::MAX), 0);
    utimensat(AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| Error::Io { path: path.to_path_buf(), source: e.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_confines_and_rejects_dotdot() {
        assert_eq!(normalize(b"./a//b/./c/").unwrap(), PathBuf::from("a/b/c"));
        assert_eq!(normalize(b"/etc/evil").unwrap(), PathBuf::from("etc/evil"));
        assert_eq!(normalize(b"./").unwrap(), PathBuf::new());
        assert!(normalize(b"../evil").is_err());
        assert!(normalize(b"a/../../evil").is_err());
        assert!(normalize(b"a/..").is_err());
    }
}
