//! `--cache-to` and `--cache-from` of `rbuild build` (BuildKit's syntax): where a build farm's
//! shared cache goes and comes from. The format, the parsing and the work are
//! `solver::buildcache`'s; this opens them for a build and says what happened.

use std::sync::Arc;

use anyhow::Result;
use cache::Store;
use solver::buildcache::{self, CacheFrom, CacheTo};

/// The `--cache-from` sources, each opened when the build first needs it. One that cannot be
/// read is a warning, not an error, as in BuildKit: the build then simply misses.
pub fn sources(store: &Store, from: &[CacheFrom], insecure: &[String]) -> Result<solver::CacheSources> {
    if from.is_empty() {
        return Ok(solver::CacheSources::default());
    }
    let client = Arc::new(crate::transfer::client(insecure)?);
    let warn = Arc::new(|e: &buildcache::CacheError| {
        eprintln!("rbuild: warning: {}; building without it", hostutil::errors::one_line(e));
    });
    Ok(buildcache::open_sources(store, from, &client, warn))
}

/// Writes the build's cache to each `--cache-to`; `sources` are the build's `--cache-from`
/// (records that came from them and were never fetched are fetched for the export).
pub fn export(
    store: &Store,
    out: &solver::BuildOutput,
    to: &[CacheTo],
    sources: &solver::CacheSources,
    insecure: &[String],
) -> Result<()> {
    if to.is_empty() {
        return Ok(());
    }
    let client = crate::transfer::client(insecure)?;
    for t in to {
        let done = buildcache::export(store, out, t, &client, sources)?;
        for skipped in &done.skipped {
            eprintln!("rbuild: warning: {skipped}: not exported");
        }
        let mounts = if t.cache_mounts { format!(", {} cache mounts", done.mounts) } else { String::new() };
        eprintln!("exported build cache ({} steps{mounts}) to {}", done.records, t.describe());
    }
    Ok(())
}
