//! `diff`: a container's upper directory compared with the layers below it.
//!
//! Read straight from the store (no mount): every entry of the upper is a change. A whiteout
//! (a 0/0 character device) is a deletion; anything else is a change (`C`) if the lowers show
//! something at that path, else an addition (`A`). An opaque directory hides the lowers'
//! content: each entry they show in it that the upper lacks is a deletion. The lowers are the
//! init layer (the mount points rbuild adds, so they never count as changes) and the image's
//! layers, read as overlayfs reads them: topmost first, a whiteout or a non-directory hides what
//! is below it, an opaque directory hides the content of the same directory below.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use cache::userns::is_whiteout;

use crate::{Error, Result};

/// What happened to a path, as docker's `diff` letters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// `C`: it was in the image and was changed (or something below it was).
    Changed,
    /// `A`: new.
    Added,
    /// `D`: deleted.
    Deleted,
}

impl ChangeKind {
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Changed => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One line of `diff`: `C /etc`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.letter(), self.path)
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// The changes in `upper` over `lowers` (topmost first), sorted by path.
pub(crate) fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(upper, Path::new(""), lowers, &mut out)?;
    out.sort();
    Ok(out)
}

fn shown(rel: &Path) -> String {
    format!("/{}", rel.to_string_lossy())
}

fn walk(upper: &Path, rel: &Path, lowers: &[PathBuf], out: &mut Vec<Change>) -> Result<()> {
    let mut names = names_of(&upper.join(rel))?;
    names.sort();
    for name in &names {
        let rel = rel.join(name);
        let path = upper.join(&rel);
        let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
        if is_whiteout(&meta) {
            out.push(Change { path: shown(&rel), kind: ChangeKind::Deleted });
            continue;
        }
        let kind = if visible_in(lowers, &rel) { ChangeKind::Changed } else { ChangeKind::Added };
        out.push(Change { path: shown(&rel), kind });
        if meta.is_dir() {
            if is_opaque(&path)? {
                hidden_by_opaque(&path, &rel, lowers, out)?;
            }
            walk(upper, &rel, lowers, out)?;
        }
    }
    Ok(())
}

/// The entries the lowers show in directory `rel` that the opaque upper directory `dir` lacks:
/// deleted.
fn hidden_by_opaque(dir: &Path, rel: &Path, lowers: &[PathBuf], out: &mut Vec<Change>) -> Result<()> {
    let in_upper: BTreeSet<OsString> = names_of(dir)?.into_iter().collect();
    let mut candidates = BTreeSet::new();
    for lower in lowers {
        let d = lower.join(rel);
        if fs::symlink_metadata(&d).is_ok_and(|m| m.is_dir()) {
            candidates.extend(names_of(&d)?);
        }
    }
    for name in candidates.difference(&in_upper) {
        let rel = rel.join(name);
        if visible_in(lowers, &rel) {
            out.push(Change { path: shown(&rel), kind: ChangeKind::Deleted });
        }
    }
    Ok(())
}

fn names_of(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        names.push(entry.map_err(io_at(dir))?.file_name());
    }
    Ok(names)
}

fn is_opaque(path: &Path) -> Result<bool> {
    cache::userns::is_opaque(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// Whether the lowers (topmost first) show anything at `rel`.
fn visible_in(lowers: &[PathBuf], rel: &Path) -> bool {
    let comps: Vec<_> = rel.components().collect();
    for lower in lowers {
        let mut path = lower.clone();
        let mut opaque_above = false;
        for (i, comp) in comps.iter().enumerate() {
            path.push(comp);
            let Ok(meta) = fs::symlink_metadata(&path) else { break };
            if is_whiteout(&meta) {
                return false;
            }
            if i + 1 == comps.len() {
                return true;
            }
            if !meta.is_dir() {
                // A file where a parent directory would be hides the lower ones' directory.
                return false;
            }
            if is_opaque(&path).unwrap_or(false) {
                opaque_above = true;
            }
        }
        if opaque_above {
            return false;
        }
    }
    false
}
