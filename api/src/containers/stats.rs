//! `top`, `stats`, `pause`/`unpause`: a running container's processes and usage, from the
//! runtime functions `rbuild top`, `stats` and `pause` call.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use runtime::container::{Container, Containers};
use runtime::lifecycle;
use runtime::stats::Sample;
use serde_json::{Value, json};

use super::{BodyWriter, flag, no_content};
use crate::{ApiError, Ctx, blocking};

/// `GET /containers/{id}/top`: `ps -ef`'s columns (docker's default); other `ps_args` are
/// refused, since rbuild reads /proc rather than running a `ps`.
pub(super) async fn top(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(args) = q.get("ps_args").map(|a| a.trim()).filter(|a| !a.is_empty() && *a != "-ef") {
        return Err(ApiError::bad_request(format!(
            "ps_args {args:?} is not supported: rbuild gives ps -ef's columns"
        )));
    }
    blocking(move || {
        let t = runtime::top::top(ctx.root.as_path(), &id)?;
        Ok(axum::Json(json!({ "Titles": t.titles, "Processes": t.processes })).into_response())
    })
    .await
}

/// `POST /containers/{id}/pause` (`paused`) and `unpause`.
async fn set_paused(ctx: Ctx, id: String, paused: bool) -> Result<Response, ApiError> {
    blocking(move || {
        lifecycle::set_paused(ctx.root.as_path(), &id, paused)?;
        Ok(no_content())
    })
    .await
}

pub(super) async fn pause(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    set_paused(ctx, id, true).await
}

pub(super) async fn unpause(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    set_paused(ctx, id, false).await
}

/// One reading with the host's CPU time beside it (docker's `system_cpu_usage`).
#[derive(Clone, Copy)]
struct Reading {
    sample: Sample,
    system_ns: u64,
    at: std::time::SystemTime,
}

fn read(c: &Container) -> Reading {
    Reading {
        sample: runtime::stats::sample(c),
        system_ns: runtime::stats::system_cpu_ns(),
        at: std::time::SystemTime::now(),
    }
}

fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    cache::time::format_unix(d.as_secs() as i64, d.subsec_nanos())
}

fn cpu_json(r: Option<&Reading>) -> Value {
    let (total, system) = r.map_or((0, 0), |r| (r.sample.cpu_ns, r.system_ns));
    json!({
        "cpu_usage": {
            "total_usage": total,
            "usage_in_kernelmode": 0,
            "usage_in_usermode": 0,
        },
        "system_cpu_usage": system,
        "online_cpus": runtime::stats::online_cpus(),
        "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
    })
}

/// docker's stats JSON: `cpu_stats` now, `precpu_stats` the reading before (zeros for none).
fn stats_json(c: &Container, now: &Reading, before: Option<&Reading>) -> Value {
    let s = &now.sample;
    let mut out = json!({
        "read": rfc3339(now.at),
        "preread": before.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), |b| rfc3339(b.at)),
        "pids_stats": { "current": s.pids },
        "blkio_stats": {
            "io_service_bytes_recursive": null, "io_serviced_recursive": null,
            "io_queue_recursive": null, "io_service_time_recursive": null,
            "io_wait_time_recursive": null, "io_merged_recursive": null,
            "io_time_recursive": null, "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_json(Some(now)),
        "precpu_stats": cpu_json(before),
        // `usage` is already less the inactive page cache, so no `stats` key for a client to
        // take it off again.
        "memory_stats": { "usage": s.memory, "limit": s.memory_limit, "stats": {} },
        "name": format!("/{}", c.name()),
        "id": c.id().as_str(),
    });
    if c.state.pid > 0 && !c.state.endpoints.is_empty() {
        out["networks"] = json!({
            "eth0": {
                "rx_bytes": s.net_rx, "rx_packets": 0, "rx_errors": 0, "rx_dropped": 0,
                "tx_bytes": s.net_tx, "tx_packets": 0, "tx_errors": 0, "tx_dropped": 0,
            }
        });
    }
    out
}

/// `GET /containers/{id}/stats`: with `stream` (the default), one JSON document a second until
/// the client goes or the container is removed; without, one, whose `precpu_stats` is a reading
/// a second earlier (`one-shot`: no earlier reading, at once).
pub(super) async fn stats(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let stream = q.get("stream").is_none_or(|_| flag(&q, "stream"));
    let one_shot = flag(&q, "one-shot");
    if one_shot && stream {
        return Err(ApiError::bad_request("cannot have stream=true and one-shot=true"));
    }
    let (containers, c) = blocking(move || {
        let containers = Containers::open(ctx.root.as_path())?;
        let c = lifecycle::refresh(&containers, containers.find(&id)?)?;
        Ok((containers, c))
    })
    .await?;
    let (mut out, body) = BodyWriter::new();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut before: Option<Reading> = None;
        let mut c = c;
        if !stream && !one_shot {
            before = Some(read(&c));
            std::thread::sleep(Duration::from_secs(1));
        }
        loop {
            let now = read(&c);
            let mut line = stats_json(&c, &now, before.as_ref()).to_string().into_bytes();
            line.push(b'\n');
            if out.write_all(&line).and_then(|()| out.flush()).is_err() || !stream {
                return;
            }
            before = Some(now);
            std::thread::sleep(Duration::from_secs(1));
            match containers.load(c.id()).and_then(|x| lifecycle::refresh(&containers, x)) {
                Ok(fresh) => c = fresh,
                Err(_) => return,
            }
        }
    });
    Ok(([("Content-Type", "application/json")], body).into_response())
}
