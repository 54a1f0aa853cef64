//! The sandbox that RUN steps and containers execute in.
//!
//! It calls the kernel directly through `nix`: no runc, no other runtime. It knows nothing of
//! Dockerfiles, images or container state: it gets a [`SandboxSpec`] (rootfs layers, process,
//! hostname, network mode, mounts), and either runs it to the end ([`run`], for RUN steps) or
//! starts it and hands back a handle ([`spawn`], for containers, plus [`exec`] into one).

pub mod caps;
pub mod cgroup;
pub mod emulation;
mod exec;
mod init;
mod populate;
mod provider;
mod resources;
mod seccomp;
mod spec;
mod supervise;
mod user;
pub mod userns;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use provider::{NetworkProvider, ProvidedNetwork, ProviderError, StepNetwork};
pub use resources::{MIN_MEMORY, ProcessLimits, ResourceError, ULIMIT_NAMES, Ulimit, UlimitError};
pub use spec::{InitConfig, SpawnConfig};
pub use supervise::{ExecProcess, Sandbox};

/// This machine's architecture in Go's spelling (`amd64`, `arm64`).
fn host_architecture() -> &'static str {
    hostutil::platform::host().architecture
}

/// The first argument with which the `rbuild` binary is re-executed to become a sandbox's
/// init. The binary's `main` must call [`init_main`] when it sees it, before anything else.
pub const INIT_ARG: &str = "__rbuild-sandbox-init";

/// The first argument with which the `rbuild` binary is re-executed to [`exec`] a process into
/// a running sandbox. The binary's `main` must call [`exec_main`] when it sees it, before
/// anything else (in particular before starting any thread: `setns` into a mount namespace
/// needs a single-threaded process).
pub const EXEC_ARG: &str = "__rbuild-sandbox-exec";

/// What to run and how to isolate it: the one description shared by RUN steps and containers.
/// [`InitConfig`] turns it into an OCI runtime spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub rootfs: Rootfs,
    pub process: Process,
    pub hostname: String,
    pub network: NetworkMode,
    /// Mounts on top of the rootfs (after /proc, /dev, /sys), in order.
    pub mounts: Vec<Mount>,
    pub resources: Resources,
    /// `--shm-size`, `--ulimit`.
    #[serde(default)]
    pub limits: ProcessLimits,
    pub security: Security,
    /// The rootfs is mounted read-only (docker `--read-only`); /proc, /dev, /dev/shm, /sys,
    /// and the [`mounts`](SandboxSpec::mounts) (a tmpfs on /tmp, say) keep their own flags.
    #[serde(default)]
    pub readonly_rootfs: bool,
}

/// The root filesystem: an overlay mounted inside the sandbox's own mount namespace, so the
/// mount vanishes with the sandbox even if rbuild is killed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rootfs {
    /// Lower layer directories, topmost first (overlayfs `lowerdir` order).
    pub lowers: Vec<PathBuf>,
    /// Where writes go; after the run it holds the step's changes in overlay format.
    pub upper: PathBuf,
    pub work: PathBuf,
    /// The mount point (an empty directory).
    pub target: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Process {
    pub args: Vec<String>,
    /// `NAME=value` pairs; `PATH` in here is what `args[0]` is looked up in.
    pub env: Vec<String>,
    /// Absolute path inside the rootfs; created if missing, as runc does.
    pub cwd: String,
    /// As in Dockerfile `USER`: `name`, `uid`, `name:group`, `uid:gid`; empty means root.
    /// Names are resolved through the rootfs's /etc/passwd and /etc/group.
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// A new network namespace with only `lo`, up.
    None,
    /// The host's network namespace.
    Host,
    /// An existing network namespace, named by a file: a bind-mounted nsfs file
    /// (`/run/netns/NAME`) or `/proc/PID/ns/net`. Joined as it is (its interfaces, `lo`
    /// included, are left alone): a container's network made by the runtime, or
    /// `--network container:NAME`.
    Join(PathBuf),
}

/// A mount inside the sandbox. `target` is an absolute path in the sandbox; it is resolved
/// inside the rootfs (after `pivot_root`, so a symlink in the image cannot lead out) and
/// created, as an empty directory or file, if missing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mount {
    pub target: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MountKind {
    /// A host file or directory.
    Bind { source: PathBuf, readonly: bool },
    /// A volume: a bind mount of the host directory `source`. With `populate`, if `source` is
    /// empty and the image has a directory at the target, that directory's content is first
    /// copied into `source` (file types, modes, owners, times, hard links and symlinks as they
    /// are, extended attributes where the filesystem takes them; no symlink is followed), and
    /// `source` takes the directory's owner and mode, as docker fills a named volume on its
    /// first mount.
    Volume { source: PathBuf, readonly: bool, populate: bool },
    /// An overlay of host directories (topmost first). With `upper` (upperdir, workdir) it is
    /// writable; without, read-only (at least two lowers: one is a read-only `Bind`).
    Overlay { lowers: Vec<PathBuf>, upper: Option<(PathBuf, PathBuf)> },
    /// A fresh tmpfs; `size` in bytes.
    Tmpfs { size: Option<u64> },
    /// A read-only file with these contents, on a tmpfs: the bytes never touch a disk, so a
    /// secret cannot end up in a layer (a build step's /etc/hosts and resolv.conf neither).
    Secret { contents: Vec<u8>, mode: u32, uid: u32, gid: u32 },
}

/// cgroup limits. `None` means no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Bytes of memory (swap included: the sandbox gets no swap beyond it).
    pub memory: Option<u64>,
    /// CPU time per `cpu_period` (both in microseconds), as `--cpus` = quota / period.
    pub cpu_quota: Option<u64>,
    pub cpu_period: Option<u64>,
    /// Relative weight, in cgroup v1 shares (1024 = normal); converted for v2.
    pub cpu_shares: Option<u64>,
    /// Most processes (and threads) at once.
    pub pids: Option<u64>,
    /// `--cgroup-parent`: where the sandbox's cgroup is made, relative to each hierarchy's
    /// root (default [`cgroup::PARENT`]). Given, the sandbox must get a cgroup (an error if it
    /// cannot), as with a limit.
    #[serde(default)]
    pub cgroup_parent: Option<String>,
}

/// What the process may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Security {
    /// Capabilities kept, in all five sets for root (bounding only for other users, as in
    /// Docker); names as `CAP_CHOWN`.
    pub capabilities: Vec<String>,
    /// Docker's default seccomp profile.
    pub seccomp: bool,
    pub no_new_privileges: bool,
    /// Docker's masked paths (/proc/kcore, ...) and read-only paths (/proc/sys, ...).
    pub mask_paths: bool,
}

impl Security {
    /// Docker's defaults: its 14 capabilities, its seccomp profile, `no_new_privs`, masked paths.
    pub fn docker_default() -> Security {
        Security {
            capabilities: caps::DOCKER_DEFAULT.iter().map(|c| c.to_string()).collect(),
            seccomp: true,
            no_new_privileges: true,
            mask_paths: true,
        }
    }

    /// `RUN --security=insecure` (a privileged container): every capability, no seccomp, no
    /// masked paths.
    pub fn insecure() -> Security {
        Security {
            capabilities: caps::all_names(),
            seccomp: false,
            no_new_privileges: false,
            mask_paths: false,
        }
    }
}

impl Default for Security {
    fn default() -> Security {
        Security::docker_default()
    }
}

/// How a sandbox ended: the process's status, and whether the kernel's OOM killer killed a
/// process of the sandbox (its memory limit was hit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: ExitStatus,
    pub oom_killed: bool,
}

impl Outcome {
    pub fn success(self) -> bool {
        self.status.success()
    }
}

/// How a sandboxed process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// Where the sandboxed process's stdio goes.
pub enum Stdio<'a> {
    /// stdin, stdout and stderr of the calling process (`rbuild run` in the foreground).
    Inherit,
    /// stdin is /dev/null; stdout and stderr are merged and handed to the callback in chunks
    /// as they arrive (build steps).
    Capture(&'a mut dyn FnMut(&[u8])),
}

/// Errors setting up or supervising a sandbox. Errors *inside* the sandboxed process are not
/// errors here: they are its exit status and output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A step on rbuild's side of the sandbox (spawning the init, pipes, reading output).
    #[error("sandbox: {step}")]
    Setup {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A step inside the sandbox's init failed (mounts, pivot_root, user lookup, ...).
    #[error("sandbox: {step}: {message}")]
    Sandbox { step: String, message: String },
    /// The spec cannot be run as given.
    #[error("sandbox: invalid spec: {0}")]
    InvalidSpec(String),
    /// The init broke its protocol with [`run`] (died without reporting, unreadable report).
    #[error("sandbox init failed: {0}")]
    Init(String),
    /// [`run_cancellable`]'s flag was raised: the sandbox and everything in it was killed.
    #[error("cancelled")]
    Cancelled,
    /// Making, limiting or removing the sandbox's cgroup.
    #[error(transparent)]
    Cgroup(#[from] cgroup::Error),
    /// [`spawn`] or [`exec`]: the command could not be executed (docker's wording:
    /// `exec: "nosuch": executable file not found in $PATH`).
    #[error("exec: {message}")]
    Exec {
        message: String,
        /// The exit code docker gives for it: 127 (not found), 126 (found, not runnable).
        code: i32,
    },
}

impl Error {
    /// What a user can do about an error that only rootless mode causes: resource limits need
    /// a cgroup of rbuild's own, which an unprivileged user cannot make.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Cgroup(c) => c.hint(),
            _ => None,
        }
    }
}

/// Runs `spec` in a new sandbox and waits for it to end.
///
/// The sandbox is a re-execution of the current binary (see [`INIT_ARG`]); the spec reaches it
/// as JSON ([`InitConfig`]) through a pipe on an inherited file descriptor.
pub fn run(spec: &SandboxSpec, stdio: Stdio<'_>) -> Result<Outcome, Error> {
    supervise::run(spec, stdio, None)
}

/// [`run`], but when `cancel` becomes true the sandbox is killed (its supervisor gets SIGKILL;
/// the parent-death signal takes PID 1 and with it the whole pid namespace) and the call
/// returns [`Error::Cancelled`] promptly. The flag is checked every 20 ms.
pub fn run_cancellable(
    spec: &SandboxSpec,
    stdio: Stdio<'_>,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<Outcome, Error> {
    supervise::run(spec, stdio, Some(cancel))
}

/// The entry point of the re-executed binary (`rbuild __rbuild-sandbox-init ...`). Never returns.
///
/// # Safety
///
/// The process must be single-threaded: the init unshares namespaces (a new pid namespace and
/// `CLONE_NEWUSER` need a single thread) and forks, and a fork of a multi-threaded process may
/// only make async-signal-safe calls, which the init does not limit itself to. Call it first
/// thing in `main`, before anything starts a thread.
pub unsafe fn init_main(args: &[String]) -> ! {
    std::process::exit(init::main(args))
}

/// The entry point of the re-executed binary (`rbuild __rbuild-sandbox-exec ...`, see
/// [`EXEC_ARG`]). Never returns.
///
/// # Safety
///
/// As [`init_main`]: `setns` into a mount namespace refuses a multi-threaded process, and the
/// helper forks.
pub unsafe fn exec_main(args: &[String]) -> ! {
    std::process::exit(exec::main(args))
}

/// How [`spawn`] starts a long-running sandbox (a container).
pub struct SpawnOptions {
    pub stdio: SpawnStdio,
    /// `false` (docker's default): the command itself is the sandbox's PID 1, so it gets only
    /// the signals it has handlers for, and must reap its own orphans. `true` (`docker run
    /// --init`): rbuild-init is PID 1, forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1,
    /// SIGUSR2, SIGWINCH and SIGCONT to the command, reaps zombies, and exits with the
    /// command's status (128 + N if a signal N ended it), as docker-init (tini) does.
    pub init: bool,
}

/// The stdio of a [`spawn`]ed sandbox or an [`exec`]ed process.
pub enum SpawnStdio {
    /// /dev/null for all three.
    Null,
    /// These descriptors (pipe ends, files, sockets) as stdin, stdout and stderr.
    Fds { stdin: OwnedFd, stdout: OwnedFd, stderr: OwnedFd },
    /// The slave side of a pseudo-terminal (open it with `O_NOCTTY`, as `openpty` does) as all
    /// three; the process becomes a session leader with it as its controlling terminal. A
    /// spawned sandbox also sees it at /dev/console, as runc shows a container's terminal.
    Tty(OwnedFd),
}

/// Starts `spec` in a new sandbox and returns once its command has been executed: what fails
/// before that (a mount, a bad `USER` or working directory, a command that is not there, see
/// [`Error::Exec`]) is this call's error. The sandbox always has a cgroup of its own when the
/// host lets rbuild make one (also without limits: pause, stats and top need it).
///
/// The sandbox dies with the *thread* that calls `spawn` (its supervisor has
/// `PR_SET_PDEATHSIG`, which the kernel ties to the parent thread): call it from a thread that
/// lives as long as the container, such as the monitor's main thread. Dropping the
/// [`Sandbox`] without [`wait`](Sandbox::wait)ing kills it.
pub fn spawn(spec: &SandboxSpec, opts: SpawnOptions) -> Result<Sandbox, Error> {
    supervise::spawn(spec, opts)
}

/// What to run in an existing sandbox (`docker exec`).
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// Host PID of the sandbox's PID 1 ([`Sandbox::pid`]).
    pub pid: i32,
    /// `cwd` must exist in the sandbox (it is not created); `user` is resolved in the
    /// sandbox's /etc/passwd and /etc/group.
    pub process: Process,
    pub security: Security,
    /// The sandbox's cgroup, as [`Sandbox::cgroup_name`] gave it; the process joins it.
    pub cgroup: Option<String>,
}

/// Starts a process in the namespaces (user if different, mnt, uts, ipc, net, pid, cgroup) and
/// the cgroup of a running sandbox, with `spec.security` applied as in the sandbox itself, and
/// returns once it has been executed (so a missing command is this call's [`Error::Exec`]).
///
/// Like [`spawn`], the process dies with the thread that calls `exec` (and with the sandbox's
/// PID 1): a process that must outlive its caller (`exec -d`) is started from the monitor.
pub fn exec(spec: &ExecSpec, stdio: SpawnStdio) -> Result<ExecProcess, Error> {
    supervise::exec(spec, stdio)
}
