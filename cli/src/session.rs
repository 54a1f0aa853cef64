//! The user's terminal while a container (`run`, `start -a`, `attach`) or an exec'd process
//! runs in the foreground: stdio relayed, the terminal raw with `-t` and its size passed on,
//! signals forwarded (docker's sig-proxy). What runs and how is runtime's business; this is
//! only the front end's half of the conversation.

use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use hostutil::tty::window_size;
use runtime::attach::{ClientFrame, MonitorFrame};
use runtime::container::{Container, Containers};
use runtime::lifecycle;

/// The terminal in raw mode while a `-t` session lasts; restored when dropped.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return RawTerminal(None);
        }
        let Ok(saved) = tcgetattr(stdin.as_fd()) else { return RawTerminal(None) };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ =
                nix::sys::termios::tcsetattr(io::stdin().as_fd(), nix::sys::termios::SetArg::TCSANOW, saved);
        }
    }
}

/// Rows and columns of the user's terminal (the one on stdout).
fn terminal_size() -> Option<(u16, u16)> {
    window_size(io::stdout()).map(|w| (w.rows, w.cols))
}

/// The signals `run`/`attach` forward to the container (docker's sig-proxy), and SIGWINCH.
fn proxied_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::Signal::*;
    let mut set = nix::sys::signal::SigSet::empty();
    for s in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH] {
        set.add(s);
    }
    set
}

/// Relays stdio between this terminal and an attached container until it exits; its exit code.
pub fn attached(
    root: &Path,
    c: &Container,
    stream: UnixStream,
    tty: bool,
    stdin: bool,
    sig_proxy: bool,
) -> Result<i32> {
    let writer = Arc::new(Mutex::new(stream.try_clone().context("attach socket")?));
    // Blocked here, before any thread starts, so that only the signal thread receives them.
    let signals = proxied_signals();
    let _ = signals.thread_block();
    if sig_proxy {
        // A shell starts a background job (`rbuild run ... &`) with SIGINT and SIGQUIT ignored,
        // and an ignored signal is never pending, so sigwait would not see it: as docker's
        // CLI, take them back (they stay blocked, so only the signal thread gets them).
        for sig in signals.iter() {
            // SAFETY: SIG_DFL installs no handler; the signal is blocked in this thread and in
            // every thread it starts.
            let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
        }
    }
    let _raw = if tty { Some(RawTerminal::enter()) } else { None };
    if tty && let Some((rows, cols)) = terminal_size() {
        let _ = ClientFrame::Resize { rows, cols }
            .write_to(&mut *writer.lock().unwrap_or_else(|p| p.into_inner()));
    }
    {
        let writer = writer.clone();
        let root = root.to_path_buf();
        let id = c.id().clone();
        std::thread::spawn(move || {
            loop {
                let Ok(sig) = signals.wait() else { return };
                if sig == nix::sys::signal::Signal::SIGWINCH {
                    if tty && let Some((rows, cols)) = terminal_size() {
                        let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                        let _ = ClientFrame::Resize { rows, cols }.write_to(&mut *w);
                    }
                    continue;
                }
                if sig_proxy
                    && let Ok(containers) = Containers::open(&root)
                    && let Ok(c) = containers.load(&id)
                {
                    let _ = lifecycle::signal(&c, sig);
                }
            }
        });
    }
    if stdin {
        let writer = writer.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            let mut input = io::stdin().lock();
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = ClientFrame::StdinClose
                            .write_to(&mut *writer.lock().unwrap_or_else(|p| p.into_inner()));
                        return;
                    }
                    Ok(n) => {
                        let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                        if ClientFrame::Stdin(buf[..n].to_vec()).write_to(&mut *w).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    let mut reader = stream;
    let mut out = io::stdout();
    let mut err = io::stderr();
    loop {
        match MonitorFrame::read_from(&mut reader) {
            Ok(Some(MonitorFrame::Stdout(d))) => {
                let _ = out.write_all(&d);
                let _ = out.flush();
            }
            Ok(Some(MonitorFrame::Stderr(d))) => {
                let _ = err.write_all(&d);
            }
            Ok(Some(MonitorFrame::Started)) => {}
            Ok(Some(MonitorFrame::Error(m))) => {
                return Err(runtime::Error::from_start_failure_text(&m).into());
            }
            Ok(Some(MonitorFrame::Exit(code))) => return Ok(code),
            // The monitor went away without a word: read what the state says.
            Ok(None) | Err(_) => {
                let containers = Containers::open(root)?;
                return match containers.load(c.id()) {
                    Ok(c) => {
                        let c = lifecycle::refresh(&containers, c)?;
                        if c.is_running() {
                            Ok(lifecycle::wait(root, c.id().as_str())?)
                        } else {
                            Ok(c.state.exit_code)
                        }
                    }
                    Err(_) => Ok(0),
                };
            }
        }
    }
}

/// The request's terminal size: this terminal's.
pub fn exec_size() -> Option<(u16, u16)> {
    terminal_size()
}

/// Relays this terminal to an exec'd process's pseudo-terminal (raw, resized with this one,
/// stdin with `interactive`) until the process ends; its exit code. Signals that would stop
/// rbuild (SIGINT...) reach the process as the terminal's bytes instead, as under docker.
pub fn exec_tty(exec: runtime::exec::Exec, interactive: bool) -> Result<i32> {
    let Some(master) = exec.terminal.as_ref().map(|t| t.try_clone()).transpose()? else {
        return Ok(exec.wait()?);
    };
    let signals = proxied_signals();
    let _ = signals.thread_block();
    let _raw = RawTerminal::enter();
    let mut from = master.try_clone()?;
    let resize = master.try_clone()?;
    std::thread::spawn(move || {
        while let Ok(sig) = signals.wait() {
            if sig == nix::sys::signal::Signal::SIGWINCH
                && let Some((rows, cols)) = terminal_size()
            {
                let _ = runtime::exec::resize(&resize, rows, cols);
            }
        }
    });
    if interactive {
        let mut to = master.try_clone()?;
        std::thread::spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut to);
        });
    }
    let pump = std::thread::spawn(move || {
        let mut out = io::stdout();
        let mut buf = vec![0u8; 32 * 1024];
        // EIO once the process's side of the terminal is closed.
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = out.flush();
        }
    });
    let code = exec.wait()?;
    drop(master);
    let _ = pump.join();
    Ok(code)
}
