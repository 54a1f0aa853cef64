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
//!
//! The setup is split by what it sets up: [`tree`] forks and supervises the process tree and
//! relays reports, [`rootfs`] mounts the root filesystem and everything on it, [`process`]
//! turns PID 1 (or an exec'd process) into the user's command, [`network`] the sandbox's side
//! of the network. [`prepare_pid1`] below is the order in which they run.

mod network;
mod process;
mod rootfs;
mod tree;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::unistd::sethostname;
use serde::{Deserialize, Serialize};

use crate::spec::{InitConfig, Plan};
use crate::userns::{self, IdKind};
use crate::{ExitStatus, INIT_ARG};

pub(crate) use process::{Exec, security, user_and_env};
pub(crate) use tree::{release_stdio, report_and_hold, started};

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
        Ok(plan) if plan.spawn.is_some() => return tree::supervise_spawned(&plan, status_fd),
        Ok(plan) => match tree::supervise(plan) {
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

/// Which of `uid` and `gid` this user namespace does not map (the uid if neither is).
fn unmapped(uid: u32, gid: u32) -> (IdKind, u32) {
    if !userns::is_mapped(IdKind::Uid, uid) || userns::is_mapped(IdKind::Gid, gid) {
        (IdKind::Uid, uid)
    } else {
        (IdKind::Gid, gid)
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
    rootfs::mount_overlay(plan)?;
    rootfs::mount_standard_fs(target, plan.shm_size)?;
    if plan.cgroupns {
        rootfs::mount_cgroup_fs(target, &plan.cgroup_fs)?;
    }
    if plan.spawn.is_some_and(|s| s.console) {
        rootfs::mount_console(target)?;
    }
    // Before pivot_root: a bind mount's source must be in our mount tree, which the old root
    // leaves. Targets are resolved inside the rootfs as if it were `/` (nothing of the
    // sandbox runs yet, so nothing can swap a path under us).
    for (dest, mount) in &plan.mounts {
        let fds = rootfs::open_sources(dest, mount)?;
        rootfs::user_mount(target, dest, mount, &fds)?;
    }
    let (caps, seccomp) = process::security(&plan.capabilities, plan.seccomp.as_ref())?;
    // For "not mapped" errors: the host user's name, looked up while the host's /etc/passwd is
    // still what getpwuid reads.
    let host_user = if in_userns() { userns::host_user() } else { None };
    rootfs::enter_rootfs(target)?;
    rootfs::mask_paths(&plan.masked_paths, &plan.readonly_paths)?;

    // Created after pivot_root so that a symlink in the image resolves inside the rootfs, never
    // on the host.
    std::fs::create_dir_all(&plan.cwd).map_err(io(format!("create working directory {}", plan.cwd)))?;
    if plan.readonly_rootfs {
        // Only the rootfs's own mount: the mounts on it keep their flags.
        rootfs::remount_readonly(Path::new("/"))?;
    }
    let hostname = plan.hostname.as_deref().unwrap_or_default();
    if plan.namespaces.contains(CloneFlags::CLONE_NEWUTS) && !hostname.is_empty() {
        sethostname(hostname).map_err(os(format!("set hostname {hostname:?}")))?;
    }
    if plan.namespaces.contains(CloneFlags::CLONE_NEWNET) {
        network::loopback_up()?;
    }
    for limit in &plan.rlimits {
        process::set_rlimit(limit)?;
    }

    let (user, env) = process::user_and_env(&plan.user, &plan.env)?;
    let mut exec = Exec::new(&plan.args, &plan.cwd, plan.no_new_privileges, env, user, caps, seccomp)?;
    exec.host_user = host_user;
    if let Some(spawn) = plan.spawn {
        exec.tty = spawn.console;
        exec.report_exec_failure = true;
    }
    Ok(exec)
}
