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
