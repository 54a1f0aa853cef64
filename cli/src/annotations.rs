//! `build --annotation [LEVEL[PLATFORM]:]KEY=VALUE`, buildx's syntax: `manifest` (the default),
//! `index` and `manifest-descriptor`, each optionally for one platform
//! (`manifest[linux/arm64]:k=v`). A single-platform image is a manifest only; the index levels
//! need a build for several platforms.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// On the image manifest (of every platform, or the one named).
    Manifest,
    /// On the image index of a multi-platform build.
    Index,
    /// On the manifest's descriptor inside the index.
    ManifestDescriptor,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub level: Level,
    pub platform: Option<frontend::Platform>,
    pub key: String,
    pub value: String,
    /// As given, for errors.
    pub raw: String,
}

pub fn parse(value: &str) -> Result<Annotation> {
    let (prefix, kv) = match value.split_once(':') {
        Some((prefix, rest)) if !prefix.contains('=') => (Some(prefix), rest),
        _ => (None, value),
    };
    let (level, platform) = match prefix {
        None => ("manifest", None),
        Some(p) => match p.split_once('[') {
            Some((level, rest)) => match rest.strip_suffix(']') {
                Some(platform) => (level, Some(platform)),
                None => bail!("--annotation {value:?}: a platform is written LEVEL[os/arch]:KEY=VALUE"),
            },
            None => (p, None),
        },
    };
    let level = match level {
        "manifest" => Level::Manifest,
        "index" => Level::Index,
        "manifest-descriptor" => Level::ManifestDescriptor,
        other => bail!(
            "--annotation {value:?}: unknown level {other:?} (manifest, index, manifest-descriptor; \
             index-descriptor is not supported)"
        ),
    };
    if level == Level::Index && platform.is_some() {
        bail!("--annotation {value:?}: index annotations are the whole index's, not a platform's");
    }
    let platform = platform
        .map(|p| frontend::Platform::parse(p).map_err(|e| anyhow::anyhow!("--annotation {value:?}: {e}")))
        .transpose()?;
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => {
            Ok(Annotation { level, platform, key: k.into(), value: v.into(), raw: value.into() })
        }
        _ => bail!("--annotation {value:?}: expected KEY=VALUE"),
    }
}

/// The annotations of `level` that apply to `platform` (those naming no platform, or it).
pub fn select(list: &[Annotation], level: Level, platform: &frontend::Platform) -> BTreeMap<String, String> {
    list.iter()
        .filter(|a| a.level == level && a.platform.as_ref().is_none_or(|p| p == platform))
        .map(|a| (a.key.clone(), a.value.clone()))
        .collect()
}

/// For a single-platform build: the manifest's annotations, or an error for the index levels.
pub fn single(list: &[Annotation], platform: &frontend::Platform) -> Result<BTreeMap<String, String>> {
    if let Some(a) = list.iter().find(|a| a.level != Level::Manifest) {
        bail!(
            "--annotation {:?}: a single-platform image has a manifest only (no index); build several \
             --platform to get an index",
            a.raw
        );
    }
    Ok(select(list, Level::Manifest, platform))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildx_syntax() {
        let a = parse("org.opencontainers.image.source=https://x/y").unwrap();
        assert_eq!(
            (a.level, a.key.as_str(), a.value.as_str()),
            (Level::Manifest, "org.opencontainers.image.source", "https://x/y")
        );
        let a = parse("index:k=v").unwrap();
        assert_eq!(a.level, Level::Index);
        let a = parse("manifest-descriptor[linux/arm64/v8]:k=v").unwrap();
        assert_eq!(
            (a.level, a.platform.unwrap().to_string()),
            (Level::ManifestDescriptor, "linux/arm64".into())
        );
        assert!(parse("index-descriptor:k=v").unwrap_err().to_string().contains("not supported"));
        assert!(parse("manifest:=v").is_err());
        assert!(parse("manifest[linux:k=v").is_err());
        let host = frontend::Platform::host();
        let list = [parse("k=v").unwrap(), parse("manifest[linux/s390x]:only=s").unwrap()];
        assert_eq!(single(&list, &host).unwrap().len(), 1);
        let s390x = frontend::Platform::parse("linux/s390x").unwrap();
        assert_eq!(select(&list, Level::Manifest, &s390x).len(), 2);
        assert!(single(&[parse("index:k=v").unwrap()], &host).is_err());
    }
}
