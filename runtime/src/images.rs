//! Images as containers see them: which images containers use, and `rmi` with docker's rules
//! (an image a container uses is not deleted without force, and with force stays for its
//! container as a dangling image). The answer is docker's `ImageDeleteResponseItem` list, so
//! the CLI prints it and an API service returns it.

use std::collections::BTreeSet;
use std::path::Path;

use cache::{Digest, ImageRef, Store};
use serde::Serialize;

use crate::container::Containers;
use crate::{Error, Result};

/// One line of what `rmi` did, in docker's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Removed {
    /// A name that went (`Untagged: app:1`).
    Untagged(String),
    /// An image that went (`Deleted: sha256:...`).
    Deleted(Digest),
}

/// The images that containers of the store at `root` use, running or not.
pub fn in_use(root: &Path) -> Result<BTreeSet<Digest>> {
    Containers::open(root)?.images_in_use()
}

/// What `rmi NAME` names: one tag of an image, or an image by ID or digest.
enum Target {
    Tag(ImageRef, Digest),
    Image(Digest),
}

fn target(store: &Store, name: &str) -> Result<Target> {
    if let Ok(r) = name.parse::<ImageRef>()
        && r.digest().is_none()
        && let Some((_, d)) = store.tags()?.into_iter().find(|(k, _)| *k == r.key())
    {
        return Ok(Target::Tag(r, d));
    }
    match store.resolve(name) {
        Ok(image) => Ok(Target::Image(image.digest)),
        Err(cache::Error::ImageNotFound(_)) => Err(Error::NoSuchImage(name.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// `rmi [-f] NAME`: a name is untagged, and the image deleted with its last name; by ID, an
/// image with several names needs `force` (which untags them all). An image a container uses
/// is refused without `force`, and with it loses its names but stays, dangling, for the
/// container. `in_use` is [`in_use`], read once for a whole `rmi` of several names.
pub fn remove(store: &Store, name: &str, force: bool, in_use: &BTreeSet<Digest>) -> Result<Vec<Removed>> {
    let (removed, digest) = remove_image(store, name, force, in_use)?;
    // dockerd names the image by ID in both (`LogImageEvent(imgID, imgID, ...)`).
    for r in &removed {
        let action = match r {
            Removed::Untagged(_) => "untag",
            Removed::Deleted(_) => "delete",
        };
        crate::events::image(store.root(), action, digest.as_str(), digest.as_str());
    }
    Ok(removed)
}

/// [`remove`]'s work; what it did, and the image it was about.
fn remove_image(
    store: &Store,
    name: &str,
    force: bool,
    in_use: &BTreeSet<Digest>,
) -> Result<(Vec<Removed>, Digest)> {
    let mut done = Vec::new();
    let digest = match target(store, name)? {
        Target::Tag(reference, digest) => {
            let others = store.tags_of(&digest)?.len() > 1;
            if !others && in_use.contains(&digest) && !force {
                return Err(Error::Conflict(format!(
                    "conflict: unable to remove repository reference {name:?} (must force) - a container is \
                     using its referenced image {}",
                    digest.short()
                )));
            }
            store.untag(&reference)?;
            done.push(Removed::Untagged(reference.key()));
            if others {
                return Ok((done, digest));
            }
            digest
        }
        Target::Image(digest) => {
            if store.tags_of(&digest)?.len() > 1 && !force {
                return Err(Error::Conflict(format!(
                    "conflict: unable to delete {} (must be forced) - image is referenced in multiple \
                     repositories",
                    digest.short()
                )));
            }
            if in_use.contains(&digest) && !force {
                return Err(Error::Conflict(format!(
                    "conflict: unable to delete {} (must be forced) - image is being used by a container",
                    digest.short()
                )));
            }
            let removed = store.remove_image(&digest)?;
            done.extend(removed.untagged.into_iter().map(Removed::Untagged));
            digest
        }
    };
    if in_use.contains(&digest) {
        // The names went; the image stays for its container, as a dangling one.
        store.keep_dangling(&digest)?;
    } else {
        done.push(Removed::Deleted(digest.clone()));
    }
    Ok((done, digest))
}
