//! The store on disk: blobs by digest, the tag table, image records, the build-cache index.
//!
//! Every object is written under `tmp/` and renamed into place, so a reader never sees half an
//! object and a crash leaves at worst an orphan in `tmp/` (never a half object where readers
//! look). `tmp/` is not cleared on open, because other rbuild processes may be using it; garbage
//! collection removes old orphans.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::oci::{self, Image, ImageConfig, Layer, Manifest, Platform};
use crate::{Digest, HashingWriter, ImageRef};

/// A handle on a store directory. Cheap to clone; several processes may open one store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An exclusive lock on one named table or object, held until dropped.
pub struct LockGuard(#[allow(dead_code)] Flock<File>);

/// A build-cache record: the state of the image after a step whose cache key it is filed under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    pub layers: Vec<Layer>,
    pub config: ImageConfig,
    /// The `--cache-from` source (as `CacheSource::describe` names it) this record was found
    /// in, when it came from one: its layer blobs are fetched from there when a build first
    /// needs their content, so until then they may be missing. Never exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl CacheRecord {
    pub fn new(layers: Vec<Layer>, config: ImageConfig) -> CacheRecord {
        CacheRecord { layers, config, source: None }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct TagTable {
    /// `name:tag` -> manifest digest, sorted so the file diffs well.
    images: BTreeMap<String, Digest>,
    /// Images kept without a name (Docker's dangling `<none>:<none>` images): those whose last
    /// tag moved to another image, and builds without `-t`. `image prune` removes them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    dangling: BTreeSet<Digest>,
    /// `name:tag` -> platform -> manifest digest: another platform's image of a name, pulled
    /// for a build or a container of that platform ([`Store::pin_platform`]) without moving
    /// the name off the image it points at. Dropped with the name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    platforms: BTreeMap<String, BTreeMap<String, Digest>>,
}

/// Docker's manifest list, the Docker twin of an OCI image index.
const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest blob: an image manifest or an image index.
enum Parsed {
    Manifest(Manifest),
    Index(oci::Index),
}

/// Whether a parsed manifest blob is an image index (or Docker manifest list): by its
/// `mediaType`, or, without one, by having `manifests` and no `config`.
fn is_index(value: &serde_json::Value) -> bool {
    match value.get("mediaType").and_then(|m| m.as_str()) {
        Some(t) => t == oci::MEDIA_TYPE_INDEX || t == MEDIA_TYPE_DOCKER_MANIFEST_LIST,
        None => value.get("manifests").is_some() && value.get("config").is_none(),
    }
}

impl oci::Index {
    /// The manifest for `want`: same os and architecture; the variant must match when one is
    /// asked for (arm64's `v8` is the default), else one without a variant is preferred.
    pub fn manifest_for(&self, want: &Platform) -> Option<&oci::Descriptor> {
        let norm = oci::normalized_variant;
        let want_variant = norm(&want.architecture, want.variant.as_deref());
        let candidates: Vec<&oci::Descriptor> = self
            .manifests
            .iter()
            .filter(|d| {
                d.platform.as_ref().is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
            })
            .collect();
        let variant = |d: &oci::Descriptor| {
            d.platform.as_ref().and_then(|p| norm(&p.architecture, p.variant.as_deref()))
        };
        match want_variant {
            Some(v) => candidates.into_iter().find(|d| variant(d).as_deref() == Some(v.as_str())),
            None => candidates.iter().find(|d| variant(d).is_none()).or(candidates.first()).copied(),
        }
    }

    /// The platforms the index lists, `os/arch[/variant]` comma-separated ("no platforms").
    pub fn platforms(&self) -> String {
        let list: Vec<String> =
            self.manifests.iter().filter_map(|d| d.platform.as_ref()).map(Platform::to_string).collect();
        if list.is_empty() { "no platforms".to_string() } else { list.join(", ") }
    }
}

/// `os/arch[/variant]`, as `--platform` takes it.
impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.variant {
            Some(v) => write!(f, "{}/{}/{v}", self.os, self.architecture),
            None => write!(f, "{}/{}", self.os, self.architecture),
        }
    }
}

impl TagTable {
    fn is_tagged(&self, digest: &Digest) -> bool {
        self.images.values().any(|d| d == digest)
    }
}

/// One image of the store as `rbuild images` lists it: its manifest digest and every name
/// that points at it (none for a dangling image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    pub digest: Digest,
    /// `name:tag` keys, sorted.
    pub tags: Vec<String>,
}

/// What [`Store::remove_image`] or [`Store::prune_images`] did to one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedImage {
    pub digest: Digest,
    /// The names taken off it.
    pub untagged: Vec<String>,
    /// Whether the image itself is gone (no name was left on it). Its blobs are freed by the
    /// next garbage collection ([`Store::gc`]), as far as no other image or cache record uses them.
    pub deleted: bool,
}

/// How much space images and the build cache take, as `rbuild system df` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Images (tagged and dangling).
    pub images: usize,
    /// Bytes of the blobs (manifests, configs, layers) of all images, each counted once.
    pub image_bytes: u64,
    /// Of those, bytes that only images not in use reference.
    pub image_reclaimable: u64,
    pub images_active: usize,
    /// Build-cache records.
    pub cache_records: usize,
    /// Bytes of the records and of the layer blobs only the build cache references.
    pub cache_bytes: u64,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    ///
    /// In a user namespace (rootless) the store records the namespace's id maps in `idmap` and
    /// refuses to be opened under other maps, or by real root: a file owned by container uid 1000
    /// is a different host uid under another mapping, and a store made in a user namespace marks
    /// opaque directories with `user.overlay.opaque`, which real root's overlays ignore. A new
    /// rootless store is private to its user (mode 0700), as podman's is.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into() };
        let userns = crate::userns::in_userns();
        let fresh = userns && fs::symlink_metadata(&store.root).is_err();
        for dir in ["blobs/sha256", "layers", "snapshots", "cache", "locks", "tmp"] {
            let p = store.root.join(dir);
            fs::create_dir_all(&p).at(&p)?;
        }
        if fresh {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&store.root, fs::Permissions::from_mode(0o700)).at(&store.root)?;
        }
        store.check_id_mapping(userns)?;
        Ok(store)
    }

    /// See [`Store::open`]: compares (or, for a new rootless store, writes) `idmap`.
    fn check_id_mapping(&self, userns: bool) -> Result<()> {
        let path = self.root.join("idmap");
        let recorded = match fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        let err = |reason: String| Err(Error::IdMapping { path: self.root.clone(), reason });
        if !userns {
            return match recorded {
                None => Ok(()),
                Some(text) => err(format!(
                    "it was made by rootless rbuild in a user namespace ({}), and cannot be used outside \
                     one: choose another --root",
                    text.trim().replace('\n', "; ")
                )),
            };
        }
        let map = |file: &str| -> Result<String> {
            let p = Path::new("/proc/self").join(file);
            let text = fs::read_to_string(&p).at(&p)?;
            Ok(text
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(", "))
        };
        let current = format!("uid_map: {}\ngid_map: {}\n", map("uid_map")?, map("gid_map")?);
        match recorded {
            Some(text) if text == current => Ok(()),
            Some(text) => err(format!(
                "it was made with the id mapping ({}), and rbuild now runs with ({}): did /etc/subuid or \
                 /etc/subgid change? Its files would belong to the wrong users: remove it (as root, or with \
                 the old mapping: `unshare --map-root-user --map-auto rm -rf {}`) or choose another --root",
                text.trim().replace('\n', "; "),
                current.trim().replace('\n', "; "),
                self.root.display()
            )),
            None => {
                let mut tmp = self.temp_file()?;
                tmp.write_all(current.as_bytes()).at(tmp.path())?;
                tmp.persist(&path).map_err(|e| Error::Io { path: path.clone(), source: e.error })?;
                Ok(())
            }
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// A fresh directory under `tmp/`, removed when the returned guard is dropped.
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir> {
        let tmp = self.root.join("tmp");
        tempfile::Builder::new().prefix(prefix).tempdir_in(&tmp).at(&tmp)
    }

    /// A fresh file under `tmp/`, to be renamed into place or dropped.
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        let tmp = self.root.join("tmp");
        tempfile::Builder::new().prefix("ingest-").tempfile_in(&tmp).at(&tmp)
    }

    /// Takes the lock `locks/<name>.lock`, waiting for other processes that hold it.
    pub fn lock(&self, name: &str) -> Result<LockGuard> {
        let path = self.root.join("locks").join(format!("{name}.lock"));
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path).at(&path)?;
        let lock = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::Io { path: path.clone(), source: io::Error::from(e) })?;
        Ok(LockGuard(lock))
    }

    /// Stores `data` as a blob and returns its digest.
    pub fn write_blob(&self, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(data);
        if !self.keep_blob(&digest) {
            let mut tmp = self.temp_file()?;
            tmp.write_all(data).at(tmp.path())?;
            self.commit_blob(tmp, &digest)?;
        }
        Ok(digest)
    }

    /// Streams `reader` into a blob, verifying it against `expected` when given. Nothing is
    /// stored when the content does not match.
    pub fn ingest_blob(&self, reader: impl Read, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let tmp = self.temp_file()?;
        let path = tmp.path().to_path_buf();
        let mut w = HashingWriter::new(io::BufWriter::new(tmp));
        let mut reader = reader;
        io::copy(&mut reader, &mut w).at(&path)?;
        let (buf, digest, len) = w.finish();
        let tmp = buf.into_inner().map_err(|e| Error::Io { path: path.clone(), source: e.into_error() })?;
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(Error::DigestMismatch { expected: expected.clone(), actual: digest });
        }
        if !self.keep_blob(&digest) {
            self.commit_blob(tmp, &digest)?;
        }
        Ok((digest, len))
    }

    /// Moves a fully written temp file to its place as blob `digest`.
    pub fn commit_blob(&self, tmp: tempfile::NamedTempFile, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        tmp.as_file().sync_data().at(tmp.path())?;
        tmp.persist(&dest).map_err(|e| Error::Io { path: dest.clone(), source: e.error })?;
        Ok(())
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        match fs::read(&path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::BlobNotFound(digest.clone())),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        match File::open(&path) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::BlobNotFound(digest.clone())),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, digest: &Digest, what: &'static str) -> Result<T> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            what,
            path: self.blob_path(digest),
            reason: e.to_string(),
        })
    }

    /// Writes the config and manifest of an image whose layers are already stored, and returns
    /// the manifest's digest (the image's identity).
    pub fn put_image(&self, config: &ImageConfig, layers: &[Layer]) -> Result<Image> {
        self.put_image_annotated(config, layers, BTreeMap::new())
    }

    /// [`Store::put_image`] with `annotations` on the manifest (`build --annotation`).
    pub fn put_image_annotated(
        &self,
        config: &ImageConfig,
        layers: &[Layer],
        annotations: BTreeMap<String, String>,
    ) -> Result<Image> {
        self.put_image_extra(config, layers, annotations, &BTreeMap::new())
    }

    /// [`Store::put_image_annotated`] with top-level fields of the config that [`ImageConfig`]
    /// does not model (an inline build cache). Without any, the config's bytes are exactly
    /// `config`'s serialization.
    pub fn put_image_extra(
        &self,
        config: &ImageConfig,
        layers: &[Layer],
        annotations: BTreeMap<String, String>,
        extra: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Image> {
        let config_bytes = if extra.is_empty() {
            serde_json::to_vec(config).expect("image config serializes")
        } else {
            let mut value = serde_json::to_value(config).expect("image config serializes");
            if let Some(map) = value.as_object_mut() {
                map.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            serde_json::to_vec(&value).expect("image config serializes")
        };
        let config_digest = self.write_blob(&config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_TYPE_MANIFEST.to_string()),
            config: oci::Descriptor {
                media_type: oci::MEDIA_TYPE_CONFIG.to_string(),
                digest: config_digest.clone(),
                size: config_bytes.len() as u64,
                annotations: BTreeMap::new(),
                platform: None,
            },
            layers: layers.iter().map(Layer::descriptor).collect(),
            annotations,
        };
        let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serializes");
        let digest = self.write_blob(&manifest_bytes)?;
        Ok(Image { digest, manifest, config: config.clone(), config_digest })
    }

    /// Reads the image `digest`. A tag may point at an image index (a multi-platform image,
    /// [`Store::put_index`]): then the image is the host platform's, as [`Store::image_for`]
    /// picks it, and its `digest` is that platform's manifest, not the index.
    pub fn image(&self, digest: &Digest) -> Result<Image> {
        self.image_for(digest, &Platform::host())
    }

    /// Reads the image `digest`; if `digest` is an image index, the image in it for `platform`
    /// ([`oci::Index::manifest_for`]), or [`Error::NoMatchingPlatform`].
    pub fn image_for(&self, digest: &Digest, platform: &Platform) -> Result<Image> {
        let mut digest = digest.clone();
        // An index may list other indexes; a few levels are plenty (and stop a cycle).
        for _ in 0..4 {
            let manifest = match self.read_manifest_or_index(&digest)? {
                Parsed::Manifest(m) => m,
                Parsed::Index(index) => {
                    let chosen = index.manifest_for(platform).ok_or_else(|| Error::NoMatchingPlatform {
                        digest: digest.clone(),
                        wanted: platform.to_string(),
                        available: index.platforms(),
                    })?;
                    digest = chosen.digest.clone();
                    continue;
                }
            };
            let config: ImageConfig = self.read_json(&manifest.config.digest, "image config")?;
            if config.rootfs.diff_ids.len() != manifest.layers.len() {
                return Err(Error::Corrupt {
                    what: "image",
                    path: self.blob_path(&digest),
                    reason: format!(
                        "the manifest lists {} layers but the config {} diff ids",
                        manifest.layers.len(),
                        config.rootfs.diff_ids.len()
                    ),
                });
            }
            return Ok(Image { config_digest: manifest.config.digest.clone(), digest, manifest, config });
        }
        Err(Error::Corrupt {
            what: "image index",
            path: self.blob_path(&digest),
            reason: "indexes nest more than 4 deep".to_string(),
        })
    }

    /// [`Store::image`], or for an index without the host's platform its first image in the
    /// store: what `images` and `inspect` describe a multi-platform image by.
    pub fn image_or_any(&self, digest: &Digest) -> Result<Image> {
        match self.image(digest) {
            Err(e @ Error::NoMatchingPlatform { .. }) => {
                let index = self.index(digest)?.ok_or(e)?;
                let first =
                    index.manifests.iter().filter(|d| d.platform.is_some() && self.has_blob(&d.digest));
                first.map(|d| self.image(&d.digest)).find_map(Result::ok).ok_or_else(|| {
                    Error::NoMatchingPlatform {
                        digest: digest.clone(),
                        wanted: Platform::host().to_string(),
                        available: index.platforms(),
                    }
                })
            }
            other => other,
        }
    }

    /// The image index `digest`, or `None` when `digest` is an image manifest.
    pub fn index(&self, digest: &Digest) -> Result<Option<oci::Index>> {
        Ok(match self.read_manifest_or_index(digest)? {
            Parsed::Index(index) => Some(index),
            Parsed::Manifest(_) => None,
        })
    }

    /// Stores `bytes`, an image index (OCI) or manifest list (Docker), byte for byte so its
    /// digest is kept, and returns its digest. Everything it lists must be stored already: each
    /// manifest with its config and layers, each nested index (put before). Tag the digest to
    /// make a multi-platform image; [`Store::image`] then picks the host's platform from it.
    pub fn put_index(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        let bad =
            |reason: String| Error::Corrupt { what: "image index", path: self.blob_path(&digest), reason };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("it is not JSON: {e}")))?;
        if !is_index(&value) {
            return Err(bad("it is not an image index or manifest list".to_string()));
        }
        let index: oci::Index = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        for child in &index.manifests {
            let missing =
                |what: &str, d: &Digest| bad(format!("{what} {d} (of {}) is not in the store", child.digest));
            if !self.has_blob(&child.digest) {
                return Err(bad(format!("manifest {} is not in the store", child.digest)));
            }
            if let Parsed::Manifest(m) = self.read_manifest_or_index(&child.digest)? {
                if !self.has_blob(&m.config.digest) {
                    return Err(missing("config", &m.config.digest));
                }
                if let Some(l) = m.layers.iter().find(|l| !self.has_blob(&l.digest)) {
                    return Err(missing("layer", &l.digest));
                }
            }
        }
        self.write_blob(bytes)
    }

    /// Reads blob `digest` as an image manifest or an image index.
    fn read_manifest_or_index(&self, digest: &Digest) -> Result<Parsed> {
        let bytes = self.read_blob(digest)?;
        let corrupt = |what: &'static str, e: serde_json::Error| Error::Corrupt {
            what,
            path: self.blob_path(digest),
            reason: e.to_string(),
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| corrupt("manifest", e))?;
        if is_index(&value) {
            Ok(Parsed::Index(serde_json::from_value(value).map_err(|e| corrupt("image index", e))?))
        } else {
            Ok(Parsed::Manifest(serde_json::from_value(value).map_err(|e| corrupt("manifest", e))?))
        }
    }

    fn tags_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    fn read_tags(&self) -> Result<TagTable> {
        let path = self.tags_path();
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Corrupt {
                what: "tag table",
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(TagTable::default()),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<()> {
        let mut tmp = self.temp_file()?;
        tmp.write_all(data).at(tmp.path())?;
        tmp.as_file().sync_data().at(tmp.path())?;
        tmp.persist(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e.error })?;
        Ok(())
    }

    fn write_tags(&self, table: &TagTable) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(table).expect("tag table serializes");
        self.write_atomic(&self.tags_path(), &bytes)
    }

    /// Points `reference` at the image `digest` as [`Store::set_tag`] does, and records docker's
    /// `tag` event (`docker tag`, a build's `-t`, `import` and `commit` with a name).
    pub fn tag(&self, reference: &ImageRef, digest: &Digest) -> Result<()> {
        self.set_tag(reference, digest)?;
        crate::events::image(self.root(), "tag", digest.as_str(), &reference.to_string());
        Ok(())
    }

    /// Points `reference` at the image `digest`, replacing what it pointed at before. An image
    /// that loses its last name this way stays, as a dangling image (as in Docker). No event:
    /// pulls and loads name what they bring, and dockerd reports them as `pull` or `load` alone.
    pub fn set_tag(&self, reference: &ImageRef, digest: &Digest) -> Result<()> {
        let _lock = self.lock("images")?;
        let mut table = self.read_tags()?;
        let old = table.images.insert(reference.key(), digest.clone());
        // Other platforms' images kept for the name belonged to what it pointed at before.
        if old.as_ref().is_some_and(|o| o != digest) {
            table.platforms.remove(&reference.key());
        }
        table.dangling.remove(digest);
        if let Some(old) = old
            && old != *digest
            && !table.is_tagged(&old)
        {
            table.dangling.insert(old);
        }
        self.write_tags(&table)
    }

    /// Removes the tag `reference`; returns the digest it pointed at, if any. The image is not
    /// kept as dangling: an image without names is garbage for [`Store::gc`].
    pub fn untag(&self, reference: &ImageRef) -> Result<Option<Digest>> {
        let _lock = self.lock("images")?;
        let mut table = self.read_tags()?;
        let old = table.images.remove(&reference.key());
        let pins = table.platforms.remove(&reference.key());
        if old.is_some() || pins.is_some() {
            self.write_tags(&table)?;
        }
        Ok(old)
    }

    /// Removes `digest` from the dangling images if it is still one (no name took it since);
    /// says whether it did.
    pub(crate) fn drop_dangling(&self, digest: &Digest) -> Result<bool> {
        let _lock = self.lock("images")?;
        let mut table = self.read_tags()?;
        if table.is_tagged(digest) || !table.dangling.remove(digest) {
            return Ok(false);
        }
        self.write_tags(&table)?;
        Ok(true)
    }

    /// Keeps the image `digest` without a name (a build without `-t`), unless it has one.
    pub fn keep_dangling(&self, digest: &Digest) -> Result<()> {
        let _lock = self.lock("images")?;
        let mut table = self.read_tags()?;
        if table.is_tagged(digest) || !table.dangling.insert(digest.clone()) {
            return Ok(());
        }
        self.write_tags(&table)
    }

    /// Every tag in the store, sorted by name.
    pub fn tags(&self) -> Result<Vec<(String, Digest)>> {
        Ok(self.read_tags()?.images.into_iter().collect())
    }

    /// The dangling images (kept without a name), sorted by digest.
    pub fn dangling_images(&self) -> Result<Vec<Digest>> {
        Ok(self.read_tags()?.dangling.into_iter().collect())
    }

    /// The images of other platforms kept for names ([`Store::pin_platform`]), for the
    /// garbage collector.
    pub fn platform_images(&self) -> Result<Vec<Digest>> {
        Ok(self.read_tags()?.platforms.into_values().flat_map(BTreeMap::into_values).collect())
    }

    /// Records `digest` as `reference`'s image for `platform`, where the name itself points at
    /// another platform's image (a build for several platforms pulled the others).
    pub fn pin_platform(&self, reference: &ImageRef, platform: &Platform, digest: &Digest) -> Result<()> {
        let _lock = self.lock("images")?;
        let mut table = self.read_tags()?;
        table.platforms.entry(reference.key()).or_default().insert(platform.to_string(), digest.clone());
        self.write_tags(&table)
    }

    /// `name`'s image for `platform`: from the index it points at, the image itself when it
    /// is that platform's, or the image kept for that platform ([`Store::pin_platform`]).
    /// [`Error::NoMatchingPlatform`] when the store has none of these (a pull for the platform
    /// may bring it).
    pub fn resolve_for(&self, name: &str, platform: &Platform) -> Result<Image> {
        if let Ok(r) = name.parse::<ImageRef>()
            && r.digest().is_none()
            && let Some(pinned) =
                self.read_tags()?.platforms.get(&r.key()).and_then(|p| p.get(&platform.to_string()))
            && self.has_blob(pinned)
            && let Ok(image) = self.image(pinned)
        {
            return Ok(image);
        }
        let digest = self.lookup(name)?;
        if self.index(&digest)?.is_some() {
            return self.image_for(&digest, platform);
        }
        let image = self.image(&digest)?;
        let c = &image.config;
        if platform.matches(&c.os, &c.architecture, c.variant.as_deref()) {
            return Ok(image);
        }
        let theirs =
            Platform { architecture: c.architecture.clone(), os: c.os.clone(), variant: c.variant.clone() };
        Err(Error::NoMatchingPlatform { digest, wanted: platform.to_string(), available: theirs.to_string() })
    }

    /// Every image of the store, with its names: tagged images in the order of their first
    /// name, then dangling ones.
    pub fn list_images(&self) -> Result<Vec<ImageEntry>> {
        let table = self.read_tags()?;
        let mut out: Vec<ImageEntry> = Vec::new();
        for (key, digest) in &table.images {
            match out.iter_mut().find(|e| e.digest == *digest) {
                Some(e) => e.tags.push(key.clone()),
                None => out.push(ImageEntry { digest: digest.clone(), tags: vec![key.clone()] }),
            }
        }
        for digest in &table.dangling {
            if !out.iter().any(|e| e.digest == *digest) {
                out.push(ImageEntry { digest: digest.clone(), tags: Vec::new() });
            }
        }
        Ok(out)
    }

    /// The names that point at `digest`, sorted.
    pub fn tags_of(&self, digest: &Digest) -> Result<Vec<String>> {
        let table = self.read_tags()?;
        Ok(table.images.iter().filter(|(_, d)| *d == digest).map(|(k, _)| k.clone()).collect())
    }

    /// Removes the image `digest`: every name that points at it and its dangling mark. The
    /// blobs go with the next [`Store::gc`] unless another image or a cache record uses them.
    pub fn remove_image(&self, digest: &Digest) -> Result<RemovedImage> {
        let _lock = self.lock("images")?;
        let mut table = self.read_tags()?;
        let untagged: Vec<String> =
            table.images.iter().filter(|(_, d)| *d == digest).map(|(k, _)| k.clone()).collect();
        for k in &untagged {
            table.images.remove(k);
        }
        let was_dangling = table.dangling.remove(digest);
        if !untagged.is_empty() || was_dangling {
            self.write_tags(&table)?;
        }
        Ok(RemovedImage { digest: digest.clone(), untagged, deleted: true })
    }

    /// Removes the dangling images, or with `all` every image, except those in `in_use` (the
    /// images containers use). Blobs are freed by a [`Store::gc`] afterwards.
    pub fn prune_images(&self, all: bool, in_use: &BTreeSet<Digest>) -> Result<Vec<RemovedImage>> {
        let _lock = self.lock("images")?;
        let mut table = self.read_tags()?;
        let mut removed: Vec<RemovedImage> = Vec::new();
        let dangling: Vec<Digest> = table.dangling.iter().filter(|d| !in_use.contains(*d)).cloned().collect();
        for digest in dangling {
            table.dangling.remove(&digest);
            removed.push(RemovedImage { digest, untagged: Vec::new(), deleted: true });
        }
        if all {
            let keys: Vec<(String, Digest)> = table
                .images
                .iter()
                .filter(|(_, d)| !in_use.contains(*d))
                .map(|(k, d)| (k.clone(), d.clone()))
                .collect();
            for (key, digest) in keys {
                table.images.remove(&key);
                match removed.iter_mut().find(|r| r.digest == digest) {
                    Some(r) => r.untagged.push(key),
                    None => removed.push(RemovedImage { digest, untagged: vec![key], deleted: true }),
                }
            }
        }
        if !removed.is_empty() {
            self.write_tags(&table)?;
        }
        // As dockerd's prune: an `untag` per name, a `delete` per image, by ID.
        for r in &removed {
            let id = r.digest.as_str();
            for _ in &r.untagged {
                crate::events::image(self.root(), "untag", id, id);
            }
            crate::events::image(self.root(), "delete", id, id);
        }
        Ok(removed)
    }

    /// The bytes of an image's blobs as stored: manifest, config and (compressed) layers. This
    /// is what `rbuild images` shows as SIZE (Docker with containerd calls it the content size).
    pub fn image_size(&self, image: &Image) -> u64 {
        let manifest = fs::metadata(self.blob_path(&image.digest)).map_or(0, |m| m.len());
        manifest + image.manifest.config.size + image.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }

    /// The space images and the build cache take. `in_use` are the images containers use:
    /// their blobs are not reclaimable.
    pub fn disk_usage(&self, in_use: &BTreeSet<Digest>) -> Result<DiskUsage> {
        let mut usage = DiskUsage::default();
        let mut sizes: BTreeMap<Digest, u64> = BTreeMap::new();
        let mut active_blobs: BTreeSet<Digest> = BTreeSet::new();
        for entry in self.list_images()? {
            // An image whose blobs are gone (a broken store) still counts; `system verify` says why.
            let Ok(image) = self.image(&entry.digest) else {
                usage.images += 1;
                continue;
            };
            usage.images += 1;
            let manifest = fs::metadata(self.blob_path(&image.digest)).map_or(0, |m| m.len());
            let mut blobs = vec![
                (image.digest.clone(), manifest),
                (image.config_digest.clone(), image.manifest.config.size),
            ];
            blobs.extend(image.manifest.layers.iter().map(|l| (l.digest.clone(), l.size)));
            let active = in_use.contains(&image.digest);
            usage.images_active += usize::from(active);
            for (digest, size) in blobs {
                if active {
                    active_blobs.insert(digest.clone());
                }
                sizes.insert(digest, size);
            }
        }
        usage.image_bytes = sizes.values().sum();
        usage.image_reclaimable =
            sizes.iter().filter(|(d, _)| !active_blobs.contains(*d)).map(|(_, s)| s).sum();
        let dir = self.root().join("cache");
        let mut cache_blobs: BTreeMap<Digest, u64> = BTreeMap::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let path = entry.at(&dir)?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Ok(bytes) = fs::read(&path) else { continue };
            usage.cache_records += 1;
            usage.cache_bytes += bytes.len() as u64;
            if let Ok(record) = serde_json::from_slice::<CacheRecord>(&bytes) {
                for l in record.layers {
                    if !sizes.contains_key(&l.digest) {
                        cache_blobs.insert(l.digest, l.size);
                    }
                }
            }
        }
        usage.cache_bytes += cache_blobs.values().sum::<u64>();
        Ok(usage)
    }

    /// Finds an image by reference (`name[:tag]`), by full or abbreviated manifest digest
    /// (`sha256:abc...`, or at least 12 hex characters of the image id as `docker images` shows it).
    /// A name that points at an image index gives the host platform's image ([`Store::image`]).
    pub fn resolve(&self, name: &str) -> Result<Image> {
        self.image(&self.lookup(name)?)
    }

    /// What `name` (as [`Store::resolve`] takes it) points at: an image manifest or an image
    /// index ([`Store::index`] tells which), without picking a platform.
    pub fn lookup(&self, name: &str) -> Result<Digest> {
        let table = self.read_tags()?;
        if let Ok(r) = name.parse::<ImageRef>() {
            if let Some(d) = r.digest() {
                if self.has_blob(d) {
                    return Ok(d.clone());
                }
            } else if let Some(d) = table.images.get(&r.key()) {
                return Ok(d.clone());
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found = table.images.values().chain(&table.dangling).filter(|d| d.hex().starts_with(hex));
            if let Some(d) = found.next() {
                return Ok(d.clone());
            }
            if let Ok(d) = format!("sha256:{hex}").parse::<Digest>()
                && self.has_blob(&d)
            {
                return Ok(d);
            }
        }
        Err(Error::ImageNotFound(name.to_string()))
    }

    fn cache_path(&self, key: &Digest) -> PathBuf {
        self.root.join("cache").join(format!("{}.json", key.hex()))
    }

    /// The build-cache record for `key`, if one was stored and every blob it needs is present.
    /// A hit counts as a use ([`Store::cache_used`]).
    pub fn cache_get(&self, key: &Digest) -> Result<Option<CacheRecord>> {
        let Some((record, true)) = self.cache_get_partial(key)? else { return Ok(None) };
        self.cache_used(key);
        Ok(Some(record))
    }

    /// The record for `key` even if some of its blobs are missing, and whether all are here.
    /// A record from a `--cache-from` source ([`CacheRecord::source`]) is usable that way when
    /// the build can still reach that source. The caller that uses it says so with
    /// [`Store::cache_used`].
    pub fn cache_get_partial(&self, key: &Digest) -> Result<Option<(CacheRecord, bool)>> {
        let path = self.cache_path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        // A record that does not parse is a miss, not an error: the cache is only a cache, and
        // the step can always be run again.
        let Ok(record) = serde_json::from_slice::<CacheRecord>(&bytes) else { return Ok(None) };
        let complete = record.layers.iter().all(|l| self.has_blob(&l.digest));
        Ok(Some((record, complete)))
    }

    /// Marks the record of `key` used now, for [`Store::prune_to`]'s least-recently-used order.
    /// A failure (the record was pruned meanwhile) only makes it look older; the hit stands.
    pub fn cache_used(&self, key: &Digest) {
        crate::gc::touch(&self.cache_path(key));
    }

    pub fn cache_put(&self, key: &Digest, record: &CacheRecord) -> Result<()> {
        let bytes = serde_json::to_vec(record).expect("cache record serializes");
        self.write_atomic(&self.cache_path(key), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_with_wrong_digest_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let wrong = Digest::of(b"other");
        let err = store.ingest_blob(&b"data"[..], Some(&wrong)).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }));
        assert!(!store.has_blob(&Digest::of(b"data")));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn tags_round_trip_and_resolve_by_short_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            rootfs: oci::RootFs { kind: "layers".into(), diff_ids: vec![] },
            ..Default::default()
        };
        let image = store.put_image(&config, &[]).unwrap();
        store.tag(&"demo:v1".parse().unwrap(), &image.digest).unwrap();
        assert_eq!(store.resolve("demo:v1").unwrap().digest, image.digest);
        assert_eq!(store.resolve(image.digest.short()).unwrap().digest, image.digest);
        assert!(matches!(store.resolve("demo:v2"), Err(Error::ImageNotFound(_))));
    }

    fn empty_image(store: &Store, created: &str) -> Image {
        let config = ImageConfig {
            created: Some(created.into()),
            architecture: "amd64".into(),
            os: "linux".into(),
            rootfs: oci::RootFs { kind: "layers".into(), diff_ids: vec![] },
            ..Default::default()
        };
        store.put_image(&config, &[]).unwrap()
    }

    #[test]
    fn retagging_leaves_a_dangling_image_that_prune_removes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b, c) = (empty_image(&store, "1"), empty_image(&store, "2"), empty_image(&store, "3"));
        let app: ImageRef = "app:1".parse().unwrap();
        store.tag(&app, &a.digest).unwrap();
        store.tag(&"other:1".parse().unwrap(), &a.digest).unwrap();
        store.tag(&app, &b.digest).unwrap();
        assert!(store.dangling_images().unwrap().is_empty(), "a still has a name");
        store.tag(&"other:1".parse().unwrap(), &b.digest).unwrap();
        assert_eq!(store.dangling_images().unwrap(), vec![a.digest.clone()]);
        assert_eq!(store.resolve(a.digest.short()).unwrap().digest, a.digest);
        store.keep_dangling(&c.digest).unwrap();
        store.keep_dangling(&b.digest).unwrap();
        let listed = store.list_images().unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(
            listed[0],
            ImageEntry { digest: b.digest.clone(), tags: vec!["app:1".into(), "other:1".into()] }
        );

        let in_use = BTreeSet::from([c.digest.clone()]);
        let removed = store.prune_images(false, &in_use).unwrap();
        assert_eq!(removed, vec![RemovedImage { digest: a.digest.clone(), untagged: vec![], deleted: true }]);
        assert_eq!(store.dangling_images().unwrap(), vec![c.digest.clone()]);
        let removed = store.prune_images(true, &BTreeSet::new()).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(store.list_images().unwrap().is_empty());

        store.tag(&app, &a.digest).unwrap();
        let r = store.remove_image(&a.digest).unwrap();
        assert_eq!(r.untagged, vec!["app:1".to_string()]);
        assert!(store.list_images().unwrap().is_empty());
    }

    /// Another platform's image of a name (a build for that platform pulled it) is found by
    /// `resolve_for` without moving the name, survives GC, and goes when the name moves or goes.
    #[test]
    fn platform_pins_live_and_die_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let host = Platform::host();
        let other = Platform {
            architecture: if host.architecture == "s390x" { "riscv64" } else { "s390x" }.into(),
            os: "linux".into(),
            variant: None,
        };
        let image = |arch: &str, n: &str| {
            let config = ImageConfig {
                architecture: arch.into(),
                os: "linux".into(),
                author: Some(n.into()),
                rootfs: oci::RootFs { kind: "layers".into(), diff_ids: vec![] },
                ..Default::default()
            };
            store.put_image(&config, &[]).unwrap()
        };
        let (native, foreign) = (image(&host.architecture, "1"), image(&other.architecture, "1"));
        let name: ImageRef = "base:1".parse().unwrap();
        store.tag(&name, &native.digest).unwrap();
        let e = store.resolve_for("base:1", &other).unwrap_err();
        assert!(matches!(e, Error::NoMatchingPlatform { .. }), "{e}");
        assert_eq!(store.resolve_for("base:1", &host).unwrap().digest, native.digest);
        store.pin_platform(&name, &other, &foreign.digest).unwrap();
        assert_eq!(store.resolve_for("base:1", &other).unwrap().digest, foreign.digest);
        assert_eq!(store.resolve("base:1").unwrap().digest, native.digest, "the name stays");
        store.gc().unwrap();
        assert!(store.has_blob(&foreign.digest), "a pinned image is a GC root");
        // The name moves: what was pinned for it was the old image's.
        let newer = image(&host.architecture, "2");
        store.tag(&name, &newer.digest).unwrap();
        assert!(store.resolve_for("base:1", &other).is_err());
        store.pin_platform(&name, &other, &foreign.digest).unwrap();
        store.untag(&name).unwrap();
        assert!(store.platform_images().unwrap().is_empty());
    }

    #[test]
    fn a_tag_may_point_at_an_index_and_resolve_picks_the_host_platform() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let host = Platform::host();
        let other = if host.architecture == "s390x" { "riscv64" } else { "s390x" };
        let image = |arch: &str| {
            let config = ImageConfig {
                architecture: arch.into(),
                os: "linux".into(),
                rootfs: oci::RootFs { kind: "layers".into(), diff_ids: vec![] },
                ..Default::default()
            };
            store.put_image(&config, &[]).unwrap()
        };
        let (native, foreign) = (image(&host.architecture), image(other));
        let entry = |image: &Image, arch: &str| {
            let size = store.read_blob(&image.digest).unwrap().len();
            format!(
                r#"{{"mediaType":"{}","digest":"{}","size":{size},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
                oci::MEDIA_TYPE_MANIFEST,
                image.digest
            )
        };
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{},{}]}}"#,
            oci::MEDIA_TYPE_INDEX,
            entry(&foreign, other),
            entry(&native, &host.architecture)
        );
        let digest = store.put_index(index.as_bytes()).unwrap();
        assert_eq!(digest, Digest::of(index.as_bytes()));
        assert_eq!(store.read_blob(&digest).unwrap(), index.as_bytes(), "kept byte for byte");
        store.tag(&"multi:1".parse().unwrap(), &digest).unwrap();

        assert_eq!(store.lookup("multi:1").unwrap(), digest);
        assert_eq!(store.index(&digest).unwrap().unwrap().manifests.len(), 2);
        assert!(store.index(&native.digest).unwrap().is_none());
        assert_eq!(store.resolve("multi:1").unwrap().digest, native.digest);
        let want = Platform { architecture: other.into(), os: "linux".into(), variant: None };
        assert_eq!(store.image_for(&digest, &want).unwrap().config.architecture, other);
        let mips = Platform { architecture: "mips64le".into(), os: "linux".into(), variant: None };
        let err = store.image_for(&digest, &mips).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "image {digest} is a multi-platform index with no linux/mips64le image (it has linux/{other}, {host})"
            )
        );
        // What an index lists must be stored first.
        let missing = index.replace(native.digest.hex(), &"0".repeat(64));
        assert!(matches!(store.put_index(missing.as_bytes()), Err(Error::Corrupt { .. })));
        assert!(!store.has_blob(&Digest::of(missing.as_bytes())));
        assert!(store.put_index(store.read_blob(&native.digest).unwrap().as_slice()).is_err());
        assert!(store.verify().unwrap().problems.is_empty());
    }
}
