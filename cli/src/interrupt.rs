//! Ctrl-C (SIGINT) and SIGTERM during a build: instead of dying on the spot (which would leave
//! a mounted snapshot behind), rbuild raises the solver's cancel flag; the solver kills the
//! running sandboxes, drops its snapshots and returns "build cancelled".

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static CANCEL: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // A second Ctrl-C means "now": restore the default action so the next one kills us.
    if CANCEL.swap(true, Ordering::SeqCst) {
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: sigaction is async-signal-safe; installing SIG_DFL runs no Rust code.
        unsafe {
            let _ = sigaction(Signal::SIGINT, &default);
        }
    }
}

/// Installs the handlers (once) and returns the flag they raise.
pub fn install() -> &'static AtomicBool {
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only touches an atomic (and sigaction), which is
        // async-signal-safe.
        unsafe {
            let _ = sigaction(sig, &action);
        }
    }
    &CANCEL
}
