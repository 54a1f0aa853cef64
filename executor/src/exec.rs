//! The re-executed exec helper: `rbuild __rbuild-sandbox-exec <spec fd> <status fd>`.
//!
//! ```text
//! caller (calls exec)
//! └── helper: this binary re-executed; joins the sandbox's namespaces (setns needs a
//!     │       single-threaded process for the mount namespace), reports
//!     └── the process: forked, so it is in the sandbox's pid namespace; joins the sandbox's
//!                      cgroup; drops to the sandbox's user, capabilities, no_new_privs,
//!                      seccomp; execs
//! ```
//!
//! The status socket speaks as a spawned sandbox's supervisor does (see `init.rs`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Pid, fork, pipe2};
use oci_spec::runtime::LinuxSeccomp;
use serde::{Deserialize, Serialize};

use crate::init::{self, Exec, Failure, Report, fail, io, os, send};
use crate::{EXEC_ARG, userns};

/// What [`crate::exec`] sends the helper, as JSON.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ExecConfig {
    /// Host pid of the sandbox's PID 1, whose namespaces are joined.
    pub pid: i32,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// Unresolved, as `USER`: looked up in the sandbox's /etc/passwd and /etc/group.
    pub user: String,
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
    pub seccomp: Option<LinuxSeccomp>,
    /// The sandbox's `cgroup.procs` files, joined before anything else.
    pub cgroup_procs: Vec<PathBuf>,
    /// stdin is a terminal to make the controlling one.
    pub tty: bool,
}

/// The namespaces joined, in this order: the user namespace first, so that its capabilities
/// allow joining the others; the mount namespace last, as it changes what /proc shows.
const NAMESPACES: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

pub(crate) fn main(args: &[String]) -> i32 {
    let (spec_fd, status_fd) = match init::protocol_fds(args, EXEC_ARG) {
        Ok(fds) => fds,
        Err(code) => return code,
    };
    let _ = nix::sys::prctl::set_name(c"rbuild-exec");
    match read_config(spec_fd).map_err(Report::from).and_then(|c| start(&c)) {
        Ok(pid) => init::report_and_hold(status_fd, pid),
        Err(report) => {
            send(&mut File::from(status_fd), &report);
            0
        }
    }
}

fn read_config(fd: OwnedFd) -> init::Result<ExecConfig> {
    let mut json = Vec::new();
    File::from(fd).read_to_end(&mut json).map_err(io("read the exec spec"))?;
    serde_json::from_slice(&json).map_err(|e| fail("decode the exec spec", e))
}

/// Joins the sandbox and forks the process; returns its host pid once it has been executed.
fn start(config: &ExecConfig) -> Result<Pid, Report> {
    // This process holds the host's capabilities inside the sandbox's namespaces: nothing in
    // the sandbox may ptrace it or open its /proc files (runc's fix for CVE-2016-9962). The
    // process's exec makes it dumpable again, as its own user.
    nix::sys::prctl::set_dumpable(false).map_err(os("make the exec helper undumpable"))?;
    // Read while /proc/self is still ours: in the sandbox's /proc this process has no pid.
    let host_user = if init::in_userns() { userns::host_user() } else { None };
    raise_nofile()?;
    // Opened now, while the host's cgroup filesystems are what /sys shows; written by the
    // process only, so that this helper is never counted among the sandbox's processes.
    let procs = config
        .cgroup_procs
        .iter()
        .map(|p| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .map(|f| (f, p))
                .map_err(io(format!("open {}", p.display())))
        })
        .collect::<init::Result<Vec<_>>>()?;
    let namespaces = open_namespaces(config.pid)?;
    let (caps, seccomp) = init::security(&config.capabilities, config.seccomp.as_ref())?;
    for (name, fd, flag) in namespaces {
        nix::sched::setns(&fd, flag)
            .map_err(os(format!("join the {name} namespace of PID {}", config.pid)))?;
    }
    // setns into the mount namespace put us at its root: the sandbox's rootfs.
    let (user, env) = init::user_and_env(&config.user, &config.env)?;
    let mut exec = Exec::new(&config.args, &config.cwd, config.no_new_privileges, env, user, caps, seccomp)?;
    exec.host_user = host_user;
    exec.tty = config.tty;
    exec.report_exec_failure = true;

    let (ready_r, ready_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(os("create exec pipe"))?;
    // SAFETY: this process is single-threaded (the re-exec'd helper), so the child may run
    // arbitrary code before exec.
    match unsafe { fork() }.map_err(os("fork the process"))? {
        ForkResult::Child => {
            drop(ready_r);
            if let Err(f) = join_cgroup(&procs) {
                send(&mut File::from(ready_w), &f.into());
                std::process::exit(1)
            }
            // The process must not outlive the helper, whose caller waits for it.
            if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
                send(&mut File::from(ready_w), &fail("set the parent-death signal", e.desc()).into());
                std::process::exit(1)
            }
            exec.run(ready_w)
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            init::release_stdio();
            init::started(child, ready_r)
        }
    }
}

/// Moves the calling process into the sandbox's cgroup, through its `cgroup.procs` files.
fn join_cgroup(procs: &[(File, &PathBuf)]) -> init::Result<()> {
    for (file, path) in procs {
        let mut file: &File = file;
        file.write_all(b"0").map_err(io(format!("join the cgroup ({})", path.display())))?;
    }
    Ok(())
}

/// The sandbox's open-files limit: soft = hard (see `InitConfig::new`).
fn raise_nofile() -> init::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(os("read the open-files limit"))?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(os("set the open-files limit"))
}

/// The namespaces of `pid` to join, all opened before any is joined (the sandbox's /proc
/// would not show the host's pids); those this process is in already are left out, since
/// joining one's own user namespace is an error.
fn open_namespaces(pid: i32) -> Result<Vec<(&'static str, OwnedFd, CloneFlags)>, Failure> {
    let mut out = Vec::new();
    for (name, flag) in NAMESPACES {
        let path = format!("/proc/{pid}/ns/{name}");
        let theirs = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(fail(format!("join PID {pid}"), "the process is not running"));
            }
            Err(e) => return Err(io(format!("open {path}"))(e)),
        };
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .map_err(io(format!("stat our {name} namespace")))?;
        let meta = theirs.metadata().map_err(io(format!("stat {path}")))?;
        if (meta.dev(), meta.ino()) != (ours.dev(), ours.ino()) {
            out.push((name, OwnedFd::from(theirs), flag));
        }
    }
    Ok(out)
}
