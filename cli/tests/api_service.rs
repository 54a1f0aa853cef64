//! The service's edges, judged by the unchanged docker CLI 20.10: systemd's socket activation
//! (the socket made by `systemd-socket-activate`, the service started on the first connection
//! and gone after its idle time), image and exec events in `docker events`, and requests that
//! must be refused cleanly (not JSON, a bad id, a huge body, a client that goes away).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_support::containers::Env;
use test_support::dockerapi::{docker_bin, triple};

const BIN: &str = env!("CARGO_BIN_EXE_rbuild");

/// A child killed by PID when dropped (the test fails before it ends by itself).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The docker CLI at `host`: (exit code, stdout, stderr).
fn docker_at(host: &str, args: &[&str]) -> (i32, String, String) {
    let config = tempfile::tempdir().expect("a temporary directory");
    triple(
        Command::new(docker_bin())
            .env("DOCKER_HOST", host)
            .env("DOCKER_CONFIG", config.path())
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CONTEXT")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker runs"),
    )
}

#[test]
fn a_socket_activated_service_answers_the_docker_cli_and_ends_when_idle() {
    let e = Env::new(BIN);
    let socket = e.s.path().join("activated.sock");
    // What a `.socket` unit does: the socket exists before the service, which starts on the
    // first connection and gets it as descriptor 3 (LISTEN_FDS=1, LISTEN_PID its own).
    let mut child = Guard(
        Command::new("/usr/bin/systemd-socket-activate")
            .arg("-l")
            .arg(&socket)
            .arg("-E")
            .arg(format!("RBUILD_CONFIG={}", e.s.config.display()))
            .arg(BIN)
            .arg("--root")
            .arg(e.s.path())
            .args(["system", "service", "--time", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("systemd-socket-activate starts (apt-get install systemd)"),
    );
    test_support::containers::wait_until("the activation socket", || socket.exists());
    let host = format!("unix://{}", socket.display());
    let (code, out, err) = docker_at(&host, &["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!((code, out.trim()), (0, "1.43"), "{err}");
    let pid = child.0.id();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the activated process");
    assert_eq!(exe, Path::new(BIN), "systemd-socket-activate execs rbuild in its place");

    let (code, out, err) =
        docker_at(&host, &["run", "--rm", "--network", "none", "busybox", "echo", "through activation"]);
    assert_eq!((code, out.as_str()), (0, "through activation\n"), "{err}");
    let (code, out, _) = docker_at(&host, &["images", "--format", "{{.Repository}}"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l == "busybox"), "{out}");

    // Idle for its --time: it ends, with success, and leaves the socket (systemd's) in place.
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for the service") {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the service outlived its idle time");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    assert!(socket.exists(), "an activated service does not remove the socket it was given");
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "", "run --rm left nothing");
}

#[test]
fn a_listen_pid_of_another_process_is_not_taken() {
    let e = Env::new(BIN);
    let socket = e.s.path().join("mine.sock");
    // LISTEN_PID names someone else: the service listens where it is told, as without it.
    let _service = Guard(
        e.s.cmd()
            .env("LISTEN_FDS", "1")
            .env("LISTEN_PID", "1")
            .args(["system", "service", "--time", "0", &format!("unix://{}", socket.display())])
            .stdin(Stdio::null())
            .spawn()
            .expect("rbuild system service starts"),
    );
    test_support::containers::wait_until("the API socket", || socket.exists());
    let (code, out, err) =
        docker_at(&format!("unix://{}", socket.display()), &["version", "--format", "{{.Server.Os}}"]);
    assert_eq!((code, out.trim()), (0, "linux"), "{err}");
}
