//! `--cache-to` and `--cache-from` of `rbuild build` (BuildKit's syntax): where a build farm's
//! shared cache goes and comes from. The format is solver::buildcache's.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use cache::Store;
use solver::buildcache::{self, CacheIndex, ExportMode, LocalCache};

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheTo {
    Local { dest: PathBuf, mode: ExportMode },
    Registry { reference: String, mode: ExportMode },
}

/// One `--cache-from`.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheFrom {
    Local { src: PathBuf },
    Registry { reference: String },
}

/// `type=local,dest=DIR[,mode=min|max]`, `type=registry,ref=HOST/REPO:TAG[,mode=...]`.
fn fields(flag: &str, value: &str) -> Result<Vec<(String, String)>> {
    value
        .split(',')
        .map(|f| match f.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_ascii_lowercase(), v.trim().to_string())),
            None => bail!("{flag} {value:?}: {f:?} is not key=value"),
        })
        .collect()
}

fn get<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub fn parse_cache_to(value: &str) -> Result<CacheTo> {
    let flag = "--cache-to";
    let f = fields(flag, value)?;
    let mode = match get(&f, "mode") {
        None | Some("min") => ExportMode::Min,
        Some("max") => ExportMode::Max,
        Some(other) => bail!("{flag} {value:?}: mode must be min or max, not {other:?}"),
    };
    for (k, _) in &f {
        if !["type", "dest", "ref", "mode", "compression", "oci-mediatypes", "ignore-error"]
            .contains(&k.as_str())
        {
            bail!("{flag} {value:?}: unknown key {k:?}");
        }
    }
    match get(&f, "type") {
        Some("local") => match get(&f, "dest") {
            Some(d) if !d.is_empty() => Ok(CacheTo::Local { dest: PathBuf::from(d), mode }),
            _ => bail!("{flag} {value:?}: type=local needs dest=DIR"),
        },
        Some("registry") => match get(&f, "ref") {
            Some(r) if !r.is_empty() => Ok(CacheTo::Registry { reference: r.to_string(), mode }),
            _ => bail!("{flag} {value:?}: type=registry needs ref=HOST/REPO:TAG"),
        },
        Some(other) => bail!("{flag} {value:?}: type {other:?} is not supported (local, registry)"),
        None => bail!("{flag} {value:?}: type= is required (local, registry)"),
    }
}

pub fn parse_cache_from(value: &str) -> Result<CacheFrom> {
    let flag = "--cache-from";
    // BuildKit: a bare reference means type=registry,ref=REFERENCE.
    if !value.contains('=') {
        return Ok(CacheFrom::Registry { reference: value.to_string() });
    }
    let f = fields(flag, value)?;
    match get(&f, "type") {
        Some("local") => match get(&f, "src") {
            Some(s) if !s.is_empty() => Ok(CacheFrom::Local { src: PathBuf::from(s) }),
            _ => bail!("{flag} {value:?}: type=local needs src=DIR"),
        },
        Some("registry") => match get(&f, "ref") {
            Some(r) if !r.is_empty() => Ok(CacheFrom::Registry { reference: r.to_string() }),
            _ => bail!("{flag} {value:?}: type=registry needs ref=HOST/REPO:TAG"),
        },
        Some(other) => bail!("{flag} {value:?}: type {other:?} is not supported (local, registry)"),
        None => bail!("{flag} {value:?}: type= is required (local, registry)"),
    }
}

/// Opens the `--cache-from` sources. A source that cannot be read is a warning, not an error,
/// as in BuildKit: the build then simply misses.
pub fn sources(store: &Store, from: &[CacheFrom], insecure: &[String]) -> Result<solver::CacheSources> {
    let mut out: Vec<Arc<dyn buildcache::CacheSource>> = Vec::new();
    for f in from {
        match f {
            CacheFrom::Local { src } => match LocalCache::open(src) {
                Ok(c) => out.push(Arc::new(c)),
                Err(e) => eprintln!("rbuild: warning: {e}; building without it"),
            },
            CacheFrom::Registry { reference } => match RegistryCache::open(store, reference, insecure) {
                Ok(c) => out.push(Arc::new(c)),
                Err(e) => eprintln!("rbuild: warning: {e}; building without it"),
            },
        }
    }
    Ok(solver::CacheSources(out))
}

/// Writes the build's cache to each `--cache-to`.
pub fn export(store: &Store, out: &solver::BuildOutput, to: &[CacheTo], insecure: &[String]) -> Result<()> {
    for t in to {
        let (mode, describe) = match t {
            CacheTo::Local { dest, mode } => (*mode, format!("type=local,dest={}", dest.display())),
            CacheTo::Registry { reference, mode } => (*mode, format!("type=registry,ref={reference}")),
        };
        let keys: Vec<cache::Digest> = out
            .keys
            .iter()
            .filter(|(stage, _)| mode == ExportMode::Max || *stage == out.target)
            .map(|(_, k)| k.clone())
            .collect();
        let index =
            CacheIndex::collect(store, &keys).map_err(|e| anyhow::anyhow!("--cache-to {describe}: {e}"))?;
        match t {
            CacheTo::Local { dest, .. } => {
                buildcache::export_local(store, &index, dest).map_err(anyhow::Error::msg)?;
            }
            CacheTo::Registry { reference, .. } => {
                let err = |e: String| anyhow::anyhow!("--cache-to {describe}: {e}");
                let r: cache::ImageRef = reference.parse().map_err(|e| err(format!("{e}")))?;
                let json = index.to_json();
                let index_digest = store.write_blob(&json).map_err(|e| err(e.to_string()))?;
                let manifest = index.manifest(&index_digest, json.len() as u64);
                let bytes = serde_json::to_vec(&manifest)?;
                crate::transfer::client(insecure)?
                    .push_artifact(store, &bytes, &manifest, &r)
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        eprintln!("exported build cache ({} steps) to {describe}", index.records.len());
    }
    Ok(())
}

/// `--cache-from type=registry,ref=...`: the index is fetched when the build starts, layers
/// only when the build needs them.
struct RegistryCache {
    client: registry::Client,
    reference: cache::ImageRef,
    index: CacheIndex,
}

impl RegistryCache {
    fn open(
        store: &Store,
        reference: &str,
        insecure: &[String],
    ) -> std::result::Result<RegistryCache, String> {
        let err = |m: String| format!("--cache-from type=registry,ref={reference}: {m}");
        let r: cache::ImageRef = reference.parse().map_err(|e| err(format!("{e}")))?;
        let client = crate::transfer::client(insecure).map_err(|e| err(e.to_string()))?;
        // The index blob goes through the store like any blob (verified against its digest);
        // nothing references it, so gc removes it later.
        let (manifest, config) = client.fetch_artifact(store, &r).map_err(|e| err(e.to_string()))?;
        if manifest.config.media_type != buildcache::INDEX_MEDIA_TYPE {
            return Err(err(format!("not an rbuild build cache (config is {})", manifest.config.media_type)));
        }
        let index = CacheIndex::from_json(&config).map_err(err)?;
        Ok(RegistryCache { client, reference: r, index })
    }
}

impl buildcache::CacheSource for RegistryCache {
    fn lookup(&self, key: &cache::Digest) -> Option<cache::CacheRecord> {
        self.index.records.get(key).cloned()
    }

    fn fetch(&self, store: &Store, layers: &[cache::Layer]) -> std::result::Result<(), String> {
        let descs: Vec<cache::oci::Descriptor> = layers.iter().map(cache::Layer::descriptor).collect();
        self.client
            .fetch_blobs(store, &self.reference, &descs)
            .map_err(|e| format!("{}: {e}", self.describe()))
    }

    fn describe(&self) -> String {
        format!("type=registry,ref={}", self.reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_syntax() {
        assert_eq!(
            parse_cache_to("type=local,dest=/c,mode=max").unwrap(),
            CacheTo::Local { dest: "/c".into(), mode: ExportMode::Max }
        );
        assert_eq!(
            parse_cache_to("type=registry,ref=127.0.0.1:5000/c:1").unwrap(),
            CacheTo::Registry { reference: "127.0.0.1:5000/c:1".into(), mode: ExportMode::Min }
        );
        assert_eq!(parse_cache_from("type=local,src=/c").unwrap(), CacheFrom::Local { src: "/c".into() });
        assert_eq!(
            parse_cache_from("host/repo:tag").unwrap(),
            CacheFrom::Registry { reference: "host/repo:tag".into() }
        );
        for bad in [
            "type=local",
            "type=s3,ref=x",
            "dest=/x",
            "type=local,dest=/x,mode=all",
            "type=local,dest=/x,foo=1",
        ] {
            assert!(parse_cache_to(bad).is_err(), "{bad}");
        }
        assert!(parse_cache_from("type=local").is_err());
    }
}
