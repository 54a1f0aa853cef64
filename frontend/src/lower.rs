//! Lowering: walks the parsed Dockerfile stage by stage as BuildKit's `dockerfile2llb` does,
//! tracking the environment (ENV, ARG, WORKDIR, SHELL) so that each instruction is expanded as
//! Docker would, and produces the steps the solver runs.

use std::collections::BTreeSet;

use parse_dockerfile::{Command, Flag, Instruction, JsonOrStringArray, Source};

use crate::expand::{env_get, expand_word_with_escape, expand_words};
use crate::{Base, BuildDefinition, ConfigOp, CopyFrom, CopyOp, Error, Location, Op, RunOp, Stage, Step};

/// What the frontend needs to know about a base image.
#[derive(Debug, Clone, Default)]
pub struct BaseConfig {
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// The image's `OnBuild` triggers, run as the first steps of a stage built on it.
    pub on_build: Vec<String>,
}

/// Answers questions about base images (the solver looks them up in the store).
pub trait ImageResolver {
    /// The config of image `reference`, or an error message if it cannot be found.
    fn resolve(&self, reference: &str) -> Result<BaseConfig, String>;
}

#[derive(Debug, Clone, Default)]
pub struct LowerOptions {
    /// `--build-arg NAME=value` pairs.
    pub build_args: Vec<(String, String)>,
    /// `--target`: the stage to build; the last stage when `None`.
    pub target: Option<String>,
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

/// The host platform as `(os, architecture, variant)` in OCI terms, e.g. `("linux", "amd64", "")`.
pub fn host_platform() -> (&'static str, &'static str, &'static str) {
    let (arch, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", ""),
        "x86" => ("386", ""),
        "aarch64" => ("arm64", ""),
        "arm" => ("arm", "v7"),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", ""),
        "riscv64" => ("riscv64", ""),
        "s390x" => ("s390x", ""),
        other => (other, ""),
    };
    ("linux", arch, variant)
}

/// The host platform as BuildKit formats it: `linux/amd64`, `linux/arm/v7`.
pub fn host_platform_string() -> String {
    let (os, arch, variant) = host_platform();
    if variant.is_empty() { format!("{os}/{arch}") } else { format!("{os}/{arch}/{variant}") }
}

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
}

impl StageState {
    fn new(env: Vec<(String, String)>, workdir: String) -> Self {
        StageState {
            config_env: env.clone(),
            env,
            workdir,
            shell: DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
            args: Vec::new(),
        }
    }
}

fn set_env(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_owned(),
        None => env.push((key.to_owned(), value.to_owned())),
    }
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    escape: char,
    build_args: Vec<(String, String)>,
    warnings: Vec<String>,
}

impl Ctx<'_> {
    fn loc(&self, offset: usize) -> Location {
        Location::at(self.file, self.text, offset)
    }

    fn err(&self, offset: usize, message: impl Into<String>) -> Error {
        Error::at(self.loc(offset), message)
    }

    fn build_arg(&self, name: &str) -> Option<&str> {
        env_get(&self.build_args, name)
    }

    /// Expands one word as BuildKit's `ProcessWord`, an error pointing at `offset`.
    fn expand(&self, word: &str, env: &[(String, String)], offset: usize) -> Result<String, Error> {
        expand_word_with_escape(word, env, self.escape)
            .map_err(|e| self.err(offset, format!("failed to process \"{word}\": {e}")))
    }

    fn expand_words(
        &self,
        word: &str,
        env: &[(String, String)],
        offset: usize,
    ) -> Result<Vec<String>, Error> {
        expand_words(word, env, self.escape)
            .map_err(|e| self.err(offset, format!("failed to process \"{word}\": {e}")))
    }

    /// The logical line starting at `start`, continuations joined as BuildKit does.
    fn line(&self, start: usize) -> String {
        logical_line(&self.text[start..], self.escape)
    }
}

/// Joins the logical line at the start of `text` as BuildKit's parser does: an escape character
/// (followed only by blanks) at the end of a line is removed together with the newline; comment
/// lines and empty lines inside the continuation are dropped; the next line's leading whitespace
/// is kept. Stops at the first line that does not continue. Trailing whitespace is trimmed.
pub fn logical_line(text: &str, escape: char) -> String {
    let mut out = String::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if i > 0 {
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
        }
        let trimmed = line.trim_end_matches([' ', '\t']);
        match trimmed.strip_suffix(escape) {
            Some(body) => out.push_str(body),
            None => {
                out.push_str(line);
                break;
            }
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// BuildKit's `parseWords`: splits on whitespace outside quotes, keeping quotes and escapes
/// (they are removed later by expansion).
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let mut ch = if at_end { '\0' } else { chars[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                word.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            word.push(ch);
            pos += 1;
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

/// BuildKit's `parseNameVal` for ENV and LABEL: `k=v k2=v2` or the legacy `k v w` (meaning
/// k=`v w`). Values keep their quotes for expansion.
fn parse_name_val(rest: &str, escape: char, instruction: &str) -> Result<Vec<(String, String)>, String> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Err(format!("{instruction} requires at least one argument"));
    }
    let pairs = if !words[0].contains('=') {
        let is_ws = |c: char| matches!(c, ' ' | '\t' | '\r' | '\x0b' | '\x0c');
        let Some(i) = rest.find(is_ws) else {
            return Err(format!("{instruction} must have two arguments"));
        };
        vec![(rest[..i].to_owned(), rest[i..].trim_start_matches(is_ws).to_owned())]
    } else {
        let mut pairs = Vec::new();
        for word in words {
            let Some((k, v)) = word.split_once('=') else {
                return Err(format!(
                    "Syntax error - can't find = in \"{word}\". Must be of the form: name=value"
                ));
            };
            pairs.push((k.to_owned(), v.to_owned()));
        }
        pairs
    };
    if pairs.iter().any(|(k, _)| k.is_empty()) {
        return Err(format!("{instruction} names can not be blank"));
    }
    Ok(pairs)
}

/// `ARG a b=c`: names with optional defaults (defaults keep quotes for expansion).
fn parse_arg_pairs(rest: &str, escape: char) -> Result<Vec<(String, Option<String>)>, String> {
    let mut pairs = Vec::new();
    for word in parse_words(rest, escape) {
        let pair = match word.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (word, None),
        };
        if pair.0.is_empty() {
            return Err("ARG names can not be blank".into());
        }
        pairs.push(pair);
    }
    Ok(pairs)
}

/// Go's `path.Clean` for an absolute path.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Normalizes one EXPOSE spec (`80`, `80/udp`, `8000-8002/tcp`) into `port/proto` entries.
fn normalize_ports(spec: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = spec.split('/').collect();
    let (port, proto) = match parts.as_slice() {
        [port] => (*port, "tcp"),
        [port, "", ..] => (*port, "tcp"),
        [port, proto, ..] => (*port, *proto),
        [] => (spec, "tcp"),
    };
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    // `ip:hostPort:containerPort`: only the container port is exposed.
    let port = port.rsplit(':').next().unwrap_or(port);
    if port.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let invalid = || format!("invalid containerPort: {port}");
    let (start, end) = match port.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().map_err(|_| invalid())?, b.parse::<u16>().map_err(|_| invalid())?),
        None => {
            let p = port.parse::<u16>().map_err(|_| invalid())?;
            (p, p)
        }
    };
    if end < start {
        return Err(invalid());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Whether `signal` is one `moby/sys/signal.ParseSignal` accepts on Linux.
fn valid_signal(signal: &str) -> bool {
    if let Ok(n) = signal.parse::<i64>() {
        return n != 0;
    }
    let upper = signal.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: [&str; 35] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
        "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
        "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "UNUSED",
    ];
    if NAMES.contains(&name) || name == "RTMIN" || name == "RTMAX" {
        return true;
    }
    let rt = |prefix: &str, sep: char| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(sep))
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| (1..=15).contains(&n) || (prefix == "RTMAX" && (1..=14).contains(&n)))
    };
    rt("RTMIN", '+') || rt("RTMAX", '-')
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn keyword_start(instruction: &Instruction<'_>) -> usize {
    match instruction {
        Instruction::Add(i) => i.add.span.start,
        Instruction::Arg(i) => i.arg.span.start,
        Instruction::Cmd(i) => i.cmd.span.start,
        Instruction::Copy(i) => i.copy.span.start,
        Instruction::Entrypoint(i) => i.entrypoint.span.start,
        Instruction::Env(i) => i.env.span.start,
        Instruction::Expose(i) => i.expose.span.start,
        Instruction::From(i) => i.from.span.start,
        Instruction::Healthcheck(i) => i.healthcheck.span.start,
        Instruction::Label(i) => i.label.span.start,
        Instruction::Maintainer(i) => i.maintainer.span.start,
        Instruction::Onbuild(i) => i.onbuild.span.start,
        Instruction::Run(i) => i.run.span.start,
        Instruction::Shell(i) => i.shell.span.start,
        Instruction::Stopsignal(i) => i.stopsignal.span.start,
        Instruction::User(i) => i.user.span.start,
        Instruction::Volume(i) => i.volume.span.start,
        Instruction::Workdir(i) => i.workdir.span.start,
        _ => 0,
    }
}

/// Converts the parser's error into ours, with BuildKit's wording where it differs.
fn syntax_error(file: &str, text: &str, e: &parse_dockerfile::Error) -> Error {
    let message = format!("{e:#}");
    let (line, column) = (e.line(), e.column());
    if line == 0 {
        // No stage at all.
        let only_comments = text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        });
        let message = if only_comments {
            "file with no instructions"
        } else {
            "dockerfile contains no stages to build"
        };
        return Error::at(Location { file: file.into(), line: 1, column: 1 }, message);
    }
    let location = Location { file: file.into(), line, column: column.max(1) };
    let message = if let Some(name) = message.strip_prefix("unknown instruction '") {
        format!("unknown instruction: {}", name.trim_end_matches('\''))
    } else if message == "expected FROM" {
        "no build stage in current context".to_owned()
    } else {
        message
    };
    Error::at(location, message)
}

fn flag_value<'t>(ctx: &Ctx<'_>, flag: &'t Flag<'_>) -> Result<&'t str, Error> {
    match &flag.value {
        Some(v) => Ok(&v.value),
        None => Err(ctx.err(flag.span().start, format!("missing a value on flag: --{}", flag.name.value))),
    }
}

/// BuildKit's history text for RUN: `|N K=V ... argv` when build args are in scope.
fn run_command_string(args: &[String], state: &StageState) -> String {
    let mut build_env: Vec<(String, String)> = Vec::new();
    for (key, value) in &state.args {
        let v = env_get(&state.env, key).map(str::to_owned).or_else(|| value.clone()).unwrap_or_default();
        set_env(&mut build_env, key, &v);
    }
    let mut parts = Vec::new();
    if !build_env.is_empty() {
        parts.push(format!("|{}", build_env.len()));
        parts.extend(build_env.iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(args.iter().cloned());
    parts.join(" ")
}

/// The delimiter of `<<EOF`, `<<-"EOF"`...: quotes and the leading `-` removed.
fn heredoc_name(word: &str) -> String {
    let w = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let w = w.strip_prefix("<<").unwrap_or(w);
    let w = w.strip_prefix('-').unwrap_or(w);
    w.chars().filter(|c| *c != '"' && *c != '\'').collect()
}

/// Whether the whole command is one heredoc word (BuildKit's `ParseHeredoc` succeeding).
fn is_single_heredoc(cmd: &str) -> bool {
    let digits = cmd.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = digits.strip_prefix("<<") else { return false };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    !rest.is_empty() && !rest.contains('<') && expand_words(rest, &[], '\\').is_ok_and(|w| w.len() == 1)
}

fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let mut lines = doc.lines();
    let first = lines.next().unwrap_or_default().to_owned();
    if lines.next().is_some() { first + "..." } else { first }
}

struct StageInfo {
    name: Option<String>,
    final_state: StageState,
}

pub fn lower(
    file: &str,
    text: &str,
    options: &LowerOptions,
    resolver: &dyn ImageResolver,
) -> Result<BuildDefinition, Error> {
    // The parser strips a UTF-8 BOM and gives spans into what remains.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.is_empty() {
        return Err(Error::at(
            Location { file: file.into(), line: 1, column: 1 },
            "the Dockerfile cannot be empty",
        ));
    }
    let dockerfile = parse_dockerfile::parse(text).map_err(|e| syntax_error(file, text, &e))?;
    let escape = dockerfile.parser_directives.escape.as_ref().map_or('\\', |d| d.value.value);
    let mut ctx = Ctx { file, text, escape, build_args: options.build_args.clone(), warnings: Vec::new() };

    // Stage names first: `--target` and TARGETSTAGE need them.
    let mut names: Vec<Option<String>> = Vec::new();
    for stage in dockerfile.stages() {
        let name = stage.from.as_.as_ref().map(|(_, n)| n.value.to_lowercase());
        if let (Some(name), Some((_, raw))) = (&name, &stage.from.as_) {
            if !valid_stage_name(name) {
                return Err(ctx.err(
                    raw.span.start,
                    format!("invalid name for build stage: \"{}\", name can't start with a number or contain symbols", raw.value),
                ));
            }
            if names.iter().any(|n| n.as_ref() == Some(name)) {
                return Err(ctx.err(raw.span.start, format!("duplicate stage name \"{name}\"")));
            }
        }
        names.push(name);
    }
    let target = match &options.target {
        Some(t) => {
            names.iter().position(|n| n.as_deref() == Some(t.to_lowercase().as_str())).ok_or_else(|| {
                Error::at(
                    Location { file: file.into(), line: 1, column: 1 },
                    format!("target stage \"{t}\" could not be found"),
                )
            })?
        }
        None => names.len() - 1,
    };

    // Global args: BuildKit's defaults (platforms, TARGETSTAGE), then the ARGs before FROM.
    let (os, arch, variant) = host_platform();
    let platform = host_platform_string();
    let defaults = [
        ("BUILDPLATFORM", platform.as_str()),
        ("BUILDOS", os),
        ("BUILDOSVERSION", ""),
        ("BUILDARCH", arch),
        ("BUILDVARIANT", variant),
        ("TARGETPLATFORM", platform.as_str()),
        ("TARGETOS", os),
        ("TARGETOSVERSION", ""),
        ("TARGETARCH", arch),
        ("TARGETVARIANT", variant),
        ("TARGETSTAGE", names[target].as_deref().unwrap_or("")),
    ];
    let mut global: Vec<(String, String)> = Vec::new();
    for (k, v) in defaults {
        let v = ctx.build_arg(k).unwrap_or(v).to_owned();
        set_env(&mut global, k, &v);
    }
    let mut declared: BTreeSet<String> = defaults.iter().map(|(k, _)| k.to_string()).collect();
    for arg in dockerfile.global_args() {
        let offset = arg.arguments.span.start;
        let pairs = parse_arg_pairs(&arg.arguments.value, escape).map_err(|e| ctx.err(offset, e))?;
        for (key, default) in pairs {
            let value = match (ctx.build_arg(&key), default) {
                (Some(v), _) => Some(v.to_owned()),
                (None, Some(d)) => Some(ctx.expand(&d, &global, offset)?),
                (None, None) => None,
            };
            if let Some(v) = value {
                set_env(&mut global, &key, &v);
            }
            declared.insert(key);
        }
    }

    let mut stages: Vec<Stage> = Vec::new();
    let mut infos: Vec<StageInfo> = Vec::new();
    for (index, stage) in dockerfile.stages().enumerate() {
        let from = stage.from;
        let from_start = from.from.span.start;
        let raw_base = &from.image.value;
        let base_name = ctx.expand(raw_base, &global, from.image.span.start)?;
        if base_name.is_empty() {
            return Err(ctx.err(from_start, format!("base name ({raw_base}) should not be blank")));
        }
        for flag in &from.options {
            match &*flag.name.value {
                "platform" => {
                    let raw = flag_value(&ctx, flag)?;
                    let value = ctx.expand(raw, &global, flag.span().start)?;
                    if value.is_empty() {
                        return Err(
                            ctx.err(from_start, format!("empty platform value from expression {raw}"))
                        );
                    }
                    if value.to_ascii_lowercase() != platform {
                        let loc = ctx.loc(from_start);
                        ctx.warnings.push(format!(
                            "[Warning] {loc}: FROM --platform={value} differs from the host platform ({platform}); building for the host platform"
                        ));
                    }
                }
                other => return Err(ctx.err(flag.span().start, format!("unknown flag: {other}"))),
            }
        }
        let name = names[index].clone();
        let lower_base = base_name.to_lowercase();
        // A number names an earlier stage by index, as `COPY --from` does. BuildKit only takes
        // names here; we take indexes too (the issue asks for it), and since an image can never
        // be built from a stage that does not exist yet, only indexes below this stage count.
        let earlier = infos
            .iter()
            .position(|s| s.name.as_deref() == Some(lower_base.as_str()))
            .or_else(|| base_name.parse::<usize>().ok().filter(|&j| j < infos.len()));
        let (base, mut state) = if base_name == "scratch" {
            (Base::Scratch, StageState::new(Vec::new(), "/".into()))
        } else if let Some(j) = earlier {
            (Base::Stage(j), infos[j].final_state.clone())
        } else {
            let config = resolver.resolve(&base_name).map_err(|e| ctx.err(from_start, e))?;
            let env = config
                .env
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (kv.clone(), String::new()),
                })
                .collect();
            let workdir = config.working_dir.filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
            (Base::Image(base_name.clone()), StageState::new(env, workdir))
        };

        let display = name.clone().unwrap_or_else(|| format!("stage-{index}"));
        let mut steps = Vec::new();
        for instruction in stage.instructions {
            let start = keyword_start(instruction);
            let mut text = ctx.line(start);
            let op = lower_instruction(
                &mut ctx,
                instruction,
                &mut state,
                &global,
                &names,
                index,
                &display,
                &mut declared,
                &mut text,
            )?;
            steps.push(Step { location: ctx.loc(start), text, op });
        }
        stages.push(Stage {
            index,
            name: name.clone(),
            base,
            location: ctx.loc(from_start),
            text: ctx.line(from_start),
            steps,
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
    Ok(BuildDefinition { stages, target, warnings: ctx.warnings })
}

#[allow(clippy::too_many_arguments)]
fn lower_instruction(
    ctx: &mut Ctx<'_>,
    instruction: &Instruction<'_>,
    state: &mut StageState,
    global: &[(String, String)],
    names: &[Option<String>],
    index: usize,
    display: &str,
    declared: &mut BTreeSet<String>,
    text: &mut String,
) -> Result<Op, Error> {
    let start = keyword_start(instruction);
    let not_yet = |what: &str| ctx.err(start, format!("{what} is not supported yet"));
    let op = match instruction {
        Instruction::Arg(arg) => {
            let offset = arg.arguments.span.start;
            let pairs = parse_arg_pairs(&arg.arguments.value, ctx.escape).map_err(|e| ctx.err(offset, e))?;
            let mut history = Vec::new();
            for (key, default) in pairs {
                let from_cli = ctx.build_arg(&key).map(str::to_owned);
                let value = match (from_cli, default) {
                    (Some(v), _) => Some(v),
                    (None, Some(d)) => Some(ctx.expand(&d, &state.env, offset)?),
                    // `ARG NAME` without a default takes the global value.
                    (None, None) => env_get(global, &key).map(str::to_owned),
                };
                if let Some(v) = &value {
                    set_env(&mut state.env, &key, v);
                }
                state.args.push((key.clone(), value.clone()));
                declared.insert(key.clone());
                history.push((key, value));
            }
            Op::Config(ConfigOp::Arg(history))
        }
        Instruction::Run(run) => {
            if let Some(flag) = run.options.first() {
                let name = &flag.name.value;
                return Err(match &**name {
                    "mount" | "network" | "security" | "device" => {
                        ctx.err(flag.span().start, format!("RUN --{name} is not supported yet"))
                    }
                    _ => ctx.err(flag.span().start, format!("unknown flag: {name}")),
                });
            }
            let args = match &run.arguments {
                Command::Exec(exec) => exec.value.iter().map(|s| s.value.to_string()).collect(),
                Command::Shell(shell) if run.here_docs.is_empty() => {
                    let mut args = state.shell.clone();
                    args.push(ctx.line(shell.span.start).trim().to_owned());
                    args
                }
                Command::Shell(_) => {
                    let cmd_start = run.run.span.end + ctx.text[run.run.span.end..].len()
                        - ctx.text[run.run.span.end..].trim_start_matches([' ', '\t']).len();
                    let cmd = ctx.line(cmd_start).trim().to_owned();
                    let doc = &run.here_docs[0];
                    let mut args = state.shell.clone();
                    if is_single_heredoc(&cmd) {
                        if doc.value.starts_with("#!") {
                            return Err(not_yet("RUN with a heredoc starting with #! (a script file)"));
                        }
                        args.push(doc.value.to_string());
                    } else {
                        let first = cmd.split_whitespace().next().unwrap_or_default();
                        args.push(format!("{cmd}\n{}{}", doc.value, heredoc_name(first)));
                    }
                    text.push_str(&format!(" ({})", summarize_heredoc(&doc.value)));
                    args
                }
                _ => return Err(not_yet("this form of RUN")),
            };
            // What the RUN's environment has beyond the image config: ARG values, and proxies.
            let mut build_args: Vec<String> = Vec::new();
            for (k, v) in &ctx.build_args {
                if PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(k)) {
                    for key in [k.to_ascii_uppercase(), k.to_ascii_lowercase()] {
                        if env_get(&state.env, &key).is_none() {
                            build_args.retain(|a| !a.starts_with(&format!("{key}=")));
                            build_args.push(format!("{key}={v}"));
                        }
                    }
                }
            }
            for (k, v) in &state.env {
                if env_get(&state.config_env, k) != Some(v.as_str()) {
                    build_args.push(format!("{k}={v}"));
                }
            }
            let created_by = format!("RUN {}", run_command_string(&args, state));
            Op::Run(RunOp { args, build_args, created_by })
        }
        Instruction::Copy(copy) => {
            let mut from = None;
            let mut chown = None;
            let mut chmod = None;
            for flag in &copy.options {
                let offset = flag.span().start;
                match &*flag.name.value {
                    "from" => {
                        let value = ctx.expand(flag_value(ctx, flag)?, &state.env, offset)?;
                        from = Some(resolve_copy_from(ctx, &value, names, index, display, offset)?);
                    }
                    "chown" => chown = Some(ctx.expand(flag_value(ctx, flag)?, &state.env, offset)?),
                    "chmod" => {
                        let value = ctx.expand(flag_value(ctx, flag)?, &state.env, offset)?;
                        let mode = u32::from_str_radix(&value, 8)
                            .ok()
                            .filter(|m| *m <= 0o7777)
                            .ok_or_else(|| ctx.err(offset, format!("invalid chmod parameter: {value}")))?;
                        chmod = Some(mode);
                    }
                    name @ ("link" | "parents" | "exclude") => {
                        return Err(ctx.err(offset, format!("COPY --{name} is not supported yet")));
                    }
                    other => return Err(ctx.err(offset, format!("unknown flag: {other}"))),
                }
            }
            let mut sources = Vec::new();
            for src in &copy.src {
                match src {
                    Source::Path(p) => sources.push(ctx.expand(&p.value, &state.env, p.span.start)?),
                    Source::HereDoc(h) => {
                        return Err(ctx.err(h.span.start, "COPY from a heredoc is not supported yet"));
                    }
                    _ => return Err(not_yet("this COPY source")),
                }
            }
            let dest = ctx.expand(&copy.dest.value, &state.env, copy.dest.span.start)?;
            let created_by = format!("COPY {} {dest}", sources.join(" "));
            Op::Copy(CopyOp { sources, heredocs: Vec::new(), dest, from, chown, chmod, created_by })
        }
        Instruction::Env(env) => {
            let offset = env.arguments.span.start;
            let pairs =
                parse_name_val(&env.arguments.value, ctx.escape, "ENV").map_err(|e| ctx.err(offset, e))?;
            // Every pair is expanded against the environment before this instruction.
            let mut expanded = Vec::new();
            for (k, v) in pairs {
                expanded.push((ctx.expand(&k, &state.env, offset)?, ctx.expand(&v, &state.env, offset)?));
            }
            for (k, v) in &expanded {
                set_env(&mut state.env, k, v);
                set_env(&mut state.config_env, k, v);
            }
            Op::Config(ConfigOp::Env(expanded))
        }
        Instruction::Label(label) => {
            let offset = label.arguments.span.start;
            let pairs = parse_name_val(&label.arguments.value, ctx.escape, "LABEL")
                .map_err(|e| ctx.err(offset, e))?;
            let mut expanded = Vec::new();
            for (k, v) in pairs {
                expanded.push((ctx.expand(&k, &state.env, offset)?, ctx.expand(&v, &state.env, offset)?));
            }
            Op::Config(ConfigOp::Label(expanded))
        }
        Instruction::Workdir(workdir) => {
            let offset = workdir.arguments.span.start;
            let path = ctx.expand(&workdir.arguments.value, &state.env, offset)?;
            if path.is_empty() {
                return Err(ctx.err(offset, "cannot normalize nothing"));
            }
            let path = if path.starts_with('/') {
                clean_path(&path)
            } else {
                clean_path(&format!("{}/{path}", state.workdir))
            };
            state.workdir = path.clone();
            Op::Workdir(path)
        }
        Instruction::User(user) => Op::Config(ConfigOp::User(ctx.expand(
            &user.arguments.value,
            &state.env,
            user.arguments.span.start,
        )?)),
        Instruction::Cmd(cmd) => Op::Config(ConfigOp::Cmd(command_args(ctx, &cmd.arguments, state))),
        Instruction::Entrypoint(ep) => {
            Op::Config(ConfigOp::Entrypoint(command_args(ctx, &ep.arguments, state)))
        }
        Instruction::Expose(expose) => {
            let mut ports: Vec<String> = Vec::new();
            for arg in &expose.arguments {
                for word in ctx.expand_words(&arg.value, &state.env, arg.span.start)? {
                    for port in normalize_ports(&word).map_err(|e| ctx.err(arg.span.start, e))? {
                        if !ports.contains(&port) {
                            ports.push(port);
                        }
                    }
                }
            }
            Op::Config(ConfigOp::Expose(ports))
        }
        Instruction::Volume(volume) => {
            let words = match &volume.arguments {
                JsonOrStringArray::Json(json) => &json.value[..],
                JsonOrStringArray::String(words) => &words[..],
            };
            let mut volumes = Vec::new();
            for word in words {
                let v = ctx.expand(&word.value, &state.env, word.span.start)?;
                if v.is_empty() {
                    return Err(ctx.err(start, "VOLUME specified can not be an empty string"));
                }
                volumes.push(v);
            }
            Op::Config(ConfigOp::Volume(volumes))
        }
        Instruction::Stopsignal(sig) => {
            let value = ctx.expand(&sig.arguments.value, &state.env, sig.arguments.span.start)?;
            if !valid_signal(&value) {
                return Err(ctx.err(sig.arguments.span.start, format!("Invalid signal: {value}")));
            }
            Op::Config(ConfigOp::StopSignal(value))
        }
        Instruction::Shell(shell) => {
            let args: Vec<String> = shell.arguments.iter().map(|s| s.value.to_string()).collect();
            state.shell = args.clone();
            Op::Config(ConfigOp::Shell(args))
        }
        Instruction::Maintainer(m) => {
            let loc = ctx.loc(start);
            ctx.warnings.push(format!(
                "[Warning] {loc}: MAINTAINER instruction is deprecated in favor of using label (MaintainerDeprecated)"
            ));
            Op::Config(ConfigOp::Maintainer(m.name.value.to_string()))
        }
        Instruction::Add(_) => return Err(not_yet("ADD")),
        Instruction::Healthcheck(_) => return Err(not_yet("HEALTHCHECK")),
        Instruction::Onbuild(_) => return Err(not_yet("ONBUILD")),
        Instruction::From(_) => return Err(ctx.err(start, "unexpected FROM")),
        _ => return Err(ctx.err(start, "unknown instruction")),
    };
    Ok(op)
}

/// CMD / ENTRYPOINT arguments: exec form as written, shell form wrapped in the SHELL.
fn command_args(ctx: &Ctx<'_>, command: &Command<'_>, state: &StageState) -> Vec<String> {
    match command {
        Command::Exec(exec) => exec.value.iter().map(|s| s.value.to_string()).collect(),
        Command::Shell(shell) => {
            let mut args = state.shell.clone();
            args.push(ctx.line(shell.span.start).trim().to_owned());
            args
        }
        _ => Vec::new(),
    }
}

/// `COPY --from=`: an earlier stage by name or index, else an image.
fn resolve_copy_from(
    ctx: &Ctx<'_>,
    value: &str,
    names: &[Option<String>],
    index: usize,
    display: &str,
    offset: usize,
) -> Result<CopyFrom, Error> {
    let found = match value.parse::<usize>() {
        Ok(i) if i >= names.len() => return Err(ctx.err(offset, format!("invalid stage index {i}"))),
        Ok(i) => Some(i),
        Err(_) => names.iter().position(|n| n.as_deref() == Some(value.to_lowercase().as_str())),
    };
    match found {
        None if value.is_empty() => Err(ctx.err(offset, "missing a value on flag: --from")),
        None => Ok(CopyFrom::Image(value.to_owned())),
        Some(i) if i < index => Ok(CopyFrom::Stage(i)),
        Some(i) if i == index => Err(ctx.err(offset, format!("circular dependency detected on stage: {display}"))),
        Some(_) => Err(ctx.err(
            offset,
            format!("cannot copy from stage \"{value}\", it needs to be defined before current stage \"{display}\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_continuations_like_buildkit() {
        assert_eq!(logical_line("RUN echo a \\\n  && echo b\nRUN x", '\\'), "RUN echo a   && echo b");
        assert_eq!(logical_line("RUN a \\\n# comment\n\n b \\  \r\n c\r\n", '\\'), "RUN a  b  c");
        assert_eq!(logical_line("RUN a `\n b", '`'), "RUN a  b");
    }

    #[test]
    fn name_val_forms() {
        assert_eq!(
            parse_name_val("a=b c=\"d e\"", '\\', "ENV").unwrap(),
            [("a".into(), "b".into()), ("c".into(), "\"d e\"".into())]
        );
        assert_eq!(parse_name_val("a  b c", '\\', "ENV").unwrap(), [("a".into(), "b c".into())]);
        assert!(parse_name_val("a=b c", '\\', "ENV").unwrap_err().contains("can't find = in \"c\""));
        assert_eq!(parse_name_val("=b", '\\', "LABEL").unwrap_err(), "LABEL names can not be blank");
        assert_eq!(parse_name_val("a", '\\', "ENV").unwrap_err(), "ENV must have two arguments");
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(parse_words(r#"a="x y" b\ c 'd e'"#, '\\'), [r#"a="x y""#, r"b\ c", "'d e'"]);
    }

    #[test]
    fn ports() {
        assert_eq!(normalize_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(normalize_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(normalize_ports("8000-8002/tcp").unwrap(), ["8000/tcp", "8001/tcp", "8002/tcp"]);
        assert!(normalize_ports("80/icmp").is_err());
        assert!(normalize_ports("http").is_err());
        assert!(normalize_ports("9-1").is_err());
    }

    #[test]
    fn paths_and_signals() {
        assert_eq!(clean_path("/a/./b/../c//"), "/a/c");
        assert_eq!(clean_path("/.."), "/");
        assert!(
            valid_signal("SIGTERM")
                && valid_signal("kill")
                && valid_signal("9")
                && valid_signal("SIGRTMIN+3")
        );
        assert!(!valid_signal("SIGFOO") && !valid_signal("0"));
    }

    #[test]
    fn heredoc_detection() {
        assert!(is_single_heredoc("<<EOF"));
        assert!(is_single_heredoc("<<-\"EOF\""));
        assert!(!is_single_heredoc("<<EOF bash"));
        assert_eq!(heredoc_name("<<-'EOF'"), "EOF");
    }
}
