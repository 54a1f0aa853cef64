//! The store's size limit: `builder prune --keep-storage/--filter until=`, `build
//! --gc-keep-storage`, and `[gc] keep-storage` in `<store>/rbuild.toml`. The work is
//! `cache::Store::prune_to`; this module reads sizes, durations and the config file.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use cache::{PrunePolicy, Store};
use serde::Deserialize;

use crate::args::BuilderPruneArgs;

/// The store's own config file, beside its directories.
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
pub struct Limit {
    pub bytes: u64,
    pub text: String,
}

/// `10GB`, `1.5g`, `500m`: go-units' `RAMInBytes` (binary units), which buildx's
/// `--keep-storage` reads.
fn parse_size(text: &str, what: &str) -> Result<Limit> {
    let bytes = hostutil::units::ram_in_bytes(text)
        .ok_or_else(|| anyhow!("{what} {text:?}: not a size (a number with an optional unit: 500m, 10GB)"))?;
    Ok(Limit { bytes, text: text.to_string() })
}

/// buildx's `--filter until=DURATION` (a Go duration); no other filter is known.
fn parse_until(filters: &[String]) -> Result<Option<Duration>> {
    let mut until = None;
    for f in filters {
        let Some(value) = f.strip_prefix("until=") else {
            bail!("--filter {f:?}: only until=DURATION is supported (24h, 90m, 1h30m)");
        };
        let ns = hostutil::goparse::parse_go_duration(value).with_context(|| format!("--filter {f:?}"))?;
        let ns = u64::try_from(ns).map_err(|_| anyhow!("--filter {f:?}: the duration is negative"))?;
        until = Some(Duration::from_nanos(ns));
    }
    Ok(until)
}

/// The limit in `<store>/rbuild.toml` (`[gc]\nkeep-storage = "10GB"`), if the file sets one.
/// An unknown key or a bad value is an error naming the file, line and column.
fn configured_limit(store: &Store) -> Result<Option<Limit>> {
    let path = store.root().join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    parse_config(&text, &path)
}

fn parse_config(text: &str, path: &Path) -> Result<Option<Limit>> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| {
        anyhow!("config file {}: {}", path.display(), registry::config::toml_message(text, &e))
    })?;
    file.gc
        .keep_storage
        .map(|s| parse_size(&s, &format!("config file {}: [gc] keep-storage", path.display())))
        .transpose()
}

/// `build`'s limit: `--gc-keep-storage`, else the store's config file's, else none.
pub fn build_limit(store: &Store, flag: Option<&str>) -> Result<Option<Limit>> {
    match flag {
        Some(text) => parse_size(text, "--gc-keep-storage").map(Some),
        None => configured_limit(store),
    }
}

/// After a build: when the store is over `limit`, prunes it to the limit and says so on stderr
/// in one line (and a warning when even that was not enough).
pub fn enforce(store: &Store, limit: Option<Limit>, quiet: bool) -> Result<()> {
    let Some(limit) = limit else { return Ok(()) };
    if store.size() <= limit.bytes {
        return Ok(());
    }
    let in_use = runtime::images::in_use(store.root())?;
    let policy = PrunePolicy { keep_bytes: Some(limit.bytes), older_than: None };
    let report = store.prune_to(&policy, &in_use).context("keeping the store to its size limit")?;
    if !quiet {
        eprintln!("rbuild: store over its {} limit: {report}", limit.text);
    }
    if let Some(w) = report.limit_warning() {
        eprintln!("rbuild: warning: {w}");
    }
    Ok(())
}

/// `builder prune`: the whole build cache, as before, or with `--keep-storage`/`--filter
/// until=` only what the policy says.
pub fn builder_prune(store: &Store, a: BuilderPruneArgs) -> Result<ExitCode> {
    let keep = a.keep_storage.as_deref().map(|s| parse_size(s, "--keep-storage")).transpose()?;
    let until = parse_until(&a.filter)?;
    if keep.is_none() && until.is_none() {
        println!("{}", store.prune_build_cache()?);
        return Ok(ExitCode::SUCCESS);
    }
    let policy = PrunePolicy { keep_bytes: keep.as_ref().map(|l| l.bytes), older_than: until };
    let report = store.prune_to(&policy, &runtime::images::in_use(store.root())?)?;
    println!("{report}");
    if let Some(w) = report.limit_warning() {
        eprintln!("rbuild: warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_as_buildx_reads_them() {
        assert_eq!(parse_size("200MB", "x").unwrap().bytes, 200 << 20);
        assert_eq!(parse_size("1.5GB", "x").unwrap().bytes, 3 << 29);
        assert_eq!(parse_size("2g", "x").unwrap().bytes, 2 << 30);
        assert!(parse_size("lots", "--keep-storage").unwrap_err().to_string().contains("not a size"));
        assert_eq!(parse_until(&["until=1h30m".into()]).unwrap(), Some(Duration::from_secs(5400)));
        assert_eq!(parse_until(&[]).unwrap(), None);
        let e = format!("{:#}", parse_until(&["until=7d".into()]).unwrap_err());
        assert!(e.contains("unknown unit \"d\""), "{e}");
        assert!(parse_until(&["type=regular".into()]).is_err());
    }

    #[test]
    fn the_config_file_names_a_typo_by_line_and_column() {
        let path = Path::new("/s/rbuild.toml");
        let limit = parse_config("[gc]\nkeep-storage = \"10GB\"\n", path).unwrap().unwrap();
        assert_eq!(limit, Limit { bytes: 10 << 30, text: "10GB".into() });
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
