//! Real sandboxes (namespaces, overlay, pivot_root) over the busybox rootfs; needs root.
//!
//! `harness = false`: this binary is also the sandbox init, since `run` re-executes
//! `current_exe()` with `executor::INIT_ARG`.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use executor::{Error, ExitStatus, NetworkMode, Process, Rootfs, SandboxSpec, Stdio};
use test_support::harness::Test;

/// The unpacked busybox rootfs (shared, read-only lower) and the directory tests work in.
struct Env {
    base: PathBuf,
    lower: PathBuf,
}

/// One sandbox's overlay directories, fresh per run.
struct Layout {
    upper: PathBuf,
    target: PathBuf,
    rootfs: Rootfs,
}

impl Env {
    fn layout(&self, name: &str) -> Layout {
        let dir = self.base.join(name);
        let [upper, work, target] = ["upper", "work", "merged"].map(|d| dir.join(d));
        for d in [&upper, &work, &target] {
            fs::create_dir_all(d).unwrap();
        }
        let rootfs =
            Rootfs { lowers: vec![self.lower.clone()], upper: upper.clone(), work, target: target.clone() };
        Layout { upper, target, rootfs }
    }

    fn spec(&self, name: &str, args: &[&str], user: &str) -> (SandboxSpec, Layout) {
        let layout = self.layout(name);
        let spec = SandboxSpec {
            rootfs: layout.rootfs.clone(),
            process: Process {
                args: args.iter().map(|s| s.to_string()).collect(),
                env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
                cwd: "/".into(),
                user: user.into(),
            },
            hostname: "sandbox-test".into(),
            network: NetworkMode::None,
            mounts: Vec::new(),
            resources: Default::default(),
            limits: Default::default(),
            security: Default::default(),
            readonly_rootfs: false,
        };
        (spec, layout)
    }
}

fn capture(spec: &SandboxSpec) -> Result<(ExitStatus, String), Error> {
    let mut out = Vec::new();
    let mut cb = |chunk: &[u8]| out.extend_from_slice(chunk);
    let status = executor::run(spec, Stdio::Capture(&mut cb))?;
    Ok((status.status, String::from_utf8_lossy(&out).into_owned()))
}

/// Runs `sh -c script` and insists on exit 0; returns the output.
fn sh(env: &Env, name: &str, script: &str) -> (String, Layout) {
    let (spec, layout) = env.spec(name, &["sh", "-c", script], "");
    let (status, out) = capture(&spec).unwrap();
    assert_eq!(status, ExitStatus::Exited(0), "script {script:?} failed; output:\n{out}");
    (out, layout)
}

fn output_and_exit_codes(env: &Env) {
    let (out, _) = sh(env, "output", "echo out; echo err >&2; echo out2");
    assert_eq!(out, "out\nerr\nout2\n");

    let (spec, _) = env.spec("exit7", &["sh", "-c", "echo bye; exit 7"], "");
    assert_eq!(capture(&spec).unwrap(), (ExitStatus::Exited(7), "bye\n".to_string()));

    let (spec, _) = env.spec("kill9", &["sh", "-c", "kill -9 $$"], "");
    assert_eq!(capture(&spec).unwrap().0, ExitStatus::Signaled(9));

    // Inherit: the output goes to the test's own stdout; the status must still come back.
    let (spec, _) = env.spec("inherit", &["sh", "-c", "exit 3"], "");
    assert_eq!(executor::run(&spec, Stdio::Inherit).unwrap().status, ExitStatus::Exited(3));
}

fn large_output_is_complete(env: &Env) {
    // Far more than a pipe buffer, so the reader and the writer must really interleave.
    let (out, _) = sh(env, "large", "seq 1 100000");
    let expected: String = (1..=100000).map(|i| format!("{i}\n")).collect();
    assert!(out == expected, "output of seq lost or mangled ({} bytes vs {})", out.len(), expected.len());
}

fn pid_namespace(env: &Env) {
    let (out, _) = sh(env, "pid-sh", "echo $$ $PPID; true");
    assert_eq!(out, "2 1\n", "sh should be PID 2 with PPID 1");
    let (spec, _) = env.spec("pid-stat", &["cut", "-d ", "-f1,4", "/proc/self/stat"], "");
    assert_eq!(capture(&spec).unwrap(), (ExitStatus::Exited(0), "2 1\n".to_string()));

    // The background sleep also holds the output pipe open: the run must still end promptly,
    // because PID 1's exit kills everything left in the namespace.
    let start = std::time::Instant::now();
    let (out, _) = sh(env, "ps", "sleep 30 & ps -o pid,ppid,comm; true");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "a background process kept the sandbox alive"
    );
    let procs: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert!(procs.len() == 4, "ps should show only init, sh, sleep and ps:\n{out}");
    assert_eq!(&procs[0][..2], ["1", "0"], "{out}");
    assert_eq!(procs[1], ["2", "1", "sh"], "{out}");
    // Its name depends on how far busybox got re-executing itself; the ids are what matter.
    assert_eq!(&procs[2][..2], ["3", "2"], "{out}");
    assert_eq!(procs[3], ["4", "2", "ps"], "{out}");
}

fn hostname_and_network(env: &Env) {
    let (out, _) =
        sh(env, "net", "hostname; cut -d: -f1 /proc/net/dev | tail -n +3; cat /sys/class/net/lo/flags");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "sandbox-test");
    assert_eq!(lines[1..lines.len() - 1], ["lo"], "only lo expected:\n{out}");
    let flags = u32::from_str_radix(lines[lines.len() - 1].trim_start_matches("0x"), 16).unwrap();
    assert!(flags & 1 == 1, "lo is not up: flags {flags:#x}");
}

fn mounts_hide_host_paths(env: &Env) {
    let (out, layout) = sh(env, "mounts", "cat /proc/self/mountinfo");
    let base = env.base.to_str().unwrap();
    assert!(!out.contains(base), "sandbox mountinfo shows host path {base}:\n{out}");
    for point in [" / ", " /proc ", " /dev ", " /dev/pts ", " /dev/shm ", " /dev/null ", " /sys "] {
        assert!(out.lines().any(|l| l.contains(point)), "no mount at{point}in:\n{out}");
    }
    assert!(out.lines().any(|l| l.contains(" /sys ") && l.contains(" ro,")), "/sys not read-only:\n{out}");
    // The mount point directories exist in the lower layer, so nothing was created above.
    assert!(!layout.upper.join("proc").exists());
}

fn devices(env: &Env) {
    let script = "echo x > /dev/null && head -c 4 /dev/zero | wc -c && test -c /dev/urandom && \
                  test -c /dev/tty && test -c /dev/pts/ptmx && for l in ptmx fd stderr; do readlink /dev/$l; done && \
                  stat -c %a /dev";
    let (out, _) = sh(env, "dev", script);
    assert_eq!(out, "4\npts/ptmx\n/proc/self/fd\n/proc/self/fd/2\n755\n");
}

fn writes_land_in_upper(env: &Env) {
    let (_, layout) = sh(env, "write", "echo hello > /tmp/greeting && rm /etc/passwd");
    assert_eq!(fs::read_to_string(layout.upper.join("tmp/greeting")).unwrap(), "hello\n");
    let whiteout = fs::symlink_metadata(layout.upper.join("etc/passwd")).unwrap();
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0, "no whiteout for /etc/passwd");
    assert!(env.lower.join("etc/passwd").exists(), "the lower layer was modified");
    assert!(fs::read_dir(&layout.target).unwrap().next().is_none(), "overlay still visible at the target");
}

fn cwd_is_created(env: &Env) {
    let (mut spec, layout) = env.spec("cwd", &["pwd"], "");
    spec.process.cwd = "/work/sub".into();
    assert_eq!(capture(&spec).unwrap(), (ExitStatus::Exited(0), "/work/sub\n".to_string()));
    assert!(layout.upper.join("work/sub").is_dir());
}

fn users(env: &Env) {
    let (spec, _) = env.spec("user-app", &["sh", "-c", "id -u; id -G; echo $HOME"], "app");
    let (status, out) = capture(&spec).unwrap();
    assert_eq!(status, ExitStatus::Exited(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000");
    assert!(lines[1].split(' ').any(|g| g == "50"), "staff (50) missing from groups: {out}");
    assert_eq!(lines[2], "/home/app");

    let (spec, _) = env.spec("user-num", &["sh", "-c", "id -u; id -g; echo $HOME"], "1234:5678");
    assert_eq!(capture(&spec).unwrap(), (ExitStatus::Exited(0), "1234\n5678\n/\n".to_string()));

    let (spec, _) = env.spec("user-root", &["id", "-u"], "");
    assert_eq!(capture(&spec).unwrap().1, "0\n");

    let (spec, _) = env.spec("user-bad", &["id"], "nope");
    let err = capture(&spec).unwrap_err().to_string();
    assert!(err.contains("unable to find user nope: no matching entries in passwd file"), "got: {err}");
}

fn missing_command(env: &Env) {
    let (spec, _) = env.spec("missing", &["no-such-command", "arg"], "");
    let (status, out) = capture(&spec).unwrap();
    assert_eq!(status, ExitStatus::Exited(127));
    assert_eq!(out, "rbuild: exec \"no-such-command\": executable file not found in $PATH\n");

    let (spec, _) = env.spec("noexec", &["/etc/passwd"], "");
    let (status, out) = capture(&spec).unwrap();
    assert_eq!(status, ExitStatus::Exited(126));
    assert_eq!(out, "rbuild: exec \"/etc/passwd\": permission denied\n");
}

fn setup_failure_is_readable(env: &Env) {
    let (mut spec, _) = env.spec("badlower", &["true"], "");
    spec.rootfs.lowers = vec![env.base.join("does-not-exist")];
    let err = capture(&spec).unwrap_err().to_string();
    assert!(
        err.starts_with("sandbox: open layer directory ")
            && err.ends_with("does-not-exist: No such file or directory"),
        "got: {err}"
    );

    // upper and work on different filesystems: the kernel refuses the overlay.
    let (mut spec, _) = env.spec("badmount", &["true"], "");
    spec.rootfs.work = PathBuf::from("/dev/shm");
    let err = capture(&spec).unwrap_err().to_string();
    assert!(err.starts_with("sandbox: mount overlay at ") && err.contains("merged: "), "got: {err}");
}

const TESTS: &[Test<Env>] = &[
    ("output_and_exit_codes", output_and_exit_codes),
    ("large_output_is_complete", large_output_is_complete),
    ("pid_namespace", pid_namespace),
    ("hostname_and_network", hostname_and_network),
    ("mounts_hide_host_paths", mounts_hide_host_paths),
    ("devices", devices),
    ("writes_land_in_upper", writes_land_in_upper),
    ("cwd_is_created", cwd_is_created),
    ("users", users),
    ("missing_command", missing_command),
    ("setup_failure_is_readable", setup_failure_is_readable),
];

fn main() {
    // SAFETY: first thing in main: no thread has started.
    unsafe {
        test_support::harness::main("rbuild-executor-test-", TESTS, |base| Env {
            base: base.to_path_buf(),
            lower: test_support::harness::unpack_busybox(base),
        })
    }
}
