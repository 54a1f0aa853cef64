//! `rbuild`: builds OCI images from Dockerfiles and runs them, without a daemon.
//!
//! This crate is only the command line: argument parsing, progress display and turning errors
//! into one readable line. The work happens in frontend/, solver/, executor/ and cache/.

mod args;
mod commands;
mod graph;
mod interrupt;
mod progress;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    // The sandbox re-executes this binary as its init; that must win over everything else.
    if argv.get(1).map(String::as_str) == Some(executor::INIT_ARG) {
        executor::init_main(&argv);
    }
    let cli = args::Cli::parse_with_default_build(argv);
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
