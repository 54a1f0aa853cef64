//! `/containers/...`: list, create, inspect, start, stop, kill, restart, wait, remove, logs,
//! rename, prune, through runtime/'s lifecycle functions (what `rbuild run`, `ps`, `logs`
//! call); their files in [`fs`], their processes and usage in [`stats`].

mod fs;
mod stats;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use fs::BodyWriter;
use runtime::container::{Container, Containers};
use runtime::lifecycle::{self, CreateOptions};
use runtime::{NetworkRequest, PortMapping, Protocol, RestartPolicy};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, Ctx, blocking};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/containers/json", get(list))
        .route("/containers/create", post(create))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}", delete(remove))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/prune", post(prune))
        .route("/containers/{id}/pause", post(stats::pause))
        .route("/containers/{id}/unpause", post(stats::unpause))
        .route("/containers/{id}/top", get(stats::top))
        .route("/containers/{id}/stats", get(stats::stats))
        .route("/containers/{id}/changes", get(fs::changes))
        .route("/containers/{id}/export", get(fs::export))
        .route("/containers/{id}/archive", get(fs::archive_get).head(fs::archive_head).put(fs::archive_put))
}

/// A query flag as docker reads one: `1`, `true` (and `True`...) are true.
pub(crate) fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"))
}

/// `filters={"status":["running"],"label":["a=b"]}` as `ps --filter` values (`status=running`).
pub(crate) fn filter_values(q: &HashMap<String, String>) -> Result<Vec<String>, ApiError> {
    let Some(raw) = q.get("filters").filter(|f| !f.is_empty()) else { return Ok(Vec::new()) };
    let parsed: BTreeMap<String, Value> =
        serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("invalid filters: {e}")))?;
    let mut out = Vec::new();
    for (key, values) in parsed {
        // Both `["a"]` and the old `{"a": true}` shapes.
        let list: Vec<String> = match values {
            Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Value::Object(m) => m.keys().cloned().collect(),
            _ => return Err(ApiError::bad_request(format!("invalid filter {key:?}"))),
        };
        out.extend(list.into_iter().map(|v| format!("{key}={v}")));
    }
    Ok(out)
}

/// One row of `GET /containers/json`, as dockerd's `types.Container`: its mounts and
/// networks as inspect shows them.
pub(crate) fn summary(root: &std::path::Path, c: &Container) -> Value {
    let cfg = &c.config.config;
    let command: Vec<String> = cfg.entrypoint.iter().chain(&cfg.cmd).cloned().collect();
    let created = runtime::container::parse_rfc3339(&c.config.created).map_or(0, |(s, _)| s);
    let ports: Vec<Value> = c
        .state
        .ports
        .iter()
        .map(|p| {
            json!({
                "IP": p.host_ip.map_or("0.0.0.0".to_string(), |i| i.to_string()),
                "PrivatePort": p.container_port,
                "PublicPort": p.host_port,
                "Type": p.protocol.as_str(),
            })
        })
        .collect();
    let mut full = runtime::inspect::container(root, c);
    let mounts: Vec<Value> = full["Mounts"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let mut m = m.clone();
                    if let Some(o) = m.as_object_mut() {
                        o.entry("Name").or_insert(Value::String(String::new()));
                        o.entry("Driver").or_insert(Value::String(String::new()));
                    }
                    m
                })
                .collect()
        })
        .unwrap_or_default();
    let networks = full["NetworkSettings"]["Networks"].take();
    json!({
        "Id": c.id().as_str(),
        "Names": [format!("/{}", c.name())],
        "Image": cfg.image,
        "ImageID": c.config.image_id.to_string(),
        "Command": command.join(" "),
        "Created": created,
        "Ports": ports,
        "Labels": cfg.labels,
        "State": c.state.status.as_str(),
        "Status": c.status_text(),
        "HostConfig": { "NetworkMode": network_mode(&c.config.host.network) },
        "NetworkSettings": { "Networks": networks },
        "Mounts": mounts,
    })
}

fn network_mode(n: &NetworkRequest) -> String {
    match n {
        NetworkRequest::Bridge(names) => names.first().cloned().unwrap_or_else(|| "bridge".into()),
        NetworkRequest::None => "none".into(),
        NetworkRequest::Host => "host".into(),
        NetworkRequest::Container(id) => format!("container:{id}"),
    }
}

async fn list(
    State(ctx): State<Ctx>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let filters = runtime::filters::Filters::for_containers(&filter_values(&q)?)?;
        let all = flag(&q, "all");
        let containers = Containers::open(ctx.root.as_path())?;
        let mut rows = Vec::new();
        let mut listed: Vec<Container> = Vec::new();
        for c in containers.list()? {
            let c = lifecycle::refresh(&containers, c)?;
            if (all || c.is_running() || !filters.is_empty()) && filters.matches_container(&c) {
                listed.push(c);
            }
        }
        // Newest first, as docker.
        listed.sort_by(|a, b| b.config.created.cmp(&a.config.created));
        if let Some(n) = q.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|n| *n > 0) {
            listed.truncate(n);
        }
        for c in &listed {
            rows.push(summary(ctx.root.as_path(), c));
        }
        Ok(axum::Json(Value::Array(rows)).into_response())
    })
    .await
}

async fn inspect(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    blocking(move || {
        let containers = Containers::open(ctx.root.as_path())?;
        let c = lifecycle::refresh(&containers, containers.find(&id)?)?;
        Ok(axum::Json(runtime::inspect::container(ctx.root.as_path(), &c)).into_response())
    })
    .await
}

/// The parts of docker's create body rbuild maps onto its options; fields it does not know are
/// ignored, as dockerd ignores them (`MacAddress`, `AttachStdin`... are accepted that way).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    image: String,
    cmd: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: String,
    user: String,
    hostname: String,
    domainname: String,
    labels: Option<BTreeMap<String, String>>,
    tty: bool,
    open_stdin: bool,
    stdin_once: bool,
    stop_signal: Option<String>,
    stop_timeout: Option<u32>,
    healthcheck: Option<HealthBody>,
    /// Anonymous volumes: `{"/data": {}}`.
    volumes: Option<BTreeMap<String, Value>>,
    exposed_ports: Option<BTreeMap<String, Value>>,
    host_config: HostBody,
    networking_config: NetworkingBody,
}

/// `Healthcheck`: docker-py (compose's `healthcheck:`) sends null for the durations and
/// retries left out, which mean the image's or the default, as 0 does.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct HealthBody {
    test: Option<Vec<String>>,
    interval: Option<u64>,
    timeout: Option<u64>,
    start_period: Option<u64>,
    start_interval: Option<u64>,
    retries: Option<u32>,
}

impl From<HealthBody> for runtime::health::HealthConfig {
    fn from(h: HealthBody) -> Self {
        runtime::health::HealthConfig {
            test: h.test.unwrap_or_default(),
            interval: h.interval.unwrap_or_default(),
            timeout: h.timeout.unwrap_or_default(),
            start_period: h.start_period.unwrap_or_default(),
            start_interval: h.start_interval.unwrap_or_default(),
            retries: h.retries.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct HostBody {
    binds: Option<Vec<String>>,
    mounts: Option<Vec<MountBody>>,
    tmpfs: Option<BTreeMap<String, String>>,
    volumes_from: Option<Vec<String>>,
    network_mode: String,
    port_bindings: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    publish_all_ports: bool,
    restart_policy: Option<RestartBody>,
    auto_remove: bool,
    privileged: bool,
    readonly_rootfs: bool,
    init: Option<bool>,
    cap_add: Option<Vec<String>>,
    cap_drop: Option<Vec<String>>,
    log_config: Option<LogBody>,
    console_size: Option<Vec<u16>>,
    // Numbers as options: clients other than docker's CLI send null for "not set".
    memory: Option<i64>,
    memory_swap: Option<i64>,
    nano_cpus: Option<i64>,
    cpu_shares: Option<i64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<i64>,
    cpuset_cpus: Option<String>,
    pids_limit: Option<i64>,
    shm_size: Option<i64>,
    ulimits: Option<Vec<UlimitBody>>,
    extra_hosts: Option<Vec<String>>,
    dns: Option<Vec<String>>,
    dns_search: Option<Vec<String>>,
    dns_options: Option<Vec<String>>,
    security_opt: Option<Vec<String>>,
    group_add: Option<Vec<String>>,
    sysctls: Option<BTreeMap<String, String>>,
    devices: Option<Vec<Value>>,
    links: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct MountBody {
    #[serde(rename = "Type")]
    kind: String,
    source: String,
    target: String,
    read_only: bool,
    bind_options: Option<BindOptionsBody>,
    volume_options: Option<VolumeOptionsBody>,
    tmpfs_options: Option<TmpfsOptionsBody>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct BindOptionsBody {
    propagation: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct VolumeOptionsBody {
    no_copy: bool,
    driver_config: Option<DriverBody>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DriverBody {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct TmpfsOptionsBody {
    size_bytes: i64,
    mode: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UlimitBody {
    name: String,
    soft: i64,
    hard: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkingBody {
    endpoints_config: Option<BTreeMap<String, Option<EndpointBody>>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointBody {
    aliases: Option<Vec<String>>,
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<IpamBody>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct IpamBody {
    #[serde(rename = "IPv4Address")]
    ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    ipv6_address: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct PortBinding {
    host_ip: String,
    host_port: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RestartBody {
    name: String,
    maximum_retry_count: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct LogBody {
    #[serde(rename = "Type")]
    driver: String,
    config: Option<BTreeMap<String, String>>,
}

/// A `Mounts` entry as the `--mount` value it stands for, so both front ends read mounts with
/// one parser (runtime::mountflags).
fn mount_flag(m: &MountBody) -> Result<String, ApiError> {
    let mut parts = vec![format!("type={}", m.kind), format!("target={}", m.target)];
    if !m.source.is_empty() {
        parts.push(format!("source={}", m.source));
    }
    if m.read_only {
        parts.push("readonly".into());
    }
    if let Some(b) = m.bind_options.as_ref().filter(|b| !b.propagation.is_empty()) {
        parts.push(format!("bind-propagation={}", b.propagation));
    }
    if let Some(v) = &m.volume_options {
        if v.no_copy {
            parts.push("volume-nocopy".into());
        }
        if let Some(d) = v.driver_config.as_ref().filter(|d| !d.name.is_empty() && d.name != "local") {
            return Err(ApiError::bad_request(format!(
                "mount {}: volume driver {:?} is not supported (local volumes only)",
                m.target, d.name
            )));
        }
    }
    if let Some(t) = &m.tmpfs_options {
        if t.size_bytes > 0 {
            parts.push(format!("tmpfs-size={}", t.size_bytes));
        }
        if t.mode != 0 {
            parts.push(format!("tmpfs-mode={:o}", t.mode & 0o7777));
        }
    }
    if parts.iter().any(|p| p.contains(',')) {
        return Err(ApiError::bad_request(format!("mount {}: a comma in a source or target", m.target)));
    }
    Ok(parts.join(","))
}

/// `SecurityOpt` values that ask for what rbuild does anyway: no LSM labels or profiles are
/// applied, and `no_new_privs` is always set on an unprivileged container.
fn security_opt_ok(opt: &str) -> bool {
    let opt = opt.replacen(':', "=", 1);
    matches!(
        opt.as_str(),
        "label=disable" | "apparmor=unconfined" | "no-new-privileges" | "no-new-privileges=true"
    )
}

/// A 400 for a field rbuild cannot honour, naming it.
fn unsupported(field: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("{field} is not supported by rbuild: {why}"))
}

fn resources(h: &HostBody) -> Result<runtime::Resources, ApiError> {
    let bad = |e: runtime::ResourceError| ApiError::bad_request(e.to_string());
    let n = |v: Option<i64>| v.unwrap_or(0);
    let (memory, swap) = (n(h.memory), n(h.memory_swap));
    if swap != 0 && swap != memory {
        return Err(unsupported(
            "MemorySwap",
            "containers get no swap beyond their memory limit (leave it 0 or equal to Memory)",
        ));
    }
    if h.cpuset_cpus.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(unsupported("CpusetCpus", "CPU pinning is not implemented"));
    }
    let (nano_cpus, quota, period) = (n(h.nano_cpus), n(h.cpu_quota), n(h.cpu_period));
    if nano_cpus > 0 && (quota > 0 || period > 0) {
        return Err(ApiError::bad_request(
            "conflicting options: Nano CPUs and CPU Period/Quota cannot both be set",
        ));
    }
    let mut r = runtime::Resources::from_docker(
        u64::try_from(memory).unwrap_or(0),
        u64::try_from(nano_cpus).unwrap_or(0),
        n(h.cpu_shares),
        n(h.pids_limit),
    )
    .map_err(bad)?;
    if quota > 0 {
        r.cpu_quota = Some(quota as u64);
        r.cpu_period = Some(if period > 0 { period as u64 } else { 100_000 });
    }
    Ok(r)
}

fn limits(h: &HostBody) -> Result<runtime::ProcessLimits, ApiError> {
    let mut l = runtime::ProcessLimits::default();
    if let Some(size) = h.shm_size.filter(|s| *s > 0) {
        l.shm_size = Some(size as u64);
    }
    for u in h.ulimits.iter().flatten() {
        let text = format!("{}={}:{}", u.name, u.soft, u.hard);
        l.ulimits.push(text.parse().map_err(|e: runtime::UlimitError| ApiError::bad_request(e.to_string()))?);
    }
    Ok(l)
}

/// Fields rbuild has no way to honour: a 400 when they ask for something, nothing when empty
/// (docker's CLI sends them all, empty).
fn refuse_unsupported(h: &HostBody) -> Result<(), ApiError> {
    if h.dns_options.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(unsupported("DnsOptions", "resolv.conf options are not written"));
    }
    if h.group_add.as_ref().is_some_and(|g| !g.is_empty()) {
        return Err(unsupported("GroupAdd", "supplementary groups are the image user's only"));
    }
    if h.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(unsupported("Sysctls", "namespaced sysctls are not set"));
    }
    if h.devices.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(unsupported("Devices", "host devices are not passed in (use Privileged)"));
    }
    if let Some(opt) = h.security_opt.iter().flatten().find(|o| !security_opt_ok(o)) {
        return Err(unsupported(
            "SecurityOpt",
            &format!("{opt:?} (label=disable, apparmor=unconfined and no-new-privileges are accepted)"),
        ));
    }
    Ok(())
}

/// The network and aliases: `NetworkMode`, and `NetworkingConfig.EndpointsConfig` for that
/// network (compose names its network there with the service as an alias).
fn network(h: &HostBody, n: &NetworkingBody) -> Result<(NetworkRequest, Vec<String>), ApiError> {
    let endpoints = n.endpoints_config.as_ref().map(|e| e.iter().collect::<Vec<_>>()).unwrap_or_default();
    if endpoints.len() > 1 {
        let names: Vec<&str> = endpoints.iter().map(|(k, _)| k.as_str()).collect();
        return Err(ApiError::bad_request(format!(
            "Container cannot be connected to network endpoints: {}",
            names.join(", ")
        )));
    }
    let mode = match (h.network_mode.as_str(), endpoints.first()) {
        ("" | "default", Some((name, _))) => name.as_str(),
        (m, _) => m,
    };
    let request = match mode {
        "" | "default" | "bridge" => NetworkRequest::Bridge(vec!["bridge".into()]),
        "none" => NetworkRequest::None,
        "host" => NetworkRequest::Host,
        other => match other.strip_prefix("container:") {
            Some(c) => NetworkRequest::Container(c.to_string()),
            None => NetworkRequest::Bridge(vec![other.to_string()]),
        },
    };
    let mut aliases = Vec::new();
    if let Some((_, Some(ep))) = endpoints.first() {
        if let Some(ipam) = &ep.ipam_config
            && (!ipam.ipv4_address.is_empty() || !ipam.ipv6_address.is_empty())
        {
            return Err(unsupported(
                "IPAMConfig",
                "static addresses are not implemented: leave the address to the network",
            ));
        }
        aliases = ep.aliases.clone().unwrap_or_default();
    }
    Ok((request, aliases))
}

/// What the create body asks for, as `rbuild create`'s options; warnings for what is ignored.
fn create_options(
    root: &std::path::Path,
    name: Option<String>,
    b: CreateBody,
) -> Result<(CreateOptions, Vec<String>), ApiError> {
    let h = b.host_config;
    refuse_unsupported(&h)?;
    let mut warnings = Vec::new();
    if h.links.as_ref().is_some_and(|l| !l.is_empty()) {
        warnings.push("Links are ignored: reach containers by name on a user-defined network".to_string());
    }
    let (network, network_aliases) = network(&h, &b.networking_config)?;
    let mut host = runtime::container::HostConfig {
        network,
        network_aliases,
        publish_all: h.publish_all_ports,
        auto_remove: h.auto_remove,
        privileged: h.privileged,
        read_only: h.readonly_rootfs,
        init: h.init.unwrap_or(false),
        console_size: match h.console_size.as_deref() {
            Some([rows, cols]) if *rows > 0 && *cols > 0 => Some((*rows, *cols)),
            _ => None,
        },
        cap_add: h.cap_add.clone().unwrap_or_default(),
        cap_drop: h.cap_drop.clone().unwrap_or_default(),
        resources: resources(&h)?,
        limits: limits(&h)?,
        dns_search: h.dns_search.clone().unwrap_or_default(),
        ..Default::default()
    };
    for d in h.dns.iter().flatten() {
        host.dns.push(d.parse().map_err(|_| ApiError::bad_request(format!("Dns {d:?}: not an IP address")))?);
    }
    for e in h.extra_hosts.iter().flatten() {
        host.extra_hosts.push(runtime::spec::parse_extra_host(e)?);
    }
    let mounts: Vec<String> = h.mounts.iter().flatten().map(mount_flag).collect::<Result<_, _>>()?;
    let tmpfs: Vec<String> = h
        .tmpfs
        .iter()
        .flatten()
        .map(|(path, opts)| if opts.is_empty() { path.clone() } else { format!("{path}:{opts}") })
        .collect();
    let bad_mount = |e: runtime::volume::Error| ApiError::bad_request(hostutil::errors::one_line(&e));
    host.mounts = runtime::mountflags::parse_mounts(&h.binds.clone().unwrap_or_default(), &mounts, &tmpfs)
        .map_err(bad_mount)?;
    lifecycle::add_volumes_from(root, &h.volumes_from.clone().unwrap_or_default(), &mut host.mounts)?;
    let anonymous: Vec<String> = b.volumes.unwrap_or_default().into_keys().collect();
    host.mounts.extend(runtime::mountflags::image_volumes(&anonymous, &host.mounts));
    for (key, bindings) in h.port_bindings.unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
        let container_port: u16 =
            port.parse().map_err(|_| ApiError::bad_request(format!("invalid port {key:?}")))?;
        let protocol = if proto == "udp" { Protocol::Udp } else { Protocol::Tcp };
        for b in bindings.unwrap_or_default() {
            let host_ip = if b.host_ip.is_empty() {
                None
            } else {
                Some(
                    b.host_ip
                        .parse()
                        .map_err(|_| ApiError::bad_request(format!("invalid IP {:?}", b.host_ip)))?,
                )
            };
            let host_port = if b.host_port.is_empty() {
                0
            } else {
                b.host_port
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid port {:?}", b.host_port)))?
            };
            host.ports.push(PortMapping { host_ip, host_port, container_port, protocol });
        }
    }
    host.restart = match h.restart_policy {
        None => RestartPolicy::No,
        Some(r) => match r.name.as_str() {
            "" | "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure(r.maximum_retry_count),
            other => return Err(ApiError::bad_request(format!("invalid restart policy {other:?}"))),
        },
    };
    if let Some(l) = h.log_config.filter(|l| !l.driver.is_empty()) {
        let opts: Vec<String> =
            l.config.unwrap_or_default().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        host.log = runtime::logs::LogConfig::parse(Some(&l.driver), &opts).map_err(ApiError::bad_request)?;
    }
    // docker's Entrypoint is a list; rbuild's option is the program, the rest goes before Cmd.
    let (entrypoint, mut cmd) = match b.entrypoint {
        Some(e) if e.is_empty() => (Some(String::new()), Vec::new()),
        Some(e) => (e.first().cloned(), e[1..].to_vec()),
        None => (None, Vec::new()),
    };
    cmd.extend(b.cmd.unwrap_or_default());
    let text = |s: String| (!s.is_empty()).then_some(s);
    let opts = CreateOptions {
        name,
        cmd,
        entrypoint,
        env: b.env.unwrap_or_default(),
        workdir: text(b.working_dir),
        user: text(b.user),
        hostname: text(b.hostname),
        labels: b.labels.unwrap_or_default(),
        tty: b.tty,
        open_stdin: b.open_stdin,
        stdin_once: b.stdin_once,
        stop_signal: b.stop_signal,
        stop_timeout: b.stop_timeout,
        domainname: text(b.domainname),
        exposed_ports: b.exposed_ports.unwrap_or_default().into_keys().collect(),
        healthcheck: b.healthcheck.map(Into::into),
        host,
        platform: None,
    };
    Ok((opts, warnings))
}

async fn create(
    State(ctx): State<Ctx>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: CreateBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    if b.image.is_empty() {
        return Err(ApiError::bad_request("config: Image is required"));
    }
    blocking(move || {
        let store = ctx.store()?;
        let image = b.image.clone();
        let (opts, warnings) =
            create_options(ctx.root.as_path(), q.get("name").filter(|n| !n.is_empty()).cloned(), b)?;
        let c = lifecycle::create(ctx.root.as_path(), &store, &image, opts).map_err(|e| match e {
            runtime::Error::Store(cache::Error::ImageNotFound(_)) => {
                ApiError::not_found(format!("No such image: {image}"))
            }
            e => e.into(),
        })?;
        Ok((StatusCode::CREATED, axum::Json(json!({ "Id": c.id().as_str(), "Warnings": warnings })))
            .into_response())
    })
    .await
}

/// `POST /containers/{id}/rename?name=`: 409 when the name is taken.
async fn rename(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let name = q.get("name").cloned().unwrap_or_default();
    blocking(move || {
        Containers::open(ctx.root.as_path())?.rename(&id, &name)?;
        Ok(no_content())
    })
    .await
}

/// docker's `until`: a Go duration back from now (`24h`), Unix seconds, or an RFC 3339 time;
/// as seconds since the epoch.
fn until_cutoff(value: &str) -> Result<i64, ApiError> {
    if let Ok(ns) = hostutil::goparse::parse_go_duration(value) {
        return Ok(cache::time::now_unix() - (ns / 1_000_000_000) as i64);
    }
    if let Ok(secs) = value.parse::<f64>() {
        return Ok(secs as i64);
    }
    cache::time::parse_rfc3339(value).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid filter 'until={value}': a duration, Unix time or RFC 3339 time"
        ))
    })
}

/// `POST /containers/prune?filters=`: the stopped containers (with `label` filters, those that
/// match; with `until`, those created before), as `container prune`.
async fn prune(
    State(ctx): State<Ctx>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut labels = Vec::new();
    let mut until = None;
    for f in filter_values(&q)? {
        match f.split_once('=') {
            Some(("until", v)) => until = Some(until_cutoff(v)?),
            Some(("label", _)) => labels.push(f),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid filter {f:?}: container prune takes label and until"
                )));
            }
        }
    }
    blocking(move || {
        let filters = runtime::filters::Filters::for_containers(&labels)?;
        let wanted = |c: &Container| {
            let created = runtime::container::parse_rfc3339(&c.config.created).map_or(0, |(s, _)| s);
            filters.matches_container(c) && until.is_none_or(|u| created < u)
        };
        let pruned = lifecycle::prune_where(ctx.root.as_path(), wanted)?;
        let ids: Vec<&str> = pruned.containers.iter().map(|id| id.as_str()).collect();
        Ok(axum::Json(json!({ "ContainersDeleted": ids, "SpaceReclaimed": pruned.reclaimed }))
            .into_response())
    })
    .await
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

async fn start(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    blocking(move || {
        let containers = Containers::open(ctx.root.as_path())?;
        let c = lifecycle::refresh(&containers, containers.find(&id)?)?;
        if c.is_running() {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
        crate::attach::start(ctx.root.as_path(), &ctx.attaches, &c)?;
        Ok(no_content())
    })
    .await
}

fn timeout(q: &HashMap<String, String>) -> Result<Option<u32>, ApiError> {
    q.get("t")
        .map(|t| t.parse::<i64>().map(|t| t.max(0) as u32))
        .transpose()
        .map_err(|_| ApiError::bad_request("invalid t: not a number"))
}

async fn stop(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let t = timeout(&q)?;
    blocking(move || {
        let containers = Containers::open(ctx.root.as_path())?;
        let c = lifecycle::refresh(&containers, containers.find(&id)?)?;
        if !c.is_running() {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
        lifecycle::stop(ctx.root.as_path(), &id, t)?;
        Ok(no_content())
    })
    .await
}

async fn restart(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let t = timeout(&q)?;
    blocking(move || {
        let c = lifecycle::stop(ctx.root.as_path(), &id, t)?;
        lifecycle::wait_monitor(&c, Some(Duration::from_secs(30)));
        crate::attach::start(ctx.root.as_path(), &ctx.attaches, &c)?;
        Ok(no_content())
    })
    .await
}

async fn kill(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let sig = q.get("signal").cloned().unwrap_or_else(|| "KILL".into());
    blocking(move || {
        let sig = lifecycle::parse_signal(&sig)?;
        lifecycle::kill(ctx.root.as_path(), &id, sig)?;
        Ok(no_content())
    })
    .await
}

/// `condition=not-running` (default), `next-exit`, `removed`: the status line and headers go at
/// once (the docker CLI starts the container only after it has them, so as not to miss a quick
/// exit), the body `{"StatusCode": N}` when the container gets there.
async fn wait(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let condition =
        q.get("condition").filter(|c| !c.is_empty()).cloned().unwrap_or_else(|| "not-running".into());
    if !["not-running", "next-exit", "removed"].contains(&condition.as_str()) {
        return Err(ApiError::bad_request(format!("invalid condition: {condition:?}")));
    }
    let (containers, full) = blocking({
        let root = ctx.root.clone();
        move || {
            let containers = Containers::open(root.as_path())?;
            let c = containers.find(&id)?;
            Ok((containers, c.id().clone()))
        }
    })
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let root = ctx.root.clone();
    let asked = runtime::events::now_nanos();
    tokio::task::spawn_blocking(move || {
        // Woken by the container's changes; without a watch (inotify failed), it polls.
        let watch = containers.watch(&full).ok();
        let answer = (|| {
            let pause = || match &watch {
                Some(w) => w.wait(Duration::from_millis(200)),
                None => std::thread::sleep(Duration::from_millis(20)),
            };
            if condition == "next-exit" {
                // The next run's end: one that is not running yet is waited for to start, and one
                // that starts and ends between two looks is known by its new `FinishedAt`.
                let before = containers.load(&full).ok().and_then(|c| c.state.finished_at);
                loop {
                    match containers.load(&full).and_then(|c| lifecycle::refresh(&containers, c)) {
                        Ok(c) if c.is_running() => break,
                        Ok(c) if c.state.finished_at.is_some() && c.state.finished_at != before => {
                            return Some(json!({ "StatusCode": c.state.exit_code, "Error": null }));
                        }
                        Ok(_) => {}
                        // Gone (`--rm`) before it was seen: the code its `die` event carries.
                        Err(_) => {
                            let code = died_with(root.as_path(), &full, asked).unwrap_or(0);
                            return Some(json!({ "StatusCode": code, "Error": null }));
                        }
                    }
                    if tx.is_closed() {
                        return None;
                    }
                    pause();
                }
            }
            let (code, error) = if condition == "removed" {
                // Until it is gone (the CLI asks this before it starts a `--rm` container, so a
                // container not running yet is waited for too); its code is the last seen, or the
                // one in the `die` event its monitor left before removing it.
                let mut last = 0;
                loop {
                    match containers.load(&full).and_then(|c| lifecycle::refresh(&containers, c)) {
                        Ok(c) if !c.is_running() => last = c.state.exit_code,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                    if tx.is_closed() {
                        return None;
                    }
                    pause();
                }
                (died_with(root.as_path(), &full, asked).unwrap_or(last), Value::Null)
            } else {
                match lifecycle::wait(root.as_path(), full.as_str()) {
                    Ok(code) => (code, Value::Null),
                    // Removed while we waited: its code is in the `die` event it left.
                    Err(runtime::Error::NoSuchContainer(_)) => {
                        (died_with(root.as_path(), &full, asked).unwrap_or(0), Value::Null)
                    }
                    Err(e) => (-1, json!({ "Message": hostutil::errors::one_line(&e) })),
                }
            };
            Some(json!({ "StatusCode": code, "Error": error }))
        })();
        if let Some(answer) = answer {
            let _ = tx.blocking_send(Ok(answer.to_string().into_bytes()));
        }
        // The answer ends before the watch is closed: closing an inotify descriptor waits out a
        // kernel grace period (up to 16 ms measured), which the client need not wait for.
        drop(tx);
        drop(watch);
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(([("Content-Type", "application/json")], Body::from_stream(stream)).into_response())
}

/// The exit code of the last `die` of container `id` since `since` (nanoseconds), from the
/// store's event log.
fn died_with(root: &std::path::Path, id: &runtime::container::ContainerId, since: i64) -> Option<i32> {
    let (events, _) = runtime::events::read(root, Some(since), None).ok()?;
    events
        .iter()
        .rev()
        .find(|e| e.kind == "container" && e.action == "die" && e.actor.id == id.as_str())
        .and_then(|e| e.actor.attributes.get("exitCode"))
        .and_then(|c| c.parse().ok())
}

async fn remove(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (force, volumes) = (flag(&q, "force"), flag(&q, "v"));
    blocking(move || {
        lifecycle::remove(ctx.root.as_path(), &id, force, volumes).map_err(|e| match e {
            runtime::Error::Conflict(m) => ApiError { status: StatusCode::CONFLICT, message: m },
            e => e.into(),
        })?;
        Ok(no_content())
    })
    .await
}

/// docker's multiplexed stream frame: stream byte, three zeros, big-endian length, payload.
fn frame(stream: runtime::logs::Stream, data: &[u8]) -> Vec<u8> {
    let kind = match stream {
        runtime::logs::Stream::Stdout => 1,
        runtime::logs::Stream::Stderr => 2,
    };
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// `GET /containers/{id}/logs`: the log as `docker logs` reads it, multiplexed unless the
/// container has a terminal; with `follow`, streamed until the container ends.
async fn logs(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (stdout, stderr) = (flag(&q, "stdout"), flag(&q, "stderr"));
    let (follow, timestamps) = (flag(&q, "follow"), flag(&q, "timestamps"));
    let tail = match q.get("tail").map(String::as_str) {
        None | Some("all") | Some("") => None,
        Some(n) => {
            Some(n.parse::<usize>().map_err(|_| ApiError::bad_request(format!("invalid tail {n:?}")))?)
        }
    };
    let since = q.get("since").and_then(|s| s.parse::<f64>().ok()).filter(|s| *s > 0.0);
    let (containers, c) = blocking({
        let root = ctx.root.clone();
        move || {
            let containers = Containers::open(root.as_path())?;
            let c = containers.find(&id)?;
            Ok((containers, c))
        }
    })
    .await?;
    if !c.config.host.log.keeps() {
        return Err(ApiError::bad_request("configured logging driver does not support reading"));
    }
    let tty = c.config.config.tty;
    let encode = move |e: runtime::logs::Entry| -> Option<Vec<u8>> {
        let wanted = match e.stream {
            runtime::logs::Stream::Stdout => stdout,
            runtime::logs::Stream::Stderr => stderr,
        };
        if !wanted {
            return None;
        }
        let mut line = Vec::new();
        if timestamps {
            line.extend_from_slice(e.time.as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(e.log.as_bytes());
        Some(if tty { line } else { frame(e.stream, &line) })
    };
    let filter = runtime::logs::Filter {
        tail,
        since: since.map(|s| (s.trunc() as i64, (s.fract() * 1e9) as u32)),
        until: None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    let path = c.log_path();
    let full = c.id().clone();
    tokio::task::spawn_blocking(move || {
        let Ok((entries, offset)) = runtime::logs::read(&path, &filter) else { return };
        for e in entries {
            if let Some(bytes) = encode(e)
                && tx.blocking_send(Ok(bytes)).is_err()
            {
                return;
            }
        }
        if !follow {
            return;
        }
        // Following: new lines until the container (and its monitor) is gone, or the client.
        let mut follower = runtime::logs::Follower::new(&path, offset);
        loop {
            let running = containers
                .load(&full)
                .and_then(|c| lifecycle::refresh(&containers, c))
                .is_ok_and(|c| c.is_running() || c.monitor_alive());
            for e in follower.poll().unwrap_or_default() {
                if let Some(bytes) = encode(e)
                    && tx.blocking_send(Ok(bytes)).is_err()
                {
                    return;
                }
            }
            if !running || tx.is_closed() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let content_type =
        if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    Ok(([("Content-Type", content_type)], Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(json: &str) -> MountBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_mounts_entry_is_the_mount_flag_it_stands_for() {
        let m = mount(
            r#"{"Type":"volume","Source":"data","Target":"/d","ReadOnly":true,"VolumeOptions":{"NoCopy":true}}"#,
        );
        assert_eq!(mount_flag(&m).unwrap(), "type=volume,target=/d,source=data,readonly,volume-nocopy");
        let m = mount(r#"{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1048576,"Mode":1023}}"#);
        assert_eq!(mount_flag(&m).unwrap(), "type=tmpfs,target=/t,tmpfs-size=1048576,tmpfs-mode=1777");
        assert!(mount_flag(&mount(r#"{"Type":"bind","Source":"/a,b","Target":"/x"}"#)).is_err());
        let driver = r#"{"Type":"volume","Target":"/x","VolumeOptions":{"DriverConfig":{"Name":"nfs"}}}"#;
        assert!(mount_flag(&mount(driver)).is_err());
    }

    #[test]
    fn only_security_options_rbuild_already_honours_pass() {
        for ok in [
            "label=disable",
            "label:disable",
            "apparmor=unconfined",
            "no-new-privileges",
            "no-new-privileges:true",
        ] {
            assert!(security_opt_ok(ok), "{ok}");
        }
        for refused in ["seccomp=unconfined", "apparmor=docker-default", "no-new-privileges=false"] {
            assert!(!security_opt_ok(refused), "{refused}");
        }
    }

    #[test]
    fn until_is_a_duration_a_unix_time_or_an_rfc3339_time() {
        let now = cache::time::now_unix();
        assert!((until_cutoff("1h").unwrap() - (now - 3600)).abs() <= 2);
        assert_eq!(until_cutoff("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(until_cutoff("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000);
        assert!(until_cutoff("yesterday").is_err());
    }

    #[test]
    fn null_numbers_and_unknown_fields_are_unset_not_errors() {
        let b: CreateBody = serde_json::from_str(
            r#"{"Image":"x","MacAddress":"02:42:ac:11:00:02","HostConfig":{"Memory":null,"ShmSize":null,"OomKillDisable":false}}"#,
        )
        .unwrap();
        assert!(resources(&b.host_config).unwrap().memory.is_none());
    }

    #[test]
    fn a_healthcheck_with_null_fields_takes_zero_for_them() {
        let b: CreateBody = serde_json::from_str(
            r#"{"Image":"x","Healthcheck":{"Test":["CMD","true"],"Interval":1000000000,"Timeout":null,"Retries":null,"StartPeriod":null}}"#,
        )
        .unwrap();
        let h: runtime::health::HealthConfig = b.healthcheck.unwrap().into();
        assert_eq!((h.test.len(), h.interval, h.timeout, h.retries), (2, 1_000_000_000, 0, 0));
    }
}
