//! The container commands: `create`, `run`, `start`, `stop`, `kill`, `pause`, `exec`, `logs`,
//! `ps`, `inspect`, `rm`, `wait`, `top`, `stats`, `port`, `rename`, `attach`, `container
//! prune`. The work is in runtime/; this module parses flags and prints as docker does.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use cache::Store;
use runtime::container::{Container, Containers};
use runtime::exec::{ExecRequest, ExecStdio};
use runtime::filters::Filters;
use runtime::lifecycle::{self, CreateOptions, Started};
use runtime::{NetworkRequest, PortMapping, Protocol, RestartPolicy};
use serde_json::{Value, json};

use crate::container_args::*;
use crate::output::{Format, each, ellipsis, human_binary, human_duration, human_size};
use crate::session;

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
        [] => Ok(NetworkRequest::default_for_this_process()),
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

fn create_options(root: &Path, f: &CreateFlags, auto_remove: bool) -> Result<CreateOptions> {
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
        host.extra_hosts.push(crate::args::parse_add_host(h)?);
    }
    host.mounts = runtime::mountflags::parse_mounts(&f.volume, &f.mount, &f.tmpfs)?;
    host.resources = f.resources.resources()?;
    host.limits = crate::commands::process_limits(f.shm_size.as_deref(), &f.ulimits)?;
    lifecycle::add_volumes_from(root, &f.volumes_from, &mut host.mounts)?;
    host.log =
        runtime::logs::LogConfig::parse(f.log_driver.as_deref(), &f.log_opt).map_err(|e| anyhow!("{e}"))?;
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
        // `run -i` closes the container's stdin with the user's, as docker's CLI asks.
        stdin_once: f.interactive,
        stop_signal: f.stop_signal.clone(),
        stop_timeout: f.stop_timeout,
        domainname: None,
        exposed_ports: Vec::new(),
        healthcheck: healthcheck(f)?,
        host,
        platform: platform(f)?.as_ref().map(cache::oci::Platform::from),
    })
}

/// `--health-*` and `--no-healthcheck` as docker reads them: `None` when none is given (the
/// image's stays), fields not given left 0 to take the image's.
fn healthcheck(f: &CreateFlags) -> Result<Option<runtime::health::HealthConfig>> {
    let durations = [
        ("--health-interval", &f.health_interval),
        ("--health-timeout", &f.health_timeout),
        ("--health-start-period", &f.health_start_period),
        ("--health-start-interval", &f.health_start_interval),
    ];
    let given =
        f.health_cmd.is_some() || f.health_retries.is_some() || durations.iter().any(|(_, v)| v.is_some());
    if f.no_healthcheck {
        if given {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(Some(runtime::health::HealthConfig { test: vec!["NONE".into()], ..Default::default() }));
    }
    if !given {
        return Ok(None);
    }
    let mut ns = [0u64; 4];
    for (slot, (flag, value)) in ns.iter_mut().zip(durations) {
        if let Some(v) = value {
            let d = hostutil::goparse::parse_go_duration(v).map_err(|e| anyhow!("{flag} {v:?}: {e}"))?;
            // Docker's minimum for a set duration; 0 means "the default".
            if d != 0 && d < 1_000_000 {
                bail!("{flag} {v:?}: cannot be less than 1ms");
            }
            *slot = u64::try_from(d).map_err(|_| anyhow!("{flag} {v:?}: cannot be negative"))?;
        }
    }
    Ok(Some(runtime::health::HealthConfig {
        test: f.health_cmd.iter().flat_map(|c| ["CMD-SHELL".to_string(), c.clone()]).collect(),
        interval: ns[0],
        timeout: ns[1],
        start_period: ns[2],
        start_interval: ns[3],
        retries: f.health_retries.unwrap_or(0),
    }))
}

/// `--platform`, parsed.
fn platform(f: &CreateFlags) -> Result<Option<frontend::Platform>> {
    f.platform
        .as_deref()
        .map(|p| frontend::Platform::parse(p).map_err(|e| anyhow!("--platform: {e}")))
        .transpose()
}

/// The image, pulled as `--pull` says (default: only if the store lacks it). A name that is an
/// index in the store (`pull --all-platforms`) counts as present.
fn ensure_image(store: &Store, f: &CreateFlags) -> Result<()> {
    if let Some(p) = platform(f)? {
        crate::transfer::fetcher(&[], f.pull)?.resolve_for(
            store,
            &f.image,
            &cache::oci::Platform::from(&p),
        )?;
        return Ok(());
    }
    if f.pull != solver::PullPolicy::Always && store.lookup(&f.image).is_ok() {
        return Ok(());
    }
    crate::transfer::ensure_pulled(store, &f.image, f.pull)
}

pub fn create(store: &Store, a: CreateArgs) -> Result<ExitCode> {
    ensure_image(store, &a.create)?;
    let opts = create_options(store.root(), &a.create, false)?;
    let c = lifecycle::create(store.root(), store, &a.create.image, opts)?;
    println!("{}", c.id());
    Ok(ExitCode::SUCCESS)
}

/// Docker's exit codes for a container that could not start: 127 when the command does not
/// exist, 126 when it cannot be run; the message is the one error line.
fn start_failed(e: runtime::Error) -> Result<ExitCode> {
    if !e.is_start_failure() {
        return Err(e.into());
    }
    eprintln!("rbuild: error: {}", hostutil::errors::one_line(&e));
    Ok(ExitCode::from(e.start_code().clamp(0, 255) as u8))
}

pub fn run(store: &Store, a: RunArgs) -> Result<ExitCode> {
    // First thing: the kernel's grace period for the sandbox's cgroup join is paid while the
    // container is created and its monitor and init start (executor::cgroup::warm_migrations).
    let _warm = runtime::warm_migrations();
    ensure_image(store, &a.create)?;
    let opts = create_options(store.root(), &a.create, a.rm)?;
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
            Ok(Started::Attached(stream)) => {
                match session::attached(root, &c, stream, tty, stdin, a.sig_proxy) {
                    Ok(c) => Ok(code(c)),
                    Err(e) => match e.downcast::<runtime::Error>() {
                        Ok(e) => start_failed(e),
                        Err(e) => Err(e),
                    },
                }
            }
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
            Started::Attached(s) => {
                Ok(code(session::attached(root, &c, s, c.config.config.tty, a.interactive, true)?))
            }
            Started::Detached => Ok(ExitCode::SUCCESS),
        };
    }
    each(&a.containers, |name| {
        lifecycle::start(root, name, false)?;
        Ok(())
    })
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
    Containers::open(store.root())?.rename(&a.container, &a.new_name)?;
    Ok(ExitCode::SUCCESS)
}

pub fn prune(store: &Store, _a: PruneArgs) -> Result<ExitCode> {
    let pruned = lifecycle::prune(store.root())?;
    if !pruned.containers.is_empty() {
        println!("Deleted Containers:");
        for id in &pruned.containers {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(pruned.reclaimed, 3));
    Ok(ExitCode::SUCCESS)
}

pub fn attach(store: &Store, a: AttachArgs) -> Result<ExitCode> {
    let containers = Containers::open(store.root())?;
    let c = lifecycle::refresh(&containers, containers.find(&a.container)?)?;
    if !c.is_running() {
        bail!("you cannot attach to a stopped container, start it first");
    }
    let stream = lifecycle::attach_to(&c)?;
    let stdin = !a.no_stdin && c.config.config.open_stdin;
    Ok(code(session::attached(store.root(), &c, stream, c.config.config.tty, stdin, a.sig_proxy)?))
}

// ---------------------------------------------------------------------------------------------
// exec

pub fn exec(store: &Store, a: ExecArgs) -> Result<ExitCode> {
    let req = ExecRequest {
        cmd: a.command.clone(),
        env: env_pairs(&a.env, &a.env_file)?,
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        tty: a.tty && !a.detach,
        size: if a.tty { session::exec_size() } else { None },
        privileged: a.privileged,
        id: Some(runtime::exec::new_id()),
    };
    // `docker exec` creates, then starts: the same events (start and die come from the runtime).
    runtime::exec::event(store.root(), &a.container, "exec_create", &req);
    if a.detach {
        return match runtime::exec::detach(store.root(), &a.container, &req) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => start_failed(e),
        };
    }
    if req.tty {
        let exec = match runtime::exec::exec(store.root(), &a.container, &req, ExecStdio::Null) {
            Ok(exec) => exec,
            Err(e) => return start_failed(e),
        };
        return Ok(code(session::exec_tty(exec, a.interactive)?));
    }
    let stdin: OwnedFd = if a.interactive {
        io::stdin().as_fd().try_clone_to_owned()?
    } else {
        std::fs::File::open("/dev/null")?.into()
    };
    let stdio = ExecStdio::Fds {
        stdin,
        stdout: io::stdout().as_fd().try_clone_to_owned()?,
        stderr: io::stderr().as_fd().try_clone_to_owned()?,
    };
    match runtime::exec::exec(store.root(), &a.container, &req, stdio) {
        Ok(exec) => Ok(code(exec.wait()?)),
        Err(e) => start_failed(e),
    }
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
    if !c.config.host.log.keeps() {
        bail!("configured logging driver does not support reading");
    }
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
    let (entries, offset) = runtime::logs::read(&path, &filter)?;
    print(entries)?;
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let later = Filter { tail: None, ..filter };
    let mut follower = runtime::logs::Follower::new(&path, offset);
    loop {
        let running = match containers.load(c.id()) {
            Ok(c) => {
                let c = lifecycle::refresh(&containers, c)?;
                c.is_running() || c.monitor_alive()
            }
            Err(_) => false,
        };
        print(follower.poll()?.into_iter().filter(|e| later_keeps(&later, e)).collect())?;
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

pub fn ps(store: &Store, a: PsArgs) -> Result<ExitCode> {
    let filters = Filters::for_containers(&a.filter)?;
    let format = a.format.clone().unwrap_or_else(|| "table".into());
    let format = Format::for_list(
        &format,
        PS_FIELDS,
        "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
    )?;
    let containers = Containers::open(store.root())?;
    let mut rows: Vec<Container> = Vec::new();
    for c in containers.list()? {
        let c = lifecycle::refresh(&containers, c)?;
        let listed = a.all || a.latest || c.is_running() || !filters.is_empty();
        if listed && filters.matches_container(&c) {
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
    let now = cache::time::now_unix();
    let rows: Vec<Value> = rows.iter().map(|c| ps_row(c, a.no_trunc, now)).collect();
    format.write_rows(PS_FIELDS, &rows, &mut out)?;
    Ok(ExitCode::SUCCESS)
}

/// One `ps` row, docker's `--format` fields as strings.
fn ps_row(c: &Container, no_trunc: bool, now: i64) -> Value {
    let labels: Vec<String> = c.config.config.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let networks = match &c.config.host.network {
        NetworkRequest::Bridge(n) => n.join(","),
        NetworkRequest::None => "none".into(),
        NetworkRequest::Host => "host".into(),
        NetworkRequest::Container(_) => "container".into(),
    };
    let mounts: Vec<&str> = c.config.host.mounts.iter().map(|m| m.target()).collect();
    json!({
        "ID": if no_trunc { c.id().as_str() } else { c.id().short() },
        "Image": c.config.config.image,
        "Command": command_text(c, !no_trunc),
        "CreatedAt": c.config.created,
        "RunningFor": format!("{} ago", human_duration(now - secs_of(Some(&c.config.created)).unwrap_or(now))),
        "Status": c.status_text(),
        "State": c.state.status.as_str(),
        "Ports": ports_text(c),
        "Names": c.name(),
        "Labels": labels.join(","),
        "Networks": networks,
        "Mounts": mounts.join(","),
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
    let template = format.map(Format::parse).transpose()?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for n in names {
        match containers.find(n) {
            Ok(c) => {
                let c = lifecycle::refresh(&containers, c)?;
                found.push(runtime::inspect::container(store.root(), &c));
            }
            Err(runtime::Error::NoSuchContainer(_)) if !containers_only => {
                match store.lookup(n).and_then(|d| store.image_or_any(&d)) {
                    Ok(image) => found.push(crate::images::inspect_json(store, n, &image)?),
                    Err(_) => missing.push(n),
                }
            }
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
    crate::output::finish(missing.iter().map(|m| anyhow!("{}", missing_text(m))).collect())
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

pub fn top(store: &Store, a: TopArgs) -> Result<ExitCode> {
    let top = runtime::top::top(store.root(), &a.container)?;
    let mut lines = vec![top.titles.join("\t")];
    lines.extend(top.processes.iter().map(|p| p.join("\t")));
    print!("{}", crate::output::tabulate(&lines));
    Ok(ExitCode::SUCCESS)
}

const STATS_FIELDS: &crate::output::Fields = &[
    ("ID", "CONTAINER ID"),
    ("Container", "CONTAINER"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

pub fn stats(store: &Store, a: StatsArgs) -> Result<ExitCode> {
    let format = Format::for_list(
        a.format.as_deref().unwrap_or("table"),
        STATS_FIELDS,
        "{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}",
    )?;
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
        let first: Vec<_> = list.iter().map(runtime::stats::sample).collect();
        std::thread::sleep(Duration::from_millis(if a.no_stream { 200 } else { 1000 }));
        let rows: Vec<Value> = list
            .iter()
            .zip(first)
            .map(|(c, before)| {
                let s = runtime::stats::sample(c);
                json!({
                    "ID": c.id().short(), "Container": c.id().short(), "Name": c.name(),
                    "CPUPerc": format!("{:.2}%", s.cpu_percent(&before)),
                    "MemUsage": format!("{} / {}", human_binary(s.memory), human_binary(s.memory_limit)),
                    "MemPerc": format!("{:.2}%", s.memory_percent()),
                    "NetIO": format!("{} / {}", human_size(s.net_rx, 3), human_size(s.net_tx, 3)),
                    "BlockIO": "0B / 0B", "PIDs": s.pids.to_string(),
                })
            })
            .collect();
        let mut out = io::stdout().lock();
        if !a.no_stream {
            // Docker redraws the table in place.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        format.write_rows(STATS_FIELDS, &rows, &mut out)?;
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
