//! Containers end to end, through the `rbuild` binary, on the busybox image: the flags of `run`
//! (environment, user, entrypoint, hostname, labels, read-only root, capabilities, init, hosts
//! and DNS, mounts and volumes, stop signal and timeout, published ports, restart, limits,
//! names, bad input), the lifecycle commands beyond the basics (create/start, restart, rename,
//! port, wait, prune, ps filters and formats, inspect, stats, top, kill, missing containers),
//! and terminals and signals (a real pty with its size and resizes, typed input, Ctrl-C,
//! signals to a foreground `run`, several `attach`es, `exec -it` and `exec -d`). Each asserts
//! what a user of `docker run` would check.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use test_support::containers::{Env, wait_until};

/// Polls `cond` until it holds; panics with `what` after 30 s.
/// `rbuild ARGS...` in the background with its stdout and stderr collected.
fn spawn(e: &Env, args: &[&str]) -> Proc {
    let mut cmd = e.s.cmd();
    cmd.args(args).stdin(Stdio::null());
    Proc::start(cmd)
}

/// A process the test started, its output collected by threads. Dropped while running (the
/// test failed), it is killed by its PID.
struct Proc {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    code: Option<i32>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // A pty's master reads EIO once the last slave closed: the end, as 0 is for a pipe.
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Proc {
    /// Starts `cmd` with stdout and stderr piped into one buffer.
    fn start(mut cmd: Command) -> Proc {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), out.clone()),
            collect(child.stderr.take().unwrap(), out.clone()),
        ];
        Proc { child, out, readers, code: None }
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, text: &str) {
        wait_until(&format!("{text:?} in the output, so far {:?}", self.text()), || {
            self.text().contains(text)
        });
    }

    /// Its exit code, once it exited and its output was read to the end.
    fn exit_code(&mut self) -> i32 {
        if let Some(c) = self.code {
            return c;
        }
        let mut status = None;
        wait_until("the process to exit", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        // Bounded: a process that kept a copy of the output's write end would hold it open.
        wait_until("the end of the output", || self.readers.iter().all(JoinHandle::is_finished));
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        let code = status.and_then(|s| s.code()).unwrap_or(-1);
        self.code = Some(code);
        code
    }

    fn exited(&mut self) -> bool {
        self.code.is_some() || self.child.try_wait().unwrap().is_some()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.code.is_none() && self.child.try_wait().ok().flatten().is_none() {
            let _ = nix::sys::signal::kill(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// A pseudo-terminal pair, both ends close-on-exec (other tests spawn processes meanwhile).
struct Pty {
    master: File,
    slave: OwnedFd,
}

fn set_window(fd: &impl AsRawFd, rows: u16, cols: u16) {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize that lives across the call.
    assert_eq!(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
}

impl Pty {
    fn new(rows: u16, cols: u16) -> Pty {
        use nix::fcntl::OFlag;
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).unwrap();
        nix::pty::grantpt(&master).unwrap();
        nix::pty::unlockpt(&master).unwrap();
        let name = nix::pty::ptsname_r(&master).unwrap();
        let slave = nix::fcntl::open(
            name.as_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        set_window(&master, rows, cols);
        Pty { master: File::from(OwnedFd::from(master)), slave }
    }

    /// `rbuild ARGS...` with this terminal as its stdio and controlling terminal (as a shell
    /// starts it: its own session, the terminal's foreground, so a resize sends it SIGWINCH);
    /// what it writes to the terminal is collected from the master.
    fn spawn(self, e: &Env, args: &[&str]) -> (Proc, File) {
        let mut cmd = e.s.cmd();
        cmd.args(args)
            .stdin(self.slave.try_clone().unwrap())
            .stdout(self.slave.try_clone().unwrap())
            .stderr(self.slave.try_clone().unwrap());
        // SAFETY: setsid and ioctl are async-signal-safe; nothing is allocated.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        // Only the child holds the slave now: its exit ends the master's reads.
        drop(cmd);
        drop(self.slave);
        let out = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![collect(self.master.try_clone().unwrap(), out.clone())];
        (Proc { child, out, readers, code: None }, self.master)
    }
}

/// A shell loop that keeps PID 1 (a shell) alive until killed; `; exit 0` keeps sh from
/// exec'ing its last command.
const LOOP: &str = "while true; do sleep 0.1; done; exit 0";

/// The capability bits of `CapEff` in a /proc/PID/status text.
fn cap_eff(status: &str) -> u64 {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap_or_else(|| panic!("{status}"));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

// ---------------------------------------------------------------------------------------------
// run flags

#[test]
fn env_env_file_workdir_user_and_entrypoint_flags() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("app.env");
    std::fs::write(&env_file, "A=1\n# a comment\n\nB=two words\nC=from file\n").unwrap();
    let out = e.ok(&[
        "run",
        "--rm",
        "-e",
        "X=y",
        "--env-file",
        env_file.to_str().unwrap(),
        "-e",
        "C=from flag",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "busybox",
        "sh",
        "-c",
        "echo \"$X|$A|$B|$C\"; pwd; id -u; id -g",
    ]);
    assert_eq!(out, "y|1|two words|from flag\n/tmp\n1000\n1000\n");
    // A user by name, and a working directory that does not exist yet (created, as docker).
    assert_eq!(
        e.ok(&["run", "--rm", "-u", "app", "-w", "/made/here", "busybox", "sh", "-c", "id -un; pwd"]),
        "app\n/made/here\n"
    );

    e.build("ep:1", "FROM busybox\nENTRYPOINT [\"echo\", \"from-entrypoint\"]\nCMD [\"default-arg\"]\n");
    assert_eq!(e.ok(&["run", "--rm", "ep:1"]), "from-entrypoint default-arg\n");
    assert_eq!(e.ok(&["run", "--rm", "ep:1", "x", "y"]), "from-entrypoint x y\n");
    // A new entrypoint drops the image's CMD too; "" clears the entrypoint.
    assert_eq!(e.ok(&["run", "--rm", "--entrypoint", "hostname", "ep:1"]).len(), 13);
    assert_eq!(e.ok(&["run", "--rm", "--entrypoint", "", "ep:1", "echo", "cleared"]), "cleared\n");
    e.ok(&["create", "--name", "noentry", "--entrypoint", "", "ep:1", "echo", "hi"]);
    assert_eq!(
        e.inspect("noentry", "{{json .Config.Entrypoint}} {{json .Config.Cmd}}"),
        "null [\"echo\",\"hi\"]"
    );
    let err = e.fails(&["run", "--rm", "--entrypoint", "", "ep:1"]);
    assert!(err.contains("no command specified"), "{err}");
}

#[test]
fn hostname_is_the_short_id_unless_given() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let out = e.ok(&[
        "run",
        "--name",
        "named",
        "busybox",
        "sh",
        "-c",
        "hostname; cat /etc/hostname; echo $HOSTNAME",
    ]);
    let id = e.inspect("named", "{{.Id}}");
    let short = &id[..12];
    assert_eq!(out, format!("{short}\n{short}\n{short}\n"));
    assert_eq!(e.inspect("named", "{{.Config.Hostname}}"), short);
    let out = e.ok(&[
        "run",
        "--rm",
        "--hostname",
        "myhost",
        "busybox",
        "sh",
        "-c",
        "hostname; cat /etc/hostname; echo $HOSTNAME; grep -c myhost /etc/hosts",
    ]);
    assert_eq!(out, "myhost\nmyhost\nmyhost\n1\n");
}

#[test]
fn labels_show_in_inspect_and_filter_ps() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let id =
        e.ok(&["run", "-d", "--name", "web", "-l", "tier=web", "-l", "flag", "busybox", "sh", "-c", LOOP]);
    e.ok(&["create", "--name", "db", "--label", "tier=db", "busybox", "true"]);
    let labels = e.json("web")["Config"]["Labels"].clone();
    assert_eq!(labels, serde_json::json!({"tier": "web", "flag": ""}));
    assert_eq!(e.ps(&["--filter", "label=tier=web", "-q"]), [&id[..12]]);
    assert_eq!(e.ps(&["-a", "--filter", "label=tier", "--format", "{{.Names}}"]), ["db", "web"]);
    assert_eq!(e.ps(&["-a", "--filter", "label=flag", "--format", "{{.Names}}"]), ["web"]);
    assert_eq!(e.ps(&["-a", "--filter", "label=tier=cache", "-q"]), Vec::<String>::new());
    assert_eq!(e.ps(&["--format", "{{.Labels}}"]), ["flag=,tier=web"]);
}

#[test]
fn read_only_root_refuses_writes_but_tmpfs_stays_writable() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let (code, _, err) = e.run(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "busybox",
            "sh",
            "-c",
            "echo ok > /tmp/f && cat /tmp/f"
        ]),
        "ok\n"
    );
    // A tmpfs of the size asked for.
    let df = e.ok(&["run", "--rm", "--tmpfs", "/scratch:size=8m", "busybox", "df", "-k", "/scratch"]);
    let blocks =
        df.lines().nth(1).and_then(|l| l.split_whitespace().nth(1)).unwrap_or_else(|| panic!("{df}"));
    assert_eq!(blocks, "8192", "{df}");
    e.ok(&["create", "--name", "ro", "--read-only", "--tmpfs", "/run", "busybox", "true"]);
    let host = e.json("ro")["HostConfig"].clone();
    assert_eq!(host["ReadonlyRootfs"], true);
    assert!(host["Tmpfs"].get("/run").is_some(), "{host}");
}

#[test]
fn capabilities_follow_cap_drop_cap_add_and_privileged() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let default = cap_eff(&e.ok(&["run", "--rm", "busybox", "cat", "/proc/self/status"]));
    assert_eq!(default, 0xa80425fb, "docker's default set");
    // CHOWN dropped: chown fails, as root.
    e.ok(&["run", "--rm", "busybox", "sh", "-c", "touch /f && chown 1000 /f"]);
    let (code, _, err) =
        e.run(&["run", "--rm", "--cap-drop", "CHOWN", "busybox", "sh", "-c", "touch /f && chown 1000 /f"]);
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    let dropped =
        cap_eff(&e.ok(&["run", "--rm", "--cap-drop", "chown", "busybox", "cat", "/proc/self/status"]));
    assert_eq!(dropped, default & !1);
    // NET_ADMIN added: the container may change its own interfaces.
    let (code, _, _) = e.run(&["run", "--rm", "busybox", "ip", "link", "set", "lo", "mtu", "1000"]);
    assert_ne!(code, 0);
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            "--cap-add",
            "NET_ADMIN",
            "busybox",
            "sh",
            "-c",
            "ip link set lo mtu 1000 && cat /sys/class/net/lo/mtu"
        ]),
        "1000\n"
    );
    // Privileged: every capability this host has, and mounts work.
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = host.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap().trim().to_string();
    let out = e.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "mkdir /m && mount -t tmpfs none /m && echo mounted; cat /proc/self/status",
    ]);
    assert!(out.starts_with("mounted\n"), "{out}");
    assert_eq!(cap_eff(&out), u64::from_str_radix(&bounding, 16).unwrap());
}

#[test]
fn init_runs_the_command_as_pid_2_and_forwards_stop_s_sigterm() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let ps = e.ok(&["run", "--rm", "--init", "busybox", "ps", "-o", "pid,comm"]);
    let rows: Vec<Vec<&str>> = ps.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows, [vec!["1", "rbuild-init"], vec!["2", "ps"]], "{ps}");
    // sleep has no SIGTERM handler: as PID 1 it would ignore it; behind init it dies of it.
    e.ok(&["run", "-d", "--name", "sleeper", "--init", "busybox", "sleep", "1000"]);
    wait_until("sleep to run", || e.ok(&["top", "sleeper"]).contains("sleep 1000"));
    e.ok(&["stop", "-t", "30", "sleeper"]);
    assert_eq!(e.inspect("sleeper", "{{.State.ExitCode}} {{.HostConfig.Init}}"), "143 true");
}

#[test]
fn add_host_and_dns_write_hosts_and_resolv_conf() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let out = e.ok(&[
        "run",
        "--name",
        "resolver",
        "--add-host",
        "db:10.1.2.3",
        "--add-host",
        "cache=10.1.2.4",
        "--dns",
        "10.0.0.53",
        "--dns-search",
        "example.test",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hosts; echo ---; cat /etc/resolv.conf",
    ]);
    let (hosts, resolv) = out.split_once("---\n").unwrap();
    assert!(hosts.lines().any(|l| l == "10.1.2.3\tdb"), "{hosts}");
    assert!(hosts.lines().any(|l| l == "10.1.2.4\tcache"), "{hosts}");
    let servers: Vec<&str> = resolv.lines().filter(|l| l.starts_with("nameserver")).collect();
    assert_eq!(servers, ["nameserver 10.0.0.53"], "{resolv}");
    assert!(resolv.lines().any(|l| l == "search example.test"), "{resolv}");
    let host = e.json("resolver")["HostConfig"].clone();
    assert_eq!(host["ExtraHosts"], serde_json::json!(["db:10.1.2.3", "cache:10.1.2.4"]));
    assert_eq!(host["Dns"], serde_json::json!(["10.0.0.53"]));
}

#[test]
fn bind_volume_and_tmpfs_mounts_from_v_and_mount() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("a"), "from host\n").unwrap();
    let dir = host.path().to_str().unwrap();
    // -v /host:/path both ways.
    let bind = format!("{dir}:/h");
    assert_eq!(
        e.ok(&["run", "--rm", "-v", &bind, "busybox", "sh", "-c", "cat /h/a; echo from container > /h/b"]),
        "from host\n"
    );
    assert_eq!(std::fs::read_to_string(host.path().join("b")).unwrap(), "from container\n");
    let ro = format!("{dir}:/h:ro");
    let (code, _, err) = e.run(&["run", "--rm", "-v", &ro, "busybox", "sh", "-c", "cat /h/a; echo x > /h/c"]);
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!host.path().join("c").exists());
    // --mount type=bind, readonly.
    let mount = format!("type=bind,source={dir},target=/h,readonly");
    let (code, out, err) =
        e.run(&["run", "--rm", "--mount", &mount, "busybox", "sh", "-c", "cat /h/a; echo x > /h/c"]);
    assert_ne!(code, 0);
    assert_eq!(out, "from host\n");
    assert!(err.contains("Read-only file system"), "{err}");
    // --mount type=volume: a named volume, kept for the next container.
    let vol = "type=volume,source=mvol,target=/mv";
    e.ok(&["run", "--rm", "--mount", vol, "busybox", "sh", "-c", "echo kept > /mv/f"]);
    assert_eq!(e.ok(&["run", "--rm", "--mount", vol, "busybox", "cat", "/mv/f"]), "kept\n");
    assert_eq!(e.volumes(), ["mvol"]);
    // --mount type=tmpfs with a size.
    let df =
        e.ok(&["run", "--rm", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "busybox", "df", "-k", "/t"]);
    assert_eq!(df.lines().nth(1).and_then(|l| l.split_whitespace().nth(1)), Some("1024"), "{df}");
    // All three in inspect's Mounts.
    e.ok(&["create", "--name", "mounted", "-v", &bind, "--mount", vol, "--tmpfs", "/run", "busybox", "true"]);
    let mounts = e.json("mounted")["Mounts"].clone();
    let mut seen: Vec<(String, String, String)> = mounts
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (s("Type"), s("Destination"), if s("Type") == "volume" { s("Name") } else { s("Source") })
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("bind".to_string(), "/h".to_string(), dir.to_string()),
            ("tmpfs".to_string(), "/run".to_string(), String::new()),
            ("volume".to_string(), "/mv".to_string(), "mvol".to_string()),
        ]
    );
}

/// An image with a seeded VOLUME, an EXPOSEd port and a STOPSIGNAL.
const APP: &str = "FROM busybox\nRUN mkdir /data && echo seed > /data/seed\nVOLUME /data\nEXPOSE 80\nSTOPSIGNAL SIGUSR1\nCMD [\"sh\"]\n";

/// The anonymous volume of `container` at `/data`.
fn data_volume(e: &Env, container: &str) -> String {
    let mounts = e.json(container)["Mounts"].clone();
    let m = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/data")
        .unwrap_or_else(|| panic!("{mounts}"));
    assert_eq!(m["Type"], "volume");
    m["Name"].as_str().unwrap().to_string()
}

#[test]
fn anonymous_volumes_go_with_rm_v_and_rm_but_not_plain_rm() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.build("app:1", APP);
    // The image's VOLUME: an anonymous volume that starts with the image's files.
    assert_eq!(e.ok(&["run", "--name", "kept", "app:1", "cat", "/data/seed"]), "seed\n");
    let kept = data_volume(&e, "kept");
    assert_eq!(kept.len(), 64, "{kept}");
    assert_eq!(e.volumes(), std::slice::from_ref(&kept));
    e.ok(&["rm", "kept"]);
    assert_eq!(e.volumes(), std::slice::from_ref(&kept), "plain rm keeps the volume");
    e.ok(&["run", "--name", "gone", "app:1", "true"]);
    let gone = data_volume(&e, "gone");
    assert_ne!(gone, kept);
    e.ok(&["rm", "-v", "gone"]);
    assert_eq!(e.volumes(), std::slice::from_ref(&kept), "rm -v removes only its own");
    e.ok(&["run", "--rm", "app:1", "sh", "-c", "echo x > /data/x"]);
    assert_eq!(e.volumes(), std::slice::from_ref(&kept), "--rm removes it");
    // -v /path makes one too; -v NAME:/data covers the image's VOLUME (no anonymous one).
    e.ok(&["run", "--name", "anon", "-v", "/scratch", "busybox", "true"]);
    assert_eq!(e.volumes().len(), 2);
    e.ok(&["rm", "-v", "anon"]);
    e.ok(&["run", "--rm", "-v", "named:/data", "app:1", "cat", "/data/seed"]);
    let mut vols = e.volumes();
    vols.sort();
    let mut want = vec![kept, "named".to_string()];
    want.sort();
    assert_eq!(vols, want);
}

#[test]
fn stop_signal_and_stop_timeout_from_flags_and_the_image() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.build("app:1", APP);
    let trap = |code: u8| format!("trap 'echo got usr1; exit {code}' USR1; echo ready; {LOOP}");
    e.ok(&["run", "-d", "--name", "flag", "--stop-signal", "USR1", "busybox", "sh", "-c", &trap(5)]);
    e.ok(&["run", "-d", "--name", "image", "app:1", "sh", "-c", &trap(6)]);
    e.wait_for_log("flag", "ready");
    e.wait_for_log("image", "ready");
    e.ok(&["stop", "flag", "image"]);
    assert_eq!(e.inspect("flag", "{{.State.ExitCode}} {{.Config.StopSignal}}"), "5 USR1");
    assert_eq!(e.inspect("image", "{{.State.ExitCode}} {{.Config.StopSignal}}"), "6 SIGUSR1");
    assert!(e.logs("image").contains("got usr1"));
    // A container that takes 3 s to clean up: killed after --stop-timeout 1, unless stop's -t
    // gives it more.
    let slow = format!("trap 'sleep 3; exit 0' TERM; echo ready; {LOOP}");
    e.ok(&["run", "-d", "--name", "slow", "--stop-timeout", "1", "busybox", "sh", "-c", &slow]);
    e.wait_for_log("slow", "ready");
    e.ok(&["stop", "slow"]);
    assert_eq!(e.inspect("slow", "{{.State.ExitCode}} {{.Config.StopTimeout}}"), "137 1");
    e.ok(&["start", "slow"]);
    wait_until("slow to run again", || e.logs("slow").matches("ready").count() == 2);
    e.ok(&["stop", "-t", "30", "slow"]);
    assert_eq!(e.inspect("slow", "{{.State.ExitCode}}"), "0");
}

#[test]
fn publish_all_serves_exposed_ports_on_free_host_ports() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.build("app:1", APP);
    e.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-P",
        "app:1",
        "sh",
        "-c",
        "mkdir -p /www && echo hello from P > /www/index.html && echo serving && exec httpd -f -p 80 -h /www",
    ]);
    e.wait_for_log("web", "serving");
    let port = e.ok(&["port", "web"]);
    let host_port: u16 = port
        .trim()
        .strip_prefix("80/tcp -> 0.0.0.0:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{port}"));
    assert_ne!(host_port, 0);
    assert_eq!(e.ok(&["port", "web", "80/tcp"]).trim(), format!("0.0.0.0:{host_port}"));
    assert_eq!(e.ps(&["--format", "{{.Ports}}"]), [format!("0.0.0.0:{host_port}->80/tcp")]);
    assert_eq!(e.inspect("web", "{{.HostConfig.PublishAllPorts}}"), "true");
    let mut page = None;
    wait_until("the published port to answer", || {
        page = test_support::try_http_get(host_port);
        page.as_deref().is_some_and(|b| b.contains("hello from P"))
    });
    let err = e.fails(&["port", "web", "81"]);
    assert!(err.contains("no public port '81'"), "{err}");
}

#[test]
fn restart_always_restarts_until_stopped() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&["run", "-d", "--name", "again", "--restart", "always", "busybox", "sh", "-c", "echo run; exit 0"]);
    // Each restart runs the command again (the count goes up when the restart is decided).
    wait_until("two restarts", || e.logs("again").matches("run\n").count() >= 3);
    assert!(e.inspect("again", "{{.RestartCount}}").parse::<u32>().unwrap() >= 2);
    assert_eq!(e.inspect("again", "{{.HostConfig.RestartPolicy.Name}}"), "always");
    e.ok(&["stop", "again"]);
    // `stop` returns once the monitor is gone: nothing is left to restart it.
    let count = e.inspect("again", "{{.RestartCount}}");
    assert_eq!(e.inspect("again", "{{.State.Status}}"), "exited");
    assert_eq!(e.ok(&["wait", "again"]).trim(), "0");
    assert_eq!(e.inspect("again", "{{.State.Status}} {{.RestartCount}}"), format!("exited {count}"));
    assert!(e.ps(&["-q"]).is_empty());
}

#[test]
fn limits_show_in_inspect_and_stats() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&[
        "run",
        "-d",
        "--name",
        "limited",
        "--cpus",
        "1.5",
        "--pids-limit",
        "50",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        LOOP,
    ]);
    let host = e.json("limited")["HostConfig"].clone();
    assert_eq!(host["NanoCpus"], 1_500_000_000u64);
    assert_eq!(host["PidsLimit"], 50);
    assert_eq!(host["Memory"], 64u64 << 20);
    let stats = e.ok(&["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", "limited"]);
    assert!(stats.trim().starts_with("limited ") && stats.trim().ends_with("/ 64MiB"), "{stats}");
}

#[test]
fn a_name_in_use_is_refused() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let id = e.ok(&["create", "--name", "dup", "busybox", "true"]);
    for cmd in ["create", "run"] {
        let err = e.fails(&[cmd, "--name", "dup", "busybox", "true"]);
        assert!(err.contains("\"/dup\" is already in use") && err.contains(id.trim()), "{err}");
    }
    assert_eq!(e.ps(&["-a", "-q", "--no-trunc"]), [id.trim()]);
}

#[test]
fn bad_flags_fail_with_one_line_and_leave_no_container() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let cases: &[(&[&str], &str)] = &[
        (&["-p", "99999:80"], "invalid port specification"),
        (&["-p", "abc"], "invalid port specification"),
        (&["-p", "80/sctp"], "unknown protocol"),
        (&["--restart", "sometimes"], "invalid restart policy"),
        (&["--restart", "on-failure:x"], "invalid restart policy"),
        (&["--memory", "12q"], "--memory"),
        (&["--cpus", "x"], "--cpus"),
        (&["--network", "nonet"], "network nonet not found"),
        (&["--network", "container:nope"], "no such container: nope"),
        (&["--stop-signal", "NOPE"], "invalid signal"),
        (&["--dns", "not-an-ip"], "--dns"),
        (&["--add-host", "nocolon"], "--add-host"),
        (&["--name", "we/b"], "invalid container name"),
    ];
    for (flags, message) in cases {
        for cmd in ["run", "create"] {
            let mut args = vec![cmd];
            args.extend_from_slice(flags);
            args.extend(["busybox", "true"]);
            let err = e.fails(&args);
            assert!(err.contains(message), "rbuild {args:?}: {err}");
        }
    }
    assert!(e.ps(&["-a", "-q"]).is_empty());
    assert!(e.volumes().is_empty());
}

// ---------------------------------------------------------------------------------------------
// lifecycle commands

#[test]
fn create_then_start_attached_and_start_of_a_running_container_is_a_no_op() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&["create", "--name", "later", "busybox", "sh", "-c", "echo out; echo err >&2; exit 4"]);
    let state = e.json("later")["State"].clone();
    assert_eq!(state["Status"], "created");
    assert_eq!(state["StartedAt"], "0001-01-01T00:00:00Z");
    assert!(e.logs("later").is_empty());
    for _ in 0..2 {
        let (code, out, err) = e.run(&["start", "-a", "later"]);
        assert_eq!((code, out.as_str(), err.as_str()), (4, "out\n", "err\n"));
        assert_eq!(e.inspect("later", "{{.State.Status}} {{.State.ExitCode}}"), "exited 4");
    }
    // A running container: start changes nothing.
    e.ok(&["run", "-d", "--name", "busy", "busybox", "sh", "-c", LOOP]);
    let before = e.inspect("busy", "{{.State.StartedAt}} {{.State.Pid}}");
    assert_eq!(e.ok(&["start", "busy"]), "busy\n");
    assert_eq!(e.inspect("busy", "{{.State.StartedAt}} {{.State.Pid}}"), before);
}

#[test]
fn restart_keeps_the_id_and_starts_anew() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let id = e.ok(&[
        "run",
        "-d",
        "--name",
        "rs",
        "busybox",
        "sh",
        "-c",
        &format!("trap 'exit 0' TERM; echo up; {LOOP}"),
    ]);
    e.wait_for_log("rs", "up");
    let before = e.json("rs");
    assert_eq!(e.ok(&["restart", "rs"]), "rs\n");
    let after = e.json("rs");
    assert_eq!(after["Id"], id.trim());
    assert_eq!(after["State"]["Status"], "running");
    assert_ne!(after["State"]["StartedAt"], before["State"]["StartedAt"]);
    assert_ne!(after["State"]["Pid"], before["State"]["Pid"]);
    e.wait_for_log("rs", "up\nup\n");
    // A stopped container: restart starts it.
    e.ok(&["stop", "rs"]);
    e.ok(&["container", "restart", "rs"]);
    assert_eq!(e.inspect("rs", "{{.State.Status}}"), "running");
}

#[test]
fn rename_frees_the_old_name() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&["run", "-d", "--name", "old", "busybox", "sh", "-c", LOOP]);
    e.ok(&["create", "--name", "other", "busybox", "true"]);
    e.ok(&["rename", "old", "new"]);
    assert_eq!(e.fails(&["container", "inspect", "old"]), "rbuild: error: no such container: old");
    assert_eq!(e.inspect("new", "{{.Name}}"), "/new");
    assert_eq!(e.ps(&["--format", "{{.Names}}"]), ["new"]);
    assert_eq!(e.ok(&["exec", "new", "echo", "still running"]), "still running\n");
    let err = e.fails(&["rename", "new", "other"]);
    assert!(err.contains("already in use"), "{err}");
    e.ok(&["create", "--name", "old", "busybox", "true"]);
    assert_eq!(e.ps(&["-a", "--format", "{{.Names}}"]), ["old", "other", "new"]);
}

#[test]
fn wait_returns_each_exit_code_once_they_stop() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let script = |code: u8| format!("while [ ! -e /tmp/go ]; do sleep 0.05; done; exit {code}");
    e.ok(&["run", "-d", "--name", "w1", "busybox", "sh", "-c", &script(3)]);
    e.ok(&["run", "-d", "--name", "w2", "busybox", "sh", "-c", &script(5)]);
    let mut waiting = spawn(&e, &["wait", "w1", "w2"]);
    e.ok(&["exec", "w2", "touch", "/tmp/go"]);
    e.ok(&["exec", "w1", "touch", "/tmp/go"]);
    assert_eq!(waiting.exit_code(), 0);
    assert_eq!(waiting.text(), "3\n5\n");
    // Already stopped: at once.
    assert_eq!(e.ok(&["container", "wait", "w2"]), "5\n");
}

#[test]
fn container_prune_removes_only_stopped_containers() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&["run", "--name", "exited", "busybox", "true"]);
    let exited = e.inspect("exited", "{{.Id}}");
    let created = e.ok(&["create", "--name", "created", "busybox", "true"]).trim().to_string();
    e.ok(&["run", "-d", "--name", "running", "busybox", "sh", "-c", LOOP]);
    e.ok(&["run", "-d", "--name", "paused", "busybox", "sh", "-c", LOOP]);
    e.ok(&["pause", "paused"]);
    let out = e.ok(&["container", "prune", "-f"]);
    let mut deleted: Vec<&str> = out.lines().skip(1).take_while(|l| !l.is_empty()).collect();
    deleted.sort();
    let mut want = vec![exited.as_str(), created.as_str()];
    want.sort();
    assert_eq!(deleted, want, "{out}");
    assert!(out.starts_with("Deleted Containers:\n") && out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(e.ps(&["-a", "--format", "{{.Names}}"]), ["paused", "running"]);
}

#[test]
fn system_prune_keeps_what_is_used_and_volumes_unless_asked() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&["network", "create", "unused"]);
    e.ok(&["network", "create", "used"]);
    e.ok(&["volume", "create", "named"]);
    e.ok(&["run", "--name", "stopped", "-v", "/anon", "busybox", "true"]);
    let anon = e.volumes().into_iter().find(|v| v != "named").unwrap();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "alive",
        "--network",
        "used",
        "-v",
        "inuse:/k",
        "busybox",
        "sh",
        "-c",
        LOOP,
    ]);
    let out = e.ok(&["system", "prune", "-f"]);
    assert!(out.contains("Deleted Containers:\n") && out.contains("Deleted Networks:\nunused\n"), "{out}");
    assert!(!out.contains("Deleted Volumes"), "{out}");
    assert_eq!(e.ps(&["-a", "--format", "{{.Names}}"]), ["alive"]);
    let networks = e.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(networks.lines().any(|n| n == "used") && !networks.lines().any(|n| n == "unused"), "{networks}");
    let mut vols = e.volumes();
    vols.sort();
    let mut all = vec![anon.clone(), "inuse".to_string(), "named".to_string()];
    all.sort();
    assert_eq!(vols, all, "volumes stay without --volumes");
    // --volumes: unused anonymous volumes only (docker 23+); named and used ones stay.
    let out = e.ok(&["system", "prune", "--volumes", "-f"]);
    assert!(out.contains(&format!("Deleted Volumes:\n{anon}\n")), "{out}");
    let mut vols = e.volumes();
    vols.sort();
    assert_eq!(vols, ["inuse", "named"]);
    assert!(e.ok(&["images", "--format", "{{.Repository}}"]).contains("busybox"));
    assert_eq!(e.inspect("alive", "{{.State.Status}}"), "running");
}

#[test]
fn ps_filters_formats_latest_and_the_container_aliases() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    assert_eq!(e.run(&["run", "--name", "done3", "busybox", "sh", "-c", "exit 3"]).0, 3);
    e.ok(&["run", "-d", "--name", "up1", "-l", "app=x", "busybox", "sh", "-c", LOOP]);
    e.ok(&["create", "--name", "fresh", "busybox", "true"]);
    assert_eq!(e.ps(&["--format", "{{.Names}}"]), ["up1"]);
    assert_eq!(e.ps(&["-a", "--format", "{{.Names}}"]), ["fresh", "up1", "done3"]);
    let exited = e.ps(&["--filter", "status=exited", "--format", "{{.Names}} {{.Status}}"]);
    assert!(exited.len() == 1 && exited[0].starts_with("done3 Exited (3) "), "{exited:?}");
    assert_eq!(e.ps(&["--filter", "status=created", "--format", "{{.Names}}"]), ["fresh"]);
    assert_eq!(e.ps(&["--filter", "status=running", "--format", "{{.Names}}"]), ["up1"]);
    assert_eq!(e.ps(&["-a", "--filter", "name=up", "--format", "{{.Names}}"]), ["up1"]);
    // A regular expression, as docker's.
    assert_eq!(e.ps(&["-a", "--filter", "name=^(done|fresh)", "--format", "{{.Names}}"]), ["fresh", "done3"]);
    assert_eq!(e.ps(&["-a", "--filter", "name=^/up1$", "--format", "{{.Names}}"]), ["up1"]);
    assert_eq!(
        e.ps(&["-a", "--filter", "label=app=x", "--filter", "status=running", "--format", "{{.Names}}"]),
        ["up1"]
    );
    assert_eq!(e.ps(&["-a", "--filter", "exited=3", "--format", "{{.Names}}"]), ["done3"]);
    // Docker reads `\t` in a format as a tab.
    let row = &e.ps(&["--format", "{{.Names}}\\t{{.Status}}"])[0];
    assert!(row.starts_with("up1\tUp "), "{row:?}");
    let table = e.ps(&["--format", "table {{.Names}}\\t{{.State}}"]);
    assert_eq!(table[0].split_whitespace().collect::<Vec<_>>(), ["NAMES", "STATE"]);
    assert_eq!(table[1].split_whitespace().collect::<Vec<_>>(), ["up1", "running"]);
    // -l: the latest created, whatever its state.
    let latest = e.ps(&["-l"]);
    assert_eq!(latest.len(), 2, "{latest:?}");
    assert!(latest[1].ends_with(" fresh") && latest[1].contains("Created"), "{latest:?}");
    let err = e.fails(&["ps", "--filter", "status=sleeping"]);
    assert!(err.contains("status=sleeping"), "{err}");
    // `container` spellings.
    for ls in ["ls", "list", "ps"] {
        assert_eq!(
            e.ok(&["container", ls, "-a", "--format", "{{.Names}}"]).lines().collect::<Vec<_>>(),
            ["fresh", "up1", "done3"]
        );
    }
    assert_eq!(e.ok(&["container", "inspect", "--format", "{{.State.ExitCode}}", "done3"]), "3\n");
    assert_eq!(e.ok(&["container", "rm", "done3", "fresh"]), "done3\nfresh\n");
    assert_eq!(e.ok(&["container", "rm", "-f", "up1"]), "up1\n");
    assert!(e.ps(&["-a", "-q"]).is_empty());
}

#[test]
fn inspect_shows_docker_s_fields() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&["network", "create", "appnet"]);
    e.ok(&[
        "run",
        "-d",
        "--name",
        "insp",
        "--network",
        "appnet",
        "-e",
        "FOO=bar",
        "-l",
        "k=v",
        "-w",
        "/tmp",
        "-m",
        "64m",
        "--restart",
        "on-failure:2",
        "-v",
        "data:/data",
        "-p",
        "127.0.0.1::80",
        "busybox",
        "sh",
        "-c",
        LOOP,
    ]);
    let j = e.json("insp");
    let id = j["Id"].as_str().unwrap();
    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(j["Name"], "/insp");
    let st = &j["State"];
    assert_eq!(
        (st["Status"].as_str(), st["Running"].as_bool(), st["Paused"].as_bool()),
        (Some("running"), Some(true), Some(false))
    );
    assert_eq!((st["ExitCode"].as_i64(), st["OOMKilled"].as_bool()), (Some(0), Some(false)));
    let pid = st["Pid"].as_i64().unwrap();
    assert!(pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(st["StartedAt"].as_str().unwrap().starts_with("20"), "{st}");
    assert_eq!(st["FinishedAt"], "0001-01-01T00:00:00Z");
    let cfg = &j["Config"];
    let env: Vec<&str> = cfg["Env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(env.contains(&"FOO=bar") && env.iter().any(|v| v.starts_with("PATH=")), "{env:?}");
    assert_eq!(cfg["Cmd"], serde_json::json!(["sh", "-c", LOOP]));
    assert_eq!(cfg["Image"], "busybox");
    assert_eq!(cfg["WorkingDir"], "/tmp");
    assert_eq!(cfg["Labels"]["k"], "v");
    assert_eq!(cfg["Hostname"], &id[..12]);
    let host = &j["HostConfig"];
    assert_eq!(host["Memory"], 64u64 << 20);
    assert_eq!(host["NetworkMode"], "appnet");
    assert_eq!(host["RestartPolicy"], serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 2}));
    assert_eq!(host["PortBindings"]["80/tcp"][0]["HostIp"], "127.0.0.1");
    let m = &j["Mounts"][0];
    assert_eq!(
        (m["Type"].as_str(), m["Name"].as_str(), m["Destination"].as_str(), m["RW"].as_bool()),
        (Some("volume"), Some("data"), Some("/data"), Some(true))
    );
    assert!(std::path::Path::new(m["Source"].as_str().unwrap()).is_dir());
    let ip = j["NetworkSettings"]["Networks"]["appnet"]["IPAddress"].as_str().unwrap().to_string();
    let ip: std::net::Ipv4Addr = ip.parse().unwrap_or_else(|_| panic!("{ip:?}"));
    let inside = e.ok(&["exec", "insp", "ip", "-4", "addr", "show", "eth0"]);
    assert!(inside.contains(&format!("inet {ip}/")), "{inside}");
    let bound = &j["NetworkSettings"]["Ports"]["80/tcp"][0];
    assert_eq!(bound["HostIp"], "127.0.0.1");
    assert_ne!(bound["HostPort"], "0");
    assert_eq!(e.inspect("insp", "{{.NetworkSettings.Networks.appnet.IPAddress}}"), ip.to_string());
    // After a kill.
    e.ok(&["kill", "insp"]);
    e.ok(&["wait", "insp"]);
    let st = e.json("insp")["State"].clone();
    assert_eq!(
        (st["Status"].as_str(), st["Running"].as_bool(), st["Pid"].as_i64(), st["ExitCode"].as_i64()),
        (Some("exited"), Some(false), Some(0), Some(137))
    );
    assert_ne!(st["FinishedAt"], "0001-01-01T00:00:00Z");
    assert_eq!(e.inspect("insp", "{{.NetworkSettings.Networks.appnet.IPAddress}}"), "");
}

#[test]
fn stats_top_and_kill_with_a_signal() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let hup = format!("trap 'echo got hup' HUP; echo ready; {LOOP}");
    e.ok(&["run", "-d", "--name", "s1", "busybox", "sh", "-c", &hup]);
    e.ok(&["run", "-d", "--name", "s2", "busybox", "sleep", "1000"]);
    e.ok(&["run", "--name", "s3", "busybox", "true"]);
    e.wait_for_log("s1", "ready");
    let names = |out: &str| -> Vec<String> {
        let mut n: Vec<String> =
            out.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)).map(str::to_string).collect();
        n.sort();
        n
    };
    let all = e.ok(&["stats", "--no-stream"]);
    assert!(all.starts_with("CONTAINER ID"), "{all}");
    assert_eq!(names(&all), ["s1", "s2"], "running ones only:\n{all}");
    assert_eq!(names(&e.ok(&["stats", "--no-stream", "s2", "s1"])), ["s1", "s2"]);
    assert_eq!(names(&e.ok(&["stats", "--no-stream", "-a"])), ["s1", "s2", "s3"]);
    let top = e.ok(&["top", "s2"]);
    let header: Vec<&str> = top.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]);
    let pid = e.inspect("s2", "{{.State.Pid}}");
    assert!(
        top.lines().any(|l| l.split_whitespace().nth(1) == Some(pid.as_str()) && l.ends_with("sleep 1000")),
        "{top}"
    );
    e.ok(&["kill", "-s", "HUP", "s1"]);
    e.wait_for_log("s1", "got hup");
    assert_eq!(e.inspect("s1", "{{.State.Status}}"), "running");
    e.ok(&["kill", "--signal", "SIGTERM", "s2"]);
    assert_eq!(e.inspect("s2", "{{.State.Status}}"), "running", "PID 1 without a handler ignores SIGTERM");
    assert_eq!(e.ok(&["kill", "s2"]), "s2\n");
    assert_eq!(e.ok(&["wait", "s2"]), "137\n");
    let err = e.fails(&["kill", "s3"]);
    assert!(err.contains("not running"), "{err}");
    let err = e.fails(&["top", "s3"]);
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn every_command_says_no_such_container() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let commands: &[&[&str]] = &[
        &["start", "nope"],
        &["start", "-a", "nope"],
        &["stop", "nope"],
        &["restart", "nope"],
        &["kill", "nope"],
        &["pause", "nope"],
        &["unpause", "nope"],
        &["rm", "nope"],
        &["wait", "nope"],
        &["logs", "nope"],
        &["top", "nope"],
        &["stats", "--no-stream", "nope"],
        &["port", "nope"],
        &["rename", "nope", "other"],
        &["attach", "nope"],
        &["exec", "nope", "true"],
        &["container", "inspect", "nope"],
        &["cp", "nope:/etc/hosts", "/tmp/"],
        &["diff", "nope"],
        &["commit", "nope", "img:x"],
    ];
    for args in commands {
        assert_eq!(e.fails(args), "rbuild: error: no such container: nope", "rbuild {args:?}");
    }
    // `inspect` looks for images too: docker's wording.
    assert_eq!(e.fails(&["inspect", "nope"]), "rbuild: error: No such object: nope");
}

// ---------------------------------------------------------------------------------------------
// terminals and signals

#[test]
fn run_t_gives_a_pty_of_the_terminal_s_size_and_follows_resizes() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let pty = Pty::new(40, 100);
    let script = "stty size; tty; trap 'stty size' WINCH; echo ready; \
                  while [ ! -e /tmp/stop ]; do sleep 0.05; done; echo bye";
    let (mut p, master) =
        pty.spawn(&e, &["run", "-t", "--rm", "--name", "term", "busybox", "sh", "-c", script]);
    p.wait_for("ready");
    let text = p.text();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "40 100", "{text:?}");
    assert!(lines[1].starts_with("/dev/"), "stdin is a terminal: {text:?}");
    assert_eq!(e.inspect("term", "{{.Config.Tty}}"), "true");
    // The terminal is resized: the kernel sends rbuild SIGWINCH, rbuild resizes the
    // container's pty, whose kernel sends the container's shell SIGWINCH.
    set_window(&master, 50, 120);
    p.wait_for("50 120\r\n");
    e.ok(&["exec", "term", "touch", "/tmp/stop"]);
    assert_eq!(p.exit_code(), 0);
    assert!(p.text().ends_with("bye\r\n"), "{:?}", p.text());
    assert!(e.ps(&["-a", "-q"]).is_empty());
}

#[test]
fn run_it_takes_typed_input_and_ctrl_c_interrupts() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let (mut p, mut master) = Pty::new(24, 80)
        .spawn(&e, &["run", "-it", "--rm", "busybox", "sh", "-c", "echo ready; read x; echo got $x"]);
    p.wait_for("ready");
    master.write_all(b"hello\r").unwrap();
    assert_eq!(p.exit_code(), 0, "{:?}", p.text());
    // Echoed by the container's terminal, then the shell's answer.
    assert!(p.text().ends_with("hello\r\ngot hello\r\n"), "{:?}", p.text());

    let (mut p, mut master) = Pty::new(24, 80)
        .spawn(&e, &["run", "-it", "--rm", "busybox", "sh", "-c", "echo ready; sleep 100; echo after"]);
    p.wait_for("ready");
    // Until sleep runs, a Ctrl-C reaches only the shell, PID 1, which the kernel shields from
    // it: typed again until it lands, as a user would.
    wait_until("Ctrl-C to end the container", || {
        if p.exited() {
            return true;
        }
        // Fails only once the container's end closed the terminal.
        let _ = master.write_all(&[0x03]);
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    assert_eq!(p.exit_code(), 130, "{:?}", p.text());
    assert!(!p.text().contains("after"), "{:?}", p.text());
    assert!(e.ps(&["-a", "-q"]).is_empty());
}

#[test]
fn signals_to_a_foreground_run_reach_the_container() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let script =
        format!("trap 'echo got int; exit 3' INT; trap 'echo got term; exit 4' TERM; echo ready; {LOOP}");
    for (sig, answer, code, ignored) in [
        (Signal::SIGINT, "got int", 3, false),
        (Signal::SIGTERM, "got term", 4, false),
        // A shell's background job (`rbuild run ... &`) starts with SIGINT ignored.
        (Signal::SIGINT, "got int", 3, true),
    ] {
        let mut cmd = e.s.cmd();
        cmd.args(["run", "--rm", "busybox", "sh", "-c", &script]).stdin(Stdio::null());
        if ignored {
            // SAFETY: signal() is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::signal(libc::SIGINT, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        let mut p = Proc::start(cmd);
        p.wait_for("ready");
        nix::sys::signal::kill(p.pid(), sig).unwrap();
        assert_eq!(p.exit_code(), code, "{sig} (ignored: {ignored}): {}", p.text());
        assert!(p.text().contains(answer), "{}", p.text());
    }
    assert!(e.ps(&["-a", "-q"]).is_empty());
}

#[test]
fn two_attached_clients_see_the_same_new_output() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let script = "trap 'exit 7' TERM; echo before; \
                  while true; do if [ -e /tmp/msg ]; then cat /tmp/msg; rm /tmp/msg; fi; sleep 0.05; done; exit 0";
    e.ok(&["run", "-d", "--name", "talk", "busybox", "sh", "-c", script]);
    e.wait_for_log("talk", "before");
    let mut a = spawn(&e, &["attach", "talk"]);
    let mut b = spawn(&e, &["attach", "--no-stdin", "talk"]);
    // Attached once each sees a ping (there is no "attached" message to wait for).
    wait_until("both clients to attach", || {
        if a.text().contains("ping") && b.text().contains("ping") {
            return true;
        }
        e.ok(&["exec", "talk", "sh", "-c", "[ -e /tmp/msg ] || echo ping > /tmp/msg"]);
        false
    });
    e.ok(&["exec", "talk", "sh", "-c", "echo the news > /tmp/msg"]);
    a.wait_for("the news\n");
    b.wait_for("the news\n");
    for p in [&a, &b] {
        let t = p.text();
        assert!(!t.contains("before"), "attach shows new output only: {t:?}");
        assert!(t.lines().all(|l| l == "ping" || l == "the news"), "{t:?}");
    }
    // Both end with the container, with its exit code.
    e.ok(&["stop", "talk"]);
    assert_eq!(a.exit_code(), 7, "{}", a.text());
    assert_eq!(b.exit_code(), 7, "{}", b.text());
    let err = e.fails(&["attach", "talk"]);
    assert!(err.contains("stopped container"), "{err}");
}

#[test]
fn exec_it_gets_a_pty_and_exec_d_keeps_running() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&["run", "-d", "--name", "box", "busybox", "sh", "-c", &format!("echo ready; {LOOP}")]);
    e.wait_for_log("box", "ready");
    let (mut p, mut master) = Pty::new(40, 100)
        .spawn(&e, &["exec", "-it", "box", "sh", "-c", "stty size; echo ready; read x; echo got $x"]);
    p.wait_for("ready");
    assert!(p.text().starts_with("40 100\r\n"), "{:?}", p.text());
    master.write_all(b"typed\r").unwrap();
    assert_eq!(p.exit_code(), 0, "{:?}", p.text());
    assert!(p.text().ends_with("got typed\r\n"), "{:?}", p.text());
    // exec -d returns at once; the process lives on in the container.
    assert_eq!(e.ok(&["exec", "-d", "box", "sleep", "4321"]), "");
    wait_until("the detached process in top", || e.ok(&["top", "box"]).contains("sleep 4321"));
    assert!(e.ok(&["exec", "box", "ps", "-o", "comm,args"]).contains("sleep 4321"));
}

#[test]
fn container_processes_get_only_their_stdio() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    // A descriptor rbuild's caller left inheritable, as shells and CI runners do.
    let stray = File::open("/etc/hostname").unwrap();
    let stray_fd = stray.as_fd().as_raw_fd();
    let with_stray = |args: &[&str]| -> String {
        let mut cmd = e.s.cmd();
        cmd.args(args);
        // SAFETY: dup2 is async-signal-safe; 7 is free in a freshly forked child.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(stray_fd, 7) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // ls looks at its shell's descriptors (a pipeline would add the shell's pipe ends).
    let fds = "ls -1 /proc/$$/fd; exit 0";
    let listed = |out: String| out.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(listed(with_stray(&["run", "--rm", "busybox", "sh", "-c", fds])), ["0", "1", "2"]);
    e.ok(&["run", "-d", "--name", "box", "busybox", "sh", "-c", LOOP]);
    assert_eq!(listed(with_stray(&["exec", "box", "sh", "-c", fds])), ["0", "1", "2"]);
    with_stray(&["exec", "-d", "box", "sleep", "4321"]);
    let of_sleep = "for p in /proc/[0-9]*; do \
                    [ \"$(tr '\\0' ' ' < $p/cmdline)\" = 'sleep 4321 ' ] && ls -1 $p/fd; done; exit 0";
    let mut detached = Vec::new();
    wait_until("the detached exec to run", || {
        detached = listed(e.ok(&["exec", "box", "sh", "-c", of_sleep]));
        !detached.is_empty()
    });
    assert_eq!(detached, ["0", "1", "2"]);
    // With a pty: neither its master nor a second copy of its slave.
    let (mut p, _master) = Pty::new(24, 80).spawn(&e, &["run", "-t", "--rm", "busybox", "sh", "-c", fds]);
    assert_eq!(p.exit_code(), 0);
    assert_eq!(listed(p.text()), ["0", "1", "2"]);
    let (mut p, _master) = Pty::new(24, 80).spawn(&e, &["exec", "-t", "box", "sh", "-c", fds]);
    assert_eq!(p.exit_code(), 0);
    assert_eq!(listed(p.text()), ["0", "1", "2"]);
    drop(stray);
}
