//! `GET /system/df`: what images, containers, volumes and the build cache take, in dockerd's
//! shape, from the same figures `rbuild system df` prints (cache::Store's and runtime's disk
//! usage functions).

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use runtime::container::Containers;
use runtime::volume::{self, Volumes};
use serde_json::{Value, json};

use crate::{ApiError, Ctx, blocking};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new().route("/system/df", get(df))
}

fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    cache::time::format_unix(d.as_secs() as i64, d.subsec_nanos())
}

async fn df(State(ctx): State<Ctx>) -> Result<Response, ApiError> {
    blocking(move || {
        let root = ctx.root.as_path();
        let store = ctx.store()?;
        let containers = Containers::open(root)?;
        let listed: Vec<_> = containers
            .list()?
            .into_iter()
            .map(|c| runtime::lifecycle::refresh(&containers, c))
            .collect::<Result<_, _>>()?;
        let mut users_of_image: BTreeMap<cache::Digest, i64> = BTreeMap::new();
        for c in &listed {
            *users_of_image.entry(c.config.image_id.clone()).or_default() += 1;
        }
        let in_use: BTreeSet<cache::Digest> = users_of_image.keys().cloned().collect();
        let usage = store.disk_usage(&in_use)?;

        // A blob two images reference is their shared size (docker's SharedSize).
        let mut images = Vec::new();
        for entry in store.list_images()? {
            let Ok(image) = store.image_or_any(&entry.digest) else { continue };
            let blobs: Vec<(cache::Digest, u64)> =
                image.manifest.layers.iter().map(|l| (l.digest.clone(), l.size)).collect();
            images.push((entry, image, blobs));
        }
        let mut refs: BTreeMap<&cache::Digest, usize> = BTreeMap::new();
        for (_, _, blobs) in &images {
            for (d, _) in blobs {
                *refs.entry(d).or_default() += 1;
            }
        }
        let image_rows: Vec<Value> = images
            .iter()
            .map(|(entry, image, blobs)| {
                let size = store.image_size(image);
                let shared: u64 =
                    blobs.iter().filter(|(d, _)| refs.get(d).is_some_and(|n| *n > 1)).map(|(_, s)| s).sum();
                let created =
                    image.config.created.as_deref().and_then(cache::time::parse_rfc3339).unwrap_or(0);
                let tags: Vec<String> = entry
                    .tags
                    .iter()
                    .map(|t| t.parse::<cache::ImageRef>().map(|r| r.key()).unwrap_or_else(|_| t.clone()))
                    .collect();
                json!({
                    "Id": entry.digest.to_string(),
                    "ParentId": "",
                    "RepoTags": tags,
                    "RepoDigests": [],
                    "Created": created,
                    "Size": size,
                    "SharedSize": shared,
                    "VirtualSize": size,
                    "Labels": image.config.config.labels,
                    "Containers": users_of_image.get(&entry.digest).copied().unwrap_or(0),
                })
            })
            .collect();

        let image_size = |c: &runtime::container::Container| {
            store.image_or_any(&c.config.image_id).map_or(0, |i| store.image_size(&i))
        };
        let container_rows: Vec<Value> = listed
            .iter()
            .map(|c| {
                let mut row = crate::containers::summary(ctx.root.as_path(), c);
                let rw = c.writable_size();
                row["SizeRw"] = json!(rw);
                row["SizeRootFs"] = json!(rw + image_size(c));
                row
            })
            .collect();

        let users = volume::volume_users(root)?;
        let mut volume_rows = Vec::new();
        for v in Volumes::open(root)?.list()? {
            let mut row = runtime::inspect::volume(&v);
            let refcount = users.get(&v.name).map_or(0, Vec::len);
            row["UsageData"] = json!({ "Size": v.size()?, "RefCount": refcount });
            volume_rows.push(row);
        }

        let cache_rows: Vec<Value> = store
            .cache_usage()?
            .records
            .iter()
            .map(|r| {
                let last_used = rfc3339(r.last_used);
                json!({
                    "ID": r.key.hex(),
                    "Parent": "",
                    "Parents": [],
                    "Type": "regular",
                    "Description": "",
                    "InUse": false,
                    "Shared": r.shared,
                    "Size": r.bytes,
                    "CreatedAt": last_used,
                    "LastUsedAt": last_used,
                    "UsageCount": 1,
                })
            })
            .collect();

        Ok(axum::Json(json!({
            "LayersSize": usage.image_bytes,
            "Images": image_rows,
            "Containers": container_rows,
            "Volumes": volume_rows,
            "BuildCache": cache_rows,
        }))
        .into_response())
    })
    .await
}
