//! Healthchecks, as docker runs them: the image's `HEALTHCHECK` (or `--health-*` flags over
//! it) probed by the container's monitor, the result in `state.json` as docker's
//! `State.Health` (`starting`, `healthy`, `unhealthy`, the failing streak, the last five
//! probes), which `inspect`, `ps` and `ps --filter health=` show and compose's
//! `condition: service_healthy` and testcontainers' wait strategies read.
//!
//! Docker's rules: a probe is an exec of the test in the container (`CMD-SHELL x` runs
//! `/bin/sh -c x`); exit 0 is healthy, anything else a failure, a probe over its timeout is
//! killed and fails with exit code -1. `retries` failures in a row make it `unhealthy`; during
//! the start period failures do not count (and probes come every `start_interval`) until the
//! first success. Output is kept up to 4096 bytes per probe. A paused container is not probed.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::container::{ContainerId, Containers, Status, now_rfc3339};
use crate::exec::{self, ExecRequest, ExecStdio};

/// Docker's defaults for a duration left at 0.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRIES: u32 = 3;
/// Probes kept in `State.Health.Log`, and the output kept of each (docker's).
const LOG_ENTRIES: usize = 5;
const MAX_OUTPUT: usize = 4096;

/// Docker's `HealthConfig` (image config `Healthcheck`, `docker run --health-*`): durations
/// in nanoseconds, 0 meaning "inherit" (flags over the image) or the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `[]` inherit, `["NONE"]` disabled, `["CMD", args...]`, `["CMD-SHELL", command]`.
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: u64,
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub start_period: u64,
    #[serde(default)]
    pub start_interval: u64,
    #[serde(default)]
    pub retries: u32,
}

impl HealthConfig {
    /// The image config's `Healthcheck` value, if it parses.
    pub fn from_image(value: Option<&serde_json::Value>) -> Option<HealthConfig> {
        value.and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// `self` (what the user asked) over `image`: docker's merge, field by field, a zero or
    /// empty field taking the image's.
    pub fn over(mut self, image: Option<&HealthConfig>) -> HealthConfig {
        if let Some(i) = image {
            if self.test.is_empty() {
                self.test = i.test.clone();
            }
            let pick = |mine: &mut u64, theirs: u64| {
                if *mine == 0 {
                    *mine = theirs;
                }
            };
            pick(&mut self.interval, i.interval);
            pick(&mut self.timeout, i.timeout);
            pick(&mut self.start_period, i.start_period);
            pick(&mut self.start_interval, i.start_interval);
            if self.retries == 0 {
                self.retries = i.retries;
            }
        }
        self
    }

    /// Whether there is a test to run (not empty, not `NONE`).
    pub fn is_active(&self) -> bool {
        matches!(self.test.first().map(String::as_str), Some("CMD" | "CMD-SHELL")) && self.test.len() > 1
    }

    /// The argv of a probe.
    fn argv(&self) -> Vec<String> {
        match self.test.first().map(String::as_str) {
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), self.test[1..].join(" ")],
            _ => self.test[1..].to_vec(),
        }
    }

    fn duration(ns: u64, default: Duration) -> Duration {
        if ns == 0 { default } else { Duration::from_nanos(ns) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    #[default]
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// One probe, as docker's `HealthcheckResult`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

/// Docker's `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: u32,
    pub log: Vec<Probe>,
}

impl Health {
    /// Folds one probe in. `in_start_period`: the container started less than the start
    /// period ago, so a failure does not count while it is still `starting`.
    pub fn record(&mut self, probe: Probe, retries: u32, in_start_period: bool) {
        if probe.exit_code == 0 {
            self.status = HealthStatus::Healthy;
            self.failing_streak = 0;
        } else if !(in_start_period && self.status == HealthStatus::Starting) {
            self.failing_streak += 1;
            if self.failing_streak >= retries.max(1) {
                self.status = HealthStatus::Unhealthy;
            }
        }
        self.log.push(probe);
        if self.log.len() > LOG_ENTRIES {
            self.log.remove(0);
        }
    }
}

/// Runs `config`'s probes against container `id` (store `root`) while its process `pid` lives,
/// until `stop` hears something or is dropped. Each result is written into the state under
/// the container's lock, and only while the state still names `pid`, so a probe that ends
/// after the process does never touches the next run's state.
pub fn watch(root: PathBuf, id: ContainerId, pid: i32, config: HealthConfig, stop: Receiver<()>) {
    let interval = HealthConfig::duration(config.interval, DEFAULT_INTERVAL);
    let start_interval = HealthConfig::duration(config.start_interval, DEFAULT_START_INTERVAL);
    let start_period = Duration::from_nanos(config.start_period);
    let retries = if config.retries == 0 { DEFAULT_RETRIES } else { config.retries };
    let started = Instant::now();
    let mut starting = true;
    loop {
        let in_start_period = started.elapsed() < start_period;
        let wait = if starting && in_start_period { start_interval } else { interval };
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(probe) = probe(&root, &id, &config) else { continue };
        let Ok(containers) = Containers::open(&root) else { return };
        let Ok(_lock) = containers.lock(&id) else { return };
        let Ok(mut c) = containers.load(&id) else { return };
        if c.state.pid != pid || !matches!(c.state.status, Status::Running) {
            return;
        }
        let health = c.state.health.get_or_insert_with(Health::default);
        let before = health.status;
        health.record(probe, retries, started.elapsed() < start_period);
        let now = health.status;
        starting = now == HealthStatus::Starting;
        let _ = containers.save_state(&c);
        if now != before {
            let action = format!("health_status: {}", now.as_str());
            crate::events::emit(&root, crate::events::container(&c, &action, &[]));
        }
    }
}

/// One probe: the test exec'd in the container, killed after the timeout. `None` when the
/// container cannot be probed now (paused, or gone).
fn probe(root: &Path, id: &ContainerId, config: &HealthConfig) -> Option<Probe> {
    let timeout = HealthConfig::duration(config.timeout, DEFAULT_TIMEOUT);
    let start = now_rfc3339();
    let (out_r, out_w) = std::io::pipe().ok()?;
    let err_w = out_w.try_clone().ok()?;
    let null = std::fs::File::open("/dev/null").ok()?;
    let stdio = ExecStdio::Fds {
        stdin: OwnedFd::from(null),
        stdout: OwnedFd::from(out_w),
        stderr: OwnedFd::from(err_w),
    };
    let req = ExecRequest { cmd: config.argv(), id: Some(crate::exec::new_id()), ..Default::default() };
    // The exec'd process lives as long as the thread that started it: a thread of its own,
    // which reports the pid, then the exit code.
    let (tx, rx) = mpsc::channel::<Result<i32, String>>();
    let (root_owned, what) = (root.to_path_buf(), id.to_string());
    std::thread::spawn(move || match exec::exec(&root_owned, &what, &req, stdio) {
        Ok(p) => {
            let _ = tx.send(Ok(-p.pid()));
            let _ = tx.send(p.wait().map_err(|e| hostutil::errors::one_line(&e)));
        }
        Err(crate::Error::Conflict(_)) => drop(tx),
        Err(e) => {
            let _ = tx.send(Err(hostutil::errors::one_line(&e)));
        }
    });
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = (&out_r).take(MAX_OUTPUT as u64).read_to_end(&mut out);
        // The rest is read and dropped, so the probe never blocks on a full pipe.
        let _ = std::io::copy(&mut &out_r, &mut std::io::sink());
        out
    });
    let deadline = Instant::now() + timeout;
    let (exit_code, note) = match rx.recv() {
        Err(_) => return None,
        Ok(Err(e)) => (-1, Some(e)),
        Ok(Ok(neg_pid)) => {
            let pid = -neg_pid;
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(code)) => (code, None),
                Ok(Err(e)) => (-1, Some(e)),
                Err(_) => {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
                    let _ = rx.recv();
                    (-1, Some(format!("Health check exceeded timeout ({timeout:?})")))
                }
            }
        }
    };
    let mut output = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    if let Some(note) = note {
        output = note;
    }
    Some(Probe { start, end: now_rfc3339(), exit_code, output })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i32) -> Probe {
        Probe { start: String::new(), end: String::new(), exit_code: code, output: String::new() }
    }

    #[test]
    fn retries_failures_in_a_row_make_it_unhealthy_and_one_success_heals() {
        let mut h = Health::default();
        h.record(probe(1), 2, false);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 1));
        h.record(probe(1), 2, false);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 2));
        h.record(probe(0), 2, false);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        for _ in 0..7 {
            h.record(probe(0), 2, false);
        }
        assert_eq!(h.log.len(), LOG_ENTRIES);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_until_the_first_success() {
        let mut h = Health::default();
        h.record(probe(1), 1, true);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        h.record(probe(0), 1, true);
        h.record(probe(1), 1, true);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 1));
    }

    #[test]
    fn flags_override_the_image_field_by_field() {
        let image = HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: 5,
            timeout: 6,
            retries: 7,
            ..Default::default()
        };
        let mine = HealthConfig { interval: 1, ..Default::default() }.over(Some(&image));
        assert_eq!((mine.test.len(), mine.interval, mine.timeout, mine.retries), (2, 1, 6, 7));
        assert!(mine.is_active());
        assert_eq!(mine.argv(), ["/bin/sh", "-c", "true"]);
        let none = HealthConfig { test: vec!["NONE".into()], ..Default::default() }.over(Some(&image));
        assert!(!none.is_active());
    }
}
