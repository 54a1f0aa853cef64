//! A throwaway OCI registry for tests: Debian's `docker-registry` (CNCF distribution) serving on
//! `127.0.0.1:<free port>` with its storage in a temp dir, optionally behind htpasswd basic
//! auth. It is killed by PID when the handle is dropped.
//!
//! CI installs the package (`scripts/test.sh`); without it, starting one panics with a message
//! that says how to install it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `docker-registry` package puts its binary.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running registry on 127.0.0.1, stopped (SIGKILL to its PID) on drop.
pub struct TestRegistry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// A registry that accepts anyone.
    pub fn start() -> TestRegistry {
        TestRegistry::launch(None)
    }

    /// A registry that requires basic auth as `user`/`password` (a bcrypt htpasswd file made
    /// with `htpasswd -B` from apache2-utils).
    pub fn start_with_htpasswd(user: &str, password: &str) -> TestRegistry {
        TestRegistry::launch(Some((user, password)))
    }

    fn launch(auth: Option<(&str, &str)>) -> TestRegistry {
        assert!(
            Path::new(REGISTRY_BIN).is_file(),
            "{REGISTRY_BIN} not found: install Debian's docker-registry package \
             (apt-get install docker-registry apache2-utils; scripts/test.sh does)"
        );
        let dir = tempfile::Builder::new().prefix("rbuild-registry-").tempdir().expect("registry temp dir");
        let htpasswd = auth.map(|(user, password)| {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd runs: install apache2-utils (scripts/test.sh does)");
            assert!(out.status.success(), "htpasswd -B failed: {}", String::from_utf8_lossy(&out.stderr));
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, &out.stdout).expect("write htpasswd");
            path
        });
        // The port is found by binding :0 and released before the registry binds it; another
        // process may take it meanwhile, so a registry that fails to start is tried again.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port on 127.0.0.1")
                .port();
            let config = dir.path().join("config.yml");
            std::fs::write(&config, config_yaml(&dir.path().join("storage"), port, htpasswd.as_deref()))
                .expect("write registry config");
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).expect("registry log file");
            let mut cmd = Command::new(REGISTRY_BIN);
            cmd.arg("serve").arg(&config).stdin(Stdio::null()).stdout(log.try_clone().expect("log fd"));
            cmd.stderr(log);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            let mut child = cmd.spawn().expect("start docker-registry");
            if wait_ready(&mut child, port, Duration::from_secs(15)) {
                return TestRegistry { child, port, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("docker-registry did not start on 127.0.0.1; its log:\n{last_log}");
    }

    /// `127.0.0.1:PORT`, the registry part of image references pushed to it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Pushes Debian's busybox (imported into a throwaway store of the `rbuild` binary `bin`)
    /// as `bb:1` and returns its reference here, so every store of a test builds on one digest.
    pub fn push_busybox(&self, bin: &str) -> String {
        let s = crate::TestStore::new(bin);
        s.import_busybox();
        let reference = format!("{}/bb:1", self.host());
        s.ok(&["push", "busybox:latest", &reference]);
        reference
    }

    /// The PID of the registry process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The registry's storage root (`rootdirectory` of its filesystem driver).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file in which the registry keeps blob `digest` (`sha256:<hex>`), for tests that
    /// tamper with it.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage().join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// What the registry logged so far: warnings and one access-log line per request
    /// (`"GET /v2/... HTTP/1.1" 200`), for failure messages and for counting requests.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to exactly this child's PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `GET /v2/` until the registry answers (200 or 401), `limit` passes or it exits.
fn wait_ready(child: &mut Child, port: u16, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Some(status) = http_status(port, "/v2/")
            && (status == 200 || status == 401)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn config_yaml(storage: &Path, port: u16, htpasswd: Option<&Path>) -> String {
    let mut y = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: rbuild-test-registry\n",
        storage.display()
    );
    if let Some(p) = htpasswd {
        y.push_str(&format!("auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n", p.display()));
    }
    y
}

/// The status code of `GET path` on 127.0.0.1:`port`, or None if nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}
