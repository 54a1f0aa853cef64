//! A container's file system as `cp` sees it: what its processes see, volumes included.
//!
//! Running, that is `/proc/PID/root` of its PID 1: the descriptor reaches the container's own
//! mount namespace, so its volumes, bind mounts and tmpfs are there as the container has them.
//!
//! Stopped, the overlay is mounted (read-only for reading, over the upper for writing) in a
//! mount namespace of its own, made by one short-lived thread (`unshare(CLONE_NEWNS)` acts on
//! the calling thread only), with the container's volumes and bind mounts on top as docker
//! mounts them for `cp`. The thread hands back a descriptor of the overlay's root and one of the
//! namespace; path lookups from the first cross into the namespace's mounts from any thread. No
//! mount ever appears in the namespace rbuild runs in, and when both descriptors are closed (or
//! the process dies) the kernel tears the namespace and its mounts down. The container's lock is
//! held meanwhile, so it cannot start on an upper directory we have mounted.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::Mode;

use super::tree::Tree;
use crate::container::{Container, ContainerLock, Containers};
use crate::spec::MountRequest;
use crate::{Error, Result};

/// A container's root, open for a copy; dropping it releases what it holds.
pub(crate) struct ContainerRoot {
    pub tree: Tree,
    /// The private mount namespace of a stopped container's overlay, kept alive by this.
    _ns: Option<OwnedFd>,
    _mountpoint: Option<tempfile::TempDir>,
    _lock: Option<ContainerLock>,
}

/// Opens the root of container `c` (writable: for a copy into it).
pub(crate) fn open_root(store: &cache::Store, c: &Container, writable: bool) -> Result<ContainerRoot> {
    let containers = Containers::open(store.root())?;
    let lock = containers.lock(c.id())?;
    let c = containers.load(c.id())?;
    if c.is_alive() {
        let proc = format!("/proc/{}/root", c.state.pid);
        let fd = open(proc.as_str(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty());
        // Checked again after the open: the PID could have been reused in between, and then
        // the descriptor would be another process's root.
        if let Ok(fd) = fd
            && c.is_alive()
        {
            return Ok(ContainerRoot { tree: Tree::in_root(fd), _ns: None, _mountpoint: None, _lock: None });
        }
    }
    if writable && c.config.host.read_only {
        return Err(Error::Conflict("container rootfs is marked read-only".into()));
    }
    let image = store.image(&c.config.image_id)?;
    let mut lowers = vec![c.init_layer()];
    lowers.extend(store.lower_dirs(&image.layers())?);
    let (upper, work) = (c.upper(), c.work());
    let upper_work = if writable {
        Some((upper.as_path(), work.as_path()))
    } else {
        // Read-only, the upper is just the topmost lower: overlayfs honours its whiteouts and
        // opaque directories there as in any layer, and never writes to it.
        lowers.insert(0, upper.clone());
        None
    };
    let binds = binds(store, &c)?;
    let mountpoint = store.temp_dir("rootfs-")?;
    let target = mountpoint.path().to_path_buf();
    let (root, ns) = std::thread::scope(|s| {
        s.spawn(|| mount_private(&lowers, upper_work, &target, &binds)).join().unwrap_or_else(|_| {
            Err(Error::Invalid("mounting the container's file system: the thread panicked".into()))
        })
    })
    .map_err(|e| match e {
        Error::Io { path, source } if path == target => {
            Error::Invalid(format!("mounting the file system of container {}: {source}", c.name()))
        }
        e => e,
    })?;
    Ok(ContainerRoot {
        tree: Tree::in_root(root),
        _ns: Some(ns),
        _mountpoint: Some(mountpoint),
        _lock: Some(lock),
    })
}

/// The container's own file system for `export`: its layers and its writable layer, read-only,
/// without volumes, binds or tmpfs (docker exports the container's root file system, not what
/// is mounted on it). A running container is read while it runs (its upper directory as the
/// topmost lower of a second, read-only overlay); a stopped one is locked meanwhile so that it
/// cannot start.
pub(crate) fn open_layers(store: &cache::Store, c: &Container) -> Result<ContainerRoot> {
    let containers = Containers::open(store.root())?;
    let lock = containers.lock(c.id())?;
    let c = containers.load(c.id())?;
    let lock = if c.is_alive() { None } else { Some(lock) };
    let image = store.image(&c.config.image_id)?;
    let mut lowers = vec![c.upper(), c.init_layer()];
    lowers.extend(store.lower_dirs(&image.layers())?);
    let mountpoint = store.temp_dir("rootfs-")?;
    let target = mountpoint.path().to_path_buf();
    let (root, ns) = std::thread::scope(|s| {
        s.spawn(|| mount_private(&lowers, None, &target, &[])).join().unwrap_or_else(|_| {
            Err(Error::Invalid("mounting the container's file system: the thread panicked".into()))
        })
    })?;
    Ok(ContainerRoot { tree: Tree::in_root(root), _ns: Some(ns), _mountpoint: Some(mountpoint), _lock: lock })
}

/// A bind mount over the stopped container's overlay.
struct Bind {
    source: PathBuf,
    target: String,
    readonly: bool,
}

/// The container's volumes and bind mounts (parents first, as they are mounted when it runs),
/// then its /etc/hosts, /etc/hostname and /etc/resolv.conf. Tmpfs mounts hold nothing while
/// the container is stopped; volumes removed since are left out.
fn binds(store: &cache::Store, c: &Container) -> Result<Vec<Bind>> {
    let volumes = crate::volume::Volumes::open(store.root())?;
    let mut mounts = c.config.host.mounts.clone();
    mounts.sort_by_key(|m| m.target().trim_end_matches('/').matches('/').count());
    let mut out = Vec::new();
    for m in &mounts {
        match m {
            MountRequest::Volume { name, target, readonly, .. } => match volumes.get(name) {
                Ok(v) => out.push(Bind { source: v.mountpoint, target: target.clone(), readonly: *readonly }),
                Err(crate::volume::Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            },
            MountRequest::Bind { source, target, readonly } => {
                out.push(Bind { source: source.clone(), target: target.clone(), readonly: *readonly });
            }
            MountRequest::Tmpfs { .. } => {}
        }
    }
    for (file, target) in [
        (c.hosts_path(), "/etc/hosts"),
        (c.hostname_path(), "/etc/hostname"),
        (c.resolv_path(), "/etc/resolv.conf"),
    ] {
        if file.is_file() {
            out.push(Bind { source: file, target: target.into(), readonly: false });
        }
    }
    Ok(out)
}

/// Runs on a thread of its own: a new mount namespace for this thread, the overlay at
/// `target`, the binds on it; returns descriptors of the overlay's root and of the namespace.
fn mount_private(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    target: &Path,
    binds: &[Bind],
) -> Result<(OwnedFd, OwnedFd)> {
    let sys = |what: &str| {
        let what = PathBuf::from(what);
        move |e: Errno| Error::Io { path: what.clone(), source: e.into() }
    };
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS).map_err(sys("unshare(CLONE_NEWNS)"))?;
    // Private, so that nothing mounted here propagates back to the host's namespace.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(sys("making / private"))?;
    mount_overlay(lowers, upper_work, target)?;
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root = open(target, dir_flags, Mode::empty()).map_err(super::tree::io_err(target))?;
    let tree =
        Tree::in_root(root.try_clone().map_err(|e| Error::Io { path: target.to_path_buf(), source: e })?);
    for b in binds {
        let at = Path::new(&b.target);
        // Resolved inside the container: a symlink there cannot aim the mount at the host.
        let fd = match tree.open(at, OFlag::O_PATH) {
            Ok(fd) => fd,
            // Never started (no mount point made yet) or removed by the image: nothing to show.
            Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
            Err(e) => return Err(super::tree::io_err(at)(e)),
        };
        let on = format!("/proc/self/fd/{}", fd.as_raw_fd());
        mount(
            Some(b.source.as_path()),
            on.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(super::tree::io_err(&b.source))?;
        if b.readonly {
            let fd = tree.open(at, OFlag::O_PATH).map_err(super::tree::io_err(at))?;
            let on = format!("/proc/self/fd/{}", fd.as_raw_fd());
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(None::<&str>, on.as_str(), None::<&str>, flags, None::<&str>)
                .map_err(super::tree::io_err(at))?;
        }
    }
    let ns = open("/proc/thread-self/ns/mnt", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(sys("/proc/thread-self/ns/mnt"))?;
    Ok((root, ns))
}

/// The store's overlay mount (same options, same long-path handling), read-only without an
/// upper.
fn mount_overlay(lowers: &[PathBuf], upper_work: Option<(&Path, &Path)>, target: &Path) -> Result<()> {
    let flags = if upper_work.is_some() { MsFlags::empty() } else { MsFlags::MS_RDONLY };
    Ok(cache::mount_overlay(target, lowers, upper_work, flags)?)
}
