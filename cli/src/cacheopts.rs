//! `--cache-to` and `--cache-from` of `rbuild build` (BuildKit's syntax): where a build farm's
//! shared cache goes and comes from. The format, the parsing and the work are
//! `solver::buildcache`'s; this opens them for a build and says what happened.

use std::sync::Arc;

use anyhow::Result;
use cache::Store;
use solver::buildcache::{self, CacheFrom, CacheTo};

/// Opens the `--cache-from` sources. One that cannot be read is a warning, not an error, as in
/// BuildKit: the build then simply misses.
pub fn sources(store: &Store, from: &[CacheFrom], insecure: &[String]) -> Result<solver::CacheSources> {
    if from.is_empty() {
        return Ok(solver::CacheSources::default());
    }
    let client = Arc::new(crate::transfer::client(insecure)?);
    let (sources, unusable) = buildcache::open_sources(store, from, &client);
    for e in unusable {
        eprintln!("rbuild: warning: {}; building without it", crate::describe(&e.into()));
    }
    Ok(sources)
}

/// Writes the build's cache to each `--cache-to`.
pub fn export(store: &Store, out: &solver::BuildOutput, to: &[CacheTo], insecure: &[String]) -> Result<()> {
    if to.is_empty() {
        return Ok(());
    }
    let client = crate::transfer::client(insecure)?;
    for t in to {
        let records = buildcache::export(store, out, t, &client)?;
        let describe = match t {
            CacheTo::Local { dest, .. } => format!("type=local,dest={}", dest.display()),
            CacheTo::Registry { reference, .. } => format!("type=registry,ref={reference}"),
        };
        eprintln!("exported build cache ({records} steps) to {describe}");
    }
    Ok(())
}
