//! Containers end to end, through the `rbuild` binary, on the busybox image: the lifecycle
//! (run -d, ps, logs -f, stop, pause, exec, restart, --rm, commit, cp), networks, volumes and
//! limits, each asserting what a user of `docker run` would check.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::Duration;

use test_support::containers::Env;
use test_support::free_port;

#[test]
fn run_detached_outlives_the_cli_and_shows_in_ps() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let id = e.ok(&["run", "-d", "--name", "bg", "busybox", "sh", "-c", "echo started; sleep 1000"]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "run -d prints the id: {id:?}");
    e.wait_for_log("bg", "started");
    let ps = e.ok(&["ps"]);
    assert!(ps.contains("bg") && ps.contains("Up "), "{ps}");
    assert!(ps.starts_with("CONTAINER ID"), "{ps}");
    assert_eq!(e.inspect("bg", "{{.State.Status}} {{.State.Running}}"), "running true");
    let pid: i32 = e.inspect("bg", "{{.State.Pid}}").parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(e.ok(&["ps", "-q"]).trim(), &id[..12]);
    // Stopped containers show only with -a.
    e.ok(&["kill", "bg"]);
    e.ok(&["wait", "bg"]);
    assert_eq!(e.ok(&["ps", "-q"]).trim(), "");
    let all = e.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(all.trim(), "bg exited");
    assert_eq!(e.inspect("bg", "{{.State.ExitCode}}"), "137");
}

#[test]
fn logs_follow_streams_while_the_container_runs() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second >&2; echo third",
    ]);
    let mut follow =
        e.s.cmd()
            .args(["logs", "-f", "talker"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let mut out = BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    // Still running: the line came while it was waiting.
    assert_eq!(e.inspect("talker", "{{.State.Status}}"), "running");
    e.ok(&["exec", "talker", "touch", "/tmp/go"]);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    follow.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(err, "second\n", "logs -f writes stderr lines to stderr");
    assert_eq!(rest, "third\n");
    assert!(follow.wait().unwrap().success());
    let (_, stdout, stderr) = e.run(&["logs", "talker"]);
    assert_eq!(stdout, "first\nthird\n");
    assert_eq!(stderr, "second\n");
    // The last two entries (stdout and stderr are pumped separately, so their order is not
    // fixed, as with docker).
    let tail = e.ok(&["logs", "--tail", "2", "talker"]);
    assert_eq!(tail, "third\n");
    assert_eq!(e.ok(&["logs", "--tail", "0", "talker"]), "");
    let stamped = e.ok(&["logs", "-t", "talker"]);
    assert!(
        stamped.lines().all(|l| l.len() > 31 && l.as_bytes()[4] == b'-' && l.contains("Z ")),
        "{stamped}"
    );
}

#[test]
fn stop_lets_a_trapping_pid1_clean_up_and_kills_one_that_ignores_sigterm() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "busybox",
        "sh",
        "-c",
        "trap 'echo cleaning up; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    e.wait_for_log("polite", "ready");
    e.ok(&["stop", "-t", "20", "polite"]);
    assert_eq!(e.inspect("polite", "{{.State.Status}} {{.State.ExitCode}}"), "exited 0");
    assert!(e.logs("polite").contains("cleaning up"));

    // sh as PID 1 without a handler: the kernel does not deliver SIGTERM; SIGKILL after -t.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "busybox",
        "sh",
        "-c",
        "echo ready; while true; do sleep 0.1; done",
    ]);
    e.wait_for_log("stubborn", "ready");
    e.ok(&["stop", "-t", "1", "stubborn"]);
    assert_eq!(e.inspect("stubborn", "{{.State.Status}} {{.State.ExitCode}}"), "exited 137");
}

#[test]
fn pause_freezes_a_counter_and_unpause_resumes_it() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i; sleep 0.02; done",
    ]);
    e.wait_for_log("counter", "3\n");
    e.ok(&["pause", "counter"]);
    assert_eq!(e.inspect("counter", "{{.State.Status}} {{.State.Paused}}"), "paused true");
    let frozen = e.logs("counter").lines().count();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(e.logs("counter").lines().count(), frozen, "the counter advanced while paused");
    let ps = e.ok(&["ps"]);
    assert!(ps.contains("(Paused)"), "{ps}");
    e.ok(&["unpause", "counter"]);
    e.wait_until("the counter to advance after unpause", || e.logs("counter").lines().count() > frozen + 2);
    assert_eq!(e.inspect("counter", "{{.State.Status}}"), "running");
}

#[test]
fn exec_shares_the_pid_namespace_and_files() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    // `; exit 0` keeps sh as PID 1 (a last simple command would be exec'd).
    e.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo hello > /tmp/made; echo ready; sleep 1000; exit 0",
    ]);
    e.wait_for_log("box", "ready");
    assert_eq!(e.ok(&["exec", "box", "cat", "/tmp/made"]), "hello\n");
    let ps = e.ok(&["exec", "box", "ps", "-o", "pid,comm"]);
    let pid1 = ps.lines().find(|l| l.trim_start().starts_with("1 ")).unwrap_or_default();
    assert!(pid1.contains("sh"), "PID 1 is the container's shell:\n{ps}");
    assert!(ps.contains("sleep"), "{ps}");
    let (code, _, _) = e.run(&["exec", "box", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3);
    assert_eq!(e.ok(&["exec", "-e", "X=y", "-w", "/tmp", "box", "sh", "-c", "echo $X $(pwd)"]), "y /tmp\n");
    assert_eq!(e.ok(&["exec", "-u", "app", "box", "id", "-u"]), "1000\n");
    let (code, _, err) = e.run(&["exec", "box", "no-such-program"]);
    assert_ne!(code, 0);
    assert!(err.contains("no-such-program"), "{err}");
    // stdin with -i.
    let mut child =
        e.s.cmd()
            .args(["exec", "-i", "box", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    child.stdin.take().unwrap().write_all(b"piped in\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped in\n");
}

#[test]
fn restart_on_failure_restarts_at_most_n_times() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo try; exit 3",
    ]);
    e.wait_until("flaky to stop restarting", || {
        e.inspect("flaky", "{{.State.Status}}") == "exited" && e.inspect("flaky", "{{.RestartCount}}") == "2"
    });
    assert_eq!(e.ok(&["wait", "flaky"]).trim(), "3");
    assert_eq!(e.logs("flaky"), "try\ntry\ntry\n");
    assert_eq!(e.inspect("flaky", "{{.HostConfig.RestartPolicy.Name}}"), "on-failure");
}

#[test]
fn run_rm_leaves_nothing_behind_and_passes_the_exit_code() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let (code, out, _) = e.run(&["run", "--rm", "busybox", "sh", "-c", "echo out; exit 7"]);
    assert_eq!((code, out.as_str()), (7, "out\n"));
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    // The monitor deletes the directory (renamed out of the listing) just after it told the
    // exit code.
    let left = || -> Vec<String> {
        std::fs::read_dir(e.s.path().join("containers"))
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "names")
            .collect()
    };
    e.wait_until("the container's directory goes", || left().is_empty());
    // One whose deletion was cut short (its monitor killed) goes with the next prune.
    let cut_short = e.s.path().join("containers/.removing-0123abcd/upper/etc");
    std::fs::create_dir_all(&cut_short).unwrap();
    e.ok(&["container", "prune", "-f"]);
    assert!(left().is_empty(), "{:?}", left());
    let names: Vec<_> = std::fs::read_dir(e.s.path().join("containers/names")).unwrap().collect();
    assert!(names.is_empty());
    // stdin reaches a foreground container with -i.
    let mut child =
        e.s.cmd()
            .args(["run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SHOUT\n");
    assert!(out.status.success());
}

#[test]
fn a_missing_command_fails_the_start_with_docker_s_exit_code() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let (code, _, err) = e.run(&["run", "--rm", "busybox", "no-such-cmd"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("no-such-cmd") && err.contains("not found"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn commit_makes_an_image_with_the_change() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&["run", "--name", "maker", "busybox", "sh", "-c", "echo committed > /note; rm /etc/group"]);
    let diff = e.ok(&["diff", "maker"]);
    assert!(diff.lines().any(|l| l == "A /note"), "{diff}");
    assert!(diff.lines().any(|l| l == "D /etc/group"), "{diff}");
    assert!(!diff.contains("/etc/hosts") && !diff.contains("/etc/resolv.conf"), "{diff}");
    e.ok(&["commit", "-a", "tester", "-m", "a note", "-c", "CMD [\"cat\", \"/note\"]", "maker", "noted:v1"]);
    assert_eq!(e.ok(&["run", "--rm", "noted:v1"]), "committed\n");
    let (code, _, _) = e.run(&["run", "--rm", "noted:v1", "cat", "/etc/group"]);
    assert_ne!(code, 0, "the deleted file is gone in the committed image");
    let author = e.ok(&["image", "inspect", "noted:v1"]);
    assert!(author.contains("tester"), "{author}");
}

#[test]
fn cp_copies_both_ways() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "from host\n").unwrap();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "cpbox",
        "busybox",
        "sh",
        "-c",
        "echo from container > /out.txt; echo ready; sleep 1000",
    ]);
    e.wait_for_log("cpbox", "ready");
    let src = host.path().join("in.txt");
    e.ok(&["cp", src.to_str().unwrap(), "cpbox:/tmp/in.txt"]);
    assert_eq!(e.ok(&["exec", "cpbox", "cat", "/tmp/in.txt"]), "from host\n");
    let dest = host.path().join("out.txt");
    e.ok(&["cp", "cpbox:/out.txt", dest.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "from container\n");
    // And from a stopped container.
    e.ok(&["stop", "-t", "0", "cpbox"]);
    let dest2 = host.path().join("after.txt");
    e.ok(&["cp", "cpbox:/tmp/in.txt", dest2.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&dest2).unwrap(), "from host\n");
}

const HTTPD: &str =
    "mkdir -p /www && echo hello from web > /www/index.html && echo serving && exec httpd -f -p 80 -h /www";

#[test]
fn containers_on_a_user_network_reach_each_other_by_name_and_ports_publish_to_loopback() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&["network", "create", "appnet"]);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "appnet",
        "-p",
        &publish,
        "busybox",
        "sh",
        "-c",
        HTTPD,
    ]);
    e.wait_for_log("web", "serving");
    let ip = e.inspect("web", "{{.NetworkSettings.Networks.appnet.IPAddress}}");
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip:?}");
    // By name, from another container on the network.
    let page =
        e.ok(&["run", "--rm", "--network", "appnet", "busybox", "wget", "-q", "-O", "-", "http://web/"]);
    assert_eq!(page, "hello from web\n");
    // Published on the host's loopback.
    let mut got = None;
    e.wait_until("the published port to answer", || {
        got = test_support::try_http_get(port);
        got.as_deref().is_some_and(|b| b.contains("hello from web"))
    });
    assert!(e.ok(&["port", "web"]).contains(&format!("80/tcp -> 127.0.0.1:{port}")));
    // container:NAME shares web's interfaces (and reaches its server on 127.0.0.1).
    let shared = e.ok(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        "http://127.0.0.1/",
    ]);
    assert_eq!(shared, "hello from web\n");
    let devs = e.ok(&["run", "--rm", "--network", "container:web", "busybox", "cat", "/proc/net/dev"]);
    assert!(devs.contains("eth0"), "{devs}");
    // A network in use cannot be removed.
    let (code, _, err) = e.run(&["network", "rm", "appnet"]);
    assert_ne!(code, 0);
    assert!(err.contains("active endpoints"), "{err}");
    e.ok(&["rm", "-f", "web"]);
    e.ok(&["network", "rm", "appnet"]);
    assert!(test_support::try_http_get(port).is_none(), "the port is closed after rm");
}

#[test]
fn network_none_has_only_loopback() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let devs = e.ok(&["run", "--rm", "--network", "none", "busybox", "cat", "/proc/net/dev"]);
    let ifaces: Vec<&str> = devs.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(ifaces, ["lo"]);
    let hosts = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--add-host",
        "db:10.1.2.3",
        "busybox",
        "cat",
        "/etc/hosts",
    ]);
    assert!(hosts.contains("10.1.2.3\tdb"), "{hosts}");
}

#[test]
fn named_volumes_persist_start_with_the_image_files_and_honour_ro() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&["run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f"]);
    assert_eq!(e.ok(&["run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f"]), "kept\n");
    let ls = e.ok(&["volume", "ls", "-q"]);
    assert!(ls.lines().any(|l| l == "data"), "{ls}");
    // A new named volume on a path the image fills starts with the image's files.
    let passwd = e.ok(&["run", "--rm", "-v", "etcvol:/etc", "busybox", "cat", "/etc/passwd"]);
    assert!(passwd.starts_with("root:x:0:0"), "{passwd}");
    // Read-only.
    let (code, _, err) =
        e.run(&["run", "--rm", "-v", "data:/data:ro", "busybox", "sh", "-c", "echo x > /data/g"]);
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    // In use: refused.
    e.ok(&["run", "-d", "--name", "holder", "-v", "data:/data", "busybox", "sleep", "1000"]);
    let (code, _, err) = e.run(&["volume", "rm", "data"]);
    assert_ne!(code, 0);
    assert!(err.contains("in use"), "{err}");
    e.ok(&["rm", "-f", "holder"]);
    e.ok(&["volume", "rm", "data"]);
}

#[test]
fn memory_limit_ends_with_137_and_oomkilled_and_stats_read_the_cgroup() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let (code, _, _) = e.run(&[
        "run",
        "--name",
        "hog",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "tail -c 200000000 /dev/zero > /dev/null",
    ]);
    assert_eq!(code, 137);
    assert_eq!(e.inspect("hog", "{{.State.ExitCode}} {{.State.OOMKilled}}"), "137 true");

    let (code, out, err) = e.run(&[
        "run",
        "--rm",
        "--pids-limit",
        "20",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 40); do sleep 5 & done 2>&1; echo done",
    ]);
    assert!(format!("{out}{err}").contains("can't fork"), "code {code}: {out}{err}");

    e.ok(&[
        "run",
        "-d",
        "--name",
        "measured",
        "-m",
        "100m",
        "busybox",
        "sh",
        "-c",
        "echo ready; sleep 1000; exit 0",
    ]);
    e.wait_for_log("measured", "ready");
    let stats = e.ok(&["stats", "--no-stream", "measured"]);
    let row = stats.lines().find(|l| l.contains("measured")).unwrap_or_else(|| panic!("{stats}"));
    assert!(row.contains("/ 100MiB"), "{stats}");
    let pids: u32 = row.split_whitespace().last().unwrap().parse().unwrap();
    assert!(pids >= 2, "sh and sleep: {stats}");
    let top = e.ok(&["top", "measured"]);
    assert!(top.contains("sleep 1000"), "{top}");
}

#[test]
fn network_connect_and_disconnect_a_running_container() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&["network", "create", "--subnet", "10.213.7.0/24", "side"]);
    e.ok(&["run", "-d", "--name", "srv", "--network", "side", "busybox", "sh", "-c", HTTPD]);
    e.wait_for_log("srv", "serving");
    e.ok(&["run", "-d", "--name", "client", "busybox", "sh", "-c", "echo ready; sleep 1000; exit 0"]);
    e.wait_for_log("client", "ready");
    // Not on `side` yet: the name does not resolve.
    let (code, _, _) = e.run(&["exec", "client", "wget", "-q", "-T", "2", "-O", "-", "http://srv/"]);
    assert_ne!(code, 0);
    e.ok(&["network", "connect", "side", "client"]);
    let ip = e.inspect("client", "{{.NetworkSettings.Networks.side.IPAddress}}");
    assert!(ip.starts_with("10.213.7."), "{ip:?}");
    assert_eq!(e.ok(&["exec", "client", "wget", "-q", "-O", "-", "http://srv/"]), "hello from web\n");
    let inspect = e.ok(&["network", "inspect", "side"]);
    assert!(inspect.contains("\"client\"") || inspect.contains("client"), "{inspect}");
    e.ok(&["network", "disconnect", "side", "client"]);
    let (code, _, _) = e.run(&["exec", "client", "wget", "-q", "-T", "2", "-O", "-", "http://srv/"]);
    assert_ne!(code, 0, "disconnected: srv is out of reach");
    let ifaces = e.ok(&["exec", "client", "cat", "/proc/net/dev"]);
    assert_eq!(ifaces.lines().filter(|l| l.contains("eth")).count(), 1, "{ifaces}");
}
