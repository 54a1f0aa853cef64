//! Path resolution confined to a root directory, and source matching for COPY.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Resolves `path` inside `root` as if `root` were `/`: `..` stops at the root and symlinks
/// (absolute or relative) are followed *within* the root, so an image's `/usr/local -> /opt`
/// resolves to `root/opt` and a context symlink to `/etc/passwd` never reaches the host's.
/// The last component need not exist.
pub fn secure_join(root: &Path, path: &Path) -> io::Result<PathBuf> {
    Ok(root.join(resolve_stacked(&[root], path)?))
}

/// `path` resolved as [`secure_join`] does, but through stacked directories `dirs` (topmost
/// first, as overlayfs stacks layers): each component is what the topmost directory having it
/// says. Returns the resolved path relative to the root.
pub fn resolve_stacked(dirs: &[&Path], path: &Path) -> io::Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut pending: VecDeque<OsString> = normal_components(path).collect();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let top = dirs.iter().find_map(|d| fs::symlink_metadata(d.join(&candidate)).ok().map(|m| (d, m)));
        match top {
            Some((dir, m)) if m.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(dir.join(&candidate))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut next: VecDeque<OsString> = normal_components(&target).collect();
                next.extend(pending);
                pending = next;
            }
            _ => resolved = candidate,
        }
    }
    Ok(resolved)
}

/// The components of `path` as plain names and `..`, dropping `/` and `.`.
fn normal_components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

/// Cleans a source path the way Docker does before matching it: relative to the root,
/// `..` clamped at the root.
pub fn clean_relative(path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The paths (relative to `root`) that COPY source `pattern` names: the path itself, or every
/// match of a glob (Go `filepath.Match` rules per component), sorted. Empty when none exist.
pub fn match_sources(root: &Path, pattern: &str) -> io::Result<Vec<PathBuf>> {
    let clean = clean_relative(pattern);
    if !has_glob(pattern) {
        let p = secure_join(root, &clean)?;
        return Ok(if fs::symlink_metadata(&p).is_ok() { vec![clean] } else { vec![] });
    }
    let mut current = vec![PathBuf::new()];
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    for comp in clean.components() {
        let comp = comp.as_os_str().to_string_lossy().into_owned();
        let mut next = Vec::new();
        for base in &current {
            if !has_glob(&comp) {
                let cand = base.join(&comp);
                if fs::symlink_metadata(secure_join(root, &cand)?).is_ok() {
                    next.push(cand);
                }
                continue;
            }
            let pat = glob::Pattern::new(&comp).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("bad pattern {comp:?}: {e}"))
            })?;
            let dir = secure_join(root, base)?;
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                if pat.matches_with(&name.to_string_lossy(), opts) {
                    next.push(base.join(name));
                }
            }
        }
        current = next;
    }
    current.sort();
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn secure_join_keeps_symlinks_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("opt/x")).unwrap();
        fs::create_dir_all(root.path().join("usr")).unwrap();
        symlink("/opt/x", root.path().join("usr/local")).unwrap();
        symlink("../../../../../etc", root.path().join("up")).unwrap();
        assert_eq!(
            secure_join(root.path(), Path::new("/usr/local/bin")).unwrap(),
            root.path().join("opt/x/bin")
        );
        assert_eq!(secure_join(root.path(), Path::new("up/passwd")).unwrap(), root.path().join("etc/passwd"));
        assert_eq!(secure_join(root.path(), Path::new("../../a")).unwrap(), root.path().join("a"));
    }

    #[test]
    fn globs_match_per_component_sorted() {
        let root = tempfile::tempdir().unwrap();
        for f in ["a.txt", "b.txt", "c.md", "d/e.txt"] {
            let p = root.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "x").unwrap();
        }
        let m = match_sources(root.path(), "*.txt").unwrap();
        assert_eq!(m, vec![PathBuf::from("a.txt"), PathBuf::from("b.txt")]);
        assert_eq!(match_sources(root.path(), "d/*.txt").unwrap(), vec![PathBuf::from("d/e.txt")]);
        assert!(match_sources(root.path(), "missing").unwrap().is_empty());
        assert_eq!(match_sources(root.path(), "./d/../c.md").unwrap(), vec![PathBuf::from("c.md")]);
    }
}
