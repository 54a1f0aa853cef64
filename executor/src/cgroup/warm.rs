//! Paying the kernel's cgroup-migration grace period while a sandbox starts, not after.
//!
//! Joining a cgroup (a write to `cgroup.procs`, v1 or v2) takes the kernel's global
//! `cgroup_threadgroup_rwsem` for writing. That is a per-CPU rwsem whose writer first waits
//! for an RCU grace period (`rcu_sync_enter`), 5-12 ms on these machines, unless another
//! writer entered it less than a grace period ago (then the state is still "passed" and the
//! writer goes straight in). Measured here: a write to `cgroup.procs` after 50 ms of quiet takes
//! 4.6-7.5 ms, the same write 1 ms after another 0.2 ms; in `rbuild run --rm true` the
//! sandbox's PID 1 spent 10-13 ms of its ~28 ms in that wait.
//!
//! [`warm_migrations`] starts a thread that writes `0` (the writing process) into the
//! `cgroup.procs` of the cgroup this process is already in, every 2 ms: a migration that moves
//! nothing but enters the rwsem, so the grace period is paid at once, on that thread, in
//! parallel with the rest of the start (the monitor's and the init's exec, the overlay mount),
//! and the state stays "passed" until the sandbox's own join comes. It stops when the last
//! [`MigrationWarmup`] is dropped or [`WINDOW`] after the last call, whichever is first: a long
//! RUN step does not keep it going. This is what the kernel's `favordynmods` cgroup mount
//! option does for the whole machine (readers, i.e. every fork and exit, take a slightly slower
//! path meanwhile); we only do it for the few milliseconds a start needs. Rootless processes
//! (who cannot write there) and machines without a usable cgroup file get no thread: the
//! warm-up is an optimization and never an error.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long one [`warm_migrations`] keeps the rwsem warm at most: a sandbox joins its cgroup
/// within ~10 ms of the call on an idle machine; the margin covers a loaded one.
pub const WINDOW: Duration = Duration::from_millis(150);

/// Between two no-op migrations: well under a grace period, so the state never goes idle.
const INTERVAL: Duration = Duration::from_millis(2);

struct State {
    holders: usize,
    running: bool,
    until: Option<Instant>,
}

static STATE: Mutex<State> = Mutex::new(State { holders: 0, running: false, until: None });

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps cgroup migrations cheap while it lives (see the module documentation).
#[must_use = "the warm-up stops when this is dropped"]
pub struct MigrationWarmup(());

impl Drop for MigrationWarmup {
    fn drop(&mut self) {
        let mut s = state();
        s.holders = s.holders.saturating_sub(1);
    }
}

/// Starts (or extends) the warm-up; hold the result until the sandbox has joined its cgroup.
pub fn warm_migrations() -> MigrationWarmup {
    let mut s = state();
    s.holders += 1;
    let until = Instant::now() + WINDOW;
    s.until = Some(s.until.map_or(until, |u| u.max(until)));
    if !s.running
        && nix::unistd::geteuid().is_root()
        && let Some(file) = own_procs_file().and_then(|p| OpenOptions::new().write(true).open(p).ok())
    {
        // The thread is born with every signal blocked (it inherits the mask of the moment it
        // is spawned), so a signal meant for the process never ends up there: a program that
        // blocks SIGTERM and SIGINT in its threads to forward them (`rbuild run`'s sig-proxy)
        // would otherwise die of one delivered to this thread, which has them unblocked.
        use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
        let mut old = SigSet::empty();
        let blocked = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut old)).is_ok();
        s.running = blocked
            && std::thread::Builder::new()
                .name("rbuild-cgroup-warm".into())
                .spawn(move || keep_warm(file))
                .is_ok();
        if blocked {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        }
    }
    MigrationWarmup(())
}

fn keep_warm(file: File) {
    loop {
        // Moves this process into the cgroup it is in: nothing moves, the rwsem is entered.
        let _ = file.write_at(b"0", 0);
        std::thread::sleep(INTERVAL);
        let mut s = state();
        if s.holders == 0 || s.until.is_none_or(|u| Instant::now() >= u) {
            s.running = false;
            s.until = None;
            return;
        }
    }
}

/// `cgroup.procs` of this process's own cgroup, in the cgroup2 tree if there is one, else in
/// the first v1 hierarchy rbuild uses.
fn own_procs_file() -> Option<PathBuf> {
    let layout = super::layout().ok()?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = match &layout.v2 {
        Some(root) => own_path(&own, |controllers| controllers.is_empty()).map(|p| root.join(p)),
        None => layout.v1.iter().find_map(|h| {
            own_path(&own, |controllers| {
                let mut listed: Vec<&str> = controllers.split(',').collect();
                listed.sort_unstable();
                let mut mounted: Vec<&str> = h.controllers.iter().map(String::as_str).collect();
                mounted.sort_unstable();
                !mounted.is_empty() && listed == mounted
            })
            .map(|p| h.root.join(p))
        }),
    }?;
    let file = path.join("cgroup.procs");
    file.exists().then_some(file)
}

/// The path (relative, without its leading `/`) of the `/proc/self/cgroup` line whose
/// controller list `matches`.
fn own_path(proc_cgroup: &str, matches: impl Fn(&str) -> bool) -> Option<&str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        matches(controllers).then(|| path.trim_start_matches('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC: &str = "10:hugetlb:/\n4:memory:/process_api/8501\n2:cpu,cpuacct:/a/b\n0::/user.slice/x\n";

    #[test]
    fn own_path_picks_the_line_of_the_hierarchy() {
        assert_eq!(own_path(PROC, |c| c.is_empty()), Some("user.slice/x"));
        assert_eq!(own_path(PROC, |c| c == "memory"), Some("process_api/8501"));
        assert_eq!(own_path(PROC, |c| c == "cpu,cpuacct"), Some("a/b"));
        assert_eq!(own_path(PROC, |c| c == "pids"), None);
    }

    #[test]
    fn the_warm_up_ends_with_its_last_holder() {
        let a = warm_migrations();
        let b = warm_migrations();
        assert!(state().holders >= 2);
        drop(a);
        drop(b);
        // The thread (if this machine let one start) notices within one interval.
        let deadline = Instant::now() + Duration::from_secs(5);
        while state().running && Instant::now() < deadline {
            std::thread::sleep(INTERVAL);
        }
        assert!(!state().running, "the warm-up thread outlived its holders");
    }
}
