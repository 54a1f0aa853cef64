//! The process tree: the supervisor enters the namespaces and forks PID 1, which forks the
//! command (or, spawned, becomes it); reports travel back up as [`Report`]s. Every process
//! here is single-threaded, so each may fork and keep running Rust code in the child.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sched::unshare;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2};

use super::{Failure, Report, Result, fail, in_userns, io, network, os, prepare_pid1, send};
use crate::ExitStatus;
use crate::spec::Plan;

/// The supervisor's namespaces: the network namespace to join, then new ones for PID 1.
fn enter_namespaces(plan: &Plan) -> Result<()> {
    in_userns();
    if let Some(path) = &plan.join_net {
        network::join(path)?;
    }
    unshare(plan.namespaces).map_err(os("unshare namespaces"))?;
    // Private, so that none of our mounts (nor our unmount of the old root) reach the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(os("make / private"))
}

/// The supervisor: new namespaces, then PID 1, whose report it relays.
pub(super) fn supervise(plan: Plan) -> Result<ExitStatus> {
    enter_namespaces(&plan)?;
    let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC).map_err(os("create report pipe"))?;
    // SAFETY: this process is single-threaded (the re-exec'd init), so the child may run
    // arbitrary code after fork.
    match unsafe { fork() }.map_err(os("fork the sandbox's PID 1"))? {
        ForkResult::Child => {
            drop(report_r);
            let report = match pid1(&plan) {
                Ok(status) => Report::Ended(status),
                Err(f) => Report::Failed { step: f.step, message: f.message },
            };
            let code = match serde_json::to_vec(&report) {
                Ok(json) if File::from(report_w).write_all(&json).is_ok() => 0,
                _ => 1,
            };
            std::process::exit(code)
        }
        ForkResult::Parent { child } => {
            drop(report_w);
            let mut json = Vec::new();
            let read = File::from(report_r).read_to_end(&mut json);
            let pid1_status = wait_for(child).map_err(os("wait for the sandbox's PID 1"))?;
            read.map_err(io("read the report of the sandbox's PID 1"))?;
            match serde_json::from_slice::<Report>(&json) {
                Ok(Report::Ended(status)) => Ok(status),
                Ok(Report::Failed { step, message }) => Err(Failure { step, message }),
                Ok(other) => Err(fail("sandbox PID 1", format!("unexpected report {other:?}"))),
                // PID 1 was killed (the OOM killer, or a signal sent from outside): the
                // kernel took the whole namespace with it, so that is how the process ended.
                Err(_) if json.is_empty() && matches!(pid1_status, ExitStatus::Signaled(_)) => {
                    Ok(pid1_status)
                }
                Err(_) => Err(fail("sandbox PID 1", format!("ended ({pid1_status:?}) without a report"))),
            }
        }
    }
}

/// The supervisor of a spawned sandbox: namespaces, PID 1, then [`report_and_hold`].
pub(super) fn supervise_spawned(plan: &Plan, status: OwnedFd) -> i32 {
    let pid1 = enter_namespaces(plan).map_err(Report::from).and_then(|()| start_spawned(plan));
    match pid1 {
        Ok(pid) => report_and_hold(status, pid),
        Err(report) => {
            send(&mut File::from(status), &report);
            0
        }
    }
}

/// Forks PID 1 and returns once its command runs, or with what went wrong before.
fn start_spawned(plan: &Plan) -> std::result::Result<Pid, Report> {
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(os("create exec pipe"))?;
    // SAFETY: this process is single-threaded (the re-exec'd init), so the child may run
    // arbitrary code after fork.
    match unsafe { fork() }.map_err(os("fork the sandbox's PID 1"))? {
        ForkResult::Child => {
            drop(ready_r);
            spawned_pid1(plan, ready_w)
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            release_stdio();
            started(child, ready_r)
        }
    }
}

/// PID 1 of a spawned sandbox: the setup, then the command itself, or with `init` a fork of it
/// to which signals are forwarded.
fn spawned_pid1(plan: &Plan, ready: OwnedFd) -> ! {
    let exec = match prepare_pid1(plan) {
        Ok(exec) => exec,
        Err(f) => {
            send(&mut File::from(ready), &f.into());
            std::process::exit(1)
        }
    };
    if !plan.spawn.is_some_and(|s| s.init) {
        exec.run(ready)
    }
    let mut signals = SigSet::empty();
    for s in FORWARDED {
        signals.add(s);
    }
    signals.add(Signal::SIGCHLD);
    // Blocked before the fork, so none is lost; the child unblocks them all before exec.
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None) {
        send(&mut File::from(ready), &fail("block signals", e.desc()).into());
        std::process::exit(1)
    }
    // SAFETY: PID 1 is single-threaded, so the child may run arbitrary code before exec.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => exec.run(ready),
        Ok(ForkResult::Parent { child }) => {
            drop(ready);
            std::process::exit(forward_until(child, &signals))
        }
        Err(e) => {
            send(&mut File::from(ready), &fail("fork the process", e.desc()).into());
            std::process::exit(1)
        }
    }
}

/// The signals an init PID 1 passes on to the command, as docker-init (tini) does.
const FORWARDED: [Signal; 8] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// Forwards the blocked `signals` to `main` and reaps every child until `main` has ended;
/// returns its exit code, 128 + N for a signal N (tini's convention).
fn forward_until(main: Pid, signals: &SigSet) -> i32 {
    use nix::sys::wait::WaitPidFlag;
    let code = |status: ExitStatus| status.code();
    loop {
        let Ok(sig) = signals.wait() else {
            return reap_until(main).map_or(255, code);
        };
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(main, sig);
            continue;
        }
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, c)) if pid == main => return c,
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == main => return 128 + s as i32,
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }
}

/// PID 1 of the new pid namespace.
fn pid1(plan: &Plan) -> Result<ExitStatus> {
    let exec = prepare_pid1(plan)?;
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(os("create exec pipe"))?;
    // SAFETY: PID 1 is single-threaded, so the child may run arbitrary code before exec.
    match unsafe { fork() }.map_err(os("fork the process"))? {
        ForkResult::Child => {
            drop(ready_r);
            exec.run(ready_w)
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            // EOF means the exec happened (the write end is close-on-exec) or the child exited.
            let mut setup_error = Vec::new();
            let _ = File::from(ready_r).read_to_end(&mut setup_error);
            let status = reap_until(child).map_err(os("wait for the process"))?;
            if setup_error.is_empty() {
                return Ok(status);
            }
            match serde_json::from_slice(&setup_error) {
                Ok(Report::Failed { step, message }) => Err(fail(step, message)),
                _ => Err(fail("start the process", String::from_utf8_lossy(&setup_error))),
            }
        }
    }
}

fn wait_for(pid: Pid) -> nix::Result<ExitStatus> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ExitStatus::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(ExitStatus::Signaled(sig as i32)),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// How `pid` ended, leaving it a zombie (so its pid stays taken).
fn wait_keeping(pid: Pid) -> nix::Result<ExitStatus> {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ExitStatus::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(ExitStatus::Signaled(sig as i32)),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reaps every child (orphans are re-parented to us) until `main` has ended.
fn reap_until(main: Pid) -> nix::Result<ExitStatus> {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => return Ok(ExitStatus::Exited(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => {
                return Ok(ExitStatus::Signaled(sig as i32));
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reports on `status` that `pid` runs, then how it ended, then holds it unreaped until the
/// other end hangs up: while the spawner may still signal that pid, it is not reused.
pub(crate) fn report_and_hold(status: OwnedFd, pid: Pid) -> i32 {
    let mut status = std::os::unix::net::UnixStream::from(status);
    if !send(&mut status, &Report::Started { pid: pid.as_raw() }) {
        // The spawner is gone; the parent-death signal is on its way.
        let _ = wait_for(pid);
        return 1;
    }
    let ended = match wait_keeping(pid) {
        Ok(s) => Report::Ended(s),
        Err(e) => fail("wait for the process", e.desc()).into(),
    };
    send(&mut status, &ended);
    let _ = status.shutdown(std::net::Shutdown::Write);
    let _ = std::io::copy(&mut status, &mut std::io::sink());
    let _ = wait_for(pid);
    0
}

/// Points our stdin, stdout and stderr at /dev/null, once the process has its copies: whoever
/// reads the process's output (or a terminal's master) must see EOF when the process and its
/// children are done, not when we are.
pub(crate) fn release_stdio() {
    if let Ok(null) = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()) {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which this process does not use
            // through any Rust handle it could later misread.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// Reads the ready pipe of `child` (or of its child) to EOF: nothing means the command was
/// executed, since the write end is close-on-exec; otherwise the child's report of what failed.
pub(crate) fn started(child: Pid, ready: OwnedFd) -> std::result::Result<Pid, Report> {
    let mut msg = Vec::new();
    let _ = File::from(ready).read_to_end(&mut msg);
    if msg.is_empty() {
        return Ok(child);
    }
    let _ = wait_for(child);
    Err(serde_json::from_slice(&msg)
        .unwrap_or_else(|e| fail("start the process", format!("unreadable report: {e}")).into()))
}
