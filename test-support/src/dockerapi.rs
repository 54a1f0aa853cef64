//! `rbuild system service` on a socket in a test store, and the unchanged clients that judge
//! it: Debian's docker CLI (`/usr/bin/docker`, docker.io), docker-compose and docker-py
//! (`/usr/bin/python3`, python3-docker). scripts/test.sh installs them; no dockerd is started.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::containers::Env;

/// The service on a socket in the store's directory, killed by PID when dropped.
pub struct Service {
    child: Child,
    pub socket: PathBuf,
    /// The clients' `DOCKER_CONFIG` (auth, no user's settings).
    pub config: tempfile::TempDir,
}

impl Service {
    pub fn start(e: &Env) -> Service {
        let socket = e.s.path().join("docker.sock");
        let child =
            e.s.cmd()
                .args(["system", "service", "--time", "0", &format!("unix://{}", socket.display())])
                .stdin(Stdio::null())
                .spawn()
                .expect("rbuild system service starts");
        crate::containers::wait_until("the API socket", || socket.exists());
        let config = tempfile::tempdir().expect("a temporary directory");
        Service { child, socket, config }
    }

    /// The service's PID (for its RSS and open descriptors).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `unix:///.../docker.sock`, what `DOCKER_HOST` is set to.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A command with the clients' environment: `DOCKER_HOST` at the socket, a config of its
    /// own, and Debian's python packages before any other (a pip-installed docker-py must not
    /// shadow the one docker-compose was packaged with).
    pub fn client(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.config.path())
            .env("PYTHONPATH", "/usr/lib/python3/dist-packages")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CONTEXT");
        c
    }

    /// The docker CLI against the socket: (exit code, stdout, stderr).
    pub fn docker(&self, args: &[&str]) -> (i32, String, String) {
        triple(self.client(docker_bin()).args(args).stdin(Stdio::null()).output().expect("docker runs"))
    }

    /// `docker args`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.docker(args);
        assert_eq!(code, 0, "docker {args:?}:\n{out}{err}");
        out
    }
}

/// (exit code, stdout, stderr) of a finished command.
pub fn triple(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `events --since S --until U [--filter F]... [--format T]`: the docker CLI's and rbuild's
/// arguments alike.
pub fn events_args<'a>(
    since: &'a str,
    until: &'a str,
    filters: &[&'a str],
    format: Option<&'a str>,
) -> Vec<&'a str> {
    let mut args = vec!["events", "--since", since, "--until", until];
    for f in filters {
        args.extend(["--filter", f]);
    }
    if let Some(format) = format {
        args.extend(["--format", format]);
    }
    args
}

/// Runs a client's test script (docker-py, testcontainers) that prints `ok STEP` after each
/// step it checked. Whatever containers and networks it left (it failed half-way) are removed
/// first, then its exit status and each of `steps` are checked. The ids of the containers it
/// had left are returned (a script that passed should leave none).
pub fn run_step_script(e: &Env, mut script: Command, what: &str, steps: &[&str]) -> String {
    let out = script.stdin(Stdio::null()).output();
    let (code, out, err) = triple(out.unwrap_or_else(|err| panic!("{what} runs: {err}")));
    let left = e.ok(&["ps", "-a", "-q"]);
    for id in left.lines() {
        e.ok(&["rm", "-f", id]);
    }
    e.ok(&["network", "prune", "-f"]);
    assert_eq!(code, 0, "{what} script failed:\n{out}{err}");
    for step in steps {
        assert!(out.contains(&format!("ok {step}")), "step {step} did not pass:\n{out}{err}");
    }
    left
}

/// `shell_command` on a pseudo-terminal that util-linux `script` makes: (exit code, stdout, stderr).
/// Its stdin is a pipe held open until the command ends: at a closed stdin `script` echoes `^@`
/// on the terminal, wherever the output has got to.
pub fn on_a_terminal(mut script: Command, shell_command: &str) -> (i32, String, String) {
    let mut child = script
        .args(["-qec", shell_command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script runs (util-linux)");
    let held_stdin = child.stdin.take();
    let out = child.wait_with_output().expect("script ends");
    drop(held_stdin);
    triple(out)
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's docker.io CLI (scripts/test.sh installs it).
pub fn docker_bin() -> &'static Path {
    let p = Path::new("/usr/bin/docker");
    assert!(p.exists(), "/usr/bin/docker not found: apt-get install docker.io (scripts/test.sh does)");
    p
}
