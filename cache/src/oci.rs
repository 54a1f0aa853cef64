//! OCI image types: manifest, index, config, descriptors.
//!
//! We keep our own serde types rather than `oci-spec`'s image module because image configs
//! written by Docker and BuildKit carry fields the OCI spec does not name (`Healthcheck`,
//! `OnBuild`, `Shell`, `ArgsEscaped`), and an image must keep them through a round trip.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Digest;

pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const MEDIA_TYPE_DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The annotation that names a manifest's tag inside an OCI image layout.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and BuildKit use for the full image name in an OCI layout.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the machine rbuild runs on, in OCI (GOARCH) spelling.
    pub fn host() -> Platform {
        let host = hostutil::platform::host();
        Platform {
            architecture: host.architecture.to_string(),
            os: host.os.to_string(),
            variant: Some(host.variant.to_string()).filter(|v| !v.is_empty()),
        }
    }
}

/// A variant as platforms compare it: arm64's `v8` is arm64 itself, an empty one is none.
pub fn normalized_variant(architecture: &str, variant: Option<&str>) -> Option<String> {
    match (architecture, variant) {
        ("arm64", Some("v8")) | (_, None | Some("")) => None,
        (_, v) => v.map(str::to_string),
    }
}

impl From<&hostutil::platform::Platform> for Platform {
    fn from(p: &hostutil::platform::Platform) -> Platform {
        Platform {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: Some(p.variant.clone()).filter(|v| !v.is_empty()),
        }
    }
}

impl Platform {
    /// Whether an image that says it is `os/architecture[/variant]` (its config) runs as this
    /// platform: same os and architecture, and the same variant when both name one (arm64's
    /// `v8` is arm64; an image that names no variant is taken at its word).
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        let (mine, theirs) = (
            normalized_variant(&self.architecture, self.variant.as_deref()),
            normalized_variant(architecture, variant),
        );
        self.os == os
            && self.architecture == architecture
            && (mine.is_none() || theirs.is_none() || mine == theirs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image configuration (`application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

/// The part of the image config that a container starts from.
///
/// Field names are Docker's (PascalCase); `Healthcheck`, `OnBuild`, `Shell` and `ArgsEscaped`
/// are Docker extensions that BuildKit writes too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

impl ContainerConfig {
    /// The value of `name` in `Env`, if set.
    pub fn env_get(&self, name: &str) -> Option<&str> {
        self.env.iter().flatten().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// Sets `name=value` in `Env`, replacing an earlier value in place (Docker keeps the order
    /// of first definition).
    pub fn env_set(&mut self, name: &str, value: &str) {
        let env = self.env.get_or_insert_with(Vec::new);
        let entry = format!("{name}={value}");
        match env.iter_mut().find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == name) {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// A layer as an image refers to it: its blob (as stored, maybe compressed) and its diff id
/// (the digest of the uncompressed tar, which the config's `rootfs.diff_ids` lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
}

impl Layer {
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

/// An image in the store: its manifest digest, manifest and config.
#[derive(Debug, Clone)]
pub struct Image {
    pub digest: Digest,
    pub manifest: Manifest,
    pub config: ImageConfig,
    pub config_digest: Digest,
}

impl Image {
    /// The layers of the image, bottom first, each paired with its diff id.
    pub fn layers(&self) -> Vec<Layer> {
        self.manifest
            .layers
            .iter()
            .zip(&self.config.rootfs.diff_ids)
            .map(|(d, diff_id)| Layer {
                digest: d.digest.clone(),
                diff_id: diff_id.clone(),
                size: d.size,
                media_type: d.media_type.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The platform an image records, the one picked from an index and `BUILDPLATFORM` are one
    /// mapping (it once was two, and only one knew arm's `v7`).
    #[test]
    fn the_host_platform_is_hostutils() {
        let ours = Platform::host();
        let host = hostutil::platform::host();
        assert_eq!(ours.to_string(), host.to_string());
        assert_eq!(ours.variant.is_some(), !host.variant.is_empty());
    }
}
