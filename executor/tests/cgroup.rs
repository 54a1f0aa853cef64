//! `executor::cgroup` on this machine's real cgroups (as root). Every test makes its own cgroups,
//! named `test-<pid>-<n>` (which `sweep_stale` never touches), and removes exactly those.
//! Tests that need something this machine lacks print `skipped: <reason>` and return.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use executor::Resources;
use executor::cgroup::{self, Cgroup, Controller, Error, Layout, Location};

/// The layout, or `None` (after printing why) when these tests cannot run here.
fn layout(test: &str) -> Option<&'static Layout> {
    if !nix::unistd::Uid::effective().is_root() {
        println!("skipped: {test}: needs root");
        return None;
    }
    match cgroup::layout() {
        Ok(layout) => Some(layout),
        Err(e) => {
            println!("skipped: {test}: {e}");
            None
        }
    }
}

/// `layout`, and every controller in `needed`.
fn layout_with(test: &str, needed: &[Controller]) -> Option<&'static Layout> {
    let layout = layout(test)?;
    let missing: Vec<&str> =
        needed.iter().filter(|c| layout.location(**c).is_none()).map(|c| c.name()).collect();
    if !missing.is_empty() {
        println!("skipped: {test}: this machine has no {} cgroup controller", missing.join(", "));
        return None;
    }
    Some(layout)
}

fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

fn is_v2(layout: &Layout, c: Controller) -> bool {
    layout.location(c) == Some(&Location::V2)
}

/// Spawns `cmd` inside `cg`: between fork and exec, the child writes `0` into every
/// `cgroup.procs` file, as the sandbox's PID 1 does.
fn spawn_in(cg: &Cgroup, cmd: &mut Command) -> Child {
    let files: Vec<CString> =
        cg.procs_files().iter().map(|p| CString::new(p.as_os_str().as_bytes()).unwrap()).collect();
    // SAFETY: between fork and exec of a multi-threaded process only async-signal-safe calls:
    // open, write, close; nothing is allocated (`files` was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for file in &files {
                let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn a process in the cgroup")
}

fn sleeper(cg: &Cgroup) -> Child {
    spawn_in(cg, Command::new("sleep").arg("30"))
}

fn assert_gone(dirs: &[std::path::PathBuf]) {
    for dir in dirs {
        assert!(!dir.exists(), "{} is still there", dir.display());
    }
}

fn assert_sigkilled(child: &mut Child) {
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
}

/// The cgroup a process is in, per hierarchy line of /proc/<pid>/cgroup.
fn proc_cgroup(pid: u32) -> String {
    read(Path::new(&format!("/proc/{pid}/cgroup")))
}

#[test]
fn limits_are_written_before_anything_joins() {
    let needed = [Controller::Memory, Controller::Cpu, Controller::Pids];
    let Some(layout) = layout_with("limits", &needed) else { return };
    let r = Resources {
        memory: Some(64 << 20),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        cpu_shares: Some(512),
        pids: Some(10),
        cgroup_parent: None,
    };
    let cg = Cgroup::create(layout, &unique(), &r).unwrap();
    assert!(cg.pids().is_empty());
    let mem = cg.dir(Controller::Memory).unwrap();
    if is_v2(layout, Controller::Memory) {
        assert_eq!(read(&mem.join("memory.max")), "67108864");
        if mem.join("memory.swap.max").exists() {
            assert_eq!(read(&mem.join("memory.swap.max")), "0");
        }
    } else {
        assert_eq!(read(&mem.join("memory.limit_in_bytes")), "67108864");
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(read(&mem.join("memory.memsw.limit_in_bytes")), "67108864");
        }
    }
    let cpu = cg.dir(Controller::Cpu).unwrap();
    if is_v2(layout, Controller::Cpu) {
        assert_eq!(read(&cpu.join("cpu.max")), "50000 100000");
        assert_eq!(read(&cpu.join("cpu.weight")), cgroup::shares_to_weight(512).to_string());
    } else {
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&cpu.join("cpu.shares")), "512");
    }
    assert_eq!(read(&cg.dir(Controller::Pids).unwrap().join("pids.max")), "10");
    let dirs = cg.dirs().to_vec();
    assert_eq!(dirs.len(), layout.roots().len());
    cg.remove().unwrap();
    assert_gone(&dirs);
}

#[test]
fn join_list_and_remove_kills_everything() {
    let Some(layout) = layout("join") else { return };
    let cg = Cgroup::create(layout, &unique(), &Resources::default()).unwrap();
    let mut child = sleeper(&cg);
    assert_eq!(cg.pids(), [child.id() as i32]);
    let membership = proc_cgroup(child.id());
    for root in layout.roots() {
        let line = if Some(root) == layout.v2_root() {
            format!("0::{}", cg.path())
        } else {
            let h = layout.v1_hierarchies().iter().find(|h| h.root == root).unwrap();
            format!(":{}:{}", h.controllers.join(","), cg.path())
        };
        assert!(membership.lines().any(|l| l.ends_with(&line)), "{line} not in\n{membership}");
    }
    let dirs = cg.dirs().to_vec();
    cg.remove().unwrap();
    assert_gone(&dirs);
    assert_sigkilled(&mut child);
}

#[test]
fn drop_without_remove_cleans_up() {
    let Some(layout) = layout("drop") else { return };
    let cg = Cgroup::create(layout, &unique(), &Resources { pids: Some(100), ..Resources::default() });
    let cg = match cg {
        Err(Error::MissingController { .. }) => Cgroup::create(layout, &unique(), &Resources::default()),
        other => other,
    }
    .unwrap();
    let mut child = sleeper(&cg);
    let dirs = cg.dirs().to_vec();
    drop(cg);
    assert_gone(&dirs);
    assert_sigkilled(&mut child);
}

#[test]
fn oom_kill_is_reported() {
    let Some(layout) = layout_with("oom", &[Controller::Memory]) else { return };
    let cg = Cgroup::create(layout, &unique(), &Resources { memory: Some(32 << 20), ..Resources::default() })
        .unwrap();
    assert!(!cg.oom_killed());
    // The shell holds the 200 MB of the command substitution's output in its memory.
    let mut child =
        spawn_in(&cg, Command::new("sh").args(["-c", r#"x=$(head -c 200000000 /dev/zero | tr '\0' a)"#]));
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status:?}");
    assert!(cg.oom_killed());
    println!("oom: {status:?}, memory now {:?} bytes", cg.memory_usage());
    cg.remove().unwrap();
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let Some(layout) = layout_with("pids", &[Controller::Pids]) else { return };
    let cg =
        Cgroup::create(layout, &unique(), &Resources { pids: Some(10), ..Resources::default() }).unwrap();
    let script = "i=0; while [ $i -lt 50 ]; do sleep 30 & i=$((i+1)); done; wait";
    let mut child = spawn_in(&cg, Command::new("sh").args(["-c", script]).stderr(Stdio::piped()));
    let dir = cg.dir(Controller::Pids).unwrap();
    let events = dir.join("pids.events");
    let deadline = Instant::now() + Duration::from_secs(10);
    // `max N`: how many forks the limit refused.
    while read(&events).strip_prefix("max ").is_none_or(|n| n == "0") {
        assert!(Instant::now() < deadline, "the fork loop was never stopped");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pids = cg.pids();
    assert!(!pids.is_empty() && pids.len() <= 10, "{pids:?}");
    let current: u64 = read(&dir.join("pids.current")).parse().unwrap();
    assert!(current <= 10, "pids.current {current}");
    // The orphaned sleeps too.
    let dirs = cg.dirs().to_vec();
    cg.remove().unwrap();
    assert_gone(&dirs);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success(), "{status:?}");
    assert!(stderr.to_lowercase().contains("fork") || status.signal() == Some(libc::SIGKILL), "{stderr}");
    // The machine still forks.
    assert!(Command::new("true").status().unwrap().success());
}

#[test]
fn sweep_stale_removes_only_dead_owners() {
    let Some(layout) = layout("sweep") else { return };
    let mut t = Command::new("true").spawn().unwrap();
    let dead = t.id();
    t.wait().unwrap();
    assert_eq!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(dead as i32), None),
        Err(nix::errno::Errno::ESRCH)
    );

    // What a SIGKILLed rbuild leaves: a cgroup named for it, maybe with processes in it.
    let stale = Cgroup::create(layout, &format!("{dead}-1"), &Resources::default()).unwrap();
    let mut orphan = sleeper(&stale);
    let mut stale_dirs = stale.dirs().to_vec();
    std::mem::forget(stale);
    // A dead rbuild that had our pid: a number this process never handed out.
    let reused = Cgroup::create(layout, &format!("{}-999999999", std::process::id()), &Resources::default());
    stale_dirs.extend_from_slice(reused.as_ref().unwrap().dirs());
    std::mem::forget(reused);
    // Ours (a live owner), and a name that is not rbuild's pattern.
    let live = Cgroup::create(layout, &cgroup::sandbox_name(), &Resources::default()).unwrap();
    let mut live_child = sleeper(&live);
    let other = Cgroup::create(layout, &unique(), &Resources::default()).unwrap();

    cgroup::sweep_stale(layout);

    assert_gone(&stale_dirs);
    assert_sigkilled(&mut orphan);
    for dir in live.dirs().iter().chain(other.dirs()) {
        assert!(dir.exists(), "{} was swept", dir.display());
    }
    assert_eq!(live.pids(), [live_child.id() as i32]);
    live.remove().unwrap();
    other.remove().unwrap();
    assert_sigkilled(&mut live_child);
}

/// The cgroup2 tree as a tracker: on hybrid machines it holds none of our controllers, but
/// the sandbox is in it, and `cgroup.kill` kills it.
#[test]
fn v2_tracking_and_cgroup_kill() {
    let Some(layout) = layout("v2 tracking") else { return };
    let Some(v2_root) = layout.v2_root() else {
        println!("skipped: v2 tracking: no cgroup2 mount on this machine");
        return;
    };
    let cg = Cgroup::create(layout, &unique(), &Resources::default()).unwrap();
    let dir = v2_root.join("rbuild").join(cg.name());
    assert!(cg.dirs().contains(&dir));
    if !dir.join("cgroup.kill").exists() {
        println!("skipped: v2 tracking: no cgroup.kill (kernel older than 5.14)");
        return;
    }
    let mut child = sleeper(&cg);
    assert!(proc_cgroup(child.id()).lines().any(|l| l == format!("0::/rbuild/{}", cg.name())));
    assert_eq!(read(&dir.join("cgroup.procs")), child.id().to_string());
    assert!(read(&dir.join("cgroup.events")).lines().any(|l| l == "populated 1"));
    cg.kill_all().unwrap();
    assert!(read(&dir.join("cgroup.events")).lines().any(|l| l == "populated 0"));
    assert_sigkilled(&mut child);
    let dirs = cg.dirs().to_vec();
    cg.remove().unwrap();
    assert_gone(&dirs);
}

/// Limits through cgroup2 controllers, where the cgroup2 root has them.
#[test]
fn v2_controllers_limits() {
    let Some(layout) = layout("v2 limits") else { return };
    let Some(v2_root) = layout.v2_root() else {
        println!("skipped: v2 limits: no cgroup2 mount on this machine");
        return;
    };
    let in_v2 = [Controller::Memory, Controller::Cpu, Controller::Pids].map(|c| is_v2(layout, c));
    if in_v2 != [true; 3] {
        println!(
            "skipped: v2 limits: cgroup2 at {} has only [{}]: memory, cpu and pids are in v1 hierarchies",
            v2_root.display(),
            layout.v2_controllers().join(" "),
        );
        return;
    }
    let r = Resources {
        memory: Some(64 << 20),
        cpu_quota: Some(50_000),
        cpu_period: None,
        cpu_shares: Some(1024),
        pids: Some(20),
        cgroup_parent: None,
    };
    let cg = Cgroup::create(layout, &unique(), &r).unwrap();
    let enabled = read(&v2_root.join("rbuild/cgroup.subtree_control"));
    for c in ["memory", "pids", "cpu"] {
        assert!(enabled.split_whitespace().any(|e| e == c), "{c} not in {enabled}");
    }
    let dir = cg.dir(Controller::Memory).unwrap();
    assert_eq!(read(&dir.join("memory.max")), "67108864");
    assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
    assert_eq!(read(&dir.join("cpu.weight")), "39");
    assert_eq!(read(&dir.join("pids.max")), "20");
    let mut child = sleeper(&cg);
    assert!(cg.memory_usage().is_some());
    cg.remove().unwrap();
    assert_sigkilled(&mut child);
}

#[test]
fn failed_create_leaves_nothing() {
    let Some(layout) = layout_with("failed create", &[Controller::Cpu]) else { return };
    let name = unique();
    // The kernel's smallest CFS period is 1 ms.
    let err = Cgroup::create(layout, &name, &Resources { cpu_period: Some(1), ..Resources::default() })
        .unwrap_err();
    let file = if is_v2(layout, Controller::Cpu) { "cpu.max" } else { "cpu.cfs_period_us" };
    let msg = hostutil::errors::one_line(&err);
    assert!(
        msg.starts_with("cgroup: write ") && msg.ends_with(&format!("/{name}/{file}: Invalid argument")),
        "{msg}"
    );
    for root in layout.roots() {
        assert!(!root.join("rbuild").join(&name).exists());
    }
}

#[test]
fn existing_cgroup_is_refused() {
    let Some(layout) = layout("existing") else { return };
    let name = unique();
    let cg = Cgroup::create(layout, &name, &Resources::default()).unwrap();
    let mut child = sleeper(&cg);
    let err = Cgroup::create(layout, &name, &Resources::default()).unwrap_err();
    assert!(matches!(err, Error::Exists { .. }), "{err}");
    // The refused create removed nothing of the existing one.
    for dir in cg.dirs() {
        assert!(dir.exists());
    }
    assert_eq!(cg.pids(), [child.id() as i32]);
    cg.remove().unwrap();
    assert_sigkilled(&mut child);
}

#[test]
fn freeze_and_memory_usage() {
    let Some(layout) = layout_with("freeze", &[Controller::Freezer, Controller::Memory]) else { return };
    let cg = Cgroup::create(layout, &unique(), &Resources::default()).unwrap();
    let mut child = sleeper(&cg);
    assert!(cg.memory_usage().is_some_and(|n| n > 0));
    let dir = cg.dir(Controller::Freezer).unwrap();
    let state = |frozen| {
        if is_v2(layout, Controller::Freezer) {
            let events = read(&dir.join("cgroup.events"));
            events.lines().any(|l| l == if frozen { "frozen 1" } else { "frozen 0" })
        } else {
            read(&dir.join("freezer.state")) == if frozen { "FROZEN" } else { "THAWED" }
        }
    };
    cg.freeze().unwrap();
    assert!(state(true) && cg.is_frozen());
    cg.thaw().unwrap();
    assert!(state(false) && !cg.is_frozen());
    // remove() kills a frozen cgroup too.
    cg.freeze().unwrap();
    cg.remove().unwrap();
    assert_sigkilled(&mut child);
}

/// What another rbuild process (pause, stats, top, kill) does with a sandbox's cgroup name.
#[test]
fn open_by_name_from_elsewhere() {
    let Some(layout) = layout("open") else { return };
    let limited = |c: Controller, v: u64| layout.location(c).map(|_| v);
    let r = Resources {
        memory: limited(Controller::Memory, 64 << 20),
        pids: limited(Controller::Pids, 50),
        ..Resources::default()
    };
    // A sandbox-style name, owned by this (live) process.
    let owner = Cgroup::create(layout, &cgroup::sandbox_name(), &r).unwrap();
    let mut child = sleeper(&owner);

    let cg = Cgroup::open(owner.name()).unwrap();
    assert_eq!(cg.name(), owner.name());
    assert_eq!(cg.dirs(), owner.dirs());
    assert_eq!(cg.pids(), [child.id() as i32]);
    let stats = cg.stats().unwrap();
    if layout.location(Controller::Memory).is_some() {
        assert!(stats.memory_usage > 0, "{stats:?}");
        assert_eq!(stats.memory_limit, Some(64 << 20), "{stats:?}");
    }
    assert_eq!(stats.pids_current, 1, "{stats:?}");
    if layout.location(Controller::Pids).is_some() {
        assert_eq!(stats.pids_limit, Some(50), "{stats:?}");
    }
    if layout.location(Controller::Cpuacct).is_some() {
        // Its exec of sleep ran in the cgroup.
        assert!(stats.cpu_usage_ns > 0, "{stats:?}");
    }
    if layout.location(Controller::Freezer).is_some() {
        cg.freeze().unwrap();
        assert!(owner.is_frozen());
        cg.thaw().unwrap();
        assert!(!owner.is_frozen());
    }
    // Dropping an opened handle leaves the cgroup, and sweeping leaves a live owner's.
    drop(cg);
    cgroup::sweep_stale(layout);
    for dir in owner.dirs() {
        assert!(dir.exists(), "{} is gone", dir.display());
    }
    Cgroup::open(owner.name()).unwrap().kill_all().unwrap();
    assert_sigkilled(&mut child);
    let name = owner.name().to_string();
    owner.remove().unwrap();
    assert!(matches!(Cgroup::open(&name), Err(Error::NotFound(_))));
    assert!(matches!(Cgroup::open("../x"), Err(Error::InvalidName(_))));
}

/// Unlimited figures read as `None`.
#[test]
fn stats_without_limits() {
    let Some(layout) = layout("stats") else { return };
    let cg = Cgroup::create(layout, &unique(), &Resources::default()).unwrap();
    let stats = cg.stats().unwrap();
    assert_eq!((stats.memory_limit, stats.pids_limit, stats.pids_current), (None, None, 0), "{stats:?}");
    cg.remove().unwrap();
}
