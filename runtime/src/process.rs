//! What the `rbuild` process does before any command: become the hidden helper it was
//! re-executed as (a sandbox's init, an exec helper, a container's monitor, a detached exec's
//! waiter), and, run by a user other than root, move into its user namespace. The binary calls
//! both first thing in `main`, while it is still single-threaded.

use std::fs::File;
use std::path::PathBuf;

pub use executor::userns::EnterError as RootlessError;

/// If `argv[1]` names one of rbuild's hidden entry points, runs it; it never returns then.
/// Returns (doing nothing) for any other command line.
///
/// # Safety
///
/// The process must be single-threaded: the sandbox's init and the exec helper fork and enter
/// namespaces, which `unshare(CLONE_NEWUSER)`, `setns` into a mount namespace and a forked copy
/// of a multi-threaded process do not allow. Call it at the top of `main`, before any thread
/// starts.
pub unsafe fn run_hidden_entry_point(argv: &[String]) {
    match argv.get(1).map(String::as_str) {
        // SAFETY: our caller guarantees a single-threaded process.
        Some(executor::INIT_ARG) => unsafe { executor::init_main(argv) },
        // SAFETY: as above.
        Some(executor::EXEC_ARG) => unsafe { executor::exec_main(argv) },
        Some(crate::monitor::MONITOR_ARG) => crate::monitor::monitor_main(argv),
        Some(crate::exec::DETACHED_ARG) => crate::exec::detached_main(argv),
        _ => {}
    }
}

/// Rootless: enters a user namespace (where this process is root) and a mount namespace of its
/// own; nothing for root. See executor's `userns` for the id maps.
///
/// # Safety
///
/// The process must be single-threaded (`unshare(CLONE_NEWUSER)` refuses a multi-threaded
/// caller, and the subordinate-id helper is forked).
pub unsafe fn enter_rootless() -> Result<(), RootlessError> {
    // SAFETY: our caller guarantees a single-threaded process.
    unsafe { executor::userns::enter() }.map(|_| ())
}

/// The store's default place: `/var/lib/rbuild` for root; rootless, the XDG data directory
/// (`$XDG_DATA_HOME` if absolute, as the XDG spec wants, else `$HOME/.local/share`, else the
/// home directory in the password database) + `rbuild`. Evaluated before rbuild enters its user
/// namespace, where getpwuid would answer for root.
pub fn default_store_root() -> PathBuf {
    if !executor::userns::is_rootless() {
        return PathBuf::from("/var/lib/rbuild");
    }
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let home = || {
        std::env::var_os("HOME").and_then(absolute).or_else(|| {
            let user = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten()?;
            Some(user.dir).filter(|p| p.is_absolute() && executor::userns::state().is_none())
        })
    };
    std::env::var_os("XDG_DATA_HOME")
        .and_then(absolute)
        .or_else(|| home().map(|h| h.join(".local/share")))
        .map_or_else(|| PathBuf::from("/var/lib/rbuild"), |d| d.join("rbuild"))
}

/// The `N` arguments after `marker` on a hidden entry point's command line, the last of them a
/// pipe's write end passed by number (`ROOT ... FD`), taken over. Only rbuild itself starts
/// these entry points: anything else is a usage error that exits 2 after one line.
pub(crate) fn hidden_entry_args<const N: usize>(args: &[String], marker: &str) -> ([String; N], File) {
    let usage = || -> ! {
        eprintln!("rbuild: {marker} is started by rbuild itself");
        std::process::exit(2)
    };
    let pos = args.iter().position(|a| a == marker).unwrap_or_else(|| usage());
    let given = args.get(pos + 1..pos + 1 + N).unwrap_or_else(|| usage());
    let rest: [String; N] = std::array::from_fn(|i| given[i].clone());
    let fd = match rest.last().map(|f| f.parse::<i32>()) {
        Some(Ok(fd)) if fd > 2 => fd,
        _ => usage(),
    };
    // SAFETY: the rbuild that started this process passed that pipe end for us alone (it is
    // not one of the standard descriptors, checked above); nothing else here owns it.
    let ready = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    (rest, ready)
}

/// Reaps `child` (a container's monitor, a detached exec's waiter) from a thread of its own, so
/// that a caller that lives on (the API service) keeps no zombie, which `kill(pid, 0)` would
/// find alive. The thread blocks every signal: a front end that waits for signals with sigwait
/// (`rbuild run` relays SIGINT and SIGWINCH) must not have them delivered to it instead.
pub(crate) fn reap_in_background(mut child: std::process::Child) {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    let mut old = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), Some(&mut old)).is_ok();
    // The new thread inherits this thread's mask: all blocked from its first instruction.
    std::thread::spawn(move || child.wait());
    if blocked {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}
