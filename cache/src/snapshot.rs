//! Snapshots: a writable overlay (upper/work/merged) over a stack of unpacked layers.
//!
//! A snapshot is built in `tmp/` and renamed to `snapshots/<id>/` with its `lock` file already
//! flocked, so a snapshot directory whose lock can be taken belongs to no live process and
//! [`Store::remove_stale_snapshots`] may remove it.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;

use crate::Store;
use crate::error::{Error, IoContext, Result};
use crate::oci::Layer;

/// A snapshot directory `snapshots/<id>/` with `upper/`, `work/` and `merged/`, over `lowers`.
/// Dropping it unmounts `merged/` if needed and removes the directory (what is left of it
/// after [`Store::adopt_layer_dir`] took the upper away, if it did).
#[derive(Debug)]
pub struct Snapshot {
    pub id: String,
    pub dir: PathBuf,
    /// Lower layer directories, topmost first.
    pub lowers: Vec<PathBuf>,
    /// The exclusive lock on `<dir>/lock`, held for the snapshot's whole life.
    _lock: Flock<File>,
}

/// An overlay mounted in rbuild's own mount namespace; unmounted when dropped.
#[derive(Debug)]
pub struct MountGuard {
    pub target: PathBuf,
    /// False for the empty directory [`Store::mount_readonly`] gives for no layers.
    mounted: bool,
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted {
            // Lazy, so an open file somewhere does not keep the mount (and a temp dir) alive.
            let _ = umount2(&self.target, MntFlags::MNT_DETACH);
        }
    }
}

/// A read-only view of a stack of layers at a temporary directory. Dropping it unmounts the
/// view and then removes the directory (the fields drop in that order).
#[derive(Debug)]
pub struct ReadonlyMount {
    guard: MountGuard,
    dir: tempfile::TempDir,
}

impl ReadonlyMount {
    pub fn path(&self) -> &Path {
        let _ = &self.dir;
        &self.guard.target
    }
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
        let target = self.merged();
        mount_overlay(&target, &self.lowers, Some((&self.upper(), &self.work())), MsFlags::empty())?;
        Ok(MountGuard { target, mounted: true })
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        unmount_all(&self.merged());
        let _ = fs::remove_dir_all(&self.dir);
        // The lock is released after this, when the field is dropped.
    }
}

impl Store {
    /// A new snapshot whose lowers are `layers` (bottom first, as in a manifest), unpacking
    /// any that are not unpacked yet.
    pub fn create_snapshot(&self, layers: &[Layer]) -> Result<Snapshot> {
        let id = format!("{:032x}", rand::random::<u128>());
        let staging_parent = self.temp_dir("snapshot-")?;
        let staging = staging_parent.path().join("s");
        let mut dirs = DirBuilder::new();
        dirs.mode(0o755);
        dirs.create(&staging).at(&staging)?;
        let mut subdirs = vec!["upper", "work", "merged"];
        if layers.is_empty() {
            // FROM scratch: overlayfs needs at least one lower.
            subdirs.push("lower");
        }
        for sub in subdirs {
            let p = staging.join(sub);
            dirs.create(&p).at(&p)?;
        }
        let lock_path = staging.join("lock");
        let file = OpenOptions::new().create_new(true).write(true).open(&lock_path).at(&lock_path)?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| Error::Io { path: lock_path.clone(), source: e.into() })?;
        // The diff ids of the lowers, so gc keeps their directories while the snapshot lives.
        let layers_path = staging.join(crate::gc::SNAPSHOT_LAYERS);
        let diff_ids: Vec<&crate::Digest> = layers.iter().map(|l| &l.diff_id).collect();
        fs::write(&layers_path, serde_json::to_vec(&diff_ids).expect("diff ids serialize"))
            .at(&layers_path)?;
        let dir = self.root().join("snapshots").join(&id);
        fs::rename(&staging, &dir).at(&dir)?;
        // Only now, with the snapshot's use of its layers on record, are their directories
        // looked up (see lower_dirs); a failure drops the snapshot, which removes it.
        let mut snapshot = Snapshot { id, dir, lowers: Vec::new(), _lock: lock };
        snapshot.lowers = self.lower_dirs(layers)?;
        if snapshot.lowers.is_empty() {
            snapshot.lowers.push(snapshot.dir.join("lower"));
        }
        Ok(snapshot)
    }

    /// The layer directories of `layers`, topmost first, each once: overlayfs refuses the same
    /// directory twice ("conflicting lowerdir", ELOOP), and an image can hold the same layer
    /// twice (two steps with identical changes). Keeping only the topmost occurrence shows
    /// the same tree: everything the lower copy adds, hides or deletes, the upper one does too.
    ///
    /// Callers record the use first (a snapshot's or view's `layers.json`, a container's
    /// [`Store::pin_layers`]): [`Store::prune_to`] removes a layer directory that no such record
    /// names, checking the records under the layer's lock, and each directory is found here
    /// under that same lock, so either the prune sees the record or this sees the directory
    /// gone and unpacks it again. Each directory's mtime is bumped: its last use, for the
    /// prune's LRU order.
    pub fn lower_dirs(&self, layers: &[Layer]) -> Result<Vec<PathBuf>> {
        let mut seen = std::collections::HashSet::new();
        let mut dirs = Vec::with_capacity(layers.len());
        for layer in layers.iter().rev() {
            if seen.insert(&layer.diff_id) {
                dirs.push(self.layer_dir_in_use(layer)?);
            }
        }
        Ok(dirs)
    }

    /// [`Store::layer_dir`], checked and touched under the layer's lock (see lower_dirs).
    fn layer_dir_in_use(&self, layer: &Layer) -> Result<PathBuf> {
        {
            let _lock = self.lock(&format!("layer-{}", layer.diff_id.hex()))?;
            let dir = self.root().join("layers").join(layer.diff_id.hex());
            if fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                crate::gc::touch(&dir);
                return Ok(dir);
            }
        }
        // Gone: unpacked again from its blob (layer_dir takes the lock itself; flock is not
        // reentrant across two opens of the file).
        self.layer_dir(layer)
    }

    /// Records that the directory `dir` (a container's rootfs, outside `snapshots/`) uses
    /// `layers`, so that gc keeps their unpacked directories for as long as the record exists.
    /// The runtime keeps containers in `containers/<id>/`; gc reads `containers/*/layers.json`.
    pub fn pin_layers(&self, dir: &Path, layers: &[Layer]) -> Result<()> {
        let path = dir.join(crate::gc::SNAPSHOT_LAYERS);
        let diff_ids: Vec<&crate::Digest> = layers.iter().map(|l| &l.diff_id).collect();
        fs::write(&path, serde_json::to_vec(&diff_ids).expect("diff ids serialize")).at(&path)
    }

    /// Mounts `layers` read-only at a fresh directory (to read another stage's files).
    ///
    /// Drop the guard before the directory (a `let (dir, guard) = ...` binding does): the
    /// directory cannot be removed while something is mounted on it.
    pub fn mount_readonly(&self, layers: &[Layer]) -> Result<ReadonlyMount> {
        let dir = self.temp_dir(crate::gc::VIEW_PREFIX)?;
        // The layers it uses, on record before their directories are looked up (lower_dirs),
        // beside the mount point, where gc and prune_to read them.
        let layers_path = dir.path().join(crate::gc::SNAPSHOT_LAYERS);
        let diff_ids: Vec<&crate::Digest> = layers.iter().map(|l| &l.diff_id).collect();
        fs::write(&layers_path, serde_json::to_vec(&diff_ids).expect("diff ids serialize"))
            .at(&layers_path)?;
        let target = dir.path().join("view");
        fs::create_dir(&target).at(&target)?;
        let lowers = self.lower_dirs(layers)?;
        let guard = match lowers.as_slice() {
            [] => MountGuard { target, mounted: false },
            [only] => {
                // Overlayfs wants two lowers when it has no upper; one layer is a bind mount,
                // made read-only by a remount.
                let map = |source| Error::Mount { target: target.clone(), source };
                mount(Some(only.as_path()), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .map_err(map)?;
                let guard = MountGuard { target: target.clone(), mounted: true };
                let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                mount(None::<&str>, &target, None::<&str>, flags, None::<&str>).map_err(map)?;
                guard
            }
            _ => {
                mount_overlay(&target, &lowers, None, MsFlags::MS_RDONLY)?;
                MountGuard { target, mounted: true }
            }
        };
        Ok(ReadonlyMount { guard, dir })
    }

    /// Removes the snapshot directories no live process holds (left by a build that was
    /// killed), unmounting their `merged/` first if still mounted. Returns how many.
    pub fn remove_stale_snapshots(&self) -> Result<usize> {
        Ok(self.remove_stale_snapshots_sized()?.0)
    }

    /// [`Store::remove_stale_snapshots`], also returning the bytes of the files removed.
    pub(crate) fn remove_stale_snapshots_sized(&self) -> Result<(usize, u64)> {
        let snapshots = self.root().join("snapshots");
        let mut removed = 0;
        let mut bytes = 0;
        for entry in fs::read_dir(&snapshots).at(&snapshots)? {
            let dir = entry.at(&snapshots)?.path();
            if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let lock_path = dir.join("lock");
            // Every snapshot appears in snapshots/ with its lock already held (see
            // create_snapshot), so one without a lock file is stale too.
            let _held = match OpenOptions::new().write(true).open(&lock_path) {
                Ok(f) => match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                    Ok(lock) => Some(lock),
                    Err((_, Errno::EWOULDBLOCK)) => continue,
                    Err((_, e)) => return Err(Error::Io { path: lock_path, source: e.into() }),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::Io { path: lock_path, source: e }),
            };
            unmount_all(&dir.join("merged"));
            let size = crate::gc::tree_size(&dir);
            match crate::gc::remove_tree(&dir) {
                Ok(()) => {
                    removed += 1;
                    bytes += size;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { path: dir, source: e }),
            }
        }
        Ok((removed, bytes))
    }
}

/// The most the kernel takes as mount data: one page, with its terminating NUL.
const MAX_MOUNT_DATA: usize = 4095;

/// Mounts an overlay of `lowers` (topmost first) at `target`, writable when `upper_work` is
/// given.
///
/// Long stacks: when the option string would not fit in a page, every directory is passed as
/// `/proc/self/fd/<n>` of an `O_PATH` descriptor held open across the mount(2) call (overlayfs
/// resolves its paths at mount time), which keeps each path under 20 bytes. Only when even that
/// does not fit (some 200 layers) is it an error.
pub fn mount_overlay(
    target: &Path,
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    flags: MsFlags,
) -> Result<()> {
    let plain = |fds: bool| -> Result<(String, Vec<OwnedFd>)> {
        let mut held = Vec::new();
        let mut name = |p: &Path| -> Result<String> {
            if fds {
                let fd =
                    nix::fcntl::open(p, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                        .map_err(|e| Error::Io { path: p.to_path_buf(), source: e.into() })?;
                let s = format!("/proc/self/fd/{}", fd.as_raw_fd());
                held.push(fd);
                Ok(s)
            } else {
                Ok(escape(p))
            }
        };
        let mut opts = String::from("lowerdir=");
        for (i, lower) in lowers.iter().enumerate() {
            if i > 0 {
                opts.push(':');
            }
            opts.push_str(&name(lower)?);
        }
        if let Some((upper, work)) = upper_work {
            opts.push_str(",upperdir=");
            opts.push_str(&name(upper)?);
            opts.push_str(",workdir=");
            opts.push_str(&name(work)?);
        }
        Ok((opts, held))
    };
    let (mut opts, mut held) = plain(false)?;
    // The extra options we add below need at most this much room (the writable ones are the
    // longer). In a user namespace they include `userxattr` (see `crate::userns`).
    let (rw_extra, ro_extra) = (crate::userns::rw_options(), crate::userns::ro_options());
    if opts.len() + rw_extra.len() > MAX_MOUNT_DATA {
        (opts, held) = plain(true)?;
    }
    if opts.len() + rw_extra.len() > MAX_MOUNT_DATA {
        return Err(Error::Mount { target: target.to_path_buf(), source: Errno::E2BIG });
    }
    let try_mount = |data: &str| mount(Some("overlay"), target, Some("overlay"), flags, Some(data));
    let result = match upper_work {
        // Keep the upper a plain diff of the lowers: no index, no redirects, no metacopy
        // files. Older kernels that reject one of these options mount without them; never in a
        // user namespace, where that would drop `userxattr` (and `userxattr` needs a kernel
        // that knows them all).
        Some(_) => try_mount(&format!("{opts}{rw_extra}")).or_else(|e| match e {
            Errno::EINVAL if !crate::userns::in_userns() => try_mount(&opts),
            e => Err(e),
        }),
        None => try_mount(&format!("{opts}{ro_extra}")),
    };
    drop(held);
    result.map_err(|source| Error::Mount { target: target.to_path_buf(), source })
}

/// A path as an overlay option value: `\`, `,` and `:` escaped with a backslash.
fn escape(p: &Path) -> String {
    let mut out = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Unmounts everything stacked at `path` (lazily), if anything is.
fn unmount_all(path: &Path) {
    for _ in 0..16 {
        if !hostutil::mountinfo::is_mount_point(path) || umount2(path, MntFlags::MNT_DETACH).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_overlay_paths() {
        assert_eq!(escape(Path::new("/a:b,c\\d")), "/a\\:b\\,c\\\\d");
    }
}
