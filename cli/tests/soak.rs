//! Soak: 200 `run --rm` in a loop, and 20 detached containers started, stopped and removed;
//! afterwards the host has exactly the mounts, network interfaces, cgroups and processes it
//! had before. One test in its own binary, so nothing else runs while it counts.
//!
//! The test makes itself a child subreaper and reaps, standing in for an init that reaps
//! orphans (this machine's PID 1 does not): monitors outlive the `rbuild` that started them by
//! design, and a zombie of one would otherwise count as a process left behind.

use std::collections::BTreeSet;
use std::path::Path;

use test_support::TestStore;

fn mounts() -> Vec<String> {
    let mut m: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').skip(4).take(1).collect::<String>())
        .collect();
    m.sort();
    m
}

fn any_process_named(name: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name)
            && std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| !s.contains(") Z "))
    })
}

fn interfaces() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Every cgroup directory under an `rbuild` directory of any hierarchy.
fn cgroups() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut roots = vec![Path::new("/sys/fs/cgroup").to_path_buf()];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(entries.flatten().map(|e| e.path()));
    }
    for root in roots {
        if let Ok(entries) = std::fs::read_dir(root.join("rbuild")) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    out.insert(e.path().display().to_string());
                }
            }
        }
    }
    out
}

/// Every process below this test, zombies included. The test is a child subreaper, so any
/// process rbuild leaves behind — a monitor, a sandbox init, a container process — stays in
/// this subtree however it was orphaned; stragglers of other tests elsewhere do not count.
fn processes() -> BTreeSet<String> {
    let me = std::process::id().to_string();
    let mut parent = std::collections::HashMap::new();
    let mut comm = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let ppid = stat[close + 2..].split(' ').nth(1).unwrap_or_default().to_string();
        comm.insert(pid.clone(), stat[open + 1..close].to_string());
        parent.insert(pid, ppid);
    }
    let below_me = |pid: &String| {
        let mut p = pid.clone();
        for _ in 0..64 {
            match parent.get(&p) {
                Some(pp) if *pp == me => return true,
                Some(pp) => p = pp.clone(),
                None => return false,
            }
        }
        false
    };
    parent.keys().filter(|p| below_me(p)).map(|p| format!("{p} {}", comm[p])).collect()
}

/// Waits (bounded, reaping) until no process is left below this test: a monitor exits just
/// after its client heard the exit code, and one that is exiting has no command line yet is
/// not a zombie either.
fn wait_for_no_descendants() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        reap();
        if processes().is_empty() || std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn reap() {
    loop {
        // SAFETY: waitpid with a null status pointer and WNOHANG.
        let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if r <= 0 {
            return;
        }
    }
}

#[test]
fn two_hundred_runs_and_twenty_detached_containers_leave_nothing_behind() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    s.import_busybox();
    // Sandboxes of an earlier test killed with its rbuild take a moment to go; the next rbuild
    // then sweeps their cgroups. Both must happen before counting.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline && any_process_named("rbuild-init") {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Warm up once (the default network's record, unpacked layers, the sweep), then count.
    s.ok(&["run", "--rm", "busybox", "true"]);
    // Its monitor exits just after `run` returned.
    wait_for_no_descendants();
    let before = (mounts(), interfaces(), cgroups(), processes());

    for i in 0..200 {
        let out = s.run(&["run", "--rm", "busybox", "true"]);
        assert!(out.status.success(), "run {i}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut ids = Vec::new();
    for i in 0..20 {
        let name = format!("soak{i}");
        ids.push(s.ok(&["run", "-d", "--name", &name, "-p", "127.0.0.1::80", "busybox", "sleep", "1000"]));
    }
    assert_eq!(s.ok(&["ps", "-q"]).lines().count(), 20);
    // Each running container has its veth on this store's bridge.
    let bridge = s.ok(&[
        "network",
        "inspect",
        "--format",
        "{{index .Options \"com.docker.network.bridge.name\"}}",
        "bridge",
    ]);
    let ports = std::fs::read_dir(format!("/sys/class/net/{}/brif", bridge.trim())).unwrap().count();
    assert_eq!(ports, 20, "a veth per running container on {}", bridge.trim());
    for i in 0..20 {
        s.ok(&["stop", "-t", "0", &format!("soak{i}")]);
    }
    for i in 0..20 {
        s.ok(&["rm", &format!("soak{i}")]);
    }
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    // A monitor exits just after its last client hears the exit code, and the kernel deletes a
    // dead namespace's veth pair in the background: let both settle (bounded), reaping.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut after;
    loop {
        reap();
        after = (mounts(), interfaces(), cgroups(), processes());
        if after == before || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for p in after.3.difference(&before.3) {
        let pid = p.split(' ').next().unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        eprintln!("left: {p}: {:?}\n{status}", String::from_utf8_lossy(&cmdline));
    }
    assert_eq!(after.0, before.0, "mounts");
    assert_eq!(after.1, before.1, "network interfaces (veths, bridges)");
    assert_eq!(after.2, before.2, "cgroups");
    assert_eq!(after.3, before.3, "processes");
    let rules = std::process::Command::new("nft").args(["list", "ruleset"]).output();
    if let Ok(r) = rules {
        let text = String::from_utf8_lossy(&r.stdout);
        for id in &ids {
            assert!(!text.contains(&id.trim()[..12]), "nft rules of {} left", id.trim());
        }
    }
}
