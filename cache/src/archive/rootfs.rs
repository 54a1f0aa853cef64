//! An image's root filesystem, flattened: its layers stacked with whiteouts applied, written to
//! a directory or as one tar (`build --output type=local|tar`).
//!
//! The layers are unpacked as they are for any build ([`Store::layer_dir`]) and mounted
//! read-only as one overlay ([`Store::mount_readonly`]), so the kernel applies whiteouts and
//! opaque directories exactly as a container sees them. The view is then walked in name order:
//! regular files, directories, symlinks, hardlinks (by inode), fifos and device nodes, with
//! owners, modes, mtimes and xattrs (other than overlayfs's own). A single-layer image is a
//! bind mount of the layer directory, where overlay-format whiteouts (0/0 character devices)
//! would show; they are skipped, as overlayfs would hide them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use crate::Store;
use crate::error::{Error, IoContext, Result};
use crate::oci::Image;

impl Store {
    /// Writes the root filesystem of `image` into the directory `dest` (created if missing).
    /// What `dest` already holds is replaced where the image has the same path, never written
    /// through: a symlink in `dest` where the image has a directory is replaced by the directory.
    pub fn export_rootfs(&self, image: &Image, dest: &Path) -> Result<()> {
        fs::create_dir_all(dest).at(dest)?;
        let view = self.mount_readonly(&image.layers())?;
        let mut sink = DirSink { dest: dest.to_path_buf(), dirs: Vec::new() };
        walk(view.path(), &mut sink)?;
        sink.finish()
    }

    /// Writes the root filesystem of `image` as one tar stream to `out` (entries in name order,
    /// owners and mtimes as in the image, xattrs as PAX `SCHILY.xattr.*` records).
    pub fn export_rootfs_tar(&self, image: &Image, out: impl Write) -> Result<()> {
        let view = self.mount_readonly(&image.layers())?;
        let mut tar = tar::Builder::new(out);
        let mut sink = TarSink { tar: &mut tar, what: PathBuf::from("(rootfs tar)") };
        walk(view.path(), &mut sink)?;
        tar.finish().map_err(|e| Error::Io { path: PathBuf::from("(rootfs tar)"), source: e })
    }
}

/// One entry of the flattened rootfs.
struct Item<'a> {
    /// Where it is in the mounted view.
    src: &'a Path,
    /// Its path relative to the root.
    rel: &'a Path,
    meta: &'a fs::Metadata,
    /// For a hardlink: the earlier path (relative) with the same inode.
    link_to: Option<&'a Path>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

trait Sink {
    fn put(&mut self, item: &Item<'_>) -> Result<()>;
}

fn walk(root: &Path, sink: &mut impl Sink) -> Result<()> {
    let mut inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let walker = walkdir::WalkDir::new(root).min_depth(1).follow_links(false).sort_by_file_name();
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| root.to_path_buf());
            Error::Io { path, source: e.into_io_error().unwrap_or_else(|| io::Error::other("walk failed")) }
        })?;
        let src = entry.path();
        let meta = fs::symlink_metadata(src).at(src)?;
        let ft = meta.file_type();
        if crate::userns::is_whiteout(&meta) {
            continue; // an overlay whiteout (see the module docs)
        }
        let rel = src.strip_prefix(root).expect("walkdir stays under its root");
        let mut link_to = None;
        if !ft.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            match inodes.get(&key) {
                Some(first) => link_to = Some(first.clone()),
                None => {
                    inodes.insert(key, rel.to_path_buf());
                }
            }
        }
        let xattrs = if ft.is_symlink() { Vec::new() } else { read_xattrs(src)? };
        sink.put(&Item { src, rel, meta: &meta, link_to: link_to.as_deref(), xattrs })?;
    }
    Ok(())
}

/// The xattrs of `path` but overlayfs's own (`trusted.overlay.*`, `user.overlay.*`).
fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io { path: path.to_path_buf(), source: e }),
    };
    let mut out = Vec::new();
    for name in names {
        let n = name.as_bytes();
        if n.starts_with(b"trusted.overlay.") || n.starts_with(b"user.overlay.") {
            continue;
        }
        if let Some(value) = xattr::get(path, &name).at(path)? {
            out.push((n.to_vec(), value));
        }
    }
    Ok(out)
}

struct TarSink<'a, W: Write> {
    tar: &'a mut tar::Builder<W>,
    what: PathBuf,
}

impl<W: Write> Sink for TarSink<'_, W> {
    fn put(&mut self, item: &Item<'_>) -> Result<()> {
        let io_err = |source| Error::Io { path: self.what.clone(), source };
        let meta = item.meta;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        h.set_mode(meta.mode() & 0o7777);
        h.set_size(0);
        if !item.xattrs.is_empty() {
            let records: Vec<(String, &[u8])> = item
                .xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)), v.as_slice()))
                .collect();
            self.tar.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v))).map_err(io_err)?;
        }
        let ft = meta.file_type();
        if let Some(first) = item.link_to {
            h.set_entry_type(tar::EntryType::Link);
            return self.tar.append_link(&mut h, item.rel, first).map_err(io_err);
        }
        if ft.is_symlink() {
            let target = fs::read_link(item.src).at(item.src)?;
            return self.tar.append_link(&mut h, item.rel, target).map_err(io_err);
        }
        if ft.is_char_device() || ft.is_block_device() {
            let rdev = meta.rdev();
            h.set_device_major(libc::major(rdev)).map_err(io_err)?;
            h.set_device_minor(libc::minor(rdev)).map_err(io_err)?;
        }
        if ft.is_file() {
            let f = File::open(item.src).at(item.src)?;
            h.set_size(meta.len());
            return self.tar.append_data(&mut h, item.rel, io::Read::take(f, meta.len())).map_err(io_err);
        }
        self.tar.append_data(&mut h, item.rel, io::empty()).map_err(io_err)
    }
}

struct DirSink {
    dest: PathBuf,
    /// Directories with their mode and mtime, set last (writing into a directory changes its
    /// mtime, and a read-only directory could not be written into).
    dirs: Vec<(PathBuf, u32, i64, i64)>,
}

impl DirSink {
    fn finish(self) -> Result<()> {
        for (dir, mode, secs, nanos) in self.dirs.iter().rev() {
            fs::set_permissions(dir, fs::Permissions::from_mode(*mode)).at(dir)?;
            set_times(dir, *secs, *nanos)?;
        }
        Ok(())
    }
}

/// Removes whatever is at `path` (nothing there is fine).
fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).at(path),
        Ok(_) => fs::remove_file(path).at(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io { path: path.to_path_buf(), source: e }),
    }
}

fn set_times(path: &Path, secs: i64, nanos: i64) -> Result<()> {
    let t = TimeSpec::new(secs, nanos);
    utimensat(AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| Error::Io { path: path.to_path_buf(), source: e.into() })
}

impl Sink for DirSink {
    fn put(&mut self, item: &Item<'_>) -> Result<()> {
        // Parents come before their children in the walk and were made (or checked to be real
        // directories) by this export, so nothing below is written through a symlink.
        let path = self.dest.join(item.rel);
        let meta = item.meta;
        let ft = meta.file_type();
        if ft.is_dir() {
            if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                remove_any(&path)?;
                fs::create_dir(&path).at(&path)?;
            }
            // Writable by us until the end, whatever the image's mode.
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).at(&path)?;
        } else {
            remove_any(&path)?;
            if let Some(first) = item.link_to {
                let first = self.dest.join(first);
                fs::hard_link(&first, &path).at(&path)?;
                return Ok(());
            } else if ft.is_symlink() {
                let target = fs::read_link(item.src).at(item.src)?;
                std::os::unix::fs::symlink(&target, &path).at(&path)?;
            } else if ft.is_file() {
                let mut from = File::open(item.src).at(item.src)?;
                let mut to = fs::OpenOptions::new().write(true).create_new(true).open(&path).at(&path)?;
                io::copy(&mut from, &mut to).at(&path)?;
            } else {
                let kind = if ft.is_fifo() {
                    SFlag::S_IFIFO
                } else if ft.is_char_device() {
                    SFlag::S_IFCHR
                } else if ft.is_block_device() {
                    SFlag::S_IFBLK
                } else {
                    return Ok(()); // sockets: nothing to write
                };
                mknod(&path, kind, Mode::from_bits_truncate(0o600), meta.rdev())
                    .map_err(|e| Error::Io { path: path.clone(), source: e.into() })?;
            }
        }
        nix::unistd::fchownat(
            AT_FDCWD,
            &path,
            Some(Uid::from_raw(meta.uid())),
            Some(Gid::from_raw(meta.gid())),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::Io { path: path.clone(), source: e.into() })?;
        for (name, value) in &item.xattrs {
            xattr::set(&path, OsStr::from_bytes(name), value).at(&path)?;
        }
        if ft.is_dir() {
            self.dirs.push((path, meta.mode() & 0o7777, meta.mtime(), meta.mtime_nsec()));
            return Ok(());
        }
        if !ft.is_symlink() {
            // After chown, which clears set-id bits.
            fs::set_permissions(&path, fs::Permissions::from_mode(meta.mode() & 0o7777)).at(&path)?;
        }
        set_times(&path, meta.mtime(), meta.mtime_nsec())
    }
}
