//! `rbuild`: builds OCI images from Dockerfiles and runs them, without a daemon.
//!
//! This crate is only the command line: it parses arguments, calls the library crates (solver/
//! for builds, runtime/ for containers, cache/ and registry/ for images), and prints their
//! results and errors the way docker's CLI does.

mod annotations;
mod args;
mod cacheopts;
mod commands;
mod container_args;
mod container_fs;
mod containers;
mod contexts;
mod events;
mod graph;
mod images;
mod interrupt;
mod multiplatform;
mod networks;
mod output;
mod progress;
mod service;
mod session;
mod storelimit;
mod transfer;
mod transfer_progress;
mod volumes;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    // rbuild re-executes itself as a sandbox's init, an exec helper, a container's monitor and
    // a detached exec's waiter; that must win over everything else.
    // SAFETY: first thing in main: no thread has started.
    unsafe { runtime::process::run_hidden_entry_point(&argv) };
    // A command that starts a sandbox begins paying the kernel's cgroup-join grace period now,
    // in parallel with argument parsing and the rest of the start (see
    // executor::cgroup::warm_migrations). A wrong guess costs a few idle no-op writes.
    let _warm = may_start_sandbox(&argv).then(runtime::warm_migrations);
    // Build contexts are hashed from memory maps held under read leases; a lease break is
    // announced with SIGIO, whose default action would end rbuild. The solver releases its
    // leases by itself, so the signal is of no use: ignored here, for the whole process (the
    // solver falls back to plain reads where SIGIO is not ignored). Sandboxes and monitors reset
    // every signal to its default before they exec.
    // SAFETY: SIG_IGN installs no handler code.
    let _ =
        unsafe { nix::sys::signal::signal(nix::sys::signal::SIGIO, nix::sys::signal::SigHandler::SigIgn) };
    // Parsing starts no thread, and resolves the store's default (which differs rootless) while
    // the process still has its own ids.
    let cli = args::Cli::parse_with_default_build(argv);
    // Rootless: into a user namespace (root there) and a mount namespace of our own, while the
    // process is single-threaded. Nothing for root.
    if cli.command.needs_user_namespace() {
        // SAFETY: still single-threaded: argument parsing starts no thread.
        if let Err(e) = unsafe { runtime::process::enter_rootless() } {
            // A stable prefix: scripts (and the rootless test) tell "cannot run rootless here" by it.
            eprintln!("rbuild: error: rootless: {e}");
            return ExitCode::FAILURE;
        }
    }
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            // Like a shell: a build stopped by Ctrl-C exits 128 + SIGINT.
            let cancelled = e
                .downcast_ref::<solver::Error>()
                .is_some_and(|s| matches!(s.kind(), solver::ErrorKind::Cancelled));
            if cancelled { ExitCode::from(130) } else { ExitCode::FAILURE }
        }
    }
}

/// Whether the command line names a command that starts a container's process (the first
/// word that is one of them; global flags and their values come before it).
fn may_start_sandbox(argv: &[String]) -> bool {
    argv.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| matches!(a.as_str(), "run" | "start" | "restart" | "exec"))
}

/// An error as one line: its message, then each cause (`hostutil::errors::one_line`).
pub fn describe(e: &anyhow::Error) -> String {
    let e: &(dyn std::error::Error + 'static) = e.as_ref();
    hostutil::errors::one_line(e)
}

/// Prints an error as one line ([`describe`]), with what to do about it when the error is
/// one only rootless mode causes. A failed RUN's last output lines come first, so the line
/// that says what failed is the last one printed; a Dockerfile error shows its line under it.
fn report(e: &anyhow::Error) {
    if let Some(solver::ErrorKind::RunFailed { output_tail, .. }) =
        e.downcast_ref::<solver::Error>().map(solver::Error::kind)
        && !output_tail.is_empty()
    {
        eprintln!("------ last output lines ------");
        for line in output_tail {
            eprintln!("  {line}");
        }
        eprintln!("-------------------------------");
    }
    let mut msg = describe(e);
    let hint = e.chain().find_map(|c| {
        c.downcast_ref::<solver::Error>()
            .and_then(solver::Error::hint)
            .or_else(|| c.downcast_ref::<runtime::Error>().and_then(runtime::Error::hint))
    });
    if let Some(hint) = hint {
        msg.push_str(": ");
        msg.push_str(&hint);
    }
    eprintln!("rbuild: error: {msg}");
    let frontend_error = e.chain().find_map(|c| {
        c.downcast_ref::<frontend::Error>().or_else(|| match c.downcast_ref::<solver::Error>()?.kind() {
            solver::ErrorKind::Frontend(f) => Some(f),
            _ => None,
        })
    });
    if let Some(f) = frontend_error
        && let Some(line) = f.source_line()
    {
        eprintln!("{:>6} | {line}", f.location().line);
    }
}
