//! The store on disk: blobs by digest, the tag table, image records, the build-cache index.
//!
//! Every object is written under `tmp/` and renamed into place, so a reader never sees half an
//! object and a crash leaves at worst an orphan in `tmp/` (never a half object where readers
//! look). `tmp/` is not cleared on open, because other rbuild processes may be using it; garbage
//! collection removes old orphans.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::oci::{self, Image, ImageConfig, Layer, Manifest};
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
}

#[derive(Default, Serialize, Deserialize)]
struct TagTable {
    /// `name:tag` -> manifest digest, sorted so the file diffs well.
    images: BTreeMap<String, Digest>,
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
        let config_bytes = serde_json::to_vec(config).expect("image config serializes");
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
            annotations: BTreeMap::new(),
        };
        let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serializes");
        let digest = self.write_blob(&manifest_bytes)?;
        Ok(Image { digest, manifest, config: config.clone(), config_digest })
    }

    /// Reads the image whose manifest is `digest`.
    pub fn image(&self, digest: &Digest) -> Result<Image> {
        let manifest: Manifest = self.read_json(digest, "manifest")?;
        let config: ImageConfig = self.read_json(&manifest.config.digest, "image config")?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::Corrupt {
                what: "image",
                path: self.blob_path(digest),
                reason: format!(
                    "the manifest lists {} layers but the config {} diff ids",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        Ok(Image { digest: digest.clone(), config_digest: manifest.config.digest.clone(), manifest, config })
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

    /// Points `reference` at the image `digest`, replacing what it pointed at before.
    pub fn tag(&self, reference: &ImageRef, digest: &Digest) -> Result<()> {
        let _lock = self.lock("images")?;
        let mut table = self.read_tags()?;
        table.images.insert(reference.key(), digest.clone());
        let bytes = serde_json::to_vec_pretty(&table).expect("tag table serializes");
        self.write_atomic(&self.tags_path(), &bytes)
    }

    /// Removes the tag `reference`; returns the digest it pointed at, if any.
    pub fn untag(&self, reference: &ImageRef) -> Result<Option<Digest>> {
        let _lock = self.lock("images")?;
        let mut table = self.read_tags()?;
        let old = table.images.remove(&reference.key());
        if old.is_some() {
            let bytes = serde_json::to_vec_pretty(&table).expect("tag table serializes");
            self.write_atomic(&self.tags_path(), &bytes)?;
        }
        Ok(old)
    }

    /// Every tag in the store, sorted by name.
    pub fn tags(&self) -> Result<Vec<(String, Digest)>> {
        Ok(self.read_tags()?.images.into_iter().collect())
    }

    /// Finds an image by reference (`name[:tag]`), by full or abbreviated manifest digest
    /// (`sha256:abc...`, or at least 12 hex characters of the image id as `docker images` shows it).
    pub fn resolve(&self, name: &str) -> Result<Image> {
        let table = self.read_tags()?;
        if let Ok(r) = name.parse::<ImageRef>() {
            if let Some(d) = r.digest() {
                if self.has_blob(d) {
                    return self.image(d);
                }
            } else if let Some(d) = table.images.get(&r.key()) {
                return self.image(d);
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found = table.images.values().filter(|d| d.hex().starts_with(hex));
            if let Some(d) = found.next() {
                return self.image(d);
            }
            if let Ok(d) = format!("sha256:{hex}").parse::<Digest>()
                && self.has_blob(&d)
            {
                return self.image(&d);
            }
        }
        Err(Error::ImageNotFound(name.to_string()))
    }

    fn cache_path(&self, key: &Digest) -> PathBuf {
        self.root.join("cache").join(format!("{}.json", key.hex()))
    }

    /// The build-cache record for `key`, if one was stored and every blob it needs is present.
    pub fn cache_get(&self, key: &Digest) -> Result<Option<CacheRecord>> {
        let path = self.cache_path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        // A record that does not parse or points at missing blobs is a miss, not an error: the
        // cache is only a cache, and the step can always be run again.
        let Ok(record) = serde_json::from_slice::<CacheRecord>(&bytes) else { return Ok(None) };
        if record.layers.iter().all(|l| self.has_blob(&l.digest)) { Ok(Some(record)) } else { Ok(None) }
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
}
