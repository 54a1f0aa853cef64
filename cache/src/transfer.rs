//! Hints for registry transfers: the repositories a blob is known to be in, so that a push to
//! another repository of the same registry can ask for a cross-repository mount instead of
//! uploading the blob again.
//!
//! One small text file per blob, `blob-sources/<hex>`, one `host/repository` a line, most
//! recent first, at most [`MAX_SOURCES`]. These are only hints: a stale or lost entry costs an
//! upload, never correctness, so they are written without a lock (a concurrent writer may
//! drop an entry) and are not part of garbage collection's marks.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::error::{Error, IoContext, Result};
use crate::{Digest, Store};

/// How many source repositories are remembered per blob.
pub const MAX_SOURCES: usize = 8;

impl Store {
    fn blob_sources_path(&self, digest: &Digest) -> PathBuf {
        self.root().join("blob-sources").join(digest.hex())
    }

    /// The repositories (`host/path`) blob `digest` was pulled from or pushed to, most recent
    /// first. Empty when none is known (or the hint file is unreadable).
    pub fn blob_sources(&self, digest: &Digest) -> Vec<String> {
        fs::read_to_string(self.blob_sources_path(digest))
            .map(|text| text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Records that blob `digest` is in `repository` (`host/path`).
    pub fn add_blob_source(&self, digest: &Digest, repository: &str) -> Result<()> {
        let mut sources = self.blob_sources(digest);
        if sources.first().map(String::as_str) == Some(repository) {
            return Ok(());
        }
        sources.retain(|s| s != repository);
        sources.insert(0, repository.to_string());
        sources.truncate(MAX_SOURCES);
        let path = self.blob_sources_path(digest);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).at(dir)?;
        }
        let mut tmp = self.temp_file()?;
        let mut text = sources.join("\n");
        text.push('\n');
        tmp.write_all(text.as_bytes()).at(tmp.path())?;
        tmp.persist(&path).map_err(|e| Error::Io { path: path.clone(), source: e.error })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_most_recent_first_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"x");
        assert!(store.blob_sources(&d).is_empty());
        for i in 0..10 {
            store.add_blob_source(&d, &format!("127.0.0.1:5000/r{i}")).unwrap();
        }
        store.add_blob_source(&d, "127.0.0.1:5000/r3").unwrap();
        let s = store.blob_sources(&d);
        assert_eq!(s.len(), MAX_SOURCES);
        assert_eq!(s[0], "127.0.0.1:5000/r3");
        assert_eq!(s[1], "127.0.0.1:5000/r9");
        assert_eq!(s.iter().filter(|x| *x == "127.0.0.1:5000/r3").count(), 1);
    }
}
