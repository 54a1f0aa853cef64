//! The container commands: `create`, `run`, `start`, `stop`, `kill`, `pause`, `exec`, `logs`,
//! `ps`, `inspect`, `rm`, `wait`, `top`, `stats`, `port`, `rename`, `attach`, `container
//! prune`. The work is in runtime/; this module parses flags and prints as docker does.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use cache::Store;
use runtime::attach::{ClientFrame, MonitorFrame};
use runtime::container::{Container, Containers, Status};
use runtime::lifecycle::{self, CreateOptions, Started};
use runtime::{NetworkRequest, PortMapping, Protocol, RestartPolicy};
use serde_json::{Value, json};

use crate::container_args::*;
use crate::gotemplate::GoTemplate;
use crate::images::{Template, ellipsis, human_duration, human_size, now_secs};

fn code(c: i32) -> ExitCode {
    ExitCode::from(c.clamp(0, 255) as u8)
}

// ---------------------------------------------------------------------------------------------
// Flags to options.

/// `NAME=value` (or `NAME`, taken from rbuild's environment; dropped if unset there).
fn env_pairs(env: &[String], files: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("--env-file {}", f.display()))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            push_env(&mut out, line)?;
        }
    }
    for e in env {
        push_env(&mut out, e)?;
    }
    Ok(out)
}

fn push_env(out: &mut Vec<String>, e: &str) -> Result<()> {
    match e.split_once('=') {
        Some(("", _)) => bail!("invalid environment variable: {e}"),
        Some(_) => out.push(e.to_string()),
        None => {
            if let Ok(v) = std::env::var(e) {
                out.push(format!("{e}={v}"));
            }
        }
    }
    Ok(())
}

fn parse_restart(s: &str) -> Result<RestartPolicy> {
    Ok(match s {
        "" | "no" => RestartPolicy::No,
        "always" => RestartPolicy::Always,
        "unless-stopped" => RestartPolicy::UnlessStopped,
        "on-failure" => RestartPolicy::OnFailure(0),
        s => match s.strip_prefix("on-failure:") {
            Some(n) => RestartPolicy::OnFailure(n.parse().map_err(|_| {
                anyhow!("invalid restart policy {s:?}: maximum retry count must be a number")
            })?),
            None => bail!("invalid restart policy {s:?}: use no, on-failure[:N], always or unless-stopped"),
        },
    })
}

fn parse_network(values: &[String]) -> Result<NetworkRequest> {
    match values {
        // Rootless rbuild cannot make bridges or veths: its containers get their own
        // namespace with only `lo` unless asked otherwise (decision in cli/README.md).
        [] if !executor::userns::in_initial_userns() => Ok(NetworkRequest::None),
        [] => Ok(NetworkRequest::Bridge(vec!["bridge".into()])),
        [one] if one == "none" => Ok(NetworkRequest::None),
        [one] if one == "host" => Ok(NetworkRequest::Host),
        [one] if one == "default" => Ok(NetworkRequest::Bridge(vec!["bridge".into()])),
        [one] if one.starts_with("container:") => {
            Ok(NetworkRequest::Container(one["container:".len()..].to_string()))
        }
        many => {
            if many.iter().any(|n| matches!(n.as_str(), "none" | "host") || n.starts_with("container:")) {
                bail!("--network none, host and container: cannot be combined with other networks");
            }
            Ok(NetworkRequest::Bridge(many.to_vec()))
        }
    }
}

/// `-p [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`.
pub fn parse_port(s: &str) -> Result<PortMapping> {
    let bad = || anyhow!("invalid port specification {s:?}: use [IP:][HOST_PORT:]CONTAINER_PORT[/udp]");
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Protocol::Tcp),
        Some((spec, "udp")) => (spec, Protocol::Udp),
        Some((_, p)) => bail!("invalid port specification {s:?}: unknown protocol {p:?} (tcp or udp)"),
        None => (s, Protocol::Tcp),
    };
    let port = |p: &str| p.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(bad);
    let parts: Vec<&str> = spec.split(':').collect();
    let (host_ip, host_port, container_port) = match parts.as_slice() {
        [c] => (None, 0, port(c)?),
        [h, c] => (None, if h.is_empty() { 0 } else { port(h)? }, port(c)?),
        [ip, h, c] => {
            let ip: IpAddr = ip.trim_matches(['[', ']']).parse().map_err(|_| bad())?;
            (Some(ip), if h.is_empty() { 0 } else { port(h)? }, port(c)?)
        }
        _ => return Err(bad()),
    };
    Ok(PortMapping { host_ip, host_port, container_port, protocol })
}

fn create_options(f: &CreateFlags, auto_remove: bool) -> Result<CreateOptions> {
    let mut host = runtime::container::HostConfig {
        network: parse_network(&f.network)?,
        network_aliases: f.network_alias.clone(),
        restart: parse_restart(&f.restart)?,
        auto_remove,
        cap_add: f.cap_add.clone(),
        cap_drop: f.cap_drop.clone(),
        privileged: f.privileged,
        read_only: f.read_only,
        init: f.init,
        publish_all: f.publish_all,
        dns_search: f.dns_search.clone(),
        ..Default::default()
    };
    for p in &f.publish {
        host.ports.push(parse_port(p)?);
    }
    if !host.ports.is_empty() && !matches!(host.network, NetworkRequest::Bridge(_)) {
        bail!(
            "published ports need a bridge network: they do nothing with --network none, host or container:"
        );
    }
    for d in &f.dns {
        host.dns.push(d.parse().map_err(|_| anyhow!("--dns {d:?}: not an IP address"))?);
    }
    for h in &f.add_host {
        let (name, ip) = h
            .split_once(['=', ':'])
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| anyhow!("--add-host {h:?}: use HOST:IP"))?;
        let ip: IpAddr = ip
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| anyhow!("--add-host {h:?}: {ip:?} is not an IP address"))?;
        host.extra_hosts.push((name.to_string(), ip));
    }
    host.mounts = runtime::mountflags::parse_mounts(&f.volume, &f.mount, &f.tmpfs)?;
    let r = &mut host.resources;
    if let Some(m) = &f.memory {
        r.memory = Some(crate::commands::parse_bytes("--memory", m)?);
    }
    if let Some(c) = &f.cpus {
        let n: f64 = c.parse().map_err(|_| anyhow!("--cpus {c:?}: not a number"))?;
        if !(n > 0.0 && n.is_finite()) {
            bail!("--cpus {c:?}: must be more than 0");
        }
        r.cpu_period = Some(100_000);
        r.cpu_quota = Some((n * 100_000.0) as u64);
    }
    r.cpu_shares = f.cpu_shares;
    r.pids = match f.pids_limit {
        Some(n) if n > 0 => Some(n as u64),
        _ => None,
    };
    let mut labels = BTreeMap::new();
    for l in &f.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    if let Some(s) = &f.stop_signal {
        lifecycle::parse_signal(s)?;
    }
    Ok(CreateOptions {
        name: f.name.clone(),
        cmd: f.command.clone(),
        entrypoint: f.entrypoint.clone(),
        env: env_pairs(&f.env, &f.env_file)?,
        workdir: f.workdir.clone(),
        user: f.user.clone(),
        hostname: f.hostname.clone(),
        labels,
        tty: f.tty,
        open_stdin: f.interactive,
        stop_signal: f.stop_signal.clone(),
        stop_timeout: f.stop_timeout,
        host,
    })
}

/// The image, pulled first if the store lacks it and the reference names a registry host.
fn ensure_image(store: &Store, image: &str) -> Result<()> {
    if store.lookup(image).is_ok() {
        return Ok(());
    }
    crate::transfer::ensure_pulled(store, image)
}

pub fn create(store: &Store, a: CreateArgs) -> Result<ExitCode> {
    ensure_image(store, &a.create.image)?;
    let opts = create_options(&a.create, false)?;
    let c = lifecycle::create(store.root(), store, &a.create.image, opts)?;
    println!("{}", c.id());
    Ok(ExitCode::SUCCESS)
}

/// Docker's exit codes for a container that could not start: 127 when the command does not
/// exist, 126 when it cannot be run; the message is the one error line.
fn start_failed(e: runtime::Error) -> Result<ExitCode> {
    match e {
        runtime::Error::StartFailed(msg) => {
            eprintln!("rbuild: error: {msg}");
            Ok(ExitCode::from(if msg.contains("not found") || msg.contains("no such file") {
                127
            } else {
                126
            }))
        }
        e => Err(e.into()),
    }
}

pub fn run(store: &Store, a: RunArgs) -> Result<ExitCode> {
    ensure_image(store, &a.create.image)?;
    let opts = create_options(&a.create, a.rm)?;
    let tty = opts.tty;
    let stdin = opts.open_stdin;
    let c = lifecycle::create(store.root(), store, &a.create.image, opts)?;
    let root = store.root();
    if a.detach {
        match lifecycle::start(root, c.id().as_str(), false) {
            Ok(_) => {
                println!("{}", c.id());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                // Docker keeps a container that failed to start (for inspect); --rm does not.
                if a.rm {
                    let _ = lifecycle::remove(root, c.id().as_str(), true, true);
                }
                start_failed(e)
            }
        }
    } else {
        let started = lifecycle::start(root, c.id().as_str(), true);
        let result = match started {
            Ok(Started::Attached(stream)) => match session(root, &c, stream, tty, stdin, a.sig_proxy) {
                Ok(c) => Ok(code(c)),
                Err(e) => match e.downcast::<runtime::Error>() {
                    Ok(e) => start_failed(e),
                    Err(e) => Err(e),
                },
            },
            Ok(Started::Detached) => Ok(ExitCode::SUCCESS),
            Err(e) => start_failed(e),
        };
        if a.rm && is_present(root, &c) {
            // The monitor removes a `--rm` container after it ran; one that never ran is ours.
            let _ = lifecycle::remove(root, c.id().as_str(), true, true);
        }
        result
    }
}

fn is_present(root: &Path, c: &Container) -> bool {
    Containers::open(root).is_ok_and(|cs| cs.load(c.id()).is_ok())
}

pub fn start(store: &Store, a: StartArgs) -> Result<ExitCode> {
    let root = store.root();
    let containers = Containers::open(root)?;
    if a.attach || a.interactive {
        let [one] = a.containers.as_slice() else {
            bail!("you cannot start and attach several containers at once");
        };
        let c = containers.find(one)?;
        return match lifecycle::start(root, one, true)? {
            Started::Attached(s) => Ok(code(session(root, &c, s, c.config.config.tty, a.interactive, true)?)),
            Started::Detached => Ok(ExitCode::SUCCESS),
        };
    }
    each(&a.containers, |name| {
        lifecycle::start(root, name, false)?;
        Ok(())
    })
}

/// Runs `f` on each name, printing the name on success (as docker); the first error is returned
/// after the others were tried.
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<ExitCode> {
    let mut failed = Vec::new();
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => failed.push(e),
        }
    }
    match failed.len() {
        0 => Ok(ExitCode::SUCCESS),
        1 => Err(failed.remove(0)),
        _ => {
            for e in &failed {
                eprintln!("rbuild: error: {e:#}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

pub fn stop(store: &Store, a: StopArgs) -> Result<ExitCode> {
    each(&a.containers, |n| {
        lifecycle::stop(store.root(), n, a.time)?;
        Ok(())
    })
}

pub fn restart(store: &Store, a: StopArgs) -> Result<ExitCode> {
    each(&a.containers, |n| {
        lifecycle::stop(store.root(), n, a.time)?;
        lifecycle::start(store.root(), n, false)?;
        Ok(())
    })
}

pub fn kill(store: &Store, a: KillArgs) -> Result<ExitCode> {
    let sig = lifecycle::parse_signal(&a.signal)?;
    each(&a.containers, |n| {
        lifecycle::kill(store.root(), n, sig)?;
        Ok(())
    })
}

pub fn pause(store: &Store, a: ContainersArgs, paused: bool) -> Result<ExitCode> {
    each(&a.containers, |n| {
        lifecycle::set_paused(store.root(), n, paused)?;
        Ok(())
    })
}

pub fn rm(store: &Store, a: RmArgs) -> Result<ExitCode> {
    each(&a.containers, |n| {
        lifecycle::remove(store.root(), n, a.force, a.volumes)?;
        Ok(())
    })
}

pub fn wait(store: &Store, a: WaitArgs) -> Result<ExitCode> {
    for n in &a.containers {
        println!("{}", lifecycle::wait(store.root(), n)?);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rename(store: &Store, a: RenameArgs) -> Result<ExitCode> {
    let containers = Containers::open(store.root())?;
    let c = containers.find(&a.container)?;
    let _lock = containers.lock(c.id())?;
    let mut c = containers.load(c.id())?;
    let new = a.new_name.strip_prefix('/').unwrap_or(&a.new_name).to_string();
    if new == c.config.name {
        bail!("renaming a container with the same name as its current name");
    }
    containers.reserve_name(&new, c.id())?;
    let old = std::mem::replace(&mut c.config.name, new);
    containers.save_config(&c)?;
    containers.release_name(&old, c.id());
    Ok(ExitCode::SUCCESS)
}

pub fn prune(store: &Store, _a: PruneArgs) -> Result<ExitCode> {
    let (ids, bytes) = prune_containers(store)?;
    if !ids.is_empty() {
        println!("Deleted Containers:");
        for id in &ids {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(bytes, 3));
    Ok(ExitCode::SUCCESS)
}

/// Removes every container that is not running; their ids and the bytes their layers took.
pub fn prune_containers(store: &Store) -> Result<(Vec<String>, u64)> {
    let containers = Containers::open(store.root())?;
    let mut ids = Vec::new();
    let mut bytes = 0;
    for c in containers.list()? {
        let c = lifecycle::refresh(&containers, c)?;
        if c.is_running() || c.state.monitor_pid > 0 {
            continue;
        }
        bytes += dir_size(&c.upper());
        lifecycle::remove_stopped(store.root(), &containers, &c, false)?;
        ids.push(c.id().to_string());
    }
    Ok((ids, bytes))
}

fn dir_size(p: &Path) -> u64 {
    walk_size(p).unwrap_or(0)
}

fn walk_size(p: &Path) -> io::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(p)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() { walk_size(&e.path()).unwrap_or(0) } else { m.len() };
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Attached sessions.

/// The terminal in raw mode while a `-t` session lasts; restored when dropped.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return RawTerminal(None);
        }
        let Ok(saved) = tcgetattr(stdin.as_fd()) else { return RawTerminal(None) };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ =
                nix::sys::termios::tcsetattr(io::stdin().as_fd(), nix::sys::termios::SetArg::TCSANOW, saved);
        }
    }
}

fn window_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass.
    let r = unsafe { libc::ioctl(io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// The signals `run`/`attach` forward to the container (docker's sig-proxy), and SIGWINCH.
fn proxied_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::Signal::*;
    let mut set = nix::sys::signal::SigSet::empty();
    for s in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH] {
        set.add(s);
    }
    set
}

/// Relays stdio between this terminal and an attached container until it exits; its exit code.
fn session(
    root: &Path,
    c: &Container,
    stream: UnixStream,
    tty: bool,
    stdin: bool,
    sig_proxy: bool,
) -> Result<i32> {
    let writer = Arc::new(Mutex::new(stream.try_clone().context("attach socket")?));
    // Blocked here, before any thread starts, so that only the signal thread receives them.
    let signals = proxied_signals();
    let _ = signals.thread_block();
    if sig_proxy {
        // A shell starts a background job (`rbuild run ... &`) with SIGINT and SIGQUIT ignored,
        // and an ignored signal is never pending, so sigwait would not see it: as docker's
        // CLI, take them back (they stay blocked, so only the signal thread gets them).
        for sig in signals.iter() {
            // SAFETY: SIG_DFL installs no handler; the signal is blocked in this thread and in
            // every thread it starts.
            let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
        }
    }
    let _raw = if tty { Some(RawTerminal::enter()) } else { None };
    if tty && let Some((rows, cols)) = window_size() {
        let _ = ClientFrame::Resize { rows, cols }
            .write_to(&mut *writer.lock().unwrap_or_else(|p| p.into_inner()));
    }
    {
        let writer = writer.clone();
        let root = root.to_path_buf();
        let id = c.id().clone();
        std::thread::spawn(move || {
            loop {
                let Ok(sig) = signals.wait() else { return };
                if sig == nix::sys::signal::Signal::SIGWINCH {
                    if tty && let Some((rows, cols)) = window_size() {
                        let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                        let _ = ClientFrame::Resize { rows, cols }.write_to(&mut *w);
                    }
                    continue;
                }
                if sig_proxy
                    && let Ok(containers) = Containers::open(&root)
                    && let Ok(c) = containers.load(&id)
                {
                    let _ = lifecycle::signal(&c, sig);
                }
            }
        });
    }
    if stdin {
        let writer = writer.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            let mut input = io::stdin().lock();
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = ClientFrame::StdinClose
                            .write_to(&mut *writer.lock().unwrap_or_else(|p| p.into_inner()));
                        return;
                    }
                    Ok(n) => {
                        let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                        if ClientFrame::Stdin(buf[..n].to_vec()).write_to(&mut *w).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    let mut reader = stream;
    let mut out = io::stdout();
    let mut err = io::stderr();
    loop {
        match MonitorFrame::read_from(&mut reader) {
            Ok(Some(MonitorFrame::Stdout(d))) => {
                let _ = out.write_all(&d);
                let _ = out.flush();
            }
            Ok(Some(MonitorFrame::Stderr(d))) => {
                let _ = err.write_all(&d);
            }
            Ok(Some(MonitorFrame::Started)) => {}
            Ok(Some(MonitorFrame::Error(m))) => return Err(runtime::Error::StartFailed(m).into()),
            Ok(Some(MonitorFrame::Exit(code))) => return Ok(code),
            // The monitor went away without a word: read what the state says.
            Ok(None) | Err(_) => {
                let containers = Containers::open(root)?;
                return match containers.load(c.id()) {
                    Ok(c) => {
                        let c = lifecycle::refresh(&containers, c)?;
                        if c.is_running() {
                            Ok(lifecycle::wait(root, c.id().as_str())?)
                        } else {
                            Ok(c.state.exit_code)
                        }
                    }
                    Err(_) => Ok(0),
                };
            }
        }
    }
}

pub fn attach(store: &Store, a: AttachArgs) -> Result<ExitCode> {
    let containers = Containers::open(store.root())?;
    let c = lifecycle::refresh(&containers, containers.find(&a.container)?)?;
    if !c.is_running() {
        bail!("you cannot attach to a stopped container, start it first");
    }
    let stream = lifecycle::attach_to(&c)?;
    let stdin = !a.no_stdin && c.config.config.open_stdin;
    Ok(code(session(store.root(), &c, stream, c.config.config.tty, stdin, a.sig_proxy)?))
}

// ---------------------------------------------------------------------------------------------
// exec

/// `exec -d`: the process must have a waiter for as long as it runs (an exec'd process dies
/// with the rbuild that started it), so a detached exec is this same command without `-d`, in
/// a session of its own, that nobody waits for.
fn exec_detached(store: &Store, a: &ExecArgs) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("--root").arg(store.root()).arg("exec");
    for e in &a.env {
        cmd.arg("-e").arg(e);
    }
    for f in &a.env_file {
        cmd.arg("--env-file").arg(f);
    }
    if let Some(u) = &a.user {
        cmd.arg("-u").arg(u);
    }
    if let Some(w) = &a.workdir {
        cmd.arg("-w").arg(w);
    }
    if a.privileged {
        cmd.arg("--privileged");
    }
    cmd.arg(&a.container).arg("--").args(&a.command);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().context("starting the detached exec")?;
    Ok(ExitCode::SUCCESS)
}

pub fn exec(store: &Store, a: ExecArgs) -> Result<ExitCode> {
    let containers = Containers::open(store.root())?;
    let c = lifecycle::refresh(&containers, containers.find(&a.container)?)?;
    if !c.is_alive() {
        bail!("container {} is not running", c.name());
    }
    if c.state.status == Status::Paused {
        bail!("container {} is paused, unpause the container before exec", c.name());
    }
    let cfg = &c.config.config;
    let mut env_cfg = cache::oci::ContainerConfig { env: Some(cfg.env.clone()), ..Default::default() };
    for kv in env_pairs(&a.env, &a.env_file)? {
        let (k, v) = kv.split_once('=').unwrap_or((&kv, ""));
        env_cfg.env_set(k, v);
    }
    if a.tty && env_cfg.env_get("TERM").is_none() {
        env_cfg.env_set("TERM", "xterm");
    }
    let security = if a.privileged { executor::Security::insecure() } else { c.config.host.security()? };
    // Descriptors this rbuild inherited from its caller are no business of the container
    // (nor of a detached exec's rbuild, which outlives this one).
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing; it marks every descriptor
    // from 3 up close-on-exec (the executor clears the flag on those it hands on).
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if a.detach {
        return exec_detached(store, &a);
    }
    let spec = executor::ExecSpec {
        pid: c.state.pid,
        process: executor::Process {
            args: a.command.clone(),
            env: env_cfg.env.unwrap_or_default(),
            cwd: a.workdir.clone().unwrap_or_else(|| {
                if cfg.working_dir.is_empty() { "/".into() } else { cfg.working_dir.clone() }
            }),
            user: a.user.clone().unwrap_or_else(|| cfg.user.clone()),
        },
        security,
        cgroup: c.state.cgroup.clone(),
    };
    if a.tty {
        let pty = nix::pty::openpty(None, None).context("allocating a pseudo-terminal")?;
        // openpty(3) leaves both ends inheritable: the process gets the slave as its stdio only.
        for fd in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
                .context("allocating a pseudo-terminal")?;
        }
        if let Some((rows, cols)) = window_size() {
            let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
            // SAFETY: TIOCSWINSZ reads one winsize that lives across the call.
            unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
        let signals = proxied_signals();
        let _ = signals.thread_block();
        let proc_ = executor::exec(&spec, executor::SpawnStdio::Tty(pty.slave))?;
        if a.detach {
            return Ok(ExitCode::SUCCESS);
        }
        let _raw = RawTerminal::enter();
        let master = std::fs::File::from(pty.master);
        let mut from = master.try_clone()?;
        let resize = master.try_clone()?;
        std::thread::spawn(move || {
            while let Ok(sig) = signals.wait() {
                if sig == nix::sys::signal::Signal::SIGWINCH
                    && let Some((rows, cols)) = window_size()
                {
                    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
                    // SAFETY: as above.
                    unsafe { libc::ioctl(resize.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
            }
        });
        if a.interactive {
            let mut to = master.try_clone()?;
            std::thread::spawn(move || {
                let _ = io::copy(&mut io::stdin().lock(), &mut to);
            });
        }
        let pump = std::thread::spawn(move || {
            let mut out = io::stdout();
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = out.flush();
            }
        });
        let status = proc_.wait()?;
        drop(master);
        let _ = pump.join();
        return Ok(code(status.code()));
    }
    let stdin: OwnedFd = if a.interactive {
        io::stdin().as_fd().try_clone_to_owned()?
    } else {
        std::fs::File::open("/dev/null")?.into()
    };
    let stdio = executor::SpawnStdio::Fds {
        stdin,
        stdout: io::stdout().as_fd().try_clone_to_owned()?,
        stderr: io::stderr().as_fd().try_clone_to_owned()?,
    };
    let proc_ = executor::exec(&spec, stdio)?;
    if a.detach {
        return Ok(ExitCode::SUCCESS);
    }
    Ok(code(proc_.wait()?.code()))
}

// ---------------------------------------------------------------------------------------------
// logs

/// `--since`/`--until`: RFC 3339, Unix seconds (`1700000000.5`), or a duration before now
/// (`10s`, `5m`, `1h30m`).
fn parse_time(flag: &str, s: &str) -> Result<(i64, u32)> {
    if let Some(t) = runtime::container::parse_rfc3339(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs.trunc() as i64, (secs.fract() * 1e9) as u32));
    }
    let mut total = 0f64;
    let mut num = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            continue;
        }
        let n: f64 = num.parse().map_err(|_| anyhow!("{flag} {s:?}: not a time or a duration"))?;
        num.clear();
        total += n * match ch {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            _ => bail!("{flag} {s:?}: not a time or a duration"),
        };
    }
    if !num.is_empty() {
        bail!("{flag} {s:?}: a duration needs a unit (s, m, h)");
    }
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let t = now - total;
    Ok((t.trunc() as i64, (t.fract() * 1e9) as u32))
}

pub fn logs(store: &Store, a: LogsArgs) -> Result<ExitCode> {
    use runtime::logs::{Filter, Stream};
    let containers = Containers::open(store.root())?;
    let c = containers.find(&a.container)?;
    let filter = Filter {
        tail: match a.tail.as_str() {
            "all" | "-1" => None,
            n => Some(n.parse().map_err(|_| anyhow!("--tail {n:?}: not a number"))?),
        },
        since: a.since.as_deref().map(|s| parse_time("--since", s)).transpose()?,
        until: a.until.as_deref().map(|s| parse_time("--until", s)).transpose()?,
    };
    let path = c.log_path();
    let print = |entries: Vec<runtime::logs::Entry>| -> Result<()> {
        let mut out = io::stdout().lock();
        let mut err = io::stderr().lock();
        for e in entries {
            let w: &mut dyn Write = if e.stream == Stream::Stderr { &mut err } else { &mut out };
            if a.timestamps {
                write!(w, "{} ", e.time)?;
            }
            w.write_all(e.log.as_bytes())?;
        }
        out.flush()?;
        Ok(())
    };
    let (entries, mut offset) = runtime::logs::read(&path, &filter)?;
    print(entries)?;
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let later = Filter { tail: None, ..filter };
    loop {
        let running = match containers.load(c.id()) {
            Ok(c) => {
                let c = lifecycle::refresh(&containers, c)?;
                c.is_running() || c.monitor_alive()
            }
            Err(_) => false,
        };
        if let Ok(f) = std::fs::File::open(&path) {
            let (entries, next) = runtime::logs::read_from(f, offset)?;
            offset = next;
            print(entries.into_iter().filter(|e| later_keeps(&later, e)).collect())?;
        }
        if !running {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn later_keeps(f: &runtime::logs::Filter, e: &runtime::logs::Entry) -> bool {
    let Some(t) = runtime::container::parse_rfc3339(&e.time) else { return true };
    f.until.is_none_or(|u| t < u)
}

// ---------------------------------------------------------------------------------------------
// ps, inspect, port, top, stats

fn secs_of(t: Option<&str>) -> Option<i64> {
    t.and_then(runtime::container::parse_rfc3339).map(|(s, _)| s)
}

/// Docker's STATUS column.
fn status_text(c: &Container) -> String {
    let now = now_secs();
    let ago = |t: Option<&str>| human_duration(now - secs_of(t).unwrap_or(now));
    match c.state.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", ago(c.state.started_at.as_deref())),
        Status::Paused => format!("Up {} (Paused)", ago(c.state.started_at.as_deref())),
        Status::Restarting => {
            format!("Restarting ({}) {} ago", c.state.exit_code, ago(c.state.finished_at.as_deref()))
        }
        Status::Exited => {
            format!("Exited ({}) {} ago", c.state.exit_code, ago(c.state.finished_at.as_deref()))
        }
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

fn ports_text(c: &Container) -> String {
    let mut out: Vec<String> = c
        .state
        .ports
        .iter()
        .map(|p| {
            let ip = p.host_ip.map_or("0.0.0.0".to_string(), |i| i.to_string());
            format!("{ip}:{}->{}/{}", p.host_port, p.container_port, p.protocol.as_str())
        })
        .collect();
    if out.is_empty() {
        out = c.config.config.exposed_ports.clone();
    }
    out.join(", ")
}

fn command_text(c: &Container, trunc: bool) -> String {
    let cmd: Vec<&str> =
        c.config.config.entrypoint.iter().chain(&c.config.config.cmd).map(String::as_str).collect();
    let cmd = cmd.join(" ");
    format!("\"{}\"", if trunc { ellipsis(&cmd, 20) } else { cmd })
}

const PS_FIELDS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("State", "STATE"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Networks", "NETWORKS"),
    ("Mounts", "MOUNTS"),
];

fn ps_filter(c: &Container, filter: &str) -> Result<bool> {
    let (k, v) = filter.split_once('=').ok_or_else(|| anyhow!("bad filter {filter:?}: use key=value"))?;
    Ok(match k {
        "status" => {
            let valid = ["created", "restarting", "running", "removing", "paused", "exited", "dead"];
            if !valid.contains(&v) {
                bail!("invalid filter 'status={v}': use one of {}", valid.join(", "));
            }
            c.state.status.as_str() == v
        }
        // A regular expression over the name, as docker (`name=^web$`); docker's names carry a
        // leading `/`, so `^/web$` matches too.
        "name" => {
            let re = regex_lite::Regex::new(v).map_err(|e| anyhow!("invalid filter 'name={v}': {e}"))?;
            re.is_match(c.name()) || re.is_match(&format!("/{}", c.name()))
        }
        "id" => c.id().as_str().starts_with(v),
        "label" => match v.split_once('=') {
            Some((lk, lv)) => c.config.config.labels.get(lk).is_some_and(|x| x == lv),
            None => c.config.config.labels.contains_key(v),
        },
        "ancestor" => c.config.config.image == v || c.config.image_id.to_string().contains(v),
        "exited" => c.state.status == Status::Exited && c.state.exit_code.to_string() == v,
        other => bail!("invalid filter {other:?}: rbuild knows status, name, id, label, ancestor, exited"),
    })
}

pub fn ps(store: &Store, a: PsArgs) -> Result<ExitCode> {
    let containers = Containers::open(store.root())?;
    let mut list = Vec::new();
    for c in containers.list()? {
        list.push(lifecycle::refresh(&containers, c)?);
    }
    let mut rows: Vec<Container> = Vec::new();
    for c in list {
        let mut keep = a.all || a.latest || c.is_running() || !a.filter.is_empty();
        for f in &a.filter {
            keep &= ps_filter(&c, f)?;
        }
        if keep {
            rows.push(c);
        }
    }
    // Newest first, as docker.
    rows.reverse();
    if a.latest {
        rows.truncate(1);
    }
    let mut out = io::stdout().lock();
    if a.quiet {
        for c in &rows {
            writeln!(out, "{}", if a.no_trunc { c.id().as_str() } else { c.id().short() })?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let format = a.format.clone().unwrap_or_else(|| {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}".into()
    });
    let template = Template::parse(
        &format,
        PS_FIELDS,
        "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
    )?;
    let now = now_secs();
    let lines: Vec<String> = rows
        .iter()
        .map(|c| {
            let value = |f: &str| -> String {
                match f {
                    "ID" => {
                        if a.no_trunc {
                            c.id().to_string()
                        } else {
                            c.id().short().to_string()
                        }
                    }
                    "Image" => c.config.config.image.clone(),
                    "Command" => command_text(c, !a.no_trunc),
                    "CreatedAt" => c.config.created.clone(),
                    "RunningFor" => format!(
                        "{} ago",
                        human_duration(now - secs_of(Some(&c.config.created)).unwrap_or(now))
                    ),
                    "Status" => status_text(c),
                    "State" => c.state.status.as_str().to_string(),
                    "Ports" => ports_text(c),
                    "Names" => c.name().to_string(),
                    "Labels" => c
                        .config
                        .config
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    "Networks" => match &c.config.host.network {
                        NetworkRequest::Bridge(n) => n.join(","),
                        NetworkRequest::None => "none".into(),
                        NetworkRequest::Host => "host".into(),
                        NetworkRequest::Container(_) => "container".into(),
                    },
                    "Mounts" => c
                        .config
                        .host
                        .mounts
                        .iter()
                        .map(|m| m.target().to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => String::new(),
                }
            };
            let obj: serde_json::Map<String, Value> =
                PS_FIELDS.iter().map(|(f, _)| (f.to_string(), Value::String(value(f)))).collect();
            template.render(value, &Value::Object(obj))
        })
        .collect();
    template.write(PS_FIELDS, lines, &mut out)?;
    Ok(ExitCode::SUCCESS)
}

/// `docker inspect`'s view of a container.
pub fn inspect_json(store: &Store, c: &Container) -> Value {
    let cfg = &c.config.config;
    let host = &c.config.host;
    let s = &c.state;
    let zero = "0001-01-01T00:00:00Z";
    let args: Vec<String> = cfg.entrypoint.iter().chain(&cfg.cmd).cloned().collect();
    let volumes = runtime::volume::Volumes::open(store.root()).ok();
    let mounts: Vec<Value> = host
        .mounts
        .iter()
        .map(|m| match m {
            runtime::MountRequest::Volume { name, target, readonly, .. } => json!({
                "Type": "volume", "Name": name,
                "Source": volumes.as_ref().and_then(|v| v.get(name).ok()).map(|v| v.mountpoint.display().to_string()).unwrap_or_default(),
                "Destination": target, "Driver": "local", "Mode": if *readonly { "ro" } else { "" },
                "RW": !readonly, "Propagation": ""
            }),
            runtime::MountRequest::Bind { source, target, readonly } => json!({
                "Type": "bind", "Source": source, "Destination": target,
                "Mode": if *readonly { "ro" } else { "" }, "RW": !readonly, "Propagation": "rprivate"
            }),
            runtime::MountRequest::Tmpfs { target, .. } => json!({
                "Type": "tmpfs", "Source": "", "Destination": target, "Mode": "", "RW": true, "Propagation": ""
            }),
        })
        .collect();
    let mut networks = serde_json::Map::new();
    match &host.network {
        NetworkRequest::Bridge(names) => {
            for n in names {
                let ep = s.endpoints.iter().find(|e| &e.network == n);
                networks.insert(
                    n.clone(),
                    json!({
                        "Aliases": host.network_aliases,
                        "NetworkID": ep.map(|e| e.network_id.clone()).unwrap_or_default(),
                        "EndpointID": ep.map(|e| e.host_veth.clone()).unwrap_or_default(),
                        "Gateway": ep.map(|e| e.gateway.to_string()).unwrap_or_default(),
                        "IPAddress": ep.map(|e| e.ip.to_string()).unwrap_or_default(),
                        "IPPrefixLen": ep.map(|e| e.prefix_len).unwrap_or(0),
                        "MacAddress": ep.map(|e| e.mac.clone()).unwrap_or_default(),
                    }),
                );
            }
        }
        NetworkRequest::None => {
            networks.insert("none".into(), json!({"IPAddress": "", "Gateway": "", "MacAddress": ""}));
        }
        NetworkRequest::Host => {
            networks.insert("host".into(), json!({"IPAddress": "", "Gateway": "", "MacAddress": ""}));
        }
        NetworkRequest::Container(_) => {}
    }
    let mut ports = serde_json::Map::new();
    for e in &cfg.exposed_ports {
        ports.insert(e.clone(), Value::Null);
    }
    for p in &s.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        let binding = json!({"HostIp": p.host_ip.map_or("0.0.0.0".to_string(), |i| i.to_string()), "HostPort": p.host_port.to_string()});
        match ports.get_mut(&key) {
            Some(Value::Array(a)) => a.push(binding),
            _ => {
                ports.insert(key, json!([binding]));
            }
        }
    }
    let first = s.endpoints.first();
    let default_ep = s.endpoints.iter().find(|e| e.network == "bridge");
    json!({
        "Id": c.id().as_str(),
        "Created": c.config.created,
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.get(1..).unwrap_or_default(),
        "State": {
            "Status": s.status.as_str(),
            "Running": matches!(s.status, Status::Running | Status::Paused),
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": s.started_at.as_deref().unwrap_or(zero),
            "FinishedAt": s.finished_at.as_deref().unwrap_or(zero),
        },
        "Image": c.config.image_id.to_string(),
        "ResolvConfPath": c.resolv_path(),
        "HostnamePath": c.hostname_path(),
        "HostsPath": c.hosts_path(),
        "LogPath": c.log_path(),
        "Name": format!("/{}", c.name()),
        "RestartCount": s.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "NetworkMode": match &host.network {
                NetworkRequest::Bridge(n) => n.first().cloned().unwrap_or_default(),
                NetworkRequest::None => "none".into(),
                NetworkRequest::Host => "host".into(),
                NetworkRequest::Container(id) => format!("container:{id}"),
            },
            "PortBindings": host.ports.iter().map(|p| (format!("{}/{}", p.container_port, p.protocol.as_str()),
                json!([{"HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_default(), "HostPort": if p.host_port == 0 { String::new() } else { p.host_port.to_string() }}])))
                .collect::<serde_json::Map<String, Value>>(),
            "RestartPolicy": {"Name": host.restart.name(), "MaximumRetryCount": host.restart.max_retries()},
            "AutoRemove": host.auto_remove,
            "CapAdd": host.cap_add,
            "CapDrop": host.cap_drop,
            "Privileged": host.privileged,
            "PublishAllPorts": host.publish_all,
            "ReadonlyRootfs": host.read_only,
            "Init": host.init,
            "Dns": host.dns,
            "DnsSearch": host.dns_search,
            "ExtraHosts": host.extra_hosts.iter().map(|(h, ip)| format!("{h}:{ip}")).collect::<Vec<_>>(),
            "Memory": host.resources.memory.unwrap_or(0),
            "NanoCpus": match (host.resources.cpu_quota, host.resources.cpu_period) {
                (Some(q), Some(p)) if p > 0 => q * 1_000_000_000 / p,
                _ => 0,
            },
            "CpuShares": host.resources.cpu_shares.unwrap_or(0),
            "PidsLimit": host.resources.pids,
            "Tmpfs": host.mounts.iter().filter_map(|m| match m {
                runtime::MountRequest::Tmpfs { target, .. } => Some((target.clone(), Value::String(String::new()))),
                _ => None,
            }).collect::<serde_json::Map<String, Value>>(),
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": cfg.hostname,
            "Domainname": cfg.domainname,
            "User": cfg.user,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "Env": cfg.env,
            "Cmd": cfg.cmd,
            "Entrypoint": if cfg.entrypoint.is_empty() { Value::Null } else { json!(cfg.entrypoint) },
            "Image": cfg.image,
            "WorkingDir": cfg.working_dir,
            "Labels": cfg.labels,
            "ExposedPorts": cfg.exposed_ports.iter().map(|p| (p.clone(), json!({}))).collect::<serde_json::Map<String, Value>>(),
            "Volumes": cfg.volumes.iter().map(|p| (p.clone(), json!({}))).collect::<serde_json::Map<String, Value>>(),
            "StopSignal": cfg.stop_signal,
            "StopTimeout": cfg.stop_timeout,
        },
        "NetworkSettings": {
            "IPAddress": default_ep.map(|e| e.ip.to_string()).unwrap_or_default(),
            "Gateway": default_ep.map(|e| e.gateway.to_string()).unwrap_or_default(),
            "MacAddress": default_ep.or(first).map(|e| e.mac.clone()).unwrap_or_default(),
            "SandboxKey": if s.pid > 0 { c.netns_path().display().to_string() } else { String::new() },
            "Ports": ports,
            "Networks": networks,
        },
    })
}

/// `inspect NAME...` (containers first, then images, as docker) and `container inspect`.
pub fn inspect(
    store: &Store,
    names: &[String],
    format: Option<&str>,
    containers_only: bool,
) -> Result<ExitCode> {
    let containers = Containers::open(store.root())?;
    let template = format.map(GoTemplate::parse).transpose()?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for n in names {
        match containers.find(n) {
            Ok(c) => {
                let c = lifecycle::refresh(&containers, c)?;
                found.push(inspect_json(store, &c));
            }
            Err(runtime::Error::NoSuchContainer(_)) if !containers_only => match store.resolve(n) {
                Ok(image) => found.push(crate::images::inspect_json(store, &image)?),
                Err(_) => missing.push(n),
            },
            Err(runtime::Error::NoSuchContainer(_)) => missing.push(n),
            Err(e) => return Err(e.into()),
        }
    }
    match &template {
        Some(t) => {
            for v in &found {
                println!("{}", t.render(v)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&Value::Array(found))?),
    }
    // Docker's words: `inspect` looks for any object, `container inspect` for containers.
    let missing_text = |n: &str| {
        if containers_only { format!("no such container: {n}") } else { format!("No such object: {n}") }
    };
    match missing.as_slice() {
        [] => Ok(ExitCode::SUCCESS),
        [one] => bail!("{}", missing_text(one)),
        many => {
            for m in many {
                eprintln!("rbuild: error: {}", missing_text(m));
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

pub fn port(store: &Store, a: PortArgs) -> Result<ExitCode> {
    let containers = Containers::open(store.root())?;
    let c = lifecycle::refresh(&containers, containers.find(&a.container)?)?;
    let want = a.port.as_deref().map(|p| {
        let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        (port.to_string(), proto.to_string())
    });
    let mut any = false;
    for p in &c.state.ports {
        let ip = p.host_ip.map_or("0.0.0.0".to_string(), |i| i.to_string());
        match &want {
            Some((port, proto)) => {
                if p.container_port.to_string() == *port && p.protocol.as_str() == proto {
                    println!("{ip}:{}", p.host_port);
                    any = true;
                }
            }
            None => {
                println!("{}/{} -> {ip}:{}", p.container_port, p.protocol.as_str(), p.host_port);
                any = true;
            }
        }
    }
    if let (Some(p), false) = (&a.port, any) {
        bail!("no public port '{p}' published for {}", c.name());
    }
    Ok(ExitCode::SUCCESS)
}

fn cgroup_of(c: &Container) -> Result<executor::cgroup::Cgroup> {
    let name = c
        .state
        .cgroup
        .as_deref()
        .ok_or_else(|| anyhow!("container {} has no cgroup (is it running?)", c.name()))?;
    Ok(executor::cgroup::Cgroup::open(name)?)
}

pub fn top(store: &Store, a: TopArgs) -> Result<ExitCode> {
    let containers = Containers::open(store.root())?;
    let c = lifecycle::refresh(&containers, containers.find(&a.container)?)?;
    if !c.is_alive() {
        bail!("container {} is not running", c.name());
    }
    let mut pids = cgroup_of(&c)?.pids();
    pids.sort_unstable();
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut lines = vec!["UID\tPID\tPPID\tC\tSTIME\tTTY\tTIME\tCMD".to_string()];
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ppid = f.get(1).copied().unwrap_or("0");
        let ticks: u64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
            + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let secs = ticks / hz;
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("Uid:").and_then(|r| r.split_whitespace().next().map(str::to_string))
                })
            })
            .unwrap_or_default();
        let user = uid
            .parse::<u32>()
            .ok()
            .and_then(|u| nix::unistd::User::from_uid(u.into()).ok().flatten())
            .map_or(uid.clone(), |u| u.name);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let mut cmd: String = cmdline
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if cmd.is_empty() {
            cmd = format!("[{}]", &stat[stat.find('(').map_or(0, |i| i + 1)..close]);
        }
        lines.push(format!(
            "{user}\t{pid}\t{ppid}\t0\t-\t?\t{:02}:{:02}:{:02}\t{cmd}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        ));
    }
    print!("{}", crate::images::tabulate(&lines));
    Ok(ExitCode::SUCCESS)
}

fn net_io(pid: i32) -> (u64, u64) {
    let Ok(dev) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else { return (0, 0) };
    let mut rx = 0;
    let mut tx = 0;
    for line in dev.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else { continue };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        rx += f.first().copied().unwrap_or(0);
        tx += f.get(8).copied().unwrap_or(0);
    }
    (rx, tx)
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Docker's binary sizes for stats (`1.5MiB`).
fn human_binary(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{}{}", (v * 100.0).round() / 100.0, UNITS[u])
}

pub fn stats(store: &Store, a: StatsArgs) -> Result<ExitCode> {
    let containers = Containers::open(store.root())?;
    loop {
        let mut list = Vec::new();
        if a.containers.is_empty() {
            for c in containers.list()? {
                let c = lifecycle::refresh(&containers, c)?;
                if a.all || c.is_running() {
                    list.push(c);
                }
            }
        } else {
            for n in &a.containers {
                list.push(lifecycle::refresh(&containers, containers.find(n)?)?);
            }
        }
        let sample = |c: &Container| {
            c.state.cgroup.as_deref().and_then(|n| executor::cgroup::Cgroup::open(n).ok()?.stats().ok())
        };
        let first: Vec<_> = list.iter().map(sample).collect();
        let t0 = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(if a.no_stream { 200 } else { 1000 }));
        let elapsed = t0.elapsed().as_nanos().max(1) as f64;
        let host_mem = host_memory();
        let mut rows = Vec::new();
        for (c, before) in list.iter().zip(first) {
            let after = sample(c);
            let (cpu, mem, limit, pids) = match (&before, &after) {
                (Some(b), Some(s)) => (
                    (s.cpu_usage_ns.saturating_sub(b.cpu_usage_ns)) as f64 / elapsed * 100.0,
                    s.memory_usage,
                    s.memory_limit.unwrap_or(host_mem).min(host_mem.max(1)),
                    s.pids_current,
                ),
                _ => (0.0, 0, host_mem, 0),
            };
            let (rx, tx) = if c.state.pid > 0 { net_io(c.state.pid) } else { (0, 0) };
            let mem_perc = if limit > 0 { mem as f64 / limit as f64 * 100.0 } else { 0.0 };
            rows.push((c.clone(), cpu, mem, limit, mem_perc, rx, tx, pids));
        }
        let mut out = io::stdout().lock();
        if !a.no_stream {
            // Docker redraws the table in place.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        match a.format.as_deref() {
            Some(f) => {
                let t = GoTemplate::parse(if f == "json" { "{{json .}}" } else { f })?;
                for (c, cpu, mem, limit, mem_perc, rx, tx, pids) in &rows {
                    let v = json!({
                        "ID": c.id().short(), "Container": c.id().short(), "Name": c.name(),
                        "CPUPerc": format!("{cpu:.2}%"), "MemUsage": format!("{} / {}", human_binary(*mem), human_binary(*limit)),
                        "MemPerc": format!("{mem_perc:.2}%"), "NetIO": format!("{} / {}", human_size(*rx, 3), human_size(*tx, 3)),
                        "BlockIO": "0B / 0B", "PIDs": pids.to_string(),
                    });
                    writeln!(out, "{}", t.render(&v)?)?;
                }
            }
            None => {
                let mut lines = vec![
                    "CONTAINER ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET I/O\tBLOCK I/O\tPIDS"
                        .to_string(),
                ];
                for (c, cpu, mem, limit, mem_perc, rx, tx, pids) in &rows {
                    lines.push(format!(
                        "{}\t{}\t{cpu:.2}%\t{} / {}\t{mem_perc:.2}%\t{} / {}\t0B / 0B\t{pids}",
                        c.id().short(),
                        c.name(),
                        human_binary(*mem),
                        human_binary(*limit),
                        human_size(*rx, 3),
                        human_size(*tx, 3),
                    ));
                }
                write!(out, "{}", crate::images::tabulate(&lines))?;
            }
        }
        out.flush()?;
        if a.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let p = parse_port("127.0.0.1:8080:80").unwrap();
        assert_eq!(
            (p.host_ip.map(|i| i.to_string()), p.host_port, p.container_port),
            (Some("127.0.0.1".into()), 8080, 80)
        );
        let p = parse_port("53/udp").unwrap();
        assert_eq!((p.host_port, p.container_port, p.protocol), (0, 53, Protocol::Udp));
        assert_eq!(parse_port("8080:80").unwrap().host_port, 8080);
        assert!(parse_port("80/sctp").is_err());
        assert!(parse_port("x:80").is_err());
        assert!(parse_port("1.2.3.4:0:99999").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(parse_restart("on-failure:2").unwrap(), RestartPolicy::OnFailure(2));
        assert_eq!(parse_restart("always").unwrap(), RestartPolicy::Always);
        assert!(parse_restart("sometimes").is_err());
    }

    #[test]
    fn networks() {
        assert_eq!(parse_network(&[]).unwrap(), NetworkRequest::Bridge(vec!["bridge".into()]));
        assert_eq!(
            parse_network(&["container:web".into()]).unwrap(),
            NetworkRequest::Container("web".into())
        );
        assert!(parse_network(&["none".into(), "net1".into()]).is_err());
    }
}
