//! `/images/...`: the list and inspect, from the store (what `rbuild images` reads).

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::{ApiError, Ctx, blocking};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new().route("/images/json", get(list)).route("/images/{*name}", get(inspect))
}

async fn list(State(ctx): State<Ctx>) -> Result<Response, ApiError> {
    blocking(move || {
        let store = ctx.store()?;
        let mut rows = Vec::new();
        for entry in store.list_images()? {
            let Ok(image) = store.image(&entry.digest) else { continue };
            let created = image.config.created.as_deref().and_then(cache::time::parse_rfc3339).unwrap_or(0);
            let size = store.image_size(&image);
            let tags: Vec<String> = entry.tags.iter().map(|t| familiar(t)).collect();
            rows.push(json!({
                "Id": entry.digest.to_string(),
                "ParentId": "",
                "RepoTags": if tags.is_empty() { vec!["<none>:<none>".to_string()] } else { tags },
                "RepoDigests": [],
                "Created": created,
                "Size": size,
                "SharedSize": -1,
                "VirtualSize": size,
                "Labels": image.config.config.labels,
                "Containers": -1,
            }));
        }
        Ok(axum::Json(Value::Array(rows)).into_response())
    })
    .await
}

/// `docker.io/library/busybox:latest` as docker shows it: `busybox:latest`.
fn familiar(tag: &str) -> String {
    tag.parse::<cache::ImageRef>().map(|r| r.key()).unwrap_or_else(|_| tag.to_string())
}

/// `GET /images/{name}/json` (the catch-all path: names have slashes).
async fn inspect(State(ctx): State<Ctx>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let Some(name) = name.strip_suffix("/json").map(str::to_string) else {
        return Err(ApiError::not_found("page not found"));
    };
    blocking(move || {
        let store = ctx.store()?;
        let image =
            store.resolve(&name).map_err(|_| ApiError::not_found(format!("No such image: {name}")))?;
        Ok(axum::Json(store.inspect_json(&image)?).into_response())
    })
    .await
}
