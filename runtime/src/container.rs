//! Containers in the store: `containers/<id>/` holds `config.json` (what was asked at
//! create, never changed but by `rename`), `state.json` (what is happening now), the rootfs
//! (`rootfs/{init,upper,work}` over the image's unpacked layers, pinned by `layers.json`), the
//! log, and the files bind-mounted at /etc/hosts, /etc/hostname and /etc/resolv.conf.
//!
//! Every change of a container happens under its `lock` (flock); names are unique through
//! `containers/names/<name>`, a file created with O_EXCL that holds the id.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::network::Endpoint;
use crate::spec::{MountRequest, NetworkRequest, PortMapping, RestartPolicy};
use crate::{Error, Result};

/// A container id: 64 lowercase hex digits, as docker's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

impl ContainerId {
    pub fn random() -> ContainerId {
        ContainerId(format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The 12-digit form `ps` prints.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

/// A string that is not 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a container id: {0:?}")]
pub struct NotAnId(pub String);

impl TryFrom<String> for ContainerId {
    type Error = NotAnId;
    fn try_from(s: String) -> std::result::Result<ContainerId, NotAnId> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(ContainerId(s))
        } else {
            Err(NotAnId(s))
        }
    }
}

impl From<ContainerId> for String {
    fn from(id: ContainerId) -> String {
        id.0
    }
}

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the container runs, in docker's `Config` terms (image defaults merged with flags).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub labels: BTreeMap<String, String>,
    pub tty: bool,
    pub open_stdin: bool,
    /// The container's stdin closes when the attached client that gave it ends (docker's
    /// `StdinOnce`: `run -i`), rather than staying open for the next `attach`.
    #[serde(default)]
    pub stdin_once: bool,
    /// `"80/tcp"` keys, as in the image config.
    pub exposed_ports: Vec<String>,
    /// The image's `VOLUME`s.
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    pub stop_timeout: Option<u32>,
    /// The image as the user named it.
    pub image: String,
    /// The image's `HEALTHCHECK` with `--health-*` over it (`--no-healthcheck`: `NONE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::health::HealthConfig>,
}

/// How the container is run on this host, in docker's `HostConfig` terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostConfig {
    pub network: NetworkRequest,
    /// Aliases on user-defined networks (`--network-alias`).
    #[serde(default)]
    pub network_aliases: Vec<String>,
    /// Aliases on one network only, by network name (`network connect --alias`): kept for
    /// every start, also when given while the container does not run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases_by_network: BTreeMap<String, Vec<String>>,
    pub ports: Vec<PortMapping>,
    pub publish_all: bool,
    pub mounts: Vec<MountRequest>,
    pub restart: RestartPolicy,
    pub auto_remove: bool,
    pub resources: executor::Resources,
    /// `/dev/shm`'s size and the process limits (docker's `ShmSize`, `Ulimits`).
    #[serde(default)]
    pub limits: executor::ProcessLimits,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub read_only: bool,
    pub init: bool,
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// `--log-driver`, `--log-opt` (docker's `LogConfig`).
    #[serde(default)]
    pub log: crate::logs::LogConfig,
    /// The terminal's first size, rows and columns (docker's `ConsoleSize`): a process that
    /// asks at once sees the client's size, not 0x0 before the first resize arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_size: Option<(u16, u16)>,
}

impl HostConfig {
    /// What the container's processes (and `exec`'d ones) may do: docker's defaults with
    /// `--cap-add`/`--cap-drop`, or everything for `--privileged`.
    pub fn security(&self) -> Result<executor::Security> {
        if self.privileged {
            return Ok(executor::Security::insecure());
        }
        let mut s = executor::Security::docker_default();
        s.capabilities = executor::caps::with_changes(&s.capabilities, &self.cap_add, &self.cap_drop)?;
        Ok(s)
    }
}

impl Default for HostConfig {
    fn default() -> HostConfig {
        HostConfig {
            network: NetworkRequest::Bridge(vec!["bridge".into()]),
            network_aliases: Vec::new(),
            aliases_by_network: BTreeMap::new(),
            ports: Vec::new(),
            publish_all: false,
            mounts: Vec::new(),
            restart: RestartPolicy::No,
            auto_remove: false,
            resources: executor::Resources::default(),
            limits: executor::ProcessLimits::default(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            privileged: false,
            read_only: false,
            init: false,
            dns: Vec::new(),
            dns_search: Vec::new(),
            extra_hosts: Vec::new(),
            log: Default::default(),
            console_size: None,
        }
    }
}

impl Container {
    /// Docker's STATUS column (`Up 5 minutes (healthy)`, `Exited (0) 2 hours ago`), as `ps`
    /// and the API's container list show it.
    pub fn status_text(&self) -> String {
        let now = cache::time::now_unix();
        let ago = |t: Option<&str>| human_duration(now - t.and_then(parse_rfc3339).map_or(now, |(s, _)| s));
        let s = &self.state;
        match s.status {
            Status::Created => "Created".into(),
            Status::Running => {
                let health = match s.health.as_ref().map(|h| h.status) {
                    Some(crate::health::HealthStatus::Starting) => " (health: starting)",
                    Some(crate::health::HealthStatus::Healthy) => " (healthy)",
                    Some(crate::health::HealthStatus::Unhealthy) => " (unhealthy)",
                    None => "",
                };
                format!("Up {}{health}", ago(s.started_at.as_deref()))
            }
            Status::Paused => format!("Up {} (Paused)", ago(s.started_at.as_deref())),
            Status::Restarting => {
                format!("Restarting ({}) {} ago", s.exit_code, ago(s.finished_at.as_deref()))
            }
            Status::Exited => format!("Exited ({}) {} ago", s.exit_code, ago(s.finished_at.as_deref())),
            Status::Removing => "Removal In Progress".into(),
            Status::Dead => "Dead".into(),
        }
    }
}

/// `2 weeks`, as go-units' `HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let hours = (secs as f64 / 3600.0 + 0.5) as i64;
    match secs {
        s if s < 1 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".to_string(),
        s if s / 60 < 60 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

/// `config.json`: fixed at create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: ContainerId,
    /// Without docker's leading `/`.
    pub name: String,
    /// RFC 3339 with nanoseconds, UTC.
    pub created: String,
    /// The image's digest in the store.
    pub image_id: cache::Digest,
    pub config: Config,
    pub host: HostConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Removing,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Removing => "removing",
            Status::Dead => "dead",
        }
    }
}

/// `state.json`: what is happening now; written by the monitor and by the commands that
/// change it, always under the container's lock, always atomically (rename).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// Host PID of the container's PID 1 while it runs, else 0.
    pub pid: i32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22): a signal goes to
    /// `pid` only if this still matches, so a recycled PID is never signalled.
    pub pid_start: u64,
    /// The monitor's PID (and start time), while it lives.
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub exit_code: i32,
    pub oom_killed: bool,
    /// RFC 3339 with nanoseconds; docker's zero time `0001-01-01T00:00:00Z` before the first.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub restart_count: u32,
    /// Set by `stop`/`kill`/`rm -f`: the exit was asked for, so no restart (but `always`,
    /// as docker, restarts only after the next start).
    pub stopped_by_user: bool,
    /// Why the last start failed, as docker's `State.Error`.
    pub error: String,
    /// The container's cgroup, relative to rbuild's cgroup directory of each hierarchy.
    pub cgroup: Option<String>,
    /// Network attachments while it runs.
    pub endpoints: Vec<Endpoint>,
    /// Published ports with the host ports actually bound.
    pub ports: Vec<PortMapping>,
    /// With a healthcheck: its state since the process started (`starting` first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
}

impl State {
    /// The process ended (or never started): what it held while it ran is gone, and why it
    /// ended is recorded. The monitor may still be there (to restart it); the status is the
    /// caller's to set.
    pub fn process_ended(&mut self, exit_code: i32, oom_killed: bool, error: &str) {
        self.exit_code = exit_code;
        self.oom_killed = oom_killed;
        self.error = error.to_string();
        self.finished_at = Some(now_rfc3339());
        self.pid = 0;
        self.pid_start = 0;
        self.cgroup = None;
        self.endpoints.clear();
        self.ports.clear();
    }

    /// Nothing runs or watches any more: [`State::process_ended`], no monitor, and `status`
    /// (exited, or created for a container whose first start failed).
    pub fn stopped(&mut self, status: Status, exit_code: i32, oom_killed: bool, error: &str) {
        self.process_ended(exit_code, oom_killed, error);
        if status == Status::Created {
            // It never ran, so it never finished (docker's zero time).
            self.finished_at = None;
        }
        self.status = status;
        self.monitor_pid = 0;
        self.monitor_start = 0;
    }
}

/// A `system df` line: how many there are, how many are in use, their bytes and the bytes a
/// prune would free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub total: usize,
    pub active: usize,
    pub bytes: u64,
    pub reclaimable: u64,
}

/// A container as read from the store.
#[derive(Debug, Clone)]
pub struct Container {
    pub config: ContainerConfig,
    pub state: State,
    pub dir: PathBuf,
}

impl Container {
    pub fn id(&self) -> &ContainerId {
        &self.config.id
    }
    pub fn name(&self) -> &str {
        &self.config.name
    }
    /// The rootfs: `init` (mount points of /etc/hosts, volumes...), `upper`, `work`.
    pub fn rootfs_dir(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("rootfs/upper")
    }
    /// The bytes its writable layer holds (docker's `SizeRw`); 0 if it cannot be read.
    pub fn writable_size(&self) -> u64 {
        crate::volume::dir_size(&self.upper()).unwrap_or(0)
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("rootfs/work")
    }
    /// The topmost lower: empty files and directories where rbuild mounts things, so that
    /// they never show in `diff` or `commit` (docker's "-init" layer).
    pub fn init_layer(&self) -> PathBuf {
        self.dir.join("rootfs/init")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    pub fn netns_path(&self) -> PathBuf {
        self.dir.join("netns")
    }
    pub fn hosts_path(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn hostname_path(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    pub fn resolv_path(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    /// Whether the recorded PID 1 is still that process (not a recycled PID).
    pub fn is_alive(&self) -> bool {
        self.state.pid > 0 && proc_start_time(self.state.pid) == Some(self.state.pid_start)
    }
    /// Whether the monitor recorded in the state is still alive.
    pub fn monitor_alive(&self) -> bool {
        self.state.monitor_pid > 0
            && proc_start_time(self.state.monitor_pid) == Some(self.state.monitor_start)
    }
    pub fn is_running(&self) -> bool {
        matches!(self.state.status, Status::Running | Status::Paused | Status::Restarting)
    }
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The exclusive lock of one container, held while its state changes.
pub struct ContainerLock(#[allow(dead_code)] Flock<File>);

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` atomically (a temp file in the same directory, then rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_at(&tmp))?;
    f.write_all(bytes).map_err(io_at(&tmp))?;
    fs::rename(&tmp, path).map_err(io_at(path))
}

/// The `containers/` directory of a store.
#[derive(Debug, Clone)]
pub struct Containers {
    root: PathBuf,
}

/// Docker's name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && name.len() >= 2
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Containers {
    pub fn open(store_root: &Path) -> Result<Containers> {
        let root = store_root.join("containers");
        fs::create_dir_all(root.join("names")).map_err(io_at(&root))?;
        Ok(Containers { root })
    }

    pub fn dir(&self, id: &ContainerId) -> PathBuf {
        self.root.join(id.as_str())
    }

    fn name_path(&self, name: &str) -> PathBuf {
        self.root.join("names").join(name)
    }

    /// Reserves `name` for `id` (fails if taken).
    pub fn reserve_name(&self, name: &str, id: &ContainerId) -> Result<()> {
        if !valid_name(name) {
            return Err(Error::Invalid(format!(
                "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let path = self.name_path(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => f.write_all(id.as_str().as_bytes()).map_err(io_at(&path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let owner = fs::read_to_string(&path).unwrap_or_default();
                Err(Error::Conflict(format!(
                    "the container name \"/{name}\" is already in use by container \"{owner}\": \
                     remove (or rename) that container to reuse the name"
                )))
            }
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    pub fn release_name(&self, name: &str, id: &ContainerId) {
        let path = self.name_path(name);
        if fs::read_to_string(&path).is_ok_and(|owner| owner == id.as_str()) {
            let _ = fs::remove_file(&path);
        }
    }

    /// `rename`: gives container `what` the name `new` (docker's leading `/` allowed), under
    /// the container's lock; the new name is reserved before the old one is released, so a
    /// taken name is a conflict and the container is never without a name.
    pub fn rename(&self, what: &str, new: &str) -> Result<Container> {
        let new = new.strip_prefix('/').unwrap_or(new);
        if new.is_empty() {
            return Err(Error::Invalid("the new name is empty: give a name to rename to".into()));
        }
        let c = self.find(what)?;
        let _lock = self.lock(c.id())?;
        let mut c = self.load(c.id())?;
        if new == c.config.name {
            return Err(Error::Invalid("renaming a container with the same name as its current name".into()));
        }
        self.reserve_name(new, c.id())?;
        let old = std::mem::replace(&mut c.config.name, new.to_string());
        if let Err(e) = self.save_config(&c) {
            self.release_name(new, c.id());
            return Err(e);
        }
        self.release_name(&old, c.id());
        Ok(c)
    }

    /// A name docker-style (`adjective_scientist`) that is free.
    pub fn generate_name(&self) -> String {
        loop {
            let name = crate::names::random();
            if !self.name_path(&name).exists() {
                return name;
            }
        }
    }

    /// Writes a new container's directory (rootfs dirs, config, state); the name must have
    /// been reserved.
    pub fn create(&self, config: &ContainerConfig) -> Result<Container> {
        let dir = self.dir(&config.id);
        for sub in ["rootfs/init", "rootfs/upper", "rootfs/work"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_at(&p))?;
        }
        File::create(dir.join("lock")).map_err(io_at(&dir))?;
        let c = Container { config: config.clone(), state: State::default(), dir };
        self.save_config(&c)?;
        self.save_state(&c)?;
        Ok(c)
    }

    pub fn save_config(&self, c: &Container) -> Result<()> {
        let json = serde_json::to_vec_pretty(&c.config).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&c.dir.join("config.json"), &json)
    }

    pub fn save_state(&self, c: &Container) -> Result<()> {
        let json = serde_json::to_vec_pretty(&c.state).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&c.dir.join("state.json"), &json)
    }

    /// Takes the container's lock (blocking).
    pub fn lock(&self, id: &ContainerId) -> Result<ContainerLock> {
        let path = self.dir(id).join("lock");
        let f =
            OpenOptions::new().write(true).open(&path).map_err(|_| Error::NoSuchContainer(id.to_string()))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map(ContainerLock)
            .map_err(|(_, e)| Error::Io { path, source: e.into() })
    }

    pub fn load(&self, id: &ContainerId) -> Result<Container> {
        let dir = self.dir(id);
        let read = |name: &str| -> Result<Vec<u8>> {
            let p = dir.join(name);
            fs::read(&p).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::NoSuchContainer(id.to_string()),
                _ => io_at(&p)(e),
            })
        };
        let bad = |e: serde_json::Error| Error::Invalid(format!("{}: {e}", dir.display()));
        let config = serde_json::from_slice(&read("config.json")?).map_err(bad)?;
        let state = serde_json::from_slice(&read("state.json")?).map_err(bad)?;
        Ok(Container { config, state, dir })
    }

    /// Every container, oldest first.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_at(&self.root))? {
            let entry = entry.map_err(io_at(&self.root))?;
            let Ok(id) = ContainerId::try_from(entry.file_name().to_string_lossy().into_owned()) else {
                continue;
            };
            match self.load(&id) {
                Ok(c) => out.push(c),
                // Being created or removed right now.
                Err(Error::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.config.created.cmp(&b.config.created));
        Ok(out)
    }

    /// By full id, unique id prefix, or name (with or without docker's leading `/`).
    pub fn find(&self, what: &str) -> Result<Container> {
        let what = what.strip_prefix('/').unwrap_or(what);
        if let Ok(id) = fs::read_to_string(self.name_path(what))
            && let Ok(id) = ContainerId::try_from(id)
            && let Ok(c) = self.load(&id)
        {
            return Ok(c);
        }
        if !what.is_empty() && what.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found = Vec::new();
            for entry in fs::read_dir(&self.root).map_err(io_at(&self.root))? {
                let name = entry.map_err(io_at(&self.root))?.file_name().to_string_lossy().into_owned();
                if name.len() == 64 && name.starts_with(&what.to_ascii_lowercase()) {
                    found.push(name);
                }
            }
            match found.len() {
                1 => {
                    let id =
                        ContainerId::try_from(found.remove(0)).map_err(|e| Error::Invalid(e.to_string()))?;
                    return self.load(&id);
                }
                n if n > 1 => {
                    return Err(Error::Invalid(format!(
                        "multiple containers match {what:?}: use more of the id"
                    )));
                }
                _ => {}
            }
        }
        Err(Error::NoSuchContainer(what.to_string()))
    }

    /// The images containers are made from: `rmi` refuses to delete them without `-f`, and
    /// `image prune` and `system df` count them as in use.
    pub fn images_in_use(&self) -> Result<std::collections::BTreeSet<cache::Digest>> {
        Ok(self.list()?.into_iter().map(|c| c.config.image_id).collect())
    }

    /// `system df`'s line for containers: how many, how many run, the bytes of their writable
    /// layers, and of those of the ones not running (what `container prune` would free).
    pub fn disk_usage(&self) -> Result<Usage> {
        let mut u = Usage::default();
        for c in self.list()? {
            let bytes = crate::volume::dir_size(&c.upper()).unwrap_or(0);
            u.total += 1;
            u.bytes += bytes;
            if c.is_running() {
                u.active += 1;
            } else {
                u.reclaimable += bytes;
            }
        }
        Ok(u)
    }

    /// Deletes the container's directory and its name. The caller has stopped it and torn
    /// down what it had mounted.
    pub fn delete(&self, c: &Container) -> Result<()> {
        self.unlist(c)?.empty()
    }

    /// Takes the container out of every listing and frees its name: its directory is renamed
    /// away (so a half-deleted container never lists as one) and deleted by the [`Trash`].
    pub fn unlist(&self, c: &Container) -> Result<Trash> {
        self.release_name(&c.config.name, &c.config.id);
        let trash = self.root.join(format!("{TRASH_PREFIX}{}", c.config.id));
        fs::rename(&c.dir, &trash).map_err(io_at(&c.dir))?;
        Ok(Trash(Some(trash)))
    }

    /// Deletes what a removal that did not finish (its process was killed) left renamed away.
    pub fn sweep_trash(&self) {
        let Ok(entries) = fs::read_dir(&self.root) else { return };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TRASH_PREFIX) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

const TRASH_PREFIX: &str = ".removing-";

impl Containers {
    /// A [`ChangeWatch`] on container `id`: what waits for it to exit or go needs no polling.
    pub fn watch(&self, id: &ContainerId) -> Result<ChangeWatch> {
        use nix::sys::inotify::{AddWatchFlags as F, InitFlags, Inotify};
        let failed = |path: &Path| {
            let path = path.to_path_buf();
            move |e: nix::Error| Error::Io { path, source: e.into() }
        };
        let inotify =
            Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).map_err(failed(&self.root))?;
        // A container appears and leaves by a rename or a delete of its directory here.
        inotify
            .add_watch(&self.root, F::IN_CREATE | F::IN_DELETE | F::IN_MOVED_FROM | F::IN_MOVED_TO)
            .map_err(failed(&self.root))?;
        // Its state is saved by a rename into its directory (which may be gone already).
        let dir = self.root.join(id.as_str());
        let _ = inotify.add_watch(&dir, F::IN_MOVED_TO | F::IN_CLOSE_WRITE);
        Ok(ChangeWatch { inotify })
    }
}

/// Wakes a waiter when a container may have changed: its directory came or went, or its
/// state was saved. The waiter still reads the state itself; the watch only spares it polling.
/// Dropping it closes an inotify descriptor, which waits out a kernel grace period (up to 16 ms
/// measured): answer first, then drop it.
#[derive(Debug)]
pub struct ChangeWatch {
    inotify: nix::sys::inotify::Inotify,
}

impl ChangeWatch {
    /// Returns once something changed, or after `timeout` (a bound for what no event tells:
    /// a process that died without its monitor, a client that went away).
    pub fn wait(&self, timeout: Duration) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        if matches!(poll(&mut fds, timeout), Ok(n) if n > 0) {
            // Drained, so the next wait sleeps until the next change.
            while matches!(self.inotify.read_events(), Ok(events) if !events.is_empty()) {}
        }
    }
}

/// A removed container's directory, out of every listing, not yet deleted: deleting it can
/// wait until the caller has answered (a `--rm` container's exit code). Dropped, it is deleted
/// all the same; [`Trash::empty`] tells whether that worked.
#[derive(Debug)]
#[must_use = "the directory is deleted when the Trash is dropped"]
pub struct Trash(Option<PathBuf>);

impl Trash {
    /// Deletes the directory now.
    pub fn empty(mut self) -> Result<()> {
        match self.0.take() {
            Some(dir) => fs::remove_dir_all(&dir).map_err(io_at(&dir)),
            None => Ok(()),
        }
    }
}

impl Drop for Trash {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Now, as docker prints times: RFC 3339 UTC with nanoseconds.
pub fn now_rfc3339() -> String {
    cache::time::now_rfc3339()
}

/// Parses an RFC 3339 time (with fraction and offset) to seconds and nanoseconds since the
/// epoch.
pub fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    cache::time::parse_rfc3339_nanos(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.000000005Z"), Some((1_700_000_000, 5)));
        assert_eq!(parse_rfc3339("2023-11-14T23:13:20.5+01:00"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some((1_700_000_000, 0)));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00.5Z"), Some((1_709_164_800, 500_000_000)));
    }

    /// Every way a container stops (its process exits, its monitor dies, its start fails) goes
    /// through one function, so no path forgets a field that only a running container has.
    #[test]
    fn a_stopped_state_keeps_nothing_of_the_run() {
        let running = State {
            status: Status::Running,
            pid: 42,
            pid_start: 7,
            monitor_pid: 41,
            monitor_start: 6,
            cgroup: Some("rbuild-x".into()),
            ports: vec![PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                protocol: crate::spec::Protocol::Tcp,
            }],
            started_at: Some("2024-01-01T00:00:00Z".into()),
            restart_count: 2,
            ..State::default()
        };
        let mut s = running.clone();
        s.stopped(Status::Exited, 137, true, "gone");
        assert_eq!(
            (s.pid, s.pid_start, s.monitor_pid, s.monitor_start, s.cgroup.as_deref(), s.ports.len()),
            (0, 0, 0, 0, None, 0)
        );
        assert_eq!(
            (s.status, s.exit_code, s.oom_killed, s.error.as_str()),
            (Status::Exited, 137, true, "gone")
        );
        assert!(s.finished_at.is_some());
        assert_eq!((s.started_at, s.restart_count), (running.started_at.clone(), 2), "history is kept");
        let mut r = running;
        r.process_ended(1, false, "");
        assert_eq!(
            (r.status, r.monitor_pid, r.pid),
            (Status::Running, 41, 0),
            "the monitor stays to restart"
        );
    }

    #[test]
    fn names() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-web"));
        assert!(!valid_name("a"));
        assert!(!valid_name("we/b"));
    }
}
