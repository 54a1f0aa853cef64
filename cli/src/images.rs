//! The image commands: `images`, `tag`, `rmi`, `inspect`, `history`, `image prune`, `system df`,
//! and `build --output`. Output is Docker's: the same columns, sizes, times and JSON fields.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use cache::{Digest, Image, ImageRef, Store};
use serde_json::{Value, json};

use crate::args;
use crate::output::{Format, confirm, ellipsis, finish, human_size, since, tabulate};
use runtime::images::Removed;

/// The images that containers use, which `rmi` refuses to delete without `-f` and `image prune`
/// and `system df` count as active.
fn images_in_use(store: &Store) -> Result<BTreeSet<Digest>> {
    Ok(runtime::images::in_use(store.root())?)
}

/// `2024-05-01 08:00:00 +0000 UTC`, as Go prints a UTC time.
fn created_at(created: Option<&str>) -> String {
    let Some(t) = created.and_then(cache::time::parse_rfc3339) else { return String::new() };
    let rfc = cache::time::format_unix(t, 0);
    format!("{} {} +0000 UTC", &rfc[..10], &rfc[11..19])
}

// ---------------------------------------------------------------------------------------------
// images

const IMAGE_FIELDS: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
];

/// One line of `rbuild images`: an image under one of its names.
struct ImageRow {
    repository: String,
    tag: String,
    digest: Digest,
    created: Option<String>,
    size: u64,
}

/// `REPOSITORY[:TAG]` of `images`: the repository in familiar form, and the tag pattern.
fn parse_filter(filter: &str) -> Result<(String, Option<String>)> {
    let (repo, tag) = match filter.rfind(':') {
        Some(i) if !filter[i..].contains('/') => (&filter[..i], Some(filter[i + 1..].to_string())),
        _ => (filter, None),
    };
    let name = repo
        .parse::<ImageRef>()
        .with_context(|| format!("invalid reference format {filter:?}"))?
        .name()
        .to_string();
    Ok((name, tag))
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            let Some(s) = s.strip_prefix(head) else { return false };
            (0..=s.len()).any(|i| s.is_char_boundary(i) && glob(rest, &s[i..]))
        }
    }
}

pub fn images(store: &Store, a: args::ImagesArgs) -> Result<ExitCode> {
    let filter = a.reference.as_deref().map(parse_filter).transpose()?;
    let mut rows = Vec::new();
    for entry in store.list_images()? {
        // A multi-platform image without this machine's platform is shown by its first one.
        let image = match store.image_or_any(&entry.digest) {
            Ok(image) => image,
            Err(e @ cache::Error::NoMatchingPlatform { .. }) => {
                eprintln!("rbuild: warning: {}: {e}", entry.tags.join(", "));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let created = image.config.created.clone();
        let size = store.image_size(&image);
        let mut names: Vec<(String, String)> = entry
            .tags
            .iter()
            .map(|k| match k.split_once("@sha256:") {
                Some((name, _)) => (name.to_string(), "<none>".to_string()),
                None => {
                    let (r, t) = k.rsplit_once(':').unwrap_or((k, ""));
                    (r.to_string(), t.to_string())
                }
            })
            .collect();
        if names.is_empty() {
            if filter.is_some() {
                continue;
            }
            names.push(("<none>".to_string(), "<none>".to_string()));
        }
        for (repository, tag) in names {
            if let Some((repo, pattern)) = &filter
                && (repository != *repo || pattern.as_deref().is_some_and(|p| !glob(p, &tag)))
            {
                continue;
            }
            rows.push(ImageRow {
                repository,
                tag,
                digest: entry.digest.clone(),
                created: created.clone(),
                size,
            });
        }
    }
    // Newest first, as docker lists them.
    rows.sort_by(|x, y| {
        let t = |r: &ImageRow| r.created.as_deref().and_then(cache::time::parse_rfc3339).unwrap_or(i64::MIN);
        t(y).cmp(&t(x)).then_with(|| (&x.repository, &x.tag).cmp(&(&y.repository, &y.tag)))
    });
    let id = |d: &Digest| if a.no_trunc { d.to_string() } else { d.short().to_string() };
    let format = match (&a.format, a.quiet, a.digests) {
        (Some(f), _, _) => f.clone(),
        (None, true, _) => "{{.ID}}".to_string(),
        (None, false, true) => {
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}".into()
        }
        (None, false, false) => "table".to_string(),
    };
    let default_table = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
    let format = Format::for_list(&format, IMAGE_FIELDS, default_table)?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "Containers": "N/A",
                "CreatedAt": created_at(r.created.as_deref()),
                "CreatedSince": since(r.created.as_deref()),
                "Digest": r.digest.to_string(),
                "ID": id(&r.digest),
                "Repository": r.repository,
                "SharedSize": "N/A",
                "Size": human_size(r.size, 3),
                "Tag": r.tag,
                "UniqueSize": "N/A",
                "VirtualSize": human_size(r.size, 4),
            })
        })
        .collect();
    format.write_rows(IMAGE_FIELDS, &rows, &mut io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// tag, rmi

pub fn tag(store: &Store, a: args::TagArgs) -> Result<ExitCode> {
    // The name's image, or its image index (a multi-platform image stays one).
    let digest = store.lookup(&a.source)?;
    let target: ImageRef = a.target.parse()?;
    if target.digest().is_some() {
        bail!("refusing to create a tag with a digest reference: {}", a.target);
    }
    store.tag(&target, &digest)?;
    Ok(ExitCode::SUCCESS)
}

/// Removes each image; one that fails is reported (as docker does) and the rest still go.
pub fn rmi(store: &Store, a: args::RmiArgs) -> Result<ExitCode> {
    let in_use = images_in_use(store)?;
    let mut out = io::stdout().lock();
    let mut failed = Vec::new();
    for name in &a.images {
        match runtime::images::remove(store, name, a.force, &in_use) {
            Ok(removed) => {
                for r in removed {
                    match r {
                        Removed::Untagged(name) => writeln!(out, "Untagged: {name}")?,
                        Removed::Deleted(digest) => writeln!(out, "Deleted: {digest}")?,
                    }
                }
            }
            Err(e) => failed.push(e.into()),
        }
    }
    drop(out);
    finish(failed)
}

// ---------------------------------------------------------------------------------------------
// inspect, history

/// `inspect IMAGE...`: a JSON array with one object per image, as `docker inspect`. Images that
/// are not found are reported after the array (which holds the others), and the exit is 1.
pub fn inspect(store: &Store, a: args::InspectArgs) -> Result<ExitCode> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &a.images {
        match store.lookup(name).and_then(|d| store.image_or_any(&d)) {
            Ok(image) => found.push(inspect_json(store, name, &image)?),
            Err(cache::Error::ImageNotFound(_)) => missing.push(name),
            Err(e) => return Err(e.into()),
        }
    }
    println!("{}", serde_json::to_string_pretty(&Value::Array(found))?);
    match missing.as_slice() {
        [] => Ok(ExitCode::SUCCESS),
        [one] => bail!("No such image: {one}"),
        many => {
            for m in many {
                eprintln!("rbuild: error: No such image: {m}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `inspect`'s object for image `name` (resolved to `image`): docker's fields, and for a
/// multi-platform image its index's digest as `Id` and its platforms as `Manifests` (docker's
/// API 1.48 field).
pub fn inspect_json(store: &Store, name: &str, image: &cache::Image) -> Result<Value> {
    let mut json = store.inspect_json(image)?;
    if let Ok(digest) = store.lookup(name)
        && let Some(index) = store.index(&digest)?
    {
        json["Id"] = Value::String(digest.to_string());
        json["RepoTags"] = store.tags_of(&digest)?.into_iter().map(Value::String).collect();
        json["Manifests"] = index
            .manifests
            .iter()
            .map(|d| {
                serde_json::json!({
                    "ID": d.digest.as_str(),
                    "Descriptor": d,
                    "Available": store.has_blob(&d.digest),
                    "Kind": if d.platform.is_some() { "image" } else { "unknown" },
                })
            })
            .collect();
    }
    Ok(json)
}

pub fn history(store: &Store, a: args::HistoryArgs) -> Result<ExitCode> {
    let image = store.resolve(&a.image)?;
    let id = if a.no_trunc { image.digest.to_string() } else { image.digest.short().to_string() };
    let mut out = io::stdout().lock();
    let mut lines = vec!["IMAGE\tCREATED\tCREATED BY\tSIZE\tCOMMENT".to_string()];
    for (i, row) in image.history_rows().iter().enumerate() {
        let shown_id = if i == 0 { id.clone() } else { "<missing>".to_string() };
        if a.quiet {
            writeln!(out, "{shown_id}")?;
            continue;
        }
        let by = row.created_by.replace('\t', " ");
        let by = if a.no_trunc { by } else { ellipsis(&by, 45) };
        lines.push(format!(
            "{shown_id}\t{}\t{by}\t{}\t{}",
            since(row.created.as_deref()),
            human_size(row.size, 3),
            row.comment
        ));
    }
    if !a.quiet {
        out.write_all(tabulate(&lines).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// image prune, system df

pub fn image_prune(store: &Store, a: args::PruneArgs) -> Result<ExitCode> {
    let warning = if a.all {
        "This will remove all images without at least one container associated to them."
    } else {
        "This will remove all dangling images."
    };
    if !a.force && !confirm(warning)? {
        return Ok(ExitCode::SUCCESS);
    }
    let removed = store.prune_images(a.all, &images_in_use(store)?)?;
    // The blobs only those images used go now (what is younger than gc's grace period stays,
    // for builds that may be about to use it, and goes with a later prune).
    let report = store.gc()?;
    let mut out = io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for r in &removed {
            for t in &r.untagged {
                writeln!(out, "untagged: {t}")?;
            }
            if r.deleted {
                writeln!(out, "deleted: {}", r.digest)?;
            }
        }
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(report.total_bytes(), 3))?;
    Ok(ExitCode::SUCCESS)
}

/// `system prune`: dangling images, then garbage collection.
/// `system prune`: what docker's removes, in its order: stopped containers, unused networks,
/// (with --volumes) unused anonymous volumes, dangling images (every unused one with -a), the
/// build cache; then the blobs and layers nothing references any more.
pub fn system_prune(store: &Store, a: args::SystemPruneArgs) -> Result<ExitCode> {
    let containers = runtime::lifecycle::prune(store.root())?.containers;
    if !containers.is_empty() {
        println!("Deleted Containers:");
        containers.iter().for_each(|id| println!("{id}"));
        println!();
    }
    let networks = runtime::network::Networks::open(store.root())?.prune()?;
    if !networks.is_empty() {
        println!("Deleted Networks:");
        networks.iter().for_each(|n| println!("{}", n.name));
        println!();
    }
    if a.volumes {
        let in_use: BTreeSet<String> = runtime::volume::volume_users(store.root())?.into_keys().collect();
        let volumes = runtime::volume::Volumes::open(store.root())?.prune(&in_use, false)?;
        if !volumes.is_empty() {
            println!("Deleted Volumes:");
            volumes.iter().for_each(|(name, _)| println!("{name}"));
            println!();
        }
    }
    let removed = store.prune_images(a.all, &images_in_use(store)?)?;
    if !removed.is_empty() {
        println!("Deleted Images:");
        removed.iter().for_each(|r| println!("deleted: {}", r.digest));
        println!();
    }
    println!("Build cache: {}", store.prune_build_cache()?);
    println!("{}", store.gc()?);
    Ok(ExitCode::SUCCESS)
}

/// `system df`: images, containers (their writable layers), volumes and the build cache, with
/// what is in use and what a prune would free, as docker's; then the store's size, the figure
/// `--keep-storage` limits (`cache::Store::size`). `-v` adds a table of images, of build-cache
/// records and of cache mounts.
pub fn system_df(store: &Store, verbose: bool) -> Result<ExitCode> {
    let u = store.disk_usage(&images_in_use(store)?)?;
    let containers = runtime::container::Containers::open(store.root())?.disk_usage()?;
    let in_use: BTreeSet<String> = runtime::volume::volume_users(store.root())?.into_keys().collect();
    let volumes = runtime::volume::Volumes::open(store.root())?.disk_usage(&in_use)?;
    let reclaim = |part: u64, total: u64| match (part * 100).checked_div(total) {
        Some(percent) => format!("{} ({percent}%)", human_size(part, 4)),
        None => human_size(part, 4),
    };
    let line = |kind: &str, total: usize, active: usize, bytes: u64, reclaimable: String| {
        format!("{kind}\t{total}\t{active}\t{}\t{reclaimable}", human_size(bytes, 4))
    };
    let lines = vec![
        "TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE".to_string(),
        line("Images", u.images, u.images_active, u.image_bytes, reclaim(u.image_reclaimable, u.image_bytes)),
        line(
            "Containers",
            containers.total,
            containers.active,
            containers.bytes,
            reclaim(containers.reclaimable, containers.bytes),
        ),
        line(
            "Local Volumes",
            volumes.total,
            volumes.active,
            volumes.bytes,
            reclaim(volumes.reclaimable, volumes.bytes),
        ),
        // Every record is reclaimable (`builder prune` drops them all); docker gives no percent.
        line("Build Cache", u.cache_records, 0, u.cache_bytes, human_size(u.cache_bytes, 4)),
    ];
    print!("{}", tabulate(&lines));
    println!("\nStore size (blobs, layers, cache, snapshots, tmp): {}", human_size(store.size(), 4));
    if verbose {
        system_df_verbose(store)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `N minutes ago` from a file time.
fn ago(t: std::time::SystemTime) -> String {
    let secs = std::time::SystemTime::now().duration_since(t).map_or(0, |d| d.as_secs());
    format!("{} ago", crate::output::human_duration(secs as i64))
}

/// `system df -v`'s tables. A record's SIZE is its file and the layer blobs only it
/// references (what removing it alone frees); SHARED says an image or another record uses one
/// of its blobs too. A cache mount's SIZE is its whole directory.
fn system_df_verbose(store: &Store) -> Result<()> {
    let in_use = images_in_use(store)?;
    let mut lines = vec!["REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tCONTAINERS".to_string()];
    for entry in store.list_images()? {
        let Ok(image) = store.image_or_any(&entry.digest) else { continue };
        let size = human_size(store.image_size(&image), 4);
        let created = since(image.config.created.as_deref());
        let id = &entry.digest.hex()[..12];
        let used = usize::from(in_use.contains(&entry.digest));
        let names: Vec<(String, String)> = if entry.tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            entry.tags.iter().map(|t| split_tag(t)).collect()
        };
        for (repo, tag) in names {
            lines.push(format!("{repo}\t{tag}\t{id}\t{created}\t{size}\t{used}"));
        }
    }
    println!("\nImages space usage:\n");
    print!("{}", tabulate(&lines));

    let usage = store.cache_usage()?;
    let total: u64 = usage.records.iter().map(|r| r.bytes).sum();
    println!("\nBuild cache usage: {}\n", human_size(total, 4));
    let mut lines = vec!["CACHE ID\tSIZE\tLAST USED\tSHARED".to_string()];
    // Most recently used first, as docker lists.
    for r in usage.records.iter().rev() {
        let shared = if r.shared { "true" } else { "false" };
        lines.push(format!(
            "{}\t{}\t{}\t{shared}",
            &r.key.hex()[..12],
            human_size(r.bytes, 4),
            ago(r.last_used)
        ));
    }
    print!("{}", tabulate(&lines));

    let total: u64 = usage.mounts.iter().map(|m| m.bytes).sum();
    println!("\nCache mounts usage: {}\n", human_size(total, 4));
    let mut lines = vec!["ID\tSIZE\tLAST USED".to_string()];
    for m in usage.mounts.iter().rev() {
        let id = m.id.clone().unwrap_or_else(|| m.dir.clone());
        lines.push(format!("{id}\t{}\t{}", human_size(m.bytes, 4), ago(m.last_used)));
    }
    print!("{}", tabulate(&lines));
    Ok(())
}

/// `name:tag` as REPOSITORY and TAG columns.
fn split_tag(key: &str) -> (String, String) {
    match key.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
        Some((r, t)) => (r.to_string(), t.to_string()),
        None => (key.to_string(), "<none>".to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// build --output

/// Where `build` puts its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The store, under the `-t` names (and `name=`); with `push`, pushed under them too
    /// (`push=true`, `--push`).
    Image { names: Vec<String>, push: bool },
    /// An archive of the image (`type=oci` or `type=docker`).
    Archive { format: cache::ArchiveFormat, dest: PathBuf, names: Vec<String> },
    /// The root filesystem in a directory.
    Local { dest: PathBuf },
    /// The root filesystem as a tar; `None` is stdout.
    Tar { dest: Option<PathBuf> },
}

/// Parses the `--output` values (none means `type=image`).
pub fn parse_outputs(values: &[String]) -> Result<Vec<Output>> {
    if values.is_empty() {
        return Ok(vec![Output::Image { names: Vec::new(), push: false }]);
    }
    values.iter().map(|v| parse_output(v)).collect()
}

fn parse_output(value: &str) -> Result<Output> {
    if value.is_empty() {
        bail!("--output \"\": give type=TYPE[,dest=PATH] or a directory");
    }
    if value == "-" {
        return Ok(Output::Tar { dest: None });
    }
    if !value.contains('=') {
        return Ok(Output::Local { dest: PathBuf::from(value) });
    }
    let (mut kind, mut dest, mut names, mut push) = (None, None, Vec::new(), false);
    for field in value.split(',') {
        let (k, v) =
            field.split_once('=').ok_or_else(|| anyhow!("--output {value:?}: {field:?} is not key=value"))?;
        match k.trim() {
            "type" => kind = Some(v.trim().to_string()),
            "dest" => dest = Some(v.to_string()),
            "name" => names.extend(v.split(';').filter(|n| !n.is_empty()).map(str::to_string)),
            // Accepted as docker's exporters take them; they change nothing here.
            "compression" | "oci-mediatypes" | "tar" | "platform-split" | "annotation" => {}
            "push" => {
                push = match v.trim() {
                    "true" => true,
                    "false" => false,
                    _ => bail!("--output {value:?}: push={v:?} is not true or false"),
                }
            }
            other => bail!("--output {value:?}: unknown key {other:?} (type, dest, name, push)"),
        }
    }
    let kind = kind.ok_or_else(|| {
        anyhow!("--output {value:?}: type= is required (image, registry, oci, docker, local, tar)")
    })?;
    let need_dest = |kind: &str| {
        dest.clone()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| anyhow!("--output {value:?}: type={kind} needs dest="))
    };
    for n in &names {
        n.parse::<ImageRef>().with_context(|| format!("--output {value:?}: name="))?;
    }
    Ok(match kind.as_str() {
        "image" | "moby" => Output::Image { names, push },
        // buildx's `type=registry`: an image that is pushed.
        "registry" => Output::Image { names, push: true },
        "oci" => Output::Archive { format: cache::ArchiveFormat::Oci, dest: need_dest("oci")?.into(), names },
        "docker" => {
            Output::Archive { format: cache::ArchiveFormat::Docker, dest: need_dest("docker")?.into(), names }
        }
        "local" => Output::Local { dest: need_dest("local")?.into() },
        "tar" => match need_dest("tar")?.as_str() {
            "-" => Output::Tar { dest: None },
            d => Output::Tar { dest: Some(d.into()) },
        },
        other => {
            bail!("--output {value:?}: unknown type {other:?} (image, registry, oci, docker, local, tar)")
        }
    })
}

/// `--push`: the image output pushes (one is added if `-o` named none).
pub fn with_push(mut outputs: Vec<Output>) -> Vec<Output> {
    match outputs.iter_mut().find_map(|o| match o {
        Output::Image { push, .. } => Some(push),
        _ => None,
    }) {
        Some(push) => *push = true,
        None => outputs.push(Output::Image { names: Vec::new(), push: true }),
    }
    outputs
}

/// The names the image is pushed under: the `-t` names and `name=`s of pushing outputs.
pub fn push_names(outputs: &[Output], tags: &[ImageRef]) -> Result<Vec<ImageRef>> {
    let mut out: Vec<ImageRef> = Vec::new();
    for o in outputs {
        if let Output::Image { names, push: true } = o {
            out.extend(tags.iter().cloned());
            for n in names {
                out.push(n.parse()?);
            }
        }
    }
    out.dedup();
    Ok(out)
}

/// Whether the built image is kept in the store under its names.
pub fn stores_image(outputs: &[Output]) -> bool {
    outputs.iter().any(|o| matches!(o, Output::Image { .. }))
}

/// Writes the built `image` to every output but the store; `tags` are the `-t` names, which
/// archives are saved under too.
pub fn write_outputs(store: &Store, image: &Image, outputs: &[Output], tags: &[ImageRef]) -> Result<()> {
    for output in outputs {
        match output {
            Output::Image { names, .. } => {
                for n in names {
                    store.tag(&n.parse()?, &image.digest)?;
                }
                if tags.is_empty() && names.is_empty() {
                    store.keep_dangling(&image.digest)?;
                }
            }
            Output::Archive { format, dest, names } => {
                let mut refs: Vec<Option<ImageRef>> = tags.iter().cloned().map(Some).collect();
                for n in names {
                    refs.push(Some(n.parse()?));
                }
                if refs.is_empty() {
                    refs.push(None);
                }
                let images: Vec<(Option<ImageRef>, Image)> =
                    refs.into_iter().map(|r| (r, image.clone())).collect();
                store
                    .save(&images, *format, dest)
                    .with_context(|| format!("writing the image to {}", dest.display()))?;
                eprintln!("exported the image to {}", dest.display());
            }
            Output::Local { dest } => {
                store
                    .export_rootfs(image, dest)
                    .with_context(|| format!("writing the root filesystem to {}", dest.display()))?;
                eprintln!("exported the root filesystem to {}", dest.display());
            }
            Output::Tar { dest: None } => {
                let mut out = io::BufWriter::new(io::stdout().lock());
                store.export_rootfs_tar(image, &mut out).context("writing the root filesystem to stdout")?;
                out.flush()?;
            }
            Output::Tar { dest: Some(dest) } => write_tar_file(store, image, dest)?,
        }
    }
    Ok(())
}

/// The root filesystem tar, written beside `dest` and renamed: a failure leaves no half file.
fn write_tar_file(store: &Store, image: &Image, dest: &std::path::Path) -> Result<()> {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dest.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let what = || format!("writing the root filesystem to {}", dest.display());
    let written = (|| -> Result<()> {
        let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = io::BufWriter::new(file);
        store.export_rootfs_tar(image, &mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_data()?;
        std::fs::rename(&tmp, dest)?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(what()));
    }
    eprintln!("exported the root filesystem to {}", dest.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_go_prints_utc() {
        assert_eq!(created_at(Some("2024-02-29T14:00:00+02:00")), "2024-02-29 12:00:00 +0000 UTC");
        assert_eq!(created_at(Some("yesterday")), "");
    }

    #[test]
    fn outputs_parse_and_bad_ones_say_why() {
        assert_eq!(parse_outputs(&[]).unwrap(), vec![Output::Image { names: vec![], push: false }]);
        assert_eq!(parse_output("out").unwrap(), Output::Local { dest: "out".into() });
        assert_eq!(parse_output("type=tar,dest=-").unwrap(), Output::Tar { dest: None });
        assert_eq!(
            parse_output("type=docker,dest=a.tar,name=x:1").unwrap(),
            Output::Archive {
                format: cache::ArchiveFormat::Docker,
                dest: "a.tar".into(),
                names: vec!["x:1".into()]
            }
        );
        let e = parse_output("type=foo,dest=x").unwrap_err().to_string();
        assert!(e.contains("unknown type \"foo\""), "{e}");
        let e = parse_output("type=local").unwrap_err().to_string();
        assert!(e.contains("needs dest="), "{e}");
    }
}
