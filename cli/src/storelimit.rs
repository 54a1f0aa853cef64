//! The store's size limit at the CLI: `builder prune --keep-storage/--filter until=` and `build
//! --gc-keep-storage`. The work, and `[gc] keep-storage` in `<store>/rbuild.toml` (which the
//! API service's builds keep too), is in cache/ (`Store::prune_to`, `cache::config`); this
//! module reads the flags and tells the user.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use cache::{PrunePolicy, SizeLimit, Store};

use crate::args::BuilderPruneArgs;

/// A size a flag gives (`--keep-storage 10GB`).
fn parse_size(text: &str, what: &str) -> Result<SizeLimit> {
    SizeLimit::parse(text)
        .ok_or_else(|| anyhow!("{what} {text:?}: not a size (a number with an optional unit: 500m, 10GB)"))
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

/// `build`'s limit: `--gc-keep-storage`, else the store's config file's, else none.
pub fn build_limit(store: &Store, flag: Option<&str>) -> Result<Option<SizeLimit>> {
    match flag {
        Some(text) => parse_size(text, "--gc-keep-storage").map(Some),
        None => Ok(store.configured_limit()?),
    }
}

/// After a build: when the store is over `limit`, prunes it to the limit and says so on stderr
/// in one line (and a warning when even that was not enough).
pub fn enforce(store: &Store, limit: Option<SizeLimit>, quiet: bool) -> Result<()> {
    let Some(limit) = limit else { return Ok(()) };
    let in_use = runtime::images::in_use(store.root())?;
    let Some(done) = store.keep_within(&limit, &in_use).context("keeping the store to its size limit")?
    else {
        return Ok(());
    };
    if !quiet {
        eprintln!("rbuild: store over its {} limit: {}", done.limit.text, done.report);
    }
    if let Some(w) = done.report.limit_warning() {
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
        assert!(parse_size("lots", "--keep-storage").unwrap_err().to_string().contains("not a size"));
        assert_eq!(parse_until(&["until=1h30m".into()]).unwrap(), Some(Duration::from_secs(5400)));
        assert_eq!(parse_until(&[]).unwrap(), None);
        let e = format!("{:#}", parse_until(&["until=7d".into()]).unwrap_err());
        assert!(e.contains("unknown unit \"d\""), "{e}");
        assert!(parse_until(&["type=regular".into()]).is_err());
    }
}
