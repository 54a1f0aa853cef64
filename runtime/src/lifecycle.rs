//! The container commands' work: create, start, stop, kill, pause, remove, wait. Each reads
//! the state, changes it under the container's lock, and talks to the monitor through
//! signals, the cgroup and the attach socket; none of them needs a daemon.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::container::{
    Config, Container, ContainerConfig, ContainerId, Containers, HostConfig, Status, Trash, now_rfc3339,
};
use crate::events;
use crate::monitor::{self, Ready};
use crate::network::{self, Networks};
use crate::spec::{MountRequest, NetworkRequest, PortMapping, Protocol};
use crate::volume::Volumes;
use crate::{Error, Result};

/// What `create`/`run` ask for beyond the image's defaults.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    /// Replaces the image's CMD when not empty.
    pub cmd: Vec<String>,
    /// `--entrypoint`: `Some("")` clears the image's.
    pub entrypoint: Option<String>,
    /// `NAME=value`, applied over the image's Env in order.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub tty: bool,
    pub open_stdin: bool,
    /// docker's `StdinOnce` (see [`crate::container::Config::stdin_once`]).
    pub stdin_once: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    /// docker's `Domainname` (kept in the config; the UTS domain name is not set).
    pub domainname: Option<String>,
    /// `--expose` (`"80/tcp"`), added to the image's.
    pub exposed_ports: Vec<String>,
    /// `--health-*` (fields left 0 or empty take the image's), or `NONE` for
    /// `--no-healthcheck`; `None` keeps the image's.
    pub healthcheck: Option<crate::health::HealthConfig>,
    pub host: HostConfig,
    /// `--platform`: the image for this platform when the name is a multi-platform image (or
    /// has one kept for it); `None` is the host's, or what the name is.
    pub platform: Option<cache::oci::Platform>,
}

/// Makes a container (state `created`) from an image in the store.
pub fn create(root: &Path, store: &cache::Store, image_ref: &str, opts: CreateOptions) -> Result<Container> {
    let image = match &opts.platform {
        Some(p) => store.resolve_for(image_ref, p)?,
        None => store.resolve(image_ref)?,
    };
    // Another platform's programs run through an emulator: there (registered if need be), or
    // an error that says what to install, before anything is made.
    if !image.config.architecture.is_empty() {
        executor::emulation::ensure(&image.config.os, &image.config.architecture)?;
    }
    let ic = &image.config.config;
    let entrypoint = match &opts.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => vec![e.clone()],
        None => ic.entrypoint.clone().unwrap_or_default(),
    };
    // As docker: arguments replace CMD; a new --entrypoint drops the image's CMD too.
    let cmd = if !opts.cmd.is_empty() {
        opts.cmd.clone()
    } else if opts.entrypoint.is_some() {
        vec![]
    } else {
        ic.cmd.clone().unwrap_or_default()
    };
    if entrypoint.is_empty() && cmd.is_empty() {
        return Err(Error::Invalid(format!(
            "no command specified: the image {image_ref} has no CMD or ENTRYPOINT"
        )));
    }
    let mut env_cfg = cache::oci::ContainerConfig { env: ic.env.clone(), ..Default::default() };
    if env_cfg.env_get("PATH").is_none() {
        env_cfg.env_set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    }
    for kv in &opts.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        env_cfg.env_set(k, v);
    }
    check_network(root, &opts.host.network)?;
    let id = ContainerId::random();
    let mut labels = ic.labels.clone().unwrap_or_default();
    labels.extend(opts.labels.clone());
    let mut host = opts.host.clone();
    // `container:NAME` is kept by id (as docker): a later rename must not break it.
    if let NetworkRequest::Container(other) = &host.network {
        host.network = NetworkRequest::Container(Containers::open(root)?.find(other)?.config.id.to_string());
    }
    let image_volumes: Vec<String> = ic.volumes.iter().flat_map(|v| v.keys().cloned()).collect();
    // The image's VOLUMEs that no explicit mount covers become anonymous volumes.
    let volumes = Volumes::open(root)?;
    for m in crate::mountflags::image_volumes(&image_volumes, &host.mounts) {
        host.mounts.push(m);
    }
    for m in &mut host.mounts {
        if let MountRequest::Volume { name, anonymous: true, .. } = m
            && name.is_empty()
        {
            *name = volumes.create(None, BTreeMap::new(), true)?.name;
        }
    }
    let config = ContainerConfig {
        id: id.clone(),
        name: String::new(),
        created: now_rfc3339(),
        image_id: image.digest.clone(),
        config: Config {
            hostname: opts.hostname.clone().unwrap_or_else(|| id.short().to_string()),
            domainname: opts.domainname.clone().unwrap_or_default(),
            user: opts.user.clone().or_else(|| ic.user.clone()).unwrap_or_default(),
            env: env_cfg.env.unwrap_or_default(),
            entrypoint,
            cmd,
            working_dir: opts.workdir.clone().or_else(|| ic.working_dir.clone()).unwrap_or_default(),
            labels,
            tty: opts.tty,
            open_stdin: opts.open_stdin,
            stdin_once: opts.stdin_once,
            exposed_ports: {
                let mut ports: Vec<String> =
                    ic.exposed_ports.iter().flat_map(|p| p.keys().cloned()).collect();
                for p in &opts.exposed_ports {
                    if !ports.contains(p) {
                        ports.push(p.clone());
                    }
                }
                ports
            },
            volumes: image_volumes,
            stop_signal: opts.stop_signal.clone().or_else(|| ic.stop_signal.clone()),
            stop_timeout: opts.stop_timeout,
            image: image_ref.to_string(),
            healthcheck: {
                let image = crate::health::HealthConfig::from_image(ic.healthcheck.as_ref());
                match &opts.healthcheck {
                    Some(mine) => Some(mine.clone().over(image.as_ref())),
                    None => image,
                }
            },
        },
        host,
    };
    if config.host.auto_remove && config.host.restart != crate::RestartPolicy::No {
        return Err(Error::Invalid("conflicting options: cannot combine --restart with --rm".into()));
    }
    let containers = Containers::open(root)?;
    let name = match &opts.name {
        Some(n) => n.strip_prefix('/').unwrap_or(n).to_string(),
        None => containers.generate_name(),
    };
    containers.reserve_name(&name, &id)?;
    let config = ContainerConfig { name: name.clone(), ..config };
    let made = containers.create(&config).and_then(|c| {
        // gc must keep the image's unpacked layers while the container exists.
        store.pin_layers(&c.rootfs_dir(), &image.layers())?;
        Ok(c)
    });
    match &made {
        Ok(c) => events::emit(root, events::container(c, "create", &[])),
        Err(_) => {
            containers.release_name(&name, &id);
            let _ = std::fs::remove_dir_all(containers.dir(&id));
        }
    }
    made
}

/// `--volumes-from CONTAINER[:ro|:rw]` (the API's `VolumesFrom`), each spec in turn: the
/// volumes and bind mounts of another container added to `mounts` on the same paths, but for
/// paths `mounts` already has; `ro`/`rw` overrides each one's mode. Shared volumes stay the
/// other container's: removing this one (`rm -v`) never removes them.
pub fn add_volumes_from(root: &Path, specs: &[String], mounts: &mut Vec<MountRequest>) -> Result<()> {
    for spec in specs {
        for m in volumes_from(root, spec)? {
            if !mounts.iter().any(|o| o.target() == m.target()) {
                mounts.push(m);
            }
        }
    }
    Ok(())
}

fn volumes_from(root: &Path, spec: &str) -> Result<Vec<MountRequest>> {
    let (what, mode) = match spec.rsplit_once(':') {
        Some((c, m @ ("ro" | "rw"))) => (c, Some(m == "ro")),
        Some((_, m)) => return Err(Error::Invalid(format!("invalid mode for --volumes-from {spec:?}: {m}"))),
        None => (spec, None),
    };
    let other = Containers::open(root)?.find(what)?;
    Ok(other
        .config
        .host
        .mounts
        .iter()
        .filter_map(|m| match m.clone() {
            MountRequest::Volume { name, target, readonly, nocopy, .. } => Some(MountRequest::Volume {
                name,
                target,
                readonly: mode.unwrap_or(readonly),
                anonymous: false,
                nocopy,
            }),
            MountRequest::Bind { source, target, readonly } => {
                Some(MountRequest::Bind { source, target, readonly: mode.unwrap_or(readonly) })
            }
            MountRequest::Tmpfs { .. } => None,
        })
        .collect())
}

/// As docker's create: a network or a `container:` that does not exist fails here, before
/// anything is made, rather than at every start.
fn check_network(root: &Path, network: &NetworkRequest) -> Result<()> {
    match network {
        NetworkRequest::Bridge(names) => {
            let nets = Networks::open(root)?;
            for n in names {
                nets.get(n)?;
            }
        }
        NetworkRequest::Container(other) => {
            Containers::open(root)?.find(other)?;
        }
        NetworkRequest::None | NetworkRequest::Host => {}
    }
    Ok(())
}

/// How `start` went.
pub enum Started {
    /// Running, nobody attached.
    Detached,
    /// Running (or failing): the monitor's first frame on this stream says which.
    Attached(UnixStream),
}

/// Starts a created or exited container through a new monitor. With `attach`, the monitor
/// waits for this client before it starts the process, so no output is missed.
pub fn start(root: &Path, what: &str, attach: bool) -> Result<Started> {
    // The sandbox joins its cgroup ~10 ms from now (executor::cgroup::warm_migrations).
    let _warm = crate::warm_migrations();
    let containers = Containers::open(root)?;
    let c = refresh(&containers, containers.find(what)?)?;
    let lock = containers.lock(c.id())?;
    let mut c = containers.load(c.id())?;
    if c.is_running() {
        if attach {
            drop(lock);
            return attach_to(&c).map(Started::Attached);
        }
        return Ok(Started::Detached);
    }
    let mut spawned = monitor::spawn(root, &c, attach)?;
    c.state.monitor_pid = spawned.pid;
    c.state.monitor_start = crate::container::proc_start_time(spawned.pid).unwrap_or_default();
    c.state.stopped_by_user = false;
    c.state.restart_count = 0;
    containers.save_state(&c)?;
    drop(lock);
    match spawned.wait_ready(&c.dir.join("monitor.log"))? {
        Ready::Started => Ok(Started::Detached),
        Ready::Listening => attach_to(&c).map(Started::Attached),
    }
}

/// Connects to a running container's monitor.
pub fn attach_to(c: &Container) -> Result<UnixStream> {
    crate::attach::connect(&c.dir)
        .map_err(|e| Error::Io { path: c.dir.join(crate::attach::SOCKET), source: e })
}

/// The state as it really is: a container whose monitor died (killed, or the machine
/// rebooted) is recorded as exited, and what it left on the host is cleaned up.
pub fn refresh(containers: &Containers, c: Container) -> Result<Container> {
    if !c.is_running() || c.monitor_alive() {
        return Ok(c);
    }
    let _lock = containers.lock(c.id())?;
    let mut c = containers.load(c.id())?;
    if !c.is_running() || c.monitor_alive() {
        return Ok(c);
    }
    cleanup_leftovers(&c);
    c.state.stopped(Status::Exited, 137, false, "the container's monitor ended unexpectedly");
    containers.save_state(&c)?;
    // The monitor that would have said so is gone.
    if let Some(root) = c.dir.parent().and_then(Path::parent) {
        events::emit(root, events::container(&c, "die", &[("exitCode", "137".to_string())]));
    }
    Ok(c)
}

/// Undoes what a dead monitor may have left: the network namespace mount, veths and
/// addresses, port rules, the cgroup. Each step is idempotent and touches only what is
/// recorded as this container's.
fn cleanup_leftovers(c: &Container) {
    let root = c.dir.parent().and_then(Path::parent);
    // Only a container that published ports can have rules (and asking costs an `nft` run).
    if !c.config.host.ports.is_empty() || c.config.host.publish_all {
        let _ = network::unpublish_nat(c.id().as_str());
    }
    if let Some(root) = root
        && let Ok(nets) = Networks::open(root)
    {
        for ep in &c.state.endpoints {
            let _ = nets.detach(&ep.network, c.id().as_str());
        }
    }
    let _ = network::remove_netns(&c.netns_path());
    if let Some(name) = &c.state.cgroup
        && let Ok(cg) = executor::cgroup::Cgroup::open(name)
    {
        let _ = cg.kill_all();
        let _ = cg.remove();
    }
}

/// Sends `signal` to the container's PID 1 (only if that PID is still the container's).
pub fn signal(c: &Container, signal: Signal) -> Result<()> {
    if !c.is_alive() {
        return Err(Error::Conflict(format!("container {} is not running", c.name())));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.state.pid), signal)
        .map_err(|e| Error::Io { path: format!("/proc/{}", c.state.pid).into(), source: e.into() })
}

fn mark_stopped_by_user(containers: &Containers, id: &ContainerId) -> Result<Container> {
    let _lock = containers.lock(id)?;
    let mut c = containers.load(id)?;
    c.state.stopped_by_user = true;
    containers.save_state(&c)?;
    Ok(c)
}

/// `stop`: the stop signal (STOPSIGNAL or SIGTERM), then SIGKILL after `timeout` seconds;
/// returns when the monitor has cleaned up.
pub fn stop(root: &Path, what: &str, timeout: Option<u32>) -> Result<Container> {
    let containers = Containers::open(root)?;
    let c = refresh(&containers, containers.find(what)?)?;
    if !c.is_running() {
        return Ok(c);
    }
    let c = mark_stopped_by_user(&containers, c.id())?;
    let sig = match &c.config.config.stop_signal {
        Some(s) => parse_signal(s)?,
        None => Signal::SIGTERM,
    };
    let timeout = timeout.or(c.config.config.stop_timeout).unwrap_or(10);
    if c.is_alive() {
        if signal(&c, sig).is_ok() {
            events::emit(root, events::container(&c, "kill", &[("signal", (sig as i32).to_string())]));
        }
        if c.state.status == Status::Paused {
            thaw(&c)?;
        }
    }
    if !wait_monitor(&c, Some(Duration::from_secs(timeout.into()))) {
        events::emit(
            root,
            events::container(&c, "kill", &[("signal", (Signal::SIGKILL as i32).to_string())]),
        );
        kill_all(&c);
        wait_monitor(&c, Some(Duration::from_secs(30)));
    }
    events::emit(root, events::container(&c, "stop", &[]));
    Ok(containers.load(c.id()).unwrap_or(c))
}

/// `kill -s SIG`: marks the exit as asked for (no restart), then signals PID 1.
pub fn kill(root: &Path, what: &str, sig: Signal) -> Result<Container> {
    let containers = Containers::open(root)?;
    let c = refresh(&containers, containers.find(what)?)?;
    if !c.is_alive() {
        return Err(Error::Conflict(format!("cannot kill container {}: it is not running", c.name())));
    }
    let c = mark_stopped_by_user(&containers, c.id())?;
    signal(&c, sig)?;
    events::emit(root, events::container(&c, "kill", &[("signal", (sig as i32).to_string())]));
    if c.state.status == Status::Paused && sig == Signal::SIGKILL {
        kill_all(&c);
    }
    Ok(c)
}

fn kill_all(c: &Container) {
    if let Some(cg) = c.state.cgroup.as_deref().and_then(|n| executor::cgroup::Cgroup::open(n).ok()) {
        let _ = cg.kill_all();
    }
    if c.is_alive() {
        let _ = signal(c, Signal::SIGKILL);
    }
}

fn thaw(c: &Container) -> Result<()> {
    let name =
        c.state.cgroup.as_deref().ok_or_else(|| Error::Conflict("the container has no cgroup".into()))?;
    executor::cgroup::Cgroup::open(name)?.thaw()?;
    Ok(())
}

/// `pause` (true) / `unpause` (false): the freezer cgroup.
pub fn set_paused(root: &Path, what: &str, paused: bool) -> Result<Container> {
    let containers = Containers::open(root)?;
    let c = refresh(&containers, containers.find(what)?)?;
    let _lock = containers.lock(c.id())?;
    let mut c = containers.load(c.id())?;
    let (from, to) =
        if paused { (Status::Running, Status::Paused) } else { (Status::Paused, Status::Running) };
    if c.state.status != from {
        return Err(Error::Conflict(if paused {
            format!("container {} is not running", c.name())
        } else {
            format!("container {} is not paused", c.name())
        }));
    }
    let name = c.state.cgroup.as_deref().ok_or_else(|| {
        Error::Conflict(format!("container {} has no cgroup: pause needs cgroups", c.name()))
    })?;
    let cg = executor::cgroup::Cgroup::open(name)?;
    if paused {
        cg.freeze()?
    } else {
        cg.thaw()?
    }
    c.state.status = to;
    containers.save_state(&c)?;
    events::emit(root, events::container(&c, if paused { "pause" } else { "unpause" }, &[]));
    Ok(c)
}

/// `rm [-f] [-v]`.
pub fn remove(root: &Path, what: &str, force: bool, volumes: bool) -> Result<Container> {
    let containers = Containers::open(root)?;
    let c = refresh(&containers, containers.find(what)?)?;
    if c.is_running() {
        if !force {
            return Err(Error::Conflict(format!(
                "cannot remove container {}: container is {}: stop the container before removing or force remove",
                c.name(),
                c.state.status.as_str()
            )));
        }
        let c = mark_stopped_by_user(&containers, c.id())?;
        kill_all(&c);
        if c.state.status == Status::Paused {
            let _ = thaw(&c);
        }
        wait_monitor(&c, Some(Duration::from_secs(30)));
    }
    let c = match containers.load(c.id()) {
        Ok(c) => refresh(&containers, c)?,
        // `--rm`: its monitor removed it meanwhile.
        Err(Error::NoSuchContainer(_)) => return Ok(c),
        Err(e) => return Err(e),
    };
    remove_stopped(root, &containers, &c, volumes)?;
    Ok(c)
}

/// Deletes a container that does not run, and with `volumes` its anonymous volumes.
pub fn remove_stopped(root: &Path, containers: &Containers, c: &Container, volumes: bool) -> Result<()> {
    unlist_stopped(root, containers, c, volumes)?.empty()
}

/// [`remove_stopped`], but the container's directory (out of every listing already) is deleted
/// by the returned [`Trash`], when the caller is ready: a `--rm` container's monitor tells its
/// clients the exit code first, since the deletion takes tens of ms (most of it in the rmdir
/// of the rootfs's former mount points).
pub fn unlist_stopped(root: &Path, containers: &Containers, c: &Container, volumes: bool) -> Result<Trash> {
    let _lock = containers.lock(c.id())?;
    cleanup_leftovers(c);
    let trash = containers.unlist(c)?;
    events::emit(root, events::container(c, "destroy", &[]));
    let anonymous =
        c.config.host.mounts.iter().any(|m| matches!(m, MountRequest::Volume { anonymous: true, .. }));
    if volumes && anonymous {
        let vols = Volumes::open(root)?;
        let users = crate::volume::volume_users(root)?;
        for m in &c.config.host.mounts {
            if let MountRequest::Volume { name, anonymous: true, .. } = m {
                let others = users.get(name).cloned().unwrap_or_default();
                // Still used by another container (`--volumes-from` style sharing): kept, as docker.
                let _ = vols.remove(name, &others, false);
            }
        }
    }
    Ok(trash)
}

/// What `container prune` removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub containers: Vec<ContainerId>,
    /// The bytes their writable layers held.
    pub reclaimed: u64,
}

/// `container prune`: removes every container that is not running (nor about to restart).
pub fn prune(root: &Path) -> Result<Pruned> {
    prune_where(root, |_| true)
}

/// [`prune`] of the stopped containers `wanted` accepts (the API's `filters`).
pub fn prune_where(root: &Path, wanted: impl Fn(&Container) -> bool) -> Result<Pruned> {
    let containers = Containers::open(root)?;
    containers.sweep_trash();
    let mut pruned = Pruned::default();
    for c in containers.list()? {
        let c = refresh(&containers, c)?;
        if c.is_running() || c.state.monitor_pid > 0 || !wanted(&c) {
            continue;
        }
        pruned.reclaimed += crate::volume::dir_size(&c.upper()).unwrap_or(0);
        remove_stopped(root, &containers, &c, false)?;
        pruned.containers.push(c.id().clone());
    }
    Ok(pruned)
}

/// Waits until the container's monitor has exited (it records the exit and cleans up before
/// it does). `false` if `timeout` passed first.
pub fn wait_monitor(c: &Container, timeout: Option<Duration>) -> bool {
    if !c.monitor_alive() {
        return true;
    }
    let pid = c.state.monitor_pid;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return !c.monitor_alive();
    }
    // SAFETY: the kernel just gave us this descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The pid may have been reused between the liveness check and pidfd_open.
    if !c.monitor_alive() {
        return true;
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return false;
        }
        let ms = left.map_or(-1, |l| l.as_millis().min(i32::MAX as u128) as i32);
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd that lives across the call.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            n if n > 0 => return true,
            0 => return false,
            _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
            _ => return !c.monitor_alive(),
        }
    }
}

/// `wait`: blocks until the container stops; its exit code.
pub fn wait(root: &Path, what: &str) -> Result<i32> {
    let containers = Containers::open(root)?;
    let id = containers.find(what)?.config.id;
    loop {
        let c = refresh(&containers, containers.load(&id)?)?;
        if !c.is_running() {
            return Ok(c.state.exit_code);
        }
        wait_monitor(&c, Some(Duration::from_millis(500)));
    }
}

/// The ports to publish at start: `-p` as given, and with `-P` every EXPOSEd port on a free
/// host port.
pub fn ports_to_publish(c: &Container) -> Vec<PortMapping> {
    let mut ports = c.config.host.ports.clone();
    if c.config.host.publish_all {
        for exposed in &c.config.config.exposed_ports {
            let (port, proto) = exposed.split_once('/').unwrap_or((exposed, "tcp"));
            let Ok(port) = port.parse::<u16>() else { continue };
            let protocol = if proto == "udp" { Protocol::Udp } else { Protocol::Tcp };
            if !ports.iter().any(|p| p.container_port == port && p.protocol == protocol) {
                ports.push(PortMapping { host_ip: None, host_port: 0, container_port: port, protocol });
            }
        }
    }
    ports
}

/// `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    let bad = || Error::Invalid(format!("invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<Signal>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("2").unwrap(), Signal::SIGINT);
        assert!(parse_signal("NOPE").is_err());
    }
}
