//! `--explain-cache`: why a step missed the cache, in one line.
//!
//! After a step is built or hit, the inputs its cache key was computed from ([`KeyInputs`])
//! are remembered under `<store>/cache/explain/<identity>`, where the identity names the step
//! across builds (context, Dockerfile, stage, index). On a later miss, the new inputs are
//! compared with the remembered ones and the difference is told in one line. Nothing here is
//! ever fatal to a build: a missing or corrupt record reads as "never built before".

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cache::Digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything a step's cache key was computed from, in a form that can be compared across
/// builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInputs {
    /// The parent state's cache key (digest string).
    pub parent_key: String,
    /// Canonical JSON of the lowered op.
    pub op: String,
    /// COPY/ADD sources: relative path -> content digest (or `symlink:<target>`,
    /// `dir:<mode>`), sorted by path.
    pub files: Vec<(String, String)>,
    /// Build args in scope for the step (NAME, value), sorted.
    pub build_args: Vec<(String, String)>,
    /// For a stage's first step: `image <ref> <manifest digest>`, `scratch` or `stage <n>`.
    pub base: Option<String>,
}

/// Where a step's last inputs are remembered: `<store>/cache/explain/`.
pub struct ExplainStore {
    dir: PathBuf,
}

/// How many names (files, build args) a message lists before "and N more".
const MAX_LISTED: usize = 3;
/// Instruction texts longer than this are cut in messages.
const MAX_TEXT: usize = 200;

impl ExplainStore {
    pub fn new(store_root: &Path) -> ExplainStore {
        ExplainStore { dir: store_root.join("cache").join("explain") }
    }

    /// The identity of a step across builds: the context directory (canonical absolute path),
    /// the Dockerfile path, the stage (name or index) and the step's index in the stage, as
    /// the sha256 hex of those joined (each length-prefixed, so no two tuples collide).
    pub fn identity(context: &Path, dockerfile: &str, stage: &str, index: usize) -> String {
        use std::os::unix::ffi::OsStrExt;
        let context = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
        let index = index.to_string();
        let mut bytes = b"rbuild-explain-v1".to_vec();
        for part in
            [context.as_os_str().as_bytes(), dockerfile.as_bytes(), stage.as_bytes(), index.as_bytes()]
        {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
            bytes.extend_from_slice(part);
        }
        Digest::of(&bytes).hex().to_string()
    }

    /// Records the inputs of a step that was built or hit (temp file + rename in the same
    /// directory, so a reader never sees half a record). Errors are not fatal to a build.
    #[cfg(test)]
    pub fn remember(&self, identity: &str, inputs: &KeyInputs) -> io::Result<()> {
        self.write_record(identity, &Self::encode(inputs)?, None)
    }

    /// Whether the record of `identity` is the one of the step's cache `key` (then
    /// [`ExplainStore::remember_encoded`] need not write).
    pub fn is_current(&self, identity: &str, key: &str) -> bool {
        self.path(identity)
            .is_some_and(|p| std::fs::read_to_string(p.with_extension("key")).is_ok_and(|k| k == key))
    }

    /// A record of `inputs` for [`ExplainStore::remember_encoded`].
    pub fn encode(inputs: &KeyInputs) -> io::Result<Vec<u8>> {
        Ok(serde_json::to_vec(inputs)?)
    }

    /// Records a step that was built or hit: its inputs as [`ExplainStore::encode`] made
    /// them, and the cache `key` they hash to (see [`ExplainStore::is_current`]).
    pub fn remember_encoded(&self, identity: &str, key: &str, record: &[u8]) -> io::Result<()> {
        self.write_record(identity, record, Some(key))
    }

    /// Writes `record` (and `key` beside it), each a temp file renamed into place, so a reader
    /// never sees half of one.
    fn write_record(&self, identity: &str, record: &[u8], key: Option<&str>) -> io::Result<()> {
        let path = self.path(identity).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("invalid step identity {identity:?}"))
        })?;
        std::fs::create_dir_all(&self.dir)?;
        let mut files = vec![(path.clone(), record)];
        if let Some(key) = key {
            files.push((path.with_extension("key"), key.as_bytes()));
        }
        for (to, bytes) in files {
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            // One write: a COPY of a large directory lists thousands of files.
            tmp.write_all(bytes)?;
            tmp.persist(to).map_err(|e| e.error)?;
        }
        Ok(())
    }

    /// Why a step with `inputs` missed the cache, given what was remembered for `identity`,
    /// whether its parent missed too and whether `--no-cache` was given. Always one line.
    pub fn explain(&self, identity: &str, inputs: &KeyInputs, parent_missed: bool, no_cache: bool) -> String {
        let Some(old) = self.recall(identity) else {
            return "never built before".to_string();
        };
        let mut own = Vec::new();
        if let Some(r) = base_reason(old.base.as_deref(), inputs.base.as_deref()) {
            own.push(r);
        }
        if let Some(r) = files_reason(&old.files, &inputs.files) {
            own.push(r);
        }
        if let Some(r) = build_args_reason(&old.build_args, &inputs.build_args) {
            own.push(r);
        }
        if old.op != inputs.op {
            match (op_text(&old.op), op_text(&inputs.op)) {
                (Some(a), Some(b)) if a != b => own.push(format!("instruction changed: {a} -> {b}")),
                // Same text: the op differs in what the text does not show. When another
                // reason was found, that is most likely it (build args are in RUN's op).
                _ if own.is_empty() => own.push("the instruction changed".to_string()),
                _ => {}
            }
        }
        let parent_changed = old.parent_key != inputs.parent_key;
        if !own.is_empty() {
            let mut line = own.join("; ");
            if parent_missed && parent_changed {
                line.push_str(" (and the previous step missed)");
            }
            return line;
        }
        if no_cache {
            "--no-cache was given".to_string()
        } else if parent_changed && parent_missed {
            "the previous step missed the cache".to_string()
        } else if parent_changed {
            "the previous step's result differs from the last build".to_string()
        } else {
            "the cache was pruned (same inputs as the last build)".to_string()
        }
    }

    /// The file of `identity`, or `None` when it is not a plain file name.
    fn path(&self, identity: &str) -> Option<PathBuf> {
        let ok = !identity.is_empty()
            && identity != "."
            && identity != ".."
            && !identity.contains(['/', '\0'])
            && !identity.starts_with('.');
        ok.then(|| self.dir.join(identity))
    }

    fn recall(&self, identity: &str) -> Option<KeyInputs> {
        let bytes = std::fs::read(self.path(identity)?).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// `sha256:<12 hex>` for a digest, the string unchanged otherwise.
fn short(digest: &str) -> String {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 && hex.is_ascii() => format!("sha256:{}", &hex[..12]),
        _ => digest.to_string(),
    }
}

fn base_reason(old: Option<&str>, new: Option<&str>) -> Option<String> {
    if old == new {
        return None;
    }
    fn image(s: &str) -> Option<(&str, &str)> {
        let rest = s.strip_prefix("image ")?;
        rest.rsplit_once(' ')
    }
    fn describe(s: Option<&str>) -> String {
        match s {
            None => "none".to_string(),
            Some(s) => match image(s) {
                Some((r, d)) => format!("image {r} ({})", short(d)),
                None => s.to_string(),
            },
        }
    }
    if let (Some((r1, d1)), Some((r2, d2))) = (old.and_then(image), new.and_then(image)) {
        if r1 == r2 {
            return Some(format!("base image {r1} changed: {} -> {}", short(d1), short(d2)));
        }
        return Some(format!("base image changed: {r1} ({}) -> {r2} ({})", short(d1), short(d2)));
    }
    Some(format!("base changed: {} -> {}", describe(old), describe(new)))
}

/// How a file's recorded value changed, e.g. `content` or `symlink target: a -> b`.
fn file_change(old: &str, new: &str) -> String {
    fn kind(v: &str) -> (&'static str, &str) {
        if let Some(t) = v.strip_prefix("symlink:") {
            ("symlink", t)
        } else if let Some(m) = v.strip_prefix("dir:") {
            ("directory", m)
        } else {
            ("file", v)
        }
    }
    match (kind(old), kind(new)) {
        (("file", _), ("file", _)) => "content".to_string(),
        (("symlink", a), ("symlink", b)) => format!("symlink target: {a} -> {b}"),
        (("directory", a), ("directory", b)) => format!("mode: {a} -> {b}"),
        ((a, _), (b, _)) => format!("{a} -> {b}"),
    }
}

fn files_reason(old: &[(String, String)], new: &[(String, String)]) -> Option<String> {
    let old: BTreeMap<&str, &str> = old.iter().map(|(p, v)| (p.as_str(), v.as_str())).collect();
    let new: BTreeMap<&str, &str> = new.iter().map(|(p, v)| (p.as_str(), v.as_str())).collect();
    let mut changed = Vec::new();
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for (path, v) in &new {
        match old.get(path) {
            None => added.push(path.to_string()),
            Some(o) if o != v => changed.push(format!("{path} ({})", file_change(o, v))),
            Some(_) => {}
        }
    }
    for path in old.keys() {
        if !new.contains_key(path) {
            removed.push(path.to_string());
        }
    }
    listed(&[
        ("file changed", "files changed", changed),
        ("file added", "files added", added),
        ("file removed", "files removed", removed),
    ])
}

fn build_args_reason(old: &[(String, String)], new: &[(String, String)]) -> Option<String> {
    let old: BTreeMap<&str, &str> = old.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let new: BTreeMap<&str, &str> = new.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut names: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    let mut items = Vec::new();
    for name in names {
        match (old.get(name), new.get(name)) {
            (Some(a), Some(b)) if a != b => items.push(format!("build arg {name} changed: {a} -> {b}")),
            (None, Some(b)) => items.push(format!("build arg {name} set: {b}")),
            (Some(_), None) => items.push(format!("build arg {name} unset")),
            _ => {}
        }
    }
    if items.is_empty() {
        return None;
    }
    let more = items.len().saturating_sub(MAX_LISTED);
    items.truncate(MAX_LISTED);
    let mut line = items.join(", ");
    if more > 0 {
        line.push_str(&format!(" and {more} more"));
    }
    Some(line)
}

/// Groups `(singular label, plural label, items)` as `label: a, b; label: c`, listing at most
/// [`MAX_LISTED`] items in all, then `and N more`.
fn listed(groups: &[(&str, &str, Vec<String>)]) -> Option<String> {
    let total: usize = groups.iter().map(|g| g.2.len()).sum();
    if total == 0 {
        return None;
    }
    let mut budget = MAX_LISTED;
    let mut parts = Vec::new();
    for (one, many, items) in groups {
        if items.is_empty() || budget == 0 {
            continue;
        }
        let shown = &items[..items.len().min(budget)];
        budget -= shown.len();
        let label = if shown.len() == 1 { one } else { many };
        parts.push(format!("{label}: {}", shown.join(", ")));
    }
    let mut line = parts.join("; ");
    let more = total - (MAX_LISTED - budget);
    if more > 0 {
        line.push_str(&format!(" and {more} more"));
    }
    Some(line)
}

/// A readable one-line form of an op's JSON (`frontend::Op` as serde writes it), or `None`
/// when it is not recognized.
fn op_text(json: &str) -> Option<String> {
    let value: Value = serde_json::from_str(json).ok()?;
    let (tag, body) = value.as_object()?.iter().next()?;
    let text = match tag.as_str() {
        "Run" => {
            let args = strings(body.get("args")?)?;
            match args.as_slice() {
                [sh, c, cmd] if sh == "/bin/sh" && c == "-c" => format!("RUN {cmd}"),
                _ => format!("RUN {}", serde_json::to_string(&args).ok()?),
            }
        }
        "Copy" | "Add" => {
            let created_by = body.get("created_by")?.as_str()?;
            match body.get("from").and_then(from_text) {
                Some(from) => match created_by.split_once(' ') {
                    Some((kw, rest)) => format!("{kw} --from={from} {rest}"),
                    None => created_by.to_string(),
                },
                None => created_by.to_string(),
            }
        }
        "Workdir" => format!("WORKDIR {}", body.as_str()?),
        "Config" => config_text(body)?,
        _ => return None,
    };
    Some(one_line(&text))
}

fn from_text(from: &Value) -> Option<String> {
    let (kind, v) = from.as_object()?.iter().next()?;
    match kind.as_str() {
        "Stage" => Some(v.as_u64()?.to_string()),
        "Image" => Some(v.as_str()?.to_string()),
        _ => None,
    }
}

fn config_text(body: &Value) -> Option<String> {
    let (tag, v) = body.as_object()?.iter().next()?;
    let json = |v: &Value| serde_json::to_string(v).ok();
    let pairs = |v: &Value, kw: &str| -> Option<String> {
        let mut out = kw.to_string();
        for p in v.as_array()? {
            let p = p.as_array()?;
            let k = p.first()?.as_str()?;
            match p.get(1) {
                Some(Value::String(val)) => out.push_str(&format!(" {k}={}", quote(val))),
                _ => out.push_str(&format!(" {k}")),
            }
        }
        Some(out)
    };
    Some(match tag.as_str() {
        "Env" => pairs(v, "ENV")?,
        "Label" => pairs(v, "LABEL")?,
        "Arg" => pairs(v, "ARG")?,
        "User" => format!("USER {}", v.as_str()?),
        "Cmd" => format!("CMD {}", json(v)?),
        "Entrypoint" => format!("ENTRYPOINT {}", json(v)?),
        "Shell" => format!("SHELL {}", json(v)?),
        "Volume" => format!("VOLUME {}", json(v)?),
        "Expose" => format!("EXPOSE {}", strings(v)?.join(" ")),
        "StopSignal" => format!("STOPSIGNAL {}", v.as_str()?),
        "Maintainer" => format!("MAINTAINER {}", v.as_str()?),
        "Onbuild" => format!("ONBUILD {}", v.as_str()?),
        "Healthcheck" => {
            let test = strings(v.get("test")?)?;
            match test.split_first() {
                Some((kind, rest)) if kind == "NONE" && rest.is_empty() => "HEALTHCHECK NONE".to_string(),
                Some((kind, rest)) if kind == "CMD-SHELL" => format!("HEALTHCHECK CMD {}", rest.join(" ")),
                Some((kind, rest)) if kind == "CMD" => {
                    format!("HEALTHCHECK CMD {}", json(&Value::from(rest))?)
                }
                _ => format!("HEALTHCHECK {}", json(v)?),
            }
        }
        _ => return None,
    })
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?.iter().map(|s| s.as_str().map(str::to_string)).collect()
}

/// `v` as written in ENV/LABEL: bare when it has no blanks or quotes, JSON-quoted otherwise.
fn quote(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '\\') {
        v.to_string()
    } else {
        serde_json::to_string(v).unwrap_or_else(|_| v.to_string())
    }
}

/// Newlines escaped (heredocs) and very long texts cut, so a message stays one line.
fn one_line(text: &str) -> String {
    let text = text.replace('\r', "\\r").replace('\n', "\\n");
    if text.chars().count() <= MAX_TEXT {
        return text;
    }
    let cut: String = text.chars().take(MAX_TEXT).collect();
    format!("{cut}...")
}

#[cfg(test)]
mod tests {
    use super::*;
    use frontend::{ConfigOp, CopyFrom, CopyOp, Op, RunOp};

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn run(cmd: &str, build_args: &[&str]) -> String {
        let build_args: Vec<String> = build_args.iter().map(|s| s.to_string()).collect();
        let prefix = if build_args.is_empty() {
            String::new()
        } else {
            format!("|{} {} ", build_args.len(), build_args.join(" "))
        };
        serde_json::to_string(&Op::Run(RunOp {
            args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            build_args,
            proxy_env: vec![],
            created_by: format!("RUN {prefix}/bin/sh -c {cmd}"),
            mounts: vec![],
            network: Default::default(),
            security: Default::default(),
        }))
        .unwrap()
    }

    fn copy(sources: &[&str], dest: &str, from: Option<CopyFrom>) -> String {
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let created_by = format!("COPY {} {dest}", sources.join(" "));
        serde_json::to_string(&Op::Copy(CopyOp {
            exclude: vec![],
            parents: false,
            link: false,
            sources,
            heredocs: vec![],
            dest: dest.into(),
            from,
            chown: None,
            chmod: None,
            created_by,
        }))
        .unwrap()
    }

    fn inputs(op: String) -> KeyInputs {
        KeyInputs { parent_key: A.into(), op, files: vec![], build_args: vec![], base: None }
    }

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(p, v)| (p.to_string(), v.to_string())).collect()
    }

    fn store() -> (tempfile::TempDir, ExplainStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ExplainStore::new(dir.path());
        (dir, store)
    }

    /// Remembers `old` and explains `new` against it.
    fn why(old: &KeyInputs, new: &KeyInputs, parent_missed: bool, no_cache: bool) -> String {
        let (_dir, store) = store();
        let id = ExplainStore::identity(Path::new("/ctx"), "Dockerfile", "0", 1);
        store.remember(&id, old).unwrap();
        store.explain(&id, new, parent_missed, no_cache)
    }

    #[test]
    fn never_built_before() {
        let (_dir, store) = store();
        let id = ExplainStore::identity(Path::new("/ctx"), "Dockerfile", "0", 0);
        assert_eq!(store.explain(&id, &inputs(run("make", &[])), false, false), "never built before");
        assert_eq!(store.explain(&id, &inputs(run("make", &[])), true, true), "never built before");
    }

    #[test]
    fn remember_writes_under_cache_explain_and_round_trips() {
        let (dir, store) = store();
        let id = ExplainStore::identity(Path::new("/ctx"), "Dockerfile", "build", 2);
        let mut i = inputs(copy(&["src/"], "/src/", None));
        i.files = files(&[("src/main.c", A), ("src/lib", "symlink:../lib")]);
        i.build_args = vec![("VERSION".into(), "1.0".into())];
        i.base = Some(format!("image busybox:latest {B}"));
        store.remember(&id, &i).unwrap();
        let path = dir.path().join("cache/explain").join(&id);
        let back: KeyInputs = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, i);
        assert_eq!(store.recall(&id), Some(i.clone()));
        // Rewriting replaces the record and leaves no temp files behind.
        i.files.clear();
        store.remember(&id, &i).unwrap();
        assert_eq!(store.recall(&id), Some(i));
        assert_eq!(std::fs::read_dir(dir.path().join("cache/explain")).unwrap().count(), 1);
    }

    #[test]
    fn corrupt_or_odd_records_read_as_never_built() {
        let (dir, store) = store();
        let id = ExplainStore::identity(Path::new("/ctx"), "Dockerfile", "0", 0);
        let explain_dir = dir.path().join("cache/explain");
        std::fs::create_dir_all(&explain_dir).unwrap();
        let new = inputs(run("make", &[]));
        for bad in [&b"{not json"[..], b"", b"{\"parent_key\": 1}", b"\xff\xfe", b"null"] {
            std::fs::write(explain_dir.join(&id), bad).unwrap();
            assert_eq!(store.explain(&id, &new, false, false), "never built before");
        }
        // A directory where the record should be.
        std::fs::remove_file(explain_dir.join(&id)).unwrap();
        std::fs::create_dir(explain_dir.join(&id)).unwrap();
        assert_eq!(store.explain(&id, &new, false, false), "never built before");
        assert!(store.remember(&id, &new).is_err());
        // Identities that are not plain file names are refused, never followed.
        for bad in ["", ".", "..", "../x", "a/b"] {
            assert_eq!(store.explain(bad, &new, false, false), "never built before");
            assert!(store.remember(bad, &new).is_err());
        }
    }

    #[test]
    fn remember_fails_without_panicking_when_the_store_is_unwritable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let store = ExplainStore::new(&file);
        let id = ExplainStore::identity(Path::new("/ctx"), "Dockerfile", "0", 0);
        assert!(store.remember(&id, &inputs(run("make", &[]))).is_err());
        assert_eq!(store.explain(&id, &inputs(run("make", &[])), false, false), "never built before");
    }

    #[test]
    fn identity_is_stable_and_distinguishes_steps() {
        let ctx = tempfile::tempdir().unwrap();
        let id = ExplainStore::identity(ctx.path(), "Dockerfile", "build", 3);
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, ExplainStore::identity(ctx.path(), "Dockerfile", "build", 3));
        // The context is canonicalized: another spelling of the same directory is the same.
        let dotted = ctx.path().join(".").join("sub").join("..");
        std::fs::create_dir(ctx.path().join("sub")).unwrap();
        assert_eq!(id, ExplainStore::identity(&dotted, "Dockerfile", "build", 3));
        let others = [
            ExplainStore::identity(ctx.path(), "Dockerfile", "build", 4),
            ExplainStore::identity(ctx.path(), "Dockerfile", "test", 3),
            ExplainStore::identity(ctx.path(), "Dockerfile.dev", "build", 3),
            ExplainStore::identity(Path::new("/elsewhere"), "Dockerfile", "build", 3),
            // Joined parts never collide by shifting a boundary.
            ExplainStore::identity(ctx.path(), "Dockerfileb", "uild", 3),
            ExplainStore::identity(ctx.path(), "Dockerfile", "build3", 0),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(&id, o, "identity {i}");
        }
    }

    #[test]
    fn parent_missed() {
        let old = inputs(run("make", &[]));
        let mut new = old.clone();
        new.parent_key = B.into();
        assert_eq!(why(&old, &new, true, false), "the previous step missed the cache");
        // The parent hit, but another record than last time.
        assert_eq!(why(&old, &new, false, false), "the previous step's result differs from the last build");
        // An own reason comes first.
        new.op = run("make all", &[]);
        assert_eq!(
            why(&old, &new, true, false),
            "instruction changed: RUN make -> RUN make all (and the previous step missed)"
        );
    }

    #[test]
    fn base_image_changed() {
        let mut old = inputs(run("make", &[]));
        old.base = Some(format!("image busybox:latest {A}"));
        let mut new = old.clone();
        new.base = Some(format!("image busybox:latest {B}"));
        new.parent_key = C.into();
        assert_eq!(
            why(&old, &new, false, false),
            "base image busybox:latest changed: sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb"
        );
        new.base = Some(format!("image alpine:3.20 {B}"));
        assert_eq!(
            why(&old, &new, false, false),
            "base image changed: busybox:latest (sha256:aaaaaaaaaaaa) -> alpine:3.20 (sha256:bbbbbbbbbbbb)"
        );
        new.base = Some("scratch".into());
        assert_eq!(
            why(&old, &new, false, false),
            "base changed: image busybox:latest (sha256:aaaaaaaaaaaa) -> scratch"
        );
        old.base = Some("stage 0".into());
        new.base = Some("stage 1".into());
        assert_eq!(why(&old, &new, false, false), "base changed: stage 0 -> stage 1");
    }

    #[test]
    fn one_file_changed_added_removed() {
        let mut old = inputs(copy(&["src/"], "/app/", None));
        old.files = files(&[("src/main.c", A), ("src/util.c", B)]);
        let mut new = old.clone();
        new.files = files(&[("src/main.c", C), ("src/util.c", B)]);
        assert_eq!(why(&old, &new, false, false), "file changed: src/main.c (content)");
        new.files = files(&[("src/main.c", A), ("src/new.c", C), ("src/util.c", B)]);
        assert_eq!(why(&old, &new, false, false), "file added: src/new.c");
        new.files = files(&[("src/main.c", A)]);
        assert_eq!(why(&old, &new, false, false), "file removed: src/util.c");
        new.files = files(&[("src/main.c", "symlink:other.c"), ("src/util.c", B)]);
        assert_eq!(why(&old, &new, false, false), "file changed: src/main.c (file -> symlink)");
    }

    #[test]
    fn file_kinds() {
        let mut old = inputs(copy(&["."], "/app/", None));
        old.files = files(&[("bin", "dir:755"), ("lib", "symlink:usr/lib")]);
        let mut new = old.clone();
        new.files = files(&[("bin", "dir:700"), ("lib", "symlink:usr/lib64")]);
        assert_eq!(
            why(&old, &new, false, false),
            "files changed: bin (mode: 755 -> 700), lib (symlink target: usr/lib -> usr/lib64)"
        );
        new.files = files(&[("bin", A), ("lib", "symlink:usr/lib")]);
        assert_eq!(why(&old, &new, false, false), "file changed: bin (directory -> file)");
    }

    #[test]
    fn file_diff_mixed_and_cut() {
        let mut old = inputs(copy(&["."], "/app/", None));
        old.files = files(&[("a.c", A), ("b.c", A), ("gone.h", A), ("keep.c", B)]);
        let mut new = old.clone();
        new.files = files(&[("a.c", B), ("keep.c", B), ("new.h", C), ("b.c", A)]);
        assert_eq!(
            why(&old, &new, false, false),
            "file changed: a.c (content); file added: new.h; file removed: gone.h"
        );

        // 4 changed, 2 added, 2 removed: three listed, then the rest counted.
        old.files = files(&[("1", A), ("2", A), ("3", A), ("4", A), ("r1", A), ("r2", A)]);
        new.files = files(&[("1", B), ("2", B), ("3", B), ("4", B), ("n1", A), ("n2", A)]);
        assert_eq!(
            why(&old, &new, false, false),
            "files changed: 1 (content), 2 (content), 3 (content) and 5 more"
        );
        // The cut spans groups.
        new.files = files(&[("1", B), ("2", A), ("3", A), ("4", A), ("n1", A), ("n2", A), ("n3", A)]);
        assert_eq!(
            why(&old, &new, false, false),
            "file changed: 1 (content); files added: n1, n2 and 3 more"
        );
    }

    #[test]
    fn build_args() {
        let mut old = inputs(run("make", &["VERSION=1.0"]));
        old.build_args = vec![("VERSION".into(), "1.0".into())];
        let mut new = old.clone();
        new.op = run("make", &["VERSION=2.0"]);
        new.build_args = vec![("VERSION".into(), "2.0".into())];
        // The op changed too (RUN keeps its build args), but the build arg says why.
        assert_eq!(why(&old, &new, false, false), "build arg VERSION changed: 1.0 -> 2.0");
        new.op = run("make", &[]);
        new.build_args = vec![];
        assert_eq!(why(&old, &new, false, false), "build arg VERSION unset");
        assert_eq!(why(&new, &old, false, false), "build arg VERSION set: 1.0");

        old.build_args = vec![];
        new.op = old.op.clone();
        new.build_args = ["A", "B", "C", "D", "E"].iter().map(|k| (k.to_string(), "x".to_string())).collect();
        assert_eq!(
            why(&old, &new, false, false),
            "build arg A set: x, build arg B set: x, build arg C set: x and 2 more"
        );
    }

    #[test]
    fn instruction_changed() {
        let old = inputs(run("echo a", &[]));
        let mut new = old.clone();
        new.op = run("echo b", &[]);
        assert_eq!(why(&old, &new, false, false), "instruction changed: RUN echo a -> RUN echo b");

        new.op = serde_json::to_string(&Op::Run(RunOp {
            args: vec!["echo".into(), "b".into()],
            build_args: vec![],
            proxy_env: vec![],
            created_by: "RUN echo b".into(),
            mounts: vec![],
            network: Default::default(),
            security: Default::default(),
        }))
        .unwrap();
        assert_eq!(why(&old, &new, false, false), r#"instruction changed: RUN echo a -> RUN ["echo","b"]"#);

        let old = inputs(copy(&["a"], "/x", Some(CopyFrom::Stage(0))));
        let new = inputs(copy(&["a"], "/x", Some(CopyFrom::Stage(1))));
        assert_eq!(
            why(&old, &new, false, false),
            "instruction changed: COPY --from=0 a /x -> COPY --from=1 a /x"
        );

        let env = |v: &str| {
            serde_json::to_string(&Op::Config(ConfigOp::Env(vec![("PATH".into(), v.into())]))).unwrap()
        };
        let old = inputs(env("/bin"));
        let new = inputs(env("/usr/bin:/bin"));
        assert_eq!(
            why(&old, &new, false, false),
            "instruction changed: ENV PATH=/bin -> ENV PATH=/usr/bin:/bin"
        );

        let old = inputs(serde_json::to_string(&Op::Workdir("/src".into())).unwrap());
        let new = inputs(serde_json::to_string(&Op::Config(ConfigOp::Cmd(vec!["sh".into()]))).unwrap());
        assert_eq!(why(&old, &new, false, false), r#"instruction changed: WORKDIR /src -> CMD ["sh"]"#);

        // Same text, different op (e.g. a heredoc's content): no text to show.
        let mut old = inputs(run("cat", &[]));
        let mut new = old.clone();
        old.op = old.op.replace("\"created_by\"", "\"x\":1,\"created_by\"");
        assert_eq!(why(&old, &new, false, false), "the instruction changed");
        // Unknown JSON.
        old.op = "{\"Frobnicate\":{}}".into();
        new.op = "not json".into();
        assert_eq!(why(&old, &new, false, false), "the instruction changed");
    }

    #[test]
    fn instruction_text_stays_on_one_line() {
        let old = inputs(run("cat <<EOF\na\nEOF", &[]));
        let new = inputs(run(&"x".repeat(500), &[]));
        let line = why(&old, &new, false, false);
        assert!(!line.contains('\n'));
        assert!(line.starts_with("instruction changed: RUN cat <<EOF\\na\\nEOF -> RUN xxx"));
        assert!(line.ends_with("x..."));
        assert!(line.len() < 300);
    }

    #[test]
    fn several_own_reasons_in_one_line() {
        let mut old = inputs(copy(&["."], "/app/", None));
        old.files = files(&[("a", A)]);
        old.build_args = vec![("V".into(), "1".into())];
        let mut new = old.clone();
        new.files = files(&[("a", B)]);
        new.build_args = vec![("V".into(), "2".into())];
        assert_eq!(why(&old, &new, false, false), "file changed: a (content); build arg V changed: 1 -> 2");
    }

    #[test]
    fn same_inputs_pruned_or_no_cache() {
        let mut old = inputs(copy(&["."], "/app/", None));
        old.files = files(&[("a", A)]);
        assert_eq!(why(&old, &old, false, false), "the cache was pruned (same inputs as the last build)");
        assert_eq!(why(&old, &old, false, true), "--no-cache was given");
        // With --no-cache every step misses, its parent included.
        let mut new = old.clone();
        new.parent_key = B.into();
        assert_eq!(why(&old, &new, true, true), "--no-cache was given");
        // ...but a real change is still told.
        new.files = files(&[("a", C)]);
        assert_eq!(why(&old, &new, true, true), "file changed: a (content) (and the previous step missed)");
    }

    #[test]
    fn short_digests() {
        assert_eq!(short(A), "sha256:aaaaaaaaaaaa");
        assert_eq!(short("sha256:abc"), "sha256:abc");
        assert_eq!(short("latest"), "latest");
    }
}
