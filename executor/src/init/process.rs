//! The user's process: rlimits, then in the forked child the terminal, signals, capabilities,
//! user and groups, seccomp, and the exec itself (runc's order; see [`Exec::run`]).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
use nix::unistd::{Gid, Uid, chdir, execve};
use oci_spec::runtime::{LinuxSeccomp, PosixRlimit, PosixRlimitType};

use super::{Failure, Report, Result, fail, in_userns, os, send, unmapped};
use crate::user::{self, ExecUser};
use crate::userns::{self, IdKind};
use crate::{caps, seccomp};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process's capability sets and its seccomp filter, compiled before anything of the
/// sandbox runs (the child only installs them).
pub(crate) fn security(
    capabilities: &[String],
    profile: Option<&LinuxSeccomp>,
) -> Result<(caps::CapSet, Option<seccomp::Filter>)> {
    let caps = caps::parse(capabilities).map_err(|m| fail("capabilities", m))?;
    let filter = profile
        .map(seccomp::compile)
        .transpose()
        .map_err(|e| fail("compile the seccomp filter", super::chain(&e)))?;
    Ok((caps, filter))
}

/// USER resolved in the rootfs that is `/` now (its /etc/passwd and /etc/group), and `env`
/// with `HOME` set to the user's home when it has none (docker's rule, for RUN, a container's
/// process and an exec alike).
pub(crate) fn user_and_env(user: &str, env: &[String]) -> Result<(ExecUser, Vec<String>)> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let user = user::resolve(user, read("/etc/passwd").as_deref(), read("/etc/group").as_deref())
        .map_err(|m| fail("resolve user", m))?;
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    Ok((user, env))
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

pub(super) fn set_rlimit(limit: &PosixRlimit) -> Result<()> {
    use PosixRlimitType as T;
    use nix::sys::resource::{Resource, setrlimit};
    let resource = match limit.typ() {
        T::RlimitNofile => Resource::RLIMIT_NOFILE,
        T::RlimitNproc => Resource::RLIMIT_NPROC,
        T::RlimitCore => Resource::RLIMIT_CORE,
        T::RlimitStack => Resource::RLIMIT_STACK,
        T::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        T::RlimitFsize => Resource::RLIMIT_FSIZE,
        T::RlimitCpu => Resource::RLIMIT_CPU,
        T::RlimitAs => Resource::RLIMIT_AS,
        T::RlimitData => Resource::RLIMIT_DATA,
        T::RlimitLocks => Resource::RLIMIT_LOCKS,
        T::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        T::RlimitNice => Resource::RLIMIT_NICE,
        T::RlimitRss => Resource::RLIMIT_RSS,
        T::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        T::RlimitRttime => Resource::RLIMIT_RTTIME,
        T::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
    };
    setrlimit(resource, limit.soft(), limit.hard()).map_err(os(format!("set {:?}", limit.typ())))
}

/// Whether this process's user namespace denies setgroups (`/proc/self/setgroups`).
fn setgroups_denied() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny")
}
