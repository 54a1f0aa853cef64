//! Rootless mode: an unprivileged `rbuild` moves itself into a user namespace (and a mount
//! namespace) at the top of `main`, the way `buildah unshare` / `podman unshare` do, but in
//! process: Rust's `main` is single-threaded until it starts threads, which is all
//! `unshare(CLONE_NEWUSER)` needs (a multi-threaded caller gets `EINVAL`).
//!
//! From then on rbuild is root in that namespace: the store (unpacking with `lchown`, whiteout
//! `mknod`, xattrs, overlay mounts, commits, gc) and every sandbox work as they do for real
//! root, and the kernel translates ids. The sandbox needs no user namespace of its own.
//!
//! The id maps:
//! - **subordinate ids**, when `/etc/subuid` and `/etc/subgid` give the user a range and
//!   `newuidmap`/`newgidmap` (package `uidmap`, setuid root) exist: container 0 is the user,
//!   container 1.. are the ranges, packed in order. Writing a multi-line map needs `CAP_SETUID`
//!   in the *parent* namespace, so the tools run in a helper forked before `unshare`, which stays
//!   outside.
//! - **a single id** otherwise: the process maps `0 <uid> 1` itself (after denying `setgroups`,
//!   which the kernel demands first). Only root exists inside: `chown` to any other id, and so
//!   `USER app`, fail with `EINVAL`.
//!
//! Whether a process is in a user namespace is read from `/proc/self/uid_map`
//! ([`in_initial_userns`]), never from "did we call [`enter`]": the sandbox's init (a re-exec)
//! and root inside somebody else's user namespace must behave the same way.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub use hostutil::idmap::IdKind;
use hostutil::idmap::IdMap;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Uid, User, fork, getegid, geteuid, getpid, pipe2, setresgid, setresuid};

/// A range of subordinate ids on the host (`/etc/subuid`'s `name:start:count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

/// How ids inside the namespace map to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// Container 0 is the user; container 1.. are the subordinate ranges, concatenated.
    Subordinate { uids: Vec<IdRange>, gids: Vec<IdRange> },
    /// Container 0 is the user and nothing else is mapped; `setgroups` is denied. `why` says
    /// why there are no subordinate ids.
    Single { why: String },
}

/// The rootless state of this process, set by [`enter`].
#[derive(Debug)]
pub struct Rootless {
    pub host_uid: u32,
    pub host_gid: u32,
    /// The user's name on the host, if it has one.
    pub user: Option<String>,
    pub mapping: Mapping,
}

/// Why [`enter`] failed.
#[derive(Debug)]
pub enum EnterError {
    /// The kernel, or a policy, refuses unprivileged user namespaces: rootless mode cannot work
    /// on this machine as configured.
    Unavailable(String),
    /// Anything else (a failing helper, a refused map, ...).
    Failed(String),
}

impl fmt::Display for EnterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnterError::Unavailable(m) => write!(f, "user namespaces are not available: {m}"),
            EnterError::Failed(m) => write!(f, "entering a user namespace: {m}"),
        }
    }
}

impl std::error::Error for EnterError {}

static STATE: OnceLock<Rootless> = OnceLock::new();

/// What [`enter`] set up, or `None` when this process did not enter a namespace (root).
pub fn state() -> Option<&'static Rootless> {
    STATE.get()
}

/// Whether this process runs rootless: it entered a user namespace with [`enter`], or, before
/// that, whether it would (the effective uid is not 0).
pub fn is_rootless() -> bool {
    state().is_some() || !geteuid().is_root()
}

pub use hostutil::idmap::in_initial_userns;

/// The ranges of a `/etc/subuid`-style file for the user `name` (or its numeric id `id`): lines
/// `name-or-id:start:count`; comments and malformed lines are skipped.
pub fn sub_ranges(text: &str, name: Option<&str>, id: u32) -> Vec<IdRange> {
    let id = id.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if Some(who) != name && who != id {
                return None;
            }
            Some(IdRange { start: start.trim().parse().ok()?, count: count.trim().parse().ok()? })
        })
        .filter(|r| r.count > 0)
        .collect()
}

/// `newuidmap <pid>` arguments after the pid: `0 <own> 1`, then each range at 1, 1+c1, ...
pub fn map_args(own: u32, ranges: &[IdRange]) -> Vec<String> {
    let mut args = vec!["0".to_string(), own.to_string(), "1".to_string()];
    let mut next: u64 = 1;
    for r in ranges {
        args.extend([next.to_string(), r.start.to_string(), r.count.to_string()]);
        next += u64::from(r.count);
    }
    args
}

fn find_program(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // newuidmap lives in /usr/bin on Debian; a minimal PATH may lack it.
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .filter(|d| d.is_absolute())
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// The user's subordinate ranges of `kind` ("subuid" or "subgid"): from `/etc/<kind>`, else,
/// where nsswitch.conf names another source for them (sssd, LDAP), from `getsubids`.
fn subordinate(kind: &str, name: Option<&str>, id: u32) -> Vec<IdRange> {
    let text = std::fs::read_to_string(format!("/etc/{kind}")).unwrap_or_default();
    let ranges = sub_ranges(&text, name, id);
    if !ranges.is_empty() {
        return ranges;
    }
    let nss = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    let elsewhere = nss.lines().any(|l| {
        l.trim_start().strip_prefix("subid:").is_some_and(|s| s.split_whitespace().any(|db| db != "files"))
    });
    let (Some(name), true, Some(getsubids)) = (name, elsewhere, find_program("getsubids")) else {
        return ranges;
    };
    // `getsubids [-g] USER` prints `0: USER START COUNT` per range.
    let mut cmd = Command::new(getsubids);
    if kind == "subgid" {
        cmd.arg("-g");
    }
    let Ok(out) = cmd.arg(name).output() else { return ranges };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let start = f.get(f.len().checked_sub(2)?)?.parse().ok()?;
            let count = f.last()?.parse().ok()?;
            Some(IdRange { start, count })
        })
        .filter(|r| r.count > 0)
        .collect()
}

fn write_proc(path: &str, data: &str) -> Result<(), Errno> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(data.as_bytes()))
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// The sysctls that forbid unprivileged user namespaces, as "file is value" for those set.
fn userns_sysctls() -> Vec<String> {
    let mut set = Vec::new();
    for (file, bad) in [
        ("/proc/sys/user/max_user_namespaces", "0"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1"),
    ] {
        if std::fs::read_to_string(file).is_ok_and(|v| v.trim() == bad) {
            set.push(format!("{file} is {bad}"));
        }
    }
    set
}

fn unshare_error(e: Errno) -> EnterError {
    let mut why = userns_sysctls();
    match e {
        // A multi-threaded caller: a bug in rbuild, not the machine.
        Errno::EINVAL => {
            return EnterError::Failed(format!(
                "unshare(CLONE_NEWUSER): {} (rbuild had already started a thread)",
                e.desc()
            ));
        }
        Errno::EPERM if why.is_empty() => {
            why.push("a chroot, a seccomp filter or a container runtime forbids them".into());
        }
        Errno::ENOSPC if why.is_empty() => {
            why.push("the per-user limit /proc/sys/user/max_user_namespaces is reached".into());
        }
        _ => {}
    }
    let why = if why.is_empty() { String::new() } else { format!(" ({})", why.join("; ")) };
    EnterError::Unavailable(format!("unshare(CLONE_NEWUSER): {}{why}", e.desc()))
}

/// After a successful unshare, a map write refused with EPERM: with AppArmor's restriction the
/// namespace is created without capabilities, so that is "unavailable" too.
fn map_error(what: &str, e: Errno) -> EnterError {
    let sysctls = userns_sysctls();
    let msg = format!("{what}: {}", e.desc());
    if e == Errno::EPERM && !sysctls.is_empty() {
        EnterError::Unavailable(format!("{msg} ({})", sysctls.join("; ")))
    } else {
        EnterError::Failed(msg)
    }
}

fn write_single(uid: Uid, gid: Gid) -> Result<(), EnterError> {
    // An unprivileged writer of gid_map must deny setgroups first.
    write_proc("/proc/self/setgroups", "deny")
        .map_err(|e| map_error("write deny to /proc/self/setgroups", e))?;
    write_proc("/proc/self/uid_map", &format!("0 {uid} 1\n"))
        .map_err(|e| map_error("write /proc/self/uid_map", e))?;
    write_proc("/proc/self/gid_map", &format!("0 {gid} 1\n"))
        .map_err(|e| map_error("write /proc/self/gid_map", e))
}

/// Exit codes of the id-map helper.
const HELPER_NO_GO: i32 = 3;
const HELPER_UIDMAP_FAILED: i32 = 10;
const HELPER_GIDMAP_FAILED: i32 = 11;

/// Moves this process into a new user namespace, as root there, and a new mount namespace with
/// `/` made private, unless the effective uid is 0 already (then it does nothing and returns
/// `None`). Calling it again returns the first result.
///
/// # Safety
///
/// The process must be single-threaded, before anything (rayon, a progress thread, the solver)
/// starts a thread: `unshare(CLONE_NEWUSER)` refuses a multi-threaded caller, and the helper
/// that writes the id maps is forked and runs code that is not async-signal-safe.
pub unsafe fn enter() -> Result<Option<&'static Rootless>, EnterError> {
    if let Some(state) = STATE.get() {
        return Ok(Some(state));
    }
    let (uid, gid) = (geteuid(), getegid());
    if uid.is_root() {
        return Ok(None);
    }
    let user = User::from_uid(uid).ok().flatten().map(|u| u.name);
    let name = user.as_deref();
    let uids = subordinate("subuid", name, uid.as_raw());
    let gids = subordinate("subgid", name, gid.as_raw());
    let tools = (find_program("newuidmap"), find_program("newgidmap"));
    let shown = name.map_or_else(|| format!("uid {uid}"), str::to_string);
    let mut mapping = match (&tools, uids.is_empty(), gids.is_empty()) {
        (_, true, _) => Mapping::Single { why: format!("/etc/subuid has no range for {shown}") },
        (_, _, true) => Mapping::Single { why: format!("/etc/subgid has no range for {shown}") },
        ((Some(_), Some(_)), false, false) => Mapping::Subordinate { uids, gids },
        _ => Mapping::Single { why: "newuidmap/newgidmap are not installed (package uidmap)".into() },
    };

    // The helper that runs newuidmap/newgidmap on us: forked before unshare, so that it stays
    // in the initial user namespace, where their setuid bit counts.
    let (go_r, go_w) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| EnterError::Failed(format!("pipe: {}", e.desc())))?;
    let helper = match (&mapping, &tools) {
        (Mapping::Subordinate { uids, gids }, (Some(newuidmap), Some(newgidmap))) => {
            let pid = getpid().as_raw().to_string();
            let uid_args = map_args(uid.as_raw(), uids);
            let gid_args = map_args(gid.as_raw(), gids);
            // SAFETY: the caller guarantees that the process is single-threaded; the child only
            // reads a pipe, runs two programs and _exits.
            match unsafe { fork() }.map_err(|e| EnterError::Failed(format!("fork: {}", e.desc())))? {
                ForkResult::Child => {
                    drop(go_w);
                    let mut byte = [0u8; 1];
                    let go = File::from(go_r).read(&mut byte).unwrap_or(0) == 1;
                    let run = |program: &PathBuf, args: &[String]| {
                        Command::new(program).arg(&pid).args(args).status().is_ok_and(|s| s.success())
                    };
                    let code = if !go {
                        HELPER_NO_GO
                    } else if !run(newuidmap, &uid_args) {
                        HELPER_UIDMAP_FAILED
                    } else if !run(newgidmap, &gid_args) {
                        HELPER_GIDMAP_FAILED
                    } else {
                        0
                    };
                    // SAFETY: _exit, so that nothing of the parent's state (atexit handlers,
                    // buffered stdio) runs twice.
                    unsafe { libc::_exit(code) }
                }
                ForkResult::Parent { child } => Some(child),
            }
        }
        _ => None,
    };
    drop(go_r);
    let reap = |h| loop {
        match waitpid(h, None) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };

    if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER) {
        drop(go_w); // the helper reads EOF and exits
        if let Some(h) = helper {
            let _ = reap(h);
        }
        return Err(unshare_error(e));
    }

    let mut go_w = File::from(go_w);
    match helper {
        Some(h) => {
            let sent = go_w.write_all(b"g");
            drop(go_w);
            let status =
                reap(h).map_err(|e| EnterError::Failed(format!("wait for newuidmap: {}", e.desc())))?;
            match status {
                WaitStatus::Exited(_, 0) if sent.is_ok() => {}
                WaitStatus::Exited(_, HELPER_UIDMAP_FAILED) => {
                    // Nothing is written yet, so the single mapping is still possible. Say so: a
                    // store made with one mapping cannot be used with the other.
                    eprintln!(
                        "rbuild: warning: newuidmap failed (its error is above); rootless rbuild \
                         continues with only your own id mapped (root in the namespace)"
                    );
                    mapping = Mapping::Single { why: "newuidmap failed".into() };
                    write_single(uid, gid)?;
                }
                WaitStatus::Exited(_, HELPER_GIDMAP_FAILED) => {
                    return Err(EnterError::Failed("newgidmap failed (its error is above)".into()));
                }
                other => return Err(EnterError::Failed(format!("the newuidmap helper ended: {other:?}"))),
            }
        }
        None => {
            drop(go_w);
            write_single(uid, gid)?;
        }
    }

    // Root in the namespace (getuid() is 0 once mapped; this also sets the saved ids), then a
    // mount namespace of our own for the store's overlay mounts: none reaches the host, and a
    // killed rbuild leaks none.
    let failed = |what: &'static str| move |e: Errno| EnterError::Failed(format!("{what}: {}", e.desc()));
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(failed("setresgid(0)"))?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(failed("setresuid(0)"))?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(failed("unshare(CLONE_NEWNS)"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(failed("make / private"))?;
    let _ = STATE.set(Rootless { host_uid: uid.as_raw(), host_gid: gid.as_raw(), user, mapping });
    Ok(STATE.get())
}

/// In a user namespace, the host user that container uid 0 is (by name if the host's
/// `/etc/passwd` knows it, else `uid N`); `None` in the initial namespace. Call it before
/// `pivot_root`: afterwards the name would be looked up in the image.
pub fn host_user() -> Option<String> {
    let map = IdMap::of_self(IdKind::Uid)?;
    if map.is_identity() {
        return None;
    }
    let host = map.outside(0)?;
    Some(match User::from_uid(Uid::from_raw(host)) {
        Ok(Some(u)) => u.name,
        _ => format!("uid {host}"),
    })
}

/// How to get subordinate ids, for errors of a single-id namespace: "add a range for USER in
/// /etc/subuid and /etc/subgid ...".
pub fn subuid_hint(user: Option<&str>) -> String {
    let user = user.unwrap_or("your user");
    format!(
        "add a range for {user} in /etc/subuid and /etc/subgid (e.g. `usermod --add-subuids 100000-165535 \
         --add-subgids 100000-165535 {user}`) and install newuidmap/newgidmap (package uidmap); without one, \
         rootless rbuild maps only root (0)"
    )
}

/// Whether `id` has a mapping in this process's user namespace (always, in the initial one).
pub fn is_mapped(kind: IdKind, id: u32) -> bool {
    IdMap::of_self(kind).is_none_or(|m| m.maps(id))
}

/// The error for an id that cannot be used because the user namespace does not map it: with only
/// root mapped, how to get a subordinate range; with ranges, how far they reach. `user` is the
/// host user ([`host_user`]).
pub fn not_mapped_message(kind: IdKind, id: u32, user: Option<&str>) -> String {
    let map = IdMap::of_self(kind).unwrap_or_default();
    let (k, file) = (kind.name(), format!("/etc/sub{}", kind.name()));
    if map.count() <= 1 {
        format!("{k} {id} is not mapped: {}", subuid_hint(Some(user.unwrap_or("your user"))))
    } else {
        let user = user.unwrap_or("your user");
        let top = map.top();
        format!(
            "{k} {id} is not mapped in rootless rbuild's user namespace (0-{top}): widen the range for \
             {user} in {file}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_ranges_by_name_or_id() {
        let text = "# comment\nalice:100000:65536\n1001:200000:10\nbob:300000:65536\nalice:400000:0\nbad\n";
        let r = |start, count| IdRange { start, count };
        assert_eq!(sub_ranges(text, Some("alice"), 1001), vec![r(100000, 65536), r(200000, 10)]);
        assert_eq!(sub_ranges(text, Some("bob"), 1002), vec![r(300000, 65536)]);
        assert_eq!(sub_ranges(text, None, 1001), vec![r(200000, 10)]);
        assert!(sub_ranges(text, Some("carol"), 1003).is_empty());
    }

    #[test]
    fn map_args_pack_ranges_from_one() {
        let ranges = [IdRange { start: 100000, count: 65536 }, IdRange { start: 300000, count: 10 }];
        assert_eq!(
            map_args(1001, &ranges),
            ["0", "1001", "1", "1", "100000", "65536", "65537", "300000", "10"].map(String::from)
        );
    }
}
