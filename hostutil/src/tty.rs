//! Terminals: a new pty for a container or an exec'd process, and window sizes read from the
//! user's terminal and written to that pty.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// A new pseudo-terminal, both ends close-on-exec: openpty(3) leaves them inheritable, and the
/// process must get the slave only as its stdio (dup2 clears the flag there), never the master.
/// Returns (master, slave).
pub fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let pty = nix::pty::openpty(None, None)?;
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
    }
    Ok((pty.master, pty.slave))
}

/// A new pseudo-terminal from the devpts instance whose `ptmx` is at `ptmx` (a container's,
/// reached through `/proc/<pid>/root/dev/pts/ptmx`): the slave is then one of that instance's
/// (`/dev/pts/N` inside the container, where `tty` and `ttyname` find it), which a pair from
/// the host's `/dev/ptmx` is not. The slave is opened from the master (`TIOCGPTPEER`), never by
/// a path the container controls. Both ends close-on-exec. Returns (master, slave).
pub fn open_pty_at(ptmx: &std::path::Path) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use std::os::unix::fs::OpenOptionsExt;
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(ptmx)?
        .into();
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer we pass, which outlives the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor or -1.
    let slave = unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)
    };
    if slave < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor, and nothing else owns it.
    let slave = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(slave) };
    Ok((master, slave))
}

/// Rows and columns of a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// The size of the terminal `fd` refers to; `None` when it is not a terminal or reports no
/// rows (a pty nobody sized yet).
pub fn window_size(fd: impl AsFd) -> Option<WindowSize> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass, which outlives the call.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some(WindowSize { rows: ws.ws_row, cols: ws.ws_col })
}

/// Sets the size of the terminal `fd` (a pty master or slave); the kernel sends SIGWINCH to
/// the terminal's foreground process group when it changes.
pub fn set_window_size(fd: impl AsFd, size: WindowSize) -> std::io::Result<()> {
    let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the struct we pass, which outlives the call.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pty_keeps_the_size_it_is_given() {
        let (master, slave) = open_pty().expect("openpty");
        for fd in [&master, &slave] {
            let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).expect("F_GETFD");
            assert_ne!(flags & libc::FD_CLOEXEC, 0, "both ends are close-on-exec");
        }
        set_window_size(&master, WindowSize { rows: 33, cols: 120 }).expect("TIOCSWINSZ");
        assert_eq!(window_size(&slave), Some(WindowSize { rows: 33, cols: 120 }));
        let file = tempfile::tempfile().expect("temp file");
        assert_eq!(window_size(&file), None);
        assert!(set_window_size(&file, WindowSize { rows: 1, cols: 1 }).is_err());
    }
}
