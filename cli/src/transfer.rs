//! `rbuild pull`, `push`, `login`, `logout`, and the puller a build uses for images the store
//! lacks. The protocol is in registry/.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use cache::{ImageRef, Store};

use crate::args;

/// The registry options every command uses: `--insecure-registry` hosts and the config file's
/// `[registries]` (mirrors, blocked and insecure registries).
fn options(insecure: &[String]) -> Result<registry::Options> {
    let registries = registry::config::Registries::load()?;
    Ok(registry::Options { insecure_registries: insecure.to_vec(), registries, ..Default::default() })
}

pub fn client(insecure: &[String]) -> Result<registry::Client> {
    registry::Client::new(options(insecure)?).map_err(|e| anyhow!("{e}"))
}

/// A client for `rbuild pull`/`push` that shows each blob's progress on stderr (bars on a
/// terminal, a line per blob otherwise, nothing when `quiet`; see transfer_progress.rs).
pub fn client_with_progress(
    insecure: &[String],
    quiet: bool,
    direction: crate::transfer_progress::Direction,
) -> Result<registry::Client> {
    let options = registry::Options {
        progress: crate::transfer_progress::reporter(direction, quiet),
        ..options(insecure)?
    };
    registry::Client::new(options).map_err(|e| anyhow!("{e}"))
}

fn parse_ref(s: &str) -> Result<ImageRef> {
    s.parse().map_err(|e| anyhow!("invalid reference {s:?}: {e}"))
}

pub fn parse_platform(s: &str) -> Result<registry::Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(registry::Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        }),
        _ => bail!("--platform {s:?}: expected os/arch[/variant], e.g. linux/amd64"),
    }
}

pub fn pull(store: &Store, a: args::PullArgs) -> Result<ExitCode> {
    let reference = parse_ref(&a.image)?;
    let platform = a.platform.as_deref().map(parse_platform).transpose()?;
    let client =
        client_with_progress(&a.insecure_registry, a.quiet, crate::transfer_progress::Direction::Pull)?;
    let digest = if a.all_platforms {
        let pulled = client.pull_all_platforms(store, &reference).map_err(|e| anyhow!("{e}"))?;
        if !a.quiet && pulled.index {
            for (platform, digest) in &pulled.images {
                let platform = platform.as_ref().map_or_else(|| "unknown".to_string(), |p| p.to_string());
                println!("{platform}: {digest}");
            }
        }
        pulled.digest
    } else {
        client.pull(store, &reference, platform.as_ref()).map_err(|e| anyhow!("{e}"))?.digest
    };
    if a.quiet {
        println!("{digest}");
    } else {
        println!("Digest: {digest}\nStatus: downloaded {reference}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Pushes an image, or, when the name points at an image index (`pull --all-platforms`),
/// every platform's manifest and then the index, whose digest stays the same.
pub fn push(store: &Store, a: args::PushArgs) -> Result<ExitCode> {
    let destination = parse_ref(a.destination.as_deref().unwrap_or(&a.image))?;
    let found = store.lookup(&a.image).map_err(|e| anyhow!("{}: {e}", a.image))?;
    let client =
        client_with_progress(&a.insecure_registry, a.quiet, crate::transfer_progress::Direction::Push)?;
    let pushed = solver::buildcache::push(store, &client, &found, &destination).map_err(|e| match e {
        solver::buildcache::CacheError::Store(e) => anyhow!("{}: {e}", a.image),
        e => anyhow!("{e}"),
    })?;
    if let Some(e) = &pushed.mounts_error {
        warn_mounts_not_pushed(e);
    }
    let digest = pushed.digest;
    if a.quiet {
        println!("{digest}");
    } else {
        println!("{destination}: digest: {digest}");
    }
    Ok(ExitCode::SUCCESS)
}

/// After `image` went to `destination`: the cache-mount blobs of its inline cache, if it has
/// any (`--cache-to type=inline,cache-mounts=true`). Their absence only costs the next build
/// its cache mounts, so a failure is a warning.
pub fn push_inline_mounts(
    store: &Store,
    client: &registry::Client,
    image: &cache::Image,
    destination: &ImageRef,
) {
    if let Err(e) = solver::buildcache::push_inline_mounts(store, client, image, destination) {
        warn_mounts_not_pushed(&e);
    }
}

fn warn_mounts_not_pushed(e: &solver::buildcache::CacheError) {
    eprintln!(
        "rbuild: warning: the inline cache's cache mounts were not pushed: {}",
        hostutil::errors::one_line(e)
    );
}

pub fn login(a: args::LoginArgs) -> Result<ExitCode> {
    let server = a.server.clone().unwrap_or_else(|| "docker.io".into());
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut p = String::new();
            std::io::stdin().read_to_string(&mut p)?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("give the password with --password-stdin (or --password)"),
    };
    client(&a.insecure_registry)?.login(&server, &a.username, &password).map_err(|e| anyhow!("{e}"))?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

pub fn logout(a: args::LogoutArgs) -> Result<ExitCode> {
    let server = a.server.clone().unwrap_or_else(|| "docker.io".into());
    let removed = client(&[])?.logout(&server).map_err(|e| anyhow!("{e}"))?;
    if removed {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(ExitCode::SUCCESS)
}

/// How a build (or `run`, `create`) gets the images it names: from the store, pulled from
/// their registry (or its mirrors) as `policy` says.
pub fn fetcher(insecure: &[String], policy: solver::PullPolicy) -> Result<solver::Fetcher> {
    Ok(solver::Fetcher::registry(Arc::new(client(insecure)?), policy))
}

/// `run`/`create`'s image: pulled as `policy` says (the same rule as a build's FROM).
pub fn ensure_pulled(store: &Store, reference: &str, policy: solver::PullPolicy) -> Result<()> {
    fetcher(&[], policy)?.resolve(store, reference)?;
    Ok(())
}
