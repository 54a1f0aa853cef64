//! `POST /build`: the classic builder's API over rbuild's solver. The context tar in the body is
//! unpacked into the store's `tmp/` (`Store::unpack_context`, as `rbuild build -`), built with
//! `solver::build` as `rbuild build` builds, and reported as the classic builder reports
//! (`{"stream": "Step 1/3 : FROM busybox\n"}`, `{"aux": {"ID": ...}}`, `Successfully built`).
//! BuildKit's protocol (`/session`, `version=2`) is not served: clients are told to set
//! `DOCKER_BUILDKIT=0`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use cache::ImageRef;
use serde_json::{Value, json};

use crate::images::{client, decode_json, login_of};
use crate::stream::{BodyReader, Lines, json_lines};
use crate::{ApiError, Ctx, blocking};

/// What a BuildKit client is told.
const CLASSIC_ONLY: &str = "rbuild's API serves the classic builder only: set DOCKER_BUILDKIT=0";

pub(crate) fn routes() -> Router<Ctx> {
    Router::new().route("/build", post(build)).route("/session", post(session))
}

/// `POST /session` is how a BuildKit client starts (before its `POST /build?version=2`).
/// Refused at once: the docker CLI 20.10 then stops with "failed to dial gRPC: unable to
/// upgrade to h2c, received 501" (it shows no body), other clients with [`CLASSIC_ONLY`].
async fn session() -> ApiError {
    ApiError { status: StatusCode::NOT_IMPLEMENTED, message: CLASSIC_ONLY.into() }
}

/// What the query asks for, checked before the body is read.
struct Request {
    tags: Vec<ImageRef>,
    dockerfile: String,
    build_args: Vec<(String, String)>,
    labels: Vec<(String, String)>,
    target: Option<String>,
    no_cache: bool,
    pull: solver::PullPolicy,
    network: solver::StepNetwork,
    platform: Option<frontend::Platform>,
    quiet: bool,
}

fn value<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

fn flag(q: &[(String, String)], key: &str) -> bool {
    value(q, key).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"))
}

/// A JSON object query value (`buildargs`, `labels`): `null` values (an arg named without a
/// value on a client that had none to give) are left out, as dockerd leaves them unset.
fn json_pairs(q: &[(String, String)], key: &str) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = value(q, key) else { return Ok(Vec::new()) };
    let map: BTreeMap<String, Option<String>> =
        serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("invalid {key}: {e}")))?;
    Ok(map.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
}

fn parse_request(q: &[(String, String)]) -> Result<Request, ApiError> {
    if value(q, "version") == Some("2") {
        return Err(ApiError::bad_request(CLASSIC_ONLY));
    }
    if let Some(remote) = value(q, "remote") {
        return Err(ApiError::bad_request(format!(
            "remote {remote:?}: a remote context is not served; send the context as a tar"
        )));
    }
    let tags = q
        .iter()
        .filter(|(k, v)| k == "t" && !v.is_empty())
        .map(|(_, t)| {
            let r: ImageRef = t
                .parse()
                .map_err(|e| ApiError::bad_request(format!("invalid reference format {t:?}: {e}")))?;
            if r.digest().is_some() {
                return Err(ApiError::bad_request(format!("invalid tag {t:?}: a tag cannot hold a digest")));
            }
            Ok(r)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dockerfile = value(q, "dockerfile").unwrap_or("Dockerfile").to_string();
    let path = std::path::Path::new(&dockerfile);
    if path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(ApiError::bad_request(format!(
            "dockerfile {dockerfile:?}: must be a path inside the build context"
        )));
    }
    let pull = if flag(q, "pull") { solver::PullPolicy::Always } else { solver::PullPolicy::Missing };
    let network = match value(q, "networkmode").unwrap_or("default") {
        "default" | "bridge" => solver::StepNetwork::Default,
        "none" => solver::StepNetwork::None,
        "host" => solver::StepNetwork::Host,
        other => {
            return Err(ApiError::bad_request(format!(
                "networkmode {other:?} is not a build network: use default, none or host"
            )));
        }
    };
    let platform = value(q, "platform")
        .map(|p| frontend::Platform::parse(p).map_err(|e| ApiError::bad_request(format!("platform: {e}"))))
        .transpose()?;
    if let Some(raw) = value(q, "cachefrom") {
        // Accepted for the clients that always send it; rbuild's cache is keyed by content, so
        // an image built here already serves as cache.
        serde_json::from_str::<Vec<String>>(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid cachefrom: {e}")))?;
    }
    Ok(Request {
        tags,
        dockerfile,
        build_args: json_pairs(q, "buildargs")?,
        labels: json_pairs(q, "labels")?,
        target: value(q, "target").map(str::to_string),
        no_cache: flag(q, "nocache"),
        pull,
        network,
        platform,
        quiet: flag(q, "q"),
    })
}

/// `X-Registry-Config`: base64 JSON `{"host": AuthConfig}`, the logins for FROM's pulls.
fn registry_config(headers: &HeaderMap) -> Vec<(String, registry::Login)> {
    let Some(Value::Object(map)) =
        headers.get("X-Registry-Config").and_then(|v| v.to_str().ok()).and_then(decode_json)
    else {
        return Vec::new();
    };
    map.into_iter().filter_map(|(host, auth)| login_of(&auth, host)).collect()
}

async fn build(
    State(ctx): State<Ctx>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request = parse_request(&q)?;
    let given = registry_config(&headers);
    let store = blocking({
        let ctx = ctx.clone();
        move || ctx.store()
    })
    .await?;
    let reader = BodyReader::new(body);
    Ok(json_lines(move |lines| {
        if let Err(message) = run(&store, request, given, reader, lines) {
            lines.error(&message);
        }
    }))
}

/// Unpacks the context, builds, and names the image; the error's one line if any step fails.
fn run(
    store: &cache::Store,
    r: Request,
    given: Vec<(String, registry::Login)>,
    reader: BodyReader,
    lines: &Lines,
) -> Result<(), String> {
    let line = |e: &(dyn std::error::Error + 'static)| hostutil::errors::one_line(e);
    let context =
        store.unpack_context(reader).map_err(|e| format!("reading the build context: {}", line(&e)))?;
    let path = context.path().join(&r.dockerfile);
    let bytes =
        std::fs::read(&path).map_err(|_| format!("Cannot locate specified Dockerfile: {}", r.dockerfile))?;
    let dockerfile = frontend::decode(&r.dockerfile, &bytes).map_err(|e| line(&e))?.to_string();
    // `[gc] keep-storage` of the store's rbuild.toml, as after a CLI build; read first, so a
    // bad file fails the build at once.
    let limit = store.configured_limit().map_err(|e| line(&e))?;
    // Until the image is named, a prune meanwhile spares what this build uses and makes.
    let lease = store.lease().map_err(|e| line(&e))?;
    store.remove_stale_snapshots().map_err(|e| line(&e))?;
    let client = client(given, None).map_err(|e| e.message)?;
    let network = runtime::network::BuildNetwork::open(store.root(), Vec::new()).map_err(|e| line(&e))?;
    // The solver's cancel flag lives as long as the process (one per build: a few bytes).
    let cancel: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let options = solver::BuildOptions {
        context: context.path().to_path_buf(),
        dockerfile,
        dockerfile_name: r.dockerfile.clone(),
        build_args: r.build_args,
        target: r.target,
        tags: r.tags.clone(),
        no_cache: r.no_cache,
        cancel: Some(cancel),
        fetcher: solver::Fetcher::registry(std::sync::Arc::new(client), r.pull),
        labels: r.labels,
        network: solver::StepNetworks { mode: r.network, provider: Some(std::sync::Arc::new(network)) },
        platform: r.platform,
        ..Default::default()
    };
    let progress = Classic { lines, quiet: r.quiet, started: Mutex::new(HashSet::new()), cancel };
    let out = solver::build(store, &options, &progress).map_err(|e| line(&e))?;
    let image = out.image;
    if r.tags.is_empty() {
        store.keep_dangling(&image.digest).map_err(|e| line(&e))?;
    }
    drop(lease);
    if let Some(limit) = &limit {
        keep_within(store, limit, r.quiet, lines)?;
    }
    let short: String = image.digest.hex().chars().take(12).collect();
    lines.send(json!({ "aux": { "ID": image.digest.to_string() } }));
    if r.quiet {
        lines.stream(&format!("{}\n", image.digest));
        return Ok(());
    }
    lines.stream(&format!(" ---> {short}\n"));
    lines.stream(&format!("Successfully built {short}\n"));
    for t in &r.tags {
        lines.stream(&format!("Successfully tagged {}\n", t.key()));
    }
    Ok(())
}

/// Prunes the store back to its size limit after a build, and says so in the build's output
/// in the CLI's words.
fn keep_within(
    store: &cache::Store,
    limit: &cache::SizeLimit,
    quiet: bool,
    lines: &Lines,
) -> Result<(), String> {
    let failed = |e: &(dyn std::error::Error + 'static)| {
        format!("keeping the store to its size limit: {}", hostutil::errors::one_line(e))
    };
    let in_use = runtime::images::in_use(store.root()).map_err(|e| failed(&e))?;
    let Some(done) = store.keep_within(limit, &in_use).map_err(|e| failed(&e))? else { return Ok(()) };
    if !quiet {
        lines.stream(&format!("rbuild: store over its {} limit: {}\n", done.limit.text, done.report));
    }
    if let Some(w) = done.report.limit_warning() {
        lines.stream(&format!("[WARNING]: {w}\n"));
    }
    Ok(())
}

/// The solver's events as the classic builder's lines: `Step N/M : INSTRUCTION`, a RUN's
/// output, ` ---> Using cache`. A client that went away cancels the build.
struct Classic<'a> {
    lines: &'a Lines,
    quiet: bool,
    started: Mutex<HashSet<usize>>,
    cancel: &'static AtomicBool,
}

impl Classic<'_> {
    fn say(&self, text: String) {
        if !self.lines.stream(&text) {
            self.cancel.store(true, Ordering::Relaxed);
        }
    }

    fn step(s: &solver::StepName) -> String {
        format!("Step {}/{} : {}\n", s.index, s.total, s.text)
    }
}

impl solver::Progress for Classic<'_> {
    fn event(&self, event: solver::Event<'_>) {
        if self.lines.is_closed() {
            self.cancel.store(true, Ordering::Relaxed);
            return;
        }
        if self.quiet {
            return;
        }
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            solver::Event::Warning(w) => self.say(format!("[WARNING]: {w}\n")),
            solver::Event::Note(_) | solver::Event::Lint(_) | solver::Event::Explain(..) => {}
            solver::Event::Started(s) => {
                started.insert(s.id);
                self.say(Self::step(s));
            }
            solver::Event::Cached(s) => {
                started.insert(s.id);
                self.say(format!("{} ---> Using cache\n", Self::step(s)));
            }
            solver::Event::Output(_, text) => self.say(format!("{}\n", text.trim_end_matches(['\n', '\r']))),
            // A stage's FROM is reported by this event alone.
            solver::Event::Finished(s, _) if !started.contains(&s.id) => self.say(Self::step(s)),
            solver::Event::Finished(..) | solver::Event::Failed(..) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_query_maps_onto_build_options_and_bad_values_are_400s() {
        let r = parse_request(&q(&[
            ("t", "a:1"),
            ("t", "b"),
            ("dockerfile", "sub/Dockerfile"),
            ("buildargs", r#"{"A":"1","UNSET":null}"#),
            ("labels", r#"{"l":"v"}"#),
            ("nocache", "1"),
            ("pull", "1"),
            ("networkmode", "none"),
        ]))
        .unwrap();
        assert_eq!(r.tags.iter().map(|t| t.key()).collect::<Vec<_>>(), ["a:1", "b:latest"]);
        assert_eq!(r.build_args, [("A".to_string(), "1".to_string())]);
        assert_eq!(r.labels, [("l".to_string(), "v".to_string())]);
        assert!(r.no_cache);
        assert_eq!(r.pull, solver::PullPolicy::Always);
        assert_eq!(r.network, solver::StepNetwork::None);
        for bad in [
            ("dockerfile", "../Dockerfile"),
            ("dockerfile", "/etc/passwd"),
            ("buildargs", "[1]"),
            ("networkmode", "mynet"),
            ("t", "Bad:Tag"),
            ("version", "2"),
        ] {
            let e = parse_request(&q(&[bad])).err().map(|e| e.status);
            assert_eq!(e, Some(StatusCode::BAD_REQUEST), "{bad:?}");
        }
    }
}
