//! `exec`: a process started in a running container, with docker's rules for its environment,
//! user, working directory and terminal. A front end (the CLI, an API service) hands over an
//! [`ExecRequest`] and relays the process's stdio; everything else happens here.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use hostutil::tty::WindowSize;
use serde::{Deserialize, Serialize};

use crate::container::{Container, Containers, Status};
use crate::{Error, Result, lifecycle};

/// What to run (docker's `ExecConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    /// `NAME=value` pairs set over the container's environment, in order.
    pub env: Vec<String>,
    /// Default: the container's user.
    pub user: Option<String>,
    /// Default: the container's working directory.
    pub workdir: Option<String>,
    /// Run on a new pseudo-terminal (the session gets its master as [`Exec::terminal`]).
    pub tty: bool,
    /// The terminal's first size (with `tty`).
    pub size: Option<(u16, u16)>,
    /// Every capability, no seccomp, no masked paths, as a privileged container.
    pub privileged: bool,
    /// docker's exec ID ([`new_id`]), which its events name as `execID`.
    #[serde(default)]
    pub id: Option<String>,
}

/// A new exec ID: 64 hex digits, as dockerd's.
pub fn new_id() -> String {
    format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>())
}

/// Where the process's stdio goes without a terminal.
pub enum ExecStdio {
    /// /dev/null for all three.
    Null,
    /// These descriptors (the caller's own stdio, pipes, a socket).
    Fds { stdin: OwnedFd, stdout: OwnedFd, stderr: OwnedFd },
}

/// A process running in a container.
pub struct Exec {
    process: executor::ExecProcess,
    /// The store, the container and the exec ID, for the `exec_die` event.
    root: std::path::PathBuf,
    container: Container,
    id: Option<String>,
    /// With [`ExecRequest::tty`]: the pseudo-terminal's master. What the process writes is read
    /// from it, what it should read is written to it.
    pub terminal: Option<File>,
}

impl Exec {
    /// The process's host PID.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Blocks until the process ends; its exit code (128 + N if signal N killed it). Records
    /// docker's `exec_die` event with it.
    pub fn wait(self) -> Result<i32> {
        let code = self.process.wait()?.code();
        let mut attrs = exec_attributes(self.id.as_deref());
        attrs.push(("exitCode", code.to_string()));
        crate::events::emit(&self.root, crate::events::container(&self.container, "exec_die", &attrs));
        Ok(code)
    }
}

/// Records docker's exec event `action` (`exec_create`, `exec_start`) for `req` in the
/// container `what`: the action names the command (`exec_start: sh -c date`), as dockerd's.
/// Best effort, as every event: a container that cannot be read gets none.
pub fn event(root: &Path, what: &str, action: &str, req: &ExecRequest) {
    if let Ok(c) = Containers::open(root).and_then(|cs| cs.find(what)) {
        emit_for(root, &c, action, req);
    }
}

fn emit_for(root: &Path, c: &Container, action: &str, req: &ExecRequest) {
    let action = format!("{action}: {}", req.cmd.join(" "));
    let attrs = exec_attributes(req.id.as_deref());
    crate::events::emit(root, crate::events::container(c, &action, &attrs));
}

/// dockerd's `execID` attribute of an exec's events.
fn exec_attributes(id: Option<&str>) -> Vec<(&'static str, String)> {
    id.map(|id| ("execID", id.to_string())).into_iter().collect()
}

/// Sets the size of an exec's (or a container's) terminal; the kernel sends its foreground
/// process group SIGWINCH.
pub fn resize(terminal: &File, rows: u16, cols: u16) -> Result<()> {
    hostutil::tty::set_window_size(terminal, WindowSize { rows, cols })
        .map_err(|e| Error::Io { path: "pseudo-terminal".into(), source: e })
}

/// The container `what` if an exec can join it: running, and not paused.
fn joinable(root: &Path, what: &str) -> Result<Container> {
    let containers = Containers::open(root)?;
    let c = lifecycle::refresh(&containers, containers.find(what)?)?;
    if !c.is_alive() {
        return Err(Error::Conflict(format!("container {} is not running", c.name())));
    }
    if c.state.status == Status::Paused {
        return Err(Error::Conflict(format!(
            "container {} is paused, unpause the container before exec",
            c.name()
        )));
    }
    Ok(c)
}

/// What the process runs as: the container's environment with the request's over it (and
/// `TERM=xterm` on a terminal unless set, as docker), its user and working directory unless
/// the request names others, its security unless `privileged`.
fn spec_for(c: &Container, req: &ExecRequest) -> Result<executor::ExecSpec> {
    let cfg = &c.config.config;
    let mut env = cache::oci::ContainerConfig { env: Some(cfg.env.clone()), ..Default::default() };
    for kv in &req.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        env.env_set(k, v);
    }
    if req.tty && env.env_get("TERM").is_none() {
        env.env_set("TERM", "xterm");
    }
    let security = if req.privileged { executor::Security::insecure() } else { c.config.host.security()? };
    let cwd = req
        .workdir
        .clone()
        .unwrap_or_else(|| if cfg.working_dir.is_empty() { "/".into() } else { cfg.working_dir.clone() });
    Ok(executor::ExecSpec {
        pid: c.state.pid,
        process: executor::Process {
            args: req.cmd.clone(),
            env: env.env.unwrap_or_default(),
            cwd,
            user: req.user.clone().unwrap_or_else(|| cfg.user.clone()),
        },
        security,
        cgroup: c.state.cgroup.clone(),
    })
}

/// Starts `req` in the running container `what` (name, id or id prefix) and returns once the
/// command has been executed: a command that does not exist is this call's error
/// ([`executor::Error::Exec`], with docker's 126/127).
///
/// The process dies with the thread that calls this (see [`executor::exec`]); [`detach`]
/// starts one that outlives its caller.
pub fn exec(root: &Path, what: &str, req: &ExecRequest, stdio: ExecStdio) -> Result<Exec> {
    if req.cmd.is_empty() {
        return Err(Error::Invalid("exec needs a command".into()));
    }
    let c = joinable(root, what)?;
    let spec = spec_for(&c, req)?;
    let (process, terminal) = if req.tty {
        // The container's own devpts, so that `tty` names the terminal inside it; the host's
        // if the container has none.
        let ptmx = PathBuf::from(format!("/proc/{}/root/dev/pts/ptmx", c.state.pid));
        let (master, slave) = hostutil::tty::open_pty_at(&ptmx)
            .or_else(|_| hostutil::tty::open_pty())
            .map_err(|e| Error::Io { path: "/dev/ptmx".into(), source: e })?;
        let terminal = File::from(master);
        if let Some((rows, cols)) = req.size {
            resize(&terminal, rows, cols)?;
        }
        (executor::exec(&spec, executor::SpawnStdio::Tty(slave))?, Some(terminal))
    } else {
        let stdio = match stdio {
            ExecStdio::Null => executor::SpawnStdio::Null,
            ExecStdio::Fds { stdin, stdout, stderr } => executor::SpawnStdio::Fds { stdin, stdout, stderr },
        };
        (executor::exec(&spec, stdio)?, None)
    };
    emit_for(root, &c, "exec_start", req);
    Ok(Exec { process, root: root.to_path_buf(), container: c, id: req.id.clone(), terminal })
}

/// argv[1] of the re-executed binary that holds a detached exec; `main` must call
/// [`detached_main`] when it sees it.
pub const DETACHED_ARG: &str = "__rbuild-exec-detached";

/// `exec -d`: starts `req` in `what` from a process of its own (rbuild re-executed in a new
/// session, stdio on /dev/null), which waits for it: an exec'd process dies with the thread that
/// started it, so a detached one needs a waiter that outlives the caller. Returns once the
/// command has been executed, with its error if it could not be.
pub fn detach(root: &Path, what: &str, req: &ExecRequest) -> Result<()> {
    if req.tty {
        return Err(Error::Invalid("a detached exec has no terminal to give a pseudo-terminal to".into()));
    }
    joinable(root, what)?;
    let json = serde_json::to_string(req).map_err(|e| Error::Invalid(e.to_string()))?;
    let exe = std::env::current_exe().map_err(|e| Error::Io { path: "/proc/self/exe".into(), source: e })?;
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Io { path: "pipe".into(), source: e.into() })?;
    let ready_fd = std::os::fd::AsRawFd::as_raw_fd(&ready_w);
    let mut cmd = std::process::Command::new(exe);
    cmd.arg0("rbuild-exec")
        .arg(DETACHED_ARG)
        .arg(root)
        .arg(what)
        .arg(json)
        .arg(ready_fd.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, close_range, fcntl).
    unsafe {
        cmd.pre_exec(move || {
            // Its own session: the caller's terminal and its hangup never reach it.
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // Descriptors the caller inherited are not the waiter's to keep open; the ready
            // pipe is.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            if libc::fcntl(ready_fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // It outlives a CLI caller by design; a caller that lives on (the API service) reaps it,
    // or it stays a zombie.
    let child = cmd.spawn().map_err(|e| Error::Io { path: "rbuild-exec".into(), source: e })?;
    crate::process::reap_in_background(child);
    drop(cmd);
    drop(ready_w);
    let mut word = String::new();
    std::io::Read::read_to_string(&mut File::from(ready_r), &mut word)
        .map_err(|e| Error::Io { path: "exec ready pipe".into(), source: e })?;
    match word.strip_prefix("error ") {
        Some(failure) => Err(Error::from_start_failure_text(failure)),
        None if word.trim_end() == "ok" => Ok(()),
        None => Err(Error::StartFailed {
            message: "the detached exec ended before it started its process".into(),
            code: 126,
        }),
    }
}

/// The detached exec's entry point (`rbuild __rbuild-exec-detached ROOT CONTAINER JSON FD`):
/// starts the process, says `ok` (or `error MESSAGE`) on the pipe, and waits for it. Never
/// returns.
pub fn detached_main(args: &[String]) -> ! {
    let ([root, what, json, _], mut ready) = crate::process::hidden_entry_args::<4>(args, DETACHED_ARG);
    let started = serde_json::from_str::<ExecRequest>(&json)
        .map_err(|e| Error::Invalid(e.to_string()))
        .and_then(|req| exec(Path::new(&root), &what, &req, ExecStdio::Null));
    let exec = match started {
        Ok(exec) => exec,
        Err(e) => {
            let _ = std::io::Write::write_all(
                &mut ready,
                format!("error {}\n", e.start_failure_text()).as_bytes(),
            );
            std::process::exit(1)
        }
    };
    let _ = std::io::Write::write_all(&mut ready, b"ok\n");
    drop(ready);
    std::process::exit(exec.wait().unwrap_or(1))
}
