//! `GET /events`: the store's event log (runtime::events, what `rbuild events` reads) as
//! dockerd streams it: the past events between `since` and `until`, then, unless `until` has
//! passed, each new one as it is appended, one JSON object a line, until the client goes.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use runtime::events::{self, Event, Filter, Follower};

use crate::containers::filter_values;
use crate::{ApiError, Ctx, blocking};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new().route("/events", get(stream))
}

fn time(q: &HashMap<String, String>, key: &str) -> Result<Option<i64>, ApiError> {
    q.get(key)
        .filter(|v| !v.is_empty())
        .map(|v| events::parse_time(v))
        .transpose()
        .map_err(|e| ApiError::bad_request(hostutil::errors::one_line(&e)))
}

fn line(e: &Event) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(e).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

async fn stream(
    State(ctx): State<Ctx>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (since, until) = (time(&q, "since")?, time(&q, "until")?);
    let filter = Filter::parse(&filter_values(&q)?)
        .map_err(|e| ApiError::bad_request(hostutil::errors::one_line(&e)))?;
    let (past, at) = blocking({
        let root = ctx.root.clone();
        move || {
            events::read(root.as_path(), since, until).map_err(|e| ApiError {
                status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                message: hostutil::errors::one_line(&e),
            })
        }
    })
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    let root = ctx.root.clone();
    tokio::task::spawn_blocking(move || {
        // Without `since` or `until`, only what happens from now on (as dockerd).
        if since.is_some() || until.is_some() {
            for e in past.iter().filter(|e| filter.matches(e)) {
                if tx.blocking_send(Ok(line(e))).is_err() {
                    return;
                }
            }
        }
        let over = || until.is_some_and(|u| u <= events::now_nanos());
        let mut follower = Follower::new(root.as_path(), at);
        while !over() && !tx.is_closed() {
            let Ok(new) = follower.poll() else { return };
            for e in new {
                if until.is_some_and(|u| e.time_nano > u) {
                    return;
                }
                if filter.matches(&e) && tx.blocking_send(Ok(line(&e))).is_err() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(([("Content-Type", "application/json")], Body::from_stream(stream)).into_response())
}
