//! The re-executed init: `rbuild __rbuild-sandbox-init <spec fd> <status fd>`.
//!
//! Process tree (pids as seen from the host / inside the sandbox):
//!
//! ```text
//! rbuild (calls run)
//! └── supervisor: this binary re-executed; unshares the namespaces, stays in the host pid ns
//!     └── PID 1: mounts the rootfs, pivot_roots, reaps zombies, reports the exit status
//!         └── PID 2: the user's command
//! ```
//!
//! A spawned sandbox ([`crate::spawn`]) has the same supervisor, whose PID 1 either *is* the
//! command (it execs after the setup) or, with `init`, forwards signals to it as PID 2. Its
//! status fd is a socket on which the supervisor reports `Started` (the command runs), then
//! `Ended`; it then keeps PID 1 unreaped (so its pid cannot be reused) until the spawner hangs up.
//!
//! This process is single-threaded, so it may fork and keep running Rust code in the child.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use hostutil::{inroot, mountinfo};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, chdir, execve, fork, pipe2, pivot_root, sethostname};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};
use serde::{Deserialize, Serialize};

use crate::spec::{CgroupFs, InitConfig, Plan, PlanMount, SecretFile};
use crate::user::{self, ExecUser};
use crate::userns::{self, IdKind};
use crate::{ExitStatus, INIT_ARG};
use crate::{caps, seccomp};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the init writes, as JSON, to its status fd: for [`crate::run`] one report before
/// exiting; for [`crate::spawn`] and [`crate::exec`] one per line, `Started` (or a failure)
/// then `Ended`. Also what a process about to exec writes on its ready pipe when it cannot.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    Ended(ExitStatus),
    Failed {
        step: String,
        message: String,
    },
    /// The command has been executed; `pid` is its host pid (the sandbox's PID 1 for spawn).
    Started {
        pid: i32,
    },
    /// The command could not be executed (`message` as `"foo": executable file not found in
    /// $PATH`; `code` 127 or 126).
    ExecFailed {
        message: String,
        code: i32,
    },
}

impl From<Failure> for Report {
    fn from(f: Failure) -> Report {
        Report::Failed { step: f.step, message: f.message }
    }
}

/// Writes `report` as one line of JSON; false if it could not.
pub(crate) fn send(out: &mut impl Write, report: &Report) -> bool {
    match serde_json::to_vec(report) {
        Ok(mut json) => {
            json.push(b'\n');
            out.write_all(&json).is_ok()
        }
        Err(_) => false,
    }
}

/// A failed setup step, on its way to becoming [`crate::Error::Sandbox`].
#[derive(Debug)]
pub(crate) struct Failure {
    pub step: String,
    pub message: String,
}

pub(crate) type Result<T> = std::result::Result<T, Failure>;

pub(crate) fn fail(step: impl Into<String>, message: impl std::fmt::Display) -> Failure {
    Failure { step: step.into(), message: message.to_string() }
}

/// `e` and each of its causes, as one line: a failure crosses the status pipe as text.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    hostutil::errors::one_line(e)
}

/// For `map_err` on nix calls: the step, and the OS error's plain description.
pub(crate) fn os(step: impl Into<String>) -> impl FnOnce(Errno) -> Failure {
    let step = step.into();
    move |e| fail(step, e.desc())
}

pub(crate) fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> Failure {
    let step = step.into();
    move |e| match e.raw_os_error() {
        Some(code) => fail(step, Errno::from_raw(code).desc()),
        None => fail(step, e),
    }
}

/// The two descriptors after `marker` on the command line (spec, status), made close-on-exec;
/// `Err` is the exit code, after a message on stderr.
pub(crate) fn protocol_fds(args: &[String], marker: &str) -> std::result::Result<(OwnedFd, OwnedFd), i32> {
    let fds = args.iter().position(|a| a == marker).map(|i| &args[i + 1..]).unwrap_or_default();
    let (Some(Ok(spec_fd)), Some(Ok(status_fd))) =
        (fds.first().map(|a| a.parse()), fds.get(1).map(|a| a.parse()))
    else {
        eprintln!("rbuild: {marker} expects <spec fd> <status fd>; it is started by rbuild itself");
        return Err(2);
    };
    if spec_fd < 3 || status_fd < 3 || spec_fd == status_fd {
        eprintln!("rbuild: {marker}: bad file descriptors {spec_fd} {status_fd}");
        return Err(2);
    }
    // SAFETY: rbuild passes two descriptors it created for us and that nothing else in this
    // fresh process owns; the numbers were checked not to be stdio.
    let (spec_fd, status_fd) = unsafe { (OwnedFd::from_raw_fd(spec_fd), OwnedFd::from_raw_fd(status_fd)) };
    // Neither PID 1 nor the user's process may inherit these across exec.
    for fd in [&spec_fd, &status_fd] {
        if fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).is_err() {
            return Err(2);
        }
    }
    Ok((spec_fd, status_fd))
}

/// Returns the exit code of the supervisor; the sandbox's own outcome goes to the status fd.
pub(crate) fn main(args: &[String]) -> i32 {
    let (spec_fd, status_fd) = match protocol_fds(args, INIT_ARG) {
        Ok(fds) => fds,
        Err(code) => return code,
    };
    // What `ps` in the sandbox shows for PID 1 (by default the binary's file name).
    let _ = nix::sys::prctl::set_name(c"rbuild-init");
    let report = match read_plan(spec_fd) {
        Ok(plan) if plan.spawn.is_some() => return supervise_spawned(&plan, status_fd),
        Ok(plan) => match supervise(plan) {
            Ok(status) => Report::Ended(status),
            Err(f) => f.into(),
        },
        Err(f) => f.into(),
    };
    let mut status = File::from(status_fd);
    match serde_json::to_vec(&report) {
        Ok(json) if status.write_all(&json).is_ok() => 0,
        _ => 1,
    }
}

fn read_plan(fd: OwnedFd) -> Result<Plan> {
    let mut json = Vec::new();
    File::from(fd).read_to_end(&mut json).map_err(io("read the spec"))?;
    let config: InitConfig = serde_json::from_slice(&json).map_err(|e| fail("decode the spec", e))?;
    Plan::from_config(config).map_err(|m| fail("check the spec", m))
}

/// Whether the sandbox runs in a user namespace (rootless rbuild): read once, in the supervisor
/// before it forks, so PID 1 and PID 2 inherit the answer.
pub(crate) fn in_userns() -> bool {
    static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V.get_or_init(|| !hostutil::idmap::in_initial_userns())
}

/// The supervisor's namespaces: the network namespace to join, then new ones for PID 1.
fn enter_namespaces(plan: &Plan) -> Result<()> {
    in_userns();
    if let Some(path) = &plan.join_net {
        let step = format!("join the network namespace {}", path.display());
        let ns = File::open(path).map_err(io(step.clone()))?;
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(os(step))?;
    }
    unshare(plan.namespaces).map_err(os("unshare namespaces"))?;
    // Private, so that none of our mounts (nor our unmount of the old root) reach the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(os("make / private"))
}

/// The supervisor: new namespaces, then PID 1, whose report it relays.
fn supervise(plan: Plan) -> Result<ExitStatus> {
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

pub(crate) fn wait_for(pid: Pid) -> nix::Result<ExitStatus> {
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
pub(crate) fn wait_keeping(pid: Pid) -> nix::Result<ExitStatus> {
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

/// The supervisor of a spawned sandbox: namespaces, PID 1, then [`report_and_hold`].
fn supervise_spawned(plan: &Plan, status: OwnedFd) -> i32 {
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

/// Everything PID 1 does before the command: cgroup, mounts, pivot_root, hostname, lo,
/// rlimits, the user; returns the command ready to run.
fn prepare_pid1(plan: &Plan) -> Result<Exec> {
    // If the supervisor dies, so does PID 1, and with it the kernel kills the whole namespace.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(os("set the parent-death signal"))?;
    // Into the cgroup first, so every process of the sandbox is counted and limited.
    for procs in &plan.cgroup_procs {
        std::fs::write(procs, "0").map_err(io(format!("join the cgroup ({})", procs.display())))?;
    }
    if plan.cgroupns {
        // After joining: the namespace's root is the sandbox's own cgroup.
        unshare(CloneFlags::CLONE_NEWCGROUP).map_err(os("unshare the cgroup namespace"))?;
    }
    let target = &plan.overlay.target;
    mount_overlay(plan)?;
    mount_standard_fs(target)?;
    if plan.cgroupns {
        mount_cgroup_fs(target, &plan.cgroup_fs)?;
    }
    if plan.spawn.is_some_and(|s| s.console) {
        mount_console(target)?;
    }
    // Before pivot_root: a bind mount's source must be in our mount tree, which the old root
    // leaves. Targets are resolved inside the rootfs as if it were `/` (nothing of the
    // sandbox runs yet, so nothing can swap a path under us).
    for (dest, mount) in &plan.mounts {
        let fds = open_sources(dest, mount)?;
        user_mount(target, dest, mount, &fds)?;
    }
    let seccomp = match &plan.seccomp {
        Some(profile) => {
            Some(seccomp::compile(profile).map_err(|e| fail("compile the seccomp filter", chain(&e)))?)
        }
        None => None,
    };
    let caps = caps::parse(&plan.capabilities).map_err(|m| fail("capabilities", m))?;
    // For "not mapped" errors: the host user's name, looked up while the host's /etc/passwd is
    // still what getpwuid reads.
    let host_user = if in_userns() { userns::host_user() } else { None };
    enter_rootfs(target)?;
    mask_paths(&plan.masked_paths, &plan.readonly_paths)?;

    // Created after pivot_root so that a symlink in the image resolves inside the rootfs, never
    // on the host.
    std::fs::create_dir_all(&plan.cwd).map_err(io(format!("create working directory {}", plan.cwd)))?;
    if plan.readonly_rootfs {
        // Only the rootfs's own mount: the mounts on it keep their flags.
        remount_readonly(Path::new("/"))?;
    }
    let hostname = plan.hostname.as_deref().unwrap_or_default();
    if plan.namespaces.contains(CloneFlags::CLONE_NEWUTS) && !hostname.is_empty() {
        sethostname(hostname).map_err(os(format!("set hostname {hostname:?}")))?;
    }
    if plan.namespaces.contains(CloneFlags::CLONE_NEWNET) {
        loopback_up()?;
    }
    for limit in &plan.rlimits {
        set_rlimit(limit)?;
    }

    let read = |p: &str| std::fs::read_to_string(p).ok();
    let user = user::resolve(&plan.user, read("/etc/passwd").as_deref(), read("/etc/group").as_deref())
        .map_err(|m| fail("resolve user", m))?;
    let mut env = plan.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let mut exec = Exec::new(&plan.args, &plan.cwd, plan.no_new_privileges, env, user, caps, seccomp)?;
    exec.host_user = host_user;
    if let Some(spawn) = plan.spawn {
        exec.tty = spawn.console;
        exec.report_exec_failure = true;
    }
    Ok(exec)
}

/// The terminal on stdin, bound at /dev/console, as runc shows a container's terminal.
/// A bind's source must be a mount of our namespace, so the terminal is bound from its path
/// (`/dev/pts/N`) in the host's tree, which this namespace copied; a terminal that is not
/// found there (one from another mount namespace) is left out of /dev.
fn mount_console(root: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(path) = std::fs::read_link("/proc/self/fd/0") else { return Ok(()) };
    let (Ok(ours), Ok(found)) = (std::fs::metadata("/proc/self/fd/0"), std::fs::metadata(&path)) else {
        return Ok(());
    };
    if (ours.dev(), ours.ino(), ours.rdev()) != (found.dev(), found.ino(), found.rdev()) {
        return Ok(());
    }
    let console = root.join("dev/console");
    File::create(&console).map_err(io("create /dev/console"))?;
    mount(Some(&path), &console, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(os(format!("bind the terminal {} at /dev/console", path.display())))
}

pub(crate) fn set_rlimit(limit: &PosixRlimit) -> Result<()> {
    use nix::sys::resource::{Resource, setrlimit};
    let resource = match limit.typ() {
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        other => return Err(fail("set rlimits", format!("{other:?} is not supported"))),
    };
    setrlimit(resource, limit.soft(), limit.hard()).map_err(os(format!("set {:?}", limit.typ())))
}

/// The host-side file descriptors a mount needs (opened before `pivot_root`).
type Sources = Vec<OwnedFd>;

fn open_sources(dest: &str, mount: &PlanMount) -> Result<Sources> {
    let open_path = |p: &Path| {
        open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(os(format!("open the source of the mount at {dest}: {}", p.display())))
    };
    Ok(match mount {
        PlanMount::Bind { source, .. } => vec![open_path(source)?],
        PlanMount::Overlay { lowers, upper } => {
            let mut fds = lowers.iter().map(|p| open_path(p)).collect::<Result<Vec<_>>>()?;
            if let Some((u, w)) = upper {
                fds.push(open_path(u)?);
                fds.push(open_path(w)?);
            }
            fds
        }
        PlanMount::Tmpfs { .. } | PlanMount::Secret(_) => Vec::new(),
    })
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Creates `path` (a directory, or an empty file) if missing; `path` was resolved with
/// [`hostutil::inroot::resolve`], so the missing part holds no symlink.
fn mount_target(dest: &str, path: &Path, dir: bool) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("create mount point {dest}")))?;
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() == dir => Ok(()),
        Ok(_) => Err(fail(
            format!("mount at {dest}"),
            if dir {
                "it is a file in the image, and the mount is a directory"
            } else {
                "it is a directory in the image, and the mount is a file"
            },
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir {
                std::fs::create_dir(path).map_err(io(format!("create mount point {dest}")))
            } else {
                File::create(path).map(drop).map_err(io(format!("create mount point {dest}")))
            }
        }
        Err(e) => Err(io(format!("inspect mount point {dest}"))(e)),
    }
}

/// Makes the mount at `dest` read-only, keeping the flags (nosuid, nodev, ...) it has: a
/// remount that drops a locked flag fails.
pub(crate) fn remount_readonly(dest: &Path) -> Result<()> {
    remount_readonly_with(dest, MsFlags::empty())
}

/// [`remount_readonly`], adding `extra` flags.
fn remount_readonly_with(dest: &Path, extra: MsFlags) -> Result<()> {
    use nix::sys::statvfs::{FsFlags, statvfs};
    let have = statvfs(dest).map_err(os(format!("statfs {}", dest.display())))?.flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra;
    for (st, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if have.contains(st) {
            flags |= ms;
        }
    }
    mount(None::<&str>, dest, None::<&str>, flags, None::<&str>)
        .map_err(os(format!("make {} read-only", dest.display())))
}

fn user_mount(root: &Path, dest: &str, mount_spec: &PlanMount, fds: &Sources) -> Result<()> {
    let at = inroot::resolve(root, Path::new(dest)).map_err(io(format!("resolve the mount point {dest}")))?;
    let at = at.as_path();
    match mount_spec {
        PlanMount::Bind { readonly, populate, source: source_path } => {
            let source = &fds[0];
            let dir =
                nix::sys::stat::fstat(source).map_err(os(format!("stat the source of {dest}")))?.st_mode
                    & libc::S_IFMT
                    == libc::S_IFDIR;
            if *populate && dir && std::fs::symlink_metadata(at).is_ok_and(|m| m.is_dir()) {
                use std::os::fd::AsFd;
                crate::populate::fill_if_empty(at, source.as_fd(), source_path)
                    .map_err(|m| fail(format!("fill the volume at {dest} from the image"), m))?;
            }
            mount_target(dest, at, dir)?;
            mount(
                Some(fd_path(source).as_str()),
                at,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(os(format!("bind mount at {dest}")))?;
            if *readonly {
                remount_readonly(at)?;
            }
            Ok(())
        }
        PlanMount::Overlay { lowers, upper } => {
            mount_target(dest, at, true)?;
            let lower = fds[..lowers.len()].iter().map(fd_path).collect::<Vec<_>>().join(":");
            let mut data = format!("lowerdir={lower}");
            if upper.is_some() {
                let n = lowers.len();
                data.push_str(&format!(",upperdir={},workdir={}", fd_path(&fds[n]), fd_path(&fds[n + 1])));
            }
            data.push_str(userxattr());
            let flags = if upper.is_some() { MsFlags::empty() } else { MsFlags::MS_RDONLY };
            mount(Some("overlay"), at, Some("overlay"), flags, Some(data.as_str()))
                .map_err(os(format!("overlay mount at {dest}")))
        }
        PlanMount::Tmpfs { size } => {
            mount_target(dest, at, true)?;
            let data = match size {
                Some(size) => format!("mode=1777,size={size}"),
                None => "mode=1777".to_string(),
            };
            mount(
                Some("tmpfs"),
                at,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(data.as_str()),
            )
            .map_err(os(format!("tmpfs mount at {dest}")))
        }
        PlanMount::Secret(secret) => mount_secret(root, dest, at, secret),
    }
}

/// A file with the secret's bytes on a private tmpfs, bound read-only at `dest`; the tmpfs's
/// own mount point is detached right away, so only `dest` shows it.
fn mount_secret(root: &Path, dest: &str, at: &Path, secret: &SecretFile) -> Result<()> {
    // In the sandbox's own /dev tmpfs, never on a disk.
    let stage = root.join("dev/.rbuild-secret");
    let stage = stage.as_path();
    let step = format!("secret mount at {dest}");
    std::fs::create_dir(stage).map_err(io(step.clone()))?;
    let size = format!("mode=0700,size={}", secret.contents.len() + 4096);
    mount(
        Some("tmpfs"),
        stage,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(size.as_str()),
    )
    .map_err(os(step.clone()))?;
    let file = stage.join("secret");
    std::fs::write(&file, &secret.contents).map_err(io(step.clone()))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(secret.mode & 0o7777))
        .map_err(io(step.clone()))?;
    std::os::unix::fs::chown(&file, Some(secret.uid), Some(secret.gid)).map_err(|e| {
        if e.raw_os_error() == Some(libc::EINVAL) && in_userns() {
            let (kind, id) = unmapped(secret.uid, secret.gid);
            fail(step.clone(), userns::not_mapped_message(kind, id, userns::host_user().as_deref()))
        } else {
            io(step.clone())(e)
        }
    })?;
    mount_target(dest, at, false)?;
    mount(Some(&file), at, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(os(step.clone()))?;
    remount_readonly(at)?;
    umount2(stage, MntFlags::MNT_DETACH).map_err(os(step.clone()))?;
    std::fs::remove_dir(stage).map_err(io(step))
}

/// Docker's masked paths (files get /dev/null, directories an empty read-only tmpfs) and
/// read-only paths (bound onto themselves, read-only). Paths this kernel lacks are skipped.
fn mask_paths(masked: &[String], readonly: &[String]) -> Result<()> {
    for p in masked {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => {
                mount(Some("tmpfs"), p.as_str(), Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
                    .map_err(os(format!("mask {p}")))?
            }
            Ok(_) => mount(Some("/dev/null"), p.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(os(format!("mask {p}")))?,
            Err(_) => {}
        }
    }
    for p in readonly {
        if std::fs::symlink_metadata(p).is_err() {
            continue;
        }
        mount(Some(p.as_str()), p.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(os(format!("bind {p} read-only")))?;
        remount_readonly(Path::new(p))?;
    }
    Ok(())
}

/// Whether this process's user namespace denies setgroups (`/proc/self/setgroups`).
fn setgroups_denied() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny")
}

/// Reaps every child (orphans are re-parented to us) until `main` has ended.
pub(crate) fn reap_until(main: Pid) -> nix::Result<ExitStatus> {
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

fn mount_overlay(plan: &Plan) -> Result<()> {
    let ov = &plan.overlay;
    let open_dir = |p: &Path| {
        open(p, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(os(format!("open layer directory {}", p.display())))
    };
    // The layers are named through /proc/self/fd, so the host's paths appear neither in the
    // sandbox's mountinfo nor against the one-page limit on mount options with many layers.
    let lowers = ov.lowers.iter().map(|p| open_dir(p)).collect::<Result<Vec<_>>>()?;
    let upper = open_dir(&ov.upper)?;
    let work = open_dir(&ov.work)?;
    let fd_path = |fd: &OwnedFd| format!("/proc/self/fd/{}", fd.as_raw_fd());
    let data = format!(
        "lowerdir={},upperdir={},workdir={}{}",
        lowers.iter().map(fd_path).collect::<Vec<_>>().join(":"),
        fd_path(&upper),
        fd_path(&work),
        userxattr()
    );
    mount(Some("overlay"), &ov.target, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        .map_err(os(format!("mount overlay at {}", ov.target.display())))
}

/// A directory in the rootfs to mount on; refuses symlinks, which could point to the host.
fn mount_point(root: &Path, name: &str) -> Result<PathBuf> {
    let path = root.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => Err(fail(format!("mount point /{name}"), "exists in the rootfs and is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(&path).map_err(io(format!("create mount point /{name}")))?;
            Ok(path)
        }
        Err(e) => Err(io(format!("inspect mount point /{name}"))(e)),
    }
}

fn do_mount(source: &str, target: &Path, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<()> {
    mount(Some(source), target, Some(fstype), flags, data)
        .map_err(os(format!("mount {fstype} at {}", target.display())))
}

fn mount_standard_fs(root: &Path) -> Result<()> {
    let nosuid_noexec_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    do_mount("proc", &mount_point(root, "proc")?, "proc", nosuid_noexec_nodev, None)?;

    let dev = mount_point(root, "dev")?;
    do_mount(
        "tmpfs",
        &dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    // Bind mounts of the host's nodes rather than mknod, which a user namespace forbids.
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let node = dev.join(name);
        File::create(&node).map_err(io(format!("create /dev/{name}")))?;
        let host = format!("/dev/{name}");
        mount(Some(host.as_str()), &node, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(os(format!("bind-mount {host}")))?;
    }
    let pts = dev.join("pts");
    std::fs::create_dir(&pts).map_err(io("create /dev/pts"))?;
    do_mount(
        "devpts",
        &pts,
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    let shm = dev.join("shm");
    std::fs::create_dir(&shm).map_err(io("create /dev/shm"))?;
    do_mount("shm", &shm, "tmpfs", nosuid_noexec_nodev, Some("mode=1777,size=65536k"))?;
    let mqueue = dev.join("mqueue");
    std::fs::create_dir(&mqueue).map_err(io("create /dev/mqueue"))?;
    do_mount("mqueue", &mqueue, "mqueue", nosuid_noexec_nodev, None)?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(to, dev.join(link)).map_err(io(format!("create symlink /dev/{link}")))?;
    }

    let sys = mount_point(root, "sys")?;
    match mount(Some("sysfs"), &sys, Some("sysfs"), nosuid_noexec_nodev | MsFlags::MS_RDONLY, None::<&str>) {
        // In a user namespace, sysfs can only be mounted for a network namespace that namespace
        // owns; with the host's network (`--network=host`) bind the host's /sys read-only
        // instead, as rootless runc and crun do.
        Err(Errno::EPERM) if in_userns() => bind_host_sys(&sys),
        r => r.map_err(os(format!("mount sysfs at {}", sys.display()))),
    }
}

/// The host's /sys with everything mounted below it (the host's cgroup filesystems...) at `sys`,
/// each mount read-only, nosuid, nodev and noexec, as a fresh sysfs would be.
fn bind_host_sys(sys: &Path) -> Result<()> {
    let step = "bind-mount the host's /sys (rootless, host network)";
    mount(Some("/sys"), sys, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(os(step))?;
    let mut targets: Vec<PathBuf> = mountinfo::read()
        .map_err(io(step))?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(sys))
        .collect();
    // Parents first: a child's mount point must be reached through its (already read-only)
    // parent, which is fine for a remount.
    targets.sort_by_key(|p| p.components().count());
    targets.dedup();
    let extra = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for target in targets {
        remount_readonly_with(&target, extra)?;
    }
    Ok(())
}

/// The overlay option a user namespace needs: without it overlayfs wants `trusted.*` xattrs,
/// which only real root may set, and ignores the store's `user.overlay.opaque` markers.
fn userxattr() -> &'static str {
    if in_userns() { ",userxattr" } else { "" }
}

/// Which of `uid` and `gid` this user namespace does not map (the uid if neither is).
fn unmapped(uid: u32, gid: u32) -> (IdKind, u32) {
    if !userns::is_mapped(IdKind::Uid, uid) || userns::is_mapped(IdKind::Gid, gid) {
        (IdKind::Uid, uid)
    } else {
        (IdKind::Gid, gid)
    }
}

/// The cgroup filesystems, read-only, under the (read-only) /sys. Mounted from inside the
/// cgroup namespace, each shows the sandbox's own cgroup as its root.
fn mount_cgroup_fs(root: &Path, mounts: &[CgroupFs]) -> Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    let base = root.join("sys/fs/cgroup");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV | MsFlags::MS_RELATIME;
    let v2_only = mounts.len() == 1 && mounts[0].dir.is_empty();
    if !v2_only {
        do_mount("tmpfs", &base, "tmpfs", flags, Some("mode=755,size=64k"))?;
    }
    for m in mounts {
        let dir = base.join(&m.dir);
        if !m.dir.is_empty() {
            std::fs::create_dir(&dir).map_err(io(format!("create /sys/fs/cgroup/{}", m.dir)))?;
        }
        let data = (!m.data.is_empty()).then_some(m.data.as_str());
        do_mount("cgroup", &dir, &m.fstype, flags | MsFlags::MS_RDONLY, data)?;
    }
    if !v2_only {
        mount(
            None::<&str>,
            &base,
            None::<&str>,
            flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(os("make /sys/fs/cgroup read-only"))?;
    }
    Ok(())
}

fn enter_rootfs(root: &Path) -> Result<()> {
    chdir(root).map_err(os(format!("chdir to {}", root.display())))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then
    // removes it, without needing a directory for it inside the rootfs.
    pivot_root(".", ".").map_err(os(format!("pivot_root to {}", root.display())))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(os("detach the old root"))?;
    chdir("/").map_err(os("chdir to /"))
}

fn loopback_up() -> Result<()> {
    // SAFETY: plain socket(2) call; the returned fd is checked and then owned by OwnedFd.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(fail("bring up lo: socket", Errno::last().desc()));
    }
    // SAFETY: `sock` is a fresh fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain old data, for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write only the `ifreq` we pass, which lives
    // across the calls; ifru_flags is the union member these requests use.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(fail("bring up lo: get flags", Errno::last().desc()));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(fail("bring up lo: set flags", Errno::last().desc()));
        }
    }
    Ok(())
}

/// Everything the user's process needs, prepared in PID 1 (or the exec helper) so the child
/// only makes syscalls.
pub(crate) struct Exec {
    args: Vec<CString>,
    env: Vec<CString>,
    argv0: String,
    path: String,
    cwd: String,
    user: ExecUser,
    caps: caps::CapSet,
    seccomp: Option<seccomp::Filter>,
    no_new_privileges: bool,
    /// In a user namespace: the host user, for "not mapped" errors.
    pub host_user: Option<String>,
    /// stdin is a terminal: the process becomes a session leader with it as its controlling
    /// terminal.
    pub tty: bool,
    /// A failed exec goes to the ready pipe (spawn, exec: the caller's error) rather than
    /// being the process's own failure (run: exit 127 or 126, as a RUN step shows it).
    pub report_exec_failure: bool,
}

impl Exec {
    pub(crate) fn new(
        args: &[String],
        cwd: &str,
        no_new_privileges: bool,
        env: Vec<String>,
        user: ExecUser,
        caps: caps::CapSet,
        seccomp: Option<seccomp::Filter>,
    ) -> Result<Exec> {
        let cstring = |s: &String| {
            CString::new(s.as_bytes()).map_err(|_| fail("prepare exec", format!("NUL byte in {s:?}")))
        };
        let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH).to_string();
        let argv0 = args.first().ok_or_else(|| fail("prepare exec", "no command"))?.clone();
        Ok(Exec {
            args: args.iter().map(cstring).collect::<Result<_>>()?,
            env: env.iter().map(cstring).collect::<Result<_>>()?,
            argv0,
            path,
            cwd: cwd.to_string(),
            user,
            caps,
            seccomp,
            no_new_privileges,
            host_user: None,
            tty: false,
            report_exec_failure: false,
        })
    }

    /// In the forked child: drop to the user, then exec. Setup failures go to `ready` as a
    /// [`Report`]; a failed exec is the process's own failure (126/127), as in Docker's RUN,
    /// unless `report_exec_failure`.
    pub(crate) fn run(self, ready: OwnedFd) -> ! {
        if let Err(f) = self.prepare() {
            send(&mut File::from(ready), &f.into());
            std::process::exit(127);
        }
        let (code, why) = match self.lookup() {
            None => (127, "executable file not found in $PATH".to_string()),
            Some(program) => match execve(&program, &self.args, &self.env) {
                Err(Errno::ENOENT) => (127, "no such file or directory".to_string()),
                // Permission denied, exec format error, ...: found but not runnable.
                Err(e) => (126, e.desc().to_lowercase()),
            },
        };
        if self.report_exec_failure {
            let message = format!("{:?}: {why}", self.argv0);
            send(&mut File::from(ready), &Report::ExecFailed { message, code });
        } else {
            eprintln!("rbuild: exec {:?}: {why}", self.argv0);
        }
        std::process::exit(code)
    }

    fn prepare(&self) -> Result<()> {
        if self.tty {
            // A new session, so that the terminal can become ours (a session leader's only).
            nix::unistd::setsid().map_err(os("start a session"))?;
            // SAFETY: TIOCSCTTY takes an int argument (0: do not steal it from another
            // session), no pointer.
            if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } == -1 {
                return Err(fail("make the terminal the controlling terminal", Errno::last().desc()));
            }
        }
        // Rust ignores SIGPIPE and the init inherited that; an ignored signal survives exec,
        // and `yes | head` must work in the sandbox.
        // SAFETY: restoring the default disposition installs no handler code.
        unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }
            .map_err(os("reset SIGPIPE"))?;
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
            .map_err(os("reset signal mask"))?;
        // runc's order: the bounding set first (it needs CAP_SETPCAP), the user next, keeping
        // the permitted set across setuid, then the final sets; seccomp last, right before
        // exec, unless without no_new_privs it must be loaded while CAP_SYS_ADMIN is still held.
        caps::drop_bounding(self.caps).map_err(os("drop capabilities from the bounding set"))?;
        if !self.no_new_privileges
            && let Some(filter) = &self.seccomp
        {
            filter.install().map_err(|e| fail("load the seccomp filter", e))?;
        }
        nix::sys::prctl::set_keepcaps(true).map_err(os("keep capabilities across setuid"))?;
        let groups: Vec<Gid> = self.user.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        match nix::unistd::setgroups(&groups) {
            // A user namespace that maps a single id denies setgroups for good (the kernel
            // demands that before an unprivileged gid_map): the process keeps rbuild's groups.
            Err(Errno::EPERM) if in_userns() && setgroups_denied() => {}
            r => r.map_err(|e| self.id_error("setgroups", e))?,
        }
        nix::unistd::setgid(Gid::from_raw(self.user.gid))
            .map_err(|e| self.id_error(format!("setgid {}", self.user.gid), e))?;
        nix::unistd::setuid(Uid::from_raw(self.user.uid))
            .map_err(|e| self.id_error(format!("setuid {}", self.user.uid), e))?;
        caps::set(self.caps).map_err(os("set capabilities"))?;
        chdir(self.cwd.as_str()).map_err(os(format!("chdir to {}", self.cwd)))?;
        if self.no_new_privileges {
            nix::sys::prctl::set_no_new_privs().map_err(os("set no_new_privs"))?;
            if let Some(filter) = &self.seccomp {
                filter.install().map_err(|e| fail("load the seccomp filter", e))?;
            }
        }
        Ok(())
    }

    /// A failed setgroups/setgid/setuid. `EINVAL` in a user namespace means an id is not
    /// mapped there (rootless without a subordinate range, or an id beyond it): say which, and
    /// what to do.
    fn id_error(&self, step: impl Into<String>, e: Errno) -> Failure {
        if e != Errno::EINVAL || !in_userns() {
            return os(step)(e);
        }
        let (uid, gid) = (self.user.uid, self.user.gid);
        let (kind, id) = match unmapped(uid, gid) {
            (IdKind::Uid, _)
                if userns::is_mapped(IdKind::Uid, uid) && userns::is_mapped(IdKind::Gid, gid) =>
            {
                // Both are mapped: a supplementary group is not.
                let group = self.user.groups.iter().find(|&&g| !userns::is_mapped(IdKind::Gid, g));
                match group {
                    Some(&g) => (IdKind::Gid, g),
                    None => return os(step)(e),
                }
            }
            other => other,
        };
        fail(format!("user {uid}:{gid}"), userns::not_mapped_message(kind, id, self.host_user.as_deref()))
    }

    /// `args[0]` as is if it has a '/', else the first executable regular file of that name in
    /// the process's PATH (empty entries mean the working directory).
    fn lookup(&self) -> Option<CString> {
        if self.argv0.contains('/') {
            return CString::new(self.argv0.as_bytes()).ok();
        }
        self.path.split(':').find_map(|dir| {
            let dir = if dir.is_empty() { "." } else { dir };
            let candidate = format!("{dir}/{}", self.argv0);
            let meta = std::fs::metadata(&candidate).ok()?;
            (meta.is_file() && meta.permissions().mode() & 0o111 != 0)
                .then(|| CString::new(candidate).ok())
                .flatten()
        })
    }
}
