//! The wire format between [`crate::run`] and the re-executed init: an OCI runtime spec plus
//! what OCI cannot carry (the overlay's layers, secret contents, the cgroup to join).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{
    Capability, Linux, LinuxCapabilities, LinuxCpu, LinuxMemory, LinuxNamespace, LinuxNamespaceType,
    LinuxPids, LinuxResources, LinuxSeccomp, Mount as OciMount, PosixRlimit, PosixRlimitType,
    Process as OciProcess, Root, Spec, User,
};
use serde::{Deserialize, Serialize};

use crate::{Error, MountKind, NetworkMode, Rootfs, SandboxSpec};

/// The Dockerfile `USER` string, unresolved: only the init can read the rootfs's /etc/passwd,
/// so `process.user.uid/gid` in the OCI spec are placeholders until then.
pub const USER_ANNOTATION: &str = "org.rbuild.user";

/// The OCI mount `type` of a [`MountKind::Secret`]; its `source` is `secret:<index>` into
/// [`InitConfig::secrets`].
const SECRET_TYPE: &str = "rbuild-secret";

/// The option that marks a bind mount as a [`MountKind::Volume`] to fill from the image.
const POPULATE_OPTION: &str = "rbuild.populate";

/// Docker's masked paths: files get /dev/null bound over them, directories an empty read-only
/// tmpfs, so the host's kernel details they expose stay hidden.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths: kernel knobs a container must not turn.
pub const READONLY_PATHS: &[&str] =
    &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// A file made from bytes inside the sandbox (never written to disk).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretFile {
    pub contents: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What the init reads, as JSON, from the file descriptor named on its command line.
///
/// The init honours, from `oci`: `process.args/env/cwd/capabilities/noNewPrivileges/rlimits`,
/// `hostname`, `root.path` (where the overlay is mounted), `mounts` (types bind, overlay, tmpfs
/// and rbuild's secret type, after the fixed /proc, /dev and /sys), `linux.namespaces` (types
/// only), `linux.maskedPaths/readonlyPaths`, `linux.seccomp`, and the [`USER_ANNOTATION`].
/// `linux.resources` and `cgroupsPath` describe the cgroup, which rbuild made before starting
/// the init; the init only joins it through `cgroup_procs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    pub oci: Spec,
    pub overlay: Rootfs,
    pub secrets: Vec<SecretFile>,
    /// The `cgroup.procs` files PID 1 writes itself into before anything else.
    pub cgroup_procs: Vec<PathBuf>,
    /// The cgroup filesystems to mount read-only under /sys/fs/cgroup (seen through the
    /// cgroup namespace, so the sandbox's own cgroup is their root and its limits are readable,
    /// as a JVM or `nproc` expect).
    pub cgroup_fs: Vec<CgroupFs>,
    /// Set by [`crate::spawn`]: the sandbox is long-running and reports its start.
    #[serde(default)]
    pub spawn: Option<SpawnConfig>,
    /// Bytes of the /dev/shm tmpfs (`--shm-size`; default 64 MiB). OCI would carry it as a
    /// mount, but the init makes /dev itself.
    #[serde(default)]
    pub shm_size: Option<u64>,
}

/// How a spawned sandbox's init behaves (see [`crate::SpawnOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnConfig {
    /// rbuild-init stays PID 1 and forwards signals; otherwise the command is PID 1.
    pub init: bool,
    /// stdin is a terminal to bind at /dev/console and make the controlling terminal.
    pub console: bool,
}

/// One cgroup filesystem mount in the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CgroupFs {
    /// Under /sys/fs/cgroup; empty for cgroup2 alone (mounted on /sys/fs/cgroup itself).
    pub dir: String,
    /// `cgroup` (v1) or `cgroup2`.
    pub fstype: String,
    /// For v1, the hierarchy's controllers (`cpu,cpuacct`).
    pub data: String,
}

impl CgroupFs {
    /// What the sandbox mounts for `layout`: each v1 hierarchy holding controllers, and the
    /// cgroup2 tree (at `unified/` beside v1 ones, as systemd's hybrid layout has it).
    pub fn for_layout(layout: &crate::cgroup::Layout) -> Vec<CgroupFs> {
        let mut out: Vec<CgroupFs> = layout
            .v1_hierarchies()
            .iter()
            .filter(|h| !h.controllers.is_empty())
            .map(|h| CgroupFs {
                dir: h.controllers.join(","),
                fstype: "cgroup".into(),
                data: h.controllers.join(","),
            })
            .collect();
        if layout.v2_root().is_some() {
            let dir = if out.is_empty() { String::new() } else { "unified".into() };
            out.push(CgroupFs { dir, fstype: "cgroup2".into(), data: String::new() });
        }
        out
    }
}

impl InitConfig {
    pub fn new(
        spec: &SandboxSpec,
        cgroup_path: Option<&str>,
        cgroup_procs: Vec<PathBuf>,
        cgroup_fs: Vec<CgroupFs>,
    ) -> Result<InitConfig, Error> {
        validate(spec)?;
        let security = &spec.security;
        let capset =
            crate::caps::parse(&security.capabilities).map_err(|e| Error::InvalidSpec(e.to_string()))?;
        let caps: Vec<Capability> = security
            .capabilities
            .iter()
            .map(|c| {
                serde_json::from_value(serde_json::Value::String(c.clone()))
                    .map_err(|_| Error::InvalidSpec(format!("unknown capability {c:?}")))
            })
            .collect::<Result<_, _>>()?;
        let set: oci_spec::runtime::Capabilities = caps.into_iter().collect();
        let mut capabilities = LinuxCapabilities::default();
        // As Docker since 20.10.14: no inheritable or ambient capabilities.
        capabilities
            .set_bounding(Some(set.clone()))
            .set_effective(Some(set.clone()))
            .set_permitted(Some(set))
            .set_inheritable(Some(Default::default()))
            .set_ambient(Some(Default::default()));
        let (_, nofile_hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_err(|e| Error::Setup { step: "read the open-files limit", source: e.into() })?;
        // Within the hard limit rbuild has: raising it needs CAP_SYS_RESOURCE.
        let rlimit = |typ, soft, hard| {
            oci_spec::runtime::PosixRlimitBuilder::default()
                .typ(typ)
                .hard(hard)
                .soft(soft)
                .build()
                .map_err(|e| Error::InvalidSpec(e.to_string()))
        };
        let mut rlimits = vec![rlimit(PosixRlimitType::RlimitNofile, nofile_hard, nofile_hard)?];
        // `--ulimit`: each replaces the default of its kind.
        for u in &spec.limits.ulimits {
            let typ = rlimit_type(&u.name)
                .ok_or_else(|| Error::InvalidSpec(format!("invalid ulimit type: {}", u.name)))?;
            rlimits.retain(|r| r.typ() != typ);
            rlimits.push(rlimit(typ, u.soft, u.hard)?);
        }

        let mut process = OciProcess::default();
        process
            .set_args(Some(spec.process.args.clone()))
            .set_env(Some(spec.process.env.clone()))
            .set_cwd(PathBuf::from(&spec.process.cwd))
            .set_user(User::default())
            .set_capabilities(Some(capabilities))
            .set_rlimits(Some(rlimits))
            .set_no_new_privileges(Some(security.no_new_privileges))
            .set_apparmor_profile(None)
            .set_oom_score_adj(None)
            .set_selinux_label(None);

        let mut namespaces = vec![
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Cgroup,
        ];
        let mut join = None;
        match &spec.network {
            NetworkMode::None => namespaces.push(LinuxNamespaceType::Network),
            NetworkMode::Host => {}
            NetworkMode::Join(path) => join = Some(path.clone()),
        }
        let mut namespaces: Vec<LinuxNamespace> = namespaces
            .into_iter()
            .map(|typ| {
                let mut ns = LinuxNamespace::default();
                ns.set_typ(typ);
                ns
            })
            .collect();
        if let Some(path) = join {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(LinuxNamespaceType::Network).set_path(Some(path));
            namespaces.push(ns);
        }
        let mut linux = Linux::default();
        linux
            .set_namespaces(Some(namespaces))
            .set_resources(Some(resources(&spec.resources)))
            .set_cgroups_path(cgroup_path.map(PathBuf::from))
            .set_masked_paths(
                security.mask_paths.then(|| MASKED_PATHS.iter().map(|p| p.to_string()).collect()),
            )
            .set_readonly_paths(
                security.mask_paths.then(|| READONLY_PATHS.iter().map(|p| p.to_string()).collect()),
            )
            // Docker's profile as it applies to these capabilities (CAP_SYS_ADMIN unlocks mount...).
            .set_seccomp(security.seccomp.then(|| crate::seccomp::docker_profile(capset)));

        let mut root = Root::default();
        root.set_path(spec.rootfs.target.clone()).set_readonly(spec.readonly_rootfs.then_some(true));

        let mut secrets = Vec::new();
        let mounts = spec.mounts.iter().map(|m| oci_mount(m, &mut secrets)).collect();
        let mut oci = Spec::default();
        oci.set_root(Some(root))
            .set_mounts(Some(mounts))
            .set_process(Some(process))
            .set_hostname(Some(spec.hostname.clone()))
            .set_annotations(Some(HashMap::from([(USER_ANNOTATION.to_string(), spec.process.user.clone())])))
            .set_linux(Some(linux));
        Ok(InitConfig {
            oci,
            overlay: spec.rootfs.clone(),
            secrets,
            cgroup_procs,
            cgroup_fs,
            spawn: None,
            shm_size: spec.limits.shm_size,
        })
    }
}

fn resources(r: &crate::Resources) -> LinuxResources {
    let mut res = LinuxResources::default();
    let mut memory = LinuxMemory::default();
    memory.set_limit(r.memory.map(|m| m as i64)).set_swap(r.memory.map(|m| m as i64));
    let mut cpu = LinuxCpu::default();
    cpu.set_quota(r.cpu_quota.map(|q| q as i64)).set_period(r.cpu_period).set_shares(r.cpu_shares);
    let pids = r.pids.map(|p| {
        let mut pids = LinuxPids::default();
        pids.set_limit(p as i64);
        pids
    });
    res.set_devices(None)
        .set_memory(r.memory.is_some().then_some(memory))
        .set_cpu((r.cpu_quota.is_some() || r.cpu_shares.is_some()).then_some(cpu))
        .set_pids(pids);
    res
}

fn oci_mount(m: &crate::Mount, secrets: &mut Vec<SecretFile>) -> OciMount {
    let (typ, source, options): (&str, PathBuf, Vec<String>) = match &m.kind {
        MountKind::Bind { source, readonly } => {
            let mut o = vec!["rbind".to_string()];
            o.push(if *readonly { "ro" } else { "rw" }.into());
            ("bind", source.clone(), o)
        }
        MountKind::Volume { source, readonly, populate } => {
            let mut o = vec!["rbind".to_string()];
            o.push(if *readonly { "ro" } else { "rw" }.into());
            if *populate {
                o.push(POPULATE_OPTION.into());
            }
            ("bind", source.clone(), o)
        }
        MountKind::Overlay { lowers, upper } => {
            let lower = lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
            let mut o = vec![format!("lowerdir={lower}")];
            match upper {
                Some((u, w)) => {
                    o.extend([format!("upperdir={}", u.display()), format!("workdir={}", w.display())])
                }
                None => o.push("ro".into()),
            }
            ("overlay", PathBuf::from("overlay"), o)
        }
        MountKind::Tmpfs { size } => {
            let mut o = vec!["nosuid".to_string(), "nodev".to_string()];
            if let Some(size) = size {
                o.push(format!("size={size}"));
            }
            ("tmpfs", PathBuf::from("tmpfs"), o)
        }
        MountKind::Secret { contents, mode, uid, gid } => {
            secrets.push(SecretFile { contents: contents.clone(), mode: *mode, uid: *uid, gid: *gid });
            (SECRET_TYPE, PathBuf::from(format!("secret:{}", secrets.len() - 1)), vec!["ro".into()])
        }
    };
    let mut mount = OciMount::default();
    mount
        .set_destination(PathBuf::from(&m.target))
        .set_typ(Some(typ.to_string()))
        .set_source(Some(source))
        .set_options(Some(options));
    mount
}

/// The checks [`InitConfig::new`] makes of a process, also for [`crate::exec`].
pub(crate) fn validate_process(process: &crate::Process) -> Result<(), Error> {
    let invalid = |m: String| Err(Error::InvalidSpec(m));
    if process.args.is_empty() {
        return invalid("process.args is empty".into());
    }
    if !process.cwd.starts_with('/') {
        return invalid(format!("process.cwd {:?} is not absolute", process.cwd));
    }
    let strings = process.args.iter().chain(&process.env).chain([&process.cwd, &process.user]);
    if let Some(s) = strings.into_iter().find(|s| s.contains('\0')) {
        return invalid(format!("{s:?} contains a NUL byte"));
    }
    if let Some(e) = process.env.iter().find(|e| !e.contains('=')) {
        return invalid(format!("environment entry {e:?} is not NAME=value"));
    }
    Ok(())
}

fn validate(spec: &SandboxSpec) -> Result<(), Error> {
    let invalid = |m: String| Err(Error::InvalidSpec(m));
    validate_process(&spec.process)?;
    if spec.rootfs.lowers.is_empty() {
        return invalid("rootfs has no lower layer".into());
    }
    if spec.hostname.contains('\0') {
        return invalid(format!("{:?} contains a NUL byte", spec.hostname));
    }
    let mut paths: Vec<&Path> = spec.rootfs.lowers.iter().map(PathBuf::as_path).collect();
    paths.extend([&spec.rootfs.upper, &spec.rootfs.work, &spec.rootfs.target].map(PathBuf::as_path));
    if let NetworkMode::Join(p) = &spec.network {
        paths.push(p);
    }
    for m in &spec.mounts {
        if !m.target.starts_with('/') || m.target.contains('\0') {
            return invalid(format!("mount target {:?} is not an absolute path", m.target));
        }
        match &m.kind {
            MountKind::Bind { source, .. } | MountKind::Volume { source, .. } => paths.push(source),
            MountKind::Overlay { lowers, upper } => {
                if lowers.is_empty() || (upper.is_none() && lowers.len() < 2) {
                    return invalid(format!(
                        "overlay mount at {} needs two lowers, or a lower and an upper",
                        m.target
                    ));
                }
                paths.extend(lowers.iter().map(PathBuf::as_path));
                if let Some((u, w)) = upper {
                    paths.extend([u.as_path(), w.as_path()]);
                }
            }
            MountKind::Tmpfs { .. } | MountKind::Secret { .. } => {}
        }
    }
    if let Some(p) = paths.into_iter().find(|p| !p.is_absolute()) {
        return invalid(format!("path {} is not absolute", p.display()));
    }
    if let Some(p) = spec
        .mounts
        .iter()
        .flat_map(|m| match &m.kind {
            MountKind::Overlay { lowers, .. } => lowers.clone(),
            _ => Vec::new(),
        })
        .find(|p| p.as_os_str().as_encoded_bytes().iter().any(|b| matches!(b, b':' | b',')))
    {
        return invalid(format!("overlay layer path {} contains ':' or ','", p.display()));
    }
    Ok(())
}

/// A mount as the init performs it.
#[derive(Debug)]
pub(crate) enum PlanMount {
    /// `populate`: a volume to fill from the image first (see [`MountKind::Volume`]).
    Bind {
        source: PathBuf,
        readonly: bool,
        populate: bool,
    },
    Overlay {
        lowers: Vec<PathBuf>,
        upper: Option<(PathBuf, PathBuf)>,
    },
    Tmpfs {
        size: Option<u64>,
    },
    Secret(SecretFile),
}

/// What the init needs, pulled out of an [`InitConfig`] with every field it relies on checked.
#[derive(Debug)]
pub(crate) struct Plan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub hostname: Option<String>,
    /// Unshared by the supervisor (never the cgroup namespace: see `cgroupns`).
    pub namespaces: CloneFlags,
    /// A network namespace the supervisor joins (then `namespaces` has no CLONE_NEWNET).
    pub join_net: Option<PathBuf>,
    pub readonly_rootfs: bool,
    pub spawn: Option<SpawnConfig>,
    /// A cgroup namespace, unshared by PID 1 once it is in its cgroup, so the namespace's root
    /// is the sandbox's cgroup.
    pub cgroupns: bool,
    pub overlay: Rootfs,
    pub mounts: Vec<(String, PlanMount)>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// Capability names kept (the bounding set).
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
    pub seccomp: Option<LinuxSeccomp>,
    pub rlimits: Vec<PosixRlimit>,
    pub cgroup_procs: Vec<PathBuf>,
    pub cgroup_fs: Vec<CgroupFs>,
    pub shm_size: Option<u64>,
}

/// A spec the init cannot run: what rbuild's own writer ([`InitConfig::new`]) never produces.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("spec has no {0}")]
    Missing(&'static str),
    #[error("root.path {} is not the overlay target {}", root.display(), target.display())]
    Root { root: PathBuf, target: PathBuf },
    #[error("joining an existing {0} namespace is not supported")]
    JoinNamespace(String),
    #[error("{0} namespaces are not supported")]
    Namespace(String),
    #[error("the mount and pid namespaces are required")]
    RequiredNamespaces,
    #[error("mount at {dest}: {problem}")]
    Mount { dest: String, problem: String },
    #[error("capability {0} has no name")]
    Capability(String),
    #[error("path {} is not UTF-8", .0.display())]
    NotUtf8(PathBuf),
}

impl Plan {
    pub fn from_config(config: InitConfig) -> Result<Plan, PlanError> {
        let oci = config.oci;
        let process = oci.process().as_ref().ok_or(PlanError::Missing("process"))?;
        let args = process.args().clone().unwrap_or_default();
        if args.is_empty() {
            return Err(PlanError::Missing("process.args"));
        }
        let cwd = path_str(process.cwd())?;
        let target = oci.root().as_ref().ok_or(PlanError::Missing("root"))?.path();
        if target != config.overlay.target.as_path() {
            return Err(PlanError::Root { root: target.clone(), target: config.overlay.target.clone() });
        }
        let linux = oci.linux().as_ref();
        let mut namespaces = CloneFlags::empty();
        let mut cgroupns = false;
        let mut join_net = None;
        for ns in linux.and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
            if let Some(path) = ns.path() {
                if ns.typ() != LinuxNamespaceType::Network {
                    return Err(PlanError::JoinNamespace(ns.typ().to_string()));
                }
                join_net = Some(path.clone());
                continue;
            }
            namespaces |= match ns.typ() {
                LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
                LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
                LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
                LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
                LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
                LinuxNamespaceType::Cgroup => {
                    cgroupns = true;
                    CloneFlags::empty()
                }
                other => return Err(PlanError::Namespace(other.to_string())),
            };
        }
        // Without these two the overlay and pivot_root would act on the host, and our
        // PID-1-reaps-everything design would not hold.
        let required = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
        if !namespaces.contains(required) {
            return Err(PlanError::RequiredNamespaces);
        }
        let user =
            oci.annotations().as_ref().and_then(|a| a.get(USER_ANNOTATION)).cloned().unwrap_or_default();
        let mut secrets: Vec<Option<SecretFile>> = config.secrets.into_iter().map(Some).collect();
        let mut mounts = Vec::new();
        for m in oci.mounts().iter().flatten() {
            let dest = path_str(m.destination())?;
            let bad = |problem: String| PlanError::Mount { dest: dest.clone(), problem };
            let options = m.options().clone().unwrap_or_default();
            let source = m.source().clone().unwrap_or_default();
            let mount = match m.typ().as_deref() {
                Some("bind") => PlanMount::Bind {
                    source,
                    readonly: options.iter().any(|o| o == "ro"),
                    populate: options.iter().any(|o| o == POPULATE_OPTION),
                },
                Some("overlay") => {
                    let opt = |k: &str| options.iter().find_map(|o| o.strip_prefix(k)).map(PathBuf::from);
                    let lowers = opt("lowerdir=")
                        .ok_or_else(|| bad("an overlay without lowerdir".into()))?
                        .to_str()
                        .unwrap_or_default()
                        .split(':')
                        .map(PathBuf::from)
                        .collect();
                    let upper = opt("upperdir=").zip(opt("workdir="));
                    PlanMount::Overlay { lowers, upper }
                }
                Some("tmpfs") => PlanMount::Tmpfs {
                    size: options.iter().find_map(|o| o.strip_prefix("size=")?.parse().ok()),
                },
                Some(SECRET_TYPE) => {
                    let i: usize = source
                        .to_str()
                        .and_then(|s| s.strip_prefix("secret:"))
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| bad("a secret with a bad source".into()))?;
                    let file = secrets.get_mut(i).and_then(Option::take);
                    PlanMount::Secret(file.ok_or_else(|| bad(format!("no secret {i}")))?)
                }
                other => return Err(bad(format!("mount type {other:?} is not supported"))),
            };
            mounts.push((dest, mount));
        }
        let caps = process.capabilities().as_ref().and_then(|c| c.bounding().clone()).unwrap_or_default();
        let capabilities = caps
            .iter()
            .map(|c| match serde_json::to_value(c) {
                Ok(serde_json::Value::String(s)) => Ok(s),
                _ => Err(PlanError::Capability(format!("{c:?}"))),
            })
            .collect::<Result<_, PlanError>>()?;
        Ok(Plan {
            args,
            env: process.env().clone().unwrap_or_default(),
            cwd,
            user,
            hostname: oci.hostname().clone(),
            namespaces,
            join_net,
            readonly_rootfs: oci.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
            spawn: config.spawn,
            cgroupns,
            overlay: config.overlay,
            mounts,
            masked_paths: linux.and_then(|l| l.masked_paths().clone()).unwrap_or_default(),
            readonly_paths: linux.and_then(|l| l.readonly_paths().clone()).unwrap_or_default(),
            capabilities,
            no_new_privileges: process.no_new_privileges().unwrap_or(false),
            seccomp: linux.and_then(|l| l.seccomp().clone()),
            rlimits: process.rlimits().clone().unwrap_or_default(),
            cgroup_procs: config.cgroup_procs,
            cgroup_fs: config.cgroup_fs,
            shm_size: config.shm_size,
        })
    }
}

/// The OCI rlimit of a docker `--ulimit` name.
fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    use PosixRlimitType as T;
    Some(match name {
        "as" => T::RlimitAs,
        "core" => T::RlimitCore,
        "cpu" => T::RlimitCpu,
        "data" => T::RlimitData,
        "fsize" => T::RlimitFsize,
        "locks" => T::RlimitLocks,
        "memlock" => T::RlimitMemlock,
        "msgqueue" => T::RlimitMsgqueue,
        "nice" => T::RlimitNice,
        "nofile" => T::RlimitNofile,
        "nproc" => T::RlimitNproc,
        "rss" => T::RlimitRss,
        "rtprio" => T::RlimitRtprio,
        "rttime" => T::RlimitRttime,
        "sigpending" => T::RlimitSigpending,
        "stack" => T::RlimitStack,
        _ => return None,
    })
}

fn path_str(p: &Path) -> Result<String, PlanError> {
    p.to_str().map(str::to_string).ok_or_else(|| PlanError::NotUtf8(p.to_path_buf()))
}
