//! The sandbox's side of the network: the supervisor joins the namespace it was given (a
//! container's, or the one rbuild made for a build step), and PID 1 brings up `lo` in a new one.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sched::CloneFlags;

use super::{Result, fail, io, os};

/// Joins the network namespace at `path`, before the supervisor unshares the others.
pub(super) fn join(path: &Path) -> Result<()> {
    let step = format!("join the network namespace {}", path.display());
    let ns = File::open(path).map_err(io(step.clone()))?;
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(os(step))
}

pub(super) fn loopback_up() -> Result<()> {
    // SAFETY: plain socket(2) call; the returned fd is checked and then owned by OwnedFd.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(fail("bring up lo: socket", Errno::last().desc()));
    }
    // SAFETY: `sock` is a fresh fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain old data, for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write only the `ifreq` we pass, which lives
    // across the calls; ifru_flags is the union member these requests use.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(fail("bring up lo: get flags", Errno::last().desc()));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(fail("bring up lo: set flags", Errno::last().desc()));
        }
    }
    Ok(())
}
