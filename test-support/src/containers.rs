//! `Env`: a store with busybox for container tests, driven through the `rbuild` binary, with
//! the helpers those tests share. `TestStore`'s drop removes every container and network
//! bridge the store made, even when a test failed half-way.

use std::time::{Duration, Instant};

use crate::TestStore;

/// Polls `cond` until it holds; panics with `what` after 30 s (waits are bounded, never fixed
/// sleeps standing in for an assertion).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Env {
    pub s: TestStore,
}

impl Env {
    /// A new store with `busybox:latest`; `bin` is `env!("CARGO_BIN_EXE_rbuild")`.
    pub fn new(bin: &str) -> Env {
        let s = TestStore::new(bin);
        s.import_busybox();
        Env { s }
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.s.ok(args)
    }

    /// Runs and returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.s.run(args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs a command that must fail with exactly one `rbuild: error:` line: returned.
    pub fn fails(&self, args: &[&str]) -> String {
        let (code, _, err) = self.run(args);
        assert_ne!(code, 0, "rbuild {args:?} should fail:\n{err}");
        assert_eq!(err.lines().count(), 1, "rbuild {args:?}: one error line:\n{err}");
        assert!(err.starts_with("rbuild: error: "), "rbuild {args:?}:\n{err}");
        err.trim_end().to_string()
    }

    /// `inspect --format FORMAT NAME`, trimmed.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, name]).trim().to_string()
    }

    /// The container's whole `inspect` object.
    pub fn json(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", name]);
        let mut all: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        all[0].take()
    }

    pub fn logs(&self, name: &str) -> String {
        self.ok(&["logs", name])
    }

    pub fn wait_until(&self, what: &str, cond: impl FnMut() -> bool) {
        wait_until(what, cond)
    }

    pub fn wait_for_log(&self, name: &str, text: &str) {
        wait_until(&format!("{text:?} in the logs of {name}"), || self.logs(name).contains(text));
    }

    /// `ps` with a format, one line per container.
    pub fn ps(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec!["ps"];
        all.extend_from_slice(args);
        self.ok(&all).lines().map(str::to_string).collect()
    }

    pub fn volumes(&self) -> Vec<String> {
        self.ok(&["volume", "ls", "-q"]).lines().map(str::to_string).collect()
    }

    /// Builds `dockerfile` (on busybox) as `tag`.
    pub fn build(&self, tag: &str, dockerfile: &str) {
        let ctx = crate::context(&[("Dockerfile", dockerfile)]);
        self.ok(&["build", "-q", "-t", tag, ctx.path().to_str().expect("utf-8 temp path")]);
    }
}
