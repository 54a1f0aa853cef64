//! The store's own config file, `<store>/rbuild.toml`: today its `[gc] keep-storage`, the size
//! the store is pruned back to after each build, whichever front end (the CLI, the API
//! service) ran it.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::{Digest, Error, PrunePolicy, PruneReport, Result, Store};

/// The config file's name, beside the store's directories.
pub const CONFIG_FILE: &str = "rbuild.toml";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    gc: GcConfig,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GcConfig {
    keep_storage: Option<String>,
}

/// A size limit and how the user wrote it (`200MB`), which is how messages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeLimit {
    pub bytes: u64,
    pub text: String,
}

impl SizeLimit {
    /// `10GB`, `1.5g`, `500m`: go-units' `RAMInBytes` (binary units), which buildx's
    /// `--keep-storage` reads. `None` when `text` is not a size.
    pub fn parse(text: &str) -> Option<SizeLimit> {
        hostutil::units::ram_in_bytes(text).map(|bytes| SizeLimit { bytes, text: text.to_string() })
    }
}

/// What a size limit did to the store after a build.
#[derive(Debug)]
pub struct Enforced {
    pub limit: SizeLimit,
    pub report: PruneReport,
}

impl Store {
    /// The limit in `<store>/rbuild.toml` (`[gc]\nkeep-storage = "10GB"`), if the file sets one.
    /// An unknown key or a bad value is an error naming the file, line and column.
    pub fn configured_limit(&self) -> Result<Option<SizeLimit>> {
        let path = self.root().join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        parse_config(&text, &path)
    }

    /// After a build: when the store is over `limit`, prunes it back to the limit, sparing the
    /// images in `in_use` (containers' images). `None` when it was within the limit.
    pub fn keep_within(&self, limit: &SizeLimit, in_use: &BTreeSet<Digest>) -> Result<Option<Enforced>> {
        if self.size() <= limit.bytes {
            return Ok(None);
        }
        let policy = PrunePolicy { keep_bytes: Some(limit.bytes), older_than: None };
        let report = self.prune_to(&policy, in_use)?;
        Ok(Some(Enforced { limit: limit.clone(), report }))
    }
}

fn parse_config(text: &str, path: &Path) -> Result<Option<SizeLimit>> {
    let bad = |reason: String| Error::Config { path: path.to_path_buf(), reason };
    let file: ConfigFile = toml::from_str(text).map_err(|e| bad(toml_message(text, &e)))?;
    file.gc
        .keep_storage
        .map(|s| {
            SizeLimit::parse(&s).ok_or_else(|| {
                bad(format!(
                    "[gc] keep-storage {s:?}: not a size (a number with an optional unit: 500m, 10GB)"
                ))
            })
        })
        .transpose()
}

/// The toml crate's error as one line: `line L, column C: what` (registries.toml's errors are
/// told the same way).
pub fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {what}")
        }
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_buildx_reads_them() {
        assert_eq!(SizeLimit::parse("200MB").unwrap().bytes, 200 << 20);
        assert_eq!(SizeLimit::parse("1.5GB").unwrap().bytes, 3 << 29);
        assert_eq!(SizeLimit::parse("2g").unwrap().bytes, 2 << 30);
        assert_eq!(SizeLimit::parse("lots"), None);
    }

    #[test]
    fn the_config_file_names_a_typo_by_line_and_column() {
        let path = Path::new("/s/rbuild.toml");
        let limit = parse_config("[gc]\nkeep-storage = \"10GB\"\n", path).unwrap().unwrap();
        assert_eq!(limit, SizeLimit { bytes: 10 << 30, text: "10GB".into() });
        assert_eq!(parse_config("", path).unwrap(), None);
        let e = parse_config("[gc]\nkeep-storgae = \"10GB\"\n", path).unwrap_err().to_string();
        assert!(
            e.starts_with("config file /s/rbuild.toml: line 2, column 1: unknown field `keep-storgae`"),
            "{e}"
        );
        let e = parse_config("[gc]\nkeep-storage = \"ten\"\n", path).unwrap_err().to_string();
        assert!(e.contains("[gc] keep-storage \"ten\": not a size"), "{e}");
    }
}
