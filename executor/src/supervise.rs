//! The rbuild side of a sandbox: spawn the init, feed it the spec, collect output and status.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::Signal;
use nix::unistd::pipe2;

use crate::cgroup::{self, Cgroup};
use crate::exec::ExecConfig;
use crate::init::Report;
use crate::spec::{InitConfig, SpawnConfig};
use crate::{
    EXEC_ARG, Error, ExecSpec, ExitStatus, INIT_ARG, Outcome, SandboxSpec, SpawnOptions, SpawnStdio, Stdio,
};

/// Lets the child inherit `fds` across exec and no other descriptor beyond stdio, and kills it
/// when the thread that spawned it ends: a sandbox must not outlive the rbuild thread that
/// waits for it. Signals an rbuild started from a shell's background job inherited as ignored
/// (SIGINT, SIGQUIT) are reset, so the sandboxed process can trap them as it could under docker.
fn inherit_until_parent_dies(cmd: &mut Command, fds: [std::os::fd::RawFd; 2]) {
    // SAFETY: the closure runs between fork and exec in a copy of a multi-threaded process, so
    // it may only make async-signal-safe calls; fcntl, sigaction, close_range and prctl are,
    // and it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            for sig in 1..32 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::sigaction(sig, &dfl, std::ptr::null_mut());
                }
            }
            // Descriptors rbuild inherited from its caller and left open are no business of a
            // sandbox: every one from 3 up is made close-on-exec in this child (best effort: a
            // kernel before 5.11 lacks CLOSE_RANGE_CLOEXEC and keeps them)...
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            for fd in fds {
                // ...but the pipes, which only the init inherits.
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

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
    let parent = spec.resources.cgroup_parent.as_deref().unwrap_or(cgroup::PARENT);
    match Cgroup::create_in(layout, parent, &cgroup::sandbox_name(), &spec.resources) {
        Ok(cg) => Ok(Some(cg)),
        // Without write access to the cgroup tree (rootless, or inside a container) a sandbox
        // without limits runs without a cgroup of its own; one with limits cannot.
        Err(e) if !limited && e.is_permission() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The init's configuration for `spec` in `cgroup`.
fn init_config(spec: &SandboxSpec, cgroup: Option<&Cgroup>) -> Result<InitConfig, Error> {
    let (path, procs, fs) = match cgroup {
        Some(cg) => {
            let fs = cgroup::layout().map(crate::spec::CgroupFs::for_layout).unwrap_or_default();
            (Some(cg.path()), cg.procs_files(), fs)
        }
        None => (None, Vec::new(), Vec::new()),
    };
    InitConfig::new(spec, path.as_deref(), procs, fs)
}

pub(crate) fn run(
    spec: &SandboxSpec,
    stdio: Stdio<'_>,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<Outcome, Error> {
    // The init joins the cgroup a few ms from now; its grace period is paid from here on.
    let _warm = cgroup::warm_migrations();
    let mut cgroup = None;
    let status = run_init(
        || {
            cgroup = make_cgroup(spec)?;
            encode(&init_config(spec, cgroup.as_ref())?)
        },
        stdio,
        cancel,
    )?;
    let oom_killed = cgroup.as_ref().is_some_and(Cgroup::oom_killed);
    if let Some(cg) = cgroup {
        cg.remove()?;
    }
    Ok(Outcome { status, oom_killed })
}

/// `result`, or its error after `child` (a helper still waiting for its configuration) was
/// killed and reaped.
fn kill_on_error<T>(child: &mut std::process::Child, result: Result<T, Error>) -> Result<T, Error> {
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

fn encode(config: &impl serde::Serialize) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(config).map_err(|e| Error::Setup { step: "encode spec", source: e.into() })
}

/// Starts the init, then calls `spec` for its configuration: the init's exec (and the
/// cgroup-migration grace period `spec` may wait for in `mkdir`) overlap. If `spec` fails, the
/// init, which is still waiting for its configuration, is killed and reaped.
fn run_init(
    spec: impl FnOnce() -> Result<Vec<u8>, Error>,
    stdio: Stdio<'_>,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<ExitStatus, Error> {
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

    inherit_until_parent_dies(&mut cmd, [config_r.as_raw_fd(), status_w.as_raw_fd()]);
    let mut child = cmd.spawn().map_err(setup("start the sandbox init"))?;
    // The Command keeps its copies of the output pipe's write ends; drop them, and our copies
    // of the init's pipe ends, or EOF never comes.
    drop(cmd);
    drop(config_r);
    drop(status_w);
    let json = kill_on_error(&mut child, spec())?;

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
        Ok(report) => Err(report_error(report)),
        Err(e) => Err(Error::Init(format!("unreadable status report: {e}"))),
    }
}

/// A re-executed helper (a spawned sandbox's supervisor, or the exec helper) whose process has
/// been started: it reports how that ended on `status`, and keeps it unreaped until we hang up.
struct Helper {
    /// The host pid of the process (the sandbox's PID 1, or the exec'd process).
    pid: i32,
    child: std::process::Child,
    status: BufReader<UnixStream>,
    finished: bool,
}

/// Starts `rbuild <marker> <spec fd> <status fd>` with `stdio`, sends it `json`, and returns
/// once it reports its process started, or with the error it reports instead.
///
/// `json` is called once the helper runs (see [`run_init`]); its error kills the helper.
fn start_helper(
    marker: &str,
    argv0: &str,
    json: impl FnOnce() -> Result<Vec<u8>, Error>,
    stdio: SpawnStdio,
) -> Result<Helper, Error> {
    let exe = std::env::current_exe().map_err(setup("find the current executable"))?;
    let (config_r, config_w) = pipe("create spec pipe")?;
    let (ours, theirs) = UnixStream::pair().map_err(setup("create status socket"))?;
    let theirs = above_stdio(OwnedFd::from(theirs), "create status socket")?;
    let mut cmd = Command::new(exe);
    cmd.arg0(argv0).arg(marker).arg(config_r.as_raw_fd().to_string()).arg(theirs.as_raw_fd().to_string());
    match stdio {
        SpawnStdio::Null => {
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        }
        SpawnStdio::Fds { stdin, stdout, stderr } => {
            cmd.stdin(stdin).stdout(stdout).stderr(stderr);
        }
        SpawnStdio::Tty(tty) => {
            let out = tty.try_clone().map_err(setup("duplicate the terminal"))?;
            let err = tty.try_clone().map_err(setup("duplicate the terminal"))?;
            cmd.stdin(tty).stdout(out).stderr(err);
        }
    }
    // The parent-death signal is tied to the calling thread: see `spawn`'s documentation.
    inherit_until_parent_dies(&mut cmd, [config_r.as_raw_fd(), theirs.as_raw_fd()]);
    let mut child = cmd.spawn().map_err(setup("start the sandbox init"))?;
    // The Command holds the stdio descriptors: closed here, only the helper keeps them.
    drop(cmd);
    drop(config_r);
    drop(theirs);
    let json = kill_on_error(&mut child, json())?;
    // A failed write means the helper died early; its report (or its absence) says why.
    let _ = File::from(config_w).write_all(&json);
    let mut status = BufReader::new(ours);
    let mut line = String::new();
    let read = status.read_line(&mut line);
    let report = match read {
        Ok(_) if line.is_empty() => None,
        Ok(_) => Some(serde_json::from_str::<Report>(&line)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Setup { step: "read the sandbox status", source: e });
        }
    };
    if let Some(Ok(Report::Started { pid })) = report {
        return Ok(Helper { pid, child, status, finished: false });
    }
    // The helper exits after reporting a failure; if it broke the protocol, it is killed.
    if !matches!(report, Some(Ok(Report::Failed { .. } | Report::ExecFailed { .. }))) {
        let _ = child.kill();
    }
    let helper_status = child.wait().map_err(setup("wait for the sandbox init"))?;
    Err(match report {
        Some(Ok(report)) => report_error(report),
        Some(Err(e)) => Error::Init(format!("unreadable status report: {e}")),
        None => Error::Init(format!("the init ended ({helper_status}) without reporting a status")),
    })
}

fn report_error(report: Report) -> Error {
    match report {
        Report::Failed { step, message } => Error::Sandbox { step, message },
        Report::ExecFailed { message, code } => Error::Exec { message, code },
        other => Error::Init(format!("unexpected status report {other:?}")),
    }
}

impl Helper {
    fn signal(&self, signal: Signal) -> Result<(), Error> {
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), signal) {
            // Ended, and not reaped yet: nothing left to signal.
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(Error::Setup { step: "signal the process", source: e.into() }),
        }
    }

    /// Blocks until the process has ended; then the helper may reap it and exit.
    fn finish(&mut self) -> Result<ExitStatus, Error> {
        let mut line = String::new();
        let read = self.status.read_line(&mut line);
        self.finished = true;
        // Hanging up lets the helper reap the process and exit.
        let _ = self.status.get_ref().shutdown(std::net::Shutdown::Both);
        let helper_status = self.child.wait().map_err(setup("wait for the sandbox init"))?;
        read.map_err(setup("read the sandbox status"))?;
        if line.is_empty() {
            return Err(Error::Init(format!("the init ended ({helper_status}) without reporting a status")));
        }
        match serde_json::from_str::<Report>(&line) {
            Ok(Report::Ended(status)) => Ok(status),
            Ok(report) => Err(report_error(report)),
            Err(e) => Err(Error::Init(format!("unreadable status report: {e}"))),
        }
    }
}

impl Drop for Helper {
    /// Not waited for: the process is killed (for a sandbox, PID 1 and with it the whole pid
    /// namespace) through its pid, which the helper holds unreaped; the helper then reaps it
    /// and exits as usual (killing the helper instead would leave the process an orphan).
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.signal(Signal::SIGKILL);
            let _ = self.finish();
        }
    }
}

/// A sandbox started by [`crate::spawn`], running until it ends by itself or is signalled.
pub struct Sandbox {
    helper: Helper,
    /// Dropped after `helper`, so on every path out the sandbox has ended before its cgroup
    /// is removed.
    cgroup: Option<Cgroup>,
}

impl Sandbox {
    /// The host PID of the sandbox's PID 1 (the command itself, or rbuild-init with `init`).
    /// It stays this sandbox's (never reused) until [`wait`](Sandbox::wait) returns.
    pub fn pid(&self) -> i32 {
        self.helper.pid
    }

    /// The sandbox's cgroup, if the host let rbuild make one.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// The cgroup's name, for [`Cgroup::open`] in another process and for [`crate::ExecSpec`].
    pub fn cgroup_name(&self) -> Option<String> {
        self.cgroup.as_ref().map(|c| c.name().to_string())
    }

    /// Sends `signal` to PID 1; a sandbox that has just ended is not an error. Race-free: the
    /// pid cannot have been reused before [`wait`](Sandbox::wait).
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        self.helper.signal(signal)
    }

    /// Blocks until PID 1 has ended (and with it, by the kernel, every process of the sandbox),
    /// removes the cgroup, and says how PID 1 ended and whether the OOM killer struck.
    pub fn wait(self) -> Result<Outcome, Error> {
        let Sandbox { mut helper, cgroup } = self;
        let status = helper.finish()?;
        let oom_killed = cgroup.as_ref().is_some_and(Cgroup::oom_killed);
        if let Some(cg) = cgroup {
            cg.remove()?;
        }
        Ok(Outcome { status, oom_killed })
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("pid", &self.helper.pid).field("cgroup", &self.cgroup_name()).finish()
    }
}

pub(crate) fn spawn(spec: &SandboxSpec, opts: SpawnOptions) -> Result<Sandbox, Error> {
    // Held until the init reports its process started, which is after it joined the cgroup.
    let _warm = cgroup::warm_migrations();
    let console = matches!(opts.stdio, SpawnStdio::Tty(_));
    let mut cgroup = None;
    let json = || {
        cgroup = make_cgroup(spec)?;
        let mut config = init_config(spec, cgroup.as_ref())?;
        config.spawn = Some(SpawnConfig { init: opts.init, console });
        encode(&config)
    };
    let helper = start_helper(INIT_ARG, "rbuild-init", json, opts.stdio)?;
    Ok(Sandbox { helper, cgroup })
}

/// A process started in a running sandbox by [`crate::exec`].
pub struct ExecProcess {
    helper: Helper,
}

impl ExecProcess {
    /// The process's host PID; it stays this process's until [`wait`](ExecProcess::wait)
    /// returns.
    pub fn pid(&self) -> i32 {
        self.helper.pid
    }

    /// Sends `signal` to the process; one that has just ended is not an error.
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        self.helper.signal(signal)
    }

    /// Blocks until the process has ended.
    pub fn wait(mut self) -> Result<ExitStatus, Error> {
        self.helper.finish()
    }
}

impl std::fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecProcess").field("pid", &self.helper.pid).finish()
    }
}

pub(crate) fn exec(spec: &ExecSpec, stdio: SpawnStdio) -> Result<ExecProcess, Error> {
    crate::spec::validate_process(&spec.process)?;
    if spec.pid <= 0 {
        return Err(Error::InvalidSpec(format!("pid {} is not a process", spec.pid)));
    }
    let security = &spec.security;
    let capset = crate::caps::parse(&security.capabilities).map_err(|e| Error::InvalidSpec(e.to_string()))?;
    let _warm = cgroup::warm_migrations();
    let tty = matches!(stdio, SpawnStdio::Tty(_));
    // Made while the helper execs.
    let json = || {
        let cgroup_procs = match &spec.cgroup {
            Some(name) => Cgroup::open(name)?.procs_files(),
            None => Vec::new(),
        };
        encode(&ExecConfig {
            pid: spec.pid,
            args: spec.process.args.clone(),
            env: spec.process.env.clone(),
            cwd: spec.process.cwd.clone(),
            user: spec.process.user.clone(),
            capabilities: security.capabilities.clone(),
            no_new_privileges: security.no_new_privileges,
            seccomp: security.seccomp.then(|| crate::seccomp::docker_profile(capset)),
            cgroup_procs,
            tty,
        })
    };
    let helper = start_helper(EXEC_ARG, "rbuild-exec", json, stdio)?;
    Ok(ExecProcess { helper })
}
