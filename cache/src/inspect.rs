//! Docker's JSON view of an image: what `docker image inspect` prints and what the Engine API's
//! `/images/{name}/json` returns, so every front end shows the same thing.

use serde_json::{Value, json};

use crate::oci::{Image, MEDIA_TYPE_MANIFEST};
use crate::{ImageRef, Result, Store};

/// Go's zero time, which docker prints for a time it does not have.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl Store {
    /// `docker image inspect`'s object for `image`: `Id` (the manifest digest), `RepoTags`,
    /// `RepoDigests` (`name@digest` per repository), `Config` (docker's field names, also as
    /// `ContainerConfig`), `RootFS`,
    /// `Size` (the bytes of its blobs as stored), and the manifest's `Descriptor`.
    pub fn inspect_json(&self, image: &Image) -> Result<Value> {
        let tags = self.tags_of(&image.digest)?;
        let mut repos: Vec<String> = Vec::new();
        for t in &tags {
            let r: ImageRef = t.parse()?;
            if !repos.iter().any(|n| n == r.name()) {
                repos.push(r.name().to_string());
            }
        }
        let c = &image.config;
        let manifest_size = std::fs::metadata(self.blob_path(&image.digest)).map_or(0, |m| m.len());
        let media_type = image.manifest.media_type.clone().unwrap_or_else(|| MEDIA_TYPE_MANIFEST.to_string());
        let mut v = json!({
            "Id": image.digest.to_string(),
            "RepoTags": tags,
            "RepoDigests": repos.iter().map(|n| format!("{n}@{}", image.digest)).collect::<Vec<_>>(),
            "Parent": "",
            "Comment": c.history.last().and_then(|h| h.comment.clone()).unwrap_or_default(),
            "Created": c.created.clone().unwrap_or_else(|| ZERO_TIME.to_string()),
            "DockerVersion": "",
            "Author": c.author.clone().unwrap_or_default(),
            "Config": &c.config,
            // dockerd before 25 still sent the config of the container that made the image,
            // and docker-compose 1.29 reads its Volumes when it recreates a container (a
            // KeyError without it). rbuild keeps no such container: the image's own config
            // stands for it, so the image's volumes are what compose carries over.
            "ContainerConfig": &c.config,
            "Architecture": c.architecture,
            "Os": c.os,
            "Size": self.image_size(image),
            "RootFS": {
                "Type": c.rootfs.kind,
                "Layers": c.rootfs.diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            },
            "Metadata": { "LastTagTime": ZERO_TIME },
            "Descriptor": {
                "mediaType": media_type,
                "digest": image.digest.to_string(),
                "size": manifest_size,
            },
            "ConfigDigest": image.config_digest.to_string(),
        });
        if let Some(variant) = &c.variant {
            v["Variant"] = json!(variant);
        }
        Ok(v)
    }
}

/// One row of `docker history`: a step of the image's history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub created: Option<String>,
    pub created_by: String,
    /// The bytes of the layer the step made (0 for a step that made none).
    pub size: u64,
    pub comment: String,
}

impl Image {
    /// The image's history as `docker history` lists it, newest first: each entry that is not
    /// an empty layer owns the next layer (bottom first); layers the history does not account
    /// for (an image made without one) get a row of their own.
    pub fn history_rows(&self) -> Vec<HistoryRow> {
        let layers = &self.manifest.layers;
        let mut rows = Vec::new();
        let mut next_layer = 0;
        for h in &self.config.history {
            let size = if h.empty_layer {
                0
            } else {
                next_layer += 1;
                layers.get(next_layer - 1).map_or(0, |l| l.size)
            };
            rows.push(HistoryRow {
                created: h.created.clone(),
                created_by: h.created_by.clone().unwrap_or_default(),
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        for l in layers.iter().skip(next_layer) {
            rows.push(HistoryRow {
                created: self.config.created.clone(),
                created_by: String::new(),
                size: l.size,
                comment: String::new(),
            });
        }
        rows.reverse();
        rows
    }
}
