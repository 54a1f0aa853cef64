//! The build context, read once per build: one (parallel) walk that applies `.dockerignore`,
//! then source matching and content checksums for COPY/ADD served from that index.
//!
//! - Symlinks are entries of their own and are never followed by the walk; a COPY source whose
//!   path goes through a symlink is resolved like `hostutil::inroot::resolve` does, but over the
//!   included entries only, so it stays in the (filtered) context.
//! - An excluded directory is not walked at all when no `!` pattern could re-include anything
//!   below it; an excluded directory that does hold re-included paths is kept (as their parent)
//!   but nothing else below it is.
//! - The Dockerfile and the ignore file get no special treatment: as BuildKit documents, they
//!   are read by the builder but `COPY`/`ADD` do not see them when `.dockerignore` excludes them.
//! - Checksums follow `checksum.rs` exactly (the same digest for the same files): relative
//!   paths, types, permission bits, sizes, contents and symlink targets, never mtimes or owners.
//!   File digests can be remembered across builds in a hash cache keyed by the file's stat
//!   (absolute path, dev, inode, size, mtime and ctime in ns, mode), so a rebuild only reads the
//!   files that changed.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use cache::{Digest, Hasher};
use rayon::prelude::*;

use crate::dockerignore::{self, DockerIgnore, go_match};
use crate::fsutil::clean_relative;

/// Why the build context, or a source in it, could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{path:?}: not found in the build context (or excluded by .dockerignore)")]
    NotFound { path: PathBuf },
    /// The context failed to load earlier in this build (the error is kept for every step
    /// that asks).
    #[error(transparent)]
    Loading(std::sync::Arc<ContextError>),
    #[error(transparent)]
    Ignore(#[from] dockerignore::LoadError),
    #[error("saving the context's file digests to {}", path.display())]
    HashCache {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An I/O error about `path`.
fn io_at(path: &Path) -> impl Fn(io::Error) -> ContextError + Copy + '_ {
    move |source| ContextError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

impl Kind {
    fn letter(self) -> &'static str {
        match self {
            Kind::Dir => "d",
            Kind::File => "f",
            Kind::Symlink => "l",
            Kind::Other => "o",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    rel: PathBuf,
    kind: Kind,
    /// Permission bits (`& 0o7777`).
    mode: u32,
    size: u64,
    stat: Stat,
    /// Index of the first entry after this one's subtree.
    end: usize,
}

/// What the hash cache compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    /// st_mode (type and permission bits).
    mode: u32,
}

impl Stat {
    fn of(m: &fs::Metadata) -> Stat {
        Stat {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            mode: m.mode(),
        }
    }
}

/// The walked build context.
pub struct Context {
    root: PathBuf,
    /// Included entries sorted by path (component-wise), the root first (`rel` empty); each
    /// directory is directly followed by its subtree.
    entries: Vec<Entry>,
    /// Path -> entry, made on first use (COPY asks for every file it copies); lookups before
    /// that binary-search `entries`, so a build that only checksums never builds it.
    index: OnceLock<HashMap<OsString, usize>>,
    /// Where the hash cache and the sums live (None: no caching).
    cache_dir: Option<PathBuf>,
    /// Loaded on first use: a rebuild whose sources' stats all match a remembered sum never
    /// reads it.
    hash_cache: OnceLock<Option<HashCache>>,
    sums: OnceLock<Option<Sums>>,
    /// Files whose contents were read by `checksum` (not taken from the hash cache).
    hashed: AtomicUsize,
    /// `checksum_key` calls no remembered sum answered.
    summed: AtomicUsize,
}

/// Per shown path, what a checksum saw there (file digest, link target, directory mode).
pub type FileList = Vec<(String, String)>;

/// A sha256 digest's 32 bytes: the hash cache keeps 100,000s of them.
type Raw = [u8; 32];

/// Remembered digests by path in the context, with the stat they were computed for. Fx: the
/// keys are paths of the user's own tree, and SipHash was a third of the cost of loading it.
type Digests = rustc_hash::FxHashMap<OsString, (Stat, Raw)>;

/// Checksums of whole sources by the fingerprint of their entries' stats (see
/// [`Context::checksum_key`]), newest last.
struct Sums {
    file: PathBuf,
    list: Mutex<Vec<(Raw, Raw)>>,
}

const SUMS_MAGIC: &[u8] = b"rbuild context sums v1\n";
/// Sums kept per context: one per COPY source set of the last builds' Dockerfiles.
const SUMS_KEPT: usize = 256;

/// The hash cache file is a log: records are appended when digests are learnt, a later record
/// of a path wins, and the file is rewritten (compacted, forgetting files the context no longer
/// has) only when it holds twice as many records as the map, or the map more paths than the
/// context has files. A rebuild after a one-file change appends one record instead of
/// rewriting 100,000 (that rewrite was 110 ms of a 340 ms rebuild).
struct HashCache {
    file: PathBuf,
    state: Mutex<CacheState>,
}

/// The digests known, read in place from the file's bytes: loading 100,000 records into a map
/// of owned paths took 20-45 ms of a one-file-changed rebuild; indexing them by the hash of
/// their path takes a fraction (no allocation per record).
struct CacheState {
    /// The file as loaded.
    loaded: Vec<u8>,
    /// FxHash of a path -> offset in `loaded` of its newest record. Two paths with the same
    /// hash: the later wins, the other is a miss (hashed again), never a wrong digest (the
    /// record's path is compared).
    index: rustc_hash::FxHashMap<u64, usize>,
    /// Digests learnt since loading.
    added: Digests,
    /// Records in the file (a path may have several).
    records: usize,
    /// The file is ours (its magic matched): records may be appended to it.
    appendable: bool,
    /// Paths learnt since the file was last written.
    dirty: Vec<OsString>,
}

/// v2: paths relative to the context (the file is the context's own), raw digests.
const CACHE_MAGIC: &[u8] = b"rbuild context hash cache v2\n";
/// Files changed this close (ns) to the start of hashing may change again within the same
/// timestamp tick without their stat changing, so their digests are not remembered.
const RACY_NS: i64 = 50_000_000;

impl Context {
    /// Walks `root` once, applying `.dockerignore` (or `<dockerfile>.dockerignore`). See the
    /// module docs. `hash_cache` is a directory for remembered file digests (None: off).
    pub fn load(
        root: &Path,
        dockerfile: Option<&Path>,
        hash_cache: Option<&Path>,
    ) -> Result<Context, ContextError> {
        let root = fs::canonicalize(root).map_err(io_at(root))?;
        let ignore = dockerignore::load(&root, dockerfile)?;
        let meta = fs::metadata(&root).map_err(io_at(&root))?;
        if !meta.is_dir() {
            return Err(ContextError::NotADirectory { path: root });
        }
        let below = walk(&root, Path::new(""), &ignore)?;
        let mut entries = Vec::with_capacity(below.len() + 1);
        entries.push(entry(PathBuf::new(), &meta));
        entries.extend(below.into_iter().map(|e| Entry { end: e.end + 1, ..e }));
        entries[0].end = entries.len();
        Ok(Context {
            root,
            entries,
            index: OnceLock::new(),
            cache_dir: hash_cache.map(Path::to_path_buf),
            hash_cache: OnceLock::new(),
            sums: OnceLock::new(),
            hashed: AtomicUsize::new(0),
            summed: AtomicUsize::new(0),
        })
    }

    fn hash_cache(&self) -> Option<&HashCache> {
        self.hash_cache
            .get_or_init(|| self.cache_dir.as_ref().map(|d| HashCache::load(d.join("digests"))))
            .as_ref()
    }

    fn sums(&self) -> Option<&Sums> {
        self.sums.get_or_init(|| self.cache_dir.as_ref().map(|d| Sums::load(d.join("sums")))).as_ref()
    }

    fn index(&self) -> &HashMap<OsString, usize> {
        self.index.get_or_init(|| {
            self.entries.iter().enumerate().map(|(i, e)| (e.rel.as_os_str().to_owned(), i)).collect()
        })
    }

    /// The entry at `rel` (clean, relative, as the walk spells it), without following links.
    fn position(&self, rel: &Path) -> Option<usize> {
        match self.index.get() {
            Some(index) => index.get(rel.as_os_str()).copied(),
            // `entries` is in component order, which is `Path`'s `Ord`.
            None => self.entries.binary_search_by(|e| e.rel.as_path().cmp(rel)).ok(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True if `rel` is in the context (not excluded, or a directory holding re-included paths).
    pub fn includes(&self, rel: &Path) -> bool {
        self.index().contains_key(clean_relative(&rel.to_string_lossy()).as_os_str())
    }

    /// Number of files whose contents `checksum` read so far (hash cache misses).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn files_hashed(&self) -> usize {
        self.hashed.load(Ordering::Relaxed)
    }

    /// Number of [`Context::checksum_key`] calls that computed the checksum (no sum matched).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn sums_computed(&self) -> usize {
        self.summed.load(Ordering::Relaxed)
    }

    /// Where `rel` (as written, possibly through symlinks) really is in the index: like
    /// `hostutil::inroot::resolve` but over the *included* entries only (as BuildKit resolves a source in
    /// the filtered context it received), so an excluded link or target is not found.
    fn lookup(&self, rel: &Path) -> Option<usize> {
        use std::collections::VecDeque;
        use std::path::Component;
        let comps = |p: &Path| -> VecDeque<PathBuf> {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(PathBuf::from(n)),
                    Component::ParentDir => Some(PathBuf::from("..")),
                    _ => None,
                })
                .collect()
        };
        let mut pending = comps(rel);
        let mut resolved = PathBuf::new();
        let mut at = self.position(&resolved)?;
        let mut links = 0;
        while let Some(c) = pending.pop_front() {
            if c.as_os_str() == ".." {
                resolved.pop();
                at = self.position(&resolved)?;
                continue;
            }
            let candidate = resolved.join(&c);
            let i = self.position(&candidate)?;
            if self.entries[i].kind == Kind::Symlink {
                links += 1;
                if links > 255 {
                    return None;
                }
                let target = fs::read_link(self.root.join(&candidate)).ok()?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                    at = 0;
                }
                let mut next = comps(&target);
                next.extend(pending);
                pending = next;
            } else {
                resolved = candidate;
                at = i;
            }
        }
        Some(at)
    }

    /// The included paths (relative, as written) that COPY source `pattern` names: the path
    /// itself, or each match of a glob (Go `filepath.Match` per segment), sorted. Empty if none.
    pub fn matches(&self, pattern: &str) -> Vec<PathBuf> {
        let clean = clean_relative(pattern);
        if !pattern.contains(['*', '?', '[']) {
            return if self.lookup(&clean).is_some() { vec![clean] } else { vec![] };
        }
        let mut current = vec![PathBuf::new()];
        for comp in clean.components() {
            let comp = comp.as_os_str().to_string_lossy();
            let mut next = Vec::new();
            for base in &current {
                if !comp.contains(['*', '?', '[', '\\']) {
                    let cand = base.join(comp.as_ref());
                    if self.lookup(&cand).is_some() {
                        next.push(cand);
                    }
                    continue;
                }
                let Some(dir) = self.lookup(base) else { continue };
                if self.entries[dir].kind != Kind::Dir {
                    continue;
                }
                let mut child = dir + 1;
                while child < self.entries[dir].end {
                    let e = &self.entries[child];
                    if let Some(name) = e.rel.file_name()
                        && go_match(&comp, &name.to_string_lossy()) == Ok(true)
                    {
                        next.push(base.join(name));
                    }
                    child = e.end;
                }
            }
            current = next;
        }
        current.sort();
        current
    }

    /// Recreates the included subtree at `rel` (resolved as COPY resolves a source) at `dest`,
    /// which must not exist: directories with their modes, files hard-linked (copied across
    /// file systems), symlinks as they are. This is what a `RUN --mount=type=bind` of the
    /// context sees: the context as BuildKit would have received it, `.dockerignore` applied.
    pub fn link_tree(&self, rel: &Path, dest: &Path) -> Result<(), ContextError> {
        let top = self.lookup(rel).ok_or_else(|| ContextError::NotFound { path: rel.to_path_buf() })?;
        let base = &self.entries[top].rel;
        for e in &self.entries[top..self.entries[top].end] {
            let to = match e.rel.strip_prefix(base) {
                Ok(r) if r.as_os_str().is_empty() => dest.to_path_buf(),
                Ok(r) => dest.join(r),
                Err(_) => continue,
            };
            let from = self.root.join(&e.rel);
            match e.kind {
                Kind::Dir => {
                    fs::create_dir(&to).map_err(io_at(&to))?;
                    fs::set_permissions(&to, fs::Permissions::from_mode(e.mode)).map_err(io_at(&to))?;
                }
                Kind::File => {
                    if fs::hard_link(&from, &to).is_err() {
                        fs::copy(&from, &to).map_err(io_at(&from))?;
                    }
                }
                Kind::Symlink => {
                    let target = fs::read_link(&from).map_err(io_at(&from))?;
                    std::os::unix::fs::symlink(target, &to).map_err(io_at(&to))?;
                }
                Kind::Other => {}
            }
        }
        Ok(())
    }

    /// The entries a checksum of `rels` covers, as (source index, entry index), and each
    /// source's name and top entry.
    #[allow(clippy::type_complexity)]
    fn select(
        &self,
        rels: &[PathBuf],
        exclude: Option<&DockerIgnore>,
    ) -> Result<(Vec<(usize, usize)>, Vec<(String, usize)>), ContextError> {
        let mut items: Vec<(usize, usize)> = Vec::new();
        let mut sources: Vec<(String, usize)> = Vec::with_capacity(rels.len());
        for (i, rel) in rels.iter().enumerate() {
            let top = self.lookup(rel).ok_or_else(|| ContextError::NotFound { path: rel.clone() })?;
            let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let top_rel = &self.entries[top].rel;
            for at in top..self.entries[top].end {
                if let Some(x) = exclude {
                    let below = self.entries[at].rel.strip_prefix(top_rel).unwrap_or(Path::new(""));
                    if x.excludes_copied(below, &name) {
                        continue;
                    }
                }
                items.push((i, at));
            }
            sources.push((name, top));
        }
        Ok((items, sources))
    }

    /// The digest of [`Context::checksum_excluding`], from a remembered sum when every entry
    /// it covers has the stat it had then. The per-path list comes only from a context without
    /// a store (no sums); otherwise [`Context::checksum_excluding`] makes it when it is needed
    /// (an `--explain-cache` record), after the digests this call learnt are cached.
    ///
    /// The fingerprint hashes the sources as written and, per entry, its path, type and the
    /// stat the hash cache compares (device, inode, size, mtime and ctime in ns, mode): what
    /// decides whether the hash cache may be trusted for every file decides here for all of
    /// them at once. A symlink cannot change in place (a new one is a new inode). A sum is
    /// only remembered when no file is racy (changed within [`RACY_NS`] of the start), as for
    /// the hash cache. A no-op rebuild of a 100,000-file context then neither loads the hash
    /// cache nor formats a line per file.
    pub fn checksum_key(
        &self,
        rels: &[PathBuf],
        exclude: Option<&DockerIgnore>,
    ) -> Result<(Digest, Option<FileList>), ContextError> {
        let Some(sums) = self.sums() else {
            return self.checksum_excluding(rels, exclude).map(|(d, list)| (d, Some(list)));
        };
        let started = now_ns();
        let selected = self.select(rels, exclude)?;
        let items = &selected.0;
        let mut racy = false;
        let mut h = Hasher::new();
        let mut buf = Vec::with_capacity(64 * 1024);
        for rel in rels {
            let b = rel.as_os_str().as_bytes();
            buf.extend_from_slice(&(b.len() as u64).to_le_bytes());
            buf.extend_from_slice(b);
        }
        for &(i, at) in items {
            let e = &self.entries[at];
            racy |= e.kind == Kind::File && e.racy(started);
            let b = e.rel.as_os_str().as_bytes();
            buf.extend_from_slice(&(i as u64).to_le_bytes());
            buf.extend_from_slice(&(b.len() as u64).to_le_bytes());
            buf.extend_from_slice(b);
            buf.extend_from_slice(e.kind.letter().as_bytes());
            let s = &e.stat;
            for v in [s.dev, s.ino, s.size, s.mtime_ns as u64, s.ctime_ns as u64, u64::from(s.mode)] {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            if buf.len() >= 60 * 1024 {
                h.update(&buf);
                buf.clear();
            }
        }
        h.update(&buf);
        let fingerprint = h.finish_raw();
        if let Some(sum) = sums.get(&fingerprint) {
            return Ok((Digest::from_raw(&sum), None));
        }
        // The per-file list is only for --explain-cache records: made when one is written.
        self.summed.fetch_add(1, Ordering::Relaxed);
        let (digest, _) = self.checksum_selected(rels, selected, false)?;
        if !racy && let Some(raw) = raw_of(&digest) {
            sums.put(fingerprint, raw)
                .map_err(|source| ContextError::HashCache { path: sums.file.clone(), source })?;
        }
        Ok((digest, None))
    }

    /// The content checksum of the sources `rels` (each a file or a directory, taken
    /// recursively; only included entries), and the per-path list behind it: file -> content
    /// digest, symlink -> target, directory -> permission bits in octal.
    pub fn checksum(&self, rels: &[PathBuf]) -> Result<(Digest, Vec<(String, String)>), ContextError> {
        self.checksum_excluding(rels, None)
    }

    /// [`Context::checksum`] without what `COPY --exclude` leaves out (`exclude`: matched
    /// against paths below a directory source, and a file source's name), so that an excluded
    /// file's changes never miss the cache.
    pub fn checksum_excluding(
        &self,
        rels: &[PathBuf],
        exclude: Option<&crate::dockerignore::DockerIgnore>,
    ) -> Result<(Digest, Vec<(String, String)>), ContextError> {
        self.checksum_selected(rels, self.select(rels, exclude)?, true)
    }

    /// [`Context::checksum_excluding`] of the entries [`Context::select`] chose; the list is
    /// empty unless `want_list` (100,000 entries: ~40 ms of allocations a key does not need).
    #[allow(clippy::type_complexity)]
    fn checksum_selected(
        &self,
        rels: &[PathBuf],
        (items, sources): (Vec<(usize, usize)>, Vec<(String, usize)>),
        want_list: bool,
    ) -> Result<(Digest, FileList), ContextError> {
        let started = now_ns();
        // Digests the hash cache already knows.
        let mut known: Vec<Option<Raw>> = vec![None; items.len()];
        if let Some(hc) = self.hash_cache() {
            let guard = hc.lock();
            for (k, &(_, at)) in known.iter_mut().zip(&items) {
                let e = &self.entries[at];
                if e.kind == Kind::File
                    && let Some((stat, d)) = guard.get(e.rel.as_os_str())
                    && stat == e.stat
                {
                    *k = Some(d);
                }
            }
        }
        // The expensive part, on all cores: contents of the files the cache did not know.
        let contents: Vec<Content> = items
            .par_iter()
            .zip(known.par_iter())
            .map(|(&(_, at), k)| {
                let e = &self.entries[at];
                match e.kind {
                    Kind::File => match k {
                        Some(d) => Ok(Content::File(*d)),
                        None => {
                            self.hashed.fetch_add(1, Ordering::Relaxed);
                            hash_file(&self.root.join(&e.rel), e.size).map(Content::File)
                        }
                    },
                    Kind::Symlink => {
                        let p = self.root.join(&e.rel);
                        fs::read_link(&p).map(|t| Content::Link(t.display().to_string())).map_err(io_at(&p))
                    }
                    _ => Ok(Content::None),
                }
            })
            .collect::<Result<_, ContextError>>()?;
        // One line per entry, as checksum.rs makes them:
        // `<source>\t<name>\t<path below>\t<kind>\t<mode>\t<size>\t\t<digest or target>\n`.
        let mut h = Hasher::new();
        let mut list = Vec::with_capacity(if want_list { items.len() } else { 0 });
        let mut line = Vec::with_capacity(256);
        let mut text = [0u8; DIGEST_TEXT];
        for (&(i, at), c) in items.iter().zip(&contents) {
            let e = &self.entries[at];
            let (name, top) = &sources[i];
            let rel = &rels[i];
            // The entry's path below its source: its rel without the top entry's rel and `/`
            // (every entry of a subtree starts with them).
            let top_len = self.entries[*top].rel.as_os_str().len();
            let below =
                e.rel.as_os_str().as_bytes().get(top_len + usize::from(top_len > 0)..).unwrap_or_default();
            let below_text = String::from_utf8_lossy(below);
            let value = match c {
                Content::File(d) => digest_text(d, &mut text),
                Content::Link(t) => t.as_str(),
                Content::None => "",
            };
            line.clear();
            push_number(&mut line, i as u64, 10);
            line.push(b'\t');
            for part in [name.as_str(), &below_text, e.kind.letter()] {
                line.extend_from_slice(part.as_bytes());
                line.push(b'\t');
            }
            push_number(&mut line, u64::from(e.mode), 8);
            line.push(b'\t');
            push_number(&mut line, e.size, 10);
            line.extend_from_slice(b"\t\t");
            line.extend_from_slice(value.as_bytes());
            line.push(b'\n');
            h.update(&line);
            if !want_list {
                continue;
            }
            let shown = match (below.is_empty(), rel.as_os_str().is_empty()) {
                (true, true) => ".".to_string(),
                (true, false) => rel.display().to_string(),
                (false, true) => below_text.into_owned(),
                (false, false) => {
                    let rel = rel.to_string_lossy();
                    let mut shown = String::with_capacity(rel.len() + 1 + below_text.len());
                    shown.push_str(rel.trim_end_matches('/'));
                    shown.push('/');
                    shown.push_str(&below_text);
                    shown
                }
            };
            let value = match e.kind {
                Kind::Dir => {
                    let mut octal = Vec::with_capacity(4);
                    push_number(&mut octal, u64::from(e.mode), 8);
                    String::from_utf8_lossy(&octal).into_owned()
                }
                _ => value.to_string(),
            };
            list.push((shown, value));
        }
        if let Some(hc) = self.hash_cache() {
            let mut guard = hc.lock();
            for ((&(_, at), k), c) in items.iter().zip(&known).zip(&contents) {
                let e = &self.entries[at];
                if let (Content::File(d), None, false) = (c, k, e.racy(started)) {
                    guard.insert(e.rel.as_os_str().to_owned(), (e.stat, *d));
                }
            }
            if !guard.dirty.is_empty() {
                let files = self.entries.iter().filter(|e| e.kind == Kind::File).count();
                // Forgets files that are gone (or now excluded) when it compacts.
                hc.save(&mut guard, files, |rel| self.index().contains_key(rel))
                    .map_err(|source| ContextError::HashCache { path: hc.file.clone(), source })?;
            }
        }
        Ok((h.finish(), list))
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// The 32 bytes of a digest's hex.
fn raw_of(d: &Digest) -> Option<Raw> {
    let hex = d.hex().as_bytes();
    let nibble = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
    let mut raw = [0u8; 32];
    for (i, r) in raw.iter_mut().enumerate() {
        *r = nibble(*hex.get(2 * i)?)? << 4 | nibble(*hex.get(2 * i + 1)?)?;
    }
    Some(raw)
}

impl Entry {
    /// Changed so close to `started` that it may change again within the same timestamp tick
    /// without its stat changing.
    fn racy(&self, started: i64) -> bool {
        self.stat.mtime_ns > started - RACY_NS || self.stat.ctime_ns > started - RACY_NS
    }
}

impl Sums {
    fn load(file: PathBuf) -> Sums {
        let list = fs::read(&file)
            .ok()
            .and_then(|bytes| {
                let body = bytes.strip_prefix(SUMS_MAGIC)?;
                (body.len() % 64 == 0).then(|| {
                    body.chunks_exact(64)
                        .filter_map(|c| Some((c[..32].try_into().ok()?, c[32..].try_into().ok()?)))
                        .collect()
                })
            })
            .unwrap_or_default();
        Sums { file, list: Mutex::new(list) }
    }

    fn get(&self, fingerprint: &Raw) -> Option<Raw> {
        let list = self.list.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        list.iter().rev().find(|(f, _)| f == fingerprint).map(|(_, d)| *d)
    }

    /// Remembers a sum and writes the file (temporary file, renamed), oldest sums dropped.
    fn put(&self, fingerprint: Raw, digest: Raw) -> io::Result<()> {
        let mut list = self.list.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        list.retain(|(f, _)| *f != fingerprint);
        list.push((fingerprint, digest));
        let excess = list.len().saturating_sub(SUMS_KEPT);
        list.drain(..excess);
        let dir = self.file.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        let mut bytes = SUMS_MAGIC.to_vec();
        for (f, d) in list.iter() {
            bytes.extend_from_slice(f);
            bytes.extend_from_slice(d);
        }
        tmp.write_all(&bytes)?;
        tmp.persist(&self.file).map_err(|e| e.error)?;
        Ok(())
    }
}

/// What an entry's checksum line ends with.
enum Content {
    File(Raw),
    Link(String),
    None,
}

/// Appends `v` in base `radix` (8 or 10), as `{}` and `{:o}` write it.
fn push_number(out: &mut Vec<u8>, mut v: u64, radix: u64) {
    let mut digits = [0u8; 22];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % radix) as u8;
        v /= radix;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Length of `sha256:` and 64 hex digits.
const DIGEST_TEXT: usize = 71;

/// `d` as a digest's text (`sha256:<hex>`), written into `buf`.
fn digest_text<'a>(d: &Raw, buf: &'a mut [u8; DIGEST_TEXT]) -> &'a str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf[..7].copy_from_slice(b"sha256:");
    for (i, b) in d.iter().enumerate() {
        buf[7 + 2 * i] = HEX[usize::from(b >> 4)];
        buf[8 + 2 * i] = HEX[usize::from(b & 15)];
    }
    // ASCII only, written just above.
    std::str::from_utf8(buf).unwrap_or_default()
}

fn entry(rel: PathBuf, m: &fs::Metadata) -> Entry {
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_file() {
        Kind::File
    } else {
        Kind::Other
    };
    Entry {
        rel,
        kind,
        mode: m.mode() & 0o7777,
        size: if kind == Kind::File { m.len() } else { 0 },
        stat: Stat::of(m),
        end: 0,
    }
}

/// The included entries below `rel_dir`, in component order (siblings by name, each directory
/// followed by its subtree), each `end` relative to the returned vector. Subdirectories are
/// walked in parallel, and a large directory's entries are stat'ed in parallel.
fn walk(root: &Path, rel_dir: &Path, ignore: &DockerIgnore) -> Result<Vec<Entry>, ContextError> {
    let abs = root.join(rel_dir);
    let err = io_at(&abs);
    let listed: Vec<fs::DirEntry> =
        fs::read_dir(&abs).map_err(err)?.collect::<Result<_, _>>().map_err(err)?;
    // (name, entry, Some(excluded) for a directory). Stat'ed in the directory's order, which
    // measured faster than in name order.
    let look = |item: &fs::DirEntry| -> Result<Option<(OsString, Entry, Option<bool>)>, ContextError> {
        let name = item.file_name();
        let rel = rel_dir.join(&name);
        // DirEntry::metadata does not follow symlinks (fstatat on the directory's descriptor).
        let meta = item.metadata().map_err(err)?;
        let excluded = ignore.is_excluded(&rel);
        Ok(if meta.is_dir() {
            if excluded && ignore.can_skip_dir(&rel) {
                None
            } else {
                Some((name, entry(rel, &meta), Some(excluded)))
            }
        } else if !excluded {
            Some((name, entry(rel, &meta), None))
        } else {
            None
        })
    };
    let mut items: Vec<(OsString, Entry, Option<bool>)> = if listed.len() >= PARALLEL_STAT {
        listed.par_iter().map(look).filter_map(Result::transpose).collect::<Result<_, _>>()?
    } else {
        listed.iter().map(look).filter_map(Result::transpose).collect::<Result<_, _>>()?
    };
    drop(listed);
    // Component order among siblings: by name.
    items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let subtrees: Vec<Vec<Entry>> = items
        .par_iter()
        .filter(|(_, _, dir)| dir.is_some())
        .map(|(_, e, _)| walk(root, &e.rel, ignore))
        .collect::<Result<_, ContextError>>()?;
    let mut subtrees = subtrees.into_iter();
    let mut out = Vec::with_capacity(items.len());
    for (_, mut e, dir) in items {
        let start = out.len();
        match dir {
            None => {
                e.end = start + 1;
                out.push(e);
            }
            Some(excluded) => {
                let sub = subtrees.next().unwrap_or_default();
                // An excluded directory stays only as the parent of re-included paths.
                if excluded && sub.is_empty() {
                    continue;
                }
                out.push(e);
                let base = out.len();
                out.extend(sub.into_iter().map(|s| Entry { end: s.end + base, ..s }));
                out[start].end = out.len();
            }
        }
    }
    Ok(out)
}

/// A directory with at least this many entries has them stat'ed on all cores.
const PARALLEL_STAT: usize = 2048;

/// Read buffer per thread: large enough for few syscalls, small enough to stay in L2 while
/// sha256 reads it (128 KiB measured best on the bench machine).
const READ_BUF: usize = 128 * 1024;

thread_local! {
    static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_BUF]);
}

/// Files at least this large are hashed from a mapping instead of `read()`: the copy out of the
/// page cache is ~25% of the CPU time of hashing a large file.
const MMAP_MIN: u64 = 8 * 1024 * 1024;

/// sha256 of a file's contents: large files through a mapping guarded by a read lease, the
/// rest streamed through a per-thread buffer. `size` is the walk's: it only picks the way (a
/// small file costs open, read, read, close; the mapping re-checks the size under its lease).
fn hash_file(path: &Path, size: u64) -> Result<Raw, ContextError> {
    use std::os::fd::AsRawFd;
    let err = io_at(path);
    let mut f = File::open(path).map_err(err)?;
    if size >= MMAP_MIN
        && let Some(d) = hash_mapped(&f)
    {
        return Ok(d);
    }
    if size > READ_BUF as u64 {
        // More read-ahead for files not in the page cache yet.
        // SAFETY: a valid descriptor; advice only.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
    }
    BUF.with_borrow_mut(|buf| {
        let mut h = Hasher::new();
        loop {
            let n = match f.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(e)),
            };
            h.update(&buf[..n]);
        }
        Ok(h.finish_raw())
    })
}

/// Hashes a large file through `mmap`, or returns None to have it read instead.
///
/// A mapping turns a concurrent truncation into SIGBUS. So the file is mapped only under a read
/// lease (`F_SETLEASE F_RDLCK`): while we hold it, the kernel makes any other process that
/// opens the file for writing or truncates it wait until we release the lease (lease-break
/// time at most; we release as soon as the hash is done). A file someone already has open for
/// writing cannot be leased: it is read with `read()`, which a truncation cannot crash.
///
/// A lease break is announced with SIGIO, whose default action ends the process. The solver
/// never changes a signal's disposition (that is the program's business: rbuild's `main`
/// ignores SIGIO); where SIGIO is not ignored or handled, files are read, not leased.
fn hash_mapped(f: &File) -> Option<Raw> {
    use std::os::fd::AsRawFd;
    let len = f.metadata().ok()?.len();
    if len < MMAP_MIN || !sigio_ignored() {
        return None;
    }
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; F_SETLEASE takes an int argument.
    if unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) } != 0 {
        return None;
    }
    // The lease holds now; re-check the size, which a writer may have changed before it.
    let len = f.metadata().ok()?.len() as usize;
    // SAFETY: a read-only private mapping of `len` bytes of a file we hold a read lease on, so
    // its size cannot shrink while mapped (see above); unmapped before the lease is released.
    let ptr = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_POPULATE, fd, 0)
    };
    let digest = if ptr == libc::MAP_FAILED {
        None
    } else {
        // SAFETY: the mapping is valid for `len` bytes and stays mapped until munmap below.
        let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
        let mut h = Hasher::new();
        h.update(bytes);
        // SAFETY: unmapping exactly what mmap returned; `bytes` is not used after this.
        unsafe { libc::munmap(ptr, len) };
        Some(h.finish_raw())
    };
    // SAFETY: as above; releasing the lease lets blocked writers proceed.
    unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
    digest
}

/// Whether SIGIO would not end the process (ignored, or handled), so a lease may be taken.
/// One syscall, per file of [`MMAP_MIN`] bytes or more.
fn sigio_ignored() -> bool {
    // SAFETY: an all-zero sigaction is a valid value of the C struct, which the call overwrites.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action makes sigaction only read the current one into `old`.
    let r = unsafe { libc::sigaction(libc::SIGIO, std::ptr::null(), &mut old) };
    r == 0 && old.sa_sigaction != libc::SIG_DFL
}

impl HashCache {
    /// Reads the cache file; a missing or unreadable one (or one of an older format) is an
    /// empty cache, and a record cut short at the end (a crash while appending) is ignored.
    fn load(file: PathBuf) -> HashCache {
        let loaded = fs::read(&file).unwrap_or_default();
        let parsed = index_cache(&loaded);
        let appendable = parsed.is_some();
        let (index, records) = parsed.unwrap_or_default();
        let state =
            CacheState { loaded, index, added: Digests::default(), records, appendable, dirty: Vec::new() };
        HashCache { file, state: Mutex::new(state) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // The map is consistent after any panic that could have poisoned it (inserts only).
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes what `state` learnt: appended, or the whole map (keeping the paths `keep` says
    /// the context still has) into a temporary file that replaces the old one.
    fn save(&self, state: &mut CacheState, files: usize, keep: impl Fn(&OsStr) -> bool) -> io::Result<()> {
        let dir = self.file.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let paths = state.index.len() + state.added.len();
        let compact =
            !state.appendable || state.records + state.dirty.len() > 2 * paths + 1024 || paths > files + 1024;
        if compact {
            let mut bytes = CACHE_MAGIC.to_vec();
            let mut written = 0;
            for (rel, record) in state.newest() {
                if keep(rel) {
                    push_record(&mut bytes, rel, &record);
                    written += 1;
                }
            }
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            tmp.write_all(&bytes)?;
            tmp.persist(&self.file).map_err(|e| e.error)?;
            state.records = written;
            state.appendable = true;
        } else {
            let mut bytes = Vec::new();
            for rel in &state.dirty {
                if let Some(record) = state.added.get(rel) {
                    push_record(&mut bytes, rel, record);
                }
            }
            // One write of whole records: a concurrent reader or appender sees records whole
            // (a cut-short tail is ignored on load).
            let mut f = fs::OpenOptions::new().append(true).open(&self.file)?;
            f.write_all(&bytes)?;
            state.records += state.dirty.len();
        }
        state.dirty.clear();
        Ok(())
    }
}

impl CacheState {
    /// The digest known for `rel`, with the stat it was taken at.
    fn get(&self, rel: &OsStr) -> Option<(Stat, Raw)> {
        if let Some(v) = self.added.get(rel) {
            return Some(*v);
        }
        let at = *self.index.get(&path_hash(rel.as_bytes()))?;
        let (path, value, _) = read_record(self.loaded.get(at..)?)?;
        (path == rel.as_bytes()).then_some(value)
    }

    fn insert(&mut self, rel: OsString, value: (Stat, Raw)) {
        self.added.insert(rel.clone(), value);
        self.dirty.push(rel);
    }

    /// Every path's newest record.
    fn newest(&self) -> impl Iterator<Item = (&OsStr, (Stat, Raw))> {
        let loaded = self.index.values().filter_map(|&at| {
            let (path, value, _) = read_record(self.loaded.get(at..)?)?;
            let path = OsStr::from_bytes(path);
            (!self.added.contains_key(path)).then_some((path, value))
        });
        loaded.chain(self.added.iter().map(|(p, v)| (p.as_os_str(), *v)))
    }
}

fn path_hash(path: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher as _};
    let mut h = rustc_hash::FxBuildHasher.build_hasher();
    h.write(path);
    h.finish()
}

/// One record of the hash cache file: path length (u32), path, dev, ino, size, mtime and ctime
/// (u64 each), mode (u32), digest (32 bytes); little-endian.
fn push_record(out: &mut Vec<u8>, rel: &OsStr, (s, d): &(Stat, Raw)) {
    let p = rel.as_bytes();
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(p);
    for v in [s.dev, s.ino, s.size, s.mtime_ns as u64, s.ctime_ns as u64] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&s.mode.to_le_bytes());
    out.extend_from_slice(d);
}

/// The record at the start of `bytes` (see [`push_record`]): its path, stat and digest, and
/// its length; None if it is cut short.
fn read_record(bytes: &[u8]) -> Option<(&[u8], (Stat, Raw), usize)> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let path = bytes.get(4..4 + len)?;
    let rest = bytes.get(4 + len..4 + len + 5 * 8 + 4 + 32)?;
    let u64_at =
        |i: usize| rest.get(i * 8..i * 8 + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes);
    let stat = Stat {
        dev: u64_at(0)?,
        ino: u64_at(1)?,
        size: u64_at(2)?,
        mtime_ns: u64_at(3)? as i64,
        ctime_ns: u64_at(4)? as i64,
        mode: u32::from_le_bytes(rest.get(40..44)?.try_into().ok()?),
    };
    let digest: Raw = rest.get(44..76)?.try_into().ok()?;
    Some((path, (stat, digest), 4 + len + 76))
}

/// The index of a cache file's records (path hash -> offset of the newest) and how many there
/// were; None if it is not one. A record cut short at the end is ignored.
fn index_cache(bytes: &[u8]) -> Option<(rustc_hash::FxHashMap<u64, usize>, usize)> {
    let mut at = bytes.strip_prefix(CACHE_MAGIC).map(|_| CACHE_MAGIC.len())?;
    // A record is ~100 bytes: one allocation for the table.
    let mut index = rustc_hash::FxHashMap::with_capacity_and_hasher(bytes.len() / 96, Default::default());
    let mut records = 0;
    while let Some((path, _, len)) = bytes.get(at..).and_then(read_record) {
        index.insert(path_hash(path), at);
        at += len;
        records += 1;
    }
    Some((index, records))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn large_files_hash_the_same_mapped_or_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let data: Vec<u8> = (0..(MMAP_MIN as usize + 12345)).map(|i| (i * 31 % 251) as u8).collect();
        fs::write(&path, &data).unwrap();
        let expected = Digest::of(&data);
        let raw = |d: Raw| Digest::from_raw(&d);
        // A program that leaves SIGIO at its default gets no lease (a break would kill it).
        // SAFETY: SIG_DFL and SIG_IGN install no handler code.
        unsafe { libc::signal(libc::SIGIO, libc::SIG_DFL) };
        assert_eq!(hash_mapped(&File::open(&path).unwrap()), None);
        assert_eq!(raw(hash_file(&path, data.len() as u64).unwrap()), expected);
        // SAFETY: as above.
        unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
        // Leasable: hashed through the mapping.
        assert_eq!(hash_mapped(&File::open(&path).unwrap()).map(raw), Some(expected.clone()));
        assert_eq!(raw(hash_file(&path, data.len() as u64).unwrap()), expected);
        // Someone has it open for writing: no lease, so no mapping; read() gives the same.
        let writer = File::options().write(true).open(&path).unwrap();
        assert_eq!(hash_mapped(&File::open(&path).unwrap()), None);
        assert_eq!(raw(hash_file(&path, data.len() as u64).unwrap()), expected);
        drop(writer);
        // Small files are always read.
        fs::write(dir.path().join("small"), b"abc").unwrap();
        assert_eq!(hash_mapped(&File::open(dir.path().join("small")).unwrap()), None);
        assert_eq!(raw(hash_file(&dir.path().join("small"), 3).unwrap()), Digest::of(b"abc"));
    }

    fn write(root: &Path, rel: &str, data: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "Dockerfile", "FROM scratch\n");
        write(r, "src/main.rs", "fn main() {}\n");
        write(r, "src/lib.rs", "\n");
        write(r, "src/secret.key", "k");
        write(r, "build/out.o", "o");
        write(r, "build/keep.txt", "keep");
        write(r, "build/deep/x", "x");
        write(r, "node_modules/a/index.js", "js");
        write(r, "notes.md", "n");
        write(r, "README.md", "r");
        write(r, ".dockerignore", "*.md\n!README.md\nbuild\n!build/keep.txt\nnode_modules\n**/*.key\n");
        dir
    }

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn the_walk_applies_dockerignore() {
        let dir = tree();
        let ctx = Context::load(dir.path(), None, None).unwrap();
        for inc in
            ["", "Dockerfile", "src", "src/main.rs", "README.md", "build", "build/keep.txt", ".dockerignore"]
        {
            assert!(ctx.includes(Path::new(inc)), "{inc}");
        }
        for exc in ["notes.md", "build/out.o", "build/deep", "build/deep/x", "node_modules", "src/secret.key"]
        {
            assert!(!ctx.includes(Path::new(exc)), "{exc}");
        }
        assert_eq!(ctx.matches("*.md"), vec![p("README.md")]);
        assert_eq!(ctx.matches("src/*.rs"), vec![p("src/lib.rs"), p("src/main.rs")]);
        assert_eq!(ctx.matches("./src/../build"), vec![p("build")]);
        assert_eq!(ctx.matches("build/*"), vec![p("build/keep.txt")]);
        assert!(ctx.matches("notes.md").is_empty());
        assert!(ctx.matches("missing").is_empty());
        assert_eq!(ctx.matches("[a-s]*"), vec![p("build"), p("src")]);
        assert_eq!(ctx.matches("."), vec![p("")]);
        // COPY build: only what is included goes into the checksum.
        let (_, list) = ctx.checksum(&[p("build")]).unwrap();
        let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["build", "build/keep.txt"]);
    }

    #[test]
    fn symlinks_are_entries_and_never_lead_out_of_the_context() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret", "host");
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "real/f", "inside");
        symlink(outside.path(), r.join("out")).unwrap();
        symlink("real", r.join("link")).unwrap();
        symlink("/real/f", r.join("abs")).unwrap();
        let ctx = Context::load(r, None, None).unwrap();
        // The walk does not follow symlinks.
        assert!(ctx.includes(Path::new("out")));
        assert!(!ctx.includes(Path::new("out/secret")));
        assert!(ctx.matches("out/secret").is_empty());
        assert!(ctx.matches("out/*").is_empty());
        // A source through a symlink resolves inside the context.
        assert_eq!(ctx.matches("link/f"), vec![p("link/f")]);
        assert_eq!(ctx.matches("link/*"), vec![p("link/f")]);
        let (a, list) = ctx.checksum(&[p("abs")]).unwrap();
        let (b, _) = ctx.checksum(&[p("real/f")]).unwrap();
        assert_eq!(list[0].0, "abs");
        assert_ne!(a, b); // the name is part of the checksum, as in checksum.rs
        let (_, list) = ctx.checksum(&[p("")]).unwrap();
        let out = list.iter().find(|(n, _)| n == "out").unwrap();
        assert_eq!(out.1, outside.path().display().to_string());
        assert!(!list.iter().any(|(n, _)| n.contains("secret")));
    }

    #[test]
    fn checksums_are_deterministic_and_ignore_excluded_files() {
        let dir = tree();
        let r = dir.path();
        symlink("main.rs", r.join("src/alias")).unwrap();
        fs::remove_file(r.join(".dockerignore")).unwrap();
        let ctx = Context::load(r, None, None).unwrap();
        for rels in [vec![p("src")], vec![p("")], vec![p("src/main.rs"), p("build")]] {
            let (sum, files) = ctx.checksum(&rels).unwrap();
            assert_eq!(sum, ctx.checksum(&rels).unwrap().0, "checksums are deterministic");
            assert!(!files.is_empty());
        }
        write(r, ".dockerignore", "src/secret.key\n");
        let sum = || Context::load(r, None, None).unwrap().checksum(&[p("src")]).unwrap().0;
        let before = sum();
        // Touching keeps it.
        let f = File::options().write(true).open(r.join("src/main.rs")).unwrap();
        f.set_modified(UNIX_EPOCH).unwrap();
        assert_eq!(sum(), before);
        // An excluded file's change does not matter.
        write(r, "src/secret.key", "changed");
        assert_eq!(sum(), before);
        // One byte does.
        write(r, "src/main.rs", "fn main() {}\r");
        assert_ne!(sum(), before);
    }

    #[test]
    fn the_hash_cache_spares_unchanged_files_and_sees_changes() {
        let dir = tree();
        let r = dir.path();
        let store = tempfile::tempdir().unwrap();
        let hc = store.path().join("cache/context");
        // Older than the racy window.
        std::thread::sleep(std::time::Duration::from_millis(2 * (RACY_NS / 1_000_000) as u64));
        let all = [p("")];
        let first = Context::load(r, None, Some(&hc)).unwrap();
        let (sum1, _) = first.checksum(&all).unwrap();
        let files = first.files_hashed();
        assert!(files >= 5, "{files}");
        let second = Context::load(r, None, Some(&hc)).unwrap();
        assert_eq!(second.checksum(&all).unwrap().0, sum1);
        assert_eq!(second.files_hashed(), 0);
        // Same size, same mtime, different content: ctime changed, so it is hashed again.
        let path = r.join("src/main.rs");
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        fs::write(&path, "fn main() {}\t").unwrap();
        File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
        let third = Context::load(r, None, Some(&hc)).unwrap();
        assert_ne!(third.checksum(&all).unwrap().0, sum1);
        assert_eq!(third.files_hashed(), 1);
        // Without the cache everything is read.
        let nocache = Context::load(r, None, None).unwrap();
        nocache.checksum(&all).unwrap();
        assert_eq!(nocache.files_hashed(), files);
    }

    #[test]
    fn sums_answer_a_rebuild_whose_stats_match_and_nothing_else() {
        let dir = tree();
        let r = dir.path();
        let store = tempfile::tempdir().unwrap();
        let hc = store.path().join("cache/context");
        std::thread::sleep(std::time::Duration::from_millis(2 * (RACY_NS / 1_000_000) as u64));
        let src = [p("src")];
        let first = Context::load(r, None, Some(&hc)).unwrap();
        let (sum, list) = first.checksum_key(&src, None).unwrap();
        // A miss computes the whole checksum (not the list), and it is checksum()'s.
        assert_eq!((first.sums_computed(), list), (1, None));
        assert_eq!(first.checksum(&src).unwrap().0, sum);
        // Same stats: the remembered sum, without reading a file or listing them.
        let second = Context::load(r, None, Some(&hc)).unwrap();
        assert_eq!(second.checksum_key(&src, None).unwrap(), (sum.clone(), None));
        assert_eq!((second.files_hashed(), second.sums_computed()), (0, 0));
        // Other sources, or an exclusion that drops a file, have sums of their own.
        let x = crate::copy::exclude_rules(&["lib.rs".to_string()]).unwrap();
        let (excluded, _) = second.checksum_key(&src, x.as_ref()).unwrap();
        assert_ne!(excluded, sum);
        assert_eq!(second.sums_computed(), 1);
        // A changed file (same size and mtime: only ctime and content differ) is a miss.
        let path = r.join("src/main.rs");
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        fs::write(&path, "fn main() {}\t").unwrap();
        File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
        let third = Context::load(r, None, Some(&hc)).unwrap();
        let (changed, _) = third.checksum_key(&src, None).unwrap();
        assert_ne!(changed, sum);
        assert_eq!(changed, Context::load(r, None, None).unwrap().checksum(&src).unwrap().0);
        assert_eq!(third.sums_computed(), 1);
        // ... whose file is racy (just written), so that sum is not remembered.
        let fourth = Context::load(r, None, Some(&hc)).unwrap();
        fourth.checksum_key(&src, None).unwrap();
        assert_eq!(fourth.sums_computed(), 1);
    }

    #[test]
    fn the_hash_cache_appends_what_it_learns_and_survives_a_torn_tail() {
        let dir = tree();
        let r = dir.path();
        let store = tempfile::tempdir().unwrap();
        let hc = store.path().join("cache/context");
        let file = hc.join("digests");
        std::thread::sleep(std::time::Duration::from_millis(2 * (RACY_NS / 1_000_000) as u64));
        let all = [p("")];
        Context::load(r, None, Some(&hc)).unwrap().checksum(&all).unwrap();
        let written = fs::metadata(&file).unwrap().len();
        // One new file: one record appended, the rest left as it is.
        write(r, "src/new.rs", "new");
        std::thread::sleep(std::time::Duration::from_millis(2 * (RACY_NS / 1_000_000) as u64));
        Context::load(r, None, Some(&hc)).unwrap().checksum(&all).unwrap();
        let record = (4 + "src/new.rs".len() + 5 * 8 + 4 + 32) as u64;
        assert_eq!(fs::metadata(&file).unwrap().len(), written + record);
        let again = Context::load(r, None, Some(&hc)).unwrap();
        let sum = again.checksum(&all).unwrap().0;
        assert_eq!(again.files_hashed(), 0);
        // A record cut short (a crash while appending) loses only itself.
        let mut bytes = fs::read(&file).unwrap();
        bytes.extend_from_slice(&[7, 0, 0, 0, b's']);
        fs::write(&file, bytes).unwrap();
        let torn = Context::load(r, None, Some(&hc)).unwrap();
        assert_eq!(torn.checksum(&all).unwrap().0, sum);
        assert_eq!(torn.files_hashed(), 0);
        // An older cache format is not read, and is replaced.
        fs::write(&file, b"rbuild context hash cache v1\n").unwrap();
        let old = Context::load(r, None, Some(&hc)).unwrap();
        assert_eq!(old.checksum(&all).unwrap().0, sum);
        assert!(old.files_hashed() >= 5);
        assert!(fs::read(&file).unwrap().starts_with(CACHE_MAGIC));
    }

    #[test]
    fn excluded_links_and_targets_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "hidden/f", "h");
        write(r, "shown/f", "s");
        symlink("hidden", r.join("to_hidden")).unwrap();
        symlink("shown", r.join("excluded_link")).unwrap();
        write(r, ".dockerignore", "hidden\nexcluded_link\n");
        let ctx = Context::load(r, None, None).unwrap();
        assert!(ctx.matches("to_hidden/f").is_empty());
        assert!(ctx.matches("excluded_link/f").is_empty());
        assert!(ctx.checksum(&[p("to_hidden")]).is_err());
        assert_eq!(ctx.matches("shown/../shown/f"), vec![p("shown/f")]);
    }

    #[test]
    fn copy_skips_what_the_context_excludes() {
        let dir = tree();
        let ctx = Context::load(dir.path(), None, None).unwrap();
        let image = tempfile::tempdir().unwrap();
        let include = |rel: &Path| ctx.includes(rel);
        let me = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        let sources = ctx.matches(".");
        let job = crate::copy::CopyJob {
            src_root: ctx.root(),
            sources: &sources,
            dest: "/app/",
            owner: crate::copy::Owner::Set(me.0, me.1),
            chmod: None,
            include: Some(&include),
            exclude: None,
        };
        crate::copy::copy(image.path(), &job).unwrap();
        let app = image.path().join("app");
        for present in ["Dockerfile", "src/main.rs", "README.md", "build/keep.txt"] {
            assert!(app.join(present).exists(), "{present}");
        }
        for absent in ["notes.md", "build/out.o", "build/deep", "node_modules", "src/secret.key"] {
            assert!(!app.join(absent).exists(), "{absent}");
        }
    }

    #[test]
    fn the_per_dockerfile_ignore_file_is_used() {
        let dir = tree();
        let r = dir.path();
        write(r, "docker/app.Dockerfile", "FROM scratch\n");
        write(r, "docker/app.Dockerfile.dockerignore", "src\n");
        let ctx = Context::load(r, Some(&r.join("docker/app.Dockerfile")), None).unwrap();
        assert!(!ctx.includes(Path::new("src/main.rs")));
        assert!(ctx.includes(Path::new("notes.md")));
        assert!(ctx.includes(Path::new("node_modules/a/index.js")));
    }
}
