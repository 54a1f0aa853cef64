//! Network namespaces kept alive by a bind mount on a file (as `ip netns` does), so that the
//! monitor, `exec`, `network connect` and the sandbox can all join the same one.
//!
//! `unshare` and `setns` act on the calling thread: every step here runs on a short-lived
//! thread of its own, so the caller's thread never changes namespace.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::Error;
use super::netlink::Netlink;

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Bridge networks, veths and netns mounts need real root: rootless rbuild (uid 0 in a user
/// namespace of its own has no say over the host's interfaces) has `none` and `host`.
pub(crate) fn require_root() -> Result<(), Error> {
    if is_root() { Ok(()) } else { Err(Error::Rootless) }
}

pub(crate) fn is_root() -> bool {
    !executor::userns::is_rootless() && executor::userns::in_initial_userns()
}

/// Creates a new network namespace, bind-mounted on `path` (a file created for it), with `lo`
/// up.
pub fn create_netns(path: &Path) -> Result<(), Error> {
    require_root()?;
    make_netns(path)
}

/// [`create_netns`] in whatever user namespace the caller is in: rootless rbuild's build steps
/// (a namespace owned by rbuild's user namespace, bind-mounted in its own mount namespace).
pub(crate) fn make_netns(path: &Path) -> Result<(), Error> {
    if is_netns(path) {
        return Err(Error::Invalid(format!("{}: already a network namespace", path.display())));
    }
    OpenOptions::new().write(true).create(true).truncate(false).open(path).map_err(io_at(path))?;
    let made = std::thread::scope(|s| {
        s.spawn(|| -> Result<(), Error> {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::Io { path: path.to_path_buf(), source: e.into() })?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| Error::Io { path: path.to_path_buf(), source: e.into() })?;
            // This thread is in the new namespace: so is a socket it opens.
            let mut nl = Netlink::open()?;
            let lo = nl.link("lo")?.map(|l| l.index).ok_or_else(|| Error::Netlink {
                what: "finding lo in a new network namespace".into(),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })?;
            nl.set_up(lo)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Invalid("creating a network namespace: the thread panicked".into())))
    });
    if made.is_err() {
        let _ = remove_netns(path);
    }
    made
}

/// Unmounts and unlinks a namespace made by [`create_netns`]; nothing there is fine. The file
/// is unmounted only if it is a network namespace, so nothing else mounted there is touched.
pub fn remove_netns(path: &Path) -> Result<(), Error> {
    if is_netns(path) {
        match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(io_at(path)(e.into())),
        }
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_at(path)(e)),
        _ => Ok(()),
    }
}

/// Whether `path` is a mounted namespace file (nsfs).
pub fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Runs `f` on a thread that joined the network namespace at `netns`; sockets `f` creates
/// stay in that namespace wherever they are used afterwards.
pub fn run_in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> Result<T, Error> {
    let ns = File::open(netns).map_err(io_at(netns))?;
    if !is_netns(netns) {
        return Err(Error::Invalid(format!("{}: not a network namespace", netns.display())));
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| io_at(netns)(e.into()))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Invalid(format!("{}: the thread in the namespace panicked", netns.display())))
        })
    })
}
