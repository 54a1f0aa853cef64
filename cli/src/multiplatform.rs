//! `build --platform P1,P2,...`: one build per platform, all at once, and an OCI image index of
//! their images, as `docker buildx build --platform` makes.
//!
//! Each platform is a whole build of its own (lowered with its `TARGETPLATFORM`, its base
//! images resolved for it, its foreign RUN steps emulated); they run in parallel and share the
//! store, so a `FROM --platform=$BUILDPLATFORM` stage with equal inputs has one cache key and
//! runs once (the solver's per-key lock makes the other build wait for it and hit). The index
//! is made and named only when every platform built: a failure names nothing.

use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use cache::oci::{self, Descriptor, Index};
use cache::{Digest, ImageRef, Store};
use solver::buildcache::CacheTo;

use crate::annotations::{self, Level};
use crate::args;
use crate::images::Output;

/// What `build` decided before building: where the result goes.
pub struct Build {
    pub outputs: Vec<Output>,
    pub tags: Vec<ImageRef>,
    pub push_to: Vec<ImageRef>,
    pub cache_to: Vec<CacheTo>,
    pub annotations: Vec<crate::annotations::Annotation>,
}

/// Far apart, so that the step ids of one platform's build never meet another's.
const STEP_IDS_PER_PLATFORM: usize = 1_000_000;

pub fn build(
    store: &Store,
    a: &args::BuildArgs,
    options: solver::BuildOptions,
    platforms: &[frontend::Platform],
    b: Build,
) -> Result<ExitCode> {
    check_outputs(&b.outputs, platforms.len())?;
    let sink = crate::progress::for_mode(a.progress, a.quiet);
    let progress = sink.as_progress();
    let results: Vec<(frontend::Platform, Result<solver::BuildOutput, solver::Error>)> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = platforms
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let mut o = options.clone();
                    o.platform = Some(p.clone());
                    o.platform_label = true;
                    o.tags = Vec::new();
                    o.first_step_id = i * STEP_IDS_PER_PLATFORM;
                    o.annotations = annotations::select(&b.annotations, Level::Manifest, p);
                    scope.spawn(move || solver::build(store, &o, progress))
                })
                .collect();
            platforms
                .iter()
                .cloned()
                .zip(handles)
                .map(|(p, h)| (p, h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))))
                .collect()
        });
    sink.finish();

    // The first real failure, not the cancellations it caused in the other platforms' builds.
    let failed = results
        .iter()
        .position(|(_, r)| r.as_ref().is_err_and(|e| !matches!(e.kind(), solver::ErrorKind::Cancelled)))
        .or_else(|| results.iter().position(|(_, r)| r.is_err()));
    let mut outs = Vec::new();
    for (i, (platform, result)) in results.into_iter().enumerate() {
        match result {
            Ok(out) => outs.push((platform, out)),
            Err(e) if Some(i) == failed => {
                return Err(anyhow::Error::new(e).context(format!("platform {platform}")));
            }
            Err(_) => {}
        }
    }

    let digest = put_index(store, &outs, &b.annotations)?;
    let (executed, cached) = outs.iter().fold((0, 0), |(e, c), (_, o)| (e + o.executed, c + o.cached));
    write_outputs(store, &digest, &outs, &b)?;
    if let Some(path) = &a.iidfile {
        crate::commands::write_whole(path, digest.as_str().as_bytes())
            .with_context(|| format!("--iidfile {}", path.display()))?;
    }
    if let Some(path) = &a.metadata_file {
        let mut meta = serde_json::json!({
            "containerimage.digest": digest.as_str(),
            "containerimage.descriptor": {
                "mediaType": oci::MEDIA_TYPE_INDEX,
                "digest": digest.as_str(),
                "size": std::fs::metadata(store.blob_path(&digest))?.len(),
            },
            "rbuild.steps.run": executed,
            "rbuild.steps.cached": cached,
        });
        if !b.tags.is_empty() {
            let names: Vec<String> = b.tags.iter().map(|t| t.to_string()).collect();
            meta["image.name"] = serde_json::Value::String(names.join(","));
        }
        crate::commands::write_whole(path, &serde_json::to_vec_pretty(&meta)?)
            .with_context(|| format!("--metadata-file {}", path.display()))?;
    }
    if !b.push_to.is_empty() {
        let client = crate::transfer::client_with_progress(
            &a.insecure_registry,
            a.quiet,
            crate::transfer_progress::Direction::Push,
        )?;
        for name in &b.push_to {
            let pushed = client.push_index(store, &digest, name).map_err(|e| anyhow!("{e}"))?;
            if !a.quiet {
                eprintln!("pushed {name}: digest: {pushed}");
            }
        }
    }
    // Every platform's steps go to the cache: the first build's output carries all the keys.
    if let Some(((_, first), rest)) = outs.split_first_mut() {
        for (_, o) in rest.iter() {
            first.keys.extend(o.keys.iter().cloned());
        }
        crate::cacheopts::export(store, first, &b.cache_to, &options.cache_from, &a.insecure_registry)?;
    }
    if a.quiet {
        println!("{digest}");
    } else {
        for (p, o) in &outs {
            eprintln!("{p}: image {}", o.image.digest);
        }
        eprintln!("writing image index {digest} ({executed} steps run, {cached} cached)");
        if crate::images::stores_image(&b.outputs) {
            for t in &b.tags {
                eprintln!("naming to {t}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Outputs that hold one image cannot hold several platforms': refused before building.
fn check_outputs(outputs: &[Output], n: usize) -> Result<()> {
    for o in outputs {
        match o {
            Output::Archive { format: cache::ArchiveFormat::Docker, .. } => bail!(
                "--output type=docker: a docker archive holds one image per name and no index, so it \
                 cannot hold {n} platforms; use type=oci, or build one --platform"
            ),
            Output::Tar { .. } => bail!(
                "--output type=tar: one root filesystem cannot hold {n} platforms; use type=local \
                 (a directory per platform), or build one --platform"
            ),
            _ => {}
        }
    }
    Ok(())
}

/// The OCI image index of the platforms' images, in the order the platforms were given, as
/// buildx makes it: each manifest with its platform, and the platform's variant when it has one.
fn put_index(
    store: &Store,
    outs: &[(frontend::Platform, solver::BuildOutput)],
    annotations: &[annotations::Annotation],
) -> Result<Digest> {
    let mut manifests = Vec::new();
    for (platform, out) in outs {
        let image = &out.image;
        let size = std::fs::metadata(store.blob_path(&image.digest))
            .with_context(|| format!("the manifest of {platform}"))?
            .len();
        // The image says what it is (its base image's platform); the build was asked for
        // `platform`, which is what a puller matches.
        manifests.push(Descriptor {
            media_type: image.manifest.media_type.clone().unwrap_or_else(|| oci::MEDIA_TYPE_MANIFEST.into()),
            digest: image.digest.clone(),
            size,
            annotations: annotations::select(annotations, Level::ManifestDescriptor, platform),
            platform: Some(oci::Platform::from(platform)),
        });
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(oci::MEDIA_TYPE_INDEX.to_string()),
        manifests,
        annotations: annotations::select(annotations, Level::Index, &frontend::Platform::host()),
    };
    let bytes = serde_json::to_vec(&index)?;
    Ok(store.put_index(&bytes)?)
}

fn write_outputs(
    store: &Store,
    index: &Digest,
    outs: &[(frontend::Platform, solver::BuildOutput)],
    b: &Build,
) -> Result<()> {
    for output in &b.outputs {
        match output {
            Output::Image { names, .. } => {
                for t in &b.tags {
                    store.tag(t, index)?;
                }
                for n in names {
                    store.tag(&n.parse()?, index)?;
                }
                if b.tags.is_empty() && names.is_empty() {
                    store.keep_dangling(index)?;
                }
            }
            Output::Archive { dest, names, .. } => {
                let mut refs: Vec<ImageRef> = b.tags.clone();
                for n in names {
                    refs.push(n.parse()?);
                }
                store
                    .save_index(index, &refs, dest)
                    .with_context(|| format!("writing the image index to {}", dest.display()))?;
                eprintln!("exported the image index to {}", dest.display());
            }
            // buildx's local exporter: a directory per platform, `linux_arm64`.
            Output::Local { dest } => {
                for (platform, out) in outs {
                    let dir = dest.join(platform.to_string().replace('/', "_"));
                    store
                        .export_rootfs(&out.image, &dir)
                        .with_context(|| format!("writing the root filesystem to {}", dir.display()))?;
                    eprintln!("exported the root filesystem of {platform} to {}", dir.display());
                }
            }
            Output::Tar { .. } => {
                bail!("--output type=tar: one root filesystem cannot hold several platforms")
            }
        }
    }
    Ok(())
}
