//! Images a build needs and the store lacks (`FROM`, `COPY --from`, `RUN --mount from=`), and
//! the rule for when to pull one: only a reference that names a registry host
//! (`HOST[:PORT]/...`, `localhost/...`). A bare `busybox` that the store lacks is an error, not
//! an implicit request to docker.io: builds that must stay offline (CI farms, our tests) never
//! reach out by accident, and `rbuild pull busybox` is one explicit command away. The same rule
//! serves `run` and `create` (decision in cli/README.md).

use std::sync::Arc;

use cache::{Image, ImageRef, Store};

/// Why an image could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "image {reference:?} is not in the store (add it with `rbuild pull`, `rbuild import` or `rbuild load`)"
    )]
    NotInStore { reference: String },
    #[error("invalid reference {reference:?}")]
    Reference {
        reference: String,
        #[source]
        source: cache::Error,
    },
    #[error(transparent)]
    Store(#[from] cache::Error),
    #[error(transparent)]
    Pull(#[from] registry::Error),
}

/// Brings an image the store lacks into it (a registry pull).
pub trait ImageFetcher: Send + Sync {
    fn fetch(&self, store: &Store, reference: &str) -> Result<(), FetchError>;
}

/// The [`ImageFetcher`] of a build, if any.
#[derive(Clone, Default)]
pub struct Fetcher(pub Option<Arc<dyn ImageFetcher>>);

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Fetcher(registry)" } else { "Fetcher(none)" })
    }
}

impl Fetcher {
    /// Pulls what names a registry host through `client`.
    pub fn registry(client: Arc<registry::Client>) -> Fetcher {
        Fetcher(Some(Arc::new(RegistryFetcher { client })))
    }

    /// `reference` from the store, pulled first if the store lacks it.
    pub fn resolve(&self, store: &Store, reference: &str) -> Result<Image, FetchError> {
        match store.resolve(reference) {
            Ok(image) => Ok(image),
            Err(cache::Error::ImageNotFound(_)) => match &self.0 {
                Some(fetcher) => {
                    fetcher.fetch(store, reference)?;
                    Ok(store.resolve(reference)?)
                }
                None => Err(FetchError::NotInStore { reference: reference.to_string() }),
            },
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether `reference` names a registry host: its first component has a `.` or a `:`, or is
/// `localhost` (as docker tells a host from a Docker Hub user).
pub fn names_registry_host(reference: &str) -> bool {
    let first = reference.split('/').next().unwrap_or_default();
    reference.contains('/') && (first.contains(['.', ':']) || first == "localhost")
}

/// Pulls images whose reference names a registry host.
struct RegistryFetcher {
    client: Arc<registry::Client>,
}

impl ImageFetcher for RegistryFetcher {
    fn fetch(&self, store: &Store, reference: &str) -> Result<(), FetchError> {
        if !names_registry_host(reference) {
            return Err(FetchError::NotInStore { reference: reference.to_string() });
        }
        let r: ImageRef = reference
            .parse()
            .map_err(|source| FetchError::Reference { reference: reference.to_string(), source })?;
        self.client.pull(store, &r, None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_references_naming_a_host_are_pulled() {
        for yes in ["127.0.0.1:5000/app:1", "localhost/app", "registry.example/team/app", "h:1/x"] {
            assert!(names_registry_host(yes), "{yes}");
        }
        for no in ["busybox", "library/busybox", "user/app:1", "app:1.0"] {
            assert!(!names_registry_host(no), "{no}");
        }
    }
}
