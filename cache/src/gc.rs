//! Garbage collection, build-cache pruning and verification of the store.
//!
//! [`Store::gc`] is a mark and sweep. The roots are every tag (its manifest, or an image index
//! and the manifests it lists, with their configs and layer blobs), every build-cache record
//! (its layer blobs) and every live snapshot (the layer directories it was created over, from
//! its `layers.json`). An unpacked layer directory `layers/<diff-id hex>/` is kept iff a kept
//! layer has that diff id. Everything else in `blobs/sha256/` and `layers/` is deleted, stale
//! snapshots (whose lock no process holds) are removed, and so are `tmp/` entries older than
//! [`TMP_MAX_AGE`]. Read-only views (`tmp/ro-*/`, with their `layers.json`) are live users of
//! layer directories too.
//!
//! # Concurrency
//!
//! Builds never take a store-wide lock, so another rbuild may be building while gc runs. The
//! sweep runs under the `gc` lock (one gc at a time; [`Store::verify`] takes it too), and what
//! a writer has just made is protected by a **grace period**: a blob or layer directory whose
//! mtime is younger than [`GC_GRACE`] is never deleted, referenced or not. That is enough
//! because a build references what it writes right away: a step's layer blob and directory are
//! filed in its build-cache record as soon as the step's commit returns, and an image's config
//! and manifest are tagged right after they are written; nothing holds an unreferenced object
//! for minutes. Writers that find an object already present (a rebuild producing a layer or
//! config that exists as an unreferenced orphan) bump its mtime ([`Store::keep_blob`]), so an
//! orphan that is about to be referenced again is young too. gc deletes a blob by renaming it
//! into `tmp/` first and looking at its mtime again: if a writer bumped it in between, the blob
//! is put back. Layer directories are renamed away under their `layer-<diff id>` lock (the one
//! [`Store::layer_dir`] unpacks under), so a reader never sees half a layer directory; a layer
//! directory that disappears is unpacked again from its blob when next needed.
//!
//! What this does not cover: [`Store::prune_build_cache`] (every record) while a build is
//! using a cache hit it looked up before the prune (its layers may go with the records) — the
//! build then fails or unpacks again; run it when no build runs. [`Store::prune_to`] spares
//! running builds (below).
//!
//! # Size limit ([`Store::prune_to`])
//!
//! Last use: a record's file mtime (written, or bumped by each [`Store::cache_get`] hit), a
//! cache mount's `last-used` file (or its directory's mtime), a dangling image's manifest blob,
//! a layer directory's mtime (bumped by [`Store::lower_dirs`]). Under the `gc` lock, after an
//! ordinary gc pass: (a) records, idle cache mounts and dangling images unused longer than
//! `older_than` go; (b) while [`Store::size`] is over `keep_bytes`, the least recently used of
//! those and of the layer directories no live snapshot, view or container uses go, in one LRU
//! order. Tagged images, other platforms' images of a name and images containers use never go;
//! when they alone exceed the limit the report says so ([`PruneReport::limit_missed`]).
//!
//! **Grace.** The limit must hold right after a build, when the victims are minutes old, so
//! the grace period cannot apply to them. The rule: an object that becomes unreferenced
//! *because this prune removed its last referrer* is deleted at once; every other orphan keeps
//! [`GC_GRACE`]. The blobs' mtimes are recorded before anything is listed; a freed blob is
//! renamed into `tmp/` and put back if its mtime changed meanwhile (a writer found it and
//! bumped it with [`Store::keep_blob`], so it is about to be referenced again). Layer
//! directories are renamed away under their `layer-<diff id>` lock after checking the live
//! snapshots', views' (`tmp/ro-*/layers.json`) and containers' records again; users record
//! their layers *before* [`Store::lower_dirs`] looks the directories up under the same lock,
//! so either the prune sees the record or the user sees the directory gone and unpacks it
//! again from its blob. A cache mount goes only if every lock file in it (`shared.lock`,
//! `private-N.lock`) can be taken exclusively without waiting; its data directories are
//! removed while they are held, its lock files stay.
//!
//! **Running builds** hold a [`Lease`] (`leases/<random>`, flocked, its mtime the build's
//! start) until their image is named: records and dangling images used since the oldest live
//! lease began are not candidates, so a prune beside a build (another build's limit, or
//! `builder prune --keep-storage`) never takes the cache hits and layers it is working with.
//! Layer directories are not leased: one that goes is unpacked again from its blob.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::Deserialize;

use crate::error::{Error, IoContext, Result};
use crate::oci::ImageConfig;
use crate::store::LockGuard;
use crate::usage::{CACHE_MOUNTS, apparent_size, mount_data_dirs};
use crate::{CacheRecord, Digest, Hasher, Store};

/// Blobs and layer directories younger than this are never deleted: a build references what it
/// commits within moments (see the module docs), never minutes later.
pub const GC_GRACE: Duration = Duration::from_secs(10 * 60);

/// `tmp/` entries younger than this may belong to a running process and are left alone.
pub const TMP_MAX_AGE: Duration = Duration::from_secs(60 * 60);

/// The file in a snapshot directory listing the diff ids of the layers it was created over.
pub(crate) const SNAPSHOT_LAYERS: &str = "layers.json";

/// The prefix of a read-only view's directory in `tmp/` ([`Store::mount_readonly`]), which holds
/// its `layers.json` beside the mount point.
pub(crate) const VIEW_PREFIX: &str = "ro-";

/// What [`Store::gc`], [`Store::prune_build_cache`] or [`Store::prune_to`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs: usize,
    pub blob_bytes: u64,
    pub layers: usize,
    pub layer_bytes: u64,
    pub cache_records: usize,
    pub cache_bytes: u64,
    pub snapshots: usize,
    pub snapshot_bytes: u64,
    pub tmp_entries: usize,
    pub tmp_bytes: u64,
    /// Dangling images removed (their blobs are counted in `blobs`).
    pub images: usize,
    /// Cache mounts emptied, and their bytes.
    pub cache_mounts: usize,
    pub mount_bytes: u64,
    /// [`Store::prune_to`] with a size limit: the store's size ([`Store::size`]) when it
    /// finished, and whether that is within the limit.
    pub size_after: Option<u64>,
    /// The limit could not be met: what is left is tagged images, images containers use,
    /// orphans younger than [`GC_GRACE`], busy cache mounts and layers in use.
    pub limit_missed: Option<u64>,
}

impl PruneReport {
    /// Everything freed, in bytes (file sizes, not blocks).
    pub fn total_bytes(&self) -> u64 {
        self.blob_bytes
            + self.layer_bytes
            + self.cache_bytes
            + self.snapshot_bytes
            + self.tmp_bytes
            + self.mount_bytes
    }

    /// The warning to print when the limit could not be met: `the store is 312.4 MB, over its
    /// 200.0 MB limit, with only tagged and in-use images, ... left`.
    pub fn limit_warning(&self) -> Option<String> {
        let limit = self.limit_missed?;
        Some(format!(
            "the store is {}, over its {} limit: what is left is tagged images, images containers use, \
             busy cache mounts, layers in use and objects younger than {} minutes",
            human_bytes(self.size_after.unwrap_or(0)),
            human_bytes(limit),
            GC_GRACE.as_secs() / 60
        ))
    }
}

impl fmt::Display for PruneReport {
    /// `Deleted 12 blobs, 3 layers, 40 cache records (104.2 MB)`, with snapshots and temp
    /// entries named too when there were any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "Deleted {}, {}, {}",
            plural(self.blobs, "blob", "blobs"),
            plural(self.layers, "layer", "layers"),
            plural(self.cache_records, "cache record", "cache records"),
        )?;
        if self.images > 0 {
            write!(f, ", {}", plural(self.images, "dangling image", "dangling images"))?;
        }
        if self.cache_mounts > 0 {
            write!(f, ", {}", plural(self.cache_mounts, "cache mount", "cache mounts"))?;
        }
        if self.snapshots > 0 {
            write!(f, ", {}", plural(self.snapshots, "snapshot", "snapshots"))?;
        }
        if self.tmp_entries > 0 {
            write!(f, ", {}", plural(self.tmp_entries, "temp entry", "temp entries"))?;
        }
        write!(f, " ({})", human_bytes(self.total_bytes()))
    }
}

/// What [`Store::verify`] found; an empty `problems` means the store is sound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub blobs: usize,
    pub images: usize,
    pub cache_records: usize,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Checked {} blobs, {} images, {} cache records: ",
            self.blobs, self.images, self.cache_records
        )?;
        if self.problems.is_empty() {
            write!(f, "no problems")
        } else {
            write!(f, "{} problems", self.problems.len())?;
            for p in &self.problems {
                write!(f, "\n  {p}")?;
            }
            Ok(())
        }
    }
}

/// `104.2 MB`: decimal units, as `docker system prune` prints them.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The parts of a manifest or an index that reference other blobs; any JSON parses as this.
#[derive(Deserialize, Default)]
struct Refs {
    #[serde(default)]
    config: Option<Ref>,
    #[serde(default)]
    layers: Vec<Ref>,
    #[serde(default)]
    manifests: Vec<Ref>,
}

#[derive(Deserialize)]
struct Ref {
    digest: Digest,
}

/// The blobs and layer directories to keep.
#[derive(Default)]
struct Marks {
    blobs: HashSet<String>,
    diff_ids: HashSet<String>,
    /// A live snapshot without `layers.json` (made by an older rbuild): its lowers are
    /// unknown, so no layer directory may go.
    all_layer_dirs: bool,
}

impl Store {
    /// Removes every build-cache record (and the context hash cache `cache/context/`), then
    /// runs [`Store::gc`] so the layers only the cache referenced go too. Tagged images stay.
    pub fn prune_build_cache(&self) -> Result<PruneReport> {
        let lock = self.lock("gc")?;
        let mut report = PruneReport::default();
        let dir = self.root().join("cache");
        for entry in fs::read_dir(&dir).at(&dir)? {
            let path = entry.at(&dir)?.path();
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if meta.is_file() && path.extension().is_some_and(|e| e == "json") {
                match fs::remove_file(&path) {
                    Ok(()) => {
                        report.cache_records += 1;
                        report.cache_bytes += meta.len();
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::Io { path, source: e }),
                }
            }
        }
        let context = dir.join("context");
        if fs::symlink_metadata(&context).is_ok() {
            report.cache_bytes += tree_size(&context);
            remove_tree(&context).at(&context)?;
        }
        self.gc_locked(&lock, &mut report)?;
        Ok(report)
    }

    /// Mark and sweep; see the module documentation for the roots and the grace period.
    pub fn gc(&self) -> Result<PruneReport> {
        let lock = self.lock("gc")?;
        let mut report = PruneReport::default();
        self.gc_locked(&lock, &mut report)?;
        Ok(report)
    }

    /// Bumps the mtime of blob `digest` if it is stored, so gc's grace period covers it, and
    /// says whether it is. Writers call this instead of [`Store::has_blob`] before skipping a
    /// write: a blob that is about to be referenced again must not be swept meanwhile.
    pub fn keep_blob(&self, digest: &Digest) -> bool {
        let path = self.blob_path(digest);
        touch(&path) && path.is_file()
    }

    fn gc_locked(&self, _lock: &LockGuard, report: &mut PruneReport) -> Result<()> {
        let (n, bytes) = self.remove_stale_snapshots_sized()?;
        report.snapshots += n;
        report.snapshot_bytes += bytes;

        let mut marks = Marks::default();
        for (_, digest) in self.tags()? {
            self.mark_blob(&digest, &mut marks, 0);
        }
        // Dangling images stay until `image prune` (or `system prune`) removes them.
        for digest in self.dangling_images()? {
            self.mark_blob(&digest, &mut marks, 0);
        }
        // Other platforms' images of a name go with the name.
        for digest in self.platform_images()? {
            self.mark_blob(&digest, &mut marks, 0);
        }
        for (_, record) in self.cache_records()? {
            let Ok(record) = record else { continue };
            for layer in &record.layers {
                marks.blobs.insert(layer.digest.hex().to_string());
                marks.diff_ids.insert(layer.diff_id.hex().to_string());
            }
        }

        let now = SystemTime::now();
        self.sweep_blobs(&marks, now, report)?;
        // Snapshots last, right before the layer sweep: one created since the mark began
        // records its lowers in layers.json before it appears.
        self.mark_live_snapshots(&mut marks)?;
        self.sweep_layers(&marks, now, report)?;
        self.sweep_tmp(now, report)?;
        self.sweep_step_locks(now)?;
        Ok(())
    }

    /// The solver takes `locks/step-<key>.lock` around each step it executes; one file per key
    /// would pile up forever. Old ones that nobody holds are removed. If a process opened one
    /// just before it is unlinked, the worst case is that a step runs twice with the same
    /// result, which the cache's atomic writes make harmless.
    fn sweep_step_locks(&self, now: SystemTime) -> Result<()> {
        use nix::fcntl::{Flock, FlockArg};
        let dir = self.root().join("locks");
        for entry in fs::read_dir(&dir).at(&dir)? {
            let path = entry.at(&dir)?.path();
            let is_step = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-"));
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if !is_step || is_young(&meta, now, GC_GRACE) {
                continue;
            }
            let Ok(file) = File::open(&path) else { continue };
            if let Ok(held) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                let _ = fs::remove_file(&path);
                drop(held);
            }
        }
        Ok(())
    }

    /// Marks blob `digest` and, if it is a manifest or an index, what it references.
    fn mark_blob(&self, digest: &Digest, marks: &mut Marks, depth: usize) {
        if !marks.blobs.insert(digest.hex().to_string()) || depth > 8 {
            return;
        }
        // A missing or unparsable blob references nothing we can know; verify reports it.
        let Ok(bytes) = self.read_blob(digest) else { return };
        let Ok(refs) = serde_json::from_slice::<Refs>(&bytes) else { return };
        for m in &refs.manifests {
            self.mark_blob(&m.digest, marks, depth + 1);
        }
        for l in &refs.layers {
            marks.blobs.insert(l.digest.hex().to_string());
        }
        if let Some(config) = &refs.config {
            marks.blobs.insert(config.digest.hex().to_string());
            if let Ok(bytes) = self.read_blob(&config.digest)
                && let Ok(config) = serde_json::from_slice::<ImageConfig>(&bytes)
            {
                marks.diff_ids.extend(config.rootfs.diff_ids.iter().map(|d| d.hex().to_string()));
            }
        }
    }

    /// Every `cache/*.json` record, parsed (or why not).
    pub(crate) fn cache_records(
        &self,
    ) -> Result<Vec<(PathBuf, std::result::Result<CacheRecord, serde_json::Error>)>> {
        let dir = self.root().join("cache");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let path = entry.at(&dir)?.path();
            if path.extension().is_none_or(|e| e != "json") || !path.is_file() {
                continue;
            }
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::Io { path, source: e }),
            };
            let record = serde_json::from_slice::<CacheRecord>(&bytes);
            out.push((path, record));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn mark_live_snapshots(&self, marks: &mut Marks) -> Result<()> {
        self.mark_layer_users(&self.root().join("snapshots"), true, marks)?;
        // Containers' rootfs layers (see Store::pin_layers); the directory exists once the
        // runtime has made a container.
        let containers = self.root().join("containers");
        if containers.is_dir() {
            self.mark_layer_users(&containers, false, marks)?;
        }
        // Read-only views (`tmp/ro-*/`, Store::mount_readonly), with their records beside them.
        self.mark_layer_users_where(&self.root().join("tmp"), false, marks, |name| {
            name.starts_with(VIEW_PREFIX)
        })?;
        Ok(())
    }

    /// `required`: every directory under `dir` uses layers (a snapshot without its record is
    /// being made, so it may use any); else only those with a record do.
    fn mark_layer_users(&self, dir: &Path, required: bool, marks: &mut Marks) -> Result<()> {
        self.mark_layer_users_where(dir, required, marks, |_| true)
    }

    /// [`Store::mark_layer_users`] of the directories under `dir` whose name `wanted` takes.
    fn mark_layer_users_where(
        &self,
        dir: &Path,
        required: bool,
        marks: &mut Marks,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<()> {
        for entry in fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            if !wanted(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let snap = entry.path();
            if !fs::symlink_metadata(&snap).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let path = snap.join(SNAPSHOT_LAYERS);
            match fs::read(&path) {
                Ok(bytes) => match serde_json::from_slice::<Vec<Digest>>(&bytes) {
                    Ok(ids) => marks.diff_ids.extend(ids.iter().map(|d| d.hex().to_string())),
                    Err(_) => marks.all_layer_dirs = true,
                },
                // Removed since we listed it: it no longer needs anything.
                Err(e) if e.kind() == io::ErrorKind::NotFound && (!required || !snap.exists()) => {}
                Err(_) => marks.all_layer_dirs = true,
            }
        }
        Ok(())
    }

    fn sweep_blobs(&self, marks: &Marks, now: SystemTime, report: &mut PruneReport) -> Result<()> {
        let dir = self.root().join("blobs/sha256");
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let name = entry.file_name();
            if marks.blobs.contains(&*name.to_string_lossy()) {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if is_young(&meta, now, GC_GRACE) {
                continue;
            }
            // Rename it out of sight first, then look again: a writer that found it present
            // just before bumped its mtime (keep_blob), and then it goes back.
            let trash = self.trash_path("blob");
            match fs::rename(&path, &trash) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::Io { path, source: e }),
            }
            let meta = fs::symlink_metadata(&trash).at(&trash)?;
            if is_young(&meta, SystemTime::now(), GC_GRACE) {
                fs::rename(&trash, &path).at(&path)?;
                continue;
            }
            remove_tree(&trash).at(&trash)?;
            report.blobs += 1;
            report.blob_bytes += meta.len();
        }
        Ok(())
    }

    fn sweep_layers(&self, marks: &Marks, now: SystemTime, report: &mut PruneReport) -> Result<()> {
        if marks.all_layer_dirs {
            return Ok(());
        }
        let dir = self.root().join("layers");
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if marks.diff_ids.contains(&name) {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if is_young(&meta, now, GC_GRACE) {
                continue;
            }
            // Under the lock layer_dir and adopt_layer_dir take, and whole: nobody sees half a
            // layer directory.
            let trash = self.trash_path("layer");
            {
                let _layer = if name.len() == 64 { Some(self.lock(&format!("layer-{name}"))?) } else { None };
                let Ok(meta) = fs::symlink_metadata(&path) else { continue };
                if is_young(&meta, SystemTime::now(), GC_GRACE) {
                    continue;
                }
                match fs::rename(&path, &trash) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::Io { path, source: e }),
                }
            }
            report.layer_bytes += tree_size(&trash);
            remove_tree(&trash).at(&trash)?;
            report.layers += 1;
        }
        Ok(())
    }

    fn sweep_tmp(&self, now: SystemTime, report: &mut PruneReport) -> Result<()> {
        let dir = self.root().join("tmp");
        let mounts = mount_points();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let path = entry.at(&dir)?.path();
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if is_young(&meta, now, TMP_MAX_AGE) {
                continue;
            }
            // A read-only view (`ro-*`) some process of ours still has mounted.
            if mounts.iter().any(|m| m.starts_with(&path)) {
                continue;
            }
            let bytes = tree_size(&path);
            match remove_tree(&path) {
                Ok(()) => {
                    report.tmp_entries += 1;
                    report.tmp_bytes += bytes;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { path, source: e }),
            }
        }
        Ok(())
    }

    fn trash_path(&self, what: &str) -> PathBuf {
        self.root().join("tmp").join(format!("gc-{what}-{:016x}", rand::random::<u64>()))
    }

    /// Checks that every blob hashes to its name, every (tagged or dangling) image's manifest,
    /// config and layers are present and parse, and every build-cache record's blobs are present.
    pub fn verify(&self) -> Result<VerifyReport> {
        let _lock = self.lock("gc")?;
        let mut report = VerifyReport::default();

        let dir = self.root().join("blobs/sha256");
        let mut blobs = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            blobs.push(entry.at(&dir)?.path());
        }
        blobs.sort();
        report.blobs = blobs.len();
        let mut problems: Vec<String> = blobs
            .par_iter()
            .filter_map(|p| check_blob(p).err())
            .map(|e| hostutil::errors::one_line(&e))
            .collect();

        for (name, digest) in self.tags()? {
            report.images += 1;
            self.verify_image(&format!("image {name}"), &digest, &mut problems, 0);
        }
        for digest in self.dangling_images()? {
            report.images += 1;
            self.verify_image(&format!("dangling image {digest}"), &digest, &mut problems, 0);
        }

        for (path, record) in self.cache_records()? {
            report.cache_records += 1;
            match record {
                Err(e) => problems.push(format!("cache record {}: does not parse: {e}", path.display())),
                // A record from a --cache-from source gets its blobs when a build needs them.
                Ok(record) if record.source.is_some() => {}
                Ok(record) => {
                    for layer in &record.layers {
                        if !self.has_blob(&layer.digest) {
                            problems.push(format!(
                                "cache record {}: layer blob {} is missing",
                                path.display(),
                                layer.digest
                            ));
                        }
                    }
                }
            }
        }
        report.problems = problems;
        Ok(report)
    }

    fn verify_image(&self, what: &str, digest: &Digest, problems: &mut Vec<String>, depth: usize) {
        let bytes = match self.read_blob(digest) {
            Ok(b) => b,
            Err(e) => return problems.push(format!("{what}: manifest {digest}: {e}")),
        };
        let refs = match serde_json::from_slice::<Refs>(&bytes) {
            Ok(r) => r,
            Err(e) => return problems.push(format!("{what}: manifest {digest} does not parse: {e}")),
        };
        if refs.config.is_none() {
            if refs.manifests.is_empty() {
                problems.push(format!("{what}: {digest} is neither a manifest nor an image index"));
            }
            if depth < 8 {
                for m in &refs.manifests {
                    self.verify_image(&format!("{what} (in index {digest})"), &m.digest, problems, depth + 1);
                }
            }
            return;
        }
        let image = match self.image(digest) {
            Ok(image) => image,
            Err(e) => return problems.push(format!("{what}: {e}")),
        };
        for layer in image.layers() {
            if !self.has_blob(&layer.digest) {
                problems.push(format!("{what}: layer blob {} is missing", layer.digest));
            }
        }
    }
}

/// A running build's claim on what it uses: while it is held, [`Store::prune_to`] removes no
/// record and no dangling image used since it was taken (see the module docs). Released
/// (its file removed) when dropped.
pub struct Lease {
    path: PathBuf,
    _lock: nix::fcntl::Flock<File>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Where leases live: one flocked file each, its mtime the time it was taken.
const LEASES: &str = "leases";

/// mtimes are as coarse as the kernel's clock tick; a use that far before a lease may belong
/// to it.
const LEASE_SLACK: Duration = Duration::from_secs(1);

/// What [`Store::prune_to`] keeps the store to. Neither set: nothing is removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunePolicy {
    /// Remove least recently used things until the store ([`Store::size`]) is at most this.
    pub keep_bytes: Option<u64>,
    /// Remove build-cache records, idle cache mounts and dangling images unused longer.
    pub older_than: Option<Duration>,
}

/// One thing [`Store::prune_to`] may remove, with what it references.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    kind: CandidateKind,
    last_used: SystemTime,
    /// Blob hexes and diff id hexes only it (among candidates) may keep alive.
    blobs: Vec<String>,
    diff_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum CandidateKind {
    /// `cache/<hex>.json`.
    Record(PathBuf),
    /// `cache/mounts/<dir>/`.
    Mount(PathBuf),
    /// A dangling image no container uses.
    Image(Digest),
    /// `layers/<diff id hex>/`, used by no snapshot, view or container (only under a limit).
    Layer(String),
}

/// Least recently used first; equal times in a fixed order (records, mounts, images, layers,
/// then by name) so that a prune is repeatable.
fn lru_order(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.kind.cmp(&b.kind)));
}

/// The bookkeeping of one prune: who still references each blob and layer directory, and the
/// mtimes of blobs as the prune began (a writer that bumps one since, `keep_blob`, saves it).
struct PruneRefs {
    /// Referenced by something the prune never removes (tags, images in use, other platforms'
    /// images of a name).
    pinned: Marks,
    blob_users: HashMap<String, usize>,
    diff_users: HashMap<String, usize>,
    blob_mtimes: HashMap<String, SystemTime>,
}

impl Store {
    /// Keeps the store to `policy` (see the module docs, "Size limit"): under the `gc` lock,
    /// (a) removes build-cache records, idle cache mounts and dangling images last used longer
    /// ago than `older_than`; (b) while the store is over `keep_bytes`, removes the least
    /// recently used of those and of the unpacked layer directories nothing live uses. What
    /// only removed things referenced goes at once; tagged images and `in_use` (the images
    /// containers use) never go. An ordinary [`Store::gc`] pass runs first.
    pub fn prune_to(&self, policy: &PrunePolicy, in_use: &BTreeSet<Digest>) -> Result<PruneReport> {
        let lock = self.lock("gc")?;
        let mut report = PruneReport::default();
        if policy.keep_bytes.is_none() && policy.older_than.is_none() {
            return Ok(report);
        }
        // Orphans not made by this prune: the normal rules, grace period included.
        self.gc_locked(&lock, &mut report)?;

        let now = SystemTime::now();
        // Before anything is listed: a writer that bumps a blob from now on is seen.
        let blob_mtimes = self.blob_mtimes()?;
        let mut refs = PruneRefs {
            pinned: Marks::default(),
            blob_users: HashMap::new(),
            diff_users: HashMap::new(),
            blob_mtimes,
        };
        let mut candidates = self.prune_candidates(in_use, &mut refs)?;
        // What running builds have used or made since they began stays, with its blobs.
        if let Some(oldest) = self.oldest_lease() {
            let since = oldest.checked_sub(LEASE_SLACK).unwrap_or(oldest);
            candidates.retain(|c| c.last_used < since || matches!(c.kind, CandidateKind::Mount(_)));
        }
        lru_order(&mut candidates);

        let mut left = Vec::new();
        for c in candidates {
            let old = policy
                .older_than
                .is_some_and(|age| now.duration_since(c.last_used).is_ok_and(|used| used > age));
            if old {
                self.remove_candidate(&c, &mut refs, &mut report)?;
            } else {
                left.push(c);
            }
        }

        let Some(limit) = policy.keep_bytes else { return Ok(report) };
        let mut size = self.size();
        if size > limit {
            let mut live = Marks::default();
            self.mark_live_snapshots(&mut live)?;
            if !live.all_layer_dirs {
                left.extend(self.layer_candidates(&live)?);
            }
            lru_order(&mut left);
            for c in left {
                if size <= limit {
                    break;
                }
                let before = report.total_bytes();
                self.remove_candidate(&c, &mut refs, &mut report)?;
                size = size.saturating_sub(report.total_bytes() - before);
            }
            // What was counted is freed; new writes by others since are not: measure again.
            size = self.size();
        }
        report.size_after = Some(size);
        if size > limit {
            report.limit_missed = Some(limit);
        }
        Ok(report)
    }

    /// Takes a lease for a build (see [`Lease`]).
    pub fn lease(&self) -> Result<Lease> {
        use nix::fcntl::{Flock, FlockArg};
        let dir = self.root().join(LEASES);
        fs::create_dir_all(&dir).at(&dir)?;
        let path = dir.join(format!("{:016x}", rand::random::<u64>()));
        let file = File::options().create_new(true).write(true).open(&path).at(&path)?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| Error::Io { path: path.clone(), source: e.into() })?;
        Ok(Lease { path, _lock: lock })
    }

    /// When the oldest lease a live process holds was taken; leases nobody holds (their
    /// process died) are removed.
    fn oldest_lease(&self) -> Option<SystemTime> {
        use nix::fcntl::{Flock, FlockArg};
        let dir = self.root().join(LEASES);
        let mut oldest: Option<SystemTime> = None;
        for entry in fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            let Ok(file) = File::options().write(true).open(&path) else { continue };
            let Ok(taken) = file.metadata().and_then(|m| m.modified()) else { continue };
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(_stale) => {
                    let _ = fs::remove_file(&path);
                }
                Err(_) => oldest = Some(oldest.map_or(taken, |o| o.min(taken))),
            }
        }
        oldest
    }

    /// The mtime of every blob, by hex.
    fn blob_mtimes(&self) -> Result<HashMap<String, SystemTime>> {
        let dir = self.root().join("blobs/sha256");
        let mut out = HashMap::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            if let Ok(t) = entry.metadata().and_then(|m| m.modified()) {
                out.insert(entry.file_name().to_string_lossy().into_owned(), t);
            }
        }
        Ok(out)
    }

    /// Records, idle-looking cache mounts and dangling images not in `in_use`, with what each
    /// references counted in `refs`; the roots that stay are marked in `refs.pinned`.
    fn prune_candidates(&self, in_use: &BTreeSet<Digest>, refs: &mut PruneRefs) -> Result<Vec<Candidate>> {
        for (_, digest) in self.tags()? {
            self.mark_blob(&digest, &mut refs.pinned, 0);
        }
        for digest in self.platform_images()? {
            self.mark_blob(&digest, &mut refs.pinned, 0);
        }
        let mut out = Vec::new();
        for digest in self.dangling_images()? {
            if in_use.contains(&digest) {
                self.mark_blob(&digest, &mut refs.pinned, 0);
                continue;
            }
            let mut marks = Marks::default();
            self.mark_blob(&digest, &mut marks, 0);
            // A dangling image was last used when it was made (or last written again).
            let last_used = refs.blob_mtimes.get(digest.hex()).copied().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(Candidate {
                kind: CandidateKind::Image(digest),
                last_used,
                blobs: marks.blobs.into_iter().collect(),
                diff_ids: marks.diff_ids.into_iter().collect(),
            });
        }
        for (path, record) in self.cache_records()? {
            let Ok(last_used) = fs::symlink_metadata(&path).and_then(|m| m.modified()) else { continue };
            let layers = record.map(|r| r.layers).unwrap_or_default();
            out.push(Candidate {
                kind: CandidateKind::Record(path),
                last_used,
                blobs: layers.iter().map(|l| l.digest.hex().to_string()).collect(),
                diff_ids: layers.iter().map(|l| l.diff_id.hex().to_string()).collect(),
            });
        }
        for mount in self.cache_mounts()? {
            out.push(Candidate {
                kind: CandidateKind::Mount(self.root().join(CACHE_MOUNTS).join(&mount.dir)),
                last_used: mount.last_used,
                blobs: Vec::new(),
                diff_ids: Vec::new(),
            });
        }
        for c in &out {
            for b in &c.blobs {
                *refs.blob_users.entry(b.clone()).or_default() += 1;
            }
            for d in &c.diff_ids {
                *refs.diff_users.entry(d.clone()).or_default() += 1;
            }
        }
        Ok(out)
    }

    /// The unpacked layer directories no live snapshot, view or container uses, each last used
    /// at its mtime ([`Store::lower_dirs`] bumps it).
    fn layer_candidates(&self, live: &Marks) -> Result<Vec<Candidate>> {
        let dir = self.root().join("layers");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() != 64 || live.diff_ids.contains(&name) {
                continue;
            }
            let Ok(last_used) = entry.metadata().and_then(|m| m.modified()) else { continue };
            out.push(Candidate {
                kind: CandidateKind::Layer(name),
                last_used,
                blobs: Vec::new(),
                diff_ids: Vec::new(),
            });
        }
        Ok(out)
    }

    /// Removes one candidate and, at once, the blobs and layer directories nothing references
    /// any more because of it.
    fn remove_candidate(&self, c: &Candidate, refs: &mut PruneRefs, report: &mut PruneReport) -> Result<()> {
        let removed = match &c.kind {
            CandidateKind::Record(path) => {
                let bytes = fs::symlink_metadata(path).map_or(0, |m| m.len());
                match fs::remove_file(path) {
                    Ok(()) => {
                        report.cache_records += 1;
                        report.cache_bytes += bytes;
                        true
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => true,
                    Err(e) => return Err(Error::Io { path: path.clone(), source: e }),
                }
            }
            CandidateKind::Image(digest) => {
                let dropped = self.drop_dangling(digest)?;
                report.images += usize::from(dropped);
                dropped
            }
            CandidateKind::Mount(dir) => {
                if let Some(bytes) = empty_idle_mount(self, dir)? {
                    report.cache_mounts += 1;
                    report.mount_bytes += bytes;
                }
                return Ok(());
            }
            CandidateKind::Layer(hex) => {
                self.remove_layer_dir(hex, report)?;
                return Ok(());
            }
        };
        // Still referenced (a name took the image meanwhile): its objects stay.
        if !removed {
            return Ok(());
        }
        for b in &c.blobs {
            let users = refs.blob_users.entry(b.clone()).or_default();
            *users = users.saturating_sub(1);
            if *users == 0 && !refs.pinned.blobs.contains(b) {
                self.remove_freed_blob(b, refs.blob_mtimes.get(b).copied(), report)?;
            }
        }
        for d in &c.diff_ids {
            let users = refs.diff_users.entry(d.clone()).or_default();
            *users = users.saturating_sub(1);
            if *users == 0 && !refs.pinned.diff_ids.contains(d) {
                self.remove_layer_dir(d, report)?;
            }
        }
        Ok(())
    }

    /// Deletes blob `hex`, which this prune made unreferenced, without gc's grace period: it
    /// is renamed into `tmp/` and kept there only if its mtime is still `seen` (the one it had
    /// when the prune began); a writer that bumped it since ([`Store::keep_blob`]) is about to
    /// reference it again, and it goes back.
    fn remove_freed_blob(&self, hex: &str, seen: Option<SystemTime>, report: &mut PruneReport) -> Result<()> {
        let path = self.root().join("blobs/sha256").join(hex);
        // Written since the prune began: a writer's, not ours to remove.
        let Some(seen) = seen else { return Ok(()) };
        let trash = self.trash_path("blob");
        match fs::rename(&path, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::Io { path, source: e }),
        }
        let meta = fs::symlink_metadata(&trash).at(&trash)?;
        if meta.modified().ok() != Some(seen) {
            fs::rename(&trash, &path).at(&path)?;
            return Ok(());
        }
        remove_tree(&trash).at(&trash)?;
        report.blobs += 1;
        report.blob_bytes += meta.len();
        Ok(())
    }

    /// Removes `layers/<hex>/` unless a live snapshot, view or container uses it, checked under
    /// the layer's lock, the one [`Store::lower_dirs`] looks directories up under. A directory
    /// that goes is unpacked again from its blob when next needed ([`Store::layer_dir`]).
    fn remove_layer_dir(&self, hex: &str, report: &mut PruneReport) -> Result<()> {
        let path = self.root().join("layers").join(hex);
        if hex.len() != 64 || fs::symlink_metadata(&path).is_err() {
            return Ok(());
        }
        let trash = self.trash_path("layer");
        {
            let _layer = self.lock(&format!("layer-{hex}"))?;
            let mut live = Marks::default();
            self.mark_live_snapshots(&mut live)?;
            if live.all_layer_dirs || live.diff_ids.contains(hex) {
                return Ok(());
            }
            match fs::rename(&path, &trash) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::Io { path, source: e }),
            }
        }
        report.layer_bytes += apparent_size(&trash, &mut HashSet::new());
        remove_tree(&trash).at(&trash)?;
        report.layers += 1;
        Ok(())
    }
}

/// Empties cache mount `dir` if it is idle: every lock file in it (`shared.lock`,
/// `private-N.lock`) taken exclusively without waiting, and held while its data directories
/// are renamed into the store's `tmp/` and removed. The directory, its lock files and nothing
/// else stay, so a build that opens a lock file meanwhile never finds the directory gone; it
/// then seeds an empty cache as for a new mount. Returns the bytes freed, or `None` when busy.
fn empty_idle_mount(store: &Store, dir: &Path) -> Result<Option<u64>> {
    use nix::fcntl::{Flock, FlockArg};
    let mut held = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return Ok(None) };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        let Ok(file) = File::options().write(true).open(&path) else { continue };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => held.push(lock),
            // In use by a RUN: the mount stays whole.
            Err(_) => return Ok(None),
        }
    }
    let mut bytes = 0;
    for data in mount_data_dirs(dir) {
        let trash = store.trash_path("mount");
        match fs::rename(&data, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::Io { path: data, source: e }),
        }
        bytes += apparent_size(&trash, &mut HashSet::new());
        remove_tree(&trash).at(&trash)?;
    }
    // `exported.json` describes the content just removed: a later export must not take its
    // digests for files that happen to look the same.
    for file in ["last-used", "id", "exported.json"] {
        let path = dir.join(file);
        bytes += fs::symlink_metadata(&path).map_or(0, |m| m.len());
        let _ = fs::remove_file(&path);
    }
    drop(held);
    Ok(Some(bytes))
}

/// What `verify` finds wrong with a blob file.
#[derive(Debug, thiserror::Error)]
enum BlobProblem {
    #[error("blobs/sha256/{0}: not a blob name")]
    BadName(String),
    #[error("blob {digest}")]
    Read {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("blob {expected} is corrupt: its content hashes to {actual}")]
    Corrupt { expected: Digest, actual: Digest },
}

/// Hashes the blob at `path` and compares the digest with its name.
fn check_blob(path: &Path) -> std::result::Result<(), BlobProblem> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Ok(expected) = format!("sha256:{name}").parse::<Digest>() else {
        return Err(BlobProblem::BadName(name));
    };
    let read = |source| BlobProblem::Read { digest: expected.clone(), source };
    let mut f = File::open(path).map_err(read)?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read(e)),
        }
    }
    let actual = hasher.finish();
    if actual == expected { Ok(()) } else { Err(BlobProblem::Corrupt { expected, actual }) }
}

fn is_young(meta: &fs::Metadata, now: SystemTime, grace: Duration) -> bool {
    match meta.modified() {
        // An mtime in the future is young too.
        Ok(t) => now.duration_since(t).map_or(true, |age| age < grace),
        Err(_) => true,
    }
}

/// Sets the mtime of `path` to now; false if it could not (it does not exist).
pub(crate) fn touch(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    let times = [libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW }; 2];
    // SAFETY: a valid NUL-terminated path and two timespecs, as utimensat(2) wants.
    unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) == 0 }
}

/// The total size of the regular files under `path` (or of `path` itself), not crossing mounts.
pub(crate) fn tree_size(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .same_file_system(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Removes a file or a directory tree, even one with directories whose mode denies writing or
/// reading (an overlay `work/work` is mode 000) — those are made `u+rwx` first.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            make_dirs_writable(path, meta.dev());
            match fs::remove_dir_all(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            }
        }
        _ => Ok(()),
    }
}

fn make_dirs_writable(dir: &Path, dev: u64) {
    let Ok(meta) = fs::symlink_metadata(dir) else { return };
    if !meta.is_dir() || meta.dev() != dev {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode((mode | 0o700) & 0o7777));
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_dirs_writable(&entry.path(), dev);
        }
    }
}

/// Every mount point in this process's mount namespace.
fn mount_points() -> Vec<PathBuf> {
    hostutil::mountinfo::read().unwrap_or_default().into_iter().map(|m| m.mount_point).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_display() {
        let r = PruneReport {
            blobs: 12,
            blob_bytes: 100_000_000,
            layers: 3,
            layer_bytes: 4_200_000,
            cache_records: 40,
            ..Default::default()
        };
        assert_eq!(r.to_string(), "Deleted 12 blobs, 3 layers, 40 cache records (104.2 MB)");
        let r = PruneReport { blobs: 1, snapshots: 2, tmp_entries: 1, tmp_bytes: 10, ..Default::default() };
        assert_eq!(
            r.to_string(),
            "Deleted 1 blob, 0 layers, 0 cache records, 2 snapshots, 1 temp entry (10 B)"
        );
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1500), "1.5 kB");
    }

    fn ago(secs: u64) -> SystemTime {
        SystemTime::now() - Duration::from_secs(secs)
    }

    #[test]
    fn lru_order_puts_the_least_recently_used_first_whatever_its_kind() {
        let c = |kind, secs| Candidate { kind, last_used: ago(secs), blobs: vec![], diff_ids: vec![] };
        let mut list = vec![
            c(CandidateKind::Layer("l".into()), 10),
            c(CandidateKind::Record("r".into()), 300),
            c(CandidateKind::Mount("m".into()), 3600),
            c(CandidateKind::Image(Digest::of(b"i")), 60),
        ];
        lru_order(&mut list);
        let kinds: Vec<&CandidateKind> = list.iter().map(|c| &c.kind).collect();
        assert!(matches!(kinds[0], CandidateKind::Mount(_)), "{kinds:?}");
        assert!(matches!(kinds[1], CandidateKind::Record(_)), "{kinds:?}");
        assert!(matches!(kinds[2], CandidateKind::Image(_)), "{kinds:?}");
        assert!(matches!(kinds[3], CandidateKind::Layer(_)), "{kinds:?}");
    }

    /// A record with one layer blob of `n` random-ish bytes, last used `secs` ago.
    fn aged_record(store: &Store, n: u8, secs: u64) -> (PathBuf, Digest) {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i as u8) ^ n).chain([n]).collect();
        let digest = store.write_blob(&data).unwrap();
        let layer = crate::Layer {
            digest: digest.clone(),
            diff_id: Digest::of(&[n]),
            size: data.len() as u64,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        };
        let key = Digest::of(&[n, n]);
        store.cache_put(&key, &CacheRecord::new(vec![layer], Default::default())).unwrap();
        let path = store.root().join("cache").join(format!("{}.json", key.hex()));
        File::options().write(true).open(&path).unwrap().set_modified(ago(secs)).unwrap();
        (path, digest)
    }

    #[test]
    fn prune_to_a_size_removes_the_least_recently_used_records_and_their_fresh_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (old, old_blob) = aged_record(&store, 1, 3 * 3600);
        let (mid, mid_blob) = aged_record(&store, 2, 2 * 3600);
        let (new, new_blob) = aged_record(&store, 3, 3600);
        // A hit is a use: the oldest record becomes the newest.
        let key = Digest::of(&[1, 1]);
        assert!(store.cache_get(&key).unwrap().is_some());
        let size = store.size();
        let policy = PrunePolicy { keep_bytes: Some(size - 5_000), older_than: None };
        let report = store.prune_to(&policy, &BTreeSet::new()).unwrap();
        assert_eq!((report.cache_records, report.blobs), (1, 1), "{report}");
        assert!(old.exists() && new.exists() && !mid.exists());
        // Minutes-old blobs, but made unreferenced by this prune: gone at once.
        assert!(store.has_blob(&old_blob) && store.has_blob(&new_blob) && !store.has_blob(&mid_blob));
        assert!(report.size_after.unwrap() <= size - 5_000 && report.limit_missed.is_none(), "{report:?}");
        assert_eq!(report.size_after, Some(store.size()));
        assert!(store.verify().unwrap().is_ok());
    }

    #[test]
    fn prune_to_an_age_keeps_what_was_used_since() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (old, _) = aged_record(&store, 1, 3 * 3600);
        let (new, _) = aged_record(&store, 2, 60);
        let policy = PrunePolicy { keep_bytes: None, older_than: Some(Duration::from_secs(3600)) };
        let report = store.prune_to(&policy, &BTreeSet::new()).unwrap();
        assert!(!old.exists() && new.exists(), "{report}");
        assert_eq!(report.limit_missed, None);
    }

    #[test]
    fn prune_to_a_limit_below_the_tagged_images_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (_, blob) = aged_record(&store, 1, 3600);
        let layer = store.cache_get(&Digest::of(&[1, 1])).unwrap().unwrap().layers;
        let config = crate::ImageConfig {
            rootfs: crate::oci::RootFs { kind: "layers".into(), diff_ids: vec![layer[0].diff_id.clone()] },
            ..Default::default()
        };
        let image = store.put_image(&config, &layer).unwrap();
        store.tag(&"app:1".parse().unwrap(), &image.digest).unwrap();
        let report = store
            .prune_to(&PrunePolicy { keep_bytes: Some(1000), older_than: None }, &BTreeSet::new())
            .unwrap();
        assert_eq!(report.cache_records, 1);
        assert!(store.has_blob(&blob), "the tagged image's layer stays");
        assert_eq!(report.limit_missed, Some(1000));
        assert!(
            report.limit_warning().unwrap().contains("over its 1.0 kB limit"),
            "{:?}",
            report.limit_warning()
        );
        assert!(store.verify().unwrap().is_ok());
    }

    #[test]
    fn a_busy_cache_mount_stays_and_an_idle_one_is_emptied() {
        use nix::fcntl::{Flock, FlockArg};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mount = |name: &str| {
            let m = store.root().join(CACHE_MOUNTS).join(name);
            fs::create_dir_all(m.join("shared")).unwrap();
            fs::write(m.join("shared/data"), vec![7u8; 50_000]).unwrap();
            fs::write(m.join("id"), format!("{name}-id")).unwrap();
            File::create(m.join("shared.lock")).unwrap();
            m
        };
        let (busy, idle) = (mount("busy"), mount("idle"));
        let _held = Flock::lock(File::open(busy.join("shared.lock")).unwrap(), FlockArg::LockShared).unwrap();
        let usage = store.cache_usage().unwrap();
        assert_eq!(usage.mounts.len(), 2);
        assert_eq!(usage.mounts[0].id.as_deref().map(|i| i.ends_with("-id")), Some(true));
        let report =
            store.prune_to(&PrunePolicy { keep_bytes: Some(0), older_than: None }, &BTreeSet::new()).unwrap();
        assert_eq!(report.cache_mounts, 1, "{report}");
        assert!(busy.join("shared/data").exists());
        assert!(!idle.join("shared").exists() && idle.join("shared.lock").exists());
        assert_eq!(store.cache_usage().unwrap().mounts.len(), 1);
    }
}
