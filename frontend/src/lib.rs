//! Dockerfile frontend: parses a Dockerfile with BuildKit's syntax and lowers each stage into
//! the steps the solver runs.
//!
//! It never touches the filesystem or the kernel: it gets the Dockerfile's text, the build
//! arguments, and a resolver that answers questions about base images (their ENV and WORKDIR,
//! which ENV/WORKDIR expansion needs), and returns a [`BuildDefinition`].

#![forbid(unsafe_code)]

mod error;
mod expand;
pub mod lint;
mod lower;
pub mod parser;
mod runmount;

pub use error::{Error, Location, ResolveError};
pub use expand::{ExpandError, env_get, expand_word, expand_word_with_escape, expand_words};
pub use hostutil::platform::Platform;
pub use lower::{BaseConfig, DEFAULT_SHELL, ImageResolver, LowerOptions, PROXY_ARGS, context_key, lower};

use serde::{Deserialize, Serialize};

/// A parsed and lowered Dockerfile: its stages in file order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildDefinition {
    pub stages: Vec<Stage>,
    /// Index into `stages` of the stage to build (`--target`, or the last one).
    pub target: usize,
    /// Warnings to show the user (deprecated instructions, unused build args...).
    pub warnings: Vec<String>,
    /// Plain notes to show once (that `# syntax=docker/dockerfile:...` is read by rbuild's
    /// own frontend).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The build checks' warnings (`lint`), every stage's; a build reports those of the
    /// stages it needs ([`BuildDefinition::lint_for_build`]).
    #[serde(default)]
    pub lint: Vec<lint::LintWarning>,
    /// The build checks' configuration (`# check=`, `BUILDKIT_DOCKERFILE_CHECK`): with
    /// `error`, a warning fails the build.
    #[serde(default)]
    pub check: lint::CheckConfig,
}

/// One `FROM` and the instructions after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub index: usize,
    /// The name given with `AS`, lowercased as BuildKit does.
    pub name: Option<String>,
    pub base: Base,
    /// Where the `FROM` is, and its text for progress output.
    pub location: Location,
    pub text: String,
    pub steps: Vec<Step>,
    /// The platform the stage is built for: `FROM --platform`, else the build's target
    /// platform ([`LowerOptions::platform`]). Its base image is this platform's, and its RUN
    /// steps run as this platform's programs.
    pub platform: hostutil::platform::Platform,
}

impl Stage {
    /// How progress output names the stage: its name, or `stage-N`.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("stage-{}", self.index))
    }

    /// The stages this one reads: its base (`FROM <stage>`), then what its steps read
    /// ([`Step::stage_sources`]), in Dockerfile order (a stage may appear more than once).
    pub fn dependencies(&self) -> Vec<usize> {
        let mut deps = Vec::new();
        if let Base::Stage(i) = self.base {
            deps.push(i);
        }
        deps.extend(self.steps.iter().flat_map(Step::stage_sources));
        deps
    }
}

impl Step {
    /// The stages this step reads: `COPY --from=<stage>`, and `RUN --mount=...,from=<stage>`
    /// (bind and cache mounts).
    pub fn stage_sources(&self) -> Vec<usize> {
        match &self.op {
            Op::Copy(CopyOp { from: Some(CopyFrom::Stage(i)), .. }) => vec![*i],
            Op::Run(run) => run.mounts.iter().filter_map(RunMount::from_stage).collect(),
            _ => Vec::new(),
        }
    }
}

impl BuildDefinition {
    /// CopyIgnoredFile, the one build check that needs the context: every local source of a
    /// COPY or ADD from the build context that `.dockerignore` excludes. `excluded` answers for
    /// a cleaned source path (`.` for the context root itself). The caller runs this only when
    /// the ignore file has patterns and no `!` exceptions, as BuildKit's `validateCopySourcePath`
    /// does (with exceptions, a file of an excluded directory may still be in the context).
    pub fn lint_copy_ignored(&mut self, excluded: &dyn Fn(&str) -> bool) {
        let rule = &lint::COPY_IGNORED_FILE;
        if !self.check.enabled(rule) {
            return;
        }
        for stage in &self.stages {
            for step in &stage.steps {
                let (cmd, sources) = match &step.op {
                    Op::Copy(c) if c.from.is_none() => ("Copy", &c.sources),
                    Op::Add(a) => ("Add", &a.sources),
                    _ => continue,
                };
                if !self.check.enabled_at(rule, step.location.line) {
                    continue;
                }
                for src in sources {
                    let clean = hostutil::gopath::clean(src);
                    let path = if clean == "/" { "." } else { clean.as_str() };
                    if excluded(path) {
                        self.lint.push(lint::LintWarning {
                            rule: rule.name.into(),
                            description: rule.description.into(),
                            url: rule.url(),
                            detail: format!(
                                "Attempting to {cmd} file {} that is excluded by .dockerignore",
                                parser::go_quote(&clean)
                            ),
                            line: step.location.line,
                            stage: Some(stage.index),
                        });
                    }
                }
            }
        }
    }

    /// The build checks' warnings a build of the target reports: BuildKit runs the checks made
    /// while dispatching a stage only for the stages the target needs (`--check` reports all).
    pub fn lint_for_build(&self) -> Vec<&lint::LintWarning> {
        let needed = self.needed_stages();
        self.lint.iter().filter(|w| w.stage.is_none_or(|s| needed.get(s).copied().unwrap_or(false))).collect()
    }

    /// Which stages a build of the target runs: the target and, transitively, every stage it
    /// depends on ([`Stage::dependencies`]); by stage index. The solver builds exactly these,
    /// and `debug graph` shows the others as skipped.
    pub fn needed_stages(&self) -> Vec<bool> {
        let mut need = vec![false; self.stages.len()];
        let mut todo = vec![self.target];
        while let Some(i) = todo.pop() {
            if let Some(slot) = need.get_mut(i)
                && !*slot
            {
                *slot = true;
                todo.extend(self.stages[i].dependencies());
            }
        }
        need
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Base {
    Scratch,
    /// An image reference, as written after expansion (the solver resolves it in the store).
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// One instruction after lowering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub location: Location,
    /// The instruction as written, on one line (continuations joined), for progress output.
    pub text: String,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    Run(RunOp),
    Copy(CopyOp),
    Add(AddOp),
    /// `WORKDIR`: sets the config's working directory and creates the directory (owned by the
    /// USER in effect, as BuildKit does) if the image lacks it. The path is absolute: relative
    /// WORKDIRs are already resolved against the previous one.
    Workdir(String),
    /// A change to the image config only: adds history, no layer.
    Config(ConfigOp),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOp {
    /// The argv to execute: exec form as written, shell form wrapped in the stage's SHELL
    /// (`/bin/sh -c` by default).
    pub args: Vec<String>,
    /// Build args in scope (`ARG`), as `NAME=value`: they are in the RUN's environment but not
    /// in the image's config. Precisely: the entries of the RUN's environment that the image
    /// config's ENV lacks or has with another value (an `ARG X=1` after `ENV X=2` gives `X=1`
    /// here: BuildKit's RUN sees 1). They take precedence over the config's ENV.
    pub build_args: Vec<String>,
    /// Proxy build args (`HTTP_PROXY`... given with `--build-arg`, undeclared, each in both
    /// cases) as `NAME=value`: in the step's environment, but neither in the image nor in the
    /// step's cache key, as BuildKit's `ProxyEnv`: a proxy changes how a step reaches the
    /// network, not what it builds. A declared `ARG HTTP_PROXY` is an ordinary build arg.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_env: Vec<String>,
    /// How history records the step, e.g. `RUN /bin/sh -c echo hi`, or with build args in scope
    /// `RUN |1 VERSION=1.0 /bin/sh -c echo hi` (BuildKit's text without ` # buildkit`).
    pub created_by: String,
    /// `--mount` flags, in the order written.
    pub mounts: Vec<RunMount>,
    /// `--network`.
    pub network: RunNetwork,
    /// `--security`.
    pub security: RunSecurity,
}

/// One `RUN --mount=...`, with BuildKit's defaults filled in. Every `target` is absolute and
/// clean: a relative one is resolved against the WORKDIR in effect (an empty one is the
/// WORKDIR), except for secrets, whose relative targets BuildKit leaves to the runtime, which
/// resolves them against the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RunMount {
    /// `type=bind` (the default type): `source` (relative, cleaned; empty means the root) of
    /// the build context, or of a stage or image with `from`. Read-only unless `rw`; with `rw`
    /// writes are discarded after the step.
    Bind { target: String, from: Option<CopyFrom>, source: String, readwrite: bool },
    /// `type=cache`: a directory kept across builds under `id` (default: the target as written,
    /// cleaned, before it is resolved against the WORKDIR: `target=cache` has id `cache`).
    /// `from`/`source` seed a new cache directory. `mode`/`uid`/`gid` apply when it is created
    /// (BuildKit applies them only when `source` is empty).
    Cache {
        target: String,
        id: String,
        sharing: CacheSharing,
        readonly: bool,
        from: Option<CopyFrom>,
        source: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// `type=tmpfs`, `size` in bytes.
    Tmpfs { target: String, size: Option<u64> },
    /// `type=secret`: the `--secret` of that `id` (`id=` or `source=`; default: the target's
    /// file name), as a file at `target` (default `/run/secrets/<id>`; none when only `env` is
    /// given) and/or in the environment variable `env`. A missing secret is an error only when
    /// `required`.
    Secret {
        id: String,
        target: Option<String>,
        env: Option<String>,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// `type=ssh`: a socket to the `--ssh` agent of that `id` (default `default`) at `target`
    /// (default `/run/buildkit/ssh_agent.N`, N counting the RUN's ssh mounts from 0, as
    /// BuildKit), owned by `uid`:`gid` with `mode` (default 0600). `SSH_AUTH_SOCK` names the
    /// first one unless the environment has it. A missing agent is an error only when
    /// `required`.
    Ssh { id: String, target: Option<String>, required: bool, mode: u32, uid: u32, gid: u32 },
    /// A file written by the Dockerfile itself, read-only at `target`, owned by root: the
    /// script of a RUN whose only heredoc starts with `#!` (BuildKit mounts it at
    /// `/dev/pipes/<NAME>` with mode 0755 and runs that path with the shell). Its content is in
    /// the op, so in the step's key.
    File { target: String, content: String, mode: u32 },
}

impl RunMount {
    /// The stage this mount reads from, if any (a dependency of the stage, like `COPY --from`).
    pub fn from_stage(&self) -> Option<usize> {
        match self {
            RunMount::Bind { from: Some(CopyFrom::Stage(i)), .. }
            | RunMount::Cache { from: Some(CopyFrom::Stage(i)), .. } => Some(*i),
            _ => None,
        }
    }
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CacheSharing {
    /// Concurrent builds use the same directory.
    #[default]
    Shared,
    /// A concurrent user gets its own directory.
    Private,
    /// A concurrent user waits until the directory is free.
    Locked,
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RunNetwork {
    /// No flag, or `default`: the build's `--network` (its build network unless it says
    /// otherwise).
    #[default]
    Default,
    None,
    /// The host's network; needs `--allow network.host`.
    Host,
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RunSecurity {
    /// `sandbox` (the default): the normal sandbox.
    #[default]
    Sandbox,
    /// All capabilities, no seccomp, no masked paths; needs `--allow security.insecure`.
    Insecure,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyOp {
    /// Source paths or globs, relative to the context (or to the `--from` stage's root).
    pub sources: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dest`): files made from the Dockerfile's text. With one
    /// heredoc and a `dest` that is not a directory, `dest` is the file; otherwise each becomes
    /// `dest/<name>`.
    pub heredocs: Vec<InlineFile>,
    /// Destination after expansion; relative paths are relative to the WORKDIR in effect.
    pub dest: String,
    pub from: Option<CopyFrom>,
    /// `--chown=user[:group]` after expansion, names or numbers.
    pub chown: Option<String>,
    /// `--chmod=` as an octal mode.
    pub chmod: Option<u32>,
    /// `--exclude=PATTERN`s after expansion, in .dockerignore syntax: matched against the
    /// paths below each directory source (relative to it), and a file source's name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// `--parents`: each match keeps its directories (from the context root, or from a `/./`
    /// pivot in its source) below `dest`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parents: bool,
    /// `--link`: the files form a layer of their own, copied onto nothing, whose cache key does
    /// not depend on the steps before (BuildKit's merge of a scratch copy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
    pub created_by: String,
}

/// A file whose content is written in the Dockerfile (a heredoc source of COPY or ADD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineFile {
    /// The heredoc's delimiter word, e.g. `EOF`.
    pub name: String,
    /// The content, already expanded when the delimiter was unquoted.
    pub content: String,
}

/// `ADD`: like COPY from the context, but local tar archives (plain, gzip, bzip2, xz) are
/// extracted into `dest`, and http(s) URLs are downloaded (never extracted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddOp {
    /// Context paths or globs.
    pub sources: Vec<String>,
    /// `http://` or `https://` URLs, downloaded as files named after the URL's last path
    /// segment (or `dest` itself when it does not end in `/`).
    pub urls: Vec<String>,
    pub heredocs: Vec<InlineFile>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<u32>,
    /// `--checksum`: `sha256:<hex>` the downloaded content must hash to (a URL), or the
    /// commit id a git source's ref must resolve to.
    pub checksum: Option<String>,
    /// Git repositories (`https://host/repo.git#REF:DIR`, `git@...`, `git://`, `ssh://`), their
    /// tree copied into `dest` as a directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub git: Vec<String>,
    /// `--keep-git-dir`: the repository's `.git` is copied too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_git_dir: bool,
    /// `--exclude=PATTERN`s, as COPY's: they leave entries out of the local sources that are
    /// copied (not of an archive that is extracted) and of git trees.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// `--link`, as COPY's: a layer of its own whose key does not depend on the steps before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
    /// `--unpack[=BOOL]`: `Some(false)` copies local archives as they are, `Some(true)`
    /// extracts downloaded archives too (BuildKit: local archives are extracted and URLs are
    /// not, unless told).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpack: Option<bool>,
    pub created_by: String,
}

/// `HEALTHCHECK` as Docker stores it in the image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// Durations in nanoseconds; `None` when not given (Docker then omits the field).
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
    pub start_period: Option<u64>,
    pub start_interval: Option<u64>,
    pub retries: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CopyFrom {
    Stage(usize),
    Image(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConfigOp {
    /// `ENV` pairs after expansion, in order.
    Env(Vec<(String, String)>),
    User(String),
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
    Label(Vec<(String, String)>),
    /// Ports as `80/tcp`.
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    Shell(Vec<String>),
    /// `ARG` only changes what later steps see; it is kept so history matches Docker's. Values
    /// are the resolved ones (build arg, expanded default, or global value).
    Arg(Vec<(String, Option<String>)>),
    /// `MAINTAINER name` (deprecated): sets the image's author.
    Maintainer(String),
    Healthcheck(Healthcheck),
    /// `ONBUILD <instruction>`: the trigger's text as written after ONBUILD, appended to the
    /// config's `OnBuild`. When an image (or stage) with triggers is used as a base, the
    /// frontend lowers its triggers as the first steps of the new stage, and the new image's
    /// `OnBuild` starts empty.
    Onbuild(String),
}

/// Parses `text` (the Dockerfile called `file`, for error messages) and lowers it.
pub fn build_definition(
    file: &str,
    text: &str,
    options: &LowerOptions,
    resolver: &dyn ImageResolver,
) -> Result<BuildDefinition, Error> {
    lower::lower(file, text, options, resolver)
}

/// [`build_definition`] for a Dockerfile read as bytes: non-UTF-8 input is a located error.
pub fn build_definition_bytes(
    file: &str,
    bytes: &[u8],
    options: &LowerOptions,
    resolver: &dyn ImageResolver,
) -> Result<BuildDefinition, Error> {
    build_definition(file, decode(file, bytes)?, options, resolver)
}

/// The Dockerfile's text, or `file:LINE:COL: the Dockerfile is not valid UTF-8` at the first
/// invalid byte.
pub fn decode<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, Error> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        // The valid prefix is UTF-8, so this cannot fail.
        let text = std::str::from_utf8(valid).unwrap_or_default();
        Error::at(Location::at(file, text, text.len()), "the Dockerfile is not valid UTF-8")
    })
}

/// Parses `text` (the Dockerfile called `file`) into BuildKit's AST, without lowering.
pub fn parse(file: &str, text: &str) -> Result<parser::Dockerfile, Error> {
    lower::parse_file(file, text)
}

/// Parses `text` and prints its AST as BuildKit's `Node.Dump()` does, one `(instruction ...)`
/// line each (the format of BuildKit's parser test files). Unknown instructions are errors.
pub fn dump_ast(text: &str) -> Result<String, Error> {
    let dockerfile = parser::parse_checked(text).map_err(|e| {
        Error::at(Location { file: "Dockerfile".into(), line: e.pos.line, column: e.pos.column }, e.message)
            .with_source(text)
    })?;
    Ok(parser::dump(&dockerfile.instructions))
}
