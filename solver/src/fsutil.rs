//! Source matching for COPY: paths and globs, resolved inside their root.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hostutil::{gopath, inroot};

/// Cleans a source path the way Docker does before matching it: relative to the root,
/// `..` clamped at the root.
pub fn clean_relative(path: &str) -> PathBuf {
    PathBuf::from(gopath::clean_absolute(path).trim_start_matches('/'))
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The paths (relative to `root`) that COPY source `pattern` names: the path itself, or every
/// match of a glob (Go `filepath.Match` rules per component), sorted. Empty when none exist.
pub fn match_sources(root: &Path, pattern: &str) -> io::Result<Vec<PathBuf>> {
    let clean = clean_relative(pattern);
    if !has_glob(pattern) {
        let p = inroot::resolve(root, &clean)?;
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
                if fs::symlink_metadata(inroot::resolve(root, &cand)?).is_ok() {
                    next.push(cand);
                }
                continue;
            }
            let pat = glob::Pattern::new(&comp).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("bad pattern {comp:?}: {e}"))
            })?;
            let dir = inroot::resolve(root, base)?;
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
