//! Build caches outside the store, for build farms: `--cache-from` / `--cache-to`.
//!
//! A cache export is a *cache index* (cache key -> the layers and image config the step
//! produced, exactly the store's [`CacheRecord`]s) plus the layer blobs it names. It travels as
//! an OCI image manifest whose config blob is the index (media type [`INDEX_MEDIA_TYPE`]) and
//! whose layers are every layer blob the index names, so that any registry keeps the blobs
//! (they are referenced), can cross-mount them, and needs no rbuild-specific API. `type=local`
//! writes the same manifest into an OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/sha256/`), for farms that share a file system.
//!
//! On import only the index is read. A step whose key misses locally is looked up in it; a hit
//! becomes a local cache record at once, but its layer blobs are fetched only when the build
//! needs their content (a snapshot for a step that runs, a `COPY --from`, the final image), so
//! a builder stage whose every step hits costs nothing but its index entries.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cache::oci::{Descriptor, Index, Manifest};
use cache::{CacheRecord, Digest, Layer, Store};
use serde::{Deserialize, Serialize};

/// The media type of the cache index blob (the manifest's config).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.rbuild.buildcache.index.v1+json";

/// Which steps an export holds (`mode=` of `--cache-to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportMode {
    /// The steps of the target stage (what the final image is made of).
    #[default]
    Min,
    /// Every step of every stage the build ran or reused.
    Max,
}

/// Cache key -> what the step produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheIndex {
    pub records: BTreeMap<Digest, CacheRecord>,
}

impl CacheIndex {
    /// The records of `keys` found in `store`.
    pub fn collect(store: &Store, keys: &[Digest]) -> Result<CacheIndex, String> {
        let mut records = BTreeMap::new();
        for key in keys {
            if let Some(record) = store.cache_get(key).map_err(|e| e.to_string())? {
                records.insert(key.clone(), record);
            }
        }
        Ok(CacheIndex { records })
    }

    /// Every distinct layer the index names, in first-seen order.
    pub fn layers(&self) -> Vec<Layer> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for record in self.records.values() {
            for layer in &record.layers {
                if seen.insert(layer.digest.clone()) {
                    out.push(layer.clone());
                }
            }
        }
        out
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(data: &[u8]) -> Result<CacheIndex, String> {
        serde_json::from_slice(data).map_err(|e| format!("not an rbuild build-cache index: {e}"))
    }

    /// The manifest that carries the index (as its config) and its layers.
    pub fn manifest(&self, index_digest: &Digest, index_size: u64) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(cache::oci::MEDIA_TYPE_MANIFEST.to_string()),
            config: Descriptor {
                media_type: INDEX_MEDIA_TYPE.to_string(),
                digest: index_digest.clone(),
                size: index_size,
                annotations: Default::default(),
                platform: None,
            },
            layers: self.layers().iter().map(Layer::descriptor).collect(),
            annotations: Default::default(),
        }
    }
}

/// A build cache to read from: consulted when a key misses in the store.
pub trait CacheSource: Send + Sync {
    /// The record for `key`, if the source has one (its layers may not be in the store yet).
    fn lookup(&self, key: &Digest) -> Option<CacheRecord>;
    /// Copies the blobs of `layers` that the store lacks into it (digests verified).
    fn fetch(&self, store: &Store, layers: &[Layer]) -> Result<(), String>;
    /// How errors and progress name this source (`type=local,src=/x`).
    fn describe(&self) -> String;
}

/// `--cache-from type=local,src=DIR`: an OCI layout written by [`export_local`].
pub struct LocalCache {
    dir: PathBuf,
    index: CacheIndex,
}

impl LocalCache {
    pub fn open(dir: &Path) -> Result<LocalCache, String> {
        let err = |m: String| format!("--cache-from type=local,src={}: {m}", dir.display());
        let index_json = fs::read(dir.join("index.json")).map_err(|e| err(format!("index.json: {e}")))?;
        let layout: Index =
            serde_json::from_slice(&index_json).map_err(|e| err(format!("index.json: {e}")))?;
        let Some(manifest) = layout.manifests.first() else {
            return Err(err("index.json lists no manifest".into()));
        };
        let manifest: Manifest = serde_json::from_slice(&read_blob(dir, &manifest.digest).map_err(err)?)
            .map_err(|e| err(format!("manifest: {e}")))?;
        if manifest.config.media_type != INDEX_MEDIA_TYPE {
            return Err(err(format!("not an rbuild build cache (config is {})", manifest.config.media_type)));
        }
        let index =
            CacheIndex::from_json(&read_blob(dir, &manifest.config.digest).map_err(err)?).map_err(err)?;
        Ok(LocalCache { dir: dir.to_path_buf(), index })
    }
}

/// A blob of an OCI layout, checked against its digest.
fn read_blob(dir: &Path, digest: &Digest) -> Result<Vec<u8>, String> {
    let path = dir.join("blobs/sha256").join(digest.hex());
    let data = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if &Digest::of(&data) != digest {
        return Err(format!("blob {digest} does not match its digest"));
    }
    Ok(data)
}

impl CacheSource for LocalCache {
    fn lookup(&self, key: &Digest) -> Option<CacheRecord> {
        self.index.records.get(key).cloned()
    }

    fn fetch(&self, store: &Store, layers: &[Layer]) -> Result<(), String> {
        for layer in layers {
            if store.has_blob(&layer.digest) {
                continue;
            }
            let path = self.dir.join("blobs/sha256").join(layer.digest.hex());
            let file = fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            store
                .ingest_blob(file, Some(&layer.digest))
                .map_err(|e| format!("{}: layer {}: {e}", self.describe(), layer.digest))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("type=local,src={}", self.dir.display())
    }
}

/// `--cache-to type=local,dest=DIR`: writes `index` and its layers as an OCI layout at `dir`
/// (blobs already there are kept; `index.json` is replaced last, atomically).
pub fn export_local(store: &Store, index: &CacheIndex, dir: &Path) -> Result<Digest, String> {
    let err = |e: std::io::Error| format!("--cache-to type=local,dest={}: {e}", dir.display());
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(err)?;
    let write_blob = |digest: &Digest, data: &[u8]| -> Result<(), String> {
        let path = blobs.join(digest.hex());
        if path.exists() {
            return Ok(());
        }
        let tmp = blobs.join(format!(".{}.tmp", digest.hex()));
        fs::write(&tmp, data).map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)
    };
    for layer in index.layers() {
        let path = blobs.join(layer.digest.hex());
        if path.exists() {
            continue;
        }
        let tmp = blobs.join(format!(".{}.tmp", layer.digest.hex()));
        let mut src = store.open_blob(&layer.digest).map_err(|e| format!("layer {}: {e}", layer.digest))?;
        let mut dst = fs::File::create(&tmp).map_err(err)?;
        std::io::copy(&mut src, &mut dst).map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)?;
    }
    let index_json = index.to_json();
    let index_digest = Digest::of(&index_json);
    write_blob(&index_digest, &index_json)?;
    let manifest = index.manifest(&index_digest, index_json.len() as u64);
    let manifest_json = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let manifest_digest = Digest::of(&manifest_json);
    write_blob(&manifest_digest, &manifest_json)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(err)?;
    let layout = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": cache::oci::MEDIA_TYPE_INDEX,
        "manifests": [{
            "mediaType": cache::oci::MEDIA_TYPE_MANIFEST,
            "digest": manifest_digest.to_string(),
            "size": manifest_json.len(),
        }],
    });
    let tmp = dir.join(".index.json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(&layout).map_err(|e| e.to_string())?).map_err(err)?;
    fs::rename(&tmp, dir.join("index.json")).map_err(err)?;
    Ok(manifest_digest)
}
