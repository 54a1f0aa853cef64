//! Snapshots: a writable overlay (upper/work/merged) over a stack of unpacked layers.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::oci::Layer;
use crate::Store;

/// A snapshot directory `snapshots/<id>/` with `upper/`, `work/` and `merged/`, over `lowers`.
/// Dropping it removes the directory (unless [`Snapshot::keep_upper`] took the upper away).
#[derive(Debug)]
pub struct Snapshot {
    pub id: String,
    pub dir: PathBuf,
    /// Lower layer directories, topmost first.
    pub lowers: Vec<PathBuf>,
}

/// An overlay mounted in rbuild's own mount namespace; unmounted when dropped.
#[derive(Debug)]
pub struct MountGuard {
    pub target: PathBuf,
}

impl Snapshot {
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }

    /// Mounts the overlay at `merged/` in the calling process's mount namespace (for COPY).
    pub fn mount(&self) -> Result<MountGuard> {
        todo!()
    }
}

impl Store {
    /// A new snapshot whose lowers are `layers` (bottom first, as in a manifest), unpacking
    /// any that are not unpacked yet.
    pub fn create_snapshot(&self, layers: &[Layer]) -> Result<Snapshot> {
        let _ = layers;
        todo!()
    }

    /// Mounts `layers` read-only at a fresh directory (to read another stage's files).
    pub fn mount_readonly(&self, layers: &[Layer]) -> Result<(tempfile::TempDir, MountGuard)> {
        let _ = layers;
        todo!()
    }
}

#[allow(dead_code)]
fn _unused(_: &Path) {}
