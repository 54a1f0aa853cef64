//! Volumes: directories in the store that outlive containers, in docker's layout:
//! `volumes/<name>/volume.json` (what it is) and `volumes/<name>/_data/` (what a container sees).
//!
//! Every change (create, remove, prune) happens under `volumes/.lock` (flock). The lock's name
//! starts with a dot so that no volume can be called that: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` is the
//! rule. A volume appears and disappears by a rename (from and to `.creating-*` / `.removing-*`),
//! so a reader without the lock never sees half of one. Which containers use a volume is read
//! from the containers' `config.json` ([`volume_users`]), never recorded twice.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::spec::MountRequest;

/// Docker's rule for local volume names, as its errors print it.
const NAME_CHARS: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]";

/// The label docker puts on anonymous volumes (and `inspect` shows).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Errors of volumes and of the mount flags (`-v`, `--mount`, `--tmpfs`), worded as docker's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "create {0}: \"{0}\" includes invalid characters for a local volume name, only \"{NAME_CHARS}\" are \
         allowed. If you intended to pass a host directory, use absolute path"
    )]
    InvalidName(String),
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("remove {name}: volume is in use - [{}]", users.join(", "))]
    InUse { name: String, users: Vec<String> },
    /// Something is mounted inside the volume's directory on this host: deleting it would
    /// delete what that mount shows.
    #[error("remove {name}: {mountpoint} is mounted inside the volume: unmount it first")]
    Mounted { name: String, mountpoint: PathBuf },
    /// A `-v`, `--mount` or `--tmpfs` value that cannot be used; the message is whole.
    #[error("{0}")]
    InvalidMount(String),
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading the containers that use volumes failed.
    #[error(transparent)]
    Containers(Box<crate::Error>),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Docker's local volume name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    crate::container::valid_name(name)
}

/// A fresh name: 64 hex digits, as docker's.
fn random_name() -> String {
    format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>())
}

/// `volume.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    name: String,
    driver: String,
    /// RFC 3339 with nanoseconds, UTC.
    created: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    anonymous: bool,
}

/// A volume as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    /// The `_data` directory: what is mounted into containers.
    pub mountpoint: PathBuf,
    /// RFC 3339 with nanoseconds, UTC.
    pub created: String,
    pub labels: BTreeMap<String, String>,
    /// Made for one container (`-v /path`, `--mount` without source, an image's `VOLUME`):
    /// `rm -v` and `--rm` remove it, and `volume prune` without `-a` only removes these.
    pub anonymous: bool,
}

impl Volume {
    /// The driver; only docker's `local` exists here.
    pub fn driver(&self) -> &'static str {
        "local"
    }

    /// The labels as docker shows them: anonymous volumes carry [`ANONYMOUS_LABEL`].
    pub fn docker_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        if self.anonymous {
            labels.entry(ANONYMOUS_LABEL.to_string()).or_default();
        }
        labels
    }

    /// Bytes of the files in it, each hard-linked file once (as docker's `volume prune` and
    /// `system df` count), without crossing into other filesystems.
    pub fn size(&self) -> Result<u64, Error> {
        dir_size(&self.mountpoint)
    }
}

/// The `volumes/` directory of a store.
#[derive(Debug, Clone)]
pub struct Volumes {
    root: PathBuf,
}

/// The store-wide volume lock, held while volumes are created or removed.
struct VolumesLock(#[allow(dead_code)] Flock<File>);

impl Volumes {
    pub fn open(store_root: &Path) -> Result<Volumes, Error> {
        let root = store_root.join("volumes");
        fs::create_dir_all(&root).map_err(io_at(&root))?;
        Ok(Volumes { root })
    }

    /// Where a volume of this name lives (whether or not it exists).
    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Takes the lock, then clears what a process killed in the middle of a change left: with
    /// the lock held, no `.creating-*` or `.removing-*` directory belongs to a live change.
    fn lock(&self) -> Result<VolumesLock, Error> {
        let path = self.root.join(".lock");
        let f =
            OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_at(&path))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive)
            .map(VolumesLock)
            .map_err(|(_, e)| Error::Io { path, source: e.into() })?;
        for entry in fs::read_dir(&self.root).map_err(io_at(&self.root))? {
            let entry = entry.map_err(io_at(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".creating-") || name.starts_with(".removing-") {
                let path = entry.path();
                refuse_if_mounted(&name, &path)?;
                fs::remove_dir_all(&path).map_err(io_at(&path))?;
            }
        }
        Ok(lock)
    }

    /// Creates a volume, or returns the one of that name if it exists (as docker's `volume
    /// create`, which is idempotent; its labels are left as they are). `None`: a random
    /// 64-hex-digit name.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<Volume, Error> {
        if let Some(name) = name
            && !valid_name(name)
        {
            return Err(Error::InvalidName(name.to_string()));
        }
        let _lock = self.lock()?;
        let name = match name {
            Some(name) => {
                match self.get(name) {
                    Ok(v) => return Ok(v),
                    Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
                name.to_string()
            }
            None => loop {
                let name = random_name();
                if !self.dir(&name).exists() {
                    break name;
                }
            },
        };
        let record = Record {
            name: name.clone(),
            driver: "local".to_string(),
            created: crate::container::now_rfc3339(),
            labels,
            anonymous,
        };
        let tmp = self.root.join(format!(".creating-{name}"));
        // Docker's modes: the volume's directory is for root only, the content is readable.
        fs::DirBuilder::new().mode(0o701).create(&tmp).map_err(io_at(&tmp))?;
        let data = tmp.join("_data");
        fs::DirBuilder::new().mode(0o755).create(&data).map_err(io_at(&data))?;
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|e| Error::Corrupt { path: tmp.join("volume.json"), reason: e.to_string() })?;
        let meta = tmp.join("volume.json");
        File::create(&meta).and_then(|mut f| f.write_all(&json)).map_err(io_at(&meta))?;
        let dir = self.dir(&name);
        fs::rename(&tmp, &dir).map_err(io_at(&dir))?;
        self.emit(&name, "create");
        self.get(&name)
    }

    /// The volume `-v NAME:/path` names, created if missing.
    pub fn ensure(&self, name: &str) -> Result<Volume, Error> {
        match self.get(name) {
            Err(Error::NotFound(_)) => self.create(Some(name), BTreeMap::new(), false),
            found => found,
        }
    }

    pub fn get(&self, name: &str) -> Result<Volume, Error> {
        if !valid_name(name) {
            return Err(Error::NotFound(name.to_string()));
        }
        let dir = self.dir(name);
        let meta = dir.join("volume.json");
        let bytes = match fs::read(&meta) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound(name.to_string())),
            Err(e) => return Err(io_at(&meta)(e)),
        };
        let record: Record = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt { path: meta.clone(), reason: e.to_string() })?;
        if record.name != name {
            return Err(Error::Corrupt { path: meta, reason: format!("records the name {:?}", record.name) });
        }
        Ok(Volume {
            name: record.name,
            mountpoint: dir.join("_data"),
            created: record.created,
            labels: record.labels,
            anonymous: record.anonymous,
        })
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_at(&self.root))? {
            let name = entry.map_err(io_at(&self.root))?.file_name().to_string_lossy().into_owned();
            if !valid_name(&name) {
                continue;
            }
            match self.get(&name) {
                Ok(v) => out.push(v),
                // Removed since the directory was read.
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes a volume and its content. `users` are the ids of the containers that use it
    /// (from [`volume_users`]): any refuses, even with `force`, as docker does. `force` only
    /// makes a missing volume no error.
    pub fn remove(&self, name: &str, users: &[String], force: bool) -> Result<(), Error> {
        let _lock = self.lock()?;
        match self.get(name) {
            Ok(_) => {}
            Err(Error::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        }
        if !users.is_empty() {
            return Err(Error::InUse { name: name.to_string(), users: users.to_vec() });
        }
        self.delete(name)
    }

    /// Removes the volumes no container uses (`in_use`: names, from [`volume_users`]): only
    /// anonymous ones, or every one with `all` (docker 23's `volume prune` and `-a`). Returns
    /// each removed volume's name and the bytes it held, by name.
    pub fn prune(&self, in_use: &BTreeSet<String>, all: bool) -> Result<Vec<(String, u64)>, Error> {
        self.prune_where(in_use, all, |_| true)
    }

    /// [`Volumes::prune`] of the volumes `wanted` picks (`volume prune --filter label=...`).
    pub fn prune_where(
        &self,
        in_use: &BTreeSet<String>,
        all: bool,
        wanted: impl Fn(&Volume) -> bool,
    ) -> Result<Vec<(String, u64)>, Error> {
        let _lock = self.lock()?;
        let mut removed = Vec::new();
        for v in self.list()? {
            if in_use.contains(&v.name) || !(all || v.anonymous) || !wanted(&v) {
                continue;
            }
            let size = v.size()?;
            self.delete(&v.name)?;
            removed.push((v.name, size));
        }
        Ok(removed)
    }

    /// `system df`'s line for volumes: how many, how many a container uses (`in_use`, names),
    /// their bytes, and those of the unused ones.
    pub fn disk_usage(&self, in_use: &BTreeSet<String>) -> Result<crate::container::Usage, Error> {
        let mut u = crate::container::Usage::default();
        for v in self.list()? {
            let bytes = v.size()?;
            u.total += 1;
            u.bytes += bytes;
            if in_use.contains(&v.name) {
                u.active += 1;
            } else {
                u.reclaimable += bytes;
            }
        }
        Ok(u)
    }

    /// Deletes a volume's directory; the lock is held and the volume exists. Renamed first, so
    /// that a deletion cut short never leaves half a volume listed.
    fn delete(&self, name: &str) -> Result<(), Error> {
        let dir = self.dir(name);
        refuse_if_mounted(name, &dir)?;
        let trash = self.root.join(format!(".removing-{name}"));
        fs::rename(&dir, &trash).map_err(io_at(&dir))?;
        fs::remove_dir_all(&trash).map_err(io_at(&trash))?;
        self.emit(name, "destroy");
        Ok(())
    }

    /// A volume's event, as dockerd's (`driver=local`).
    fn emit(&self, name: &str, action: &str) {
        let Some(root) = self.root.parent() else { return };
        let attrs = [("driver".to_string(), "local".to_string())];
        crate::events::emit(root, crate::events::Event::new("volume", action, name, attrs));
    }
}

/// Volume name -> ids of the containers whose mounts name it (each id once, oldest container
/// first), from every `containers/<id>/config.json` of the store.
pub fn volume_users(store_root: &Path) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let containers =
        crate::container::Containers::open(store_root).map_err(|e| Error::Containers(Box::new(e)))?;
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in containers.list().map_err(|e| Error::Containers(Box::new(e)))? {
        for m in &c.config.host.mounts {
            if let MountRequest::Volume { name, .. } = m {
                let ids = users.entry(name.clone()).or_default();
                if !ids.iter().any(|id| id == c.id().as_str()) {
                    ids.push(c.id().to_string());
                }
            }
        }
    }
    Ok(users)
}

/// Fails if anything is mounted at or below `dir` in this mount namespace: `remove_dir_all`
/// would walk into that mount and delete what it shows (a host directory, say).
fn refuse_if_mounted(name: &str, dir: &Path) -> Result<(), Error> {
    let mounts = hostutil::mountinfo::read().map_err(io_at(Path::new("/proc/self/mountinfo")))?;
    match mounts.into_iter().map(|m| m.mount_point).find(|p| p.starts_with(dir)) {
        Some(mountpoint) => Err(Error::Mounted { name: name.to_string(), mountpoint }),
        None => Ok(()),
    }
}

/// Sum of the sizes of everything but directories below `dir`, hard links counted once, on
/// `dir`'s filesystem only.
pub(crate) fn dir_size(dir: &Path) -> Result<u64, Error> {
    let root_dev = fs::symlink_metadata(dir).map_err(io_at(dir))?.dev();
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(io_at(&d))? {
            let entry = entry.map_err(io_at(&d))?;
            let path = entry.path();
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Deleted by a container while we count.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(&path)(e)),
            };
            if meta.dev() != root_dev {
                continue;
            }
            if meta.is_dir() {
                stack.push(path);
            } else if meta.nlink() == 1 || seen.insert(meta.ino()) {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_names_are_valid_and_distinct() {
        let (a, b) = (random_name(), random_name());
        assert_eq!(a.len(), 64);
        assert!(valid_name(&a));
        assert_ne!(a, b);
    }

    #[test]
    fn errors_read_as_docker_s() {
        assert_eq!(
            Error::InvalidName("./x".into()).to_string(),
            "create ./x: \"./x\" includes invalid characters for a local volume name, only \
             \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use \
             absolute path"
        );
        let in_use = Error::InUse { name: "data".into(), users: vec!["ab".into(), "cd".into()] };
        assert_eq!(in_use.to_string(), "remove data: volume is in use - [ab, cd]");
        assert_eq!(Error::NotFound("x".into()).to_string(), "get x: no such volume");
    }
}
