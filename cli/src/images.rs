//! The image commands: `images`, `tag`, `rmi`, `inspect`, `history`, `image prune`, `system df`,
//! and `build --output`. Output is Docker's: the same columns, sizes, times and JSON fields.

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use cache::{Digest, Image, ImageRef, Store};
use serde_json::{Value, json};

use crate::args;

/// The images that containers use, which `rmi` refuses to delete without `-f` and `image prune`
/// and `system df` count as active. Containers are not kept yet (issue #7: `rbuild run` never
/// keeps one), so none is in use; when containers are kept, this reads their records.
pub fn images_in_use(store: &Store) -> Result<BTreeSet<Digest>> {
    let containers = runtime::container::Containers::open(store.root())?;
    Ok(containers.list()?.into_iter().map(|c| c.config.image_id).collect())
}

// ---------------------------------------------------------------------------------------------
// Formatting as Docker does (github.com/docker/go-units, text/tabwriter).

/// `4.26MB`: decimal units with `precision` significant digits, as go-units'
/// `HumanSizeWithPrecision` (`docker images` uses 3, `docker system df` 4).
pub fn human_size(n: u64, precision: usize) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    // Go's %.*g: `precision` significant digits, trailing zeros dropped.
    let int_digits = if v < 1.0 { 1 } else { (v.log10().floor() as usize) + 1 };
    let decimals = precision.saturating_sub(int_digits);
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[u])
}

/// `2 weeks`, as go-units' `HumanDuration`.
pub(crate) fn human_duration(secs: i64) -> String {
    let hours = (secs as f64 / 3600.0 + 0.5) as i64;
    match secs {
        s if s < 1 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".to_string(),
        s if s / 60 < 60 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2024-05-01T10:00:00.5+02:00`).
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    cache::time::parse_rfc3339(s)
}

pub(crate) fn now_secs() -> i64 {
    cache::time::now_unix()
}

/// `2 weeks ago`, or `N/A` for an image without a creation time.
fn created_since(created: Option<&str>) -> String {
    match created.and_then(parse_rfc3339) {
        Some(t) => format!("{} ago", human_duration(now_secs() - t)),
        None => "N/A".to_string(),
    }
}

/// `2024-05-01 08:00:00 +0000 UTC`, as Go prints a UTC time.
fn created_at(created: Option<&str>) -> String {
    let Some(t) = created.and_then(parse_rfc3339) else { return String::new() };
    let rfc = rfc3339_utc(t);
    format!("{} {} +0000 UTC", &rfc[..10], &rfc[11..19])
}

fn rfc3339_utc(secs: i64) -> String {
    cache::time::format_unix(secs, 0)
}

/// Lays out tab-separated lines as Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)` does for
/// Docker's tables: each cell but the last of a line is padded to its column's widest cell + 3,
/// and at least 10.
pub fn tabulate(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            let w = (cell.chars().count() + 3).max(10);
            if widths.len() <= i {
                widths.push(w);
            } else {
                widths[i] = widths[i].max(w);
            }
        }
    }
    let mut out = String::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                out.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// A `--format` value: Go-template-like text with `{{.Field}}` (and `{{json .}}`), optionally
/// prefixed `table ` (a header line, columns aligned), or `json`.
pub(crate) struct Template {
    table: bool,
    parts: Vec<Part>,
}

enum Part {
    Text(String),
    Field(String),
    Json,
}

impl Template {
    pub(crate) fn parse(format: &str, fields: &[(&str, &str)], default_table: &str) -> Result<Template> {
        let trimmed = format.trim();
        if trimmed == "json" {
            return Ok(Template { table: false, parts: vec![Part::Json] });
        }
        let (table, body) = match trimmed.strip_prefix("table") {
            Some("") => (true, default_table),
            Some(rest) if rest.starts_with([' ', '\t']) => (true, rest.trim()),
            _ => (false, trimmed),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let end = rest[start..]
                .find("}}")
                .ok_or_else(|| anyhow!("--format {format:?}: an action `{{{{` is not closed with `}}}}`"))?;
            let action = rest[start + 2..start + end].trim();
            if action == "json ." {
                parts.push(Part::Json);
            } else if let Some(name) = action.strip_prefix('.')
                && fields.iter().any(|(f, _)| *f == name)
            {
                parts.push(Part::Field(name.to_string()));
            } else {
                let names: Vec<String> = fields.iter().map(|(f, _)| format!(".{f}")).collect();
                bail!(
                    "--format {format:?}: cannot evaluate {{{{{action}}}}}: the fields are {} (and `json .`)",
                    names.join(", ")
                );
            }
            rest = &rest[start + end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { table, parts })
    }

    /// One line for a row, whose fields `value` gives (and `object` in JSON).
    pub(crate) fn render(&self, value: impl Fn(&str) -> String, object: &Value) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(&value(f)),
                Part::Json => out.push_str(&object.to_string()),
            }
        }
        out
    }

    fn header(&self, fields: &[(&str, &str)]) -> String {
        let header = |f: &str| fields.iter().find(|(n, _)| *n == f).map_or("", |(_, h)| *h).to_string();
        self.render(header, &Value::Null)
    }

    /// Writes the rows (a header first for a table), aligned as Docker's tables are.
    pub(crate) fn write(
        &self,
        fields: &[(&str, &str)],
        rows: Vec<String>,
        out: &mut impl Write,
    ) -> Result<()> {
        if self.table {
            let mut lines = vec![self.header(fields)];
            lines.extend(rows);
            let lines: Vec<String> = lines.iter().flat_map(|l| l.split('\n').map(str::to_string)).collect();
            out.write_all(tabulate(&lines).as_bytes())?;
        } else {
            for r in rows {
                writeln!(out, "{r}")?;
            }
        }
        Ok(())
    }
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
        let image = match store.image(&entry.digest) {
            Ok(image) => image,
            // A multi-platform image without this machine's platform (pulled with -a): listed
            // by its other platforms would be a guess; say so and go on.
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
        let t = |r: &ImageRow| r.created.as_deref().and_then(parse_rfc3339).unwrap_or(i64::MIN);
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
    let template = Template::parse(&format, IMAGE_FIELDS, default_table)?;
    let mut lines = Vec::new();
    for r in &rows {
        let value = |f: &str| match f {
            "Repository" => r.repository.clone(),
            "Tag" => r.tag.clone(),
            "ID" => id(&r.digest),
            "Digest" => r.digest.to_string(),
            "CreatedSince" => created_since(r.created.as_deref()),
            "CreatedAt" => created_at(r.created.as_deref()),
            "Size" => human_size(r.size, 3),
            "Containers" => "N/A".to_string(),
            _ => String::new(),
        };
        let object = json!({
            "Containers": "N/A",
            "CreatedAt": value("CreatedAt"),
            "CreatedSince": value("CreatedSince"),
            "Digest": value("Digest"),
            "ID": value("ID"),
            "Repository": value("Repository"),
            "SharedSize": "N/A",
            "Size": value("Size"),
            "Tag": value("Tag"),
            "UniqueSize": "N/A",
            "VirtualSize": human_size(r.size, 4),
        });
        lines.push(template.render(value, &object));
    }
    template.write(IMAGE_FIELDS, lines, &mut io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// tag, rmi

pub fn tag(store: &Store, a: args::TagArgs) -> Result<ExitCode> {
    let image = store.resolve(&a.source)?;
    let target: ImageRef = a.target.parse()?;
    if target.digest().is_some() {
        bail!("refusing to create a tag with a digest reference: {}", a.target);
    }
    store.tag(&target, &image.digest)?;
    Ok(ExitCode::SUCCESS)
}

/// What `rmi IMAGE` names: one tag of an image, or an image by ID or digest.
enum RmiTarget {
    Tag(ImageRef, Digest),
    Image(Digest),
}

fn rmi_target(store: &Store, name: &str) -> Result<RmiTarget> {
    if let Ok(r) = name.parse::<ImageRef>()
        && r.digest().is_none()
        && let Some((_, d)) = store.tags()?.into_iter().find(|(k, _)| *k == r.key())
    {
        return Ok(RmiTarget::Tag(r, d));
    }
    match store.resolve(name) {
        Ok(image) => Ok(RmiTarget::Image(image.digest)),
        Err(cache::Error::ImageNotFound(_)) => bail!("No such image: {name}"),
        Err(e) => Err(e.into()),
    }
}

fn rmi_one(
    store: &Store,
    name: &str,
    force: bool,
    in_use: &BTreeSet<Digest>,
    out: &mut impl Write,
) -> Result<()> {
    match rmi_target(store, name)? {
        RmiTarget::Tag(reference, digest) => {
            let others = store.tags_of(&digest)?.len() > 1;
            if !others && in_use.contains(&digest) && !force {
                bail!(
                    "conflict: unable to remove repository reference {name:?} (must force) - a container is \
                     using its referenced image {}",
                    digest.short()
                );
            }
            store.untag(&reference)?;
            writeln!(out, "Untagged: {}", reference.key())?;
            if !others {
                if in_use.contains(&digest) {
                    // -f: the name goes, the image stays for its container, as a dangling one.
                    store.keep_dangling(&digest)?;
                } else {
                    writeln!(out, "Deleted: {digest}")?;
                }
            }
        }
        RmiTarget::Image(digest) => {
            let tags = store.tags_of(&digest)?;
            if tags.len() > 1 && !force {
                bail!(
                    "conflict: unable to delete {} (must be forced) - image is referenced in multiple \
                     repositories",
                    digest.short()
                );
            }
            if in_use.contains(&digest) && !force {
                bail!(
                    "conflict: unable to delete {} (must be forced) - image is being used by a container",
                    digest.short()
                );
            }
            let removed = store.remove_image(&digest)?;
            for t in &removed.untagged {
                writeln!(out, "Untagged: {t}")?;
            }
            if in_use.contains(&digest) {
                store.keep_dangling(&digest)?;
            } else {
                writeln!(out, "Deleted: {digest}")?;
            }
        }
    }
    Ok(())
}

/// Removes each image; one that fails is reported (as docker does) and the rest still go.
pub fn rmi(store: &Store, a: args::RmiArgs) -> Result<ExitCode> {
    let in_use = images_in_use(store)?;
    let mut out = io::stdout().lock();
    let mut failed = Vec::new();
    for name in &a.images {
        if let Err(e) = rmi_one(store, name, a.force, &in_use, &mut out) {
            failed.push(e);
        }
    }
    match failed.len() {
        0 => Ok(ExitCode::SUCCESS),
        1 => Err(failed.remove(0)),
        _ => {
            out.flush()?;
            for e in &failed {
                eprintln!("rbuild: error: {e:#}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// inspect, history

pub(crate) fn inspect_json(store: &Store, image: &Image) -> Result<Value> {
    let tags = store.tags_of(&image.digest)?;
    let mut repos: Vec<String> = Vec::new();
    for t in &tags {
        let r: ImageRef = t.parse()?;
        if !repos.iter().any(|n| n == r.name()) {
            repos.push(r.name().to_string());
        }
    }
    let c = &image.config;
    let manifest_size = std::fs::metadata(store.blob_path(&image.digest)).map_or(0, |m| m.len());
    let media_type =
        image.manifest.media_type.clone().unwrap_or_else(|| cache::oci::MEDIA_TYPE_MANIFEST.to_string());
    let mut v = json!({
        "Id": image.digest.to_string(),
        "RepoTags": tags,
        "RepoDigests": repos.iter().map(|n| format!("{n}@{}", image.digest)).collect::<Vec<_>>(),
        "Parent": "",
        "Comment": c.history.last().and_then(|h| h.comment.clone()).unwrap_or_default(),
        "Created": c.created.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string()),
        "DockerVersion": "",
        "Author": c.author.clone().unwrap_or_default(),
        "Config": serde_json::to_value(&c.config)?,
        "Architecture": c.architecture,
        "Os": c.os,
        "Size": store.image_size(image),
        "RootFS": {
            "Type": c.rootfs.kind,
            "Layers": c.rootfs.diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
        "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" },
        "Descriptor": {
            "mediaType": media_type,
            "digest": image.digest.to_string(),
            "size": manifest_size,
        },
        "ConfigDigest": image.config_digest.to_string(),
    });
    if let Some(variant) = &c.variant {
        v["Variant"] = json!(variant);
    }
    Ok(v)
}

/// `inspect IMAGE...`: a JSON array with one object per image, as `docker inspect`. Images that
/// are not found are reported after the array (which holds the others), and the exit is 1.
pub fn inspect(store: &Store, a: args::InspectArgs) -> Result<ExitCode> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &a.images {
        match store.resolve(name) {
            Ok(image) => found.push(inspect_json(store, &image)?),
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

/// `s` cut to `max` characters with `…` as the last one, as docker's `Ellipsis`.
pub(crate) fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

pub fn history(store: &Store, a: args::HistoryArgs) -> Result<ExitCode> {
    let image = store.resolve(&a.image)?;
    let layers = &image.manifest.layers;
    // Each history entry that is not an empty layer is the next layer, bottom first.
    let mut rows: Vec<(Option<String>, String, u64, String)> = Vec::new();
    let mut next_layer = 0;
    for h in &image.config.history {
        let size = if h.empty_layer {
            0
        } else {
            next_layer += 1;
            layers.get(next_layer - 1).map_or(0, |l| l.size)
        };
        let by = h.created_by.clone().unwrap_or_default().replace('\t', " ");
        rows.push((h.created.clone(), by, size, h.comment.clone().unwrap_or_default()));
    }
    // Layers the history does not account for (an image made without one).
    for l in layers.iter().skip(next_layer) {
        rows.push((image.config.created.clone(), String::new(), l.size, String::new()));
    }
    let id = if a.no_trunc { image.digest.to_string() } else { image.digest.short().to_string() };
    let mut out = io::stdout().lock();
    let mut lines = vec!["IMAGE\tCREATED\tCREATED BY\tSIZE\tCOMMENT".to_string()];
    for (i, (created, by, size, comment)) in rows.iter().rev().enumerate() {
        let shown_id = if i == 0 { id.clone() } else { "<missing>".to_string() };
        if a.quiet {
            writeln!(out, "{shown_id}")?;
            continue;
        }
        let by = if a.no_trunc { by.clone() } else { ellipsis(by, 45) };
        lines.push(format!(
            "{shown_id}\t{}\t{by}\t{}\t{comment}",
            created_since(created.as_deref()),
            human_size(*size, 3)
        ));
    }
    if !a.quiet {
        out.write_all(tabulate(&lines).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// image prune, system df

/// Asks `question` on stderr and reads y/N from stdin, as docker's prune commands do.
pub(crate) fn confirm(warning: &str) -> Result<bool> {
    eprint!("WARNING! {warning}\nAre you sure you want to continue? [y/N] ");
    io::stderr().flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

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
    let (containers, _) = crate::containers::prune_containers(store)?;
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

pub fn system_df(store: &Store) -> Result<ExitCode> {
    let u = store.disk_usage(&images_in_use(store)?)?;
    let reclaim = |part: u64, total: u64| match (part * 100).checked_div(total) {
        Some(percent) => format!("{} ({percent}%)", human_size(part, 4)),
        None => human_size(part, 4),
    };
    let lines = vec![
        "TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE".to_string(),
        format!(
            "Images\t{}\t{}\t{}\t{}",
            u.images,
            u.images_active,
            human_size(u.image_bytes, 4),
            reclaim(u.image_reclaimable, u.image_bytes)
        ),
        // Containers and volumes are not kept yet (issue #7).
        "Containers\t0\t0\t0B\t0B".to_string(),
        "Local Volumes\t0\t0\t0B\t0B".to_string(),
        format!(
            "Build Cache\t{}\t0\t{}\t{}",
            u.cache_records,
            human_size(u.cache_bytes, 4),
            human_size(u.cache_bytes, 4)
        ),
    ];
    print!("{}", tabulate(&lines));
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// import --change

/// Applies one `--change` Dockerfile instruction to an imported image's config.
pub fn apply_change(config: &mut cache::oci::ContainerConfig, change: &str) -> Result<()> {
    let change = change.trim();
    let (word, rest) = change.split_once(char::is_whitespace).unwrap_or((change, ""));
    let rest = rest.trim();
    let bad = |why: &str| anyhow!("--change {change:?}: {why}");
    // The exec form (a JSON array of strings), else the shell form.
    let command = |rest: &str| -> Result<Vec<String>> {
        if rest.starts_with('[') {
            serde_json::from_str::<Vec<String>>(rest).map_err(|_| bad("not a JSON array of strings"))
        } else {
            Ok(vec!["/bin/sh".to_string(), "-c".to_string(), rest.to_string()])
        }
    };
    let pairs = |rest: &str| -> Result<Vec<(String, String)>> {
        let words = split_words(rest);
        if words.len() >= 2 && !words[0].contains('=') {
            // The legacy `ENV NAME value with spaces` form.
            let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            return Ok(vec![(k.to_string(), v.trim().to_string())]);
        }
        words
            .iter()
            .map(|w| {
                let (k, v) = w.split_once('=').ok_or_else(|| bad(&format!("{w:?} is not NAME=value")))?;
                if k.is_empty() {
                    return Err(bad("a name is empty"));
                }
                Ok((k.to_string(), v.to_string()))
            })
            .collect()
    };
    if rest.is_empty() {
        return Err(bad("the instruction has no arguments"));
    }
    match word.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(command(rest)?),
        "ENTRYPOINT" => config.entrypoint = Some(command(rest)?),
        "ENV" => {
            for (k, v) in pairs(rest)? {
                config.env_set(&k, &v);
            }
        }
        "LABEL" => {
            let labels = config.labels.get_or_insert_with(Default::default);
            for (k, v) in pairs(rest)? {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(Default::default);
            for p in rest.split_whitespace() {
                let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                ports.insert(p, json!({}));
            }
        }
        "VOLUME" => {
            let list: Vec<String> = if rest.starts_with('[') {
                serde_json::from_str(rest).map_err(|_| bad("not a JSON array of strings"))?
            } else {
                rest.split_whitespace().map(str::to_string).collect()
            };
            let volumes = config.volumes.get_or_insert_with(Default::default);
            for v in list {
                volumes.insert(v, json!({}));
            }
        }
        "USER" => config.user = Some(rest.to_string()),
        "WORKDIR" => config.working_dir = Some(rest.to_string()),
        "STOPSIGNAL" => config.stop_signal = Some(rest.to_string()),
        "ONBUILD" => config.on_build.get_or_insert_with(Vec::new).push(rest.to_string()),
        other => {
            return Err(bad(&format!(
                "{other} cannot be applied (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, \
                 VOLUME, WORKDIR)"
            )));
        }
    }
    Ok(())
}

/// Words separated by whitespace, where double or single quotes group (and are removed).
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    words
}

// ---------------------------------------------------------------------------------------------
// build --output

/// Where `build` puts its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The store, under the `-t` names (and `name=`).
    Image { names: Vec<String> },
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
        return Ok(vec![Output::Image { names: Vec::new() }]);
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
    let (mut kind, mut dest, mut names) = (None, None, Vec::new());
    for field in value.split(',') {
        let (k, v) =
            field.split_once('=').ok_or_else(|| anyhow!("--output {value:?}: {field:?} is not key=value"))?;
        match k.trim() {
            "type" => kind = Some(v.trim().to_string()),
            "dest" => dest = Some(v.to_string()),
            "name" => names.extend(v.split(';').filter(|n| !n.is_empty()).map(str::to_string)),
            // Accepted as docker's exporters take them; they change nothing here.
            "compression" | "oci-mediatypes" | "tar" | "platform-split" | "annotation" => {}
            "push" if v == "false" => {}
            other => bail!("--output {value:?}: unknown key {other:?} (type, dest, name)"),
        }
    }
    let kind = kind
        .ok_or_else(|| anyhow!("--output {value:?}: type= is required (image, oci, docker, local, tar)"))?;
    let need_dest = |kind: &str| {
        dest.clone()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| anyhow!("--output {value:?}: type={kind} needs dest="))
    };
    for n in &names {
        n.parse::<ImageRef>().with_context(|| format!("--output {value:?}: name="))?;
    }
    Ok(match kind.as_str() {
        "image" | "moby" => Output::Image { names },
        "oci" => Output::Archive { format: cache::ArchiveFormat::Oci, dest: need_dest("oci")?.into(), names },
        "docker" => {
            Output::Archive { format: cache::ArchiveFormat::Docker, dest: need_dest("docker")?.into(), names }
        }
        "local" => Output::Local { dest: need_dest("local")?.into() },
        "tar" => match need_dest("tar")?.as_str() {
            "-" => Output::Tar { dest: None },
            d => Output::Tar { dest: Some(d.into()) },
        },
        other => bail!("--output {value:?}: unknown type {other:?} (image, oci, docker, local, tar)"),
    })
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
            Output::Image { names } => {
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
    fn sizes_and_durations_read_as_docker_prints_them() {
        assert_eq!(human_size(0, 3), "0B");
        assert_eq!(human_size(999, 3), "999B");
        assert_eq!(human_size(4_261_550, 3), "4.26MB");
        assert_eq!(human_size(4_261_550, 4), "4.262MB");
        assert_eq!(human_size(1_000, 3), "1kB");
        assert_eq!(human_size(123_456_789, 3), "123MB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(45), "45 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(15 * 86_400), "2 weeks");
    }

    #[test]
    fn rfc3339_times_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00.123456789Z"), Some(1_709_208_000));
        assert_eq!(parse_rfc3339("2024-02-29T14:00:00+02:00"), Some(1_709_208_000));
        assert_eq!(created_at(Some("2024-02-29T14:00:00+02:00")), "2024-02-29 12:00:00 +0000 UTC");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn tables_align_as_tabwriter_does() {
        let t = tabulate(&["A\tBB\tC".to_string(), "longer value\tx\ty".to_string()]);
        assert_eq!(t, "A              BB        C\nlonger value   x         y\n");
    }

    #[test]
    fn templates_render_fields_and_reject_unknown_ones() {
        let t = Template::parse("table {{.Repository}}:{{ .Tag }}\\t{{.Size}}", IMAGE_FIELDS, "").unwrap();
        assert!(t.table);
        assert_eq!(t.header(IMAGE_FIELDS), "REPOSITORY:TAG\tSIZE");
        let err = Template::parse("{{.Nope}}", IMAGE_FIELDS, "").err().unwrap().to_string();
        assert!(err.contains(".Repository"), "{err}");
        assert!(Template::parse("{{.ID", IMAGE_FIELDS, "").is_err());
    }

    #[test]
    fn outputs_parse_and_bad_ones_say_why() {
        assert_eq!(parse_outputs(&[]).unwrap(), vec![Output::Image { names: vec![] }]);
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

    #[test]
    fn changes_apply_to_the_config() {
        let mut c = cache::oci::ContainerConfig::default();
        apply_change(&mut c, "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]").unwrap();
        apply_change(&mut c, "ENV A=1 B=\"two words\"").unwrap();
        apply_change(&mut c, "ENV C three four").unwrap();
        apply_change(&mut c, "EXPOSE 80 53/udp").unwrap();
        apply_change(&mut c, "workdir /srv").unwrap();
        assert_eq!(c.cmd.as_deref().unwrap()[2], "echo hi");
        assert_eq!(c.env.as_deref().unwrap(), ["A=1", "B=two words", "C=three four"]);
        assert!(c.exposed_ports.as_ref().unwrap().contains_key("53/udp"));
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert!(apply_change(&mut c, "RUN true").is_err());
        assert!(apply_change(&mut c, "CMD").is_err());
    }
}
