//! Content checksums of COPY sources: what the cache key of a COPY depends on.
//!
//! Only what ends up in the layer counts: relative paths, file types, permission bits, sizes,
//! file contents and symlink targets. Never mtimes, inode numbers or owners (COPY from the
//! context sets the owner itself), so touching a file keeps the cache and any machine with the
//! same files computes the same key.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cache::{Digest, Hasher};
use rayon::prelude::*;

struct Entry {
    rel: String,
    path: PathBuf,
    kind: char,
    mode: u32,
    size: u64,
    uid: u32,
    gid: u32,
}

/// The checksum of the sources `rels` (relative to `root`, as `match_sources` returns them).
/// `with_owner` includes uid/gid, for sources whose ownership the copy keeps (another stage).
pub fn checksum_sources(root: &Path, rels: &[PathBuf], with_owner: bool) -> io::Result<Digest> {
    let mut entries = Vec::new();
    for (i, rel) in rels.iter().enumerate() {
        let top = crate::fsutil::secure_join(root, rel)?;
        // The top-level source is followed if it is a symlink (Docker copies what it points
        // to); everything below it is taken as it is.
        let walker = walkdir::WalkDir::new(&top).follow_root_links(true).sort_by_file_name();
        for item in walker {
            let item = item.map_err(io::Error::other)?;
            let meta = item.metadata().map_err(io::Error::other)?;
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_file() {
                'f'
            } else {
                'o'
            };
            let below = item.path().strip_prefix(&top).unwrap_or(Path::new(""));
            let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            entries.push(Entry {
                rel: format!("{i}\t{name}\t{}", below.display()),
                path: item.path().to_path_buf(),
                kind,
                mode: meta.permissions().mode() & 0o7777,
                size: if kind == 'f' { meta.len() } else { 0 },
                uid: meta.uid(),
                gid: meta.gid(),
            });
        }
    }
    // Hashing file contents is the expensive part: spread it over all cores.
    let contents: Vec<String> = entries
        .par_iter()
        .map(|e| match e.kind {
            'f' => hash_file(&e.path).map(|d| d.to_string()),
            'l' => fs::read_link(&e.path).map(|t| t.display().to_string()),
            _ => Ok(String::new()),
        })
        .collect::<io::Result<_>>()?;
    let mut h = Hasher::new();
    for (e, c) in entries.iter().zip(&contents) {
        let owner = if with_owner { format!("{}:{}", e.uid, e.gid) } else { String::new() };
        h.update(format!("{}\t{}\t{:o}\t{}\t{owner}\t{c}\n", e.rel, e.kind, e.mode, e.size).as_bytes());
    }
    Ok(h.finish())
}

fn hash_file(path: &Path) -> io::Result<Digest> {
    let mut f = File::open(path)?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(root: &Path) -> Digest {
        checksum_sources(root, &[PathBuf::from("d")], false).unwrap()
    }

    #[test]
    fn touching_keeps_the_checksum_and_a_byte_changes_it() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("d")).unwrap();
        fs::write(root.path().join("d/f"), "one").unwrap();
        let before = sum(root.path());
        let f = File::options().write(true).open(root.path().join("d/f")).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(sum(root.path()), before);
        fs::write(root.path().join("d/f"), "two").unwrap();
        assert_ne!(sum(root.path()), before);
    }
}
