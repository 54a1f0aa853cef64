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

use crate::cachemounts::{self, MountContent};

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
    #[error("{0} cannot be read")]
    Unusable(String),
    #[error(transparent)]
    MountContent(#[from] cachemounts::MountContentError),
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

/// The media type of a Docker image config (an image whose cache is inline may be either).
const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The key of the image config that holds an inline cache (`--cache-to type=inline`), as
/// BuildKit's `moby.buildkit.cache.v0`.
pub const INLINE_KEY: &str = "rbuild.buildcache.v1";

/// The media type of the manifest that keeps an inline cache's cache-mount blobs referenced in
/// the image's repository (pushed by digest beside the image).
pub const INLINE_MOUNTS_MEDIA_TYPE: &str = "application/vnd.rbuild.buildcache.mounts.v1+json";

/// An inline cache: the target stage's records, in the image config under [`INLINE_KEY`].
/// Each record's layers are the first `layers` of the image's own, so they are stored once;
/// its config is whole (history and all: what the cache hit must reproduce).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InlineCache {
    pub records: BTreeMap<Digest, InlineRecord>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mounts: BTreeMap<String, MountContent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InlineRecord {
    pub layers: usize,
    pub config: cache::ImageConfig,
}

impl InlineCache {
    /// The records of `index` whose layers are a prefix of the image's `layers` (every step
    /// of the target stage).
    pub fn of(index: &CacheIndex, layers: &[Layer]) -> InlineCache {
        let records = index
            .records
            .iter()
            .filter(|(_, r)| layers.starts_with(&r.layers))
            .map(|(k, r)| (k.clone(), InlineRecord { layers: r.layers.len(), config: r.config.clone() }))
            .collect();
        InlineCache { records, mounts: index.mounts.clone() }
    }

    /// The cache index inline in an image (its manifest and config bytes); an image without
    /// one is an empty index.
    pub fn read(manifest: &Manifest, config: &[u8]) -> Result<CacheIndex, CacheError> {
        let value: serde_json::Value = serde_json::from_slice(config)
            .map_err(|source| CacheError::Json { what: "image config", source })?;
        let Some(inline) = value.get(INLINE_KEY) else { return Ok(CacheIndex::default()) };
        let inline: InlineCache = serde_json::from_value(inline.clone())
            .map_err(|source| CacheError::Json { what: "inline build cache", source })?;
        let diff_ids: Vec<Digest> = value
            .pointer("/rootfs/diff_ids")
            .and_then(|d| serde_json::from_value(d.clone()).ok())
            .unwrap_or_default();
        let layers: Vec<Layer> = manifest
            .layers
            .iter()
            .zip(&diff_ids)
            .map(|(d, diff_id)| Layer {
                digest: d.digest.clone(),
                diff_id: diff_id.clone(),
                size: d.size,
                media_type: d.media_type.clone(),
            })
            .collect();
        let records = inline
            .records
            .into_iter()
            .filter(|(_, r)| r.layers <= layers.len())
            .map(|(k, r)| (k, CacheRecord::new(layers[..r.layers].to_vec(), r.config)))
            .collect();
        Ok(CacheIndex { records, mounts: inline.mounts })
    }
}

/// The inline cache of an image whose layers are `layers`: the records of `keys` (the target
/// stage's steps) and the cache mounts `mount_ids` (their blobs written into the store, for
/// [`push_inline_mounts`]). Also returns the mounts left out, and why.
pub fn inline_cache(
    store: &Store,
    keys: &[Digest],
    layers: &[Layer],
    mount_ids: &[String],
    options: &crate::InlineOptions,
    sources: &crate::CacheSources,
) -> Result<(InlineCache, Vec<String>), CacheError> {
    let mut index = CacheIndex::collect(store, keys)?;
    let (mounts, skipped) = gather_mounts(store, mount_ids, options.mounts_max_size, sources);
    index.mounts = mounts;
    Ok((InlineCache::of(&index, layers), skipped))
}

/// What [`push`] did.
#[derive(Debug)]
pub struct Pushed {
    /// The digest the registry holds the manifest (or image index) under.
    pub digest: Digest,
    /// Why the inline cache's cache mounts did not go with the image: a warning, since their
    /// absence only costs the next build its cache mounts.
    pub mounts_error: Option<CacheError>,
}

/// `push NAME`: what the name points at (`found`, [`Store::lookup`]) to `destination`: an
/// image, then the cache mounts of its inline cache if it has any; or an image index (a
/// multi-platform image) with every platform's manifest, whose digest stays the same.
pub fn push(
    store: &Store,
    client: &registry::Client,
    found: &Digest,
    destination: &ImageRef,
) -> Result<Pushed, CacheError> {
    // docker's `push` event, by the name pushed, once the registry has the manifest.
    let pushed =
        || cache::events::image(store.root(), "push", &destination.to_string(), &destination.to_string());
    if store.index(found)?.is_some() {
        let digest = client.push_index(store, found, destination)?;
        pushed();
        return Ok(Pushed { digest, mounts_error: None });
    }
    let image = store.image(found)?;
    let digest = client.push(store, &image, destination)?;
    pushed();
    let mounts_error = push_inline_mounts(store, client, &image, destination).err();
    Ok(Pushed { digest, mounts_error })
}

/// Pushes the cache-mount blobs of `image`'s inline cache (if it has any) to the repository of
/// `reference`, with a manifest that lists them, pushed by digest, so the registry keeps them.
pub fn push_inline_mounts(
    store: &Store,
    client: &registry::Client,
    image: &cache::Image,
    reference: &ImageRef,
) -> Result<usize, CacheError> {
    let config = store.read_blob(&image.config_digest)?;
    let index = InlineCache::read(&image.manifest, &config)?;
    let blobs: Vec<Descriptor> =
        index.blobs().into_iter().filter(|d| d.media_type == cachemounts::BLOB_MEDIA_TYPE).collect();
    if blobs.is_empty() {
        return Ok(0);
    }
    let empty = store.write_blob(b"{}")?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(cache::oci::MEDIA_TYPE_MANIFEST.to_string()),
        config: Descriptor {
            media_type: INLINE_MOUNTS_MEDIA_TYPE.to_string(),
            digest: empty,
            size: 2,
            annotations: Default::default(),
            platform: None,
        },
        layers: blobs,
        annotations: [("org.opencontainers.image.ref.name".to_string(), image.digest.to_string())].into(),
    };
    let bytes =
        serde_json::to_vec(&manifest).map_err(|source| CacheError::Json { what: "manifest", source })?;
    let by_digest: ImageRef =
        format!("{}@{}", reference.name(), Digest::of(&bytes)).parse().map_err(CacheError::Reference)?;
    client.push_artifact(store, &bytes, &manifest, &by_digest)?;
    Ok(manifest.layers.len())
}

/// Where a `--cache-to` writes.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheTarget {
    Local {
        dest: PathBuf,
    },
    Registry {
        reference: String,
    },
    S3(Box<S3Spec>),
    /// `type=inline`: the records go into the built image's config ([`InlineCache`]).
    Inline,
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheTo {
    pub target: CacheTarget,
    pub mode: ExportMode,
    /// `cache-mounts=true`: the build's `RUN --mount=type=cache` directories go too.
    pub cache_mounts: bool,
    /// `cache-mounts-max-size=SIZE`: a mount bigger than this is left out, with a warning.
    pub mounts_max_size: Option<u64>,
}

/// One `--cache-from`.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheFrom {
    Local { src: PathBuf },
    Registry { reference: String },
    S3(Box<S3Spec>),
}

/// A cache in an S3 bucket (`type=s3`, BuildKit's keys): the index at
/// `<prefix><manifests_prefix><name>`, each blob at `<prefix><blobs_prefix>sha256/<hex>`.
/// (BuildKit writes `sha256:<hex>`; a `:` in a key is legal but signs differently in some S3
/// implementations, and our index is not BuildKit's anyway, so the OCI layout's form is used.)
#[derive(Debug, Clone, PartialEq, Default)]
pub struct S3Spec {
    pub options: registry::s3::S3Options,
    pub name: String,
    pub blobs_prefix: String,
    pub manifests_prefix: String,
}

impl S3Spec {
    const KEYS: [&'static str; 12] = [
        "bucket",
        "region",
        "endpoint_url",
        "prefix",
        "use_path_style",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "name",
        "blobs_prefix",
        "manifests_prefix",
        "upload_parallelism",
    ];

    fn parse(f: &[(String, String)], bad: &dyn Fn(String) -> CacheError) -> Result<S3Spec, CacheError> {
        let text = |k: &str| get(f, k).filter(|v| !v.is_empty()).map(str::to_string);
        let Some(bucket) = text("bucket") else { return Err(bad("type=s3 needs bucket=NAME".into())) };
        let use_path_style = match get(f, "use_path_style") {
            None => false,
            Some(v) => hostutil::goparse::parse_bool(v)
                .ok_or_else(|| bad(format!("use_path_style must be true or false, not {v:?}")))?,
        };
        Ok(S3Spec {
            options: registry::s3::S3Options {
                bucket,
                region: text("region"),
                endpoint_url: text("endpoint_url"),
                prefix: get(f, "prefix").unwrap_or_default().to_string(),
                use_path_style,
                access_key_id: text("access_key_id"),
                secret_access_key: text("secret_access_key"),
                session_token: text("session_token"),
            },
            // BuildKit's defaults.
            name: text("name").unwrap_or_else(|| "buildkit".into()),
            blobs_prefix: get(f, "blobs_prefix").unwrap_or("blobs/").to_string(),
            manifests_prefix: get(f, "manifests_prefix").unwrap_or("manifests/").to_string(),
        })
    }

    fn describe(&self) -> String {
        format!("type=s3,bucket={},prefix={},name={}", self.options.bucket, self.options.prefix, self.name)
    }

    fn index_key(&self) -> String {
        format!("{}{}", self.manifests_prefix, self.name)
    }

    fn blob_key(&self, digest: &Digest) -> String {
        format!("{}sha256/{}", self.blobs_prefix, digest.hex())
    }

    fn client(&self) -> Result<registry::s3::S3, CacheError> {
        Ok(registry::s3::S3::new(self.options.clone())?)
    }
}

impl CacheFrom {
    /// How progress and errors name the source, and how a cache record remembers where it
    /// came from ([`CacheRecord::source`]).
    pub fn describe(&self) -> String {
        match self {
            CacheFrom::Local { src } => format!("type=local,src={}", src.display()),
            CacheFrom::Registry { reference } => format!("type=registry,ref={reference}"),
            CacheFrom::S3(spec) => spec.describe(),
        }
    }
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
    /// `type=local,dest=DIR[,mode=min|max]` or `type=registry,ref=HOST/REPO:TAG[,mode=...]`,
    /// each with `cache-mounts=true[,cache-mounts-max-size=SIZE]`.
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
            if ![
                "type",
                "dest",
                "ref",
                "mode",
                "compression",
                "oci-mediatypes",
                "ignore-error",
                "cache-mounts",
                "cache-mounts-max-size",
            ]
            .contains(&k.as_str())
                && !S3Spec::KEYS.contains(&k.as_str())
            {
                return Err(bad(format!("unknown key {k:?}")));
            }
        }
        let cache_mounts = match get(&f, "cache-mounts") {
            None => false,
            Some(v) => hostutil::goparse::parse_bool(v)
                .ok_or_else(|| bad(format!("cache-mounts must be true or false, not {v:?}")))?,
        };
        let mounts_max_size = match get(&f, "cache-mounts-max-size") {
            None => None,
            Some(v) => Some(
                hostutil::units::ram_in_bytes(v)
                    .ok_or_else(|| bad(format!("cache-mounts-max-size: {v:?} is not a size (500m, 2g)")))?,
            ),
        };
        let target = match get(&f, "type") {
            Some("local") => match get(&f, "dest") {
                Some(d) if !d.is_empty() => CacheTarget::Local { dest: PathBuf::from(d) },
                _ => return Err(bad("type=local needs dest=DIR".into())),
            },
            Some("registry") => match get(&f, "ref") {
                Some(r) if !r.is_empty() => CacheTarget::Registry { reference: r.to_string() },
                _ => return Err(bad("type=registry needs ref=HOST/REPO:TAG".into())),
            },
            // As BuildKit's inline cache: the target stage's steps only.
            Some("inline") if mode == ExportMode::Max => {
                return Err(bad("type=inline holds the target stage's steps only (mode=min)".into()));
            }
            Some("inline") => CacheTarget::Inline,
            Some("s3") => CacheTarget::S3(Box::new(S3Spec::parse(&f, &bad)?)),
            Some(other) => {
                return Err(bad(format!("type {other:?} is not supported (local, registry, inline, s3)")));
            }
            None => return Err(bad("type= is required (local, registry, inline, s3)".into())),
        };
        Ok(CacheTo { target, mode, cache_mounts, mounts_max_size })
    }

    /// `type=local,dest=/x`: how messages name the destination.
    pub fn describe(&self) -> String {
        match &self.target {
            CacheTarget::Local { dest } => format!("type=local,dest={}", dest.display()),
            CacheTarget::Registry { reference } => format!("type=registry,ref={reference}"),
            CacheTarget::Inline => "type=inline".to_string(),
            CacheTarget::S3(spec) => spec.describe(),
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
            Some("s3") => Ok(CacheFrom::S3(Box::new(S3Spec::parse(&f, &|r: String| bad(&r))?))),
            Some(other) => Err(bad(&format!("type {other:?} is not supported (local, registry, s3)"))),
            None => Err(bad("type= is required (local, registry, s3)")),
        }
    }
}

/// Cache key -> what the step produced, and the content of cache mounts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheIndex {
    pub records: BTreeMap<Digest, CacheRecord>,
    /// Cache mount id -> its content (`cache-mounts=true`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mounts: BTreeMap<String, MountContent>,
}

impl CacheIndex {
    /// The records of `keys` found in `store` (their blobs may be missing: see
    /// [`CacheRecord::source`]); the [`CacheRecord::source`] of each is dropped.
    pub fn collect(store: &Store, keys: &[Digest]) -> Result<CacheIndex, CacheError> {
        let mut records = BTreeMap::new();
        for key in keys {
            if let Some((mut record, _)) = store.cache_get_partial(key)? {
                record.source = None;
                records.insert(key.clone(), record);
            }
        }
        Ok(CacheIndex { records, mounts: BTreeMap::new() })
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

    /// Every blob the index names (layers, then cache-mount blobs), once.
    pub fn blobs(&self) -> Vec<Descriptor> {
        let mut out: Vec<Descriptor> = self.layers().iter().map(Layer::descriptor).collect();
        let mut seen: std::collections::HashSet<Digest> = out.iter().map(|d| d.digest.clone()).collect();
        for content in self.mounts.values() {
            for d in content.descriptors() {
                if seen.insert(d.digest.clone()) {
                    out.push(d);
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

    /// The manifest that carries the index (as its config) and its blobs.
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
            layers: self.blobs(),
            annotations: Default::default(),
        }
    }
}

/// A build cache to read from: consulted when a key misses in the store.
pub trait CacheSource: Send + Sync {
    /// The record for `key`, if the source has one (its layers may not be in the store yet).
    fn lookup(&self, key: &Digest) -> Option<CacheRecord>;
    /// The content of cache mount `id`, if the source has it.
    fn mount(&self, id: &str) -> Option<MountContent>;
    /// Copies the blobs of `blobs` that the store lacks into it (digests verified).
    fn fetch(&self, store: &Store, blobs: &[Descriptor]) -> Result<(), CacheError>;
    /// How errors and progress name this source (`type=local,src=/x`), as
    /// [`CacheFrom::describe`] does.
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

    fn mount(&self, id: &str) -> Option<MountContent> {
        self.index.mounts.get(id).cloned()
    }

    fn fetch(&self, store: &Store, blobs: &[Descriptor]) -> Result<(), CacheError> {
        for blob in blobs {
            if store.has_blob(&blob.digest) {
                continue;
            }
            let path = self.dir.join("blobs/sha256").join(blob.digest.hex());
            let file = fs::File::open(&path).map_err(io_at(&path))?;
            store
                .ingest_blob(file, Some(&blob.digest))
                .map_err(CacheError::from)
                .map_err(CacheError::at(self.describe()))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        CacheFrom::Local { src: self.dir.clone() }.describe()
    }
}

/// `--cache-from type=registry,ref=...`: the index is fetched when the source is first
/// consulted, blobs only when the build needs them.
pub struct RegistryCache {
    client: Arc<registry::Client>,
    reference: ImageRef,
    shown: String,
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
            let index = if manifest.config.media_type == INDEX_MEDIA_TYPE {
                CacheIndex::from_json(&config)?
            } else if [cache::oci::MEDIA_TYPE_CONFIG, MEDIA_TYPE_DOCKER_CONFIG]
                .contains(&manifest.config.media_type.as_str())
            {
                InlineCache::read(&manifest, &config)?
            } else {
                return Err(CacheError::NotACache(manifest.config.media_type));
            };
            Ok(RegistryCache { client: client.clone(), reference: r, shown: reference.to_string(), index })
        };
        read().map_err(CacheError::at(format!("--cache-from type=registry,ref={reference}")))
    }
}

impl CacheSource for RegistryCache {
    fn lookup(&self, key: &Digest) -> Option<CacheRecord> {
        self.index.records.get(key).cloned()
    }

    fn mount(&self, id: &str) -> Option<MountContent> {
        self.index.mounts.get(id).cloned()
    }

    fn fetch(&self, store: &Store, blobs: &[Descriptor]) -> Result<(), CacheError> {
        self.client
            .fetch_blobs(store, &self.reference, blobs)
            .map_err(CacheError::from)
            .map_err(CacheError::at(self.describe()))
    }

    fn describe(&self) -> String {
        CacheFrom::Registry { reference: self.shown.clone() }.describe()
    }
}

/// `--cache-from type=s3,...`: the index is read when the source is first consulted, blobs
/// when the build needs them (several at once).
pub struct S3Cache {
    spec: S3Spec,
    s3: registry::s3::S3,
    index: CacheIndex,
}

/// How many blobs move to or from S3 at once.
const S3_PARALLEL: usize = 4;

impl S3Cache {
    pub fn open(spec: &S3Spec) -> Result<S3Cache, CacheError> {
        let read = || -> Result<S3Cache, CacheError> {
            let s3 = spec.client()?;
            let key = spec.index_key();
            let Some(mut body) = s3.get(&key)? else {
                return Err(CacheError::Unusable(format!("{} has no {key}", s3.describe())));
            };
            let mut json = Vec::new();
            std::io::Read::read_to_end(&mut body, &mut json).map_err(io_at(Path::new(&key)))?;
            Ok(S3Cache { spec: spec.clone(), s3, index: CacheIndex::from_json(&json)? })
        };
        read().map_err(CacheError::at(format!("--cache-from {}", spec.describe())))
    }
}

impl CacheSource for S3Cache {
    fn lookup(&self, key: &Digest) -> Option<CacheRecord> {
        self.index.records.get(key).cloned()
    }

    fn mount(&self, id: &str) -> Option<MountContent> {
        self.index.mounts.get(id).cloned()
    }

    fn fetch(&self, store: &Store, blobs: &[Descriptor]) -> Result<(), CacheError> {
        let missing: Vec<&Descriptor> = blobs.iter().filter(|d| !store.has_blob(&d.digest)).collect();
        in_parallel(&missing, |d| {
            let key = self.spec.blob_key(&d.digest);
            let Some(body) = self.s3.get(&key)? else {
                return Err(CacheError::Unusable(format!("{} has no {key}", self.s3.describe())));
            };
            store.ingest_blob(body, Some(&d.digest))?;
            Ok(())
        })
        .map_err(CacheError::at(self.describe()))
    }

    fn describe(&self) -> String {
        self.spec.describe()
    }
}

/// Runs `f` on every item, [`S3_PARALLEL`] at a time; the first error wins.
fn in_parallel<T: Sync>(
    items: &[T],
    f: impl Fn(&T) -> Result<(), CacheError> + Sync,
) -> Result<(), CacheError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed: std::sync::Mutex<Option<CacheError>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..S3_PARALLEL.min(items.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(item) = items.get(i) else { return };
                    if let Err(e) = f(item) {
                        next.store(items.len(), std::sync::atomic::Ordering::SeqCst);
                        failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `--cache-to type=s3,...`: every blob the bucket lacks (a HEAD each, several at once,
/// streamed from the store), then the index, last, in one PUT: a reader sees the old index or
/// the new one, each with all its blobs.
fn export_s3(store: &Store, index: &CacheIndex, spec: &S3Spec) -> Result<(), CacheError> {
    let s3 = spec.client()?;
    let blobs = index.blobs();
    in_parallel(&blobs, |d| {
        let key = spec.blob_key(&d.digest);
        if s3.head(&key)?.is_some() {
            return Ok(());
        }
        s3.put_file(&key, &store.blob_path(&d.digest), Some(d.digest.hex()))?;
        Ok(())
    })?;
    // An unchanged index is not sent again (reading it back costs no upload).
    let json = index.to_json();
    if let Some(mut current) = s3.get(&spec.index_key())? {
        let mut bytes = Vec::new();
        if std::io::Read::read_to_end(&mut current, &mut bytes).is_ok() && bytes == json {
            return Ok(());
        }
    }
    s3.put_bytes(&spec.index_key(), &json)?;
    Ok(())
}

/// A `--cache-from` source opened when a build first consults it (a key that misses in the
/// store, a cache mount the store lacks, a blob to fetch), so a build whose every step hits
/// locally makes no request to it. One that cannot be read is reported once through `warn`
/// and then has nothing, as in BuildKit (the build simply misses).
pub struct LazySource {
    from: CacheFrom,
    store: Store,
    client: Arc<registry::Client>,
    warn: Arc<dyn Fn(&CacheError) + Send + Sync>,
    opened: std::sync::OnceLock<Option<Box<dyn CacheSource>>>,
}

impl LazySource {
    fn get(&self) -> Option<&dyn CacheSource> {
        self.opened
            .get_or_init(|| {
                let opened: Result<Box<dyn CacheSource>, CacheError> = match &self.from {
                    CacheFrom::Local { src } => {
                        LocalCache::open(src).map(|c| Box::new(c) as Box<dyn CacheSource>)
                    }
                    CacheFrom::Registry { reference } => {
                        RegistryCache::open(&self.store, reference, self.client.clone())
                            .map(|c| Box::new(c) as Box<dyn CacheSource>)
                    }
                    CacheFrom::S3(spec) => S3Cache::open(spec).map(|c| Box::new(c) as Box<dyn CacheSource>),
                };
                opened.map_err(|e| (self.warn)(&e)).ok()
            })
            .as_deref()
    }
}

impl CacheSource for LazySource {
    fn lookup(&self, key: &Digest) -> Option<CacheRecord> {
        self.get()?.lookup(key)
    }

    fn mount(&self, id: &str) -> Option<MountContent> {
        self.get()?.mount(id)
    }

    fn fetch(&self, store: &Store, blobs: &[Descriptor]) -> Result<(), CacheError> {
        match self.get() {
            Some(source) => source.fetch(store, blobs),
            None => Err(CacheError::Unusable(self.describe())),
        }
    }

    fn describe(&self) -> String {
        self.from.describe()
    }
}

/// The `--cache-from` sources, each opened when first needed ([`LazySource`]); `warn` hears
/// of a source that cannot be read.
pub fn open_sources(
    store: &Store,
    from: &[CacheFrom],
    client: &Arc<registry::Client>,
    warn: Arc<dyn Fn(&CacheError) + Send + Sync>,
) -> crate::CacheSources {
    let sources = from
        .iter()
        .map(|f| {
            Arc::new(LazySource {
                from: f.clone(),
                store: store.clone(),
                client: client.clone(),
                warn: warn.clone(),
                opened: std::sync::OnceLock::new(),
            }) as Arc<dyn CacheSource>
        })
        .collect();
    crate::CacheSources(sources)
}

/// Brings cache mount `id` from the first source that has it into a new directory `dest`
/// (which must not exist) and returns what it brought. `Ok(None)`: no source has it.
pub fn import_mount(
    store: &Store,
    sources: &crate::CacheSources,
    id: &str,
    dest: &Path,
) -> Result<Option<MountContent>, CacheError> {
    for source in &sources.0 {
        let Some(content) = source.mount(id) else { continue };
        let import = || -> Result<(), CacheError> {
            source.fetch(store, &content.descriptors())?;
            cachemounts::materialize(store, &content, dest)?;
            Ok(())
        };
        import().map_err(CacheError::at(format!("cache mount {id:?} from {}", source.describe())))?;
        return Ok(Some(content));
    }
    Ok(None)
}

/// What [`export`] sent.
#[derive(Debug, Clone, Default)]
pub struct Exported {
    pub records: usize,
    pub mounts: usize,
    /// Mounts left out, and why (too big, unreadable).
    pub skipped: Vec<String>,
}

/// Writes the cache of a build to `to`: the records of the target stage's steps (`mode=min`)
/// or of every step (`mode=max`), and with `cache-mounts=true` the build's cache mounts.
/// Blobs of records that came from a `--cache-from` source and were never needed are fetched
/// from it first, so the export is whole.
pub fn export(
    store: &Store,
    out: &crate::BuildOutput,
    to: &CacheTo,
    client: &registry::Client,
    sources: &crate::CacheSources,
) -> Result<Exported, CacheError> {
    let keys: Vec<Digest> = out
        .keys
        .iter()
        .filter(|(stage, _)| to.mode == ExportMode::Max || *stage == out.target)
        .map(|(_, k)| k.clone())
        .collect();
    let write = || -> Result<Exported, CacheError> {
        // The solver wrote it into the image config (`BuildOptions::inline_cache`), mounts
        // captured and skipped ones warned about: only say what went.
        if to.target == CacheTarget::Inline {
            let config = store.read_blob(&out.image.config_digest)?;
            let inline = InlineCache::read(&out.image.manifest, &config)?;
            return Ok(Exported {
                records: inline.records.len(),
                mounts: inline.mounts.len(),
                skipped: Vec::new(),
            });
        }
        let mut index = CacheIndex::collect(store, &keys)?;
        let missing: Vec<Descriptor> =
            index.layers().iter().filter(|l| !store.has_blob(&l.digest)).map(Layer::descriptor).collect();
        if !missing.is_empty() {
            let mut fetched = Err(CacheError::Unusable("no --cache-from source has them".into()));
            for source in &sources.0 {
                fetched = source.fetch(store, &missing);
                if fetched.is_ok() {
                    break;
                }
            }
            fetched?;
        }
        let mut exported = Exported { records: index.records.len(), ..Default::default() };
        if to.cache_mounts {
            let (mounts, skipped) = gather_mounts(store, &out.cache_mounts, to.mounts_max_size, sources);
            index.mounts = mounts;
            exported.skipped = skipped;
            exported.mounts = index.mounts.len();
        }
        match &to.target {
            CacheTarget::Local { dest } => {
                export_local(store, &index, dest)?;
            }
            CacheTarget::Inline => {}
            CacheTarget::S3(spec) => export_s3(store, &index, spec)?,
            CacheTarget::Registry { reference } => {
                let r: ImageRef = reference.parse().map_err(CacheError::Reference)?;
                let json = index.to_json();
                let index_digest = store.write_blob(&json)?;
                let manifest = index.manifest(&index_digest, json.len() as u64);
                let bytes = serde_json::to_vec(&manifest)
                    .map_err(|source| CacheError::Json { what: "manifest", source })?;
                client.push_artifact(store, &bytes, &manifest, &r)?;
            }
        }
        Ok(exported)
    };
    write().map_err(CacheError::at(format!("--cache-to {}", to.describe())))
}

/// The content of the cache mounts `ids` for an export, their blobs in the store, and the
/// mounts left out with why. A mount this store never made (every step that uses it was a
/// cache hit) is passed on from the `--cache-from` source that has it, so a farm's second
/// builder re-exports what it got.
fn gather_mounts(
    store: &Store,
    ids: &[String],
    max_size: Option<u64>,
    sources: &crate::CacheSources,
) -> (BTreeMap<String, MountContent>, Vec<String>) {
    let mut mounts = BTreeMap::new();
    let mut skipped = Vec::new();
    for id in ids {
        match capture_mount(store, id, max_size) {
            Ok(Captured::Content(content)) => {
                mounts.insert(id.clone(), content);
            }
            Ok(Captured::TooBig(size)) => skipped.push(format!(
                "cache mount {id:?}: {size} bytes, bigger than cache-mounts-max-size={}",
                max_size.unwrap_or_default()
            )),
            Ok(Captured::Missing) => {
                let passed = sources.0.iter().find_map(|source| {
                    let content = source.mount(id)?;
                    source.fetch(store, &content.descriptors()).ok().map(|()| content)
                });
                mounts.extend(passed.map(|c| (id.clone(), c)));
            }
            Err(e) => skipped.push(format!("cache mount {id:?}: {}", hostutil::errors::one_line(&e))),
        }
    }
    (mounts, skipped)
}

/// What [`capture_mount`] found.
enum Captured {
    Content(MountContent),
    /// The store has no such mount.
    Missing,
    /// Bigger than the cap: its size.
    TooBig(u64),
}

/// The content of cache mount `id` (its `shared` directory, read under a shared lock so no
/// `sharing=locked` step writes it meanwhile), its blobs in the store.
fn capture_mount(store: &Store, id: &str, max_size: Option<u64>) -> Result<Captured, CacheError> {
    use nix::fcntl::{Flock, FlockArg};
    let root = cachemounts::mount_root(store, id);
    let dir = root.join("shared");
    if !dir.is_dir() {
        return Ok(Captured::Missing);
    }
    let lock_path = root.join("shared.lock");
    let file = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_at(&lock_path))?;
    let _lock = Flock::lock(file, FlockArg::LockShared)
        .map_err(|(_, e)| CacheError::Io { path: lock_path.clone(), source: e.into() })?;
    if let Some(max) = max_size {
        let size = cachemounts::tree_bytes(&dir);
        if size > max {
            return Ok(Captured::TooBig(size));
        }
    }
    let previous = cachemounts::previous(&root);
    let (content, _) = cachemounts::capture(store, &dir, previous.as_ref())?;
    // Remembered even if the upload then fails: its packs are in the store, and kept packs
    // are made again from the files when they are not.
    cachemounts::remember(&root, &content)?;
    Ok(Captured::Content(content))
}

/// `--cache-to type=local,dest=DIR`: writes `index` and its blobs as an OCI layout at `dir`
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
    for blob in index.blobs() {
        let path = blobs.join(blob.digest.hex());
        if path.exists() {
            continue;
        }
        let tmp = blobs.join(format!(".{}.tmp", blob.digest.hex()));
        let mut src = store.open_blob(&blob.digest)?;
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
        let to = |target, mode, cache_mounts, mounts_max_size| CacheTo {
            target,
            mode,
            cache_mounts,
            mounts_max_size,
        };
        assert_eq!(
            CacheTo::parse("type=local,dest=/c,mode=max").unwrap(),
            to(CacheTarget::Local { dest: "/c".into() }, ExportMode::Max, false, None)
        );
        assert_eq!(
            CacheTo::parse("type=registry,ref=127.0.0.1:5000/c:1,cache-mounts=true,cache-mounts-max-size=1g")
                .unwrap(),
            to(
                CacheTarget::Registry { reference: "127.0.0.1:5000/c:1".into() },
                ExportMode::Min,
                true,
                Some(1 << 30)
            )
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
            "type=local,dest=/x,cache-mounts=maybe",
            "type=local,dest=/x,cache-mounts-max-size=big",
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
