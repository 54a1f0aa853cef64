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
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    fn letter(self) -> char {
        match self {
            Kind::Dir => 'd',
            Kind::File => 'f',
            Kind::Symlink => 'l',
            Kind::Other => 'o',
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
    index: HashMap<PathBuf, usize>,
    hash_cache: Option<HashCache>,
    /// Files whose contents were read by `checksum` (not taken from the hash cache).
    hashed: AtomicUsize,
}

/// Remembered digests by absolute path, with the stat they were computed for.
type Digests = HashMap<PathBuf, (Stat, Digest)>;

struct HashCache {
    file: PathBuf,
    /// The digests and whether they changed since the file was written.
    map: Mutex<(Digests, bool)>,
}

const CACHE_MAGIC: &[u8] = b"rbuild context hash cache v1\n";
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
        let mut entries = vec![entry(PathBuf::new(), &meta)];
        entries.extend(walk(&root, Path::new(""), &ignore)?);
        entries.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
        // Subtree ends: a directory's subtree is contiguous after it in component order.
        let mut stack: Vec<usize> = Vec::new();
        for i in 0..entries.len() {
            while let Some(&top) = stack.last() {
                if entries[i].rel.starts_with(&entries[top].rel) {
                    break;
                }
                entries[top].end = i;
                stack.pop();
            }
            entries[i].end = i + 1;
            if entries[i].kind == Kind::Dir {
                stack.push(i);
            }
        }
        let n = entries.len();
        for top in stack {
            entries[top].end = n;
        }
        let index = entries.iter().enumerate().map(|(i, e)| (e.rel.clone(), i)).collect();
        let hash_cache = hash_cache.map(|dir| HashCache::load(dir.join("digests")));
        Ok(Context { root, entries, index, hash_cache, hashed: AtomicUsize::new(0) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True if `rel` is in the context (not excluded, or a directory holding re-included paths).
    pub fn includes(&self, rel: &Path) -> bool {
        self.index.contains_key(&clean_relative(&rel.to_string_lossy()))
    }

    /// Number of files whose contents `checksum` read so far (hash cache misses).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn files_hashed(&self) -> usize {
        self.hashed.load(Ordering::Relaxed)
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
        let mut at = *self.index.get(&resolved)?;
        let mut links = 0;
        while let Some(c) = pending.pop_front() {
            if c.as_os_str() == ".." {
                resolved.pop();
                at = *self.index.get(&resolved)?;
                continue;
            }
            let candidate = resolved.join(&c);
            let i = *self.index.get(&candidate)?;
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
        let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        // (line prefix, shown path, entry)
        let mut items: Vec<(String, String, &Entry)> = Vec::new();
        for (i, rel) in rels.iter().enumerate() {
            let top = self.lookup(rel).ok_or_else(|| ContextError::NotFound { path: rel.clone() })?;
            let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let top_rel = &self.entries[top].rel;
            for e in &self.entries[top..self.entries[top].end] {
                let below = e.rel.strip_prefix(top_rel).unwrap_or(Path::new(""));
                if exclude.is_some_and(|x| x.excludes_copied(below, &name)) {
                    continue;
                }
                let shown = match (below.as_os_str().is_empty(), rel.as_os_str().is_empty()) {
                    (true, true) => ".".to_string(),
                    (true, false) => rel.display().to_string(),
                    (false, _) => rel.join(below).display().to_string(),
                };
                items.push((format!("{i}\t{name}\t{}", below.display()), shown, e));
            }
        }
        // Digests the hash cache already knows.
        let mut known: Vec<Option<Digest>> = vec![None; items.len()];
        if let Some(hc) = &self.hash_cache {
            let guard = hc.map.lock().unwrap();
            for (k, (_, _, e)) in known.iter_mut().zip(&items) {
                if e.kind == Kind::File
                    && let Some((stat, d)) = guard.0.get(&self.root.join(&e.rel))
                    && *stat == e.stat
                {
                    *k = Some(d.clone());
                }
            }
        }
        // The expensive part, on all cores: contents of the files the cache did not know.
        let contents: Vec<String> = items
            .par_iter()
            .zip(known.par_iter())
            .map(|((_, _, e), k)| match e.kind {
                Kind::File => match k {
                    Some(d) => Ok(d.to_string()),
                    None => {
                        self.hashed.fetch_add(1, Ordering::Relaxed);
                        hash_file(&self.root.join(&e.rel)).map(|d| d.to_string())
                    }
                },
                Kind::Symlink => {
                    let p = self.root.join(&e.rel);
                    fs::read_link(&p).map(|t| t.display().to_string()).map_err(io_at(&p))
                }
                _ => Ok(String::new()),
            })
            .collect::<Result<_, ContextError>>()?;
        let mut h = Hasher::new();
        let mut list = Vec::with_capacity(items.len());
        for ((prefix, shown, e), c) in items.iter().zip(&contents) {
            let line = format!("{prefix}\t{}\t{:o}\t{}\t\t{c}\n", e.kind.letter(), e.mode, e.size);
            h.update(line.as_bytes());
            let value = match e.kind {
                Kind::Dir => format!("{:o}", e.mode),
                _ => c.clone(),
            };
            list.push((shown.clone(), value));
        }
        if let Some(hc) = &self.hash_cache {
            let mut guard = hc.map.lock().unwrap();
            for (((_, _, e), k), c) in items.iter().zip(&known).zip(&contents) {
                let racy = e.stat.mtime_ns > started - RACY_NS || e.stat.ctime_ns > started - RACY_NS;
                // `c` is a digest's text, made above.
                if e.kind == Kind::File
                    && k.is_none()
                    && !racy
                    && let Ok(d) = c.parse::<Digest>()
                {
                    guard.0.insert(self.root.join(&e.rel), (e.stat, d));
                    guard.1 = true;
                }
            }
            if guard.1 {
                // Forget this context's files that are gone (or now excluded).
                guard
                    .0
                    .retain(|p, _| p.strip_prefix(&self.root).map_or(true, |r| self.index.contains_key(r)));
                hc.save(&guard.0)
                    .map_err(|source| ContextError::HashCache { path: hc.file.clone(), source })?;
                guard.1 = false;
            }
        }
        Ok((h.finish(), list))
    }
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

/// The included entries below `rel_dir`, unsorted; subdirectories are walked in parallel.
fn walk(root: &Path, rel_dir: &Path, ignore: &DockerIgnore) -> Result<Vec<Entry>, ContextError> {
    let abs = root.join(rel_dir);
    let err = io_at(&abs);
    let mut out = Vec::new();
    let mut dirs = Vec::new();
    for item in fs::read_dir(&abs).map_err(err)? {
        let item = item.map_err(err)?;
        let rel = rel_dir.join(item.file_name());
        // DirEntry::metadata does not follow symlinks.
        let meta = item.metadata().map_err(err)?;
        let excluded = ignore.is_excluded(&rel);
        if meta.is_dir() {
            if excluded && ignore.can_skip_dir(&rel) {
                continue;
            }
            dirs.push((entry(rel, &meta), excluded));
        } else if !excluded {
            out.push(entry(rel, &meta));
        }
    }
    let below: Vec<(Entry, bool, Vec<Entry>)> = dirs
        .into_par_iter()
        .map(|(e, excluded)| walk(root, &e.rel, ignore).map(|sub| (e, excluded, sub)))
        .collect::<Result<_, ContextError>>()?;
    for (e, excluded, sub) in below {
        // An excluded directory stays only as the parent of re-included paths.
        if !excluded || !sub.is_empty() {
            out.push(e);
            out.extend(sub);
        }
    }
    Ok(out)
}

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
/// rest streamed through a per-thread buffer.
fn hash_file(path: &Path) -> Result<Digest, ContextError> {
    use std::os::fd::AsRawFd;
    let err = io_at(path);
    let mut f = File::open(path).map_err(err)?;
    if let Some(d) = hash_mapped(&f) {
        return Ok(d);
    }
    // More read-ahead for files not in the page cache yet.
    // SAFETY: a valid descriptor; advice only.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
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
        Ok(h.finish())
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
fn hash_mapped(f: &File) -> Option<Digest> {
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
        Some(h.finish())
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
    /// Reads the cache file; a missing or unreadable one is an empty cache.
    fn load(file: PathBuf) -> HashCache {
        let map = File::open(&file).ok().and_then(|f| read_cache(BufReader::new(f)).ok()).unwrap_or_default();
        HashCache { file, map: Mutex::new((map, false)) }
    }

    /// Writes the cache atomically: a temporary file in the same directory, renamed.
    fn save(&self, map: &Digests) -> io::Result<()> {
        let dir = self.file.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let tmp = tempfile::NamedTempFile::new_in(dir)?;
        let mut w = BufWriter::new(tmp);
        w.write_all(CACHE_MAGIC)?;
        for (path, (s, d)) in map {
            let p = path.as_os_str().as_bytes();
            w.write_all(&(p.len() as u32).to_le_bytes())?;
            w.write_all(p)?;
            for v in [s.dev, s.ino, s.size, s.mtime_ns as u64, s.ctime_ns as u64] {
                w.write_all(&v.to_le_bytes())?;
            }
            w.write_all(&s.mode.to_le_bytes())?;
            w.write_all(d.hex().as_bytes())?;
        }
        let tmp = w.into_inner().map_err(|e| e.into_error())?;
        tmp.persist(&self.file).map_err(|e| e.error)?;
        Ok(())
    }
}

fn read_cache(mut r: impl Read) -> io::Result<Digests> {
    let mut magic = vec![0u8; CACHE_MAGIC.len()];
    r.read_exact(&mut magic)?;
    if magic != CACHE_MAGIC {
        return Err(io::Error::other("not a hash cache"));
    }
    let mut map = HashMap::new();
    let mut len = [0u8; 4];
    loop {
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let mut path = vec![0u8; u32::from_le_bytes(len) as usize];
        r.read_exact(&mut path)?;
        let mut nums = [0u64; 5];
        for n in &mut nums {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            *n = u64::from_le_bytes(b);
        }
        let mut mode = [0u8; 4];
        r.read_exact(&mut mode)?;
        let mut hex = [0u8; 64];
        r.read_exact(&mut hex)?;
        let digest: Digest =
            format!("sha256:{}", String::from_utf8_lossy(&hex)).parse().map_err(io::Error::other)?;
        let stat = Stat {
            dev: nums[0],
            ino: nums[1],
            size: nums[2],
            mtime_ns: nums[3] as i64,
            ctime_ns: nums[4] as i64,
            mode: u32::from_le_bytes(mode),
        };
        map.insert(PathBuf::from(std::ffi::OsStr::from_bytes(&path)), (stat, digest));
    }
    Ok(map)
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
        // A program that leaves SIGIO at its default gets no lease (a break would kill it).
        // SAFETY: SIG_DFL and SIG_IGN install no handler code.
        unsafe { libc::signal(libc::SIGIO, libc::SIG_DFL) };
        assert_eq!(hash_mapped(&File::open(&path).unwrap()), None);
        assert_eq!(hash_file(&path).unwrap(), expected);
        // SAFETY: as above.
        unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
        // Leasable: hashed through the mapping.
        assert_eq!(hash_mapped(&File::open(&path).unwrap()), Some(expected.clone()));
        assert_eq!(hash_file(&path).unwrap(), expected);
        // Someone has it open for writing: no lease, so no mapping; read() gives the same.
        let writer = File::options().write(true).open(&path).unwrap();
        assert_eq!(hash_mapped(&File::open(&path).unwrap()), None);
        assert_eq!(hash_file(&path).unwrap(), expected);
        drop(writer);
        // Small files are always read.
        fs::write(dir.path().join("small"), b"abc").unwrap();
        assert_eq!(hash_mapped(&File::open(dir.path().join("small")).unwrap()), None);
        assert_eq!(hash_file(&dir.path().join("small")).unwrap(), Digest::of(b"abc"));
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
