//! A COPY from the context written straight into its layer, without creating its files.
//!
//! Creating files is most of a cold `COPY tree /d` of a big tree (40,000 files: most of the
//! time in ext4's inode allocator), and a build that pushes or exports the image never reads
//! them. So when nothing later in the build needs the stage's rootfs (every later step of the
//! stage only changes the config, and no other stage reads this one), the COPY is *planned*:
//! [`plan`] works out, from the parent's rootfs mounted read-only and the sources' `lstat`s,
//! exactly what the eager copy ([`crate::copy::copy`]) would leave in the snapshot's upperdir,
//! and [`cache::Store::commit_entries`] tars that list reading the files from the context. The
//! layer's bytes are the same as the eager copy's (a test builds both ways and compares diff
//! ids); it is unpacked from its blob, as a pulled layer is, the first time a snapshot or a
//! container needs it.
//!
//! What the upperdir would hold, following overlayfs and the eager copy:
//! - every new entry, with the owner, mode and mtime the copy gives it;
//! - directories of the image on the way to a new entry, copied up with their own metadata
//!   and xattrs; the one a new entry was created in gets the time of the build as its mtime
//!   (overlayfs restores the mtime of a copied-up parent, creating a child changes it);
//! - a source directory merged into one the image has keeps the image's owner and mode and
//!   takes the source's mtime, and is left out (as [`cache::drop_unchanged_copy_ups`] leaves
//!   it out) when nothing new is below it.
//!
//! Anything else falls back to the eager copy, which also gives its errors: an entry that
//! replaces one of the image's (a file over a file: the unchanged-copy-up rule), two sources
//! writing the same non-directory path, a `..` or a dangling symlink on the destination's way,
//! special files, `--from`, `--parents`, heredocs.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use cache::{TreeEntry, TreeKind};
use hostutil::inroot;

use crate::copy::{CopyJob, Owner, walk_tree};

/// The plan cannot say what the eager copy would do: run that instead.
struct Fallback;

impl From<io::Error> for Fallback {
    fn from(_: io::Error) -> Fallback {
        Fallback
    }
}

impl From<crate::copy::FileError> for Fallback {
    fn from(_: crate::copy::FileError) -> Fallback {
        Fallback
    }
}

type Planned<T> = Result<T, Fallback>;

struct Entry {
    tree: TreeEntry,
    /// A directory the image has (kept only if something new is below it).
    image: bool,
}

/// What `job` copied into the rootfs at `view` (the parent's layers, read-only) would add as
/// a layer, as entries for [`cache::Store::commit_entries`]; `None` when the eager copy must
/// run instead. `now` is the mtime of the directories the copy adds entries to. Keep `view`
/// mounted until the entries are committed: the image's directories' xattrs are read there.
pub(crate) fn plan(view: &Path, job: &CopyJob<'_>, now: i64) -> Option<Vec<TreeEntry>> {
    let Owner::Set(uid, gid) = job.owner else { return None };
    let mut p = Planner { view, entries: BTreeMap::new(), now, owner: (uid, gid), chmod: job.chmod };
    p.copy(job).ok()?;
    Some(p.finish())
}

struct Planner<'a> {
    view: &'a Path,
    /// By path in the image (relative, resolved): every entry's parent is here too, or is
    /// the root.
    entries: BTreeMap<PathBuf, Entry>,
    now: i64,
    owner: (u32, u32),
    chmod: Option<u32>,
}

impl Planner<'_> {
    /// [`crate::copy::copy`], step for step.
    fn copy(&mut self, job: &CopyJob<'_>) -> Planned<()> {
        let dest_is_dir_form = job.dest.ends_with('/');
        let dest_rel = Path::new(job.dest);
        for rel in job.sources {
            let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if job.exclude.is_some_and(|x| x.excludes_copied(Path::new(""), &name)) {
                continue;
            }
            let src = inroot::resolve(job.src_root, rel)?;
            let meta = fs::metadata(&src)?;
            if meta.is_dir() {
                let dest = self.mkdir_all(dest_rel)?;
                let mut dirs = Vec::new();
                for (path, meta) in walk_tree(&src, job)? {
                    let below = path.strip_prefix(&src).map_err(|_| Fallback)?;
                    let at = dest.join(below);
                    if meta.is_dir() {
                        dirs.push((at.clone(), meta.mtime()));
                    }
                    self.put(at, &path, &meta)?;
                }
                // Directory mtimes last, as the eager copy sets them.
                for (at, mtime) in dirs {
                    if let Some(e) = self.entries.get_mut(&at) {
                        e.tree.mtime = mtime;
                    }
                }
            } else {
                let name = rel.file_name().ok_or(Fallback)?;
                let target = if dest_is_dir_form || self.is_dir(dest_rel)? {
                    dest_rel.join(name)
                } else {
                    dest_rel.to_path_buf()
                };
                let parent = self.mkdir_all(target.parent().unwrap_or(Path::new("")))?;
                let name = target.file_name().ok_or(Fallback)?;
                self.put(parent.join(name), &src, &meta)?;
            }
        }
        Ok(())
    }

    /// The entries, the image's directories with nothing new below them left out.
    fn finish(self) -> Vec<TreeEntry> {
        let mut needed: HashSet<&Path> = HashSet::new();
        for (path, e) in &self.entries {
            if e.image {
                continue;
            }
            for a in path.ancestors().skip(1) {
                if a.as_os_str().is_empty() || !needed.insert(a) {
                    break;
                }
            }
        }
        let keep: HashSet<PathBuf> = needed.into_iter().map(Path::to_path_buf).collect();
        self.entries.into_iter().filter(|(p, e)| !e.image || keep.contains(p)).map(|(_, e)| e.tree).collect()
    }

    /// The image's entry at `rel` (resolved), if any.
    fn lstat(&self, rel: &Path) -> Planned<Option<fs::Metadata>> {
        match fs::symlink_metadata(self.view.join(rel)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(_) => Err(Fallback),
        }
    }

    fn is_planned_dir(&self, rel: &Path) -> Option<bool> {
        self.entries.get(rel).map(|e| e.tree.kind == TreeKind::Dir)
    }

    /// Whether `rel` (as written) is a directory, its symlinks followed.
    fn is_dir(&mut self, rel: &Path) -> Planned<bool> {
        Ok(self.resolve_dir(rel, false)?.is_some())
    }

    /// The directory the image's symlink `link` leads to, `None` if it leads nowhere.
    fn follow(&self, link: &Path) -> Planned<Option<PathBuf>> {
        let r = inroot::resolve_stacked(&[self.view], link)?;
        // Only the image's own directories are followed: a path through an entry this copy
        // adds is left to the eager copy.
        if r.ancestors().any(|a| self.entries.contains_key(a)) {
            return Err(Fallback);
        }
        match self.lstat(&r)? {
            Some(m) if m.is_dir() => Ok(Some(r)),
            Some(_) => Err(Fallback),
            None => Ok(None),
        }
    }

    /// [`crate::copy::mkdir_all`]: `rel` resolved, its missing directories planned (0755,
    /// the owner of the copy).
    fn mkdir_all(&mut self, rel: &Path) -> Planned<PathBuf> {
        self.resolve_dir(rel, true)?.ok_or(Fallback)
    }

    /// `rel` (as written) resolved through the directories planned and the image's, its
    /// symlinks followed: `Some` when every component is a directory. A missing one is
    /// planned with `create`, else the answer is `None`; anything else is the eager copy's.
    fn resolve_dir(&mut self, rel: &Path, create: bool) -> Planned<Option<PathBuf>> {
        let mut cur = PathBuf::new();
        for c in plain(rel)? {
            let cand = cur.join(c);
            match self.is_planned_dir(&cand) {
                Some(true) => {
                    cur = cand;
                    continue;
                }
                Some(false) => return Err(Fallback),
                None => {}
            }
            match self.lstat(&cand)? {
                Some(m) if m.is_dir() => cur = cand,
                Some(m) if m.file_type().is_symlink() => match self.follow(&cand)? {
                    Some(r) => cur = r,
                    // A dangling symlink: mkdir_all makes its target, which is not planned.
                    None if create => return Err(Fallback),
                    None => return Ok(None),
                },
                // The eager copy would write a file at or below it: its own rules decide.
                Some(_) => return Err(Fallback),
                None if create => {
                    let (uid, gid) = self.owner;
                    let tree = TreeEntry {
                        path: cand.clone(),
                        kind: TreeKind::Dir,
                        mode: 0o755,
                        uid,
                        gid,
                        mtime: self.now,
                        xattrs_from: None,
                    };
                    self.add_new(tree, false)?;
                    cur = cand;
                }
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// The source `src` (with its `lstat`) copied to `at` (resolved, in a directory that is
    /// planned or the image's).
    fn put(&mut self, at: PathBuf, src: &Path, meta: &fs::Metadata) -> Planned<()> {
        let (uid, gid) = self.owner;
        let ft = meta.file_type();
        let mode = self.chmod.unwrap_or(meta.permissions().mode() & 0o7777);
        let (kind, mode, mtime) = if ft.is_dir() {
            (TreeKind::Dir, mode, self.now)
        } else if ft.is_file() {
            (TreeKind::File { source: src.to_path_buf(), size: meta.len() }, mode, meta.mtime())
        } else if ft.is_symlink() {
            (TreeKind::Symlink { target: fs::read_link(src)? }, 0o777, meta.mtime())
        } else {
            return Err(Fallback);
        };
        let tree = TreeEntry { path: at, kind, mode, uid, gid, mtime, xattrs_from: None };
        // Below a directory this copy made, the image has nothing.
        let parent_is_new = tree.path.parent().and_then(|p| self.entries.get(p)).is_some_and(|e| !e.image);
        self.add_new(tree, !parent_is_new)
    }

    /// Adds `tree`, new unless the image (when `in_image` may say so) or this copy already
    /// has a directory there that a directory merges into.
    fn add_new(&mut self, tree: TreeEntry, in_image: bool) -> Planned<()> {
        let is_dir = tree.kind == TreeKind::Dir;
        if let Some(e) = self.entries.get(&tree.path) {
            // Two sources' directories merge: the first one's owner and mode stay.
            return if is_dir && e.tree.kind == TreeKind::Dir { Ok(()) } else { Err(Fallback) };
        }
        if in_image && let Some(m) = self.lstat(&tree.path)? {
            if !(is_dir && m.is_dir()) {
                return Err(Fallback);
            }
            // Merged into the image's directory: not a change to its parent.
            return self.image_dir(&tree.path, m.mtime());
        }
        let parent = tree.path.parent().map(Path::to_path_buf).unwrap_or_default();
        self.entries.insert(tree.path.clone(), Entry { tree, image: false });
        if !parent.as_os_str().is_empty() {
            // A child created: the parent's mtime is now's.
            match self.entries.get_mut(&parent) {
                Some(e) => e.tree.mtime = self.now,
                None => self.image_dir(&parent, self.now)?,
            }
        }
        Ok(())
    }

    /// Plans the image's directory `rel`, copied up with `mtime`, and its parents with their
    /// own.
    fn image_dir(&mut self, rel: &Path, mtime: i64) -> Planned<()> {
        let mut rel = rel.to_path_buf();
        let mut mtime = Some(mtime);
        while !rel.as_os_str().is_empty() && !self.entries.contains_key(&rel) {
            let m = self.lstat(&rel)?.filter(fs::Metadata::is_dir).ok_or(Fallback)?;
            let tree = TreeEntry {
                path: rel.clone(),
                kind: TreeKind::Dir,
                mode: m.permissions().mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: mtime.take().unwrap_or(m.mtime()),
                xattrs_from: Some(self.view.join(&rel)),
            };
            self.entries.insert(rel.clone(), Entry { tree, image: true });
            rel.pop();
        }
        Ok(())
    }
}

/// The names in `rel` (`/` and `.` dropped); a `..` is left to the eager copy.
fn plain(rel: &Path) -> Planned<Vec<&std::ffi::OsStr>> {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Ok(n)),
            Component::ParentDir => Some(Err(Fallback)),
            _ => None,
        })
        .collect()
}
