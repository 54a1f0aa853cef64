//! The sandbox as a RUN step sees it: every test is a real RUN in a real build, asserting what
//! the step observed (as runc's defaults would have it), or how the build failed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use test_support::{TestStore, context};

fn store() -> TestStore {
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    s.import_busybox();
    s
}

/// Builds `dockerfile` (`--no-cache`, plain progress, `extra` flags): exit code and stderr.
fn build_plain(s: &TestStore, dockerfile: &str, extra: &[&str]) -> (Option<i32>, String) {
    let ctx = context(&[("Dockerfile", dockerfile)]);
    let mut args = vec!["build", "--no-cache", "--progress=plain"];
    args.extend_from_slice(extra);
    args.push(ctx.path().to_str().unwrap());
    let out = s.run(&args);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Builds `dockerfile` (with `extra` flags) and returns the RUN output lines, in order.
fn run_output(s: &TestStore, dockerfile: &str, extra: &[&str]) -> Vec<String> {
    let (code, err) = build_plain(s, dockerfile, extra);
    assert_eq!(code, Some(0), "build failed:\n{err}");
    output_lines(&err)
}

/// The `[stage i/n] | text` lines of plain progress output, as `text`.
fn output_lines(stderr: &str) -> Vec<String> {
    stderr.lines().filter_map(|l| l.split_once("] | ").map(|(_, t)| t.to_string())).collect()
}

/// Builds and expects failure; returns stderr.
fn build_fails(s: &TestStore, dockerfile: &str, extra: &[&str]) -> String {
    let (code, err) = build_plain(s, dockerfile, extra);
    assert_ne!(code, Some(0), "build should have failed:\n{err}");
    assert_eq!(code, Some(1), "{err}");
    err
}

/// The value after `key:` in the lines (as /proc/self/status prints them).
fn field<'a>(lines: &'a [String], key: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {lines:#?}"))
}

/// Docker's default capability set.
const DOCKER_CAPS: &str = "00000000a80425fb";

#[test]
fn run_sees_only_its_own_processes_host_and_network() {
    let s = store();
    let out = run_output(
        &s,
        "FROM busybox\nRUN ps -o pid,comm; echo host=$(hostname); cat /proc/net/dev; \
         ls /proc/1/root >/dev/null 2>&1 && echo root=readable || echo root=denied; \
         readlink /proc/1/exe >/dev/null 2>&1 && echo exe=readable || echo exe=denied\n",
        &[],
    );
    // PID 1 (rbuild's init), the shell (2), and ps itself: nothing of the host.
    let pids: Vec<&str> = out
        .iter()
        .take_while(|l| !l.starts_with("host="))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(pids.len(), 3, "{out:#?}");
    assert_eq!(pids[..2], ["1", "2"], "{out:#?}");
    assert!(out.iter().any(|l| l.split_whitespace().eq(["1", "rbuild-init"])), "{out:#?}");
    assert!(out.contains(&"host=rbuild-sandbox".to_string()), "{out:#?}");
    let interfaces: Vec<&str> = out
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim())
        .filter(|n| !n.contains('|'))
        .collect();
    // Its own namespace on the build network: none of the host's interfaces.
    assert_eq!(interfaces, ["lo", "eth0"], "{out:#?}");
    assert!(out.contains(&"root=denied".to_string()), "{out:#?}");
    assert!(out.contains(&"exe=denied".to_string()), "{out:#?}");
}

#[test]
fn mountinfo_shows_no_host_path() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN cat /proc/self/mountinfo /proc/1/mountinfo\n")]);
    let out = s.run(&["build", "--no-cache", "--progress=plain", ctx.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let lines = output_lines(&err);
    assert!(lines.len() > 10, "{lines:#?}");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_rbuild"));
    let host_paths = [s.path(), ctx.path(), exe.parent().unwrap()];
    for l in &lines {
        for p in host_paths {
            assert!(!l.contains(p.to_str().unwrap()), "host path {} in mountinfo: {l}", p.display());
        }
    }
    // The root is an overlay mounted as `/`.
    assert!(
        lines.iter().any(|l| l.split(' ').nth(4) == Some("/") && l.contains(" - overlay ")),
        "{lines:#?}"
    );
}

#[test]
fn privileges_are_dockers_defaults() {
    let s = store();
    let out = run_output(
        &s,
        "FROM busybox\nRUN grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status\n\
         USER app\nRUN grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status | sed 's/^/app/'\n",
        &[],
    );
    assert_eq!(field(&out, "CapEff"), DOCKER_CAPS);
    assert_eq!(field(&out, "CapPrm"), DOCKER_CAPS);
    assert_eq!(field(&out, "CapBnd"), DOCKER_CAPS);
    assert_eq!(field(&out, "CapInh"), "0000000000000000");
    assert_eq!(field(&out, "CapAmb"), "0000000000000000");
    assert_eq!(field(&out, "NoNewPrivs"), "1");
    // 2: a seccomp filter is installed.
    assert_eq!(field(&out, "Seccomp"), "2");
    // A non-root USER keeps nothing, as in Docker.
    assert_eq!(field(&out, "appCapEff"), "0000000000000000");
    assert_eq!(field(&out, "appCapBnd"), DOCKER_CAPS);
}

#[test]
fn the_kernel_stays_out_of_reach() {
    let s = store();
    let mut script = String::from(
        "mkdir -p /mnt; mount -t tmpfs x /mnt 2>&1 && echo mount=ok || echo mount=refused; \
         echo x > /proc/sys/kernel/domainname 2>/dev/null && echo sysctl=ok || echo sysctl=refused; \
         echo h > /proc/sysrq-trigger 2>/dev/null && echo sysrq=ok || echo sysrq=refused; \
         unshare -U true 2>/dev/null && echo userns=ok || echo userns=refused; \
         unshare -m true 2>/dev/null && echo mountns=ok || echo mountns=refused; \
         echo firmware=$(ls /sys/firmware | wc -l); \
         touch /sys/x 2>/dev/null && echo sys=writable || echo sys=readonly; ",
    );
    // Masked files: those this kernel has must read empty in the sandbox.
    let masked =
        ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats"];
    let present: Vec<&str> = masked.iter().copied().filter(|p| Path::new(p).exists()).collect();
    assert!(!present.is_empty(), "no masked file exists on this kernel; the test would check nothing");
    for p in &present {
        script.push_str(&format!("echo {p}=$(cat {p} 2>/dev/null | wc -c); "));
    }
    let out = run_output(&s, &format!("FROM busybox\nRUN {script}\n"), &[]);
    for expected in [
        "mount=refused",
        "sysctl=refused",
        "sysrq=refused",
        "userns=refused",
        "mountns=refused",
        "firmware=0",
        "sys=readonly",
    ] {
        assert!(out.iter().any(|l| l == expected), "expected {expected} in {out:#?}");
    }
    for p in &present {
        assert!(out.iter().any(|l| *l == format!("{p}=0")), "{p} is not masked: {out:#?}");
    }
}

#[test]
fn cgroup_limits_apply_to_every_run_and_are_visible_inside() {
    let s = store();
    let out = run_output(
        &s,
        "FROM busybox\nRUN cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
         cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
         cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max\n\
         RUN cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max\n",
        &["--memory", "100m", "--pids-limit", "77", "--cpus", "0.5"],
    );
    assert_eq!(out, ["104857600", "77", "50000", "77"]);
}

#[test]
fn a_run_over_its_memory_limit_fails_with_an_oom_message() {
    let s = store();
    let err =
        build_fails(&s, "FROM busybox\nRUN tail -c 200000000 /dev/zero > /dev/null\n", &["--memory", "64m"]);
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("rbuild: error: "), "{err}");
    assert!(last.contains(":2:1: RUN tail"), "{last}");
    assert!(last.contains("out of memory"), "{last}");
    assert!(last.contains("64 MiB"), "{last}");
}

/// Processes whose command line starts with `needle`.
fn processes_running(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.starts_with(needle) {
                found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// cgroup directories rbuild made for sandboxes of the rbuild process `pid`.
fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return found };
    let mut roots: Vec<PathBuf> = hierarchies.flatten().map(|e| e.path().join("rbuild")).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup/rbuild"));
    for root in roots {
        for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(&format!("{pid}-")) {
                found.push(e.path());
            }
        }
    }
    found
}

#[test]
fn a_fork_bomb_hits_the_pids_limit_and_leaves_nothing() {
    let s = store();
    let ctx =
        context(&[("Dockerfile", "FROM busybox\nRUN for i in $(seq 200); do sleep 4517 & done; wait\n")]);
    let child = s
        .cmd()
        .args(["build", "--progress=plain", "--pids-limit", "50", ctx.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("can't fork"), "{err}");
    assert!(err.lines().last().unwrap().contains("process did not complete successfully"), "{err}");
    assert_eq!(processes_running("sleep 4517"), Vec::<String>::new());
    assert_eq!(cgroups_of(pid), Vec::<PathBuf>::new());
    // The machine is fine: the next build runs.
    let out = run_output(&s, "FROM busybox\nRUN echo still-fine\n", &[]);
    assert_eq!(out, ["still-fine"]);
}

/// Kills the build if the test fails before it ends, so no sandbox outlives the test.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn ctrl_c_during_a_run_leaves_no_process_mount_or_cgroup() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN sleep 6121 & sleep 6121 & echo started-long-step; wait\n",
    )]);
    let mut child = s
        .cmd()
        .args(["build", "--progress=plain", ctx.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut child = Reap(child);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&seen).contains("started-long-step") {
        assert!(Instant::now() < deadline, "the RUN never started");
        let mut buf = [0u8; 4096];
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "rbuild exited early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let pid = child.0.id();
    // The backgrounded sleeps may still be between fork and exec.
    while processes_running("sleep 6121").len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", processes_running("sleep 6121"));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!cgroups_of(pid).is_empty(), "the RUN has no cgroup of its own");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(processes_running("sleep 6121"), Vec::<String>::new());
    assert_eq!(cgroups_of(pid), Vec::<PathBuf>::new());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let store_path = s.path().to_str().unwrap();
    assert!(!mountinfo.contains(store_path), "a mount of the store is left:\n{mountinfo}");
}

/// Every file under `dir`, gzip layers decompressed: what could hold a leaked secret.
fn store_contents(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            store_contents(&path, out);
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut plain).unwrap();
                out.push((path.clone(), plain));
            }
            out.push((path, bytes));
        }
    }
}

#[test]
fn a_secret_reaches_the_run_and_nothing_else() {
    let s = store();
    let marker = format!("s3cr3t-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos());
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), &marker).unwrap();
    let ctx = context(&[]);
    let secret_arg = format!("id=token,src={}", secret.path().display());
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM busybox\nARG EXPECT={marker}\n\
             RUN --mount=type=secret,id=token test \"$(cat /run/secrets/token)\" = \"$EXPECT\" && echo file-ok && \
                 stat -c '%a %u' /run/secrets/token && wc -c < /run/secrets/token > /len\n\
             RUN --mount=type=secret,id=token,env=TOKEN,target=/etc/tok test \"$TOKEN\" = \"$EXPECT\" && \
                 test \"$(cat /etc/tok)\" = \"$EXPECT\" && echo env-ok\n"
        ),
    )
    .unwrap();
    let out = s
        .cmd()
        .args(["build", "--progress=plain", "-t", "sec:1", "--secret", &secret_arg])
        .arg(ctx.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let lines = output_lines(&err);
    assert!(lines.contains(&"file-ok".to_string()), "{lines:#?}");
    assert!(lines.contains(&"400 0".to_string()), "{lines:#?}");
    assert!(lines.contains(&"env-ok".to_string()), "{lines:#?}");
    // The RUN saw the bytes; the image has only what the RUN wrote, and no mount point.
    assert_eq!(s.ok(&["run", "--rm", "sec:1", "cat", "/len"]).trim(), marker.len().to_string());
    let listing = s.run(&["run", "--rm", "sec:1", "ls", "/run/secrets", "/etc/tok"]);
    assert!(!listing.status.success(), "mount points were left in the image");
    // That build's ARG holds the marker (the test's doing): check the store of a build without it.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=secret,id=token wc -c < /run/secrets/token > /len2\n",
    )
    .unwrap();
    let fresh = store();
    let out =
        fresh.cmd().args(["build", "-t", "sec:2", "--secret", &secret_arg]).arg(ctx.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut files = Vec::new();
    store_contents(fresh.path(), &mut files);
    assert!(files.len() > 5, "the store is unexpectedly empty");
    let needle = marker.as_bytes();
    for (path, bytes) in &files {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "the secret is in {}", path.display());
    }
    let config = fresh.config("sec:2").to_string();
    assert!(!config.contains(&marker), "the secret is in the config or history: {config}");
}

#[test]
fn a_missing_required_secret_is_one_clear_error() {
    let s = store();
    let err = build_fails(
        &s,
        "FROM busybox\nRUN --mount=type=secret,id=npm,required=true cat /run/secrets/npm\n",
        &[],
    );
    let last = err.lines().last().unwrap();
    assert!(last.contains(":2:1:") && last.contains("secret \"npm\" is required"), "{err}");
    // Not required (the default): the RUN runs without it.
    let out = run_output(
        &s,
        "FROM busybox\nRUN --mount=type=secret,id=npm ls /run/secrets/npm || echo absent\n",
        &[],
    );
    assert!(out.iter().any(|l| l == "absent"), "{out:#?}");
}

#[test]
fn host_network_and_insecure_mode_need_allow() {
    let s = store();
    let err = build_fails(&s, "FROM busybox\nRUN --network=host true\n", &[]);
    assert!(err.lines().last().unwrap().contains("--allow network.host"), "{err}");
    let err = build_fails(&s, "FROM busybox\nRUN --security=insecure true\n", &[]);
    assert!(err.lines().last().unwrap().contains("--allow security.insecure"), "{err}");

    // With the entitlement: the host's interfaces (one the host has and no step namespace
    // does: its first non-loopback one; counting them races with the veths that parallel
    // tests make), and a privileged step.
    let host_dev = std::fs::read_to_string("/proc/net/dev").unwrap();
    let host_iface = host_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(str::trim))
        .find(|n| *n != "lo" && !n.starts_with("rv") && !n.starts_with("rbuild"))
        .expect("the host has a network interface besides lo")
        .to_string();
    let out = run_output(
        &s,
        &format!(
            "FROM busybox\nRUN --network=host grep -c '^ *{host_iface}:' /proc/net/dev\n\
             RUN --security=insecure mkdir /mnt && mount -t tmpfs x /mnt && echo mounted && grep CapEff /proc/self/status\n\
             RUN --network=none cat /proc/net/dev | wc -l\n"
        ),
        &["--allow", "network.host", "--allow", "security.insecure"],
    );
    assert_eq!(out[0], "1", "{host_iface} is visible with the host's network: {out:#?}");
    assert_eq!(out[1], "mounted", "{out:#?}");
    assert_ne!(field(&out, "CapEff"), DOCKER_CAPS, "{out:#?}");
    assert_eq!(out[3], "3", "--network=none has only lo: {out:#?}");
}

#[test]
fn bad_resource_flags_are_one_line_errors() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM busybox\n")]);
    for (flag, value, expect) in [
        ("--memory", "lots", "not a size"),
        ("--memory", "1k", "the minimum memory limit is 6MiB"),
        ("--cpus", "0.001", "the range of CPUs is from 0.01"),
        ("--cpus", "two", "not a number"),
        ("--allow", "root", "unknown entitlement"),
        ("--secret", "src=/nonexistent", "id= is required"),
        ("--secret", "id=x,src=/nonexistent/file", "not a readable file"),
    ] {
        let out = s.run(&["build", flag, value, ctx.path().to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {err}");
        assert_eq!(err.lines().count(), 1, "{flag} {value}: {err}");
        assert!(err.contains(expect), "{flag} {value}: {err}");
        // The resource flags are read once, by the same rules, for builds and containers.
        if ["--memory", "--cpus"].contains(&flag) {
            for cmd in ["run", "create"] {
                let out = s.run(&[cmd, flag, value, "busybox", "true"]);
                assert_eq!(String::from_utf8_lossy(&out.stderr), err, "{cmd} {flag} {value}");
                assert_eq!(out.status.code(), Some(1));
            }
        }
    }
    assert!(s.ok(&["ps", "-a", "-q"]).is_empty(), "nothing was created");
}
