//! A container's files: `cp` in both directions, `diff`, `commit`.
//!
//! `cp` works on what the container's processes see, volumes included, running or stopped
//! ([`rootfs`]); every path in the container is resolved inside it, never on the host
//! ([`tree`]). Paths follow docker's rules (`SRC/.` copies a directory's content, a trailing
//! `/` says "a directory", a directory lands inside an existing one, a file replaces a file).
//! `diff` and `commit` read the upper directory straight from the store: `commit` tars it with
//! the layer writer builds use, so a committed layer is the same bytes a RUN making the same
//! changes would give.

mod diff;
mod rootfs;
mod tar;
mod tree;

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use cache::oci::{self, History};
use cache::{Compression, Image, ImageRef, Store};
use hostutil::gopath::clean_absolute_path;
use nix::errno::Errno;
use nix::sys::stat::SFlag;

pub use diff::{Change, ChangeKind};

use crate::container::{Config, Container, Containers, Status};
use crate::{Error, Result};
use tree::{DirSink, Owner, Tree, io_err, is};

/// `cp`'s flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// `-a`: keep owners (uid/gid) as they are at the source. Without it, what is copied into a
    /// container belongs to its root, and what is copied out to whoever runs the copy.
    pub archive: bool,
    /// `-L`: copy what a symlink at the source path points to, not the link.
    pub follow_link: bool,
}

/// The host side of a copy out of a container.
pub enum HostDest<'a> {
    Path(&'a Path),
    /// `-`: a tar stream.
    Tar(&'a mut dyn Write),
}

/// The host side of a copy into a container.
pub enum HostSource<'a> {
    Path(&'a Path),
    /// `-`: a tar stream, extracted into the destination directory.
    Tar(&'a mut dyn Read),
}

/// How a source path asks to be copied.
struct SourcePath {
    /// Absolute and clean.
    path: PathBuf,
    /// `DIR/.` (or `/`): the directory's content, not the directory.
    contents_only: bool,
    /// A trailing `/` or `/.`: it must be a directory (and a symlink there is followed).
    wants_dir: bool,
}

impl SourcePath {
    fn parse(raw: &Path) -> SourcePath {
        let bytes = raw.as_os_str().as_bytes();
        let path = clean_absolute_path(raw);
        let contents_only = bytes.ends_with(b"/.") || bytes == b"." || path == Path::new("/");
        let wants_dir = contents_only || bytes.ends_with(b"/");
        SourcePath { path, contents_only, wants_dir }
    }

    /// The name the copy gets at its destination.
    fn name(&self) -> OsString {
        self.path.file_name().map_or_else(|| OsString::from("."), OsStr::to_os_string)
    }
}

/// Where a copy's entries go in a destination tree: into directory `.0`, the copied thing
/// itself named `.1` there (or, `None`, its content merged into the directory).
type Placement = (PathBuf, Option<OsString>);

/// Docker's rules for a destination path: into an existing directory (under the source's name,
/// or merged for `SRC/.`), over an existing file (a file only), or as a new entry of an existing
/// parent directory (a new directory, or a new file if the path does not end in `/`). A symlink
/// at the destination path is followed, inside `tree`.
fn place(tree: &Tree, dest: &Path, src: &SourcePath, src_is_dir: bool) -> Result<Placement> {
    let bytes = dest.as_os_str().as_bytes();
    let asserts_dir = bytes.ends_with(b"/") || bytes.ends_with(b"/.") || bytes == b".";
    let (resolved, st) = tree.resolve_last(&clean_absolute_path(dest))?;
    let split = |p: &Path| -> Placement {
        let parent = p.parent().unwrap_or(Path::new("/")).to_path_buf();
        (parent, Some(p.file_name().map_or_else(|| OsString::from("."), OsStr::to_os_string)))
    };
    match st {
        Some(st) if is(&st, SFlag::S_IFDIR) => {
            Ok((resolved, if src_is_dir && src.contents_only { None } else { Some(src.name()) }))
        }
        Some(_) if asserts_dir => Err(io_err(dest)(Errno::ENOTDIR)),
        Some(_) if src_is_dir => {
            Err(Error::Conflict(format!("cannot copy a directory to a file: {}", dest.display())))
        }
        Some(_) => Ok(split(&resolved)),
        None => {
            let parent = resolved.parent().unwrap_or(Path::new("/"));
            match tree.lookup(parent, true)? {
                Some((_, st)) if is(&st, SFlag::S_IFDIR) => {}
                Some(_) => return Err(io_err(parent)(Errno::ENOTDIR)),
                None => return Err(io_err(parent)(Errno::ENOENT)),
            }
            if !src_is_dir && asserts_dir {
                return Err(Error::Invalid(format!("{}: no such directory", dest.display())));
            }
            Ok(split(&resolved))
        }
    }
}

/// The docker error for a path missing in a container.
fn no_such_path(what: &str, path: &Path) -> Error {
    Error::Invalid(format!("No such container:path: {what}:{}", path.display()))
}

/// Opens the source of a copy; `None` if there is nothing at its path.
fn open_source(
    tree: &Tree,
    src: &SourcePath,
    opts: &CopyOptions,
) -> Result<Option<(std::os::fd::OwnedFd, nix::sys::stat::FileStat)>> {
    let found = match tree.lookup(&src.path, opts.follow_link || src.wants_dir) {
        Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOTDIR) => None,
        r => r?,
    };
    if let Some((_, st)) = &found
        && src.wants_dir
        && !is(st, SFlag::S_IFDIR)
    {
        return Err(io_err(&src.path)(Errno::ENOTDIR));
    }
    Ok(found)
}

/// `cp CONTAINER:SRC DEST`: copies `src` of the container `what` (a name or id) to the host.
/// Returns the bytes of file data copied.
pub fn copy_out(
    store: &Store,
    what: &str,
    src: &Path,
    dest: HostDest<'_>,
    opts: &CopyOptions,
) -> Result<u64> {
    let c = Containers::open(store.root())?.find(what)?;
    let root = rootfs::open_root(store, &c, false)?;
    let src = SourcePath::parse(src);
    let (fd, st) = open_source(&root.tree, &src, opts)?.ok_or_else(|| no_such_path(what, &src.path))?;
    match dest {
        HostDest::Tar(out) => {
            let name = if src.contents_only { b".".to_vec() } else { src.name().as_bytes().to_vec() };
            tree::walk(&fd, &st, &src.path, &mut tar::TarSink::new(out, name))
        }
        HostDest::Path(dest) => {
            let host = Tree::host();
            let dest = absolute(dest)?;
            let (dir, name) = place(&host, &dest, &src, is(&st, SFlag::S_IFDIR))?;
            let owner = if opts.archive { Owner::Keep } else { Owner::Caller };
            tree::walk(&fd, &st, &src.path, &mut DirSink::new(&host, dir, name, owner))
        }
    }
}

/// `cp SRC CONTAINER:DEST`: copies `src` from the host into the container `what`. Returns the
/// bytes of file data copied.
pub fn copy_in(
    store: &Store,
    src: HostSource<'_>,
    what: &str,
    dest: &Path,
    opts: &CopyOptions,
) -> Result<u64> {
    let c = Containers::open(store.root())?.find(what)?;
    let owner = if opts.archive { Owner::Keep } else { Owner::Fixed(0, 0) };
    match src {
        HostSource::Tar(input) => {
            let root = rootfs::open_root(store, &c, true)?;
            let dest = clean_absolute_path(dest);
            match root.tree.lookup(&dest, true)? {
                Some((_, st)) if is(&st, SFlag::S_IFDIR) => {}
                Some(_) => {
                    return Err(Error::Invalid(format!(
                        "destination \"{what}:{}\" must be a directory",
                        dest.display()
                    )));
                }
                None => return Err(no_such_path(what, &dest)),
            }
            tar::read_tar(input, &mut DirSink::new(&root.tree, dest, None, owner))
        }
        HostSource::Path(src_path) => {
            let host = Tree::host();
            let src = SourcePath::parse(&absolute(src_path)?);
            let (fd, st) = open_source(&host, &src, opts)?.ok_or_else(|| io_err(src_path)(Errno::ENOENT))?;
            let root = rootfs::open_root(store, &c, true)?;
            let (dir, name) =
                place(&root.tree, dest, &src, is(&st, SFlag::S_IFDIR)).map_err(|e| match e {
                    Error::Io { path, source } if source.raw_os_error() == Some(libc::ENOENT) => {
                        no_such_path(what, &path)
                    }
                    e => e,
                })?;
            tree::walk(&fd, &st, &src.path, &mut DirSink::new(&root.tree, dir, name, owner))
        }
    }
}

/// What is at a path in a container, as docker's `archive` endpoints describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    /// The last component of the path as asked (`/` for the root).
    pub name: String,
    pub size: u64,
    /// `st_mode`: the file type and permission bits.
    pub mode: u32,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
    /// For a symlink, the path it leads to in the container (resolved inside it), else empty.
    pub link_target: String,
}

/// What is at `path` in container `what`, not following a symlink in its last component
/// (unless the path ends in `/` or `/.`); `None` if nothing is there.
pub fn stat_path(store: &Store, what: &str, path: &Path) -> Result<Option<PathStat>> {
    let c = Containers::open(store.root())?.find(what)?;
    let root = rootfs::open_root(store, &c, false)?;
    let src = SourcePath::parse(path);
    let found = match root.tree.lookup(&src.path, src.wants_dir) {
        Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOTDIR) => None,
        r => r?,
    };
    let Some((_, st)) = found else { return Ok(None) };
    let link_target = if is(&st, SFlag::S_IFLNK) {
        root.tree.resolve_last(&src.path)?.0.display().to_string()
    } else {
        String::new()
    };
    let name = src.path.file_name().map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned());
    Ok(Some(PathStat {
        name,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mode: st.st_mode,
        mtime: (st.st_mtime, st.st_mtime_nsec),
        link_target,
    }))
}

/// `export`: container `c`'s file system (its image's layers and its changes, without volumes
/// or other mounts) as a tar stream on `out`, entries named from the root (`bin/sh`). Returns
/// the bytes of file data written.
pub fn export(store: &Store, c: &Container, out: &mut dyn Write) -> Result<u64> {
    let root = rootfs::open_layers(store, c)?;
    let (fd, st) = root
        .tree
        .lookup(Path::new("/"), true)?
        .ok_or_else(|| Error::Invalid(format!("container {} has no root file system", c.name())))?;
    tree::walk(&fd, &st, Path::new("/"), &mut tar::TarSink::new(out, Vec::new()))
}

/// `p` made absolute against the working directory, keeping a trailing `/` or `/.`.
fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| Error::Io { path: PathBuf::from("."), source: e })?;
    let mut bytes = cwd.into_os_string().into_vec();
    bytes.push(b'/');
    bytes.extend_from_slice(p.as_os_str().as_bytes());
    Ok(PathBuf::from(OsString::from_vec(bytes)))
}

/// `diff`: what container `c` changed in its image's file system, sorted by path.
pub fn diff(store: &Store, c: &Container) -> Result<Vec<Change>> {
    let image = store.image(&c.config.image_id)?;
    let mut lowers = vec![c.init_layer()];
    lowers.extend(store.lower_dirs(&image.layers())?);
    diff::changes(&c.upper(), &lowers)
}

/// `commit`'s options.
#[derive(Debug, Clone)]
pub struct CommitOptions<'a> {
    /// `-a`: the image's author.
    pub author: Option<String>,
    /// `-m`: the history entry's comment.
    pub comment: Option<String>,
    /// `-p`: freeze a running container while its changes are read.
    pub pause: bool,
    pub compression: Compression,
    /// The new image's container config: [`commit_config`], with `-c` changes applied.
    pub config: oci::ContainerConfig,
    /// `REPO[:TAG]` to give the image; without one it is kept as a dangling image.
    pub reference: Option<&'a ImageRef>,
}

/// The config an image committed from a container starts with: the image's, with what the
/// container runs with (docker commits the container's `Config`: its env, command,
/// entrypoint, working directory, user, labels, exposed ports, volumes and stop signal).
pub fn commit_config(image: &oci::ContainerConfig, c: &Config) -> oci::ContainerConfig {
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let text = |s: &String| (!s.is_empty()).then(|| s.clone());
    let set = |v: &Vec<String>| {
        (!v.is_empty()).then(|| v.iter().map(|k| (k.clone(), serde_json::json!({}))).collect())
    };
    oci::ContainerConfig {
        user: text(&c.user),
        env: list(&c.env),
        entrypoint: list(&c.entrypoint),
        cmd: list(&c.cmd),
        working_dir: text(&c.working_dir),
        labels: (!c.labels.is_empty()).then(|| c.labels.clone()),
        exposed_ports: set(&c.exposed_ports),
        volumes: set(&c.volumes),
        stop_signal: c.stop_signal.clone(),
        // The container's (the image's with --health-* over it), as docker commits it.
        healthcheck: c
            .healthcheck
            .as_ref()
            .and_then(|h| serde_json::to_value(h).ok())
            .or_else(|| image.healthcheck.clone()),
        ..image.clone()
    }
}

/// `commit`: a new image, container `c`'s image plus one layer of its changes, with
/// `opts.config`; tagged with `opts.reference` if given. The history entry records the
/// container's command, as docker's does.
pub fn commit(store: &Store, c: &Container, opts: &CommitOptions<'_>) -> Result<Image> {
    let containers = Containers::open(store.root())?;
    let image = store.image(&c.config.image_id)?;
    let layer = {
        let _lock = containers.lock(c.id())?;
        let c = containers.load(c.id())?;
        let _frozen = if opts.pause { freeze(&c)? } else { None };
        store.commit_layer(
            &c.upper(),
            &cache::CommitOptions { compression: opts.compression, source_date_epoch: None },
        )?
    };
    let now = crate::container::now_rfc3339();
    let mut config = image.config.clone();
    config.created = Some(now.clone());
    config.author = opts.author.clone();
    config.config = opts.config.clone();
    config.history.push(History {
        created: Some(now),
        created_by: Some(c.config.config.cmd.join(" ")),
        author: opts.author.clone(),
        comment: opts.comment.clone(),
        empty_layer: false,
    });
    config.rootfs.diff_ids.push(layer.diff_id.clone());
    let mut layers = image.layers();
    layers.push(layer);
    let new = store.put_image(&config, &layers)?;
    match opts.reference {
        Some(r) => store.tag(r, &new.digest)?,
        None => store.keep_dangling(&new.digest)?,
    }
    // dockerd reports a commit as the container's event, naming the new image.
    let attrs = [
        ("comment", opts.comment.clone().unwrap_or_default()),
        ("imageID", new.digest.to_string()),
        ("imageRef", opts.reference.map(ToString::to_string).unwrap_or_default()),
    ];
    crate::events::emit(store.root(), crate::events::container(c, "commit", &attrs));
    Ok(new)
}

/// A container frozen for `commit`: thawed when dropped.
struct Frozen(executor::cgroup::Cgroup);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.0.thaw();
    }
}

/// Freezes a running container for `commit`, as docker pauses it, so that its upper directory
/// does not change while it is read. Not one that is already paused (it stays so), nor one
/// without a cgroup (rootless rbuild runs containers without one).
fn freeze(c: &Container) -> Result<Option<Frozen>> {
    if !c.is_alive() || c.state.status == Status::Paused {
        return Ok(None);
    }
    let Some(name) = &c.state.cgroup else { return Ok(None) };
    let cgroup = executor::cgroup::Cgroup::open(name)?;
    if cgroup.is_frozen() {
        return Ok(None);
    }
    cgroup.freeze()?;
    Ok(Some(Frozen(cgroup)))
}
