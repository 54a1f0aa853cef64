//! Cache mounts as content: `RUN --mount=type=cache` directories exported with a build cache
//! (`--cache-to ...,cache-mounts=true`) and imported by the first RUN that mounts the id on a
//! store that has no such cache yet.
//!
//! A mount is described by a [`MountContent`]: every directory, file and symlink with its mode,
//! owner and mtime, and for each file the digest of its bytes and where they are: a *blob* of
//! the export. The blobs are content-addressed, so an unchanged file is never uploaded twice:
//! - a file of [`BIG`] bytes or more is a blob of its own (its digest is its content's), so
//!   the same download in two caches, or in two exports of one, is one blob;
//! - smaller files are *packed*: their bytes back to back in blobs of about [`PACK_TARGET`]
//!   bytes. One blob per small file would make a pip or npm cache tens of thousands of
//!   uploads; one tar of the whole mount would upload everything again when one file is added.
//!   So a new export keeps every pack of the previous export (remembered in the mount's
//!   `exported.json`) whose files are all still there unchanged, and packs only the files that
//!   are new or changed. An append-heavy cache (apt's archives, pip's wheels) uploads what was
//!   added; a pack that lost a file is made again from its remaining files (at most
//!   [`PACK_TARGET`] bytes re-sent for a deleted file).
//!
//! Files are hashed only when their size or mtime differs from the previous export's entry.
//! The blobs are written into the store (from where every backend uploads them; gc removes
//! them later, since nothing references them) only when the store does not have them.
//!
//! Import trusts nothing it reads: every path must be relative and made of normal components,
//! every entry's parent a directory the import itself created (a symlink in the cache can never
//! lead a later entry out of it), and every file's bytes must match its digest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use cache::{Digest, Hasher, Store};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The media type of a cache-mount blob in a cache manifest.
pub const BLOB_MEDIA_TYPE: &str = "application/vnd.rbuild.cachemount.blob.v1";

/// Files at least this big are a blob each.
pub const BIG: u64 = 1 << 20;

/// Small files are packed into blobs of about this size.
pub const PACK_TARGET: u64 = 8 << 20;

/// Why a cache mount could not be exported or imported.
#[derive(Debug, thiserror::Error)]
pub enum MountContentError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cache mount entry {0:?}: not a plain relative path inside the mount")]
    BadPath(String),
    #[error("cache mount entry {0:?}: its directory is not in the mount")]
    NoParent(String),
    #[error("cache mount entry {path:?}: content does not match {digest}")]
    Corrupt { path: String, digest: Digest },
    #[error("cache mount entry {0:?}: a file without its blob")]
    NoBlob(String),
    #[error(transparent)]
    Store(#[from] cache::Error),
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> MountContentError + '_ {
    move |source| MountContentError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
}

/// One directory, file or symlink of a cache mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the mount, `/`-separated.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (with setuid, setgid, sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    #[serde(default)]
    pub mtime_nsec: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// A file's content digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The blob holding a file's bytes (none for an empty file), at `offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<Digest>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// A symlink's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A blob of an export: a pack or a big file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
}

/// What one cache mount holds, as exported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountContent {
    /// Parents before children.
    pub entries: Vec<Entry>,
    /// Every blob the entries name, once.
    pub blobs: Vec<BlobRef>,
}

impl MountContent {
    /// The bytes of the files.
    pub fn size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    pub fn descriptors(&self) -> Vec<cache::oci::Descriptor> {
        self.blobs
            .iter()
            .map(|b| cache::oci::Descriptor {
                media_type: BLOB_MEDIA_TYPE.to_string(),
                digest: b.digest.clone(),
                size: b.size,
                annotations: Default::default(),
                platform: None,
            })
            .collect()
    }
}

/// What [`capture`] did, for the export's message and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub files: usize,
    /// Files whose bytes were read to hash them (the others matched the previous export).
    pub hashed: usize,
    /// Packs of the previous export kept as they were.
    pub packs_kept: usize,
    /// Blobs written into the store by this capture.
    pub blobs_written: usize,
}

/// The directory of cache mount `id` in `store` (its `shared/` is what builds mount).
pub fn mount_root(store: &Store, id: &str) -> PathBuf {
    store.root().join("cache/mounts").join(&Digest::of(id.as_bytes()).hex()[..32])
}

/// The content of the last export of (or import into) the mount at `root`.
pub fn previous(root: &Path) -> Option<MountContent> {
    let bytes = fs::read(root.join("exported.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Remembers `content` as what the mount at `root` last exported or imported.
pub fn remember(root: &Path, content: &MountContent) -> Result<(), MountContentError> {
    // Plain data: serialization cannot fail.
    let bytes = serde_json::to_vec(content).unwrap_or_default();
    let tmp = root.join(".exported.json.tmp");
    fs::write(&tmp, bytes).map_err(io_at(&tmp))?;
    let dest = root.join("exported.json");
    fs::rename(&tmp, &dest).map_err(io_at(&dest))
}

/// The total size of the regular files under `dir`.
pub fn tree_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok().filter(|m| m.is_file()))
        .map(|m| m.len())
        .sum()
}

/// Describes the tree at `dir` and makes sure `store` has every blob the description names.
/// `previous` is the last export's description: unchanged files are not hashed again and its
/// packs whose files are all unchanged are kept. Special files (devices, fifos, sockets) and
/// names that are not UTF-8 are left out.
pub fn capture(
    store: &Store,
    dir: &Path,
    previous: Option<&MountContent>,
) -> Result<(MountContent, CaptureStats), MountContentError> {
    let mut stats = CaptureStats::default();
    let mut entries = Vec::new();
    let mut paths = Vec::new();
    for item in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            MountContentError::Io { path, source: e.into() }
        })?;
        let Ok(rel) = item.path().strip_prefix(dir) else { continue };
        let Some(rel) = rel.to_str().map(str::to_string) else { continue };
        let meta = fs::symlink_metadata(item.path()).map_err(io_at(item.path()))?;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else {
            continue;
        };
        let target = match kind {
            EntryKind::Symlink => {
                let t = fs::read_link(item.path()).map_err(io_at(item.path()))?;
                match t.to_str() {
                    Some(t) => Some(t.to_string()),
                    None => continue,
                }
            }
            _ => None,
        };
        entries.push(Entry {
            path: rel,
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            size: if kind == EntryKind::File { meta.len() } else { 0 },
            digest: None,
            blob: None,
            offset: 0,
            target,
        });
        paths.push(item.path().to_path_buf());
    }

    // Content digests: the previous export's where size and mtime match.
    let before: HashMap<&str, &Entry> =
        previous.map(|p| p.entries.iter().map(|e| (e.path.as_str(), e)).collect()).unwrap_or_default();
    let known = |e: &Entry| {
        before.get(e.path.as_str()).and_then(|p| {
            (p.kind == EntryKind::File
                && p.size == e.size
                && p.mtime == e.mtime
                && p.mtime_nsec == e.mtime_nsec)
                .then(|| p.digest.clone())
                .flatten()
        })
    };
    let digests: Vec<Option<Result<Digest, MountContentError>>> = entries
        .par_iter()
        .zip(paths.par_iter())
        .map(|(e, path)| {
            if e.kind != EntryKind::File {
                return None;
            }
            Some(match known(e) {
                Some(d) => Ok(d),
                None => hash_file(path),
            })
        })
        .collect();
    for (e, d) in entries.iter_mut().zip(digests) {
        if let Some(d) = d {
            if known(e).is_none() {
                stats.hashed += 1;
            }
            stats.files += 1;
            e.digest = Some(d?);
        }
    }

    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    // Big files: a blob each.
    for (e, path) in entries.iter_mut().zip(&paths) {
        if e.kind == EntryKind::File
            && e.size >= BIG
            && let Some(d) = &e.digest
        {
            if !store.keep_blob(d) {
                let file = File::open(path).map_err(io_at(path))?;
                store.ingest_blob(file, Some(d))?;
                stats.blobs_written += 1;
            }
            e.blob = Some(d.clone());
            blobs.insert(d.clone(), e.size);
        }
    }

    // Small files: the previous packs whose files are all here unchanged stay.
    let index: HashMap<String, usize> =
        entries.iter().enumerate().map(|(i, e)| (e.path.clone(), i)).collect();
    let mut packed: HashSet<usize> = HashSet::new();
    if let Some(prev) = previous {
        let mut members: BTreeMap<&Digest, Vec<&Entry>> = BTreeMap::new();
        for e in &prev.entries {
            if let Some(b) = &e.blob
                && e.size < BIG
            {
                members.entry(b).or_default().push(e);
            }
        }
        for (pack, mut files) in members {
            files.sort_by_key(|e| e.offset);
            let now: Option<Vec<usize>> = files
                .iter()
                .map(|old| {
                    index.get(&old.path).copied().filter(|&i| {
                        let e = &entries[i];
                        e.kind == EntryKind::File && e.digest == old.digest && e.size == old.size
                    })
                })
                .collect();
            let Some(now) = now else { continue };
            let pack_size: u64 = files.iter().map(|e| e.size).sum();
            if !store.keep_blob(pack) {
                // Made again from the files (their digests were just checked); a pack whose
                // files were not back to back is not ours to rebuild.
                let contiguous = files.iter().scan(0u64, |at, e| {
                    let ok = e.offset == *at;
                    *at += e.size;
                    Some(ok)
                });
                if !contiguous.into_iter().all(|ok| ok) {
                    continue;
                }
                let made = write_pack(store, now.iter().map(|&i| &paths[i]))?;
                if &made.0 != pack {
                    continue;
                }
                stats.blobs_written += 1;
            }
            for (&i, old) in now.iter().zip(&files) {
                entries[i].blob = Some(pack.clone());
                entries[i].offset = old.offset;
                packed.insert(i);
            }
            blobs.insert(pack.clone(), pack_size);
            stats.packs_kept += 1;
        }
    }

    // The rest, in path order, into new packs.
    let rest: Vec<usize> = (0..entries.len())
        .filter(|&i| {
            let e = &entries[i];
            e.kind == EntryKind::File && e.size > 0 && e.size < BIG && !packed.contains(&i)
        })
        .collect();
    let mut group: Vec<usize> = Vec::new();
    let mut group_size = 0;
    let mut flush = |group: &mut Vec<usize>, entries: &mut Vec<Entry>| -> Result<(), MountContentError> {
        if group.is_empty() {
            return Ok(());
        }
        let (digest, size) = write_pack(store, group.iter().map(|&i| &paths[i]))?;
        stats.blobs_written += 1;
        let mut at = 0;
        for &i in group.iter() {
            entries[i].blob = Some(digest.clone());
            entries[i].offset = at;
            at += entries[i].size;
        }
        if at != size {
            // A file changed size while it was packed: the description would be wrong.
            let i = group[0];
            return Err(MountContentError::Corrupt { path: entries[i].path.clone(), digest });
        }
        blobs.insert(digest, size);
        group.clear();
        Ok(())
    };
    for i in rest {
        group.push(i);
        group_size += entries[i].size;
        if group_size >= PACK_TARGET {
            flush(&mut group, &mut entries)?;
            group_size = 0;
        }
    }
    flush(&mut group, &mut entries)?;

    let blobs = blobs.into_iter().map(|(digest, size)| BlobRef { digest, size }).collect();
    Ok((MountContent { entries, blobs }, stats))
}

fn hash_file(path: &Path) -> Result<Digest, MountContentError> {
    let mut file = File::open(path).map_err(io_at(path))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buf).map_err(io_at(path))?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

/// Writes the files' bytes back to back as a blob; returns its digest and size.
fn write_pack<'a>(
    store: &Store,
    files: impl Iterator<Item = &'a PathBuf>,
) -> Result<(Digest, u64), MountContentError> {
    let readers: Vec<PathBuf> = files.cloned().collect();
    let mut chain: Box<dyn Read> = Box::new(io::empty());
    for path in readers {
        let f = File::open(&path).map_err(io_at(&path))?;
        chain = Box::new(chain.chain(f));
    }
    Ok(store.ingest_blob(chain, None)?)
}

/// Creates the tree `content` describes at `dest` (which must not exist), reading file bytes
/// from the blobs in `store`.
pub fn materialize(store: &Store, content: &MountContent, dest: &Path) -> Result<(), MountContentError> {
    fs::create_dir(dest).map_err(io_at(dest))?;
    let mut dirs: HashSet<String> = HashSet::new();
    dirs.insert(String::new());
    let mut made_dirs: Vec<(&Entry, PathBuf)> = Vec::new();
    let mut blobs: HashMap<Digest, File> = HashMap::new();
    for e in &content.entries {
        let rel = Path::new(&e.path);
        let plain = !e.path.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(MountContentError::BadPath(e.path.clone()));
        }
        let parent = rel.parent().and_then(Path::to_str).unwrap_or("");
        if !dirs.contains(parent) {
            return Err(MountContentError::NoParent(e.path.clone()));
        }
        let path = dest.join(rel);
        match e.kind {
            EntryKind::Dir => {
                fs::create_dir(&path).map_err(io_at(&path))?;
                dirs.insert(e.path.clone());
                made_dirs.push((e, path));
                continue;
            }
            EntryKind::Symlink => {
                let target = e.target.as_deref().unwrap_or_default();
                std::os::unix::fs::symlink(target, &path).map_err(io_at(&path))?;
            }
            EntryKind::File => {
                let mut out =
                    File::options().write(true).create_new(true).open(&path).map_err(io_at(&path))?;
                let digest = e.digest.clone().ok_or_else(|| MountContentError::NoBlob(e.path.clone()))?;
                let mut hasher = Hasher::new();
                if e.size > 0 {
                    let blob = e.blob.as_ref().ok_or_else(|| MountContentError::NoBlob(e.path.clone()))?;
                    if !blobs.contains_key(blob) {
                        blobs.insert(blob.clone(), store.open_blob(blob)?);
                    }
                    let file =
                        blobs.get_mut(blob).ok_or_else(|| MountContentError::NoBlob(e.path.clone()))?;
                    let blob_path = store.blob_path(blob);
                    file.seek(SeekFrom::Start(e.offset)).map_err(io_at(&blob_path))?;
                    let mut left = e.size;
                    let mut buf = vec![0u8; (256 << 10).min(e.size as usize)];
                    while left > 0 {
                        let want = buf.len().min(left as usize);
                        let n = file.read(&mut buf[..want]).map_err(io_at(&blob_path))?;
                        if n == 0 {
                            return Err(MountContentError::Corrupt { path: e.path.clone(), digest });
                        }
                        hasher.update(&buf[..n]);
                        out.write_all(&buf[..n]).map_err(io_at(&path))?;
                        left -= n as u64;
                    }
                }
                if hasher.finish() != digest {
                    return Err(MountContentError::Corrupt { path: e.path.clone(), digest });
                }
                fs::set_permissions(&path, fs::Permissions::from_mode(e.mode & 0o777))
                    .map_err(io_at(&path))?;
            }
        }
        set_owner_and_time(&path, e);
    }
    // Directories last, deepest first: their mtimes would move with every entry made in them.
    for (e, path) in made_dirs.iter().rev() {
        fs::set_permissions(path, fs::Permissions::from_mode(e.mode & 0o777)).map_err(io_at(path))?;
        set_owner_and_time(path, e);
    }
    Ok(())
}

/// Owner (then the setuid/setgid/sticky bits, which chown clears) and mtime. Failures are
/// ignored: rootless, the ids may not be mapped, and a cache is only a cache.
fn set_owner_and_time(path: &Path, e: &Entry) {
    let _ = std::os::unix::fs::lchown(path, Some(e.uid), Some(e.gid));
    if e.kind != EntryKind::Symlink && e.mode & 0o7000 != 0 {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(e.mode));
    }
    let time = nix::sys::time::TimeSpec::new(e.mtime, e.mtime_nsec);
    let _ = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path.as_os_str().as_bytes(),
        &time,
        &time,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn write(dir: &Path, rel: &str, data: &[u8]) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    #[test]
    fn an_appended_file_is_the_only_new_blob() {
        let (_d, store) = store();
        let src = tempfile::tempdir().unwrap();
        for i in 0..50 {
            write(src.path(), &format!("small/{i}"), format!("file {i}").as_bytes());
        }
        write(src.path(), "big/a.deb", &vec![7u8; 3 << 20]);
        std::os::unix::fs::symlink("big/a.deb", src.path().join("link")).unwrap();
        let (first, s1) = capture(&store, src.path(), None).unwrap();
        assert_eq!((s1.files, s1.hashed), (51, 51));
        assert_eq!(first.blobs.len(), 2, "one pack and one big file");

        write(src.path(), "small/new", b"new file");
        write(src.path(), "big/b.deb", &vec![9u8; 2 << 20]);
        let (second, s2) = capture(&store, src.path(), Some(&first)).unwrap();
        assert_eq!(s2.hashed, 2, "only the new files are read");
        assert_eq!(s2.packs_kept, 1);
        let old: HashSet<_> = first.blobs.iter().map(|b| &b.digest).collect();
        let new: Vec<_> = second.blobs.iter().filter(|b| !old.contains(&b.digest)).collect();
        assert_eq!(new.len(), 2, "a pack of the new small file and the new big file: {new:?}");
        assert_eq!(new.iter().map(|b| b.size).sum::<u64>(), 8 + (2 << 20));

        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("m");
        materialize(&store, &second, &dest).unwrap();
        assert_eq!(fs::read(dest.join("small/7")).unwrap(), b"file 7");
        assert_eq!(fs::read(dest.join("small/new")).unwrap(), b"new file");
        assert_eq!(fs::read(dest.join("big/b.deb")).unwrap().len(), 2 << 20);
        assert_eq!(fs::read_link(dest.join("link")).unwrap(), Path::new("big/a.deb"));
        let (again, _) = capture(&store, &dest, None).unwrap();
        let meta = |c: &MountContent| -> Vec<String> {
            c.entries
                .iter()
                .map(|e| {
                    let (mode, mtime, digest) = (e.mode, (e.mtime, e.mtime_nsec), &e.digest);
                    format!(
                        "{} {:?} {mode:o} {}:{} {mtime:?} {} {digest:?} {:?}",
                        e.path, e.kind, e.uid, e.gid, e.size, e.target
                    )
                })
                .collect()
        };
        assert!(meta(&again) == meta(&second), "mode, owner and mtime come back");
    }

    #[test]
    fn a_deleted_file_remakes_only_its_pack() {
        let (_d, store) = store();
        let src = tempfile::tempdir().unwrap();
        write(src.path(), "a", b"aaa");
        write(src.path(), "b", b"bbb");
        let (first, _) = capture(&store, src.path(), None).unwrap();
        fs::remove_file(src.path().join("b")).unwrap();
        let (second, s) = capture(&store, src.path(), Some(&first)).unwrap();
        assert_eq!(s.packs_kept, 0);
        assert_eq!(second.blobs, vec![BlobRef { digest: Digest::of(b"aaa"), size: 3 }]);
    }

    #[test]
    fn import_refuses_paths_that_leave_the_mount() {
        let (_d, store) = store();
        let out = tempfile::tempdir().unwrap();
        let entry = |path: &str, kind, target: Option<&str>| Entry {
            path: path.into(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            size: 0,
            digest: Some(Digest::of(b"")),
            blob: None,
            offset: 0,
            target: target.map(Into::into),
        };
        for (n, entries) in [
            vec![entry("../x", EntryKind::File, None)],
            vec![entry("/etc/x", EntryKind::File, None)],
            vec![entry("l", EntryKind::Symlink, Some("/etc")), entry("l/passwd", EntryKind::File, None)],
        ]
        .into_iter()
        .enumerate()
        {
            let content = MountContent { entries, blobs: vec![] };
            let err = materialize(&store, &content, &out.path().join(n.to_string())).unwrap_err();
            assert!(matches!(err, MountContentError::BadPath(_) | MountContentError::NoParent(_)), "{err}");
        }
    }

    #[test]
    fn a_file_whose_bytes_do_not_match_is_refused() {
        let (_d, store) = store();
        let blob = store.write_blob(b"evil").unwrap();
        let out = tempfile::tempdir().unwrap();
        let content = MountContent {
            entries: vec![Entry {
                path: "f".into(),
                kind: EntryKind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                mtime_nsec: 0,
                size: 4,
                digest: Some(Digest::of(b"good")),
                blob: Some(blob.clone()),
                offset: 0,
                target: None,
            }],
            blobs: vec![BlobRef { digest: blob, size: 4 }],
        };
        let err = materialize(&store, &content, &out.path().join("m")).unwrap_err();
        assert!(matches!(err, MountContentError::Corrupt { .. }), "{err}");
    }
}
