//! Artifacts other than images (the build cache): a manifest whose config is not an image
//! config, pushed and fetched with the same blob machinery as images.

use cache::oci::{Descriptor, Manifest};
use cache::{Digest, ImageRef, Store};

use crate::error::{Error, Result};
use crate::manifest_target;
use crate::pull::Fetched;
use crate::{Client, Repository};

impl Client {
    /// Pushes `manifest` (its serialized form `manifest_bytes`; its config and layers from
    /// `store`) as `reference`, and returns the manifest digest.
    pub fn push_artifact(
        &self,
        store: &Store,
        manifest_bytes: &[u8],
        manifest: &Manifest,
        reference: &ImageRef,
    ) -> Result<Digest> {
        let repo = Repository::of(reference);
        // A digest-only reference is pushed by that digest (it must be the manifest's).
        let target = match (reference.tag(), reference.digest()) {
            (Some(t), _) => t.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".into(),
        };
        self.push_manifest(store, manifest_bytes, manifest, &repo, &target, &reference.to_string())
    }

    /// Fetches the manifest of `reference` (no platform resolution: it must be a manifest)
    /// and its config blob into `store` (verified); returns the manifest and the config bytes.
    pub fn fetch_artifact(&self, store: &Store, reference: &ImageRef) -> Result<(Manifest, Vec<u8>)> {
        let repo = Repository::of(reference);
        let shown = reference.to_string();
        let first = manifest_target(reference);
        let (_, _, fetched) = self.fetch_manifest(&repo, &first, reference.digest(), &shown)?;
        let Fetched::Manifest(manifest) = fetched else {
            return Err(Error::BadManifest {
                reference: shown,
                reason: "it is an index, not a manifest".into(),
            });
        };
        self.fetch_blob(store, &repo, &manifest.config, &shown, None)?;
        let config = store.read_blob(&manifest.config.digest)?;
        Ok((manifest, config))
    }

    /// Fetches the blobs `descs` of `reference`'s repository that `store` lacks (verified).
    pub fn fetch_blobs(&self, store: &Store, reference: &ImageRef, descs: &[Descriptor]) -> Result<()> {
        let repo = Repository::of(reference);
        let shown = reference.to_string();
        let missing: Vec<&Descriptor> = descs.iter().filter(|d| !store.has_blob(&d.digest)).collect();
        crate::parallel(self.options.jobs, &missing, |d| self.fetch_blob(store, &repo, d, &shown, None))
    }
}
