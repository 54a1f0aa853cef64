//! `rbuild`: builds OCI images from Dockerfiles and runs them, without a daemon.
//!
//! This crate is only the command line: argument parsing, progress display and turning errors
//! into one readable line. The work happens in frontend/, solver/, executor/ and cache/.

mod args;
mod cacheopts;
mod commands;
mod container_args;
mod container_fs;
mod containers;
mod gotemplate;
mod graph;
mod images;
mod interrupt;
mod networks;
mod progress;
mod transfer;
mod transfer_progress;
mod volumes;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    // The sandbox re-executes this binary as its init; that must win over everything else.
    if argv.get(1).map(String::as_str) == Some(executor::INIT_ARG) {
        executor::init_main(&argv);
    }
    if argv.get(1).map(String::as_str) == Some(executor::EXEC_ARG) {
        executor::exec_main(&argv);
    }
    if argv.get(1).map(String::as_str) == Some(runtime::monitor::MONITOR_ARG) {
        runtime::monitor::monitor_main(&argv);
    }
    // Parsing starts no thread, and resolves the store's default (which differs rootless) while
    // the process still has its own ids.
    let cli = args::Cli::parse_with_default_build(argv);
    // Rootless: into a user namespace (root there) and a mount namespace of our own, while the
    // process is single-threaded, which unshare(CLONE_NEWUSER) requires. Nothing for root.
    if cli.command.needs_user_namespace()
        && let Err(e) = executor::userns::enter()
    {
        // A stable prefix: scripts (and the rootless test) tell "cannot run rootless here" by it.
        eprintln!("rbuild: error: rootless: {e}");
        return ExitCode::FAILURE;
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

/// Prints an error as one line: the message and its causes joined by ": ". A failed RUN's
/// last output lines come first, so the line that says what failed is the last one printed.
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
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    if let Some(hint) = rootless_hint(e, &msg) {
        msg.push_str(": ");
        msg.push_str(&hint);
    }
    eprintln!("rbuild: error: {msg}");
    let frontend_error =
        e.downcast_ref::<frontend::Error>().or_else(|| match e.downcast_ref::<solver::Error>()?.kind() {
            solver::ErrorKind::Frontend(f) => Some(f),
            _ => None,
        });
    if let Some(f) = frontend_error
        && let Some(line) = f.source_line()
    {
        eprintln!("{:>6} | {line}", f.location().line);
    }
}

/// What a rootless user can do about errors that only rootless mode causes: limits without a
/// cgroup, and ids that a single-id user namespace cannot represent (a chown to them fails with
/// EINVAL in COPY --chown, ADD, or a cache mount's uid/gid).
fn rootless_hint(e: &anyhow::Error, msg: &str) -> Option<String> {
    let rootless = executor::userns::state()?;
    let cgroup = e.chain().any(|c| {
        matches!(c.downcast_ref::<executor::Error>(), Some(executor::Error::Cgroup(c)) if c.is_permission())
    });
    if cgroup {
        return Some(
            "resource limits (--memory, --cpus, --cpu-shares, --pids-limit) need a cgroup of rbuild's own, \
             and rootless rbuild cannot create one (the cgroup hierarchies belong to root: on cgroup v1 \
             always, on cgroup v2 without systemd delegation, which rbuild does not use yet); build without \
             them, or as root"
                .to_string(),
        );
    }
    let single = matches!(rootless.mapping, executor::userns::Mapping::Single { .. });
    // COPY/ADD --chown and ADD's archive owners (solver's chown), a cache mount's uid/gid.
    let owner = msg.contains("chown") || msg.contains("cache mount");
    let chown_einval = owner && (msg.contains("EINVAL") || msg.contains("Invalid argument"));
    (single && chown_einval && !msg.contains("is not mapped")).then(|| {
        format!(
            "an id other than root (0) is not mapped in rootless rbuild's user namespace: {}",
            executor::userns::subuid_hint(rootless.user.as_deref())
        )
    })
}
