//! Paths inside a root directory, resolved as if the process were chrooted there: `..` stops
//! at the root and symlinks, absolute or relative, are followed *within* it. An image's
//! `/usr/local -> /opt` is `ROOT/opt`, and a symlink to `/etc/passwd` in a build context, an
//! image layer or a container is never the host's.
//!
//! Two entry points, one rule:
//! - [`open`] lets the kernel resolve (`openat2` with `RESOLVE_IN_ROOT`): for trees that a
//!   running process may change under us (a running container's root), where only a lookup
//!   the kernel does in one go is safe;
//! - [`resolve`] and [`resolve_stacked`] return a path, for trees nobody else changes while
//!   rbuild works in them (a snapshot a build step mounted, a rootfs before its process
//!   starts), where the last component may not exist yet (a file about to be created), and
//!   for stacked layer directories read as overlayfs would show them, which no kernel call
//!   resolves. They follow the same rule by hand; a test holds the two to the same answers.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::Mode;

/// Symlinks followed in one resolution before it fails with `ELOOP`, as the kernel's limit.
const MAX_LINKS: usize = 40;

/// `path` resolved inside `root`: `root` joined with what [`resolve_stacked`] gives for the
/// single directory `root`. Symlinks in every component, the last included, are followed;
/// the part of the path that does not exist is appended as written (cleaned).
pub fn resolve(root: &Path, path: &Path) -> io::Result<PathBuf> {
    Ok(root.join(resolve_stacked(&[root], path)?))
}

/// `path` resolved through stacked directories `dirs` (topmost first, as overlayfs stacks
/// layers): each component is what the topmost directory having it says, so a symlink in an
/// upper layer hides a directory below it. Returns the resolved path relative to the root.
pub fn resolve_stacked(dirs: &[&Path], path: &Path) -> io::Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut pending: VecDeque<OsString> = names(path).collect();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let top = dirs.iter().find_map(|d| {
            let p = d.join(&candidate);
            std::fs::symlink_metadata(&p).ok().map(|m| (p, m))
        });
        match top {
            Some((at, m)) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(at)?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut next: VecDeque<OsString> = names(&target).collect();
                next.extend(pending);
                pending = next;
            }
            _ => resolved = candidate,
        }
    }
    Ok(resolved)
}

/// The components of `path` as plain names and `..`, dropping `/` and `.`.
fn names(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

/// Opens `path` inside the directory `root` (an `O_PATH` or `O_DIRECTORY` descriptor), the
/// kernel resolving every component in the root (`RESOLVE_IN_ROOT`, and no magic links such as
/// `/proc/self/root`). `flags` are `open(2)`'s; `O_NOFOLLOW` leaves a symlink in the last
/// component unfollowed, as usual. Always close-on-exec.
///
/// On a kernel without `openat2` (before 5.6) the path is resolved with [`resolve`] and then
/// opened, which is only as safe as the tree is still.
pub fn open(root: impl AsFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let flags = flags | OFlag::O_CLOEXEC;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // EAGAIN: a rename elsewhere in the tree raced with the lookup; the kernel asks for a retry
    // rather than risk a wrong answer.
    for _ in 0..64 {
        match openat2(root.as_fd(), path, how) {
            Err(Errno::EAGAIN) => continue,
            Err(Errno::ENOSYS) => return open_resolved(root, path, flags),
            r => return r,
        }
    }
    Err(Errno::EAGAIN)
}

/// [`open`] without `openat2`: the root's path from /proc, [`resolve`], then a plain open.
fn open_resolved(root: impl AsFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let root = std::fs::read_link(format!("/proc/self/fd/{}", root.as_fd().as_raw_fd()))
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let io_errno = |e: io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let target = if flags.contains(OFlag::O_NOFOLLOW) {
        // Resolve the parent; the last name is opened as it is.
        let name = names(path).last();
        match name {
            Some(n) if n != ".." => {
                resolve(&root, path.parent().unwrap_or(Path::new("/"))).map_err(io_errno)?.join(n)
            }
            _ => resolve(&root, path).map_err(io_errno)?,
        }
    } else {
        resolve(&root, path).map_err(io_errno)?
    };
    openat(nix::fcntl::AT_FDCWD, &target, flags, Mode::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// A tree with the symlinks that try to leave it.
    fn nasty_tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("temp dir");
        let r = root.path();
        fs::create_dir_all(r.join("opt/x/bin")).unwrap();
        fs::create_dir_all(r.join("usr")).unwrap();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        symlink("/opt/x", r.join("usr/local")).unwrap();
        symlink("../../../../../etc", r.join("up")).unwrap();
        symlink("/etc/passwd", r.join("abs")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        root
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let root = nasty_tree();
        let r = root.path();
        assert_eq!(resolve(r, Path::new("/usr/local/bin")).unwrap(), r.join("opt/x/bin"));
        assert_eq!(resolve(r, Path::new("up/passwd")).unwrap(), r.join("etc/passwd"));
        assert_eq!(resolve(r, Path::new("../../a")).unwrap(), r.join("a"));
        assert_eq!(resolve(r, Path::new("/abs")).unwrap(), r.join("etc/passwd"));
        assert_eq!(resolve(r, Path::new("/usr/local/new/file")).unwrap(), r.join("opt/x/new/file"));
        assert_eq!(resolve(r, Path::new("loop1")).unwrap_err().raw_os_error(), Some(libc::ELOOP));
    }

    /// What the kernel's `RESOLVE_IN_ROOT` finds is what `resolve` computes.
    #[test]
    fn open_and_resolve_agree() {
        let root = nasty_tree();
        let r = fs::canonicalize(root.path()).unwrap();
        let dir = fs::File::open(&r).unwrap();
        for p in ["/usr/local/bin", "up/passwd", "../../etc", "/abs", "usr/local/../../etc/passwd"] {
            let fd = open(&dir, Path::new(p), OFlag::O_PATH).unwrap_or_else(|e| panic!("open {p}: {e}"));
            let opened = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
            assert_eq!(opened, resolve(&r, Path::new(p)).unwrap(), "{p}");
            let by_hand = open_resolved(&dir, Path::new(p), OFlag::O_PATH | OFlag::O_CLOEXEC).unwrap();
            assert_eq!(fs::read_link(format!("/proc/self/fd/{}", by_hand.as_raw_fd())).unwrap(), opened);
        }
        let link = open(&dir, Path::new("/abs"), OFlag::O_PATH | OFlag::O_NOFOLLOW).unwrap();
        assert_eq!(fs::read_link(format!("/proc/self/fd/{}", link.as_raw_fd())).unwrap(), r.join("abs"));
        assert_eq!(open(&dir, Path::new("/missing"), OFlag::O_PATH).unwrap_err(), Errno::ENOENT);
    }
}
