//! Images a build needs (`FROM`, `COPY --from`, `RUN --mount from=`), and `run`/`create`'s
//! image: from the store, pulled from their registry as the pull policy says. As with docker
//! and podman a short name is Docker Hub's (`busybox` = `docker.io/library/busybox:latest`),
//! and where it is really fetched from (mirrors, blocked registries) is the registry client's
//! config (`registry::config`).

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cache::oci::Platform;
use cache::{Image, ImageRef, Store};

/// When to pull an image a build or a container names (`--pull`, podman's values; docker's
/// boolean `--pull` is `always`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull only what the store lacks (the default).
    #[default]
    Missing,
    /// Pull every image, once per build, even when the store has it: a tag that moved in the
    /// registry is seen.
    Always,
    /// Never pull: what the store lacks is an error.
    Never,
}

/// A `--pull` value that is none of the policies.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid pull policy {0:?} (missing, always, never; or true, false)")]
pub struct PullPolicyError(String);

impl FromStr for PullPolicy {
    type Err = PullPolicyError;

    fn from_str(s: &str) -> Result<PullPolicy, PullPolicyError> {
        match s.to_ascii_lowercase().as_str() {
            "missing" | "false" => Ok(PullPolicy::Missing),
            "always" | "true" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            _ => Err(PullPolicyError(s.to_string())),
        }
    }
}

/// Why an image could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("image {reference:?} is not in the store and --pull=never forbids pulling it")]
    NeverPull { reference: String },
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
    #[error("image {reference:?} for {wanted} is not in the store and --pull=never forbids pulling it")]
    NeverPullPlatform { reference: String, wanted: String },
    /// The store has the name, not for this platform, and a pull for it failed too.
    #[error("image {reference:?} has no {wanted} image in the store ({available}), and pulling one failed")]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
        #[source]
        source: Box<FetchError>,
    },
    #[error(transparent)]
    Store(#[from] cache::Error),
    #[error(transparent)]
    Pull(#[from] registry::Error),
}

/// Brings an image into the store (a registry pull).
pub trait ImageFetcher: Send + Sync {
    fn fetch(&self, store: &Store, reference: &str) -> Result<(), FetchError>;

    /// Brings `reference`'s image for `platform` into the store, so that
    /// [`Store::resolve_for`] finds it. A fetcher that knows no platforms fetches the name.
    fn fetch_for(&self, store: &Store, reference: &str, platform: &Platform) -> Result<(), FetchError> {
        let _ = platform;
        self.fetch(store, reference)
    }
}

/// How a build (or `run`) gets the images it names: the store, a puller, and the policy.
#[derive(Clone, Default)]
pub struct Fetcher {
    puller: Option<Arc<dyn ImageFetcher>>,
    policy: PullPolicy,
    /// With [`PullPolicy::Always`]: the references pulled already, each pulled once.
    pulled: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let puller = if self.puller.is_some() { "registry" } else { "none" };
        write!(f, "Fetcher({puller}, {:?})", self.policy)
    }
}

impl Fetcher {
    /// Pulls through `client` as `policy` says.
    pub fn registry(client: Arc<registry::Client>, policy: PullPolicy) -> Fetcher {
        Fetcher::with(Arc::new(RegistryFetcher { client }), policy)
    }

    /// Pulls through `puller` as `policy` says.
    pub fn with(puller: Arc<dyn ImageFetcher>, policy: PullPolicy) -> Fetcher {
        Fetcher { puller: Some(puller), policy, pulled: Arc::default() }
    }

    /// `reference`'s image for `platform` ([`Store::resolve_for`]), pulled first as the policy
    /// says. The host's platform is [`Fetcher::resolve`], which tags what it pulls; another
    /// platform's image is pulled without moving the name and kept for it
    /// ([`Store::pin_platform`]).
    pub fn resolve_for(
        &self,
        store: &Store,
        reference: &str,
        platform: &Platform,
    ) -> Result<Image, FetchError> {
        let host = Platform::host();
        if platform.matches(&host.os, &host.architecture, host.variant.as_deref()) {
            let image = self.resolve(store, reference)?;
            // A name tagged to another platform's image (`pull --platform`) has the host's in
            // its index, or pinned; else it is what the name is.
            return Ok(store.resolve_for(reference, platform).unwrap_or(image));
        }
        let key = format!("{reference}\n{platform}");
        if self.policy == PullPolicy::Always
            && let Some(puller) = &self.puller
            && self.pulled.lock().unwrap_or_else(|p| p.into_inner()).insert(key)
        {
            puller.fetch_for(store, reference, platform)?;
            return Ok(store.resolve_for(reference, platform)?);
        }
        let available = match store.resolve_for(reference, platform) {
            Ok(image) => return Ok(image),
            Err(cache::Error::ImageNotFound(_)) => None,
            Err(cache::Error::NoMatchingPlatform { available, .. }) => Some(available),
            Err(e) => return Err(e.into()),
        };
        match (&self.puller, self.policy) {
            (_, PullPolicy::Never) => Err(FetchError::NeverPullPlatform {
                reference: reference.to_string(),
                wanted: platform.to_string(),
            }),
            (Some(puller), _) => match (puller.fetch_for(store, reference, platform), available) {
                (Ok(()), _) => Ok(store.resolve_for(reference, platform)?),
                (Err(e), None) => Err(e),
                // The name is here for other platforms (perhaps built here, in no registry):
                // say that first.
                (Err(e), Some(available)) => Err(FetchError::NoPlatform {
                    reference: reference.to_string(),
                    wanted: platform.to_string(),
                    available,
                    source: Box::new(e),
                }),
            },
            (None, _) => Ok(store.resolve_for(reference, platform)?),
        }
    }

    /// `reference` from the store, pulled first as the policy says.
    pub fn resolve(&self, store: &Store, reference: &str) -> Result<Image, FetchError> {
        if self.policy == PullPolicy::Always
            && let Some(puller) = &self.puller
        {
            let first = self.pulled.lock().unwrap_or_else(|p| p.into_inner()).insert(reference.to_string());
            if first {
                puller.fetch(store, reference)?;
            }
            return Ok(store.resolve(reference)?);
        }
        match store.resolve(reference) {
            Ok(image) => Ok(image),
            Err(cache::Error::ImageNotFound(_)) => match (&self.puller, self.policy) {
                (_, PullPolicy::Never) => Err(FetchError::NeverPull { reference: reference.to_string() }),
                (Some(puller), _) => {
                    puller.fetch(store, reference)?;
                    Ok(store.resolve(reference)?)
                }
                (None, _) => Err(FetchError::NotInStore { reference: reference.to_string() }),
            },
            Err(e) => Err(e.into()),
        }
    }
}

/// Pulls from the reference's registry (or its mirrors).
struct RegistryFetcher {
    client: Arc<registry::Client>,
}

impl ImageFetcher for RegistryFetcher {
    fn fetch(&self, store: &Store, reference: &str) -> Result<(), FetchError> {
        let r: ImageRef = reference
            .parse()
            .map_err(|source| FetchError::Reference { reference: reference.to_string(), source })?;
        self.client.pull(store, &r, None)?;
        Ok(())
    }

    fn fetch_for(&self, store: &Store, reference: &str, platform: &Platform) -> Result<(), FetchError> {
        let r: ImageRef = reference
            .parse()
            .map_err(|source| FetchError::Reference { reference: reference.to_string(), source })?;
        // A name that is one image (no index) is that image whatever the platform asked for:
        // BuildKit builds on it too, and the frontend warns (InvalidBaseImagePlatform).
        let image = self.client.pull_untagged(store, &r, platform)?;
        store.pin_platform(&r, platform, &image.digest)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts pulls; "pulls" by tagging an image that is already in the store.
    struct Counting(std::sync::atomic::AtomicUsize, cache::Digest);

    impl ImageFetcher for Counting {
        fn fetch(&self, store: &Store, reference: &str) -> Result<(), FetchError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            store.tag(&reference.parse()?, &self.1)?;
            Ok(())
        }
    }

    #[test]
    fn policies() {
        assert_eq!("ALWAYS".parse::<PullPolicy>().unwrap(), PullPolicy::Always);
        assert_eq!("true".parse::<PullPolicy>().unwrap(), PullPolicy::Always);
        assert_eq!("false".parse::<PullPolicy>().unwrap(), PullPolicy::Missing);
        assert_eq!(
            "sometimes".parse::<PullPolicy>().unwrap_err().to_string(),
            "invalid pull policy \"sometimes\" (missing, always, never; or true, false)"
        );

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = cache::ImageConfig::default();
        let image = store.put_image(&config, &[]).unwrap();
        let fetch = |policy| {
            let counting = Arc::new(Counting(0.into(), image.digest.clone()));
            (Fetcher::with(counting.clone(), policy), counting)
        };
        let pulls = |c: &Counting| c.0.load(std::sync::atomic::Ordering::SeqCst);

        let (f, c) = fetch(PullPolicy::Missing);
        f.resolve(&store, "a:1").unwrap();
        f.resolve(&store, "a:1").unwrap();
        assert_eq!(pulls(&c), 1, "missing: pulled once, then found");

        let (f, c) = fetch(PullPolicy::Always);
        f.resolve(&store, "a:1").unwrap();
        f.resolve(&store, "a:1").unwrap();
        f.resolve(&store, "b:1").unwrap();
        assert_eq!(pulls(&c), 2, "always: each reference once per fetcher, though the store has it");

        let (f, c) = fetch(PullPolicy::Never);
        f.resolve(&store, "a:1").unwrap();
        let e = f.resolve(&store, "c:1").unwrap_err().to_string();
        assert_eq!(e, "image \"c:1\" is not in the store and --pull=never forbids pulling it");
        assert_eq!(pulls(&c), 0);
    }
}
