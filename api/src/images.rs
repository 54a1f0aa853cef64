//! `/images/...` and `/commit`: list, inspect, history, pull, push, tag, remove, prune, save,
//! load and commit, through the store's and registry's functions (what `rbuild images`,
//! `pull`, `push`, `tag`, `rmi`, `image prune`, `save`, `load` and `commit` call). Pulls,
//! pushes and loads answer with docker's JSON progress lines.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use cache::{Digest, ImageRef, Store};
use serde_json::{Value, json};

use crate::stream::{BodyReader, Lines, file_body, json_lines};
use crate::{ApiError, Ctx, blocking};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/images/json", get(list))
        .route("/images/create", post(create))
        .route("/images/get", get(save))
        .route("/images/load", post(load))
        .route("/images/prune", post(prune))
        .route("/images/{*name}", get(get_named).post(post_named).delete(remove))
        .route("/commit", post(commit))
}

/// A query flag as docker reads one: `1`, `true` (and `True`...) are true.
fn flag(q: &[(String, String)], key: &str) -> bool {
    value(q, key).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"))
}

/// The last value of `key` (docker reads repeated keys so), if any.
fn value<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Every value of a repeatable key (`names`, `t`, `changes`).
fn values<'a>(q: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    q.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
}

/// `filters={"dangling":["true"]}` as key -> values (both docker's `["a"]` and the old
/// `{"a": true}` shapes).
pub(crate) fn filter_map(raw: Option<&str>) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let Some(raw) = raw.filter(|f| !f.is_empty()) else { return Ok(BTreeMap::new()) };
    let parsed: BTreeMap<String, Value> =
        serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("invalid filters: {e}")))?;
    parsed
        .into_iter()
        .map(|(key, v)| {
            let list = match v {
                Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
                Value::Object(m) => m.keys().cloned().collect(),
                _ => return Err(ApiError::bad_request(format!("invalid filter {key:?}"))),
            };
            Ok((key, list))
        })
        .collect()
}

/// `docker.io/library/busybox:latest` as docker shows it: `busybox:latest`.
fn familiar(tag: &str) -> String {
    tag.parse::<ImageRef>().map(|r| r.key()).unwrap_or_else(|_| tag.to_string())
}

fn no_such_image(name: &str) -> impl Fn(cache::Error) -> ApiError + '_ {
    move |e| match e {
        cache::Error::ImageNotFound(_) => ApiError::not_found(format!("No such image: {name}")),
        e => e.into(),
    }
}

fn parse_ref(s: &str) -> Result<ImageRef, ApiError> {
    s.parse::<ImageRef>().map_err(|e| ApiError::bad_request(format!("invalid reference format: {e}")))
}

/// docker's `path.Match` for the `reference` filter: `*` is any run but `/`, `?` one character.
fn path_match(pattern: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => {
                (0..=t.len()).take_while(|&i| i == 0 || t[i - 1] != '/').any(|i| go(&p[1..], &t[i..]))
            }
            Some('?') => !t.is_empty() && t[0] != '/' && go(&p[1..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(&p, &t)
}

/// An image passes `reference=PATTERN` if one of its names does, as `name` or `name:tag`.
fn reference_matches(patterns: &[String], tags: &[String]) -> bool {
    patterns.iter().any(|p| {
        tags.iter().any(|t| {
            let name =
                t.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map_or(t.as_str(), |(n, _)| n);
            path_match(p, t) || path_match(p, name)
        })
    })
}

/// `GET /images/json`: filters `dangling`, `label` (`k` or `k=v`), `reference`, `before`,
/// `since`; each image once with all its names (`RepoTags`) and `RepoDigests`.
async fn list(State(ctx): State<Ctx>, Query(q): Query<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let filters = filter_map(value(&q, "filters"))?;
    for key in filters.keys() {
        if !["dangling", "label", "reference", "before", "since"].contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter '{key}'")));
        }
    }
    blocking(move || {
        let store = ctx.store()?;
        let created_of = |name: &str| -> Result<i64, ApiError> {
            let image = store.resolve(name).map_err(no_such_image(name))?;
            Ok(image.config.created.as_deref().and_then(cache::time::parse_rfc3339).unwrap_or(0))
        };
        let before = filters.get("before").and_then(|v| v.first()).map(|n| created_of(n)).transpose()?;
        let since = filters.get("since").and_then(|v| v.first()).map(|n| created_of(n)).transpose()?;
        let dangling = match filters.get("dangling").and_then(|v| v.first()).map(String::as_str) {
            None => None,
            Some("true" | "1") => Some(true),
            Some("false" | "0") => Some(false),
            Some(other) => return Err(ApiError::bad_request(format!("invalid filter 'dangling={other}'"))),
        };
        let mut rows = Vec::new();
        for entry in store.list_images()? {
            let Ok(image) = store.image_or_any(&entry.digest) else { continue };
            let created = image.config.created.as_deref().and_then(cache::time::parse_rfc3339).unwrap_or(0);
            let tags: Vec<String> =
                entry.tags.iter().filter(|t| !t.contains("@sha256:")).map(|t| familiar(t)).collect();
            let labels = image.config.config.labels.clone().unwrap_or_default();
            let keep = dangling.is_none_or(|d| d == tags.is_empty())
                && filters.get("label").is_none_or(|want| {
                    want.iter().all(|l| match l.split_once('=') {
                        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
                        None => labels.contains_key(l),
                    })
                })
                && filters.get("reference").is_none_or(|p| reference_matches(p, &tags))
                && before.is_none_or(|b| created < b)
                && since.is_none_or(|s| created > s);
            if !keep {
                continue;
            }
            let size = store.image_size(&image);
            let mut digests = store.inspect_json(&image)?.get("RepoDigests").cloned().unwrap_or(json!([]));
            // How dockerd marks a dangling image; the docker CLI shows one only with both.
            if tags.is_empty() && digests.as_array().is_none_or(Vec::is_empty) {
                digests = json!(["<none>@<none>"]);
            }
            rows.push((
                created,
                json!({
                    "Id": entry.digest.to_string(),
                    "ParentId": "",
                    "RepoTags": if tags.is_empty() { vec!["<none>:<none>".to_string()] } else { tags },
                    "RepoDigests": digests,
                    "Created": created,
                    "Size": size,
                    "SharedSize": -1,
                    "VirtualSize": size,
                    "Labels": labels,
                    "Containers": -1,
                }),
            ));
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        Ok(axum::Json(rows.into_iter().map(|(_, r)| r).collect::<Vec<_>>()).into_response())
    })
    .await
}

/// `GET /images/{name}/json`, `/history`, `/get` (names have slashes, so one catch-all).
async fn get_named(State(ctx): State<Ctx>, Path(path): Path<String>) -> Result<Response, ApiError> {
    if let Some(name) = path.strip_suffix("/json") {
        return inspect(ctx, name.to_string()).await;
    }
    if let Some(name) = path.strip_suffix("/history") {
        return history(ctx, name.to_string()).await;
    }
    if let Some(name) = path.strip_suffix("/get") {
        return save_names(ctx, vec![name.to_string()]).await;
    }
    Err(ApiError::not_found("page not found"))
}

/// `POST /images/{name}/push`, `/tag`.
async fn post_named(
    State(ctx): State<Ctx>,
    Path(path): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(name) = path.strip_suffix("/push") {
        return push(ctx, name.to_string(), q, headers).await;
    }
    if let Some(name) = path.strip_suffix("/tag") {
        return tag(ctx, name.to_string(), q).await;
    }
    Err(ApiError::not_found("page not found"))
}

async fn inspect(ctx: Ctx, name: String) -> Result<Response, ApiError> {
    blocking(move || {
        let store = ctx.store()?;
        let image = store.resolve(&name).map_err(no_such_image(&name))?;
        Ok(axum::Json(store.inspect_json(&image)?).into_response())
    })
    .await
}

/// docker's `HistoryResponseItem`s, newest first; the top row carries the image's ID and tags.
async fn history(ctx: Ctx, name: String) -> Result<Response, ApiError> {
    blocking(move || {
        let store = ctx.store()?;
        let image = store.resolve(&name).map_err(no_such_image(&name))?;
        let tags: Vec<String> = store.tags_of(&image.digest)?.iter().map(|t| familiar(t)).collect();
        let rows: Vec<Value> = image
            .history_rows()
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                json!({
                    "Id": if i == 0 { image.digest.to_string() } else { "<missing>".to_string() },
                    "Created": r.created.as_deref().and_then(cache::time::parse_rfc3339).unwrap_or(0),
                    "CreatedBy": r.created_by,
                    "Tags": if i == 0 && !tags.is_empty() { json!(tags) } else { Value::Null },
                    "Size": r.size,
                    "Comment": r.comment,
                })
            })
            .collect();
        Ok(axum::Json(rows).into_response())
    })
    .await
}

/// `POST /images/{name}/tag?repo=&tag=`: 201, as dockerd.
async fn tag(ctx: Ctx, name: String, q: Vec<(String, String)>) -> Result<Response, ApiError> {
    let repo = value(&q, "repo").unwrap_or_default().to_string();
    let tag = value(&q, "tag").filter(|t| !t.is_empty()).unwrap_or("latest").to_string();
    if repo.is_empty() {
        return Err(ApiError::bad_request("repository name must have at least one component"));
    }
    let target = parse_ref(&format!("{repo}:{tag}"))?;
    blocking(move || {
        let store = ctx.store()?;
        let digest = store.lookup(&name).map_err(no_such_image(&name))?;
        store.tag(&target, &digest)?;
        Ok(StatusCode::CREATED.into_response())
    })
    .await
}

/// `DELETE /images/{name}?force=&noprune=`: `runtime::images::remove`, docker's rules and
/// answer (`[{"Untagged": ...}, {"Deleted": ...}]`); 409 while a container uses it.
async fn remove(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let force = flag(&q, "force");
    blocking(move || {
        let store = ctx.store()?;
        let in_use = runtime::images::in_use(store.root())?;
        let removed = runtime::images::remove(&store, &name, force, &in_use)?;
        Ok(axum::Json(removed).into_response())
    })
    .await
}

/// `POST /images/prune?filters=`: dangling images (every unused one with `dangling=false`),
/// then the blobs nothing uses any more, as `rbuild image prune`.
async fn prune(State(ctx): State<Ctx>, Query(q): Query<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let filters = filter_map(value(&q, "filters"))?;
    let all = match filters.get("dangling").and_then(|v| v.first()).map(String::as_str) {
        None | Some("true" | "1") => false,
        Some("false" | "0") => true,
        Some(other) => return Err(ApiError::bad_request(format!("invalid filter 'dangling={other}'"))),
    };
    if let Some(key) = filters.keys().find(|k| *k != "dangling") {
        return Err(ApiError::bad_request(format!(
            "invalid filter '{key}' (rbuild prunes by dangling only)"
        )));
    }
    blocking(move || {
        let store = ctx.store()?;
        let removed = store.prune_images(all, &runtime::images::in_use(store.root())?)?;
        let reclaimed = store.gc()?.total_bytes();
        let mut deleted = Vec::new();
        for r in removed {
            deleted.extend(r.untagged.iter().map(|t| json!({ "Untagged": t })));
            if r.deleted {
                deleted.push(json!({ "Deleted": r.digest.to_string() }));
            }
        }
        Ok(axum::Json(json!({ "ImagesDeleted": deleted, "SpaceReclaimed": reclaimed })).into_response())
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// pull, push

/// The registry part of a reference (`127.0.0.1:5000`, or docker.io for a familiar name).
fn registry_host(r: &ImageRef) -> String {
    match r.name().split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_string(),
        _ => "docker.io".to_string(),
    }
}

/// The repository's path in its registry, as dockerd's `Pulling from` line names it
/// (`library/busybox`, `team/app`).
fn repository_path(r: &ImageRef) -> String {
    let host = registry_host(r);
    match r.name().strip_prefix(&format!("{host}/")) {
        Some(path) => path.to_string(),
        None if r.name().contains('/') => r.name().to_string(),
        None => format!("library/{}", r.name()),
    }
}

/// `X-Registry-Auth`: base64url JSON `{username, password, serveraddress}`. As dockerd, one that
/// does not decode is no login (the CLI sends `e30=`, `{}`, when it has none).
fn header_login(headers: &HeaderMap, reference: &ImageRef) -> Vec<(String, registry::Login)> {
    let Some(raw) = headers.get("X-Registry-Auth").and_then(|v| v.to_str().ok()) else { return Vec::new() };
    let Some(auth) = decode_json(raw) else { return Vec::new() };
    login_of(&auth, registry_host(reference)).into_iter().collect()
}

pub(crate) fn decode_json(raw: &str) -> Option<Value> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let raw = raw.trim();
    let bytes = [URL_SAFE, URL_SAFE_NO_PAD, STANDARD].iter().find_map(|e| e.decode(raw).ok())?;
    serde_json::from_slice(&bytes).ok()
}

/// A login from docker's `AuthConfig` JSON, for `serveraddress` (or `host` without one).
pub(crate) fn login_of(auth: &Value, host: String) -> Option<(String, registry::Login)> {
    let text = |k: &str| auth.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let (username, password) = (text("username"), text("password"));
    let password = if password.is_empty() { text("identitytoken") } else { password };
    if username.is_empty() && password.is_empty() {
        return None;
    }
    let server = text("serveraddress");
    Some((if server.is_empty() { host } else { server }, registry::Login { username, password }))
}

/// A registry client as the CLI's (the config file's registries), with the request's logins
/// first and `progress` reporting each blob.
pub(crate) fn client(
    given: Vec<(String, registry::Login)>,
    progress: Option<registry::ProgressFn>,
) -> Result<registry::Client, ApiError> {
    let registries = registry::config::Registries::load()
        .map_err(|e| ApiError::internal(hostutil::errors::one_line(&e)))?;
    let mut credentials = registry::Credentials::from_env();
    credentials.given = given;
    let options = registry::Options { credentials, registries, progress, ..Default::default() };
    registry::Client::new(options).map_err(|e| ApiError::internal(hostutil::errors::one_line(&e)))
}

fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

/// Blob events as docker's per-layer lines (`abc123: Downloading`, `Pull complete`).
fn progress_lines(lines: Arc<Lines>, pull: bool) -> registry::ProgressFn {
    Arc::new(move |p: &registry::Progress| {
        let (digest, status, detail) = match p {
            registry::Progress::Start { digest, .. } => {
                (digest, if pull { "Pulling fs layer" } else { "Preparing" }.to_string(), json!({}))
            }
            registry::Progress::Bytes { digest, done, size } => (
                digest,
                if pull { "Downloading" } else { "Pushing" }.to_string(),
                json!({ "current": done, "total": size }),
            ),
            registry::Progress::Done { digest, outcome, .. } => {
                let status = match (outcome, pull) {
                    (registry::Outcome::Transferred, true) => "Pull complete".to_string(),
                    (registry::Outcome::Transferred, false) => "Pushed".to_string(),
                    (registry::Outcome::AlreadyPresent, true) => "Already exists".to_string(),
                    (registry::Outcome::AlreadyPresent, false) => "Layer already exists".to_string(),
                    (registry::Outcome::Mounted { from }, _) => format!("Mounted from {from}"),
                };
                (digest, status, json!({}))
            }
        };
        lines.send(json!({ "status": status, "progressDetail": detail, "id": short(digest) }));
    })
}

/// `POST /images/create?fromImage=&tag=&platform=`: a pull, reported as dockerd reports one.
async fn create(
    State(ctx): State<Ctx>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(src) = value(&q, "fromSrc").filter(|s| !s.is_empty()) {
        return import(ctx, src.to_string(), &q, body).await;
    }
    let from = value(&q, "fromImage").unwrap_or_default();
    if from.is_empty() {
        return Err(ApiError::bad_request("fromImage is required"));
    }
    let tag = value(&q, "tag").unwrap_or_default();
    let name = match tag {
        "" => from.to_string(),
        t if t.starts_with("sha256:") => format!("{from}@{t}"),
        t => format!("{from}:{t}"),
    };
    let reference = parse_ref(&name)?;
    let platform = match value(&q, "platform").filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(registry::Platform::from(
            &hostutil::platform::Platform::parse(p)
                .map_err(|e| ApiError::bad_request(format!("invalid platform {p:?}: {e}")))?,
        )),
    };
    let given = header_login(&headers, &reference);
    let store = blocking({
        let ctx = ctx.clone();
        move || ctx.store()
    })
    .await?;
    Ok(json_lines(move |lines| {
        let shown =
            reference.tag().unwrap_or_else(|| reference.digest().map_or("", |d| d.as_str())).to_string();
        lines.status(Some(&shown), &format!("Pulling from {}", repository_path(&reference)));
        let before = store.lookup(&reference.key()).ok();
        let lines = Arc::new(lines.clone());
        let pulled = client(given, Some(progress_lines(lines.clone(), true))).and_then(|c| {
            c.pull(&store, &reference, platform.as_ref())
                .map_err(|e| ApiError::internal(hostutil::errors::one_line(&e)))
        });
        match pulled {
            Ok(image) => {
                lines.status(None, &format!("Digest: {}", image.digest));
                let shown = familiar(&reference.key());
                if before.as_ref() == Some(&image.digest) {
                    lines.status(None, &format!("Status: Image is up to date for {shown}"));
                } else {
                    lines.status(None, &format!("Status: Downloaded newer image for {shown}"));
                }
            }
            Err(e) => {
                lines.error(&e.message);
            }
        }
    }))
}

/// `POST /images/create?fromSrc=-&repo=&tag=&message=&changes=`: the body is a root
/// filesystem tar (`solver::import`, as `rbuild import`); answered `{"status": "sha256:..."}`.
/// A URL source is not fetched.
async fn import(ctx: Ctx, src: String, q: &[(String, String)], body: Body) -> Result<Response, ApiError> {
    if src != "-" {
        return Err(ApiError::bad_request(format!(
            "fromSrc {src:?}: only \"-\" (the request body) is served"
        )));
    }
    let reference = match (value(q, "repo").unwrap_or_default(), value(q, "tag").unwrap_or_default()) {
        ("", _) => None,
        (r, "") => Some(parse_ref(r)?),
        (r, t) => Some(parse_ref(&format!("{r}:{t}"))?),
    };
    let changes: Vec<String> =
        values(q, "changes").iter().flat_map(|c| c.lines()).map(str::to_string).collect();
    let message = value(q, "message").filter(|m| !m.is_empty()).map(str::to_string);
    let reader = std::io::BufReader::new(BodyReader::new(body));
    blocking(move || {
        let store = ctx.store()?;
        let image = solver::import(&store, reader, reference.as_ref(), &changes, "-", message.as_deref())
            .map_err(|e| match e {
                solver::ImportError::Change(e) => ApiError::bad_request(hostutil::errors::one_line(&e)),
                solver::ImportError::Store(e @ cache::Error::Layer { .. }) => {
                    ApiError::bad_request(hostutil::errors::one_line(&e))
                }
                solver::ImportError::Store(e) => e.into(),
            })?;
        let line = json!({ "status": image.digest.to_string() }).to_string() + "\n";
        Ok(([("Content-Type", "application/json")], line).into_response())
    })
    .await
}

/// `POST /images/{name}/push?tag=`: each tag (all of the repository's without one), then
/// dockerd's closing `TAG: digest: sha256:... size: N` and its `aux`.
async fn push(
    ctx: Ctx,
    name: String,
    q: Vec<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tag = value(&q, "tag").unwrap_or_default().to_string();
    let repo = parse_ref(&name)?;
    let given = header_login(&headers, &repo);
    let (store, targets) = blocking(move || {
        let store = ctx.store()?;
        let targets: Vec<ImageRef> = if tag.is_empty() {
            let mut all = Vec::new();
            for (key, _) in store.tags()? {
                if let Ok(r) = key.parse::<ImageRef>()
                    && r.name() == repo.name()
                    && r.digest().is_none()
                {
                    all.push(r);
                }
            }
            all
        } else {
            vec![parse_ref(&format!("{}:{tag}", repo.name()))?]
        };
        if targets.is_empty() {
            return Err(ApiError::not_found(format!("An image does not exist locally with the tag: {name}")));
        }
        for t in &targets {
            store.lookup(&t.key()).map_err(|_| ApiError::not_found(format!("No such image: {}", t.key())))?;
        }
        Ok((store, targets))
    })
    .await?;
    Ok(json_lines(move |lines| {
        let lines = Arc::new(lines.clone());
        lines.status(None, &format!("The push refers to repository [{}]", targets[0].name()));
        let client = match client(given, Some(progress_lines(lines.clone(), false))) {
            Ok(c) => c,
            Err(e) => {
                lines.error(&e.message);
                return;
            }
        };
        for target in &targets {
            match push_one(&store, &client, target) {
                Ok((digest, size)) => {
                    let tag = target.tag().unwrap_or_default();
                    lines.status(None, &format!("{tag}: digest: {digest} size: {size}"));
                    lines.send(json!({
                        "progressDetail": {},
                        "aux": { "Tag": tag, "Digest": digest.to_string(), "Size": size },
                    }));
                }
                Err(e) => {
                    lines.error(&e);
                    return;
                }
            }
        }
    }))
}

/// One name pushed as `rbuild push` pushes it (`solver::buildcache::push`); the manifest's
/// digest and size.
fn push_one(store: &Store, client: &registry::Client, target: &ImageRef) -> Result<(Digest, u64), String> {
    let found = store.lookup(&target.key()).map_err(|e| hostutil::errors::one_line(&e))?;
    let pushed = solver::buildcache::push(store, client, &found, target)
        .map_err(|e| hostutil::errors::one_line(&e))?;
    let size = std::fs::metadata(store.blob_path(&pushed.digest)).map_or(0, |m| m.len());
    Ok((pushed.digest, size))
}

// ---------------------------------------------------------------------------------------------
// save, load, commit

/// `GET /images/get?names=a&names=b`.
async fn save(State(ctx): State<Ctx>, Query(q): Query<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let names: Vec<String> = values(&q, "names").into_iter().map(str::to_string).collect();
    if names.is_empty() {
        return Err(ApiError::bad_request("no images named (names=)"));
    }
    save_names(ctx, names).await
}

/// The `docker save` tar of `names` (the same archive `rbuild save` writes): written to the
/// store's `tmp/`, unlinked, and streamed from the open file.
async fn save_names(ctx: Ctx, names: Vec<String>) -> Result<Response, ApiError> {
    let file = blocking(move || {
        let store = ctx.store()?;
        let mut images = Vec::new();
        for name in &names {
            images.extend(store.images_to_save(std::slice::from_ref(name)).map_err(no_such_image(name))?);
        }
        let dir = store.temp_dir("save-")?;
        let path = dir.path().join("images.tar");
        store.save(&images, cache::ArchiveFormat::Docker, &path)?;
        let file =
            std::fs::File::open(&path).map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
        drop(dir);
        Ok(file)
    })
    .await?;
    Ok(file_body(file, "application/x-tar"))
}

/// `POST /images/load`: the archive (a body of any size) goes to a file of the store's `tmp/`,
/// then `Store::load`; `{"stream": "Loaded image: NAME\n"}` per image.
async fn load(State(ctx): State<Ctx>, body: Body) -> Result<Response, ApiError> {
    let mut reader = BodyReader::new(body);
    blocking(move || {
        let store = ctx.store()?;
        let dir = store.temp_dir("load-")?;
        let path = dir.path().join("archive.tar");
        let mut out = std::fs::File::create(&path)
            .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
        std::io::copy(&mut reader, &mut out)
            .map_err(|e| ApiError::bad_request(format!("reading the archive: {e}")))?;
        drop(out);
        let loaded = store.load(&path).map_err(|e| ApiError::bad_request(hostutil::errors::one_line(&e)))?;
        let mut text = String::new();
        for l in loaded {
            let line = match l.reference {
                Some(r) => json!({ "stream": format!("Loaded image: {r}\n") }),
                None => json!({ "stream": format!("Loaded image ID: {}\n", l.image.digest) }),
            };
            text.push_str(&line.to_string());
            text.push('\n');
        }
        Ok(([("Content-Type", "application/json")], text).into_response())
    })
    .await
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=`: `runtime::fsops::commit`
/// with the container's config, the body's `Config` fields over it, then `changes`.
async fn commit(
    State(ctx): State<Ctx>,
    Query(q): Query<Vec<(String, String)>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let container = value(&q, "container").unwrap_or_default().to_string();
    let repo = value(&q, "repo").unwrap_or_default();
    let reference = match (repo, value(&q, "tag").unwrap_or_default()) {
        ("", _) => None,
        (r, "") => Some(parse_ref(r)?),
        (r, t) => Some(parse_ref(&format!("{r}:{t}"))?),
    };
    let overrides: Option<serde_json::Map<String, Value>> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?
    };
    let changes: Vec<String> =
        values(&q, "changes").iter().flat_map(|c| c.lines()).map(str::to_string).collect();
    let author = value(&q, "author").filter(|a| !a.is_empty()).map(str::to_string);
    let comment = value(&q, "comment").filter(|c| !c.is_empty()).map(str::to_string);
    let pause = value(&q, "pause").is_none_or(|_| flag(&q, "pause"));
    blocking(move || {
        let store = ctx.store()?;
        let c = runtime::container::Containers::open(store.root())?.find(&container)?;
        let image = store.image(&c.config.image_id)?;
        let mut config = runtime::fsops::commit_config(&image.config.config, &c.config.config);
        if let Some(overrides) = overrides {
            config = overlay(&config, overrides)?;
        }
        solver::apply_changes(&mut config, &changes)
            .map_err(|e| ApiError::bad_request(hostutil::errors::one_line(&e)))?;
        let opts = runtime::fsops::CommitOptions {
            author,
            comment,
            pause,
            compression: cache::Compression::default(),
            config,
            reference: reference.as_ref(),
        };
        let committed = runtime::fsops::commit(&store, &c, &opts)?;
        Ok((StatusCode::CREATED, axum::Json(json!({ "Id": committed.digest.to_string() }))).into_response())
    })
    .await
}

/// The body's non-empty `Config` fields over the container's (docker's names are the image
/// config's, so they overlay field by field).
fn overlay(
    config: &cache::oci::ContainerConfig,
    overrides: serde_json::Map<String, Value>,
) -> Result<cache::oci::ContainerConfig, ApiError> {
    let mut merged = serde_json::to_value(config).map_err(|e| ApiError::internal(e.to_string()))?;
    let known: BTreeSet<&str> = [
        "User",
        "ExposedPorts",
        "Env",
        "Entrypoint",
        "Cmd",
        "Volumes",
        "WorkingDir",
        "Labels",
        "StopSignal",
        "Healthcheck",
        "OnBuild",
        "Shell",
    ]
    .into();
    for (k, v) in overrides {
        let empty = v.is_null()
            || v.as_str() == Some("")
            || v.as_array().is_some_and(Vec::is_empty)
            || v.as_object().is_some_and(serde_json::Map::is_empty);
        if known.contains(k.as_str()) && !empty {
            merged[k] = v;
        }
    }
    serde_json::from_value(merged).map_err(|e| ApiError::bad_request(format!("invalid Config: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filter_matches_as_docker_s_path_match() {
        let tags = vec!["busybox:latest".to_string(), "127.0.0.1:5000/bb:1".to_string()];
        assert!(reference_matches(&["busybox".into()], &tags));
        assert!(reference_matches(&["busy*".into()], &tags));
        assert!(reference_matches(&["*/bb:1".into()], &tags));
        assert!(!reference_matches(&["bb".into()], &tags));
        assert!(!reference_matches(&["*".into()], &["a/b:1".into()]));
    }

    #[test]
    fn registry_auth_decodes_with_and_without_padding() {
        let r: ImageRef = "127.0.0.1:5000/bb:1".parse().unwrap();
        let mut h = HeaderMap::new();
        let enc =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"username":"u","password":"p"}"#);
        h.insert("X-Registry-Auth", enc.parse().unwrap());
        let given = header_login(&h, &r);
        assert_eq!(given[0].0, "127.0.0.1:5000");
        assert_eq!(given[0].1.username, "u");
        h.insert("X-Registry-Auth", "e30=".parse().unwrap());
        assert!(header_login(&h, &r).is_empty());
        h.insert("X-Registry-Auth", "not base64!".parse().unwrap());
        assert!(header_login(&h, &r).is_empty());
    }
}
