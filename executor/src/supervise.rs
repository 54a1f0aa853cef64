//! The rbuild side of a sandbox: spawn the init, feed it the spec, collect output and status.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::unistd::pipe2;

use crate::cgroup::{self, Cgroup};
use crate::init::Report;
use crate::spec::InitConfig;
use crate::{Error, ExitStatus, INIT_ARG, Outcome, SandboxSpec, Stdio};

fn setup(step: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Setup { step, source }
}

fn pipe(step: &'static str) -> Result<(OwnedFd, OwnedFd), Error> {
    // O_CLOEXEC: in a multi-threaded rbuild, other threads spawning processes must not leak
    // our pipe ends into their children (a leaked write end would keep us from seeing EOF).
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::Setup { step, source: e.into() })?;
    Ok((above_stdio(r, step)?, above_stdio(w, step)?))
}

/// If rbuild was started with stdin, stdout or stderr closed, a pipe can land on fd 0-2, where
/// the child's stdio setup would overwrite it before the init ever sees it.
fn above_stdio(fd: OwnedFd, step: &'static str) -> Result<OwnedFd, Error> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let raw =
        fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(3)).map_err(|e| Error::Setup { step, source: e.into() })?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The sandbox's own cgroup, made before the init starts (so its limits hold from the first
/// instruction) and removed when the sandbox has ended, on every path out of [`run`]
/// (`Cgroup`'s `Drop` covers errors and cancellation).
fn make_cgroup(spec: &SandboxSpec) -> Result<Option<Cgroup>, Error> {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    let limited = spec.resources != crate::Resources::default();
    let layout = match cgroup::layout() {
        Ok(layout) => layout,
        Err(e) if !limited => {
            let _ = e;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    // Cgroups of rbuild processes that were SIGKILLed: only ours, only those whose owner is gone.
    SWEPT.call_once(|| cgroup::sweep_stale(layout));
    match Cgroup::create(layout, &cgroup::sandbox_name(), &spec.resources) {
        Ok(cg) => Ok(Some(cg)),
        // Without write access to the cgroup tree (rootless, or inside a container) a sandbox
        // without limits runs without a cgroup of its own; one with limits cannot.
        Err(e) if !limited && e.is_permission() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn run(
    spec: &SandboxSpec,
    stdio: Stdio<'_>,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<Outcome, Error> {
    let cgroup = make_cgroup(spec)?;
    let (path, procs, fs) = match &cgroup {
        Some(cg) => {
            let fs = cgroup::layout().map(crate::spec::CgroupFs::for_layout).unwrap_or_default();
            (Some(cg.path()), cg.procs_files(), fs)
        }
        None => (None, Vec::new(), Vec::new()),
    };
    let config = InitConfig::new(spec, path.as_deref(), procs, fs)?;
    let status = run_init(&config, stdio, cancel)?;
    let oom_killed = cgroup.as_ref().is_some_and(Cgroup::oom_killed);
    if let Some(cg) = cgroup {
        cg.remove()?;
    }
    Ok(Outcome { status, oom_killed })
}

fn run_init(
    config: &InitConfig,
    stdio: Stdio<'_>,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<ExitStatus, Error> {
    let json =
        serde_json::to_vec(config).map_err(|e| Error::Setup { step: "encode spec", source: e.into() })?;
    let exe = std::env::current_exe().map_err(setup("find the current executable"))?;

    let (config_r, config_w) = pipe("create spec pipe")?;
    let (status_r, status_w) = pipe("create status pipe")?;
    let mut cmd = Command::new(exe);
    // argv[0] without the host path of the binary: it is what `ps` in the sandbox shows.
    cmd.arg0("rbuild-init")
        .arg(INIT_ARG)
        .arg(config_r.as_raw_fd().to_string())
        .arg(status_w.as_raw_fd().to_string());

    let (mut callback, output) = match stdio {
        Stdio::Inherit => (None, None),
        Stdio::Capture(cb) => {
            let (out_r, out_w) = pipe("create output pipe")?;
            let err_w = out_w.try_clone().map_err(setup("create output pipe"))?;
            cmd.stdin(std::process::Stdio::null()).stdout(out_w).stderr(err_w);
            (Some(cb), Some(out_r))
        }
    };

    let inherited = [config_r.as_raw_fd(), status_w.as_raw_fd()];
    // SAFETY: the closure runs between fork and exec in a copy of a multi-threaded process, so
    // it may only make async-signal-safe calls; fcntl and prctl are, and it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for fd in inherited {
                // Clear close-on-exec only in this child, so only the init inherits the pipes.
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // The sandbox must not outlive the thread of rbuild that waits for it.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(setup("start the sandbox init"))?;
    // The Command keeps its copies of the output pipe's write ends; drop them, and our copies
    // of the init's pipe ends, or EOF never comes.
    drop(cmd);
    drop(config_r);
    drop(status_w);

    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let killed = std::sync::atomic::AtomicBool::new(false);
    let (write_result, read_error, report) = std::thread::scope(|scope| {
        // Dropped when the sandbox has ended, which wakes the watcher at once.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        if let Some(cancel) = cancel {
            // The child is not waited for until this watcher has stopped, so its pid cannot be
            // reused by another process while the watcher may still signal it.
            let killed = &killed;
            scope.spawn(move || {
                use std::sync::atomic::Ordering::SeqCst;
                use std::sync::mpsc::RecvTimeoutError;
                while let Err(RecvTimeoutError::Timeout) =
                    done_rx.recv_timeout(std::time::Duration::from_millis(20))
                {
                    if cancel.load(SeqCst) {
                        killed.store(true, SeqCst);
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                        return;
                    }
                }
            });
        }
        // A failed write means the init died early; its status says why, so report that instead.
        let write_result = File::from(config_w).write_all(&json);
        let mut read_error = None;
        if let (Some(cb), Some(out)) = (callback.as_mut(), output) {
            let mut out = File::from(out);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match out.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => cb(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
        }
        // EOF on the status pipe: the init has reported and is exiting (or was killed); it is
        // not reaped until the watcher has stopped, so its pid stays ours meanwhile.
        let mut report = Vec::new();
        let report_read = File::from(status_r).read_to_end(&mut report).map(|_| report);
        drop(done_tx);
        (write_result, read_error, report_read)
    });
    let init_status = child.wait();
    if killed.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Error::Cancelled);
    }
    let init_status = init_status.map_err(setup("wait for the sandbox init"))?;
    let report = report.map_err(setup("read the sandbox status"))?;
    if let Some(source) = read_error {
        return Err(Error::Setup { step: "read the sandbox output", source });
    }

    if report.is_empty() {
        if let Err(source) = write_result {
            return Err(Error::Setup { step: "send the spec to the sandbox init", source });
        }
        return Err(Error::Init(format!("the init ended ({init_status}) without reporting a status")));
    }
    match serde_json::from_slice::<Report>(&report) {
        Ok(Report::Ended(status)) => Ok(status),
        Ok(Report::Failed { step, message }) => Err(Error::Sandbox { step, message }),
        Err(e) => Err(Error::Init(format!("unreadable status report: {e}"))),
    }
}
