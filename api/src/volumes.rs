//! `/volumes`: list, create, inspect, remove, through runtime's volume store (what `rbuild
//! volume` calls).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use runtime::volume::{self, Volumes};
use serde::Deserialize;
use serde_json::json;

use crate::containers::filter_values;
use crate::{ApiError, ClientVersion, Ctx, blocking};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

impl From<volume::Error> for ApiError {
    fn from(e: volume::Error) -> ApiError {
        let status = match &e {
            volume::Error::NotFound(_) => StatusCode::NOT_FOUND,
            volume::Error::InUse { .. } => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError { status, message: hostutil::errors::one_line(&e) }
    }
}

/// `GET /volumes` (`filters` as `rbuild volume ls --filter`: name, label, driver, dangling).
async fn list(
    State(ctx): State<Ctx>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let filters = filter_values(&q)?;
    blocking(move || {
        let filters = runtime::filters::Filters::for_volumes(&filters)?;
        let used = volume::volume_users(ctx.root.as_path())?;
        let mut volumes = Volumes::open(ctx.root.as_path())?.list()?;
        volumes.retain(|v| filters.matches_volume(v, used.contains_key(&v.name)));
        let list: Vec<_> = volumes.iter().map(runtime::inspect::volume).collect();
        Ok(axum::Json(json!({ "Volumes": list, "Warnings": [] })).into_response())
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    labels: Option<BTreeMap<String, String>>,
}

async fn create(State(ctx): State<Ctx>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let b: CreateBody = if body.is_empty() {
        CreateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?
    };
    if !b.driver.is_empty() && b.driver != "local" {
        return Err(ApiError::bad_request(format!(
            "volume driver {:?} is not supported: only \"local\" is",
            b.driver
        )));
    }
    blocking(move || {
        let volumes = Volumes::open(ctx.root.as_path())?;
        let name = (!b.name.is_empty()).then_some(b.name.as_str());
        let v = volumes.create(name, b.labels.unwrap_or_default(), false)?;
        Ok((StatusCode::CREATED, axum::Json(runtime::inspect::volume(&v))).into_response())
    })
    .await
}

async fn inspect(State(ctx): State<Ctx>, Path(name): Path<String>) -> Result<Response, ApiError> {
    blocking(move || {
        let v = Volumes::open(ctx.root.as_path())?.get(&name)?;
        Ok(axum::Json(runtime::inspect::volume(&v)).into_response())
    })
    .await
}

async fn remove(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let force = q.get("force").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True"));
    blocking(move || {
        let users = volume::volume_users(ctx.root.as_path())?;
        let ids = users.get(&name).map(Vec::as_slice).unwrap_or_default();
        Volumes::open(ctx.root.as_path())?.remove(&name, ids, force)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// `POST /volumes/prune` (`filters`: `label`, `label!`, `all`): the volumes no container uses,
/// `{"VolumesDeleted": [names], "SpaceReclaimed": bytes}`. Only anonymous ones unless `all`,
/// as dockerd 23 — but every unused one for clients of API 1.41 and older, which dockerd
/// keeps for them (the docker 20.10 CLI's `volume prune` has no `--all`).
async fn prune(
    State(ctx): State<Ctx>,
    Query(q): Query<HashMap<String, String>>,
    version: Option<Extension<ClientVersion>>,
) -> Result<Response, ApiError> {
    let mut all = version.is_some_and(|Extension(v)| v < ClientVersion(1, 42));
    let mut labels: Vec<(bool, String)> = Vec::new();
    for kv in filter_values(&q)? {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        match k {
            "all" => all = matches!(v.to_ascii_lowercase().as_str(), "1" | "true"),
            "label" => labels.push((true, v.to_string())),
            "label!" => labels.push((false, v.to_string())),
            _ => return Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
        }
    }
    blocking(move || {
        let root = ctx.root.as_path();
        let in_use: BTreeSet<String> = volume::volume_users(root)?.into_keys().collect();
        let has = |v: &volume::Volume, label: &str| {
            let l = v.docker_labels();
            match label.split_once('=') {
                Some((k, want)) => l.get(k).is_some_and(|have| have == want),
                None => l.contains_key(label),
            }
        };
        let removed = Volumes::open(root)?
            .prune_where(&in_use, all, |v| labels.iter().all(|(yes, l)| has(v, l) == *yes))?;
        let space: u64 = removed.iter().map(|(_, bytes)| bytes).sum();
        let names: Vec<String> = removed.into_iter().map(|(name, _)| name).collect();
        Ok(axum::Json(json!({ "VolumesDeleted": names, "SpaceReclaimed": space })).into_response())
    })
    .await
}
