//! File trees reached through a directory descriptor, read and written one component at a time.
//!
//! A [`Tree`] is either a container's root (its `/proc/PID/root`, or its overlay mounted in a
//! private mount namespace) or the host. In a container every path is resolved by `openat2`
//! with `RESOLVE_IN_ROOT`: a symlink, absolute or with `..`, never leads out of the container,
//! as if the copy ran chrooted in it. Below the path a copy starts from, nothing is resolved by
//! name any more: the walker and the sink go from directory descriptor to entry with `*at`
//! calls on single names and `O_NOFOLLOW`, so a container that swaps a directory for a symlink
//! while we copy gains nothing.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use hostutil::gopath::clean_absolute_path;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, futimens, mkdirat, mknodat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

use crate::{Error, Result};

/// Owner, permissions and modification time of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Permission bits with setuid, setgid and sticky (`& 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl Meta {
    fn of(st: &FileStat) -> Meta {
        Meta {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    /// A regular file of this many bytes.
    File(u64),
    Symlink(Vec<u8>),
    /// A second name of a file copied earlier in the same copy: that entry's path.
    Hardlink(Vec<u8>),
    Char(u64),
    Block(u64),
    Fifo,
}

/// One entry of a copy: its path relative to what is copied (empty for the copied file or
/// directory itself; `/`-separated normal components otherwise), what it is, its metadata.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub meta: Meta,
}

/// Where the entries of a copy go: a directory ([`DirSink`]) or a tar stream.
pub(crate) trait Sink {
    /// Writes one entry; for a regular file `data` gives its bytes. Entries come parents first.
    fn put(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<()>;
    /// Called once after the last entry.
    fn finish(&mut self) -> Result<()>;
}

/// How path resolution works in a tree.
enum Resolve {
    /// Every path is resolved inside this directory, as if it were `/`.
    InRoot(OwnedFd),
    /// The host, as the user sees it (paths are absolute).
    Host,
}

/// A file tree in which copies read and write.
pub(crate) struct Tree {
    resolve: Resolve,
}

impl Tree {
    /// The host's file system, for the user's own paths.
    pub fn host() -> Tree {
        Tree { resolve: Resolve::Host }
    }

    /// The tree under the directory `root`, where every path is resolved as if chrooted there.
    pub fn in_root(root: OwnedFd) -> Tree {
        Tree { resolve: Resolve::InRoot(root) }
    }

    /// Opens the absolute `path` in the tree (intermediate symlinks followed inside it).
    pub fn open(&self, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        let flags = flags | OFlag::O_CLOEXEC;
        match &self.resolve {
            Resolve::Host => openat(AT_FDCWD, path, flags, Mode::empty()),
            Resolve::InRoot(root) => hostutil::inroot::open(root, path, flags),
        }
    }

    /// What is at `path`, without following a symlink in its last component unless `follow`:
    /// an `O_PATH` descriptor and its stat; `None` if nothing is there.
    pub fn lookup(&self, path: &Path, follow: bool) -> Result<Option<(OwnedFd, FileStat)>> {
        let mut flags = OFlag::O_PATH;
        if !follow {
            flags |= OFlag::O_NOFOLLOW;
        }
        match self.open(path, flags) {
            Ok(fd) => {
                let st = fstat(&fd).map_err(io_err(path))?;
                Ok(Some((fd, st)))
            }
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// Follows `path` through symlinks in its last component, as docker resolves a copy's
    /// destination (at most 10 links): the path it ends at, and what is there, if anything.
    pub fn resolve_last(&self, path: &Path) -> Result<(PathBuf, Option<FileStat>)> {
        let mut path = path.to_path_buf();
        for _ in 0..10 {
            let Some((fd, st)) = self.lookup(&path, false)? else { return Ok((path, None)) };
            if !is(&st, SFlag::S_IFLNK) {
                return Ok((path, Some(st)));
            }
            let target = readlinkat(&fd, "").map_err(io_err(&path))?;
            let target = Path::new(&target);
            path = if target.is_absolute() {
                clean_absolute_path(target)
            } else {
                clean_absolute_path(&path.parent().unwrap_or(Path::new("/")).join(target))
            };
        }
        Err(io_err(&path)(Errno::ELOOP))
    }
}

/// `e` as the runtime's I/O error about `path`.
pub(crate) fn io_err(path: &Path) -> impl Fn(Errno) -> Error + '_ {
    move |e| Error::Io { path: path.to_path_buf(), source: io::Error::from(e) }
}

pub(crate) fn is(st: &FileStat, kind: SFlag) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == kind.bits()
}

/// Reads everything a copy of the file or directory `fd` (with stat `st`) gives into `sink`:
/// the thing itself as the entry with the empty path, then, for a directory, all below it,
/// sorted by name at every level. `shown` names it in errors. Returns the bytes of file data.
pub(crate) fn walk(fd: &OwnedFd, st: &FileStat, shown: &Path, sink: &mut dyn Sink) -> Result<u64> {
    let meta = Meta::of(st);
    let mut walker = Walker { sink, links: HashMap::new(), bytes: 0 };
    if is(st, SFlag::S_IFDIR) {
        walker.sink.put(&Entry { path: Vec::new(), kind: Kind::Dir, meta }, &mut io::empty())?;
        let dir = openat(fd, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(io_err(shown))?;
        walker.dir(dir, Vec::new(), shown)?;
    } else if is(st, SFlag::S_IFREG) {
        // The descriptor is O_PATH; reading needs a real open of the same inode, which its
        // /proc/self/fd link gives (no name is looked up again).
        let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let file = openat(AT_FDCWD, proc.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(io_err(shown))?;
        walker.file(Vec::new(), st, meta, File::from(file), shown)?;
    } else {
        let kind = match special_kind(st) {
            Some(k) => k,
            None if is(st, SFlag::S_IFLNK) => {
                Kind::Symlink(readlinkat(fd, "").map_err(io_err(shown))?.into_vec())
            }
            None => return Err(Error::Invalid(format!("{}: cannot copy a socket", shown.display()))),
        };
        walker.sink.put(&Entry { path: Vec::new(), kind, meta }, &mut io::empty())?;
    }
    walker.sink.finish()?;
    Ok(walker.bytes)
}

fn special_kind(st: &FileStat) -> Option<Kind> {
    if is(st, SFlag::S_IFCHR) {
        Some(Kind::Char(st.st_rdev))
    } else if is(st, SFlag::S_IFBLK) {
        Some(Kind::Block(st.st_rdev))
    } else if is(st, SFlag::S_IFIFO) {
        Some(Kind::Fifo)
    } else {
        None
    }
}

struct Walker<'a> {
    sink: &'a mut dyn Sink,
    /// Files with more than one link already given, by (device, inode): their entry path.
    links: HashMap<(u64, u64), Vec<u8>>,
    bytes: u64,
}

impl Walker<'_> {
    fn file(&mut self, path: Vec<u8>, st: &FileStat, meta: Meta, file: File, shown: &Path) -> Result<()> {
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let mut data = ExactReader { inner: file.take(size), left: size, shown };
        self.sink.put(&Entry { path, kind: Kind::File(size), meta }, &mut data)?;
        self.bytes += size;
        Ok(())
    }

    /// Everything below the open directory `dir` (whose entry path is `rel`).
    fn dir(&mut self, dir: OwnedFd, rel: Vec<u8>, shown: &Path) -> Result<()> {
        // Listed through the descriptor's /proc/self/fd link: the very directory we hold, not
        // a name looked up again.
        let proc = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let io = |e| Error::Io { path: shown.to_path_buf(), source: e };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&proc).map_err(io)? {
            names.push(entry.map_err(io)?.file_name());
        }
        names.sort();
        for name in names {
            let shown_child = shown.join(&name);
            let st = match fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed since the directory was read (a running container).
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(io_err(&shown_child)(e)),
            };
            let mut path = rel.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name.as_bytes());
            let meta = Meta::of(&st);
            let open = |flags: OFlag| {
                openat(&dir, name.as_os_str(), flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(io_err(&shown_child))
            };
            if is(&st, SFlag::S_IFDIR) {
                self.sink.put(&Entry { path: path.clone(), kind: Kind::Dir, meta }, &mut io::empty())?;
                let child = open(OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
                self.dir(child, path, &shown_child)?;
            } else if is(&st, SFlag::S_IFREG) {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        let entry = Entry { path, kind: Kind::Hardlink(first.clone()), meta };
                        self.sink.put(&entry, &mut io::empty())?;
                        continue;
                    }
                    self.links.insert(key, path.clone());
                }
                let file = File::from(open(OFlag::O_RDONLY | OFlag::O_NONBLOCK)?);
                self.file(path, &st, meta, file, &shown_child)?;
            } else if is(&st, SFlag::S_IFLNK) {
                let target = readlinkat(&dir, name.as_os_str()).map_err(io_err(&shown_child))?;
                let entry = Entry { path, kind: Kind::Symlink(target.into_vec()), meta };
                self.sink.put(&entry, &mut io::empty())?;
            } else if let Some(kind) = special_kind(&st) {
                self.sink.put(&Entry { path, kind, meta }, &mut io::empty())?;
            }
            // Sockets cannot be copied; like docker's tar, leave them out.
        }
        Ok(())
    }
}

/// A file's data, exactly as many bytes as its size said when it was listed: a file that
/// shrank meanwhile is an error (a tar header already promised the size).
struct ExactReader<'a, R> {
    inner: R,
    left: u64,
    shown: &'a Path,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: file changed as we read it", self.shown.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Who owns what a [`DirSink`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The owner each entry has (`cp -a`).
    Keep,
    /// This uid and gid (a copy into a container without `-a`: its root).
    Fixed(u32, u32),
    /// Whoever runs the copy (a copy to the host without `-a`).
    Caller,
}

/// Writes entries into a directory of a [`Tree`]: the entry with the empty path becomes
/// `dir/name` (or, without a name, is `dir` itself, whose content it merges into).
pub(crate) struct DirSink<'a> {
    tree: &'a Tree,
    dir: PathBuf,
    name: Option<OsString>,
    owner: Owner,
    /// Directories written and their metadata: their mtime is set last, once nothing more is
    /// written into them.
    dirs: Vec<(PathBuf, Meta)>,
    /// The last parent directory opened, reused while entries stay in it.
    parent: Option<(PathBuf, OwnedFd)>,
}

impl<'a> DirSink<'a> {
    pub fn new(tree: &'a Tree, dir: PathBuf, name: Option<OsString>, owner: Owner) -> DirSink<'a> {
        DirSink { tree, dir, name, owner, dirs: Vec::new(), parent: None }
    }

    /// The tree path an entry path stands for; `None` for the destination directory itself.
    fn target(&self, rel: &[u8]) -> Option<PathBuf> {
        let mut p = self.dir.clone();
        if let Some(name) = &self.name {
            p.push(name);
        } else if rel.is_empty() {
            return None;
        }
        for comp in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            p.push(OsStr::from_bytes(comp));
        }
        Some(p)
    }

    /// The directory `path` (the cached one if it is that), made (mode 0755) with its missing
    /// parents if need be.
    fn take_dir(&mut self, path: &Path) -> Result<OwnedFd> {
        match self.parent.take() {
            Some((p, fd)) if p == path => Ok(fd),
            _ => self.open_dir_creating(path, 0),
        }
    }

    fn open_dir_creating(&self, path: &Path, depth: usize) -> Result<OwnedFd> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        match self.tree.open(path, flags) {
            Err(Errno::ENOENT) if depth < 4096 => {
                let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                    return Err(io_err(path)(Errno::ENOENT));
                };
                let pfd = self.open_dir_creating(parent, depth + 1)?;
                match mkdirat(&pfd, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_err(path)(e)),
                }
                self.tree.open(path, flags).map_err(io_err(path))
            }
            r => r.map_err(io_err(path)),
        }
    }

    fn ids(&self, meta: &Meta) -> Option<(Uid, Gid)> {
        match self.owner {
            Owner::Keep => Some((Uid::from_raw(meta.uid), Gid::from_raw(meta.gid))),
            Owner::Fixed(u, g) => Some((Uid::from_raw(u), Gid::from_raw(g))),
            Owner::Caller => None,
        }
    }

    /// Owner (first: chown clears setuid bits), then mode, then times, on an open file.
    fn apply(&self, fd: &OwnedFd, meta: &Meta, path: &Path, times: bool) -> Result<()> {
        if let Some((u, g)) = self.ids(meta) {
            fchown(fd, Some(u), Some(g)).map_err(io_err(path))?;
        }
        nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(meta.mode)).map_err(io_err(path))?;
        if times {
            let t = TimeSpec::new(meta.mtime, meta.mtime_nsec);
            futimens(fd, &t, &t).map_err(io_err(path))?;
        }
        Ok(())
    }

    fn write_file(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &Path,
        meta: &Meta,
        data: &mut dyn Read,
    ) -> Result<()> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(parent, name, flags, Mode::from_bits_truncate(0o600)).map_err(io_err(path))?;
        let mut file = File::from(fd);
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io { path: path.to_path_buf(), source: e }),
            };
            file.write_all(&buf[..n]).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
        }
        self.apply(&OwnedFd::from(file), meta, path, true)
    }

    /// A device node or fifo: made, then reopened by descriptor (never by name again) to set
    /// its owner and mode.
    fn write_node(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &Path,
        kind: SFlag,
        dev: u64,
        meta: &Meta,
    ) -> Result<()> {
        mknodat(parent, name, kind, Mode::from_bits_truncate(0o600), dev).map_err(io_err(path))?;
        let fd = openat(parent, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(io_err(path))?;
        let st = fstat(&fd).map_err(io_err(path))?;
        if !is(&st, kind) {
            return Err(Error::Conflict(format!("{}: replaced while being written", path.display())));
        }
        if let Some((u, g)) = self.ids(meta) {
            fchownat(&fd, "", Some(u), Some(g), AtFlags::AT_EMPTY_PATH).map_err(io_err(path))?;
        }
        // chmod has no empty-path form before fchmodat2 (Linux 6.6): through the descriptor's
        // /proc/self/fd link, which names this very inode.
        let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
        nix::sys::stat::fchmodat(
            AT_FDCWD,
            proc.as_str(),
            Mode::from_bits_truncate(meta.mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(io_err(path))?;
        let t = TimeSpec::new(meta.mtime, meta.mtime_nsec);
        utimensat(parent, name, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink).map_err(io_err(path))
    }
}

impl Sink for DirSink<'_> {
    fn put(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<()> {
        let Some(path) = self.target(&entry.path) else {
            // The destination directory itself (`cp SRC/. DEST`, or a tar's `./`): its own
            // owner and mode stay as they are.
            return Ok(());
        };
        let (Some(parent_path), Some(name)) = (path.parent().map(Path::to_path_buf), path.file_name()) else {
            return Err(Error::Invalid(format!("{}: cannot be written", path.display())));
        };
        let name = name.to_os_string();
        let parent = self.take_dir(&parent_path)?;
        self.put_at(&parent, &name, path, entry, data)?;
        self.parent = Some((parent_path, parent));
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.parent = None;
        for (path, meta) in self.dirs.iter().rev() {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
            let fd = self.tree.open(path, flags).map_err(io_err(path))?;
            let t = TimeSpec::new(meta.mtime, meta.mtime_nsec);
            futimens(fd.as_fd(), &t, &t).map_err(io_err(path))?;
        }
        Ok(())
    }
}

impl DirSink<'_> {
    /// Writes `entry` as `name` in the open directory `parent` (`path` in the tree).
    fn put_at(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        path: PathBuf,
        entry: &Entry,
        data: &mut dyn Read,
    ) -> Result<()> {
        let tree = self.tree;
        let existing = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(io_err(&path)(e)),
        };
        let existing_dir = existing.as_ref().is_some_and(|st| is(st, SFlag::S_IFDIR));
        match (&entry.kind, existing_dir) {
            (Kind::Dir, false) if existing.is_some() => {
                return Err(Error::Conflict(format!(
                    "cannot overwrite non-directory {} with directory",
                    path.display()
                )));
            }
            (Kind::Dir, _) => {}
            (_, true) => {
                return Err(Error::Conflict(format!(
                    "cannot overwrite directory {} with non-directory",
                    path.display()
                )));
            }
            (_, false) if existing.is_some() => {
                unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(io_err(&path))?;
            }
            _ => {}
        }
        let meta = &entry.meta;
        match &entry.kind {
            Kind::Dir => {
                if !existing_dir {
                    mkdirat(parent, name, Mode::from_bits_truncate(0o700)).map_err(io_err(&path))?;
                }
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let fd = openat(parent, name, flags, Mode::empty()).map_err(io_err(&path))?;
                self.apply(&fd, meta, &path, false)?;
                self.dirs.push((path, *meta));
            }
            Kind::File(_) => self.write_file(parent, name, &path, meta, data)?,
            Kind::Symlink(target) => {
                symlinkat(OsStr::from_bytes(target), parent, name).map_err(io_err(&path))?;
                if let Some((u, g)) = self.ids(meta) {
                    fchownat(parent, name, Some(u), Some(g), AtFlags::AT_SYMLINK_NOFOLLOW)
                        .map_err(io_err(&path))?;
                }
                let t = TimeSpec::new(meta.mtime, meta.mtime_nsec);
                utimensat(parent, name, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
                    .map_err(io_err(&path))?;
            }
            Kind::Hardlink(first) => {
                let Some(first_path) = self.target(first) else {
                    return Err(Error::Invalid(format!("{}: a hard link to a directory", path.display())));
                };
                let (Some(fparent), Some(fname)) = (first_path.parent(), first_path.file_name()) else {
                    return Err(Error::Invalid(format!("{}: bad hard link", path.display())));
                };
                let fparent_fd =
                    tree.open(fparent, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(io_err(fparent))?;
                // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never its target.
                linkat(&fparent_fd, fname, parent, name, AtFlags::empty()).map_err(io_err(&path))?;
            }
            Kind::Char(dev) => self.write_node(parent, name, &path, SFlag::S_IFCHR, *dev, meta)?,
            Kind::Block(dev) => self.write_node(parent, name, &path, SFlag::S_IFBLK, *dev, meta)?,
            Kind::Fifo => self.write_node(parent, name, &path, SFlag::S_IFIFO, 0, meta)?,
        }
        Ok(())
    }
}
