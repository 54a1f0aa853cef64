//! Long-running sandboxes (`spawn`), `exec` into them, and what containers add to the sandbox
//! (read-only rootfs, volumes, joined network namespaces, cgroup handles); needs root.
//!
//! `harness = false`: this binary is also the sandbox init and the exec helper, since `spawn`
//! and `exec` re-execute `current_exe()` with `executor::INIT_ARG` / `executor::EXEC_ARG`.
//! After each test, nothing it made may be left: no mount under the test directory, no cgroup
//! named for this process, no child process.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use executor::cgroup::Cgroup;
use executor::{
    Error, ExecSpec, ExitStatus, Mount, MountKind, NetworkMode, Process, Rootfs, Sandbox, SandboxSpec,
    Security, SpawnOptions, SpawnStdio, Stdio,
};
use nix::sys::signal::Signal;
use test_support::harness::Test;

/// The unpacked busybox rootfs (shared, read-only lower) and the directory tests work in.
struct Env {
    base: PathBuf,
    lower: PathBuf,
}

impl Env {
    /// A spec running `args` over a fresh overlay named `name`; also returns the upper dir.
    fn spec(&self, name: &str, args: &[&str]) -> (SandboxSpec, PathBuf) {
        let dir = self.base.join(name);
        let [upper, work, target] = ["upper", "work", "merged"].map(|d| dir.join(d));
        for d in [&upper, &work, &target] {
            fs::create_dir_all(d).unwrap();
        }
        let spec = SandboxSpec {
            rootfs: Rootfs { lowers: vec![self.lower.clone()], upper: upper.clone(), work, target },
            process: process(args),
            hostname: "container-test".into(),
            network: NetworkMode::None,
            mounts: Vec::new(),
            resources: Default::default(),
            limits: Default::default(),
            security: Default::default(),
            readonly_rootfs: false,
        };
        (spec, upper)
    }
}

fn process(args: &[&str]) -> Process {
    Process {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
        cwd: "/".into(),
        user: String::new(),
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

/// A spawned sandbox with its stdin as a pipe we write, and its stdout and stderr merged into
/// one we read line by line.
struct Running {
    sandbox: Sandbox,
    stdin: Option<File>,
    out: BufReader<File>,
}

impl Running {
    /// The next line, without its newline; panics at EOF.
    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.out.read_line(&mut line).unwrap();
        assert!(n > 0, "the sandbox's output ended");
        line.trim_end().to_string()
    }

    /// Reads lines until `want`.
    fn until(&mut self, want: &str) {
        while self.line() != want {}
    }

    fn rest(&mut self) -> String {
        let mut s = String::new();
        self.out.read_to_string(&mut s).unwrap();
        s
    }

    fn send(&mut self, text: &str) {
        self.stdin.as_mut().unwrap().write_all(text.as_bytes()).unwrap();
    }
}

fn spawn(spec: &SandboxSpec, init: bool) -> Result<Running, Error> {
    let (in_r, in_w) = pipe();
    let (out_r, out_w) = pipe();
    let err_w = out_w.try_clone().unwrap();
    let stdio = SpawnStdio::Fds { stdin: in_r, stdout: out_w, stderr: err_w };
    let sandbox = executor::spawn(spec, SpawnOptions { stdio, init })?;
    Ok(Running { sandbox, stdin: Some(File::from(in_w)), out: BufReader::new(File::from(out_r)) })
}

fn sh(env: &Env, name: &str, script: &str, init: bool) -> Running {
    let (spec, _) = env.spec(name, &["sh", "-c", script]);
    spawn(&spec, init).unwrap()
}

fn wait(r: Running) -> ExitStatus {
    let Running { sandbox, stdin, out } = r;
    drop((stdin, out));
    sandbox.wait().unwrap().status
}

fn pid1_is_the_command(env: &Env) {
    let mut r = sh(env, "pid1", "echo $$ $PPID; ps -o pid,comm; true", false);
    assert_eq!(r.line(), "1 0");
    let ps = r.rest();
    let pids: Vec<&str> = ps.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(pids, ["1", "2"], "only sh and ps:\n{ps}");
    assert_eq!(wait(r), ExitStatus::Exited(0));
}

fn trap_in_pid1_runs_on_sigterm(env: &Env) {
    let script = "trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.1; done";
    let mut r = sh(env, "trap", script, false);
    r.until("ready");
    r.sandbox.signal(Signal::SIGTERM).unwrap();
    assert_eq!(r.line(), "got TERM");
    assert_eq!(wait(r), ExitStatus::Exited(3));
}

fn pid1_without_handler_ignores_sigterm(env: &Env) {
    let mut r = sh(env, "noterm", "echo ready; while read l; do echo \"echo:$l\"; done", false);
    r.until("ready");
    r.sandbox.signal(Signal::SIGTERM).unwrap();
    // A fatal signal would have ended sh before it could read again.
    r.send("ping\n");
    assert_eq!(r.line(), "echo:ping");
    r.sandbox.signal(Signal::SIGKILL).unwrap();
    assert_eq!(wait(r), ExitStatus::Signaled(9));
}

fn init_forwards_signals_and_reaps(env: &Env) {
    let script = "trap 'echo got TERM; exit 5' TERM; echo $$; echo ready; while true; do sleep 0.1; done";
    let mut r = sh(env, "init-trap", script, true);
    assert_eq!(r.line(), "2", "with init, the command is PID 2");
    r.until("ready");
    r.sandbox.signal(Signal::SIGTERM).unwrap();
    assert_eq!(r.line(), "got TERM");
    assert_eq!(wait(r), ExitStatus::Exited(5));

    // Without a handler the command (not PID 1) dies of it; init exits 128 + 15, as tini.
    let mut r = sh(env, "init-noterm", "echo ready; while true; do sleep 0.1; done", true);
    r.until("ready");
    r.sandbox.signal(Signal::SIGTERM).unwrap();
    assert_eq!(wait(r), ExitStatus::Exited(143));

    // An orphan's zombie is reaped by rbuild-init (the loop gives it up to 5 s to be).
    let script = "sh -c 'true &'; for i in $(seq 50); do ps -o stat | grep -q Z || break; sleep 0.1; done; \
                  ps -o pid,stat,comm";
    let mut r = sh(env, "init-reap", script, true);
    let ps = r.rest();
    assert!(ps.lines().any(|l| l.split_whitespace().eq(["1", "S", "rbuild-init"])), "{ps}");
    assert!(
        !ps.lines().skip(1).any(|l| l.split_whitespace().nth(1).is_some_and(|s| s.starts_with('Z'))),
        "{ps}"
    );
    assert_eq!(wait(r), ExitStatus::Exited(0));
}

fn fds_are_the_processes_stdio(env: &Env) {
    let (spec, _) = env.spec("fds", &["sh", "-c", "read l; echo \"got $l\"; echo err >&2; exit 4"]);
    let (in_r, in_w) = pipe();
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let stdio = SpawnStdio::Fds { stdin: in_r, stdout: out_w, stderr: err_w };
    let sandbox = executor::spawn(&spec, SpawnOptions { stdio, init: false }).unwrap();
    File::from(in_w).write_all(b"hello\n").unwrap();
    let mut out = String::new();
    File::from(out_r).read_to_string(&mut out).unwrap();
    let mut err = String::new();
    File::from(err_r).read_to_string(&mut err).unwrap();
    assert_eq!((out.as_str(), err.as_str()), ("got hello\n", "err\n"));
    assert_eq!(sandbox.wait().unwrap().status, ExitStatus::Exited(4));

    // Null: stdin reads EOF at once, output goes nowhere.
    let (spec, _) = env.spec("null", &["sh", "-c", "read l || exit 9"]);
    let sandbox = executor::spawn(&spec, SpawnOptions { stdio: SpawnStdio::Null, init: false }).unwrap();
    assert_eq!(sandbox.wait().unwrap().status, ExitStatus::Exited(9));
}

/// Everything the terminal's master side reads until every slave is closed.
fn read_master(master: OwnedFd) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut file = File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the last slave descriptor is closed.
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).replace("\r\n", "\n")
    })
}

fn tty_is_the_controlling_terminal(env: &Env) {
    let script = "test -t 0 && test -t 1 && test -t 2 && echo isatty; tty; cut -d' ' -f6,7 /proc/$$/stat";
    let (spec, _) = env.spec("tty", &["sh", "-c", script]);
    let pty = nix::pty::openpty(None, None).unwrap();
    let reader = read_master(pty.master);
    let sandbox =
        executor::spawn(&spec, SpawnOptions { stdio: SpawnStdio::Tty(pty.slave), init: false }).unwrap();
    assert_eq!(sandbox.wait().unwrap().status, ExitStatus::Exited(0));
    let out = reader.join().unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"isatty"), "{out}");
    assert_eq!(lines.get(1), Some(&"/dev/console"), "{out}");
    // Session leader (session id = its pid, 1) with a controlling terminal (tty_nr != 0).
    let stat: Vec<&str> = lines.get(2).unwrap_or(&"").split(' ').collect();
    assert_eq!(stat.first(), Some(&"1"), "{out}");
    assert_ne!(stat.get(1), Some(&"0"), "{out}");
}

fn exec_joins_the_sandbox(env: &Env) {
    let script = "echo hi > /tmp/marker; echo ready; while true; do sleep 0.1; done";
    let (mut spec, _) = env.spec("exec", &["sh", "-c", script]);
    spec.resources.pids = Some(100);
    let mut r = spawn(&spec, false).unwrap();
    r.until("ready");
    let target = ExecSpec {
        pid: r.sandbox.pid(),
        process: process(&[]),
        security: Security::docker_default(),
        cgroup: r.sandbox.cgroup_name(),
    };
    let run = |args: &[&str], user: &str| -> (ExitStatus, String) {
        let mut spec = target.clone();
        spec.process = process(args);
        spec.process.user = user.into();
        let (out_r, out_w) = pipe();
        let err_w = out_w.try_clone().unwrap();
        let (in_r, in_w) = pipe();
        drop(in_w);
        let p = executor::exec(&spec, SpawnStdio::Fds { stdin: in_r, stdout: out_w, stderr: err_w }).unwrap();
        assert!(p.pid() > 0);
        let mut out = String::new();
        File::from(out_r).read_to_string(&mut out).unwrap();
        (p.wait().unwrap(), out)
    };

    let (status, ps) = run(&["ps", "-o", "pid,comm"], "");
    assert_eq!(status, ExitStatus::Exited(0));
    assert!(ps.lines().any(|l| l.split_whitespace().eq(["1", "sh"])), "PID 1 not seen:\n{ps}");
    assert_eq!(run(&["cat", "/tmp/marker"], ""), (ExitStatus::Exited(0), "hi\n".into()));
    assert_eq!(run(&["hostname"], "").1, "container-test\n");
    assert_eq!(run(&["sh", "-c", "exit 7"], "").0, ExitStatus::Exited(7));
    assert_eq!(run(&["sh", "-c", "kill -9 $$"], "").0, ExitStatus::Signaled(9));
    // The sandbox's user database, capabilities and seccomp profile.
    assert_eq!(run(&["sh", "-c", "id -u; echo $HOME"], "app").1, "1000\n/home/app\n");
    let (_, caps) = run(&["grep", "CapEff", "/proc/self/status"], "");
    assert_eq!(caps.split_whitespace().nth(1), Some("00000000a80425fb"), "{caps}");
    let (status, _) = run(&["unshare", "-n", "true"], "");
    assert_ne!(status, ExitStatus::Exited(0), "seccomp lets exec'd processes unshare");
    // In the sandbox's cgroup, which its cgroup namespace shows as the root.
    let (_, cgroups) = run(&["cat", "/proc/self/cgroup"], "");
    assert!(cgroups.lines().any(|l| l.ends_with(":pids:/")), "{cgroups}");
    let stats = r.sandbox.cgroup().unwrap().stats().unwrap();
    assert_eq!(stats.pids_limit, Some(100));

    // A terminal, as for `exec -t`.
    let pty = nix::pty::openpty(None, None).unwrap();
    let reader = read_master(pty.master);
    let mut spec = target.clone();
    spec.process = process(&["sh", "-c", "test -t 0 && echo isatty"]);
    let p = executor::exec(&spec, SpawnStdio::Tty(pty.slave)).unwrap();
    assert_eq!(p.wait().unwrap(), ExitStatus::Exited(0));
    assert_eq!(reader.join().unwrap(), "isatty\n");

    // Errors come back from exec itself.
    let mut spec = target.clone();
    spec.process = process(&["nosuch"]);
    let err = executor::exec(&spec, SpawnStdio::Null).unwrap_err();
    assert_eq!(err.to_string(), "exec: \"nosuch\": executable file not found in $PATH");
    assert!(matches!(err, Error::Exec { code: 127, .. }), "{err:?}");
    spec.process = process(&["/etc/passwd"]);
    let err = executor::exec(&spec, SpawnStdio::Null).unwrap_err();
    assert!(
        matches!(&err, Error::Exec { code: 126, message } if message.ends_with("permission denied")),
        "{err}"
    );
    spec.process = process(&["true"]);
    spec.process.cwd = "/no/such/dir".into();
    let err = executor::exec(&spec, SpawnStdio::Null).unwrap_err().to_string();
    assert!(err.contains("chdir to /no/such/dir: No such file or directory"), "{err}");
    spec.process = process(&["true"]);
    spec.process.user = "nope".into();
    let err = executor::exec(&spec, SpawnStdio::Null).unwrap_err().to_string();
    assert!(err.contains("unable to find user nope"), "{err}");

    // A long exec'd process is killed with the sandbox.
    let mut spec = target.clone();
    spec.process = process(&["sleep", "1000"]);
    let long = executor::exec(&spec, SpawnStdio::Null).unwrap();
    r.sandbox.signal(Signal::SIGKILL).unwrap();
    assert_eq!(long.wait().unwrap(), ExitStatus::Signaled(9));
    let pid = r.sandbox.pid();
    assert_eq!(wait(r), ExitStatus::Signaled(9));

    spec.pid = pid;
    spec.cgroup = None;
    let err = executor::exec(&spec, SpawnStdio::Null).unwrap_err().to_string();
    assert!(err.contains("not running"), "{err}");
}

fn spawn_errors_are_returned(env: &Env) {
    let (spec, _) = env.spec("missing", &["nosuch", "arg"]);
    let err = executor::spawn(&spec, SpawnOptions { stdio: SpawnStdio::Null, init: false }).unwrap_err();
    assert_eq!(err.to_string(), "exec: \"nosuch\": executable file not found in $PATH");
    let err = executor::spawn(&spec, SpawnOptions { stdio: SpawnStdio::Null, init: true }).unwrap_err();
    assert!(matches!(err, Error::Exec { code: 127, .. }), "{err}");

    let (mut spec, _) = env.spec("baduser", &["true"]);
    spec.process.user = "nope".into();
    let err = executor::spawn(&spec, SpawnOptions { stdio: SpawnStdio::Null, init: false }).unwrap_err();
    assert!(
        err.to_string().contains("unable to find user nope: no matching entries in passwd file"),
        "{err}"
    );

    let (mut spec, _) = env.spec("badlower", &["true"]);
    spec.rootfs.lowers = vec![env.base.join("does-not-exist")];
    let err = executor::spawn(&spec, SpawnOptions { stdio: SpawnStdio::Null, init: false }).unwrap_err();
    assert!(err.to_string().starts_with("sandbox: open layer directory "), "{err}");
}

fn readonly_rootfs(env: &Env) {
    let script = "touch /x 2>/dev/null || echo ro; touch /tmp/y && echo tmp-ok; \
                  echo > /dev/shm/z && echo shm-ok; mkdir /mnt/vol/d && echo vol-ok";
    let (mut spec, upper) = env.spec("readonly", &["sh", "-c", script]);
    let vol = env.base.join("readonly-vol");
    fs::create_dir(&vol).unwrap();
    spec.readonly_rootfs = true;
    spec.mounts = vec![
        Mount { target: "/tmp".into(), kind: MountKind::Tmpfs { size: None } },
        Mount {
            target: "/mnt/vol".into(),
            kind: MountKind::Volume { source: vol.clone(), readonly: false, populate: true },
        },
    ];
    let mut out = Vec::new();
    let status = executor::run(&spec, Stdio::Capture(&mut |c| out.extend_from_slice(c))).unwrap().status;
    let out = String::from_utf8_lossy(&out);
    assert_eq!(status, ExitStatus::Exited(0), "{out}");
    assert_eq!(out, "ro\ntmp-ok\nshm-ok\nvol-ok\n");
    assert!(!upper.join("x").exists());
    assert!(vol.join("d").is_dir());
}

fn volumes_are_filled_once(env: &Env) {
    // An image layer with a directory to fill from: files, a symlink out of the rootfs, a
    // directory owned by someone else; and a symlink to that directory.
    let layer = env.base.join("volume-layer");
    fs::create_dir_all(layer.join("data/sub")).unwrap();
    fs::write(layer.join("data/file"), "from the image").unwrap();
    std::os::unix::fs::symlink("/", layer.join("data/escape")).unwrap();
    std::os::unix::fs::chown(layer.join("data/sub"), Some(1000), Some(50)).unwrap();
    std::os::unix::fs::chown(layer.join("data"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::symlink("/data", layer.join("link-to-data")).unwrap();
    let vol = env.base.join("volume");
    fs::create_dir(&vol).unwrap();
    let mount = |populate, readonly| Mount {
        target: "/link-to-data".into(),
        kind: MountKind::Volume { source: vol.clone(), readonly, populate },
    };
    let run = |name: &str, script: &str, m: Mount| -> (ExitStatus, String) {
        let (mut spec, _) = env.spec(name, &["sh", "-c", script]);
        spec.rootfs.lowers.insert(0, layer.clone());
        spec.mounts = vec![m];
        let mut out = Vec::new();
        let status = executor::run(&spec, Stdio::Capture(&mut |c| out.extend_from_slice(c))).unwrap().status;
        (status, String::from_utf8_lossy(&out).into_owned())
    };

    let (status, out) =
        run("vol1", "cat /data/file; echo; rm /data/file; echo new > /data/added", mount(true, false));
    assert_eq!((status, out.as_str()), (ExitStatus::Exited(0), "from the image\n"));
    assert!(!vol.join("file").exists() && vol.join("added").exists());
    assert_eq!(fs::read_link(vol.join("escape")).unwrap(), Path::new("/"), "symlink not kept as is");
    let sub = fs::metadata(vol.join("sub")).unwrap();
    assert_eq!((sub.uid(), sub.gid()), (1000, 50));
    assert_eq!(fs::metadata(&vol).unwrap().uid(), 1000, "the volume takes the directory's owner");
    assert!(env.lower.join("etc/passwd").exists(), "the escape symlink was followed");

    // Not empty any more: not filled again, the change persists.
    let (status, out) = run("vol2", "ls /data", mount(true, false));
    assert_eq!((status, out.as_str()), (ExitStatus::Exited(0), "added\nescape\nsub\n"));
    // Read-only.
    let (status, _) = run("vol3", "touch /data/x", mount(false, true));
    assert_eq!(status, ExitStatus::Exited(1));
    assert!(!vol.join("x").exists());
    // Without populate an empty volume stays empty.
    let empty = env.base.join("volume-empty");
    fs::create_dir(&empty).unwrap();
    let m = Mount {
        target: "/data".into(),
        kind: MountKind::Volume { source: empty.clone(), readonly: false, populate: false },
    };
    let (status, out) = run("vol4", "ls /data | wc -l", m);
    assert_eq!((status, out.trim()), (ExitStatus::Exited(0), "0"));
}

/// A process of ours in a new network namespace, killed (by pid) when dropped.
struct NetnsHolder(std::process::Child);

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn joins_a_network_namespace(env: &Env) {
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("1000");
    // SAFETY: unshare is a plain syscall, async-signal-safe between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
        });
    }
    let holder = NetnsHolder(cmd.spawn().unwrap());
    let ns = PathBuf::from(format!("/proc/{}/ns/net", holder.0.id()));
    let inode = fs::metadata(&ns).unwrap().ino();
    let (mut spec, _) = env.spec(
        "netns",
        &["sh", "-c", "readlink /proc/self/ns/net; cut -d: -f1 /proc/net/dev | tail -n +3; cat /sys/class/net/lo/operstate"],
    );
    spec.network = NetworkMode::Join(ns);
    let mut r = spawn(&spec, false).unwrap();
    let out = r.rest();
    assert_eq!(wait(r), ExitStatus::Exited(0), "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], format!("net:[{inode}]"), "{out}");
    // Joined as it is: lo left down.
    assert_eq!(lines[1..], ["lo", "down"], "{out}");

    let (mut spec, _) = env.spec("netns-missing", &["true"]);
    spec.network = NetworkMode::Join(env.base.join("no-such-netns"));
    let err = executor::spawn(&spec, SpawnOptions { stdio: SpawnStdio::Null, init: false }).unwrap_err();
    assert!(err.to_string().contains("join the network namespace"), "{err}");
}

fn cgroup_of_a_running_sandbox(env: &Env) {
    let (mut spec, _) = env.spec("cgroup", &["sh", "-c", "echo ready; while true; do sleep 0.1; done"]);
    spec.resources.memory = Some(64 << 20);
    let mut r = spawn(&spec, false).unwrap();
    r.until("ready");
    let name = r.sandbox.cgroup_name().expect("a spawned sandbox has a cgroup");
    let dirs = r.sandbox.cgroup().unwrap().dirs().to_vec();
    // From "another process": by name only.
    let cg = Cgroup::open(&name).unwrap();
    assert!(cg.pids().contains(&r.sandbox.pid()), "{:?}", cg.pids());
    let stats = cg.stats().unwrap();
    assert!(stats.memory_usage > 0 && stats.pids_current >= 1, "{stats:?}");
    assert_eq!(stats.memory_limit, Some(64 << 20));
    cg.freeze().unwrap();
    assert!(cg.is_frozen());
    cg.thaw().unwrap();
    assert!(!cg.is_frozen());
    cg.kill_all().unwrap();
    drop(cg);
    assert_eq!(wait(r), ExitStatus::Signaled(9));
    for dir in dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

fn oom_kill_is_reported(env: &Env) {
    // `tail -c` holds the last 200 MB in memory; as the only command, it is PID 1.
    let (mut spec, _) = env.spec("oom", &["sh", "-c", "tail -c 200000000 /dev/zero > /dev/null"]);
    spec.resources.memory = Some(32 << 20);
    let r = spawn(&spec, false).unwrap();
    let Running { sandbox, stdin, out } = r;
    drop((stdin, out));
    let outcome = sandbox.wait().unwrap();
    assert_eq!(outcome.status, ExitStatus::Signaled(9));
    assert!(outcome.oom_killed);
}

fn dropping_kills_everything(env: &Env) {
    let (spec, _) = env.spec("drop", &["sleep", "1000"]);
    let r = spawn(&spec, true).unwrap();
    let pid = r.sandbox.pid();
    let dirs = r.sandbox.cgroup().unwrap().dirs().to_vec();
    drop(r);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "PID 1 ({pid}) left behind");
    for dir in dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

const TESTS: &[Test<Env>] = &[
    ("pid1_is_the_command", pid1_is_the_command),
    ("trap_in_pid1_runs_on_sigterm", trap_in_pid1_runs_on_sigterm),
    ("pid1_without_handler_ignores_sigterm", pid1_without_handler_ignores_sigterm),
    ("init_forwards_signals_and_reaps", init_forwards_signals_and_reaps),
    ("fds_are_the_processes_stdio", fds_are_the_processes_stdio),
    ("tty_is_the_controlling_terminal", tty_is_the_controlling_terminal),
    ("exec_joins_the_sandbox", exec_joins_the_sandbox),
    ("spawn_errors_are_returned", spawn_errors_are_returned),
    ("readonly_rootfs", readonly_rootfs),
    ("volumes_are_filled_once", volumes_are_filled_once),
    ("joins_a_network_namespace", joins_a_network_namespace),
    ("cgroup_of_a_running_sandbox", cgroup_of_a_running_sandbox),
    ("oom_kill_is_reported", oom_kill_is_reported),
    ("dropping_kills_everything", dropping_kills_everything),
];

fn main() {
    // SAFETY: first thing in main: no thread has started.
    unsafe {
        test_support::harness::main("rbuild-containers-test-", TESTS, |base| Env {
            base: base.to_path_buf(),
            lower: test_support::harness::unpack_busybox(base),
        })
    }
}
