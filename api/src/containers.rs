//! `/containers/...`: list, create, inspect, start, stop, kill, restart, wait, remove, logs,
//! through runtime/'s lifecycle functions (what `rbuild run`, `ps`, `logs` call).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
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

/// One row of `GET /containers/json`, as dockerd's `types.Container`.
pub(crate) fn summary(c: &Container) -> Value {
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
    let networks: serde_json::Map<String, Value> = c
        .state
        .endpoints
        .iter()
        .map(|e| (e.network.clone(), json!({ "IPAddress": e.ip.to_string(), "Gateway": e.gateway.to_string(), "MacAddress": e.mac })))
        .collect();
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
        "Mounts": [],
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
            rows.push(summary(c));
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

/// The parts of docker's create body rbuild maps onto its options.
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
    labels: Option<BTreeMap<String, String>>,
    tty: bool,
    open_stdin: bool,
    stdin_once: bool,
    stop_signal: Option<String>,
    stop_timeout: Option<u32>,
    healthcheck: Option<runtime::health::HealthConfig>,
    host_config: HostBody,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct HostBody {
    binds: Option<Vec<String>>,
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

fn create_options(name: Option<String>, b: CreateBody) -> Result<CreateOptions, ApiError> {
    let h = b.host_config;
    let mut host = runtime::container::HostConfig {
        network: match h.network_mode.as_str() {
            "" | "default" | "bridge" => NetworkRequest::Bridge(vec!["bridge".into()]),
            "none" => NetworkRequest::None,
            "host" => NetworkRequest::Host,
            other => match other.strip_prefix("container:") {
                Some(c) => NetworkRequest::Container(c.to_string()),
                None => NetworkRequest::Bridge(vec![other.to_string()]),
            },
        },
        publish_all: h.publish_all_ports,
        auto_remove: h.auto_remove,
        privileged: h.privileged,
        read_only: h.readonly_rootfs,
        init: h.init.unwrap_or(false),
        cap_add: h.cap_add.unwrap_or_default(),
        cap_drop: h.cap_drop.unwrap_or_default(),
        ..Default::default()
    };
    host.mounts = runtime::mountflags::parse_mounts(&h.binds.unwrap_or_default(), &[], &[])
        .map_err(|e| ApiError::bad_request(hostutil::errors::one_line(&e)))?;
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
    Ok(CreateOptions {
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
        healthcheck: b.healthcheck,
        host,
        platform: None,
    })
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
        let opts = create_options(q.get("name").filter(|n| !n.is_empty()).cloned(), b)?;
        let c = lifecycle::create(ctx.root.as_path(), &store, &image, opts).map_err(|e| match e {
            runtime::Error::Store(cache::Error::ImageNotFound(_)) => {
                ApiError::not_found(format!("No such image: {image}"))
            }
            e => e.into(),
        })?;
        Ok((StatusCode::CREATED, axum::Json(json!({ "Id": c.id().as_str(), "Warnings": [] })))
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
    tokio::task::spawn_blocking(move || {
        let status = |c: &Result<Container, runtime::Error>| c.as_ref().map(|c| c.is_running()).ok();
        if condition == "next-exit" {
            // The next run's end: one that is not running yet is waited for to start.
            while status(&containers.load(&full).and_then(|c| lifecycle::refresh(&containers, c)))
                == Some(false)
            {
                if tx.is_closed() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let (code, error) = match lifecycle::wait(root.as_path(), full.as_str()) {
            Ok(code) => (code, Value::Null),
            // Removed (`--rm`) while we waited: its code went with it.
            Err(runtime::Error::NoSuchContainer(_)) => (0, Value::Null),
            Err(e) => (-1, json!({ "Message": hostutil::errors::one_line(&e) })),
        };
        if condition == "removed" {
            while containers.load(&full).is_ok() && !tx.is_closed() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let body = json!({ "StatusCode": code, "Error": error }).to_string().into_bytes();
        let _ = tx.blocking_send(Ok(body));
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(([("Content-Type", "application/json")], Body::from_stream(stream)).into_response())
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
