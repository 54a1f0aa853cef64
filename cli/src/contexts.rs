//! `build --build-context NAME=VALUE`, as docker buildx takes it. Each context becomes the
//! reference of an image in the store, which the frontend puts in place of the stage or image
//! called NAME (`frontend::LowerOptions::named_contexts`):
//! - `docker-image://REF`: that image (pulled as any base is);
//! - `oci-layout://PATH[@TAG|@sha256:...]`: the image of an OCI layout directory, loaded
//!   without a name (reachable by digest only);
//! - a directory: its files as a one-layer image (no config), as BuildKit's local named
//!   context gives them to `FROM`, `COPY --from` and `RUN --mount from=`. The layer is written
//!   with owners root and mtimes fixed, so that its digest, and every cache key that reads it,
//!   follows the content only (the main context's rule too).

use std::collections::BTreeMap;
use std::io::{BufReader, Seek};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use cache::oci::{History, ImageConfig, Platform, RootFs};
use cache::{Compression, ImageRef, Store};

/// The named contexts of a build, by [`frontend::context_key`], each as an image reference.
pub fn named_contexts(store: &Store, values: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in values {
        let (name, value) = v
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| anyhow!("--build-context {v:?}: use NAME=VALUE"))?;
        let flag = || format!("--build-context {name}={value}");
        let image = if let Some(r) = value.strip_prefix("docker-image://") {
            r.parse::<ImageRef>().with_context(flag)?;
            r.to_string()
        } else if let Some(p) = value.strip_prefix("oci-layout://") {
            oci_layout(store, p).with_context(flag)?
        } else if value.contains("://") {
            bail!("{}: use docker-image://REF, oci-layout://PATH[@TAG] or a directory", flag());
        } else {
            directory(store, name, Path::new(value)).with_context(flag)?
        };
        out.insert(frontend::context_key(name), image);
    }
    Ok(out)
}

fn directory(store: &Store, name: &str, dir: &Path) -> Result<String> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let mut tar_file = store.temp_file()?;
    {
        let mut tar = tar::Builder::new(tar_file.as_file_mut());
        tar.mode(tar::HeaderMode::Deterministic);
        tar.follow_symlinks(false);
        tar.append_dir_all(".", dir).with_context(|| format!("reading {}", dir.display()))?;
        tar.finish()?;
    }
    let mut file = tar_file.reopen()?;
    file.rewind()?;
    let layer = store.import_layer(BufReader::new(file), Compression::Gzip)?;
    let platform = Platform::host();
    let config = ImageConfig {
        architecture: platform.architecture,
        os: platform.os,
        rootfs: RootFs { kind: "layers".into(), diff_ids: vec![layer.diff_id.clone()] },
        history: vec![History { created_by: Some(format!("build context {name}")), ..Default::default() }],
        ..Default::default()
    };
    Ok(store.put_image(&config, &[layer])?.digest.to_string())
}

fn oci_layout(store: &Store, value: &str) -> Result<String> {
    let (path, pick) = match value.rsplit_once('@') {
        Some((p, t)) if !t.contains('/') => (p, Some(t)),
        _ => (value, None),
    };
    let dir = Path::new(path);
    if !dir.join("index.json").is_file() {
        bail!("{path} is not an OCI image layout (no index.json)");
    }
    let mut tar_file = store.temp_file()?;
    {
        let mut tar = tar::Builder::new(tar_file.as_file_mut());
        tar.follow_symlinks(false);
        tar.append_dir_all(".", dir).with_context(|| format!("reading {path}"))?;
        tar.finish()?;
    }
    let images = store.load_unnamed(tar_file.path())?;
    let found: Vec<_> = match pick {
        None => images.iter().collect(),
        Some(p) => images
            .iter()
            .filter(|l| {
                l.image.digest.as_str() == p
                    || l.ref_name.as_deref() == Some(p)
                    || l.reference.as_ref().and_then(|r| r.tag()) == Some(p)
            })
            .collect(),
    };
    match found.as_slice() {
        [one] => Ok(one.image.digest.to_string()),
        [] => bail!("{path} has no image {}", pick.unwrap_or("at all")),
        _ => bail!("{path} holds {} images: pick one with @TAG", found.len()),
    }
}
