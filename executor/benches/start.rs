//! Sandbox start-to-exit for `/bin/true`, beside a plain fork+exec of the same binary on the
//! host, through `run` (RUN steps) and `spawn` + `wait` (containers), and `exec` into a running
//! sandbox. `cargo bench -p executor --bench start [-- N]` prints the medians (N runs, 100 by
//! default). Needs root. This binary is also the sandbox's init and exec helper (see
//! `executor::INIT_ARG`, `executor::EXEC_ARG`).

use std::path::Path;
use std::time::{Duration, Instant};

use executor::{
    ExecSpec, NetworkMode, Process, Resources, Rootfs, SandboxSpec, Security, SpawnOptions, SpawnStdio, Stdio,
};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn spec(
    base: &Path,
    lower: &Path,
    n: usize,
    security: Security,
    resources: Resources,
    network: NetworkMode,
) -> SandboxSpec {
    let dir = base.join(format!("run-{n}"));
    let [upper, work, target] = ["upper", "work", "merged"].map(|d| dir.join(d));
    for d in [&upper, &work, &target] {
        std::fs::create_dir_all(d).expect("sandbox directories");
    }
    SandboxSpec {
        rootfs: Rootfs { lowers: vec![lower.to_path_buf()], upper, work, target },
        process: Process {
            args: vec!["/bin/true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: String::new(),
        },
        hostname: "bench".into(),
        network,
        mounts: Vec::new(),
        resources,
        limits: Default::default(),
        security,
        readonly_rootfs: false,
    }
}

fn main() {
    // SAFETY: first thing in main: no thread has started.
    unsafe { test_support::harness::serve_reexec() };
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.iter().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100);

    let base = tempfile::Builder::new().prefix("rbuild-bench-start-").tempdir_in("/tmp").expect("temp dir");
    let lower = test_support::harness::unpack_busybox(base.path());

    let plain = time(runs, || {
        let status = std::process::Command::new(lower.join("bin/true")).status().expect("fork+exec");
        assert!(status.success());
    });
    let mut n = 0;
    let mut sandbox = |security: Security, resources: Resources, network: NetworkMode| {
        time(runs, || {
            n += 1;
            let s = spec(base.path(), &lower, n, security.clone(), resources.clone(), network.clone());
            let out = executor::run(&s, Stdio::Capture(&mut |_| {})).expect("sandbox runs");
            assert!(out.success());
        })
    };
    // Each variant once as a warm-up round, then measured, so none pays for the first runs.
    let variants: [(Security, Resources, NetworkMode); 4] = [
        (Security::docker_default(), Resources::default(), NetworkMode::None),
        (
            Security::docker_default(),
            Resources { memory: Some(256 << 20), pids: Some(100), ..Default::default() },
            NetworkMode::None,
        ),
        (Security::docker_default(), Resources::default(), NetworkMode::Host),
        (
            Security {
                capabilities: executor::caps::all_names(),
                seccomp: false,
                no_new_privileges: false,
                mask_paths: false,
            },
            Resources::default(),
            NetworkMode::None,
        ),
    ];
    for (security, resources, network) in &variants {
        sandbox(security.clone(), resources.clone(), network.clone());
    }
    let [hardened, limited, host_net, bare] =
        variants.map(|(security, resources, network)| sandbox(security, resources, network));
    let spawn_once = |n: usize, args: &[&str]| {
        let mut s =
            spec(base.path(), &lower, n, Security::docker_default(), Resources::default(), NetworkMode::None);
        s.process.args = args.iter().map(|a| a.to_string()).collect();
        executor::spawn(&s, SpawnOptions { stdio: SpawnStdio::Null, init: false }).expect("sandbox spawns")
    };
    let spawned = time(runs, || {
        n += 1;
        assert!(spawn_once(n, &["/bin/true"]).wait().expect("sandbox ends").success());
    });
    n += 1;
    let running = spawn_once(n, &["/bin/sleep", "1000"]);
    let target = ExecSpec {
        pid: running.pid(),
        process: spec(base.path(), &lower, 0, Security::default(), Resources::default(), NetworkMode::None)
            .process,
        security: Security::docker_default(),
        cgroup: running.cgroup_name(),
    };
    let exec = time(runs, || {
        let p = executor::exec(&target, SpawnStdio::Null).expect("exec starts");
        assert!(p.wait().expect("exec ends").success());
    });
    drop(running);
    println!("sandbox start-to-exit of /bin/true, median of {runs}:");
    println!("  plain fork+exec on the host:                 {}", ms(plain));
    println!(
        "  sandbox (caps, seccomp, masks, own cgroup):  {}  (+{})",
        ms(hardened),
        ms(hardened.saturating_sub(plain))
    );
    println!("  sandbox with --memory and --pids-limit:      {}", ms(limited));
    println!("  sandbox with the host's network:             {}", ms(host_net));
    println!("  sandbox without caps/seccomp/masked paths:   {}", ms(bare));
    println!("  spawn + wait (a container's start and end):  {}", ms(spawned));
    println!("  exec into a running sandbox, to its end:     {}", ms(exec));
}
