//! `RUN --mount`: what each mount of a RUN step becomes in the sandbox.
//!
//! - `bind` of the context: the included subtree (`.dockerignore` applied, as BuildKit's
//!   context transfer would give) hard-linked into a temporary directory; read-only by default,
//!   with `rw` an overlay whose upper is thrown away after the step.
//! - `bind` of a stage or image: the layer directories holding `source` stacked as an overlay
//!   (one layer: a plain bind); `rw` adds a throwaway upper.
//! - `cache`: `<store>/cache/mounts/<sha256(id)>/`, kept across builds and never part of a key
//!   or a layer. `sharing=shared` users hold a shared flock, `locked` an exclusive one (so it
//!   waits for everyone), `private` takes the shared directory only if nobody uses it, else a
//!   `private-N` directory of its own.
//! - `tmpfs`: a fresh tmpfs.
//! - `secret`: the bytes of `--secret id=...` as a read-only file on a tmpfs inside the
//!   sandbox (executor's `MountKind::Secret`), and/or an environment variable. Only the id is
//!   in the step's key; the bytes reach no layer, history entry or cache record.

use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cache::{Layer, Store};
use frontend::{CacheSharing, RunMount};
use hostutil::inroot;
use nix::fcntl::{Flock, FlockArg};

use crate::context::ContextError;
use crate::fsutil::clean_relative;

/// Where `--secret id=...` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    /// An environment variable of the rbuild process.
    Env(String),
}

/// One `--secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub id: String,
    pub source: SecretSource,
}

impl Secret {
    fn read(&self) -> Result<Vec<u8>, MountError> {
        match &self.source {
            SecretSource::File(p) => fs::read(p).map_err(|source| MountError::SecretFile {
                id: self.id.clone(),
                path: p.clone(),
                source,
            }),
            SecretSource::Env(var) => std::env::var_os(var)
                .map(|v| v.into_encoded_bytes())
                .ok_or_else(|| MountError::SecretEnvUnset { id: self.id.clone(), var: var.clone() }),
        }
    }
}

/// Why a `RUN --mount` could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("secret {id:?}: reading {}", path.display())]
    SecretFile {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {id:?}: environment variable {var} is not set")]
    SecretEnvUnset { id: String, var: String },
    #[error("secret {id:?} is required but was not given (--secret id={id},src=FILE)")]
    SecretMissing { id: String },
    #[error("ssh agent {id:?} is required but was not given (--ssh {id}[=SOCKET|KEY])")]
    SshMissing { id: String },
    #[error(transparent)]
    Ssh(#[from] crate::SshError),
    #[error("secret {id:?} contains a NUL byte, so it cannot be the variable {var}")]
    SecretNul { id: String, var: String },
    #[error("--mount source {path:?}")]
    Context {
        path: String,
        #[source]
        source: ContextError,
    },
    #[error("--mount source {path:?}: not found")]
    NotFound { path: String },
    #[error("--mount source {path:?}: {}", at.display())]
    Io {
        path: String,
        at: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache mount at {}", dir.display())]
    CacheDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Giving a new cache directory its `uid`/`gid` failed (EINVAL: the id is not mapped in a
    /// rootless user namespace).
    #[error("cache mount at {}: chown to {uid}:{gid}", dir.display())]
    CacheOwner {
        dir: PathBuf,
        uid: u32,
        gid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] cache::Error),
}

/// What the mounts of one RUN need, kept alive until the step has been committed.
pub(crate) struct Prepared {
    /// What went wrong without failing the step (a cache mount that could not be imported).
    pub warnings: Vec<String>,
    pub mounts: Vec<executor::Mount>,
    /// `NAME=value` entries for secrets with `env=`.
    pub env: Vec<String>,
    /// The first ssh mount's socket: `SSH_AUTH_SOCK`, unless the step's environment has one.
    pub ssh_auth_sock: Option<String>,
    /// Targets whose empty stubs (made by the sandbox as mount points) are removed from the
    /// step's upper directory.
    pub targets: Vec<String>,
    _views: Vec<cache::ReadonlyMount>,
    _temp: Vec<tempfile::TempDir>,
    _locks: Vec<Flock<File>>,
    /// Each removes its own socket; its directory is in `_temp`.
    _proxies: Vec<crate::ssh::Proxy>,
}

/// Where a bind or cache mount reads from.
pub(crate) enum Source<'a> {
    Context(&'a crate::context::Context),
    Layers(Vec<Layer>),
}

/// Prepares `mounts`; `sources[i]` is where mount `i` reads from (its `from=`: the context, or
/// a stage's or image's layers), for bind mounts and cache mounts seeded `from=` (None else).
/// The solver resolves them first, so that waiting for a stage (and a cancellation while it
/// waits) stays the solver's business.
pub(crate) fn prepare(
    store: &Store,
    mounts: &[RunMount],
    secrets: &[Secret],
    ssh: &[crate::SshSource],
    sources: Vec<Option<Source<'_>>>,
    cache_from: &crate::CacheSources,
) -> Result<Prepared, MountError> {
    let mut p = Prepared {
        warnings: Vec::new(),
        mounts: Vec::new(),
        env: Vec::new(),
        ssh_auth_sock: None,
        targets: Vec::new(),
        _views: Vec::new(),
        _temp: Vec::new(),
        _locks: Vec::new(),
        _proxies: Vec::new(),
    };
    let mut ssh_index = 0;
    for (m, from) in mounts.iter().zip(sources) {
        match m {
            RunMount::Bind { target, source, readwrite, .. } => {
                let io = |at: &Path| {
                    let at = at.to_path_buf();
                    move |e| MountError::Io { path: source.clone(), at, source: e }
                };
                let Some(from) = from else { return Err(MountError::NotFound { path: source.clone() }) };
                let kind = match from {
                    Source::Context(ctx) => {
                        let tmp = store.temp_dir("mount-")?;
                        let tree = tmp.path().join("tree");
                        ctx.link_tree(&clean_relative(source), &tree)
                            .map_err(|e| MountError::Context { path: source.clone(), source: e })?;
                        let kind = if *readwrite && tree.is_dir() {
                            throwaway_overlay(store, vec![tree], &mut p)?
                        } else if *readwrite {
                            // A hard link would write through to the user's file.
                            unlink_copy(&tree).map_err(io(&tree))?;
                            executor::MountKind::Bind { source: tree, readonly: false }
                        } else {
                            executor::MountKind::Bind { source: tree, readonly: !readwrite }
                        };
                        p._temp.push(tmp);
                        kind
                    }
                    Source::Layers(layers) => {
                        // The stage as it looks, mounted read-only for the step; `source` is
                        // resolved in it (its symlinks lead within the stage, never the host).
                        let view = store.mount_readonly(&layers)?;
                        let src = inroot::resolve(view.path(), Path::new(source)).map_err(io(view.path()))?;
                        let meta =
                            fs::metadata(&src).map_err(|_| MountError::NotFound { path: source.clone() })?;
                        let kind = if meta.is_dir() && *readwrite {
                            throwaway_overlay(store, vec![src], &mut p)?
                        } else if *readwrite {
                            // Writes to a bound layer file would change the stored layer.
                            let tmp = store.temp_dir("mount-")?;
                            let copy = tmp.path().join("file");
                            copy_tree(&src, &copy).map_err(io(&src))?;
                            p._temp.push(tmp);
                            executor::MountKind::Bind { source: copy, readonly: false }
                        } else {
                            executor::MountKind::Bind { source: src, readonly: true }
                        };
                        p._views.push(view);
                        kind
                    }
                };
                p.mounts.push(executor::Mount { target: target.clone(), kind });
                p.targets.push(target.clone());
            }
            RunMount::Cache { target, id, sharing, readonly, source, mode, uid, gid, .. } => {
                let dir = cache_dir(store, id, *sharing, &mut p)?;
                if !dir.exists() {
                    let import = Import { id, sources: cache_from, warnings: &mut p.warnings };
                    create_cache_dir(store, &dir, from, source, *mode, (*uid, *gid), import)?;
                }
                p.mounts.push(executor::Mount {
                    target: target.clone(),
                    kind: executor::MountKind::Bind { source: dir, readonly: *readonly },
                });
                p.targets.push(target.clone());
            }
            RunMount::Tmpfs { target, size } => {
                p.mounts.push(executor::Mount {
                    target: target.clone(),
                    kind: executor::MountKind::Tmpfs { size: *size },
                });
                p.targets.push(target.clone());
            }
            RunMount::Ssh { id, target, required, mode, uid, gid } => {
                let target = target.clone().unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_index}"));
                ssh_index += 1;
                let Some(source) = ssh.iter().find(|s| &s.id == id) else {
                    if *required {
                        return Err(MountError::SshMissing { id: id.clone() });
                    }
                    continue;
                };
                let dir = store.temp_dir("ssh-")?;
                let proxy = crate::ssh::Proxy::start(
                    source.socket(),
                    &dir.path().join("agent.sock"),
                    *uid,
                    *gid,
                    *mode,
                )?;
                p.mounts.push(executor::Mount {
                    target: target.clone(),
                    kind: executor::MountKind::Bind { source: proxy.path().to_path_buf(), readonly: false },
                });
                p.targets.push(target.clone());
                p.ssh_auth_sock.get_or_insert(target);
                p._proxies.push(proxy);
                p._temp.push(dir);
            }
            RunMount::Secret { id, target, env, required, mode, uid, gid } => {
                let Some(secret) = secrets.iter().find(|s| &s.id == id) else {
                    if *required {
                        return Err(MountError::SecretMissing { id: id.clone() });
                    }
                    continue;
                };
                let contents = secret.read()?;
                if let Some(var) = env.as_deref().filter(|v| !v.is_empty()) {
                    if contents.contains(&0) {
                        return Err(MountError::SecretNul { id: id.clone(), var: var.to_string() });
                    }
                    p.env.push(format!("{var}={}", String::from_utf8_lossy(&contents)));
                }
                if let Some(target) = target {
                    p.mounts.push(executor::Mount {
                        target: target.clone(),
                        kind: executor::MountKind::Secret { contents, mode: *mode, uid: *uid, gid: *gid },
                    });
                    p.targets.push(target.clone());
                }
            }
            // An in-memory file as a secret is, never on a disk the layer could take it from;
            // executable when its mode says so.
            RunMount::File { target, content, mode } => {
                p.mounts.push(executor::Mount {
                    target: target.clone(),
                    kind: executor::MountKind::Secret {
                        contents: content.clone().into_bytes(),
                        mode: *mode,
                        uid: 0,
                        gid: 0,
                    },
                });
                p.targets.push(target.clone());
            }
        }
    }
    // Parents before children, whatever order they were written in (as BuildKit sorts them).
    p.mounts.sort_by_key(|m| Path::new(&m.target).components().count());
    Ok(p)
}

/// A writable overlay over `lowers` whose writes vanish with the step.
fn throwaway_overlay(
    store: &Store,
    lowers: Vec<PathBuf>,
    p: &mut Prepared,
) -> Result<executor::MountKind, MountError> {
    let tmp = store.temp_dir("mount-rw-")?;
    let (upper, work) = (tmp.path().join("upper"), tmp.path().join("work"));
    for d in [&upper, &work] {
        fs::create_dir(d).map_err(|source| MountError::CacheDir { dir: d.clone(), source })?;
    }
    p._temp.push(tmp);
    Ok(executor::MountKind::Overlay { lowers, upper: Some((upper, work)) })
}

/// Replaces the hard link `path` with a copy of its content and mode.
fn unlink_copy(path: &Path) -> std::io::Result<()> {
    let tmp = path.with_extension("copy");
    fs::copy(path, &tmp)?;
    fs::rename(&tmp, path)
}

/// Picks (and locks as `sharing` says) the directory of cache mount `id`.
fn cache_dir(
    store: &Store,
    id: &str,
    sharing: CacheSharing,
    p: &mut Prepared,
) -> Result<PathBuf, MountError> {
    let root = crate::cachemounts::mount_root(store, id);
    fs::create_dir_all(&root).map_err(|source| MountError::CacheDir { dir: root.clone(), source })?;
    // For `system df -v` and the store's size limit: which id this is and when it was used
    // (the limit removes idle mounts least recently used first). Failures lose only that.
    let id_file = root.join("id");
    if !id_file.exists() {
        let _ = fs::write(&id_file, id);
    }
    if let Ok(f) = File::options().create(true).truncate(false).write(true).open(root.join("last-used")) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
    let lock = |name: &str, how: FlockArg| -> Result<Option<Flock<File>>, MountError> {
        let path = root.join(name);
        let err = |source| MountError::CacheDir { dir: path.clone(), source };
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(err)?;
        match Flock::lock(file, how) {
            Ok(l) => Ok(Some(l)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(err(e.into())),
        }
    };
    let (lock, dir) = match sharing {
        CacheSharing::Shared => (lock("shared.lock", FlockArg::LockShared)?, root.join("shared")),
        CacheSharing::Locked => (lock("shared.lock", FlockArg::LockExclusive)?, root.join("shared")),
        CacheSharing::Private => match lock("shared.lock", FlockArg::LockExclusiveNonblock)? {
            Some(l) => (Some(l), root.join("shared")),
            None => {
                let mut n = 1;
                loop {
                    if let Some(l) = lock(&format!("private-{n}.lock"), FlockArg::LockExclusiveNonblock)? {
                        break (Some(l), root.join(format!("private-{n}")));
                    }
                    n += 1;
                }
            }
        },
    };
    p._locks.extend(lock);
    Ok(dir)
}

/// Where a new cache directory without `from=` may come from: the build's `--cache-from`
/// sources that carry cache mounts.
struct Import<'a> {
    id: &'a str,
    sources: &'a crate::CacheSources,
    warnings: &'a mut Vec<String>,
}

/// A new cache directory: made aside and renamed into place, so a crash never leaves a
/// half-seeded cache. Seeded `from=` a stage or the context if the mount says so, else from a
/// `--cache-from` source that has the mount's content, else empty.
fn create_cache_dir(
    store: &Store,
    dir: &Path,
    seed: Option<Source<'_>>,
    source: &str,
    mode: u32,
    (uid, gid): (u32, u32),
    import: Import<'_>,
) -> Result<(), MountError> {
    let tmp = store.temp_dir("cache-mount-")?;
    let new = tmp.path().join("dir");
    let err = |source| MountError::CacheDir { dir: dir.to_path_buf(), source };
    let mut imported = None;
    match seed {
        None => match crate::buildcache::import_mount(store, import.sources, import.id, &new) {
            Ok(Some(content)) => imported = Some(content),
            Ok(None) => fs::create_dir(&new).map_err(err)?,
            Err(e) => {
                // A cache is only a cache: the step runs with an empty one.
                import
                    .warnings
                    .push(format!("{}; the cache mount starts empty", hostutil::errors::one_line(&e)));
                if new.exists() {
                    fs::remove_dir_all(&new).map_err(err)?;
                }
                fs::create_dir(&new).map_err(err)?;
            }
        },
        Some(Source::Context(ctx)) => {
            ctx.link_tree(&clean_relative(source), &new)
                .map_err(|e| MountError::Context { path: source.to_string(), source: e })?;
        }
        Some(Source::Layers(layers)) => {
            let mounted = store.mount_readonly(&layers)?;
            let from = inroot::resolve(mounted.path(), Path::new(source)).map_err(err)?;
            copy_tree(&from, &new).map_err(err)?;
        }
    }
    std::os::unix::fs::chown(&new, Some(uid), Some(gid)).map_err(|source| MountError::CacheOwner {
        dir: dir.to_path_buf(),
        uid,
        gid,
        source,
    })?;
    fs::set_permissions(&new, fs::Permissions::from_mode(mode)).map_err(err)?;
    match fs::rename(&new, dir) {
        Ok(()) => {
            // What an export of the shared directory can keep as it is (a private one's
            // content is not the shared one's).
            if let Some(content) = imported
                && dir.file_name().is_some_and(|n| n == "shared")
                && let Some(root) = dir.parent()
            {
                let _ = crate::cachemounts::remember(root, &content);
            }
            Ok(())
        }
        // Another build made it first: theirs is as good.
        Err(_) if dir.is_dir() => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Copies a tree with modes, owners and symlinks (for seeding a cache mount from a stage).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() {
        fs::create_dir(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
        return std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()));
    } else if meta.is_file() {
        fs::copy(from, to)?;
    } else {
        return Ok(());
    }
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
}

/// Removes from a step's `upper` the empty mount points the sandbox made for `targets` (and
/// the directories it made for them), so a mount leaves no trace in the layer. Paths that
/// exist in a lower layer are the image's and stay; a directory of the image that overlayfs
/// copied up only to make a stub in it (empty in `upper`, not opaque, with the image's mode
/// and owner) goes too, or every RUN would commit an `etc/` entry for its /etc/hosts.
pub(crate) fn remove_stubs(upper: &Path, lowers: &[PathBuf], targets: &[String]) {
    let mut stack = vec![upper];
    stack.extend(lowers.iter().map(PathBuf::as_path));
    for target in targets {
        // Where the sandbox made it: symlinks in the image resolved as the sandbox did.
        let Ok(mut rel) = inroot::resolve_stacked(&stack, Path::new(target)) else { continue };
        while !rel.as_os_str().is_empty() {
            let path = upper.join(&rel);
            if let Some(lower) = lowers.iter().find_map(|l| fs::symlink_metadata(l.join(&rel)).ok()) {
                if !is_bare_copy_up(&path, &lower) || fs::remove_dir(&path).is_err() {
                    break;
                }
                rel.pop();
                continue;
            }
            let removed = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => fs::remove_dir(&path).is_ok(),
                Ok(m) if m.is_file() && m.len() == 0 => fs::remove_file(&path).is_ok(),
                _ => false,
            };
            if !removed {
                break;
            }
            rel.pop();
        }
    }
}

/// Whether `path` in the upper directory is a directory overlayfs copied up unchanged from
/// `lower`: empty, not opaque, same mode and owner.
fn is_bare_copy_up(path: &Path, lower: &fs::Metadata) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else { return false };
    meta.is_dir()
        && lower.is_dir()
        && meta.mode() == lower.mode()
        && meta.uid() == lower.uid()
        && meta.gid() == lower.gid()
        && fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
        && !cache::userns::is_opaque(path).unwrap_or(true)
}
