//! rbuild's OCI distribution client: pull images from a registry into a [`cache::Store`],
//! push them back, and log in.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = cache::Store::open("/var/lib/rbuild")?;
//! let client = registry::Client::new(registry::Options::default())?;
//! let image = client.pull(&store, &"127.0.0.1:5000/app:1".parse()?, None)?;
//! let digest = client.push(&store, &image, &"127.0.0.1:5000/copy:1".parse()?)?;
//! # Ok(()) }
//! ```
//!
//! Everything is blocking; blobs move in parallel on `Options::jobs` threads.

#![forbid(unsafe_code)]

mod artifact;
mod auth;
pub mod config;
mod error;
mod http;
mod pull;
mod push;
pub mod s3;

use std::sync::Arc;

use cache::ImageRef;

pub use auth::{Credentials, Login};
pub use cache::oci::Platform;
pub use error::{Error, Result};
pub use pull::PulledAll;

use crate::http::Transport;

/// What happened to one blob of a pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Downloaded into the store (pull) or uploaded to the registry (push).
    Transferred,
    /// Already in the store (pull) or in the repository (push): nothing moved.
    AlreadyPresent,
    /// Mounted from another repository of the same registry (push).
    Mounted { from: String },
}

/// Progress of a pull or push, reported per blob (config and layers). Events of different
/// blobs interleave: blobs move in parallel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The blob starts moving (not sent for blobs that need no transfer).
    Start { digest: cache::Digest, size: u64 },
    /// `done` of `size` bytes moved (at most one event per MiB, and one at the end).
    Bytes { digest: cache::Digest, done: u64, size: u64 },
    /// The blob is settled.
    Done { digest: cache::Digest, size: u64, outcome: Outcome },
}

/// A progress callback; called from the transfer threads.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How a [`Client`] talks to registries.
#[derive(Clone)]
pub struct Options {
    /// Registries (`host` or `host:port`) spoken to in plain HTTP. Loopback (`localhost`,
    /// `127.0.0.0/8`, `[::1]`) always is.
    pub insecure_registries: Vec<String>,
    /// Where logins are looked up and `login` stores them.
    pub credentials: Credentials,
    /// Called for every blob event.
    pub progress: Option<ProgressFn>,
    /// How many blobs move at once.
    pub jobs: usize,
    /// Blobs up to this size are uploaded in one PUT; larger ones in PATCH chunks of this size.
    pub chunk_size: u64,
    /// Mirrors, blocked and insecure registries from the config file ([`config::Registries`]).
    pub registries: config::Registries,
}

impl Default for Options {
    /// Credentials from the usual files ([`Credentials::from_env`]), 4 parallel blobs, 32 MiB
    /// chunks, no progress.
    fn default() -> Options {
        Options {
            insecure_registries: Vec::new(),
            credentials: Credentials::from_env(),
            progress: None,
            jobs: 4,
            chunk_size: 32 << 20,
            registries: config::Registries::default(),
        }
    }
}

/// A registry client. Cheap to share between threads; it keeps the tokens it obtains.
pub struct Client {
    options: Options,
    transport: Transport,
}

/// What the manifest URL of `reference` names: its digest, else its tag, else `latest`.
pub(crate) fn manifest_target(reference: &ImageRef) -> String {
    match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    }
}

/// A repository on a registry: `host` as in references (`docker.io`, `127.0.0.1:5000`) and the
/// path under `/v2/` (`library/busybox`, `team/app`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub host: String,
    pub path: String,
}

impl Repository {
    /// Where `reference` lives: Docker Hub (`library/` added for one-component names) unless
    /// its first component is a host (has a `.` or `:`, or is `localhost`).
    pub fn of(reference: &ImageRef) -> Repository {
        let name = reference.name();
        match name.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                Repository { host: first.to_string(), path: rest.to_string() }
            }
            Some(_) => Repository { host: "docker.io".to_string(), path: name.to_string() },
            None => Repository { host: "docker.io".to_string(), path: format!("library/{name}") },
        }
    }

    fn pull_scope(&self) -> String {
        format!("repository:{}:pull", self.path)
    }

    fn push_scope(&self) -> String {
        format!("repository:{}:pull,push", self.path)
    }
}

impl std::fmt::Display for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.host, self.path)
    }
}

impl Client {
    pub fn new(options: Options) -> Result<Client> {
        let mut insecure = options.insecure_registries.clone();
        insecure.extend(options.registries.insecure().iter().cloned());
        let transport = Transport::new(insecure, options.credentials.clone(), options.jobs)?;
        Ok(Client { options, transport })
    }

    /// Checks `username`/`password` against registry `host` (`GET /v2/` and the auth it asks
    /// for) and, if the registry accepts them (or needs none), stores them in the credentials
    /// file ([`Credentials::save`]).
    pub fn login(&self, host: &str, username: &str, password: &str) -> Result<()> {
        let login = Login { username: username.to_string(), password: password.to_string() };
        self.transport.verify_login(host, &login)?;
        self.options.credentials.save(host, &login)
    }

    /// Forgets the stored login for `host`; says whether there was one.
    pub fn logout(&self, host: &str) -> Result<bool> {
        self.options.credentials.remove(host)
    }

    fn report(&self, event: Progress) {
        if let Some(p) = &self.options.progress {
            p(&event);
        }
    }
}

/// Runs `f` on every item with at most `jobs` threads; the first error stops the others from
/// starting new items and is returned.
fn parallel<T: Sync>(jobs: usize, items: &[T], f: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if let Err(e) = f(item) {
                        failed.store(true, Ordering::Relaxed);
                        first.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                        break;
                    }
                }
            });
        }
    });
    match first.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_follow_docker_naming() {
        let r = |s: &str| Repository::of(&s.parse().unwrap());
        assert_eq!(r("busybox"), Repository { host: "docker.io".into(), path: "library/busybox".into() });
        assert_eq!(r("team/app:1"), Repository { host: "docker.io".into(), path: "team/app".into() });
        assert_eq!(r("127.0.0.1:5000/a/b"), Repository { host: "127.0.0.1:5000".into(), path: "a/b".into() });
        assert_eq!(r("localhost/x"), Repository { host: "localhost".into(), path: "x".into() });
        assert_eq!(r("quay.io/x/y").to_string(), "quay.io/x/y");
    }

    #[test]
    fn loopback_and_listed_registries_use_plain_http() {
        let t =
            Transport::new(vec!["reg.lan:5000".into(), "other.lan".into()], Credentials::none(), 1).unwrap();
        for h in
            ["localhost:5000", "127.0.0.1:5000", "127.0.0.1", "[::1]:5000", "reg.lan:5000", "other.lan:443"]
        {
            assert!(t.is_plain_http(h), "{h}");
        }
        for h in ["docker.io", "reg.lan:5001", "127.0.0.1.nip.io"] {
            assert!(!t.is_plain_http(h), "{h}");
        }
        assert_eq!(t.base_url("docker.io"), "https://registry-1.docker.io");
    }

    #[test]
    fn parallel_returns_the_first_error() {
        let items: Vec<u32> = (0..20).collect();
        let r = parallel(4, &items, |i| if *i == 7 { Err(Error::Client("seven".into())) } else { Ok(()) });
        assert!(matches!(r, Err(Error::Client(m)) if m == "seven"));
        assert!(parallel(4, &items, |_| Ok(())).is_ok());
        assert!(parallel(4, &[] as &[u32], |_| Ok(())).is_ok());
    }
}
