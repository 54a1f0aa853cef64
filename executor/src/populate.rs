//! Filling an empty volume from the image, as docker does on a named volume's first mount:
//! the image's directory at the mount target is copied into the volume's host directory.
//!
//! Runs in the sandbox's PID 1 before `pivot_root`, when both trees are visible and nothing of
//! the sandbox runs yet. Everything goes through directory file descriptors and `*at` calls
//! with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`: a symlink in the image is copied as a symlink and
//! never followed, so the copy cannot read or write outside the two trees.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use nix::sys::time::TimeSpec;

/// Why a volume could not be filled: the operation, the path, the OS's reason.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {}", path.display(), errno.desc())]
pub(crate) struct PopulateError {
    op: &'static str,
    path: PathBuf,
    errno: Errno,
}

/// An error of `op` on `path`, from nix.
fn pe<'a>(op: &'static str, path: &'a Path) -> impl Fn(Errno) -> PopulateError + 'a {
    move |errno| PopulateError { op, path: path.to_path_buf(), errno }
}

/// An error of `op` on `path`, from std (its OS error; EIO if it has none).
fn pe_io<'a>(op: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> PopulateError + 'a {
    move |e| PopulateError {
        op,
        path: path.to_path_buf(),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// If the directory `to` (a descriptor, `O_PATH` will do; `to_path` names it in errors) is
/// empty, copies the content of directory `from` into it and gives it the owner, mode,
/// extended attributes and times of `from`. `from`'s last component must not be a symlink.
/// Returns whether it copied.
pub(crate) fn fill_if_empty(from: &Path, to: BorrowedFd<'_>, to_path: &Path) -> Result<bool, PopulateError> {
    let dst = openat(to, c".", cloexec(OFlag::O_RDONLY | OFlag::O_DIRECTORY), Mode::empty())
        .map_err(pe("open", to_path))?;
    if !list(&dst, to_path)?.is_empty() {
        return Ok(false);
    }
    let src = open_dir_path(from)?;
    let mut copy = Copy { links: HashMap::new() };
    copy.dir(&src, &dst, from, to_path)?;
    let st = fstat(&src).map_err(pe("stat", from))?;
    set_metadata(&dst, &src, &st, to_path)?;
    Ok(true)
}

struct Copy {
    /// Files with several links, by (device, inode) in the image: where the first copy went.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Copy {
    fn dir(&mut self, src: &OwnedFd, dst: &OwnedFd, from: &Path, to: &Path) -> Result<(), PopulateError> {
        let names = list(src, from)?;
        for name in names {
            let (src_path, dst_path) = (from.join(&name), to.join(&name));
            // A directory entry's name never holds a NUL.
            let cname = CString::new(name.as_bytes()).map_err(|_| pe("read", from)(Errno::EINVAL))?;
            let st = fstatat(src, cname.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(pe("stat", &src_path))?;
            let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
            let err = |op: &'static str, e: Errno| pe(op, &dst_path)(e);
            match kind {
                SFlag::S_IFDIR => {
                    nix::sys::stat::mkdirat(dst, cname.as_c_str(), Mode::from_bits_truncate(0o700))
                        .map_err(|e| err("mkdir", e))?;
                    let sub_src = open_dir_at(src, &cname, &src_path)?;
                    let sub_dst = open_dir_at(dst, &cname, &dst_path)?;
                    self.dir(&sub_src, &sub_dst, &src_path, &dst_path)?;
                    set_metadata(&sub_dst, &sub_src, &st, &dst_path)?;
                }
                SFlag::S_IFREG => {
                    let key = (st.st_dev, st.st_ino);
                    if st.st_nlink > 1
                        && let Some(first) = self.links.get(&key)
                    {
                        nix::unistd::linkat(
                            nix::fcntl::AT_FDCWD,
                            first.as_path(),
                            dst,
                            cname.as_c_str(),
                            AtFlags::empty(),
                        )
                        .map_err(|e| err("link", e))?;
                        continue;
                    }
                    let from_file = openat(
                        src,
                        cname.as_c_str(),
                        cloexec(OFlag::O_RDONLY | OFlag::O_NOFOLLOW),
                        Mode::empty(),
                    )
                    .map_err(pe("open", &src_path))?;
                    let to_file = openat(
                        dst,
                        cname.as_c_str(),
                        cloexec(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW),
                        Mode::from_bits_truncate(0o600),
                    )
                    .map_err(|e| err("create", e))?;
                    let (mut r, mut w) = (File::from(from_file), File::from(to_file));
                    std::io::copy(&mut r, &mut w).map_err(pe_io("copy to", &dst_path))?;
                    set_metadata(&OwnedFd::from(w), &OwnedFd::from(r), &st, &dst_path)?;
                    if st.st_nlink > 1 {
                        self.links.insert(key, dst_path);
                    }
                }
                SFlag::S_IFLNK => {
                    let target =
                        nix::fcntl::readlinkat(src, cname.as_c_str()).map_err(pe("readlink", &src_path))?;
                    nix::unistd::symlinkat(target.as_os_str(), dst, cname.as_c_str())
                        .map_err(|e| err("symlink", e))?;
                    set_link_metadata(dst, &cname, &st, &dst_path)?;
                }
                // Fifos, sockets and device nodes: made anew (root may mknod outside a user
                // namespace; in one, devices fail, as they would for docker).
                _ => {
                    nix::sys::stat::mknodat(
                        dst,
                        cname.as_c_str(),
                        kind,
                        Mode::from_bits_truncate(0o600),
                        st.st_rdev,
                    )
                    .map_err(|e| err("mknod", e))?;
                    set_link_metadata(dst, &cname, &st, &dst_path)?;
                    nix::sys::stat::fchmodat(
                        dst,
                        cname.as_c_str(),
                        Mode::from_bits_truncate(st.st_mode & 0o7777),
                        nix::sys::stat::FchmodatFlags::FollowSymlink,
                    )
                    .map_err(|e| err("chmod", e))?;
                }
            }
        }
        Ok(())
    }
}

fn cloexec(flags: OFlag) -> OFlag {
    flags | OFlag::O_CLOEXEC
}

fn open_dir_path(path: &Path) -> Result<OwnedFd, PopulateError> {
    nix::fcntl::open(path, cloexec(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW), Mode::empty())
        .map_err(pe("open", path))
}

fn open_dir_at(dir: &OwnedFd, name: &CStr, path: &Path) -> Result<OwnedFd, PopulateError> {
    openat(dir, name, cloexec(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW), Mode::empty())
        .map_err(pe("open", path))
}

/// The names in an open directory, sorted (so hard links and errors come out the same each
/// time).
fn list(dir: &OwnedFd, path: &Path) -> Result<Vec<std::ffi::OsString>, PopulateError> {
    // Through the descriptor's /proc link: the directory already opened, whatever its path
    // has become.
    let fd_path = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let mut names: Vec<_> = std::fs::read_dir(&fd_path)
        .map_err(pe_io("read", path))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(pe_io("read", path))?;
    names.sort();
    Ok(names)
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (TimeSpec::new(st.st_atime, st.st_atime_nsec), TimeSpec::new(st.st_mtime, st.st_mtime_nsec))
}

/// Owner, then mode (a chown clears set-id bits), extended attributes, then times (last, as
/// every other change touches ctime and, for a directory, its entries touched mtime).
fn set_metadata(dst: &OwnedFd, src: &OwnedFd, st: &FileStat, path: &Path) -> Result<(), PopulateError> {
    let err = |op: &'static str, e: Errno| pe(op, path)(e);
    nix::unistd::fchown(dst, Some(st.st_uid.into()), Some(st.st_gid.into())).map_err(|e| err("chown", e))?;
    nix::sys::stat::fchmod(dst, Mode::from_bits_truncate(st.st_mode & 0o7777))
        .map_err(|e| err("chmod", e))?;
    copy_xattrs(src.as_fd(), dst.as_fd());
    let (atime, mtime) = times(st);
    nix::sys::stat::futimens(dst, &atime, &mtime).map_err(|e| err("set times of", e))
}

/// Owner and times of an entry that cannot be opened (a symlink, a device node, a fifo).
fn set_link_metadata(dir: &OwnedFd, name: &CStr, st: &FileStat, path: &Path) -> Result<(), PopulateError> {
    let err = |op: &'static str, e: Errno| pe(op, path)(e);
    nix::unistd::fchownat(
        dir,
        name,
        Some(st.st_uid.into()),
        Some(st.st_gid.into()),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| err("chown", e))?;
    let (atime, mtime) = times(st);
    nix::sys::stat::utimensat(dir, name, &atime, &mtime, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .map_err(|e| err("set times of", e))
}

/// Copies every extended attribute `src` has that `dst`'s filesystem takes; best effort, as
/// docker's copy (a tmpfs refuses `trusted.*` in a user namespace, say).
fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) {
    let Some(names) = xattr_call(|buf, len| {
        // SAFETY: flistxattr writes at most `len` bytes into `buf`, which has that many.
        unsafe { libc::flistxattr(src.as_raw_fd(), buf.cast(), len) }
    }) else {
        return;
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = CString::new(name) else { continue };
        let Some(value) = xattr_call(|buf, len| {
            // SAFETY: fgetxattr reads the NUL-terminated `cname` and writes at most `len`
            // bytes into `buf`, which has that many.
            unsafe { libc::fgetxattr(src.as_raw_fd(), cname.as_ptr(), buf.cast(), len) }
        }) else {
            continue;
        };
        // SAFETY: fsetxattr reads the NUL-terminated `cname` and `value.len()` bytes of `value`.
        let _ = unsafe {
            libc::fsetxattr(dst.as_raw_fd(), cname.as_ptr(), value.as_ptr().cast(), value.len(), 0)
        };
    }
}

/// Calls a size-then-fill xattr function: first with no buffer for the size, then with a
/// buffer of that size (retrying if the value grew in between). `None` on any error.
fn xattr_call(mut call: impl FnMut(*mut u8, usize) -> isize) -> Option<Vec<u8>> {
    for _ in 0..4 {
        let size = call(std::ptr::null_mut(), 0);
        if size < 0 {
            return None;
        }
        let mut buf = vec![0u8; size as usize];
        let n = call(buf.as_mut_ptr(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Some(buf);
        }
        if Errno::last() != Errno::ERANGE {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};

    use super::*;

    #[test]
    fn copies_types_modes_owners_times_and_links() {
        let tmp = tempfile::tempdir().unwrap();
        let (from, to) = (tmp.path().join("image"), tmp.path().join("volume"));
        std::fs::create_dir_all(from.join("sub/deeper")).unwrap();
        std::fs::create_dir(&to).unwrap();
        std::fs::write(from.join("file"), "hello").unwrap();
        std::fs::set_permissions(from.join("file"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::hard_link(from.join("file"), from.join("sub/again")).unwrap();
        std::fs::write(from.join("sub/deeper/x"), "x").unwrap();
        symlink("/etc/passwd", from.join("abs-link")).unwrap();
        symlink("../file", from.join("sub/rel-link")).unwrap();
        nix::unistd::mkfifo(&from.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::set_permissions(from.join("fifo"), std::fs::Permissions::from_mode(0o620)).unwrap();
        std::fs::set_permissions(&from, std::fs::Permissions::from_mode(0o751)).unwrap();
        let root = nix::unistd::Uid::effective().is_root();
        if root {
            std::os::unix::fs::lchown(from.join("sub/deeper/x"), Some(1234), Some(5678)).unwrap();
            std::os::unix::fs::lchown(from.join("abs-link"), Some(42), Some(43)).unwrap();
            std::os::unix::fs::chown(&from, Some(1000), Some(1000)).unwrap();
        }
        let old = TimeSpec::new(1_000_000_000, 5);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &from.join("sub"),
            &old,
            &old,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();

        let to_fd = open_dir_path(&to).unwrap();
        assert!(fill_if_empty(&from, to_fd.as_fd(), &to).unwrap());
        // Not empty any more: a second mount copies nothing.
        std::fs::remove_file(to.join("file")).unwrap();
        assert!(!fill_if_empty(&from, to_fd.as_fd(), &to).unwrap());
        assert!(!to.join("file").exists());
        std::fs::hard_link(to.join("sub/again"), to.join("file")).unwrap();

        let meta = |p: &str| std::fs::symlink_metadata(to.join(p)).unwrap();
        assert_eq!(std::fs::read_to_string(to.join("file")).unwrap(), "hello");
        assert_eq!(meta("file").mode() & 0o7777, 0o640);
        assert_eq!(meta("file").ino(), meta("sub/again").ino(), "hard link not kept");
        assert_eq!(std::fs::read_link(to.join("abs-link")).unwrap(), Path::new("/etc/passwd"));
        assert_eq!(std::fs::read_link(to.join("sub/rel-link")).unwrap(), Path::new("../file"));
        assert!(meta("fifo").file_type().is_fifo());
        assert_eq!(meta("fifo").mode() & 0o7777, 0o620);
        assert_eq!(meta("sub").mtime(), 1_000_000_000);
        assert_eq!(meta("").mode() & 0o7777, 0o751);
        if root {
            assert_eq!((meta("sub/deeper/x").uid(), meta("sub/deeper/x").gid()), (1234, 5678));
            assert_eq!((meta("abs-link").uid(), meta("abs-link").gid()), (42, 43));
            assert_eq!(meta("").uid(), 1000);
        }
    }

    #[test]
    fn symlinked_source_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        std::fs::create_dir(tmp.path().join("volume")).unwrap();
        symlink(tmp.path().join("real"), tmp.path().join("link")).unwrap();
        let volume = open_dir_path(&tmp.path().join("volume")).unwrap();
        let err = fill_if_empty(&tmp.path().join("link"), volume.as_fd(), Path::new("v")).unwrap_err();
        assert!(err.to_string().contains("link: "), "{err}");
    }
}
