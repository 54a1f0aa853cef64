//! Capabilities: Docker's default set, and dropping everything else from all five sets.
//!
//! The sandbox's PID 2 (single-threaded, forked, about to `execve`) applies a [`CapSet`] in two
//! steps around its change of user: [`drop_bounding`] first (it needs `CAP_SETPCAP`), then
//! `PR_SET_KEEPCAPS`, setgroups/setgid/setuid, then [`set`]. As in Docker (moby >= 20.10.14)
//! the inheritable and ambient sets end up empty, so after `execve` root has
//! `CapEff` = `CapPrm` = `CapBnd` = the kept set, and any other user has no capability at all
//! (unless a binary carries file capabilities, which the bounding set still limits).
//!
//! The two steps are raw `prctl(2)`/`capset(2)` calls rather than the `caps` crate: they are a
//! handful of lines, and in the forked child they must neither allocate nor read files (the
//! `caps` crate builds `HashSet`s and reads `/proc/sys/kernel/cap_last_cap`).

use nix::errno::Errno;

/// The capabilities Docker gives a container by default (moby's `caps.DefaultCapabilities`):
/// `CapEff` 0x00000000a80425fb for root.
pub const DOCKER_DEFAULT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability name, by number (`CAP_CHOWN` is 0).
pub const ALL: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Every capability name we know.
pub fn all_names() -> Vec<String> {
    ALL.iter().map(|c| c.to_string()).collect()
}

/// A capability name that Linux does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability: {0:?}")]
pub struct UnknownCapability(pub String);

/// `base` with docker's `--cap-add`/`--cap-drop` applied (moby's `TweakCapabilities`): names
/// in any case, with or without `CAP_`. `ALL` in `add` gives every capability but those in
/// `drop`; otherwise `ALL` in `drop` gives just those in `add`; otherwise `base` less `drop`,
/// then `add`. The result has canonical names (`CAP_CHOWN`), each once, in `base`'s order then
/// `add`'s. An unknown name is an error naming it, as docker words it.
pub fn with_changes(
    base: &[String],
    add: &[String],
    drop: &[String],
) -> Result<Vec<String>, UnknownCapability> {
    if add.is_empty() && drop.is_empty() {
        return Ok(base.to_vec());
    }
    let normalize = |names: &[String]| -> Result<Vec<String>, UnknownCapability> {
        names
            .iter()
            .map(|n| {
                if n.eq_ignore_ascii_case("ALL") {
                    return Ok("ALL".to_string());
                }
                let upper = n.to_ascii_uppercase();
                let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
                match number(&full) {
                    Some(i) => Ok(ALL[i as usize].to_string()),
                    None => Err(UnknownCapability(full)),
                }
            })
            .collect()
    };
    let (add, drop) = (normalize(add)?, normalize(drop)?);
    let has_all = |list: &[String]| list.iter().any(|c| c == "ALL");
    let mut caps: Vec<String> = if has_all(&add) {
        ALL.iter().map(|c| c.to_string()).filter(|c| !drop.contains(c)).collect()
    } else if has_all(&drop) {
        add
    } else {
        let base = normalize(base)?;
        base.into_iter().filter(|c| c != "ALL" && !drop.contains(c)).chain(add).collect()
    };
    let mut seen = std::collections::HashSet::new();
    caps.retain(|c| seen.insert(c.clone()));
    Ok(caps)
}

/// A set of capabilities: bit N is capability number N (`CAP_CHOWN` = bit 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CapSet(u64);

impl CapSet {
    pub(crate) const EMPTY: CapSet = CapSet(0);
    /// [`DOCKER_DEFAULT`] as a set (checked by a test).
    #[cfg(test)]
    pub(crate) const DOCKER_DEFAULT: CapSet = CapSet(0xa804_25fb);

    #[cfg(test)]
    pub(crate) const fn from_bits(bits: u64) -> CapSet {
        CapSet(bits)
    }

    #[cfg(test)]
    pub(crate) const fn bits(self) -> u64 {
        self.0
    }

    pub(crate) const fn contains(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }

    /// Whether the set holds the capability called `name` (as [`number`] reads it).
    pub(crate) fn contains_name(self, name: &str) -> bool {
        number(name).is_some_and(|cap| self.contains(cap))
    }
}

/// The number of a capability: `CAP_SYS_ADMIN`, `cap_sys_admin` and `SYS_ADMIN` are all 21, as
/// Docker accepts names with or without the prefix, in any case.
pub(crate) fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    ALL.iter().position(|c| c[4..] == *bare).map(|i| i as u32)
}

/// The set named by `names` (see [`number`]); `ALL` stands for every capability, as in Docker's
/// `--cap-add ALL`. An unknown name is an error that names it.
pub(crate) fn parse<S: AsRef<str>>(names: &[S]) -> Result<CapSet, UnknownCapability> {
    let mut set = CapSet::EMPTY;
    for name in names {
        let name = name.as_ref();
        if name.eq_ignore_ascii_case("ALL") {
            set.0 |= (1 << ALL.len()) - 1;
            continue;
        }
        let cap = number(name).ok_or_else(|| UnknownCapability(name.to_string()))?;
        set.0 |= 1 << cap;
    }
    Ok(set)
}

/// Removes every capability not in `keep` from the bounding set of the calling thread, up to
/// the kernel's last capability (found by `PR_CAPBSET_DROP` failing with `EINVAL`, so no file
/// is read). Needs `CAP_SETPCAP`. Makes raw syscalls only: safe between fork and exec.
pub(crate) fn drop_bounding(keep: CapSet) -> Result<(), Errno> {
    for cap in 0..64u32 {
        if keep.contains(cap) {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a capability number, no pointer.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if rc != 0 {
            return match Errno::last() {
                // Past the kernel's last capability: nothing more to drop.
                Errno::EINVAL => Ok(()),
                e => Err(e),
            };
        }
    }
    Ok(())
}

/// Sets the effective and permitted sets of the calling thread to `keep` and the inheritable
/// and ambient sets to empty, then clears `PR_SET_KEEPCAPS`. Called after the change of user
/// (with `PR_SET_KEEPCAPS` set before it, so that a non-root user still has the permitted set
/// to choose from); `execve` then recomputes the sets: root keeps `keep` (limited by the bounding
/// set), any other user gets none.
///
/// Capabilities that the thread does not hold itself are left out rather than failing: it
/// could not grant them (e.g. rbuild running without `CAP_SYS_RESOURCE`, or a capability the
/// kernel does not know). Makes raw syscalls only: safe between fork and exec.
pub(crate) fn set(keep: CapSet) -> Result<(), Errno> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut current = [CapData::default(); 2];
    // SAFETY: with version 3, capget writes the header and two CapData, which both point to
    // and which live across the call.
    Errno::result(unsafe { libc::syscall(libc::SYS_capget, &mut header, current.as_mut_ptr()) })?;
    let held = u64::from(current[0].permitted) | u64::from(current[1].permitted) << 32;
    let bits = keep.0 & held;
    let (lo, hi) = (bits as u32, (bits >> 32) as u32);
    let new = [
        CapData { effective: lo, permitted: lo, inheritable: 0 },
        CapData { effective: hi, permitted: hi, inheritable: 0 },
    ];
    // SAFETY: with version 3, capset reads the header and two CapData, which live across the
    // call.
    Errno::result(unsafe { libc::syscall(libc::SYS_capset, &header, new.as_ptr()) })?;
    // The kernel already trimmed the ambient set to the (empty) inheritable set; clear it
    // explicitly all the same.
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointer.
    Errno::result(unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0)
    })?;
    // SAFETY: PR_SET_KEEPCAPS takes a flag, no pointer.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0 as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, as two [`CapData`].
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`: one 32-bit half of each set.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn names_are_numbered_as_the_kernel_does() {
        assert_eq!(ALL.len(), 41);
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("cap_sys_admin"), Some(21));
        assert_eq!(number("sys_admin"), Some(21));
        assert_eq!(number("Net_Raw"), Some(13));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_"), None);
        assert_eq!(number("CAP_NOPE"), None);
        assert_eq!(number(""), None);
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn with_changes_as_docker() {
        let base = strings(DOCKER_DEFAULT);
        // Nothing to change: the base as it is.
        assert_eq!(with_changes(&base, &[], &[]).unwrap(), base);
        // Drop and add, any case, with or without the prefix; an add already there is kept once.
        let caps =
            with_changes(&base, &strings(&["sys_admin", "CAP_CHOWN"]), &strings(&["net_raw", "Cap_Kill"]))
                .unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()), "{caps:?}");
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()) && !caps.contains(&"CAP_KILL".to_string()));
        assert_eq!(caps.iter().filter(|c| *c == "CAP_CHOWN").count(), 1);
        assert_eq!(caps.len(), DOCKER_DEFAULT.len() - 2 + 1);
        assert_eq!(caps.last().map(String::as_str), Some("CAP_SYS_ADMIN"));
        // --cap-drop ALL --cap-add X: only X.
        let caps = with_changes(&base, &strings(&["NET_BIND_SERVICE"]), &strings(&["all"])).unwrap();
        assert_eq!(caps, ["CAP_NET_BIND_SERVICE"]);
        // --cap-add ALL --cap-drop X: everything but X.
        let caps = with_changes(&base, &strings(&["ALL"]), &strings(&["mknod"])).unwrap();
        assert_eq!(caps.len(), ALL.len() - 1);
        assert!(!caps.contains(&"CAP_MKNOD".to_string()));
        // ALL in both: add wins, as in docker.
        assert_eq!(with_changes(&base, &strings(&["ALL"]), &strings(&["ALL"])).unwrap().len(), ALL.len());
        // Unknown names, in either list, are named.
        let err = with_changes(&base, &strings(&["fly"]), &[]).unwrap_err();
        assert_eq!(err.to_string(), "unknown capability: \"CAP_FLY\"");
        let err = with_changes(&base, &[], &strings(&["CAP_NOPE"])).unwrap_err();
        assert_eq!(err.to_string(), "unknown capability: \"CAP_NOPE\"");
        // The result is what the sandbox accepts.
        assert!(parse(&with_changes(&base, &strings(&["sys_time"]), &[]).unwrap()).is_ok());
    }

    #[test]
    fn parse_docker_default() {
        let set = parse(DOCKER_DEFAULT).unwrap();
        assert_eq!(set, CapSet::DOCKER_DEFAULT);
        assert_eq!(set.bits(), 0xa80425fb);
        assert!(set.contains(number("CAP_SYS_CHROOT").unwrap()));
        assert!(set.contains_name("kill"));
        assert!(!set.contains_name("CAP_SYS_ADMIN"));
        assert!(!set.contains(64));
    }

    #[test]
    fn parse_variants_and_errors() {
        let names = ["chown".to_string(), "CAP_KILL".to_string(), "cap_kill".to_string()];
        assert_eq!(parse(&names).unwrap().bits(), 1 | 1 << 5);
        assert_eq!(parse::<&str>(&[]).unwrap(), CapSet::EMPTY);
        assert_eq!(parse(&all_names()).unwrap().bits(), (1 << 41) - 1);
        assert_eq!(parse(&["all"]).unwrap().bits(), (1 << 41) - 1);
        let err = parse(&["CAP_CHOWN", "CAP_FLY"]).unwrap_err();
        assert!(err.to_string().contains("\"CAP_FLY\""), "{err}");
    }

    /// The capability lines of `/proc/self/status` of `cat` run in a forked child that applies
    /// `keep` the way the sandbox does, as root or as `uid`.
    fn status_after_exec(keep: CapSet, uid: Option<u32>) -> (i32, Vec<(String, u64)>) {
        let cat = CString::new("/bin/cat").unwrap();
        let path = CString::new("/proc/self/status").unwrap();
        let argv = [cat.as_ptr(), path.as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null::<libc::c_char>()];
        let (r, w) = nix::unistd::pipe().unwrap();
        // SAFETY: the test harness is multi-threaded: the child only makes raw syscalls
        // (drop_bounding and set do no more) and leaves by execve or _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", Errno::last());
        if pid == 0 {
            // SAFETY: raw syscalls on fds and ids; argv/envp were built before fork and are
            // NULL-terminated.
            unsafe {
                let step = |ok: bool, code: i32| {
                    if !ok {
                        libc::_exit(code)
                    }
                };
                step(libc::dup2(w.as_raw_fd(), 1) == 1, 10);
                step(drop_bounding(keep).is_ok(), 11);
                step(libc::prctl(libc::PR_SET_KEEPCAPS, 1 as libc::c_ulong, 0, 0, 0) == 0, 12);
                if let Some(uid) = uid {
                    step(libc::setgroups(0, std::ptr::null()) == 0, 13);
                    step(libc::setgid(uid) == 0, 14);
                    step(libc::setuid(uid) == 0, 15);
                }
                // Leave CAP_NET_RAW inheritable and ambient, as a parent could have: set()
                // must clear both, or it would survive the exec even for another user.
                let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
                let mut data = [CapData::default(); 2];
                step(libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) == 0, 20);
                data[0].inheritable |= 1 << 13;
                step(libc::syscall(libc::SYS_capset, &header, data.as_ptr()) == 0, 21);
                let raise = libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong;
                step(libc::prctl(libc::PR_CAP_AMBIENT, raise, 13 as libc::c_ulong, 0, 0) == 0, 22);
                step(set(keep).is_ok(), 16);
                libc::execve(cat.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(17)
            }
        }
        drop(w);
        let mut out = String::new();
        std::fs::File::from(r).read_to_string(&mut out).unwrap();
        let mut status = 0;
        // SAFETY: waits for our own child; `status` outlives the call.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        let caps = out
            .lines()
            .filter_map(|l| l.split_once(":\t"))
            .filter(|(k, _)| k.starts_with("Cap"))
            .map(|(k, v)| (k.to_string(), u64::from_str_radix(v.trim(), 16).unwrap()))
            .collect();
        (libc::WEXITSTATUS(status), caps)
    }

    fn is_root() -> bool {
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            eprintln!("skipped: needs root");
        }
        root
    }

    #[test]
    fn root_keeps_docker_default_after_exec() {
        if !is_root() {
            return;
        }
        let (code, caps) = status_after_exec(CapSet::DOCKER_DEFAULT, None);
        assert_eq!(code, 0, "child failed at step {code}");
        let get = |k: &str| caps.iter().find(|(n, _)| n == k).map(|&(_, v)| v);
        assert_eq!(get("CapEff"), Some(0xa80425fb), "{caps:x?}");
        assert_eq!(get("CapPrm"), Some(0xa80425fb), "{caps:x?}");
        assert_eq!(get("CapBnd"), Some(0xa80425fb), "{caps:x?}");
        assert_eq!(get("CapInh"), Some(0), "{caps:x?}");
        assert_eq!(get("CapAmb"), Some(0), "{caps:x?}");
    }

    #[test]
    fn other_users_get_no_capability_after_exec() {
        if !is_root() {
            return;
        }
        let (code, caps) = status_after_exec(CapSet::DOCKER_DEFAULT, Some(65534));
        assert_eq!(code, 0, "child failed at step {code}");
        let get = |k: &str| caps.iter().find(|(n, _)| n == k).map(|&(_, v)| v);
        assert_eq!(get("CapEff"), Some(0), "{caps:x?}");
        assert_eq!(get("CapPrm"), Some(0), "{caps:x?}");
        assert_eq!(get("CapBnd"), Some(0xa80425fb), "{caps:x?}");
        assert_eq!(get("CapInh"), Some(0), "{caps:x?}");
        assert_eq!(get("CapAmb"), Some(0), "{caps:x?}");
    }

    #[test]
    fn capabilities_not_held_are_left_out() {
        if !is_root() {
            return;
        }
        // Every capability, including any this process lacks: set() must not fail.
        let all = parse(&["ALL"]).unwrap();
        let (code, caps) = status_after_exec(all, None);
        assert_eq!(code, 0, "child failed at step {code}");
        let ours = std::fs::read_to_string("/proc/self/status").unwrap();
        let our_bnd = ours.lines().find_map(|l| l.strip_prefix("CapBnd:\t")).unwrap();
        let our_bnd = u64::from_str_radix(our_bnd.trim(), 16).unwrap();
        let get = |k: &str| caps.iter().find(|(n, _)| n == k).map(|&(_, v)| v);
        assert_eq!(get("CapEff"), Some(our_bnd & all.bits()), "{caps:x?}");
    }
}
