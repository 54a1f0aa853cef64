//! `import`: a root filesystem tar as a one-layer image (`rbuild import`, the API's
//! `POST /images/create?fromSrc=`).

use std::io::BufRead;

use cache::oci::{self, History, ImageConfig, RootFs};
use cache::{Compression, Image, ImageRef, Store};

use crate::changes::{ChangeError, apply_changes};

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error(transparent)]
    Store(#[from] cache::Error),
}

/// Stores the tar read from `input` (plain or compressed) as the only layer of an image for
/// this machine's platform, its config made by `changes` (`-c`), its history naming `source`
/// with `message` as the comment (docker's `Imported from SOURCE` without one), and tags it
/// `reference` (without one it is kept as a dangling image). The changes are checked before
/// the layer is read.
pub fn import(
    store: &Store,
    input: impl BufRead,
    reference: Option<&ImageRef>,
    changes: &[String],
    source: &str,
    message: Option<&str>,
) -> Result<Image, ImportError> {
    let mut container = oci::ContainerConfig::default();
    apply_changes(&mut container, changes)?;
    let layer = store.import_layer(input, Compression::Gzip)?;
    let platform = oci::Platform::host();
    let now = crate::now_rfc3339();
    let config = ImageConfig {
        config: container,
        created: Some(now.clone()),
        architecture: platform.architecture,
        os: platform.os,
        rootfs: RootFs { kind: "layers".into(), diff_ids: vec![layer.diff_id.clone()] },
        history: vec![History {
            created: Some(now),
            created_by: Some(format!("rbuild import {source}")),
            comment: Some(message.map_or_else(|| format!("Imported from {source}"), str::to_string)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let image = store.put_image(&config, &[layer])?;
    match reference {
        Some(r) => store.tag(r, &image.digest)?,
        None => store.keep_dangling(&image.digest)?,
    }
    cache::events::image(store.root(), "import", image.digest.as_str(), image.digest.as_str());
    Ok(image)
}
