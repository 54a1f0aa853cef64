//! What the store holds, how big it is and when each part was last used: the store's size (the
//! figure `--keep-storage` limits and `system df` totals), and the build-cache records and cache
//! mounts with their last use (`system df -v`, and [`Store::prune_to`]'s LRU order).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{IoContext, Result};
use crate::{CacheRecord, Digest, Store};

/// The directories whose bytes are the store's size ([`Store::size`]).
pub const STORE_SIZE_DIRS: [&str; 5] = ["blobs", "layers", "cache", "snapshots", "tmp"];

/// The directory of the build's cache mounts (`RUN --mount=type=cache`), one `<32 hex>/` each.
pub(crate) const CACHE_MOUNTS: &str = "cache/mounts";

/// A build-cache record as `system df -v` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordUsage {
    /// The cache key (the record's file name).
    pub key: Digest,
    /// The record file and the layer blobs no image and no other record references: what
    /// removing this record alone would free.
    pub bytes: u64,
    /// Whether an image or another record references one of its layer blobs too.
    pub shared: bool,
    /// The record file's mtime: when it was written or last hit ([`Store::cache_get`]).
    pub last_used: SystemTime,
}

/// A cache mount (`RUN --mount=type=cache`) as `system df -v` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountUsage {
    /// `cache/mounts/<dir>/`.
    pub dir: String,
    /// The mount's id as written (the `id` file the solver writes), if known.
    pub id: Option<String>,
    /// Apparent bytes of the whole directory.
    pub bytes: u64,
    /// The mtime of its `last-used` file (touched by each RUN that uses it), else the directory's.
    pub last_used: SystemTime,
}

/// The build cache in detail: records and cache mounts, least recently used first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheUsage {
    pub records: Vec<RecordUsage>,
    pub mounts: Vec<MountUsage>,
}

impl Store {
    /// The store's size: the apparent bytes (`st_size`, what `du -sb --apparent-size` adds up)
    /// of every file, directory and symlink under `blobs/`, `layers/`, `cache/` (records, cache
    /// mounts, the context hash cache), `snapshots/` and `tmp/`, a hard-linked file once, not
    /// crossing mount points. Not in it: the tag table, locks, containers' and volumes' own
    /// directories (`system df` shows those apart).
    pub fn size(&self) -> u64 {
        let mut seen = HashSet::new();
        STORE_SIZE_DIRS.iter().map(|d| apparent_size(&self.root().join(d), &mut seen)).sum()
    }

    /// The build-cache records and cache mounts, each least recently used first.
    pub fn cache_usage(&self) -> Result<CacheUsage> {
        // Who references each blob: images (all of them, by their manifests) and records.
        let mut image_blobs: HashSet<Digest> = HashSet::new();
        for entry in self.list_images()? {
            if let Ok(image) = self.image_or_any(&entry.digest) {
                image_blobs.extend(image.manifest.layers.iter().map(|l| l.digest.clone()));
            }
        }
        let records: Vec<(Digest, PathBuf, Option<CacheRecord>)> = self
            .cache_records()?
            .into_iter()
            .filter_map(|(path, record)| Some((record_key(&path)?, path, record.ok())))
            .collect();
        let mut users: HashMap<&Digest, usize> = HashMap::new();
        for (_, _, record) in &records {
            for l in record.iter().flat_map(|r| &r.layers) {
                *users.entry(&l.digest).or_default() += 1;
            }
        }
        let mut usage = CacheUsage::default();
        for (key, path, record) in &records {
            let Ok(meta) = fs::symlink_metadata(path) else { continue };
            let mut bytes = meta.len();
            let mut shared = false;
            for l in record.iter().flat_map(|r| &r.layers) {
                if image_blobs.contains(&l.digest) || users.get(&l.digest).is_some_and(|n| *n > 1) {
                    shared = true;
                } else {
                    bytes += fs::metadata(self.blob_path(&l.digest)).map_or(0, |m| m.len());
                }
            }
            let last_used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            usage.records.push(RecordUsage { key: key.clone(), bytes, shared, last_used });
        }
        usage.records.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.key.cmp(&b.key)));
        usage.mounts = self.cache_mounts()?;
        Ok(usage)
    }

    /// Every cache mount that holds data, least recently used first.
    pub(crate) fn cache_mounts(&self) -> Result<Vec<MountUsage>> {
        let dir = self.root().join(CACHE_MOUNTS);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(crate::Error::Io { path: dir, source: e }),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.at(&dir)?.path();
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if !meta.is_dir() || mount_data_dirs(&path).is_empty() {
                // An emptied mount keeps its lock files (see Store::prune_to): nothing to list.
                continue;
            }
            let last_used = fs::symlink_metadata(path.join("last-used"))
                .and_then(|m| m.modified())
                .or_else(|_| meta.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let id = fs::read(path.join("id")).ok().map(|b| String::from_utf8_lossy(&b).trim().to_string());
            let bytes = apparent_size(&path, &mut HashSet::new());
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            out.push(MountUsage { dir: name, id, bytes, last_used });
        }
        out.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.dir.cmp(&b.dir)));
        Ok(out)
    }
}

/// The data directories of a cache mount: `shared/` and `private-N/`.
pub(crate) fn mount_data_dirs(mount: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(mount) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            (name == "shared" || name.starts_with("private-")) && !name.ends_with(".lock")
        })
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// The cache key a record file `cache/<hex>.json` is filed under.
pub(crate) fn record_key(path: &Path) -> Option<Digest> {
    let stem = path.file_stem()?.to_str()?;
    format!("sha256:{stem}").parse().ok()
}

/// Apparent bytes under `path` (itself included), as `du -sb --apparent-size` counts them;
/// inodes already in `seen` (hard links) are not counted again. Does not cross mount points.
pub(crate) fn apparent_size(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .same_file_system(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_dir() || m.nlink() <= 1 || seen.insert((m.dev(), m.ino())))
        .map(|m| m.len())
        .sum()
}
