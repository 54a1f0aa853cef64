//! The sandbox's cgroup: resource limits, accounting, and a handle on every process of the
//! sandbox, so it can be counted, killed and cleaned up as one.
//!
//! # Detection
//!
//! [`detect`] reads `/proc/self/mountinfo` ([`Layout::parse`] is the pure part): every v1
//! hierarchy (fstype `cgroup`, its controllers in the super options; `cpu,cpuacct` may share
//! one), and the cgroup2 mount (fstype `cgroup2`) with its root's `cgroup.controllers`. Each
//! controller rbuild uses ([`Controller`]: memory, cpu, cpuacct, pids, freezer) is placed where
//! it *actually* is: in cgroup2 if the cgroup2 root lists it, else in the v1 hierarchy that
//! mounts it, else nowhere. `cpuacct` and `freezer` are not cgroup2 controllers: their v2
//! equivalents (`cpu.stat`, `cgroup.freeze`) are core files, so they count as v2 whenever a
//! cgroup2 mount exists and no v1 hierarchy holds them. The [`Mode`] is `V1` (no cgroup2 mount),
//! `V2` (no v1 hierarchy holds a controller) or `Hybrid` (both: systemd's "hybrid" setup, where
//! cgroup2 often holds no controller at all). A mount hidden by a later mount on the same
//! mountpoint is ignored, and a hierarchy mounted twice is used once. The result is computed
//! once per process ([`layout`]); a detection error is cached too.
//!
//! # Placement
//!
//! As Docker's `cgroupfs` driver: a sandbox lives at `<hierarchy root>/rbuild/<name>` in each
//! v1 hierarchy holding one of our controllers and, when a cgroup2 mount exists, also in the
//! cgroup2 tree, even when that holds none of our controllers (hybrid): cgroup2 still gives
//! `cgroup.kill`, which kills a whole tree atomically, and `cgroup.events`. Other v1 hierarchies
//! (cpuset, devices, blkio, `name=systemd`) are left alone. In cgroup2, the controllers we use
//! (`memory pids cpu`, those the root has) are enabled in the root's and in `rbuild/`'s
//! `cgroup.subtree_control`. `rbuild/` itself is created on demand and never removed (other
//! rbuild processes share it). Names are `<owner pid>-<seq>` ([`sandbox_name`]), which lets
//! [`sweep_stale`] find the cgroups of a SIGKILLed rbuild.
//!
//! # Lifetime
//!
//! [`Cgroup::create`] refuses an existing directory ([`Error::Exists`]), makes every directory
//! and writes the limits *before* any process joins; if a step fails, what it made is removed
//! before the error is returned. The sandbox's PID 1 joins by writing `0` (itself) into each of
//! [`Cgroup::procs_files`] before it forks, so every process of the sandbox is in every
//! directory. [`Cgroup::remove`] kills what is left, waits until the cgroup is empty (up to
//! 2 s) and removes every directory (sub-cgroups the sandbox made first); `Drop` does the same,
//! best effort, when `remove` was not called, so an error path or a cancelled build does not
//! leak a cgroup.
//!
//! # Limits
//!
//! | [`Resources`] | v1                                                   | v2                       |
//! |---------------|------------------------------------------------------|--------------------------|
//! | `memory`      | `memory.limit_in_bytes`, then `memory.memsw.limit_in_bytes` (same value: no swap beyond it; if swap accounting is on) | `memory.max`, `memory.swap.max` = 0 (if present) |
//! | `cpu_quota`, `cpu_period` | `cpu.cfs_period_us`, then `cpu.cfs_quota_us` | `cpu.max` = `<quota or max> <period or 100000>` |
//! | `cpu_shares`  | `cpu.shares`                                         | `cpu.weight` = `1 + (shares - 2) * 9999 / 262142` (runc's conversion, shares clamped to 2..=262144) |
//! | `pids`        | `pids.max`                                           | `pids.max`               |
//!
//! Values are written as given (the CLI maps Docker's "0 = unlimited" to `None`); the kernel's
//! `EINVAL` for out-of-range values comes back naming the file. A limit whose controller this
//! machine lacks is an error ([`Error::MissingController`]), never silently dropped.
//!
//! # Killing
//!
//! [`Cgroup::kill_all`] writes `1` to the cgroup2 `cgroup.kill` when there is one (kernel ≥ 5.14,
//! on v2 and hybrid machines): the kernel kills the whole subtree, including children forked
//! while it runs. Without it (pure v1), it freezes the v1 freezer cgroup (if there is one), so
//! nothing can fork or exit, SIGKILLs every pid listed, and thaws; without a freezer, it
//! SIGKILLs the listed pids in rounds until none is left. Either way it repeats until the
//! cgroup is empty, and a v1 freezer cgroup is thawed after the kill (a task frozen there, by
//! [`Cgroup::freeze`] say, dies only once thawed, even by `cgroup.kill`). Killing by pid has
//! one residual race without `cgroup.kill` and freezer: a listed process may exit and be
//! reaped, and its pid reused, between the read and the kill.
//!
//! [`oom_killed`](Cgroup::oom_killed) reads `oom_kill` from v1 `memory.oom_control` or v2
//! `memory.events` (`oom_group_kill` counted too, for a `memory.oom.group` cgroup): it counts
//! processes the OOM killer killed in the cgroup, whether the cgroup's limit or the machine's
//! memory ran out.
//!
//! # Limitations
//!
//! - [`sweep_stale`] tells a dead owner by `kill(pid, 0)` = `ESRCH`: rbuild processes in
//!   different pid namespaces sharing one cgroupfs would see each other's owners as dead.
//! - Under cgroup2, when the cgroup2 mount's root is not the real root (rbuild in a container
//!   with a cgroup namespace), that root usually holds processes, so enabling controllers in
//!   its `cgroup.subtree_control` fails with `EBUSY` (cgroup2's "no internal processes" rule)
//!   until the container's processes are moved into a leaf, as docker-in-docker does.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hostutil::mountinfo::Mount;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Resources;

mod warm;
pub use warm::{MigrationWarmup, warm_migrations};

/// The directory under each hierarchy's root that holds rbuild's cgroups.
pub const PARENT: &str = "rbuild";

/// How long [`Cgroup::remove`] (and [`Cgroup::kill_all`]) wait for the cgroup to empty.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `rmdir` is retried while it fails with `EBUSY`.
const RMDIR_TIMEOUT: Duration = Duration::from_secs(1);
/// cgroup2's `cpu.max` period when only a quota is given (the kernel's default).
const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// Errors detecting, making, limiting or removing cgroups. Each names the file and the OS error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgroup: read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup: write {value} to {}", .path.display())]
    Write {
        value: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup: mkdir {}", .path.display())]
    Mkdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup: rmdir {}", .path.display())]
    Rmdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// [`Cgroup::create`] found the directory already there.
    #[error("cgroup: {} already exists", .path.display())]
    Exists { path: PathBuf },
    /// A limit needs a controller that neither cgroup2 nor a v1 hierarchy has.
    #[error("{what} needs the {controller} cgroup controller, which this machine does not have")]
    MissingController { what: &'static str, controller: &'static str },
    /// Processes were still in the cgroup after they were killed and waited for.
    #[error("cgroup: {} still has processes {pids:?} after they were killed", .path.display())]
    NotEmpty { path: PathBuf, pids: Vec<i32> },
    /// Neither a cgroup2 filesystem nor a v1 hierarchy holding a controller is mounted.
    #[error("cgroup: no cgroup filesystem is mounted (see /proc/self/mountinfo)")]
    NotMounted,
    #[error("cgroup: invalid cgroup name {0:?}")]
    InvalidName(String),
    /// [`Cgroup::open`] found no directory of that name.
    #[error("cgroup: no cgroup {0:?} (the sandbox has ended)")]
    NotFound(String),
    /// [`layout`]'s detection error, kept for every later call.
    #[error(transparent)]
    Detect(std::sync::Arc<Error>),
}

impl Error {
    /// The error is a lack of permission (`EACCES`, `EPERM`) or a read-only cgroupfs (`EROFS`):
    /// rbuild cannot make cgroups here at all (rootless, or in a container).
    pub fn is_permission(&self) -> bool {
        let source = match self {
            Error::Read { source, .. }
            | Error::Write { source, .. }
            | Error::Mkdir { source, .. }
            | Error::Rmdir { source, .. } => source,
            _ => return false,
        };
        matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM | libc::EROFS))
    }

    /// Rootless, a cgroup that cannot be made for lack of permission: why, and what to do.
    pub fn hint(&self) -> Option<String> {
        (self.is_permission() && crate::userns::state().is_some()).then(|| {
            "resource limits (--memory, --cpus, --cpu-shares, --pids-limit) need a cgroup of rbuild's own, \
             and rootless rbuild cannot create one (the cgroup hierarchies belong to root: on cgroup v1 \
             always, on cgroup v2 without systemd delegation, which rbuild does not use yet); go without \
             them, or run as root"
                .to_string()
        })
    }
}

/// The controllers rbuild uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Controller {
    Memory,
    Cpu,
    Cpuacct,
    Pids,
    Freezer,
}

impl Controller {
    pub const ALL: [Controller; 5] =
        [Controller::Memory, Controller::Cpu, Controller::Cpuacct, Controller::Pids, Controller::Freezer];

    /// The kernel's name for it (v1 mount option, cgroup2 `cgroup.controllers` entry).
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
        }
    }

    /// Whether cgroup2 has no controller of this name but provides its function in core files.
    fn v2_core(self) -> bool {
        matches!(self, Controller::Cpuacct | Controller::Freezer)
    }
}

/// Every cgroup v1 controller name, to tell a hierarchy holding controllers from a named one
/// (`name=systemd`) holding none.
const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "io",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only v1 hierarchies.
    V1,
    /// Only cgroup2 (v1 hierarchies, if any, hold no controller).
    V2,
    /// A cgroup2 mount, and v1 hierarchies holding controllers.
    Hybrid,
}

/// Where a controller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// In the v1 hierarchy mounted here (possibly shared with other controllers).
    V1(PathBuf),
    /// In the cgroup2 tree ([`Layout::v2_root`]).
    V2,
}

/// A mounted cgroup v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Its mountpoint, which is the directory of the hierarchy's (or the mount's) root cgroup.
    pub root: PathBuf,
    /// The controllers it holds (`cpu`, `cpuacct`, ...), without `name=` and other options.
    pub controllers: Vec<String>,
}

/// The machine's cgroup filesystems, and where each of our controllers is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    v1: Vec<V1Hierarchy>,
    v2: Option<PathBuf>,
    v2_controllers: Vec<String>,
    locations: Vec<(Controller, Location)>,
}

impl Layout {
    /// Reads a `/proc/self/mountinfo` text. `v2_controllers` is called with the cgroup2 mount's
    /// root and returns the contents of its `cgroup.controllers`; `None` (unreadable) means the
    /// cgroup2 mount is not usable and is ignored.
    pub fn parse(mountinfo: &str, v2_controllers: impl Fn(&Path) -> Option<String>) -> Result<Layout, Error> {
        // The last mount on a mountpoint hides the earlier ones (a child is always listed
        // after its parent).
        let mut top: HashMap<&Path, u32> = HashMap::new();
        let lines = hostutil::mountinfo::parse(mountinfo);
        for m in &lines {
            top.insert(&m.mount_point, m.id);
        }
        let visible = |m: &Mount| top.get(m.mount_point.as_path()) == Some(&m.id);

        // (dev, hierarchy, mounted at its root)
        let mut v1: Vec<(&str, V1Hierarchy, bool)> = Vec::new();
        let mut v2: Option<(PathBuf, bool)> = None;
        for m in lines.iter().filter(|m| visible(m)) {
            let whole = m.root == Path::new("/");
            match m.fstype.as_str() {
                "cgroup" => {
                    let mut controllers: Vec<String> = m
                        .super_options
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o))
                        .map(str::to_string)
                        .collect();
                    controllers.sort();
                    let h = V1Hierarchy { root: m.mount_point.clone(), controllers };
                    // One hierarchy mounted twice (same device): keep one, preferring a mount
                    // of the hierarchy's root.
                    match v1.iter_mut().find(|(dev, _, _)| *dev == m.dev) {
                        Some(existing) if !existing.2 && whole => *existing = (&m.dev, h, whole),
                        Some(_) => {}
                        None => v1.push((&m.dev, h, whole)),
                    }
                }
                "cgroup2" => match &v2 {
                    Some((_, true)) => {}
                    Some((_, false)) if !whole => {}
                    _ => v2 = Some((m.mount_point.clone(), whole)),
                },
                _ => {}
            }
        }
        let v1: Vec<V1Hierarchy> = v1.into_iter().map(|(_, h, _)| h).collect();
        let (v2, v2_controllers) = match v2 {
            Some((root, _)) => match v2_controllers(&root) {
                Some(text) => (Some(root), text.split_whitespace().map(str::to_string).collect()),
                None => (None, Vec::new()),
            },
            None => (None, Vec::new()),
        };
        if v2.is_none() && v1.iter().all(|h| h.controllers.is_empty()) {
            return Err(Error::NotMounted);
        }

        let mut locations = Vec::new();
        for c in Controller::ALL {
            let location = if v2.is_some() && v2_controllers.iter().any(|n| n == c.name()) {
                Some(Location::V2)
            } else if let Some(h) = v1.iter().find(|h| h.controllers.iter().any(|n| n == c.name())) {
                Some(Location::V1(h.root.clone()))
            } else if v2.is_some() && c.v2_core() {
                Some(Location::V2)
            } else {
                None
            };
            if let Some(location) = location {
                locations.push((c, location));
            }
        }
        Ok(Layout { v1, v2, v2_controllers, locations })
    }

    pub fn mode(&self) -> Mode {
        let v1_controllers = self.v1.iter().any(|h| !h.controllers.is_empty());
        match (&self.v2, v1_controllers) {
            (None, _) => Mode::V1,
            (Some(_), false) => Mode::V2,
            (Some(_), true) => Mode::Hybrid,
        }
    }

    /// Where `controller` is; `None` when the machine does not have it.
    pub fn location(&self, controller: Controller) -> Option<&Location> {
        self.locations.iter().find(|(c, _)| *c == controller).map(|(_, l)| l)
    }

    /// The cgroup2 mount (its root cgroup's directory), if there is a usable one.
    pub fn v2_root(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// The controllers the cgroup2 root offers (its `cgroup.controllers`).
    pub fn v2_controllers(&self) -> &[String] {
        &self.v2_controllers
    }

    /// Every v1 hierarchy mounted, named ones (`name=systemd`) included.
    pub fn v1_hierarchies(&self) -> &[V1Hierarchy] {
        &self.v1
    }

    /// The hierarchy roots a sandbox gets a directory in: the distinct v1 hierarchies holding
    /// our controllers, then the cgroup2 root.
    pub fn roots(&self) -> Vec<&Path> {
        let mut roots: Vec<&Path> = Vec::new();
        for (_, location) in &self.locations {
            if let Location::V1(root) = location
                && !roots.contains(&root.as_path())
            {
                roots.push(root);
            }
        }
        roots.extend(self.v2.as_deref());
        roots
    }

    /// The directory where `controller`'s files of cgroup `name` under `parent` are.
    fn dir(&self, controller: Controller, parent: &str, name: &str) -> Option<PathBuf> {
        let root = match self.location(controller)? {
            Location::V1(root) => root.as_path(),
            Location::V2 => self.v2.as_deref()?,
        };
        Some(root.join(parent).join(name))
    }
}

/// Detects the cgroup layout of this machine (as seen by this process's mount namespace).
pub fn detect() -> Result<Layout, Error> {
    let path = Path::new("/proc/self/mountinfo");
    let mountinfo = fs::read_to_string(path).map_err(|source| Error::Read { path: path.into(), source })?;
    Layout::parse(&mountinfo, |root| fs::read_to_string(root.join("cgroup.controllers")).ok())
}

/// [`detect`], once per process; later calls return the same layout (or the same error).
pub fn layout() -> Result<&'static Layout, Error> {
    static LAYOUT: OnceLock<Result<Layout, std::sync::Arc<Error>>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| detect().map_err(std::sync::Arc::new))
        .as_ref()
        .map_err(|e| Error::Detect(e.clone()))
}

/// The next sequence number [`sandbox_name`] hands out.
static SEQ: AtomicU64 = AtomicU64::new(1);

/// A fresh cgroup name for a sandbox of this process: `<pid>-<seq>`.
pub fn sandbox_name() -> String {
    format!("{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst))
}

/// The owner pid and sequence number of a [`sandbox_name`]-style name; `None` for any other.
fn parse_name(name: &str) -> Option<(i32, u64)> {
    let (pid, seq) = name.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(seq) || pid.starts_with('0') {
        return None;
    }
    Some((pid.parse().ok()?, seq.parse().ok()?))
}

/// Removes the cgroups that rbuild processes which no longer exist left behind (SIGKILLed, or
/// crashed), killing anything still in them: only `rbuild/<pid>-<n>` directories whose owner
/// `pid` is gone (`kill(pid, 0)` fails with `ESRCH`), or is this process but `n` was never
/// handed out by it (a dead process that had the same pid). Other names are never touched.
/// Best effort: errors are ignored.
pub fn sweep_stale(layout: &Layout) {
    let mut names = BTreeSet::new();
    for root in layout.roots() {
        let Ok(entries) = fs::read_dir(root.join(PARENT)) else { continue };
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str()
                && entry.file_type().is_ok_and(|t| t.is_dir())
                && parse_name(name).is_some()
            {
                names.insert(name.to_string());
            }
        }
    }
    // Read after listing: a directory of ours that was listed has a number below this.
    let issued = SEQ.load(Ordering::SeqCst);
    let me = std::process::id() as i32;
    for name in names {
        let Some((pid, seq)) = parse_name(&name) else { continue };
        let stale =
            if pid == me { seq >= issued } else { kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH) };
        if !stale {
            continue;
        }
        let mut cgroup = Cgroup::skeleton(layout, PARENT, &name);
        cgroup.dirs.retain(|d| d.exists());
        let _ = cgroup.remove();
    }
}

/// What [`Cgroup::stats`] reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of memory in use, as `docker stats` counts them: the usage less the inactive page
    /// cache (which the kernel reclaims first); 0 without a memory controller.
    pub memory_usage: u64,
    /// The memory limit in bytes; `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// Processes and threads (`pids.current`; without a pids controller, the processes).
    pub pids_current: u64,
    /// `None` when unlimited.
    pub pids_limit: Option<u64>,
    /// CPU time used by every process of the cgroup since it was made, in nanoseconds.
    pub cpu_usage_ns: u64,
}

/// A sandbox's cgroup: one directory per hierarchy. One made by [`create`](Cgroup::create) is
/// removed by [`remove`](Cgroup::remove) or, failing that, on drop; one found by
/// [`open`](Cgroup::open) only by `remove`.
#[derive(Debug)]
pub struct Cgroup {
    /// The directory under each hierarchy's root that holds it: [`PARENT`], or the one
    /// `--cgroup-parent` names.
    parent: String,
    name: String,
    /// Every directory, in creation order (v1 hierarchies, then cgroup2).
    dirs: Vec<PathBuf>,
    /// Our controllers' directories.
    controllers: Vec<(Controller, PathBuf, bool)>,
    /// The directory in the cgroup2 tree.
    v2: Option<PathBuf>,
    /// Dropping removes the cgroup.
    owned: bool,
}

impl Cgroup {
    /// Paths for cgroup `name` under `parent`, nothing made.
    fn skeleton(layout: &Layout, parent: &str, name: &str) -> Cgroup {
        let dirs = layout.roots().iter().map(|r| r.join(parent).join(name)).collect();
        let controllers = Controller::ALL
            .iter()
            .filter_map(|&c| {
                let v2 = layout.location(c) == Some(&Location::V2);
                layout.dir(c, parent, name).map(|d| (c, d, v2))
            })
            .collect();
        let v2 = layout.v2_root().map(|r| r.join(parent).join(name));
        Cgroup { parent: parent.to_string(), name: name.to_string(), dirs, controllers, v2, owned: false }
    }

    /// The existing cgroup `name` ([`Cgroup::name`] of a sandbox, from any process: for pause,
    /// stats, top and kill from outside the process that made it). Dropping the handle leaves
    /// the cgroup alone.
    pub fn open(name: &str) -> Result<Cgroup, Error> {
        check_name(name)?;
        let mut cgroup = Cgroup::skeleton(layout()?, PARENT, name);
        cgroup.dirs.retain(|d| d.is_dir());
        if cgroup.dirs.is_empty() {
            return Err(Error::NotFound(name.to_string()));
        }
        Ok(cgroup)
    }

    /// Makes cgroup `name` in every hierarchy and writes `resources`' limits into it. Fails if
    /// it exists already, or if a limit needs a controller the machine lacks; on any failure,
    /// the directories made so far are removed again.
    pub fn create(layout: &Layout, name: &str, resources: &Resources) -> Result<Cgroup, Error> {
        Cgroup::create_in(layout, PARENT, name, resources)
    }

    /// [`Cgroup::create`] under `parent` (`--cgroup-parent`: a path relative to each
    /// hierarchy's root, made if missing and left in place afterwards, as docker does).
    pub fn create_in(
        layout: &Layout,
        parent: &str,
        name: &str,
        resources: &Resources,
    ) -> Result<Cgroup, Error> {
        check_name(name)?;
        let parent = check_parent(parent)?;
        let need = |c: Controller, what: &'static str, wanted: bool| {
            if wanted && layout.location(c).is_none() {
                return Err(Error::MissingController { what, controller: c.name() });
            }
            Ok(())
        };
        need(Controller::Memory, "--memory", resources.memory.is_some())?;
        need(Controller::Cpu, "--cpus", resources.cpu_quota.is_some() || resources.cpu_period.is_some())?;
        need(Controller::Cpu, "--cpu-shares", resources.cpu_shares.is_some())?;
        need(Controller::Pids, "--pids-limit", resources.pids.is_some())?;

        let v2_wanted = [
            (Controller::Memory, resources.memory.is_some()),
            (Controller::Pids, resources.pids.is_some()),
            (
                Controller::Cpu,
                resources.cpu_quota.is_some()
                    || resources.cpu_period.is_some()
                    || resources.cpu_shares.is_some(),
            ),
        ];
        if let Some(v2_root) = layout.v2_root() {
            // The root and every directory down to the parent delegate the controllers.
            let mut chain = vec![v2_root.to_path_buf()];
            for component in parent.split('/') {
                let next = chain[chain.len() - 1].join(component);
                mkdir_shared(&next)?;
                chain.push(next);
            }
            for (c, needed) in v2_wanted {
                if layout.location(c) != Some(&Location::V2) {
                    continue;
                }
                for dir in &chain {
                    // Without a limit, a controller is only for accounting: not worth failing for.
                    match enable_controller(dir, c.name()) {
                        Err(e) if needed => return Err(e),
                        _ => {}
                    }
                }
            }
        }

        let mut cgroup = Cgroup::skeleton(layout, &parent, name);
        cgroup.owned = true;
        let dirs = std::mem::take(&mut cgroup.dirs);
        // From here on, an early return drops `cgroup`, which removes what is in `dirs`.
        for dir in dirs {
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent).map_err(|source| Error::Mkdir { path: parent.into(), source })?;
            }
            match fs::create_dir(&dir) {
                Ok(()) => cgroup.dirs.push(dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(Error::Exists { path: dir });
                }
                Err(source) => return Err(Error::Mkdir { path: dir, source }),
            }
        }
        cgroup.write_limits(resources)?;
        Ok(cgroup)
    }

    fn write_limits(&self, r: &Resources) -> Result<(), Error> {
        if let Some(memory) = r.memory
            && let Some((dir, v2)) = self.controller_dir(Controller::Memory)
        {
            let memory = memory.to_string();
            if v2 {
                write_file(&dir.join("memory.max"), &memory)?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write_file(&swap, "0")?;
                }
            } else {
                // memsw (memory + swap) may not be below the memory limit: memory first.
                write_file(&dir.join("memory.limit_in_bytes"), &memory)?;
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write_file(&memsw, &memory)?;
                }
            }
        }
        if let Some((dir, v2)) = self.controller_dir(Controller::Cpu) {
            if v2 {
                if r.cpu_quota.is_some() || r.cpu_period.is_some() {
                    let quota = r.cpu_quota.map_or("max".to_string(), |q| q.to_string());
                    let period = r.cpu_period.unwrap_or(DEFAULT_CPU_PERIOD);
                    write_file(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
                }
                if let Some(shares) = r.cpu_shares {
                    write_file(&dir.join("cpu.weight"), &shares_to_weight(shares).to_string())?;
                }
            } else {
                if let Some(period) = r.cpu_period {
                    write_file(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                }
                if let Some(quota) = r.cpu_quota {
                    write_file(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
                if let Some(shares) = r.cpu_shares {
                    write_file(&dir.join("cpu.shares"), &shares.to_string())?;
                }
            }
        }
        if let Some(pids) = r.pids
            && let Some((dir, _)) = self.controller_dir(Controller::Pids)
        {
            write_file(&dir.join("pids.max"), &pids.to_string())?;
        }
        Ok(())
    }

    /// The cgroup's name (the last component of each of its directories).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cgroup as OCI's `cgroupsPath` spells it: `/rbuild/<name>`, relative to each
    /// hierarchy's root.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.parent, self.name)
    }

    /// Every directory of the cgroup (one per hierarchy).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The directory holding `controller`'s files, if the machine has that controller.
    pub fn dir(&self, controller: Controller) -> Option<&Path> {
        self.controller_dir(controller).map(|(d, _)| d)
    }

    fn controller_dir(&self, controller: Controller) -> Option<(&Path, bool)> {
        self.controllers.iter().find(|(c, _, _)| *c == controller).map(|(_, d, v2)| (d.as_path(), *v2))
    }

    /// The `cgroup.procs` file of each directory: the sandbox's PID 1 writes `0` into each (v1
    /// and v2 both read `0` as "the writing process") to join, before it forks anything.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Whether the OOM killer has killed a process of the cgroup.
    pub fn oom_killed(&self) -> bool {
        let Some((dir, v2)) = self.controller_dir(Controller::Memory) else { return false };
        let (file, keys): (_, &[&str]) = if v2 {
            ("memory.events", &["oom_kill", "oom_group_kill"])
        } else {
            ("memory.oom_control", &["oom_kill"])
        };
        let Ok(text) = fs::read_to_string(dir.join(file)) else { return false };
        keys.iter().any(|k| flat_keyed(&text, k).is_some_and(|n| n > 0))
    }

    /// Bytes of memory the cgroup uses now (page cache included), if it has a memory controller.
    pub fn memory_usage(&self) -> Option<u64> {
        let (dir, v2) = self.controller_dir(Controller::Memory)?;
        let file = if v2 { "memory.current" } else { "memory.usage_in_bytes" };
        fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
    }

    /// Every process in the cgroup (and in cgroups the sandbox made below it), in any of its
    /// hierarchies, as pids of this process's pid namespace.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in &self.dirs {
            collect_pids(dir, &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Freezes the cgroup's processes (`docker pause`) and waits, up to 1 s, until they are:
    /// through the freezer's location (v1 `freezer.state`, or cgroup2's `cgroup.freeze`).
    pub fn freeze(&self) -> Result<(), Error> {
        self.set_frozen(true)
    }

    /// Lets frozen processes run again (`docker unpause`).
    pub fn thaw(&self) -> Result<(), Error> {
        self.set_frozen(false)
    }

    /// Whether the cgroup is frozen (or freezing); false without a freezer.
    pub fn is_frozen(&self) -> bool {
        match self.controller_dir(Controller::Freezer) {
            Some((dir, true)) => read_file(&dir.join("cgroup.freeze")).is_ok_and(|t| t.trim() == "1"),
            Some((dir, false)) => read_file(&dir.join("freezer.state")).is_ok_and(|t| t.trim() != "THAWED"),
            None => false,
        }
    }

    /// What `docker stats` shows of the cgroup: memory, pids, CPU time. A figure whose
    /// controller this machine lacks is 0 or `None`.
    pub fn stats(&self) -> Result<Stats, Error> {
        let mut stats = Stats::default();
        if let Some((dir, v2)) = self.controller_dir(Controller::Memory) {
            let (usage, limit, inactive) = if v2 {
                ("memory.current", "memory.max", "inactive_file")
            } else {
                ("memory.usage_in_bytes", "memory.limit_in_bytes", "total_inactive_file")
            };
            let usage = read_number(&dir.join(usage))?.unwrap_or(0);
            let cache = read_file(&dir.join("memory.stat")).ok().and_then(|t| flat_keyed(&t, inactive));
            stats.memory_usage = usage.saturating_sub(cache.filter(|&c| c < usage).unwrap_or(0));
            // v1 says "no limit" with the largest page-aligned value (PAGE_COUNTER_MAX pages).
            stats.memory_limit = read_number(&dir.join(limit))?.filter(|&l| l < 1 << 62);
        }
        match self.controller_dir(Controller::Pids) {
            Some((dir, _)) => {
                stats.pids_current = read_number(&dir.join("pids.current"))?.unwrap_or(0);
                stats.pids_limit = read_number(&dir.join("pids.max"))?;
            }
            None => stats.pids_current = self.pids().len() as u64,
        }
        stats.cpu_usage_ns = match self.controller_dir(Controller::Cpuacct) {
            Some((dir, false)) => read_number(&dir.join("cpuacct.usage"))?.unwrap_or(0),
            Some((dir, true)) => {
                let text = read_file(&dir.join("cpu.stat"))?;
                flat_keyed(&text, "usage_usec").unwrap_or(0).saturating_mul(1000)
            }
            None => 0,
        };
        Ok(stats)
    }

    /// Freezes (`true`) or thaws, waiting for a freeze to complete (up to 1 s).
    fn set_frozen(&self, frozen: bool) -> Result<(), Error> {
        let Some((dir, v2)) = self.controller_dir(Controller::Freezer) else {
            return Err(Error::MissingController { what: "freezing", controller: "freezer" });
        };
        if v2 {
            write_file(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
        } else {
            write_file(&dir.join("freezer.state"), if frozen { "FROZEN" } else { "THAWED" })?;
        }
        if frozen {
            let done = || {
                if v2 {
                    read_file(&dir.join("cgroup.events")).is_ok_and(|t| flat_keyed(&t, "frozen") == Some(1))
                } else {
                    read_file(&dir.join("freezer.state")).is_ok_and(|t| t.trim() == "FROZEN")
                }
            };
            poll_until(Duration::from_secs(1), done);
        }
        Ok(())
    }

    /// Kills every process of the cgroup (see the module docs for how) and waits, up to 2 s,
    /// until none is left.
    pub fn kill_all(&self) -> Result<(), Error> {
        let kill_file = self.v2.as_ref().map(|d| d.join("cgroup.kill")).filter(|f| f.exists());
        let freezer = self.controller_dir(Controller::Freezer).is_some_and(|(_, v2)| !v2);
        let start = Instant::now();
        let mut first = true;
        let mut by_kernel = false;
        let empty = poll_until(EMPTY_TIMEOUT, || {
            let pids = self.pids();
            if pids.is_empty() {
                return true;
            }
            if first {
                first = false;
                // The kernel kills the whole tree, and what is forked meanwhile.
                by_kernel = kill_file.as_ref().is_some_and(|f| write_file(f, "1").is_ok());
                if !by_kernel && freezer {
                    // Frozen, nothing forks or exits: one round kills every process.
                    let _ = self.set_frozen(true);
                    kill_pids(&self.pids());
                } else if !by_kernel {
                    kill_pids(&pids);
                }
                if freezer {
                    // A process frozen by the v1 freezer dies only once thawed (also when it
                    // was frozen by `freeze` and killed through cgroup.kill).
                    let _ = self.set_frozen(false);
                }
            } else if !by_kernel || start.elapsed() > Duration::from_millis(200) {
                // Forked between read and kill, or (with cgroup.kill) somehow missed.
                kill_pids(&pids);
            }
            false
        });
        if empty {
            return Ok(());
        }
        let path = self.dirs.first().cloned().unwrap_or_default();
        Err(Error::NotEmpty { path, pids: self.pids() })
    }

    /// Kills what is left in the cgroup, waits until it is empty and removes every directory.
    pub fn remove(mut self) -> Result<(), Error> {
        self.owned = false;
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<(), Error> {
        // Fast path: a sandbox that has ended leaves its cgroup empty, and rmdir succeeds at
        // once (reading v1 `cgroup.procs` costs the kernel a pidlist per directory).
        let mut busy = false;
        for dir in self.dirs.iter().rev() {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => busy = true,
            }
        }
        if !busy {
            return Ok(());
        }
        let killed = self.kill_all();
        let mut result = Ok(());
        for dir in self.dirs.iter().rev() {
            if let Err(e) = remove_tree(dir)
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        // A leftover process is the reason a directory could not go.
        killed.and(result)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self.owned {
            self.owned = false;
            let _ = self.remove_now();
        }
    }
}

/// A `--cgroup-parent`: a relative path (leading and trailing `/` dropped) without `.`, `..`
/// or empty components.
fn check_parent(parent: &str) -> Result<String, Error> {
    let trimmed = parent.trim_matches('/');
    if trimmed.is_empty()
        || trimmed.contains(['\0', '\n'])
        || trimmed.split('/').any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Error::InvalidName(parent.to_string()));
    }
    Ok(trimmed.to_string())
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0', '\n']) {
        return Err(Error::InvalidName(name.to_string()));
    }
    Ok(())
}

/// A cgroup file holding one number, or `max` (`None`).
fn read_number(path: &Path) -> Result<Option<u64>, Error> {
    let text = read_file(path)?;
    let text = text.trim();
    if text == "max" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| Error::Read {
        path: path.into(),
        source: io::Error::new(io::ErrorKind::InvalidData, format!("{text:?} is not a number")),
    })
}

/// runc's conversion of cgroup v1 `cpu.shares` (2..=262144) to cgroup2 `cpu.weight`
/// (1..=10000): 1024 shares give 39.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// A `key value` line's value, in a flat-keyed file (`memory.events`, `memory.oom_control`).
fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

fn read_file(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::Read { path: path.into(), source })
}

/// Writes `value` in a single `write`, to an existing file (cgroupfs files are never created).
fn write_file(path: &Path, value: &str) -> Result<(), Error> {
    let err = |source| Error::Write { value: value.to_string(), path: path.into(), source };
    let mut file = OpenOptions::new().write(true).open(path).map_err(err)?;
    match file.write(value.as_bytes()) {
        Ok(n) if n == value.len() => Ok(()),
        Ok(_) => Err(err(io::Error::from(io::ErrorKind::WriteZero))),
        Err(e) => Err(err(e)),
    }
}

/// `mkdir` that is fine with the directory existing (the shared `rbuild/`).
fn mkdir_shared(path: &Path) -> Result<(), Error> {
    match fs::create_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(Error::Mkdir { path: path.into(), source: e })
        }
        _ => Ok(()),
    }
}

/// Enables a cgroup2 controller for `dir`'s children, unless it is already.
fn enable_controller(dir: &Path, controller: &str) -> Result<(), Error> {
    let file = dir.join("cgroup.subtree_control");
    if read_file(&file)?.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    write_file(&file, &format!("+{controller}"))
}

fn collect_pids(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for sub in subdirs(dir) {
        collect_pids(&sub, pids);
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect()
}

fn kill_pids(pids: &[i32]) {
    for &pid in pids {
        if pid > 0 {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// `rmdir`s `dir` after its sub-cgroups; gone already is fine. `EBUSY` (a process still
/// exiting, a css still going offline) is retried for a while.
fn remove_tree(dir: &Path) -> Result<(), Error> {
    for sub in subdirs(dir) {
        remove_tree(&sub)?;
    }
    let mut result = Ok(());
    poll_until(RMDIR_TIMEOUT, || {
        result = match fs::remove_dir(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::Rmdir { path: dir.into(), source: e })
            }
            _ => Ok(()),
        };
        !matches!(&result, Err(Error::Rmdir { source, .. }) if source.raw_os_error() == Some(libc::EBUSY))
    });
    result
}

/// Calls `done` until it returns true or `timeout` has passed (then one last time), sleeping
/// from 100 µs doubling up to 10 ms between calls. Returns the last result.
fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(100);
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cgroup_parent_is_a_relative_path_inside_the_tree() {
        assert_eq!(super::check_parent("/build/ci/").unwrap(), "build/ci");
        for bad in ["", "/", "../x", "a/../b", "a//b", "./a"] {
            assert!(super::check_parent(bad).is_err(), "{bad:?}");
        }
    }

    use super::*;

    /// This machine: systemd-less hybrid, cgroup2 at /sys/fs/cgroup/unified with only hugetlb.
    const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k,nr_inodes=3083615,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
28 27 0:25 / /mnt/sandboxing/model_tools_env/v1/python ro,nosuid,nodev,relatime - tmpfs model_tools_unavailable ro,size=4k,mode=755
29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A pure v2 host (Fedora, Ubuntu 22.04+).
    const PURE_V2: &str = "\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
24 23 0:6 / /sys/kernel/security rw,nosuid,nodev,noexec,relatime shared:3 - securityfs securityfs rw
25 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
26 23 0:27 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:5 - pstore pstore rw
27 22 0:5 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
";
    const PURE_V2_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids rdma misc\n";

    /// A pure v1 host without cgroup2, without a pids controller (an old kernel), with a
    /// mountpoint holding a space (`\040`) and a hierarchy bind-mounted a second time.
    const PURE_V1: &str = "\
18 1 8:1 / / rw,relatime shared:1 - xfs /dev/sda1 rw
19 18 0:18 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
20 19 0:19 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:3 - tmpfs tmpfs ro,mode=755
21 20 0:20 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:4 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
22 20 0:21 / /sys/fs/cgroup/memory\\040limits rw,nosuid,nodev,noexec,relatime shared:5 - cgroup cgroup rw,memory
23 20 0:22 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,cpu
24 20 0:23 / /sys/fs/cgroup/cpuacct rw,nosuid,nodev,noexec,relatime shared:7 - cgroup cgroup rw,cpuacct
25 20 0:24 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,freezer
26 20 0:25 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,devices
27 18 0:21 /sub /mnt/memory rw,relatime shared:5 - cgroup cgroup rw,memory
";

    /// Ubuntu 18.04: v1 with `cpu,cpuacct` and `net_cls,net_prio` co-mounted, plus systemd's
    /// cgroup2 mount holding no controller.
    const COMOUNTED: &str = "\
24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
29 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
31 24 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:28 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
33 31 0:29 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
36 31 0:32 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,net_cls,net_prio
37 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
38 31 0:34 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
39 31 0:35 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
40 31 0:36 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,freezer
";

    fn controllers(text: &'static str) -> impl Fn(&Path) -> Option<String> {
        move |_| Some(text.to_string())
    }

    fn v1(path: &str) -> Option<&Location> {
        // Leaked: a test's few bytes, for comparing with `location`'s reference.
        Some(Box::leak(Box::new(Location::V1(PathBuf::from(path)))))
    }

    #[test]
    fn hybrid() {
        let layout = Layout::parse(HYBRID, |root| {
            assert_eq!(root, Path::new("/sys/fs/cgroup/unified"));
            Some("hugetlb\n".to_string())
        })
        .unwrap();
        assert_eq!(layout.mode(), Mode::Hybrid);
        assert_eq!(layout.v2_root(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(layout.v2_controllers(), ["hugetlb"]);
        assert_eq!(layout.location(Controller::Memory), v1("/sys/fs/cgroup/memory"));
        assert_eq!(layout.location(Controller::Cpu), v1("/sys/fs/cgroup/cpu"));
        assert_eq!(layout.location(Controller::Cpuacct), v1("/sys/fs/cgroup/cpuacct"));
        assert_eq!(layout.location(Controller::Pids), v1("/sys/fs/cgroup/pids"));
        assert_eq!(layout.location(Controller::Freezer), v1("/sys/fs/cgroup/freezer"));
        let roots: Vec<&str> = layout.roots().iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            roots,
            [
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/cpuacct",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup/freezer",
                "/sys/fs/cgroup/unified",
            ]
        );
        assert_eq!(layout.v1_hierarchies().len(), 9);
        let systemd = layout.v1_hierarchies().iter().find(|h| h.root.ends_with("systemd")).unwrap();
        assert!(systemd.controllers.is_empty());
    }

    #[test]
    fn pure_v2() {
        let layout = Layout::parse(PURE_V2, controllers(PURE_V2_CONTROLLERS)).unwrap();
        assert_eq!(layout.mode(), Mode::V2);
        assert_eq!(layout.v2_root(), Some(Path::new("/sys/fs/cgroup")));
        for c in Controller::ALL {
            assert_eq!(layout.location(c), Some(&Location::V2), "{c:?}");
        }
        assert_eq!(layout.roots(), [Path::new("/sys/fs/cgroup")]);
        let cg = Cgroup::skeleton(&layout, PARENT, "1-1");
        assert_eq!(cg.dir(Controller::Memory), Some(Path::new("/sys/fs/cgroup/rbuild/1-1")));
        assert_eq!(cg.procs_files(), [PathBuf::from("/sys/fs/cgroup/rbuild/1-1/cgroup.procs")]);
        assert_eq!(cg.path(), "/rbuild/1-1");
        std::mem::forget(cg);
    }

    #[test]
    fn pure_v2_without_memory() {
        let layout = Layout::parse(PURE_V2, controllers("cpu pids\n")).unwrap();
        assert_eq!(layout.location(Controller::Memory), None);
        assert_eq!(layout.location(Controller::Freezer), Some(&Location::V2));
        let r = Resources { memory: Some(64 << 20), ..Resources::default() };
        let err = Cgroup::create(&layout, "x-1", &r).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--memory needs the memory cgroup controller, which this machine does not have"
        );
    }

    #[test]
    fn pure_v1() {
        let layout = Layout::parse(PURE_V1, |_| panic!("no cgroup2 here")).unwrap();
        assert_eq!(layout.mode(), Mode::V1);
        assert_eq!(layout.v2_root(), None);
        assert_eq!(layout.location(Controller::Memory), v1("/sys/fs/cgroup/memory limits"));
        assert_eq!(layout.location(Controller::Pids), None);
        assert_eq!(layout.location(Controller::Freezer), v1("/sys/fs/cgroup/freezer"));
        // The bind mount of a sub-cgroup (/mnt/memory) is the same hierarchy: not used twice.
        let memory: Vec<_> = layout.v1_hierarchies().iter().filter(|h| h.controllers == ["memory"]).collect();
        assert_eq!(memory.len(), 1);
        let r = Resources { pids: Some(10), ..Resources::default() };
        let err = Cgroup::create(&layout, "x-1", &r).unwrap_err();
        assert!(
            matches!(err, Error::MissingController { what: "--pids-limit", controller: "pids" }),
            "{err}"
        );
    }

    #[test]
    fn comounted_cpu_cpuacct() {
        let layout = Layout::parse(COMOUNTED, controllers("")).unwrap();
        assert_eq!(layout.mode(), Mode::Hybrid);
        assert_eq!(layout.v2_controllers(), [] as [String; 0]);
        assert_eq!(layout.location(Controller::Cpu), v1("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(layout.location(Controller::Cpuacct), v1("/sys/fs/cgroup/cpu,cpuacct"));
        let roots: Vec<&str> = layout.roots().iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            roots,
            [
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup/freezer",
                "/sys/fs/cgroup/unified",
            ]
        );
        let h = layout.v1_hierarchies().iter().find(|h| h.root.ends_with("cpu,cpuacct")).unwrap();
        assert_eq!(h.controllers, ["cpu", "cpuacct"]);
    }

    #[test]
    fn unreadable_v2_is_ignored_and_overmounts_hide() {
        // cgroup.controllers unreadable: the cgroup2 mount is not used.
        let layout = Layout::parse(COMOUNTED, |_| None).unwrap();
        assert_eq!(layout.mode(), Mode::V1);
        assert_eq!(layout.v2_root(), None);
        // A tmpfs mounted over the cgroup2 mount hides it.
        let hidden = format!("{PURE_V2}28 25 0:40 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n");
        assert!(matches!(Layout::parse(&hidden, controllers(PURE_V2_CONTROLLERS)), Err(Error::NotMounted)));
        let none = "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n";
        assert!(matches!(Layout::parse(none, |_| None), Err(Error::NotMounted)));
        // Only a named hierarchy: nothing to limit or track with.
        let named = format!("{none}23 22 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n");
        assert!(matches!(Layout::parse(&named, |_| None), Err(Error::NotMounted)));
    }

    #[test]
    fn shares_conversion_matches_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(1 << 30), 10_000);
    }

    #[test]
    fn names() {
        let a = sandbox_name();
        let b = sandbox_name();
        assert_ne!(a, b);
        assert_eq!(parse_name(&a).map(|(pid, _)| pid), Some(std::process::id() as i32));
        assert_eq!(parse_name("12-3"), Some((12, 3)));
        for other in ["test-12-3", "12", "12-", "-3", "012-3", "12-3x", "99999999999-1", "docker"] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn flat_keyed_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(flat_keyed(v1, "oom_kill"), Some(3));
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n";
        assert_eq!(flat_keyed(v2, "oom"), Some(1));
        assert_eq!(flat_keyed(v2, "oom_kill"), Some(0));
        assert_eq!(flat_keyed(v2, "nope"), None);
    }

    /// `stats` over fake cgroup files (cgroupfs is not needed to read them): a pure v2
    /// machine and a pure v1 one, limited and not.
    #[test]
    fn stats_read_v1_and_v2_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let write = |dir: &Path, files: &[(&str, &str)]| {
            fs::create_dir_all(dir).unwrap();
            for (name, text) in files {
                fs::write(dir.join(name), text).unwrap();
            }
        };

        let v2 = root.join("v2");
        let mountinfo = format!(
            "22 1 252:1 / / rw - ext4 /dev/vda1 rw\n25 22 0:26 / {} rw - cgroup2 cgroup2 rw\n",
            v2.display()
        );
        let layout = Layout::parse(&mountinfo, controllers(PURE_V2_CONTROLLERS)).unwrap();
        let cg = Cgroup::skeleton(&layout, PARENT, "1-1");
        write(
            &v2.join("rbuild/1-1"),
            &[
                ("memory.current", "10000\n"),
                ("memory.max", "65536\n"),
                ("memory.stat", "anon 6000\nfile 4000\ninactive_file 3000\nactive_file 1000\n"),
                ("pids.current", "3\n"),
                ("pids.max", "max\n"),
                ("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"),
            ],
        );
        let stats = cg.stats().unwrap();
        assert_eq!(
            stats,
            Stats {
                memory_usage: 7000,
                memory_limit: Some(65536),
                pids_current: 3,
                pids_limit: None,
                cpu_usage_ns: 1_500_000
            }
        );

        let v1 = |c: &str| root.join("v1").join(c);
        let mountinfo = ["memory", "pids", "cpuacct"]
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!("{} 1 0:{} / {} rw - cgroup cgroup rw,{c}\n", 30 + i, 40 + i, v1(c).display())
            })
            .collect::<String>();
        let layout = Layout::parse(&mountinfo, |_| None).unwrap();
        let cg = Cgroup::skeleton(&layout, PARENT, "1-2");
        write(
            &v1("memory").join("rbuild/1-2"),
            &[
                ("memory.usage_in_bytes", "10000\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.stat", "cache 4000\ninactive_file 100\ntotal_inactive_file 2000\n"),
            ],
        );
        write(&v1("pids").join("rbuild/1-2"), &[("pids.current", "2\n"), ("pids.max", "50\n")]);
        write(&v1("cpuacct").join("rbuild/1-2"), &[("cpuacct.usage", "123456\n")]);
        let stats = cg.stats().unwrap();
        assert_eq!(
            stats,
            Stats {
                memory_usage: 8000,
                memory_limit: None,
                pids_current: 2,
                pids_limit: Some(50),
                cpu_usage_ns: 123_456
            }
        );
        fs::write(v1("pids").join("rbuild/1-2/pids.max"), "lots\n").unwrap();
        let err = hostutil::errors::one_line(&cg.stats().unwrap_err());
        assert!(err.ends_with("pids.max: \"lots\" is not a number"), "{err}");
    }

    #[test]
    fn error_messages() {
        let e = Error::Write {
            value: "67108864".into(),
            path: "/sys/fs/cgroup/memory/rbuild/12-1/memory.limit_in_bytes".into(),
            source: io::Error::from_raw_os_error(libc::EBUSY),
        };
        assert_eq!(
            hostutil::errors::one_line(&e),
            "cgroup: write 67108864 to /sys/fs/cgroup/memory/rbuild/12-1/memory.limit_in_bytes: \
             Device or resource busy"
        );
        assert!(!e.is_permission());
        let e = Error::Mkdir { path: "/x".into(), source: io::Error::from_raw_os_error(libc::EROFS) };
        assert!(e.is_permission());
    }
}
