//! Lowering: walks the parsed Dockerfile stage by stage as BuildKit's `dockerfile2llb` does,
//! tracking the environment (ENV, ARG, WORKDIR, SHELL) so that each instruction is expanded as
//! Docker would, and produces the steps the solver runs.

mod config;
mod files;
mod flags;
mod lint;
mod run;

use config::*;
use files::*;
use flags::*;
use run::*;
use std::collections::{BTreeMap, BTreeSet};

use hostutil::gopath;
use hostutil::platform::Platform;

use crate::expand::{ExpandError, env_get, expand_word_with_escape, expand_words};

use crate::parser::{self, Instruction, Pos, chomp_heredoc_content, go_quote, heredoc_word};

use crate::runmount::{lower_mount, parse_mount, parse_network, parse_security, precheck_mount};

use crate::{
    AddOp, Base, BuildDefinition, ConfigOp, CopyFrom, CopyOp, Error, Healthcheck, InlineFile, Location, Op,
    ResolveError, RunMount, RunNetwork, RunOp, RunSecurity, Stage, Step,
};

/// What the frontend needs to know about a base image.
#[derive(Debug, Clone, Default)]
pub struct BaseConfig {
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// The image's `OnBuild` triggers, run as the first steps of a stage built on it.
    pub on_build: Vec<String>,
    /// The platform the image's config says it is, when it says (InvalidBaseImagePlatform).
    pub platform: Option<Platform>,
}

/// Answers questions about base images (the solver looks them up in the store).
pub trait ImageResolver {
    /// The config of image `reference`, or why it cannot be had.
    fn resolve(&self, reference: &str) -> Result<BaseConfig, ResolveError>;

    /// The config of image `reference` for `platform` (a multi-platform image's entry for it).
    /// A resolver that knows no platforms answers [`ImageResolver::resolve`].
    fn resolve_for(&self, reference: &str, platform: &Platform) -> Result<BaseConfig, ResolveError> {
        let _ = platform;
        self.resolve(reference)
    }
}

#[derive(Debug, Clone, Default)]
pub struct LowerOptions {
    /// `--build-arg NAME=value` pairs.
    pub build_args: Vec<(String, String)>,
    /// `--target`: the stage to build; the last stage when `None`.
    pub target: Option<String>,
    /// `--build-context NAME=...`, each as the image reference it stands for (the CLI turns a
    /// directory or an OCI layout into an image first), keyed by [`context_key`] of NAME. As in
    /// BuildKit, a context named like a stage replaces that stage (its instructions are not
    /// lowered); one named like an image replaces that image in `FROM`, `COPY --from` and
    /// `RUN --mount from=`; a stage name still wins over a context in those.
    pub named_contexts: BTreeMap<String, String>,
    /// `--platform`: the platform to build for (`TARGETPLATFORM`, and every stage without
    /// `FROM --platform`); the host's when `None`.
    pub platform: Option<Platform>,
}

/// How `--build-context` names are matched, as BuildKit's `NamedContext`: lower case, and an
/// image name in its short form without `:latest` (`docker.io/library/alpine:latest` and
/// `alpine` are the same name).
pub fn context_key(name: &str) -> String {
    let name = name.to_lowercase();
    let short = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("index.docker.io/library/"))
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(&name);
    short.strip_suffix(":latest").unwrap_or(short).to_string()
}

/// The shell RUN, CMD and ENTRYPOINT use in shell form when no SHELL instruction is in effect.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Build args that need no `ARG` and are never reported as unused; BuildKit hands them to RUN
/// steps (in both cases) and keeps them out of history.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The state BuildKit keeps while dispatching a stage.
#[derive(Debug, Clone)]
struct StageState {
    /// The environment of the build state: image ENV plus ARG values. Used to expand words and
    /// as the environment of RUN steps.
    env: Vec<(String, String)>,
    /// The ENV of the image config.
    config_env: Vec<(String, String)>,
    workdir: String,
    shell: Vec<String>,
    /// ARGs declared in scope, with their values (BuildKit's `buildArgs`, shown in RUN history).
    args: Vec<(String, Option<String>)>,
    /// ONBUILD triggers recorded in this stage (the image config's `OnBuild`).
    on_build: Vec<String>,
}

impl StageState {
    fn new(env: Vec<(String, String)>, workdir: String) -> Self {
        StageState {
            config_env: env.clone(),
            env,
            workdir,
            shell: DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
            args: Vec::new(),
            on_build: Vec::new(),
        }
    }
}

fn set_env(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_owned(),
        None => env.push((key.to_owned(), value.to_owned())),
    }
}

/// `ARG =x`, in BuildKit's words.
#[derive(Debug, thiserror::Error)]
#[error("ARG names can not be blank")]
struct BlankArgName;

/// `ARG a b=c`: names with optional defaults (defaults keep quotes for expansion).
fn parse_arg_pairs(words: &[String]) -> Result<Vec<(String, Option<String>)>, BlankArgName> {
    let mut pairs = Vec::new();
    for word in words.iter().cloned() {
        let pair = match word.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (word, None),
        };
        if pair.0.is_empty() {
            return Err(BlankArgName);
        }
        pairs.push(pair);
    }
    Ok(pairs)
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

struct Ctx<'a> {
    file: &'a str,
    escape: char,
    build_args: Vec<(String, String)>,
    named_contexts: &'a BTreeMap<String, String>,
    warnings: Vec<String>,
}

impl Ctx<'_> {
    fn loc(&self, pos: Pos) -> Location {
        Location { file: self.file.to_owned(), line: pos.line.max(1), column: pos.column.max(1) }
    }

    fn err(&self, pos: Pos, message: impl std::fmt::Display) -> Error {
        Error::at(self.loc(pos), message.to_string())
    }

    fn build_arg(&self, name: &str) -> Option<&str> {
        env_get(&self.build_args, name)
    }

    /// The image a `--build-context` named `name` stands for.
    fn named_context(&self, name: &str) -> Option<&str> {
        self.named_contexts.get(&context_key(name)).map(String::as_str)
    }

    /// Expands one word as BuildKit's `ProcessWord`, an error pointing at `pos`.
    fn expand(&self, word: &str, env: &[(String, String)], pos: Pos) -> Result<String, Error> {
        expand_word_with_escape(word, env, self.escape)
            .map_err(|e| self.err(pos, format!("failed to process \"{word}\": {e}")))
    }

    fn expand_words(&self, word: &str, env: &[(String, String)], pos: Pos) -> Result<Vec<String>, Error> {
        expand_words(word, env, self.escape)
            .map_err(|e| self.err(pos, format!("failed to process \"{word}\": {e}")))
    }
}

fn ins_pos(ins: &Instruction) -> Pos {
    Pos { line: ins.start_line, column: ins.column }
}

struct StageInfo {
    name: Option<String>,
    final_state: StageState,
}

/// Parses the Dockerfile with our parser, errors located in `file`.
pub(crate) fn parse_file(file: &str, text: &str) -> Result<parser::Dockerfile, Error> {
    parser::parse(text).map_err(|e| {
        Error::at(
            Location { file: file.into(), line: e.pos.line.max(1), column: e.pos.column.max(1) },
            e.message,
        )
        .with_source(text)
    })
}

pub fn lower(
    file: &str,
    text: &str,
    options: &LowerOptions,
    resolver: &dyn ImageResolver,
) -> Result<BuildDefinition, Error> {
    lower_inner(file, text, options, resolver).map_err(|e| e.with_source(text))
}

/// `# syntax=`: BuildKit's Dockerfile frontend images (`docker/dockerfile:1`, `:1.7-labs`,
/// `docker/dockerfile-upstream:...`, with or without `docker.io/` and a digest) name the syntax
/// rbuild's own frontend reads, which says so once; any other frontend image is an error, as
/// rbuild runs no frontend images.
fn syntax_notes(file: &str, dockerfile: &parser::Dockerfile) -> Result<Vec<String>, Error> {
    let Some(d) = dockerfile.directives.iter().find(|d| d.name == "syntax") else { return Ok(Vec::new()) };
    let image = d.value.trim();
    let name = image.split('@').next().unwrap_or(image);
    let name = name.strip_prefix("docker.io/").unwrap_or(name);
    let repo = name.split(':').next().unwrap_or(name);
    if matches!(repo, "docker/dockerfile" | "docker/dockerfile-upstream") {
        return Ok(vec![format!(
            "# syntax={image}: read by rbuild's own Dockerfile frontend (no frontend image is pulled)"
        )]);
    }
    Err(Error::at(
        Location { file: file.into(), line: d.line, column: 1 },
        format!(
            "# syntax={image}: rbuild reads Dockerfiles with its own frontend and cannot run the frontend image {image}"
        ),
    ))
}

fn lower_inner(
    file: &str,
    text: &str,
    options: &LowerOptions,
    resolver: &dyn ImageResolver,
) -> Result<BuildDefinition, Error> {
    let start = Location { file: file.into(), line: 1, column: 1 };
    if text.strip_prefix('\u{feff}').unwrap_or(text).is_empty() {
        return Err(Error::at(start, "the Dockerfile cannot be empty"));
    }
    let dockerfile = parse_file(file, text)?;
    let notes = syntax_notes(file, &dockerfile)?;
    // `--build-arg BUILDKIT_DOCKERFILE_CHECK` replaces the `# check=` directive, as BuildKit's;
    // of the directive, only the value's first word counts.
    let check = match env_get(&options.build_args, "BUILDKIT_DOCKERFILE_CHECK") {
        Some(v) => v.to_string(),
        None => dockerfile
            .directive("check")
            .map(|v| v.split(' ').next().unwrap_or("").to_string())
            .unwrap_or_default(),
    };
    let mut config = crate::lint::CheckConfig::parse(&check)
        .map_err(|e| Error::at(start.clone(), format!("failed to parse check options: {e}")))?;
    let file_config = config.clone();
    for ins in dockerfile.instructions.iter().filter(|i| !i.comments.is_empty()) {
        let merged = file_config.merged_with_comments(&ins.comments);
        if merged != file_config {
            config.by_line.insert(ins.start_line, merged);
        }
    }
    let mut linter = crate::lint::Linter { config, warnings: Vec::new() };
    let escape = dockerfile.escape;
    let mut ctx = Ctx {
        file,
        escape,
        build_args: options.build_args.clone(),
        named_contexts: &options.named_contexts,
        warnings: Vec::new(),
    };

    // BuildKit's `instructions.Parse`: every instruction checked, in order, before anything runs.
    let mut seen_from = false;
    for ins in &dockerfile.instructions {
        check_instruction(&ctx, ins)?;
        if ins.name == "from" {
            seen_from = true;
        } else if !seen_from && ins.name != "arg" {
            return Err(ctx.err(ins_pos(ins), "no build stage in current context"));
        }
    }
    if !seen_from {
        return Err(Error::at(start, "dockerfile contains no stages to build"));
    }
    let first_from = dockerfile.instructions.iter().position(|i| i.name == "from").unwrap_or(0);
    let (global_args, rest) = dockerfile.instructions.split_at(first_from);
    // Stages: each FROM and the instructions up to the next.
    let mut stage_list: Vec<(&Instruction, Vec<&Instruction>)> = Vec::new();
    for ins in rest {
        if ins.name == "from" {
            stage_list.push((ins, Vec::new()));
        } else if let Some(last) = stage_list.last_mut() {
            last.1.push(ins);
        }
    }

    // Stage names first: `--target` and TARGETSTAGE need them. A name given twice is only a
    // warning (DuplicateStageName), as in BuildKit, whose name table then holds the later stage:
    // `--target` and `COPY --from` find the last stage of that name, FROM the last one before it.
    let mut names: Vec<Option<String>> = Vec::new();
    for (from, _) in &stage_list {
        let name = from.args.get(2).map(|n| n.to_lowercase());
        if let (Some(name), Some(raw)) = (&name, from.args.get(2))
            && !valid_stage_name(name)
        {
            return Err(ctx.err(
                from.arg_pos(2),
                format!("invalid name for build stage: \"{raw}\", name can't start with a number or contain symbols"),
            ));
        }
        names.push(name);
    }
    let target = match &options.target {
        Some(t) => names
            .iter()
            .rposition(|n| n.as_deref() == Some(t.to_lowercase().as_str()))
            .ok_or_else(|| Error::at(start.clone(), format!("target stage \"{t}\" could not be found")))?,
        None => names.len() - 1,
    };

    lint::check_file(&mut linter, &dockerfile, global_args, &stage_list);
    lint::check_stages(&mut linter, &stage_list);

    // Global args: BuildKit's defaults (platforms, TARGETSTAGE), then the ARGs before FROM.
    let host = Platform::host();
    let target_platform = options.platform.clone().unwrap_or_else(Platform::host);
    let (build_platform, platform) = (host.to_string(), target_platform.to_string());
    let defaults = [
        ("BUILDPLATFORM", build_platform.as_str()),
        ("BUILDOS", host.os.as_str()),
        ("BUILDOSVERSION", ""),
        ("BUILDARCH", host.architecture.as_str()),
        ("BUILDVARIANT", host.variant.as_str()),
        ("TARGETPLATFORM", platform.as_str()),
        ("TARGETOS", target_platform.os.as_str()),
        ("TARGETOSVERSION", ""),
        ("TARGETARCH", target_platform.architecture.as_str()),
        ("TARGETVARIANT", target_platform.variant.as_str()),
        ("TARGETSTAGE", names[target].as_deref().unwrap_or("")),
    ];
    let mut global: Vec<(String, String)> = Vec::new();
    for (k, v) in defaults {
        let v = ctx.build_arg(k).unwrap_or(v).to_owned();
        set_env(&mut global, k, &v);
    }
    let mut declared: BTreeSet<String> = defaults.iter().map(|(k, _)| k.to_string()).collect();
    for arg in global_args {
        let pos = arg.args_pos;
        let pairs = parse_arg_pairs(&arg.args).map_err(|e| ctx.err(pos, e))?;
        for (key, default) in pairs {
            let value = match (ctx.build_arg(&key), default) {
                (Some(v), _) => Some(v.to_owned()),
                (None, Some(d)) => Some(ctx.expand(&d, &global, pos)?),
                (None, None) => None,
            };
            if let Some(v) = value {
                set_env(&mut global, &key, &v);
            }
            declared.insert(key);
        }
    }
    default_args_check(&mut ctx, &mut linter, global_args, &stage_list, defaults.as_slice());

    let mut stages: Vec<Stage> = Vec::new();
    let mut infos: Vec<StageInfo> = Vec::new();
    for (index, (from, instructions)) in stage_list.iter().enumerate() {
        let from_pos = ins_pos(from);
        let raw_base = from.args.first().map_or("", String::as_str);
        let base_name = ctx.expand(raw_base, &global, from.arg_pos(0))?;
        if base_name.is_empty() {
            return Err(ctx.err(from_pos, format!("base name ({raw_base}) should not be blank")));
        }
        let flags = parse_flags(&ctx, from)?;
        let stage_platform = if let Some((raw, pos)) = flags.get("platform") {
            let value = ctx.expand(raw, &global, pos)?;
            if value.is_empty() {
                return Err(ctx.err(from_pos, format!("empty platform value from expression {raw}")));
            }
            Platform::parse(&value).map_err(|_| {
                ctx.err(from_pos, format!("failed to parse platform {value}: invalid platform"))
            })?
        } else {
            target_platform.clone()
        };
        let name = names[index].clone();
        let lower_base = base_name.to_lowercase();
        // A number names an earlier stage by index, as `COPY --from` does. BuildKit only takes
        // names here; we take indexes too (the issue asks for it), and since an image can never
        // be built from a stage that does not exist yet, only indexes below this stage count.
        let earlier = infos
            .iter()
            .rposition(|s| s.name.as_deref() == Some(lower_base.as_str()))
            .or_else(|| base_name.parse::<usize>().ok().filter(|&j| j < infos.len()));
        // A context named like this stage replaces it: FROM that image, nothing else.
        let replaced_by = name.as_deref().and_then(|n| ctx.named_context(n)).map(str::to_owned);
        let base_name = match (&replaced_by, earlier) {
            (Some(r), _) => r.clone(),
            (None, None) => ctx.named_context(&base_name).map_or(base_name, str::to_owned),
            (None, Some(_)) => base_name,
        };
        let earlier = earlier.filter(|_| replaced_by.is_none());
        let (base, mut state, triggers) = if base_name == "scratch" {
            (Base::Scratch, StageState::new(Vec::new(), "/".into()), Vec::new())
        } else if let Some(j) = earlier {
            let mut state = infos[j].final_state.clone();
            let triggers = std::mem::take(&mut state.on_build);
            (Base::Stage(j), state, triggers)
        } else {
            let config =
                resolver.resolve_for(&base_name, &stage_platform).map_err(|source| Error::BaseImage {
                    location: ctx.loc(from_pos),
                    reference: base_name.clone(),
                    source_line: None,
                    source,
                })?;
            let env = config
                .env
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (kv.clone(), String::new()),
                })
                .collect();
            // BuildKit's validateBaseImagePlatform: os and architecture, not the variant.
            if let Some(actual) = &config.platform
                && (actual.os != stage_platform.os || actual.architecture != stage_platform.architecture)
            {
                linter.run(
                    &crate::lint::INVALID_BASE_IMAGE_PLATFORM,
                    from.start_line,
                    Some(index),
                    format!(
                        "Base image {base_name} was pulled with platform \"{actual}\", expected \"{stage_platform}\" for current build"
                    ),
                );
            }
            let workdir = config.working_dir.filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
            (Base::Image(base_name.clone()), StageState::new(env, workdir), config.on_build)
        };

        // A replaced stage is the context's image as it is: no ONBUILD either (BuildKit's noinit).
        let triggers = if replaced_by.is_some() { Vec::new() } else { triggers };
        let display = name.clone().unwrap_or_else(|| format!("stage-{index}"));
        let scope = Scope { global: &global, names: &names, index, display: &display };
        let mut steps = Vec::new();
        // The base's ONBUILD triggers run first, located at the FROM.
        for trigger in &triggers {
            let fail = |ctx: &Ctx<'_>, message: String| {
                ctx.err(from_pos, format!("failed to process ONBUILD trigger \"{trigger}\": {message}"))
            };
            let parsed = parser::parse(trigger).map_err(|e| fail(&ctx, e.message))?;
            let [ins] = parsed.instructions.as_slice() else {
                return Err(fail(&ctx, "a trigger must be exactly one instruction".into()));
            };
            if matches!(ins.name.as_str(), "onbuild" | "from" | "maintainer") {
                return Err(fail(
                    &ctx,
                    format!("{} isn't allowed as an ONBUILD trigger", ins.keyword.to_uppercase()),
                ));
            }
            check_instruction(&ctx, ins).map_err(|e| fail(&ctx, e.message()))?;
            let mut text = format!("ONBUILD {}", ins.original.trim());
            let op = lower_instruction(&mut ctx, ins, &mut state, &scope, &mut declared, &mut text)
                .map_err(|e| fail(&ctx, e.message()))?;
            steps.push(Step { location: ctx.loc(from_pos), text, op });
        }
        let instructions = if replaced_by.is_some() { &[][..] } else { &instructions[..] };
        for ins in instructions {
            lint::undefined_vars(&mut linter, ins, &state.env, &state.args, index, &options.build_args);
            let mut text = ins.original.trim().to_owned();
            let op = lower_instruction(&mut ctx, ins, &mut state, &scope, &mut declared, &mut text)?;
            steps.push(Step { location: ctx.loc(ins_pos(ins)), text, op });
        }
        stages.push(Stage {
            index,
            name: name.clone(),
            base,
            location: ctx.loc(from_pos),
            text: from.original.trim().to_owned(),
            steps,
            platform: stage_platform,
        });
        infos.push(StageInfo { name, final_state: state });
    }

    let mut unused: Vec<&str> = Vec::new();
    for (k, _) in &options.build_args {
        if !declared.contains(k) && !PROXY_ARGS.contains(&k.as_str()) && !unused.contains(&k.as_str()) {
            unused.push(k);
        }
    }
    unused.sort_unstable();
    if !unused.is_empty() {
        ctx.warnings
            .push(format!("[Warning] One or more build-args [{}] were not consumed", unused.join(" ")));
    }
    Ok(BuildDefinition {
        stages,
        target,
        warnings: ctx.warnings,
        notes,
        lint: linter.warnings,
        check: linter.config.clone(),
    })
}

/// InvalidDefaultArgInFrom: each FROM expanded with the global ARGs' defaults alone (no
/// `--build-arg`) must be a valid image reference, so that the Dockerfile builds without build
/// args. Abandoned, as BuildKit's, on an expansion error.
fn default_args_check(
    ctx: &mut Ctx<'_>,
    linter: &mut crate::lint::Linter,
    global_args: &[Instruction],
    stages: &[(&Instruction, Vec<&Instruction>)],
    predefined: &[(&str, &str)],
) {
    let mut env: Vec<(String, String)> = Vec::new();
    for (k, v) in predefined {
        set_env(&mut env, k, v);
    }
    for arg in global_args {
        let Ok(pairs) = parse_arg_pairs(&arg.args) else { return };
        for (key, default) in pairs {
            if let Some(d) = default {
                let Ok(v) = ctx.expand(&d, &env, arg.args_pos) else { return };
                set_env(&mut env, &key, &v);
            }
        }
    }
    for (from, _) in stages {
        let Some(raw) = from.args.first() else { continue };
        if !raw.contains('$') {
            continue;
        }
        let Ok(base) = ctx.expand(raw, &env, from.arg_pos(0)) else { return };
        if !crate::lint::is_valid_reference(&base) {
            linter.run(
                &crate::lint::INVALID_DEFAULT_ARG_IN_FROM,
                ins_pos(from).line,
                None,
                format!("Default value for ARG {raw} results in empty or invalid base image name"),
            );
        }
    }
}

/// What an instruction needs to know about the build beyond its stage.
struct Scope<'a> {
    global: &'a [(String, String)],
    names: &'a [Option<String>],
    index: usize,
    display: &'a str,
}

fn lower_instruction(
    ctx: &mut Ctx<'_>,
    ins: &Instruction,
    state: &mut StageState,
    scope: &Scope<'_>,
    declared: &mut BTreeSet<String>,
    text: &mut String,
) -> Result<Op, Error> {
    let pos = ins_pos(ins);
    let flags = parse_flags(ctx, ins)?;
    match ins.name.as_str() {
        "arg" => lower_arg(ctx, ins, state, scope, declared),
        "run" => lower_run(ctx, ins, &flags, state, scope, text),
        "copy" => lower_copy(ctx, ins, &flags, state, scope),
        "add" => lower_add(ctx, ins, &flags, state),
        "env" | "label" => lower_env_or_label(ctx, ins, state),
        "workdir" => lower_workdir(ctx, ins, state),
        "user" => {
            let user = ctx.expand(ins.args.first().map_or("", String::as_str), &state.env, ins.args_pos)?;
            Ok(Op::Config(ConfigOp::User(user)))
        }
        "cmd" => Ok(Op::Config(ConfigOp::Cmd(command_args(ins, state)))),
        "entrypoint" => Ok(Op::Config(ConfigOp::Entrypoint(command_args(ins, state)))),
        "expose" => lower_expose(ctx, ins, state),
        "volume" => lower_volume(ctx, ins, state),
        "stopsignal" => lower_stopsignal(ctx, ins, state),
        "shell" => lower_shell(ins, state),
        "maintainer" => lower_maintainer(ins),
        "healthcheck" => lower_healthcheck(ctx, ins, &flags),
        "onbuild" => lower_onbuild(ins, state),
        "from" => Err(ctx.err(pos, "unexpected FROM")),
        _ => Err(ctx.err(pos, parser::unknown_instruction_message(&ins.keyword))),
    }
}

fn lower_arg(
    ctx: &mut Ctx<'_>,
    ins: &Instruction,
    state: &mut StageState,
    scope: &Scope<'_>,
    declared: &mut BTreeSet<String>,
) -> Result<Op, Error> {
    let pos = ins.args_pos;
    let pairs = parse_arg_pairs(&ins.args).map_err(|e| ctx.err(pos, e))?;
    let mut history = Vec::new();
    for (key, default) in pairs {
        let from_cli = ctx.build_arg(&key).map(str::to_owned);
        let value = match (from_cli, default) {
            (Some(v), _) => Some(v),
            (None, Some(d)) => Some(ctx.expand(&d, &state.env, pos)?),
            // `ARG NAME` without a default takes the global value.
            (None, None) => env_get(scope.global, &key).map(str::to_owned),
        };
        if let Some(v) = &value {
            set_env(&mut state.env, &key, v);
        }
        state.args.push((key.clone(), value.clone()));
        declared.insert(key.clone());
        history.push((key, value));
    }
    Ok(Op::Config(ConfigOp::Arg(history)))
}

/// `COPY --from=` and `RUN --mount=from=`: an earlier stage by name (case-insensitive) or index,
/// else an image. Naming this stage is a circular dependency; a later stage gets `later()`.
fn resolve_stage_ref(
    ctx: &Ctx<'_>,
    value: &str,
    scope: &Scope<'_>,
    offset: Pos,
    later: impl FnOnce() -> String,
) -> Result<CopyFrom, Error> {
    let names = scope.names;
    let found = match value.parse::<usize>() {
        Ok(i) if i >= names.len() => return Err(ctx.err(offset, format!("invalid stage index {i}"))),
        Ok(i) => Some(i),
        Err(_) => names.iter().rposition(|n| n.as_deref() == Some(value.to_lowercase().as_str())),
    };
    match found {
        None if value.is_empty() => Err(ctx.err(offset, "missing a value on flag: --from")),
        None => Ok(CopyFrom::Image(ctx.named_context(value).unwrap_or(value).to_owned())),
        Some(i) if i < scope.index => Ok(CopyFrom::Stage(i)),
        Some(i) if i == scope.index => {
            Err(ctx.err(offset, format!("circular dependency detected on stage: {}", scope.display)))
        }
        Some(_) => Err(ctx.err(offset, later())),
    }
}
