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
//! `--cache-to`/`--cache-from` values are BuildKit's syntax ([`CacheTo::parse`],
//! [`CacheFrom::parse`]); registries are reached through registry/'s client.
//!
//! On import only the index is read. A step whose key misses locally is looked up in it; a hit
//! becomes a local cache record at once, but its layer blobs are fetched only when the build
//! needs their content (a snapshot for a step that runs, a `COPY --from`, the final image), so
//! a builder stage whose every step hits costs nothing but its index entries.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cache::oci::{Descriptor, Index, Manifest};
use cache::{CacheRecord, Digest, ImageRef, Layer, Store};
use serde::{Deserialize, Serialize};

/// The media type of the cache index blob (the manifest's config).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.rbuild.buildcache.index.v1+json";

/// Why a build cache could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A `--cache-to`/`--cache-from` value BuildKit would refuse.
    #[error("{flag} {value:?}: {reason}")]
    Syntax { flag: &'static str, value: String, reason: String },
    /// Something about one source or destination, named as the user named it.
    #[error("{place}")]
    At {
        place: String,
        #[source]
        source: Box<CacheError>,
    },
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("index.json lists no manifest")]
    NoManifest,
    #[error("not an rbuild build cache (config is {0})")]
    NotACache(String),
    #[error("blob {0} does not match its digest")]
    Corrupt(Digest),
    #[error(transparent)]
    Store(#[from] cache::Error),
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error("invalid reference")]
    Reference(#[source] cache::Error),
}

impl CacheError {
    fn at(place: impl Into<String>) -> impl FnOnce(CacheError) -> CacheError {
        let place = place.into();
        move |e| CacheError::At { place, source: Box::new(e) }
    }
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_path_buf(), source }
}

/// Which steps an export holds (`mode=` of `--cache-to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportMode {
    /// The steps of the target stage (what the final image is made of).
    #[default]
    Min,
    /// Every step of every stage the build ran or reused.
    Max,
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheTo {
    Local { dest: PathBuf, mode: ExportMode },
    Registry { reference: String, mode: ExportMode },
}

/// One `--cache-from`.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheFrom {
    Local { src: PathBuf },
    Registry { reference: String },
}

/// `key=value,...` fields of a BuildKit cache option.
fn fields(flag: &'static str, value: &str) -> Result<Vec<(String, String)>, CacheError> {
    value
        .split(',')
        .map(|f| match f.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_ascii_lowercase(), v.trim().to_string())),
            None => Err(CacheError::Syntax {
                flag,
                value: value.into(),
                reason: format!("{f:?} is not key=value"),
            }),
        })
        .collect()
}

fn get<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

impl CacheTo {
    /// `type=local,dest=DIR[,mode=min|max]` or `type=registry,ref=HOST/REPO:TAG[,mode=...]`.
    pub fn parse(value: &str) -> Result<CacheTo, CacheError> {
        let flag = "--cache-to";
        let bad = |reason: String| CacheError::Syntax { flag, value: value.into(), reason };
        let f = fields(flag, value)?;
        let mode = match get(&f, "mode") {
            None | Some("min") => ExportMode::Min,
            Some("max") => ExportMode::Max,
            Some(other) => return Err(bad(format!("mode must be min or max, not {other:?}"))),
        };
        for (k, _) in &f {
            if !["type", "dest", "ref", "mode", "compression", "oci-mediatypes", "ignore-error"]
                .contains(&k.as_str())
            {
                return Err(bad(format!("unknown key {k:?}")));
            }
        }
        match get(&f, "type") {
            Some("local") => match get(&f, "dest") {
                Some(d) if !d.is_empty() => Ok(CacheTo::Local { dest: PathBuf::from(d), mode }),
                _ => Err(bad("type=local needs dest=DIR".into())),
            },
            Some("registry") => match get(&f, "ref") {
                Some(r) if !r.is_empty() => Ok(CacheTo::Registry { reference: r.to_string(), mode }),
                _ => Err(bad("type=registry needs ref=HOST/REPO:TAG".into())),
            },
            Some(other) => Err(bad(format!("type {other:?} is not supported (local, registry)"))),
            None => Err(bad("type= is required (local, registry)".into())),
        }
    }

    fn describe(&self) -> String {
        match self {
            CacheTo::Local { dest, .. } => format!("--cache-to type=local,dest={}", dest.display()),
            CacheTo::Registry { reference, .. } => format!("--cache-to type=registry,ref={reference}"),
        }
    }
}

impl CacheFrom {
    /// `type=local,src=DIR`, `type=registry,ref=HOST/REPO:TAG`, or a bare reference (BuildKit:
    /// `type=registry,ref=REFERENCE`).
    pub fn parse(value: &str) -> Result<CacheFrom, CacheError> {
        let flag = "--cache-from";
        if !value.contains('=') {
            return Ok(CacheFrom::Registry { reference: value.to_string() });
        }
        let bad = |reason: &str| CacheError::Syntax { flag, value: value.into(), reason: reason.into() };
        let f = fields(flag, value)?;
        match get(&f, "type") {
            Some("local") => match get(&f, "src") {
                Some(s) if !s.is_empty() => Ok(CacheFrom::Local { src: PathBuf::from(s) }),
                _ => Err(bad("type=local needs src=DIR")),
            },
            Some("registry") => match get(&f, "ref") {
                Some(r) if !r.is_empty() => Ok(CacheFrom::Registry { reference: r.to_string() }),
                _ => Err(bad("type=registry needs ref=HOST/REPO:TAG")),
            },
            Some(other) => Err(bad(&format!("type {other:?} is not supported (local, registry)"))),
            None => Err(bad("type= is required (local, registry)")),
        }
    }
}

/// Cache key -> what the step produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheIndex {
    pub records: BTreeMap<Digest, CacheRecord>,
}

impl CacheIndex {
    /// The records of `keys` found in `store`.
    pub fn collect(store: &Store, keys: &[Digest]) -> Result<CacheIndex, CacheError> {
        let mut records = BTreeMap::new();
        for key in keys {
            if let Some(record) = store.cache_get(key)? {
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

    pub fn from_json(data: &[u8]) -> Result<CacheIndex, CacheError> {
        serde_json::from_slice(data)
            .map_err(|source| CacheError::Json { what: "not an rbuild build-cache index", source })
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
    fn fetch(&self, store: &Store, layers: &[Layer]) -> Result<(), CacheError>;
    /// How errors and progress name this source (`type=local,src=/x`).
    fn describe(&self) -> String;
}

/// `--cache-from type=local,src=DIR`: an OCI layout written by [`export_local`].
pub struct LocalCache {
    dir: PathBuf,
    index: CacheIndex,
}

impl LocalCache {
    pub fn open(dir: &Path) -> Result<LocalCache, CacheError> {
        Self::read(dir).map_err(CacheError::at(format!("--cache-from type=local,src={}", dir.display())))
    }

    fn read(dir: &Path) -> Result<LocalCache, CacheError> {
        let path = dir.join("index.json");
        let index_json = fs::read(&path).map_err(io_at(&path))?;
        let layout: Index = serde_json::from_slice(&index_json)
            .map_err(|source| CacheError::Json { what: "index.json", source })?;
        let Some(manifest) = layout.manifests.first() else {
            return Err(CacheError::NoManifest);
        };
        let manifest: Manifest = serde_json::from_slice(&read_blob(dir, &manifest.digest)?)
            .map_err(|source| CacheError::Json { what: "manifest", source })?;
        if manifest.config.media_type != INDEX_MEDIA_TYPE {
            return Err(CacheError::NotACache(manifest.config.media_type));
        }
        let index = CacheIndex::from_json(&read_blob(dir, &manifest.config.digest)?)?;
        Ok(LocalCache { dir: dir.to_path_buf(), index })
    }
}

/// A blob of an OCI layout, checked against its digest.
fn read_blob(dir: &Path, digest: &Digest) -> Result<Vec<u8>, CacheError> {
    let path = dir.join("blobs/sha256").join(digest.hex());
    let data = fs::read(&path).map_err(io_at(&path))?;
    if &Digest::of(&data) != digest {
        return Err(CacheError::Corrupt(digest.clone()));
    }
    Ok(data)
}

impl CacheSource for LocalCache {
    fn lookup(&self, key: &Digest) -> Option<CacheRecord> {
        self.index.records.get(key).cloned()
    }

    fn fetch(&self, store: &Store, layers: &[Layer]) -> Result<(), CacheError> {
        for layer in layers {
            if store.has_blob(&layer.digest) {
                continue;
            }
            let path = self.dir.join("blobs/sha256").join(layer.digest.hex());
            let file = fs::File::open(&path).map_err(io_at(&path))?;
            store
                .ingest_blob(file, Some(&layer.digest))
                .map_err(CacheError::from)
                .map_err(CacheError::at(self.describe()))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("type=local,src={}", self.dir.display())
    }
}

/// `--cache-from type=registry,ref=...`: the index is fetched when the build starts, layers
/// only when the build needs them.
pub struct RegistryCache {
    client: Arc<registry::Client>,
    reference: ImageRef,
    index: CacheIndex,
}

impl RegistryCache {
    pub fn open(
        store: &Store,
        reference: &str,
        client: Arc<registry::Client>,
    ) -> Result<RegistryCache, CacheError> {
        let read = || -> Result<RegistryCache, CacheError> {
            let r: ImageRef = reference.parse().map_err(CacheError::Reference)?;
            // The index blob goes through the store like any blob (verified against its digest);
            // nothing references it, so gc removes it later.
            let (manifest, config) = client.fetch_artifact(store, &r)?;
            if manifest.config.media_type != INDEX_MEDIA_TYPE {
                return Err(CacheError::NotACache(manifest.config.media_type));
            }
            let index = CacheIndex::from_json(&config)?;
            Ok(RegistryCache { client: client.clone(), reference: r, index })
        };
        read().map_err(CacheError::at(format!("--cache-from type=registry,ref={reference}")))
    }
}

impl CacheSource for RegistryCache {
    fn lookup(&self, key: &Digest) -> Option<CacheRecord> {
        self.index.records.get(key).cloned()
    }

    fn fetch(&self, store: &Store, layers: &[Layer]) -> Result<(), CacheError> {
        let descs: Vec<Descriptor> = layers.iter().map(Layer::descriptor).collect();
        self.client
            .fetch_blobs(store, &self.reference, &descs)
            .map_err(CacheError::from)
            .map_err(CacheError::at(self.describe()))
    }

    fn describe(&self) -> String {
        format!("type=registry,ref={}", self.reference)
    }
}

/// Opens the `--cache-from` sources. A source that cannot be read is left out, as in BuildKit
/// (the build then simply misses); its error comes back to be shown as a warning.
pub fn open_sources(
    store: &Store,
    from: &[CacheFrom],
    client: &Arc<registry::Client>,
) -> (crate::CacheSources, Vec<CacheError>) {
    let mut sources: Vec<Arc<dyn CacheSource>> = Vec::new();
    let mut unusable = Vec::new();
    for f in from {
        let opened: Result<Arc<dyn CacheSource>, CacheError> = match f {
            CacheFrom::Local { src } => LocalCache::open(src).map(|c| Arc::new(c) as Arc<dyn CacheSource>),
            CacheFrom::Registry { reference } => RegistryCache::open(store, reference, client.clone())
                .map(|c| Arc::new(c) as Arc<dyn CacheSource>),
        };
        match opened {
            Ok(s) => sources.push(s),
            Err(e) => unusable.push(e),
        }
    }
    (crate::CacheSources(sources), unusable)
}

/// Writes the cache of a build to `to`: the records of the target stage's steps (`mode=min`)
/// or of every step (`mode=max`). Returns how many records went.
pub fn export(
    store: &Store,
    out: &crate::BuildOutput,
    to: &CacheTo,
    client: &registry::Client,
) -> Result<usize, CacheError> {
    let mode = match to {
        CacheTo::Local { mode, .. } | CacheTo::Registry { mode, .. } => *mode,
    };
    let keys: Vec<Digest> = out
        .keys
        .iter()
        .filter(|(stage, _)| mode == ExportMode::Max || *stage == out.target)
        .map(|(_, k)| k.clone())
        .collect();
    let write = || -> Result<usize, CacheError> {
        let index = CacheIndex::collect(store, &keys)?;
        match to {
            CacheTo::Local { dest, .. } => {
                export_local(store, &index, dest)?;
            }
            CacheTo::Registry { reference, .. } => {
                let r: ImageRef = reference.parse().map_err(CacheError::Reference)?;
                let json = index.to_json();
                let index_digest = store.write_blob(&json)?;
                let manifest = index.manifest(&index_digest, json.len() as u64);
                let bytes = serde_json::to_vec(&manifest)
                    .map_err(|source| CacheError::Json { what: "manifest", source })?;
                client.push_artifact(store, &bytes, &manifest, &r)?;
            }
        }
        Ok(index.records.len())
    };
    write().map_err(CacheError::at(to.describe()))
}

/// `--cache-to type=local,dest=DIR`: writes `index` and its layers as an OCI layout at `dir`
/// (blobs already there are kept; `index.json` is replaced last, atomically).
pub fn export_local(store: &Store, index: &CacheIndex, dir: &Path) -> Result<Digest, CacheError> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_at(&blobs))?;
    let write_blob = |digest: &Digest, data: &[u8]| -> Result<(), CacheError> {
        let path = blobs.join(digest.hex());
        if path.exists() {
            return Ok(());
        }
        let tmp = blobs.join(format!(".{}.tmp", digest.hex()));
        fs::write(&tmp, data).map_err(io_at(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_at(&path))
    };
    for layer in index.layers() {
        let path = blobs.join(layer.digest.hex());
        if path.exists() {
            continue;
        }
        let tmp = blobs.join(format!(".{}.tmp", layer.digest.hex()));
        let mut src = store.open_blob(&layer.digest)?;
        let mut dst = fs::File::create(&tmp).map_err(io_at(&tmp))?;
        std::io::copy(&mut src, &mut dst).map_err(io_at(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_at(&path))?;
    }
    let index_json = index.to_json();
    let index_digest = Digest::of(&index_json);
    write_blob(&index_digest, &index_json)?;
    let manifest = index.manifest(&index_digest, index_json.len() as u64);
    let manifest_json =
        serde_json::to_vec(&manifest).map_err(|source| CacheError::Json { what: "manifest", source })?;
    let manifest_digest = Digest::of(&manifest_json);
    write_blob(&manifest_digest, &manifest_json)?;
    let layout_file = dir.join("oci-layout");
    fs::write(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_at(&layout_file))?;
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
    let bytes = serde_json::to_vec_pretty(&layout)
        .map_err(|source| CacheError::Json { what: "index.json", source })?;
    fs::write(&tmp, bytes).map_err(io_at(&tmp))?;
    fs::rename(&tmp, dir.join("index.json")).map_err(io_at(&tmp))?;
    Ok(manifest_digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_syntax() {
        assert_eq!(
            CacheTo::parse("type=local,dest=/c,mode=max").unwrap(),
            CacheTo::Local { dest: "/c".into(), mode: ExportMode::Max }
        );
        assert_eq!(
            CacheTo::parse("type=registry,ref=127.0.0.1:5000/c:1").unwrap(),
            CacheTo::Registry { reference: "127.0.0.1:5000/c:1".into(), mode: ExportMode::Min }
        );
        assert_eq!(CacheFrom::parse("type=local,src=/c").unwrap(), CacheFrom::Local { src: "/c".into() });
        assert_eq!(
            CacheFrom::parse("host/repo:tag").unwrap(),
            CacheFrom::Registry { reference: "host/repo:tag".into() }
        );
        for bad in [
            "type=local",
            "type=s3,ref=x",
            "dest=/x",
            "type=local,dest=/x,mode=all",
            "type=local,dest=/x,foo=1",
        ] {
            assert!(CacheTo::parse(bad).is_err(), "{bad}");
        }
        assert!(CacheFrom::parse("type=local").is_err());
        assert_eq!(
            CacheTo::parse("type=local").unwrap_err().to_string(),
            "--cache-to \"type=local\": type=local needs dest=DIR"
        );
    }
}
