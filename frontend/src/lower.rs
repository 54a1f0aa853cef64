//! Lowering: walks the parsed Dockerfile stage by stage as BuildKit's `dockerfile2llb` does,
//! tracking the environment (ENV, ARG, WORKDIR, SHELL) so that each instruction is expanded as
//! Docker would, and produces the steps the solver runs.

use std::collections::BTreeSet;

use hostutil::gopath;

use crate::expand::{env_get, expand_word_with_escape, expand_words};
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
}

/// Answers questions about base images (the solver looks them up in the store).
pub trait ImageResolver {
    /// The config of image `reference`, or why it cannot be had.
    fn resolve(&self, reference: &str) -> Result<BaseConfig, ResolveError>;
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

/// `ARG a b=c`: names with optional defaults (defaults keep quotes for expansion).
fn parse_arg_pairs(words: &[String]) -> Result<Vec<(String, Option<String>)>, String> {
    let mut pairs = Vec::new();
    for word in words.iter().cloned() {
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

struct Ctx<'a> {
    file: &'a str,
    escape: char,
    build_args: Vec<(String, String)>,
    warnings: Vec<String>,
}

impl Ctx<'_> {
    fn loc(&self, pos: Pos) -> Location {
        Location { file: self.file.to_owned(), line: pos.line.max(1), column: pos.column.max(1) }
    }

    fn err(&self, pos: Pos, message: impl Into<String>) -> Error {
        Error::at(self.loc(pos), message)
    }

    fn build_arg(&self, name: &str) -> Option<&str> {
        env_get(&self.build_args, name)
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

/// The kinds of BuildKit's `BFlags`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Bool,
    String,
    Strings,
}

/// Flags of one instruction after BuildKit's `BFlags.Parse`: name, value (`true`/`false` for
/// booleans), position.
#[derive(Default)]
struct Flags(Vec<(String, String, Pos)>);

impl Flags {
    fn get(&self, name: &str) -> Option<(&str, Pos)> {
        self.0.iter().rev().find(|(n, _, _)| n == name).map(|(_, v, p)| (v.as_str(), *p))
    }
}

/// The flags each instruction accepts, as BuildKit declares them.
fn allowed_flags(ins: &Instruction) -> &'static [(&'static str, FlagKind)] {
    use FlagKind::*;
    match ins.name.as_str() {
        "add" => &[
            ("chown", String),
            ("chmod", String),
            ("link", Bool),
            ("keep-git-dir", Bool),
            ("checksum", String),
            ("unpack", Bool),
            ("exclude", Strings),
        ],
        "copy" => &[
            ("chown", String),
            ("from", String),
            ("chmod", String),
            ("link", Bool),
            ("exclude", Strings),
            ("parents", Bool),
        ],
        "from" => &[("platform", String)],
        "run" => &[("mount", Strings), ("network", String), ("security", String), ("device", Strings)],
        "healthcheck" => &[
            ("interval", String),
            ("timeout", String),
            ("start-period", String),
            ("start-interval", String),
            ("retries", String),
        ],
        _ => &[],
    }
}

/// BuildKit's `BFlags.Parse` for `ins`.
fn parse_flags(ctx: &Ctx<'_>, ins: &Instruction) -> Result<Flags, Error> {
    let allowed = allowed_flags(ins);
    let mut flags = Flags::default();
    for (i, word) in ins.flags.iter().enumerate() {
        let pos = ins.flag_positions.get(i).copied().unwrap_or_else(|| ins_pos(ins));
        if word == "--" {
            break;
        }
        let Some(body) = word.strip_prefix("--") else {
            return Err(ctx.err(pos, format!("arg should start with -- : {word}")));
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(&(_, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            let message = match parser::suggest(name, &names, true) {
                Some(s) => format!("unknown flag: --{name} (did you mean {s}?)"),
                None => format!("unknown flag: --{name}"),
            };
            return Err(ctx.err(pos, message));
        };
        if kind != FlagKind::Strings && flags.get(name).is_some() {
            return Err(ctx.err(pos, format!("duplicate flag specified: --{name}")));
        }
        let value = match (kind, value) {
            (FlagKind::Bool, Some("")) | (FlagKind::String | FlagKind::Strings, None) => {
                return Err(ctx.err(pos, format!("missing a value on flag: --{name}")));
            }
            (FlagKind::Bool, None) => "true".to_owned(),
            (FlagKind::Bool, Some(v)) => match v.to_lowercase().as_str() {
                "true" => "true".to_owned(),
                "false" => "false".to_owned(),
                _ => return Err(ctx.err(pos, format!("expecting boolean value for flag --{name}, not: {v}"))),
            },
            (_, Some(v)) => v.to_owned(),
        };
        flags.0.push((name.to_owned(), value, pos));
    }
    Ok(flags)
}

/// BuildKit's instruction-level checks (`instructions.ParseInstruction`): argument counts,
/// flags, JSON where required. Run on every instruction before lowering, as BuildKit parses
/// the whole file before dispatching.
fn check_instruction(ctx: &Ctx<'_>, ins: &Instruction) -> Result<(), Error> {
    let name = ins.name.as_str();
    let upper = name.to_uppercase();
    let pos = ins_pos(ins);
    let args_pos = ins.args_pos;
    let at_least_one = || ctx.err(pos, format!("{upper} requires at least one argument"));
    let exactly_one = || ctx.err(pos, format!("{upper} requires exactly one argument"));
    match name {
        "env" | "label" => {
            if ins.args.is_empty() {
                return Err(at_least_one());
            }
            for (i, triple) in ins.args.chunks(3).enumerate() {
                if triple.first().is_none_or(|k| k.is_empty()) {
                    return Err(ctx.err(ins.arg_pos(i * 3), format!("{upper} names can not be blank")));
                }
            }
        }
        "maintainer" | "workdir" | "user" | "stopsignal" => {
            if ins.args.len() != 1 {
                return Err(exactly_one());
            }
        }
        "add" | "copy" => {
            if ins.args.len() < 2 {
                return Err(ctx.err(
                    args_pos,
                    format!(
                        "{upper} requires at least two arguments, but only one was provided. Destination could not be determined"
                    ),
                ));
            }
            let last = ins.args.len() - 1;
            if heredoc_word(&ins.args[last]).is_some() {
                return Err(
                    ctx.err(ins.arg_pos(last), format!("{upper} cannot accept a heredoc as a destination"))
                );
            }
        }
        "from" => {
            let ok = ins.args.len() == 1 || (ins.args.len() == 3 && ins.args[1].eq_ignore_ascii_case("as"));
            if !ok {
                return Err(ctx.err(pos, "FROM requires either one or three arguments"));
            }
        }
        "onbuild" => {
            let Some(sub) = &ins.sub else { return Err(at_least_one()) };
            match sub.name.as_str() {
                "onbuild" => return Err(ctx.err(pos, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")),
                "maintainer" | "from" => {
                    return Err(ctx.err(
                        pos,
                        format!("{} isn't allowed as an ONBUILD trigger", sub.keyword.to_uppercase()),
                    ));
                }
                _ => {}
            }
        }
        "run" => {
            if ins.args.is_empty() {
                return Err(at_least_one());
            }
        }
        "healthcheck" => {
            let Some(typ) = ins.args.first() else { return Err(at_least_one()) };
            if typ.eq_ignore_ascii_case("none") {
                if ins.args.len() > 1 {
                    return Err(ctx.err(pos, "HEALTHCHECK NONE takes no arguments"));
                }
                return Ok(());
            }
        }
        "expose" | "volume" | "arg" => {
            if ins.args.is_empty() {
                return Err(at_least_one());
            }
            if name == "arg" {
                parse_arg_pairs(&ins.args).map_err(|e| ctx.err(args_pos, e))?;
            }
        }
        "shell" => {
            if ins.args.is_empty() {
                return Err(at_least_one());
            }
            if !ins.json {
                return Err(ctx.err(args_pos, "SHELL requires the arguments to be in JSON form"));
            }
        }
        "cmd" | "entrypoint" => {}
        _ => return Err(ctx.err(pos, parser::unknown_instruction_message(&ins.keyword))),
    }
    if name != "maintainer" || ins.args.len() == 1 {
        let flags = parse_flags(ctx, ins)?;
        if name == "run" {
            check_run_flags(ctx, &flags)?;
        }
    }
    Ok(())
}

/// BuildKit's parse-time checks of RUN's flags (`parseRunPostHooks`): each `--mount` value's
/// CSV syntax and `from` (no variables), then `--network` and `--security` as written.
fn check_run_flags(ctx: &Ctx<'_>, flags: &Flags) -> Result<(), Error> {
    for (name, value, fpos) in &flags.0 {
        if name == "mount" {
            precheck_mount(value).map_err(|e| ctx.err(*fpos, e))?;
        }
    }
    if let Some((value, fpos)) = flags.get("network") {
        parse_network(value).map_err(|e| ctx.err(fpos, e))?;
    }
    if let Some((value, fpos)) = flags.get("security") {
        parse_security(value).map_err(|e| ctx.err(fpos, e))?;
    }
    Ok(())
}

/// RUN's `--mount`, `--network`, `--security` at dispatch, as BuildKit's `dispatch` (every
/// mount expanded with the RUN's environment and validated) then `dispatchRunMounts` (each
/// mount's `from` resolved and its defaults applied, in order). `--device` is not supported.
fn lower_run_flags(
    ctx: &Ctx<'_>,
    flags: &Flags,
    state: &StageState,
    scope: &Scope<'_>,
) -> Result<(Vec<RunMount>, RunNetwork, RunSecurity), Error> {
    let mut parsed = Vec::new();
    for (name, value, fpos) in &flags.0 {
        if name != "mount" {
            continue;
        }
        let fpos = *fpos;
        // BuildKit resolves `from` as written, before expansion.
        let raw_from = precheck_mount(value).map_err(|e| ctx.err(fpos, e))?;
        let mut expand = |word: &str| {
            expand_word_with_escape(word, &state.env, ctx.escape)
                .map_err(|e| format!("failed to process \"{word}\": {e}"))
        };
        let mount = parse_mount(value, &mut expand).map_err(|e| ctx.err(fpos, e))?;
        parsed.push((mount, raw_from, fpos));
    }
    let mut mounts = Vec::new();
    for (mount, raw_from, fpos) in parsed {
        let from = if mount.from.is_empty() {
            None
        } else {
            let later = || {
                format!(
                    "cannot mount from stage {} to {}, stage needs to be defined before current command",
                    go_quote(&mount.from),
                    go_quote(&mount.target)
                )
            };
            Some(resolve_stage_ref(ctx, &raw_from, scope, fpos, later)?)
        };
        mounts.push(lower_mount(&mount, &state.workdir, from).map_err(|e| ctx.err(fpos, e))?);
    }
    if let Some((_, _, fpos)) = flags.0.iter().find(|(name, _, _)| name == "device") {
        return Err(ctx.err(*fpos, "RUN --device is not supported yet"));
    }
    let network = match flags.get("network") {
        Some((value, fpos)) => parse_network(value).map_err(|e| ctx.err(fpos, e))?,
        None => RunNetwork::Default,
    };
    let security = match flags.get("security") {
        Some((value, fpos)) => parse_security(value).map_err(|e| ctx.err(fpos, e))?,
        None => RunSecurity::Sandbox,
    };
    Ok((mounts, network, security))
}

/// Go's `time.ParseDuration`, in nanoseconds (negative allowed).
fn parse_go_duration(s: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration \"{s}\"");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            other => return Err(format!("time: unknown unit \"{other}\" in duration \"{s}\"")),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let ns = total.round() as i128;
    Ok(if neg { -ns } else { ns })
}

/// BuildKit's `parseOptInterval`: `None` when not given; 0, or at least 1ms.
fn healthcheck_interval(ctx: &Ctx<'_>, flags: &Flags, name: &str) -> Result<Option<u64>, Error> {
    let Some((value, pos)) = flags.get(name) else { return Ok(None) };
    if value.is_empty() {
        return Ok(None);
    }
    let d = parse_go_duration(value).map_err(|e| ctx.err(pos, e))?;
    if d == 0 {
        return Ok(Some(0));
    }
    if d < 1_000_000 {
        return Err(ctx.err(pos, format!("Interval \"{name}\" cannot be less than 1ms")));
    }
    Ok(Some(d as u64))
}

/// Whether `src` is a git source for ADD (BuildKit's `isGitSource`, simplified).
fn is_git_source(src: &str) -> bool {
    if src.starts_with("git@") || src.starts_with("git://") || src.starts_with("ssh://") {
        return true;
    }
    let Some(rest) = src.strip_prefix("https://").or_else(|| src.strip_prefix("http://")) else {
        return false;
    };
    let path = rest.split('#').next().unwrap_or(rest);
    path.ends_with(".git") || (rest.contains('#') && path.contains(".git"))
}

fn is_http_source(src: &str) -> bool {
    (src.starts_with("http://") || src.starts_with("https://")) && !is_git_source(src)
}

/// go-digest's `Parse` for `--checksum`.
fn check_digest(value: &str) -> Result<(), String> {
    let Some((alg, hex)) = value.split_once(':') else {
        return Err("invalid checksum digest format".into());
    };
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm".into()),
    };
    if hex.len() != len {
        return Err("invalid checksum digest length".into());
    }
    if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err("invalid checksum digest format".into());
    }
    Ok(())
}

/// Context paths with positions, heredoc files, destination, history words.
type CopySources = (Vec<(String, Pos)>, Vec<InlineFile>, String, Vec<String>);

/// The sources of COPY/ADD: context paths (expanded), heredoc files (expanded unless the
/// delimiter was quoted), each path with its position.
fn copy_sources(ctx: &Ctx<'_>, ins: &Instruction, env: &[(String, String)]) -> Result<CopySources, Error> {
    let last = ins.args.len().saturating_sub(1);
    let mut paths = Vec::new();
    let mut heredocs = Vec::new();
    let mut history = Vec::new();
    for (i, src) in ins.args.iter().enumerate().take(last) {
        let pos = ins.arg_pos(i);
        match heredoc_word(src) {
            Some(doc) => {
                let mut content = ins
                    .heredocs
                    .iter()
                    .find(|h| h.name == doc.name)
                    .map(|h| h.content.clone())
                    .unwrap_or_default();
                if doc.chomp {
                    content = chomp_heredoc_content(&content);
                }
                if doc.expand {
                    content = expand_raw(&content, env)
                        .map_err(|e| ctx.err(pos, format!("failed to expand heredoc {}: {e}", doc.name)))?;
                }
                history.push(format!("<<{}", doc.name));
                heredocs.push(InlineFile { name: doc.name, content });
            }
            None => {
                let path = ctx.expand(src, env, pos)?;
                history.push(path.clone());
                paths.push((path, pos));
            }
        }
    }
    let dest = ctx.expand(ins.args.get(last).map_or("", String::as_str), env, ins.arg_pos(last))?;
    Ok((paths, heredocs, dest, history))
}

/// BuildKit's raw expansion of heredoc content (`SkipProcessQuotes`: quotes are literal,
/// `\` still escapes).
fn expand_raw(content: &str, env: &[(String, String)]) -> Result<String, String> {
    let mut escaped = String::with_capacity(content.len());
    for c in content.chars() {
        if c == '\'' || c == '"' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    expand_word_with_escape(&escaped, env, '\\')
}

/// `COPY`/`ADD` history text: BuildKit's commit message.
fn copy_history(
    keyword: &str,
    chown: &Option<String>,
    chmod: &Option<String>,
    srcs: &[String],
    dest: &str,
) -> String {
    let mut out = keyword.to_owned();
    if let Some(c) = chown {
        out.push_str(&format!(" --chown={c}"));
    }
    if let Some(c) = chmod {
        out.push_str(&format!(" --chmod={c}"));
    }
    for s in srcs {
        out.push(' ');
        out.push_str(s);
    }
    out.push(' ');
    out.push_str(dest);
    out
}

fn parse_chmod(ctx: &Ctx<'_>, value: &str, pos: Pos) -> Result<u32, Error> {
    u32::from_str_radix(value, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| ctx.err(pos, format!("invalid chmod parameter: {value}")))
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
    let escape = dockerfile.escape;
    let mut ctx = Ctx { file, escape, build_args: options.build_args.clone(), warnings: Vec::new() };

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

    // Stage names first: `--target` and TARGETSTAGE need them.
    let mut names: Vec<Option<String>> = Vec::new();
    for (from, _) in &stage_list {
        let name = from.args.get(2).map(|n| n.to_lowercase());
        if let (Some(name), Some(raw)) = (&name, from.args.get(2)) {
            if !valid_stage_name(name) {
                return Err(ctx.err(
                    from.arg_pos(2),
                    format!("invalid name for build stage: \"{raw}\", name can't start with a number or contain symbols"),
                ));
            }
            if names.iter().any(|n| n.as_ref() == Some(name)) {
                return Err(ctx.err(from.arg_pos(2), format!("duplicate stage name \"{name}\"")));
            }
        }
        names.push(name);
    }
    let target = match &options.target {
        Some(t) => names
            .iter()
            .position(|n| n.as_deref() == Some(t.to_lowercase().as_str()))
            .ok_or_else(|| Error::at(start.clone(), format!("target stage \"{t}\" could not be found")))?,
        None => names.len() - 1,
    };

    // Global args: BuildKit's defaults (platforms, TARGETSTAGE), then the ARGs before FROM.
    let host = hostutil::platform::host();
    let (os, arch, variant) = (host.os, host.architecture, host.variant);
    let platform = host.to_string();
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
        if let Some((raw, pos)) = flags.get("platform") {
            let value = ctx.expand(raw, &global, pos)?;
            if value.is_empty() {
                return Err(ctx.err(from_pos, format!("empty platform value from expression {raw}")));
            }
            if value.to_ascii_lowercase() != platform {
                let loc = ctx.loc(from_pos);
                ctx.warnings.push(format!(
                    "[Warning] {loc}: FROM --platform={value} differs from the host platform ({platform}); building for the host platform"
                ));
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
        let (base, mut state, triggers) = if base_name == "scratch" {
            (Base::Scratch, StageState::new(Vec::new(), "/".into()), Vec::new())
        } else if let Some(j) = earlier {
            let mut state = infos[j].final_state.clone();
            let triggers = std::mem::take(&mut state.on_build);
            (Base::Stage(j), state, triggers)
        } else {
            let config = resolver.resolve(&base_name).map_err(|source| Error::BaseImage {
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
            let workdir = config.working_dir.filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
            (Base::Image(base_name.clone()), StageState::new(env, workdir), config.on_build)
        };

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
        for ins in instructions {
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
    for w in &dockerfile.warnings {
        ctx.warnings.push(format!(
            "[Warning] {}: {} (NoEmptyContinuation)",
            ctx.loc(Pos { line: w.line, column: 1 }),
            w.message
        ));
    }
    Ok(BuildDefinition { stages, target, warnings: ctx.warnings })
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
    let op = match ins.name.as_str() {
        "arg" => {
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
            Op::Config(ConfigOp::Arg(history))
        }
        "run" => {
            let (mounts, network, security) = lower_run_flags(ctx, &flags, state, scope)?;
            let args = if ins.json {
                ins.args.clone()
            } else {
                let cmd = ins.args.first().cloned().unwrap_or_default();
                let script = match ins.heredocs.first() {
                    None => cmd,
                    Some(first) if heredoc_word(&cmd).is_some() => {
                        // The whole command is one heredoc: its content is the script.
                        let data = if first.chomp {
                            chomp_heredoc_content(&first.content)
                        } else {
                            first.content.clone()
                        };
                        if data.starts_with("#!") {
                            return Err(ctx.err(
                                pos,
                                "RUN with a heredoc starting with #! (a script file) is not supported yet",
                            ));
                        }
                        text.push_str(&format!(" ({})", summarize_heredoc(&first.content)));
                        data
                    }
                    Some(_) => {
                        // Heredocs later in the command: the shell reads them itself.
                        let mut script = cmd;
                        for doc in &ins.heredocs {
                            script.push('\n');
                            script.push_str(&doc.content);
                            script.push_str(&doc.name);
                        }
                        script
                    }
                };
                let mut args = state.shell.clone();
                args.push(script);
                args
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
            // As BuildKit's history: the command only, whatever the mounts, network and security.
            let created_by = format!("RUN {}", run_command_string(&args, state));
            Op::Run(RunOp { args, build_args, created_by, mounts, network, security })
        }
        "copy" => {
            let mut from = None;
            let mut chown = None;
            let mut chmod = None;
            let mut chmod_text = None;
            for (name, value, fpos) in &flags.0 {
                let fpos = *fpos;
                match name.as_str() {
                    "from" => {
                        let value = ctx.expand(value, &state.env, fpos)?;
                        let later = || {
                            format!(
                                "cannot copy from stage \"{value}\", it needs to be defined before current stage \"{}\"",
                                scope.display
                            )
                        };
                        from = Some(resolve_stage_ref(ctx, &value, scope, fpos, later)?);
                    }
                    "chown" => chown = Some(ctx.expand(value, &state.env, fpos)?),
                    "chmod" => {
                        let value = ctx.expand(value, &state.env, fpos)?;
                        chmod = Some(parse_chmod(ctx, &value, fpos)?);
                        chmod_text = Some(value);
                    }
                    other => return Err(ctx.err(fpos, format!("COPY --{other} is not supported yet"))),
                }
            }
            let (paths, heredocs, dest, history) = copy_sources(ctx, ins, &state.env)?;
            let created_by = copy_history("COPY", &chown, &chmod_text, &history, &dest);
            let sources = paths.into_iter().map(|(p, _)| p).collect();
            Op::Copy(CopyOp { sources, heredocs, dest, from, chown, chmod, created_by })
        }
        "add" => {
            let mut chown = None;
            let mut chmod = None;
            let mut chmod_text = None;
            let mut checksum = None;
            for (name, value, fpos) in &flags.0 {
                let fpos = *fpos;
                match name.as_str() {
                    "chown" => chown = Some(ctx.expand(value, &state.env, fpos)?),
                    "chmod" => {
                        let value = ctx.expand(value, &state.env, fpos)?;
                        chmod = Some(parse_chmod(ctx, &value, fpos)?);
                        chmod_text = Some(value);
                    }
                    "checksum" => {
                        let value = ctx.expand(value, &state.env, fpos)?;
                        check_digest(&value).map_err(|e| ctx.err(fpos, e))?;
                        checksum = Some((value, fpos));
                    }
                    "keep-git-dir" => {
                        return Err(ctx.err(fpos, "ADD --keep-git-dir is only valid for git sources, and ADD from git is not supported"));
                    }
                    other => return Err(ctx.err(fpos, format!("ADD --{other} is not supported yet"))),
                }
            }
            let (paths, heredocs, dest, history) = copy_sources(ctx, ins, &state.env)?;
            let mut sources = Vec::new();
            let mut urls = Vec::new();
            for (p, ppos) in paths {
                if is_git_source(&p) {
                    return Err(ctx.err(ppos, "ADD from git is not supported"));
                }
                if is_http_source(&p) {
                    urls.push(p);
                } else {
                    sources.push(p);
                }
            }
            if let Some((_, fpos)) = &checksum {
                if sources.len() + urls.len() + heredocs.len() != 1 {
                    return Err(ctx.err(*fpos, "checksum can't be specified for multiple sources"));
                }
                if urls.is_empty() {
                    return Err(ctx.err(*fpos, "checksum requires HTTP(S) or Git sources"));
                }
            }
            let created_by = copy_history("ADD", &chown, &chmod_text, &history, &dest);
            Op::Add(AddOp {
                sources,
                urls,
                heredocs,
                dest,
                chown,
                chmod,
                checksum: checksum.map(|(c, _)| c),
                created_by,
            })
        }
        "env" | "label" => {
            // Every pair is expanded against the environment before this instruction.
            let mut expanded = Vec::new();
            for (i, triple) in ins.args.chunks(3).enumerate() {
                let p = ins.arg_pos(i * 3);
                let k = triple.first().map_or("", String::as_str);
                let v = triple.get(1).map_or("", String::as_str);
                expanded.push((ctx.expand(k, &state.env, p)?, ctx.expand(v, &state.env, p)?));
            }
            if ins.name == "env" {
                for (k, v) in &expanded {
                    set_env(&mut state.env, k, v);
                    set_env(&mut state.config_env, k, v);
                }
                Op::Config(ConfigOp::Env(expanded))
            } else {
                Op::Config(ConfigOp::Label(expanded))
            }
        }
        "workdir" => {
            let p = ins.args_pos;
            let path = ctx.expand(ins.args.first().map_or("", String::as_str), &state.env, p)?;
            if path.is_empty() {
                return Err(ctx.err(p, "cannot normalize nothing"));
            }
            let path = if path.starts_with('/') {
                gopath::clean(&path)
            } else {
                gopath::clean(&format!("/{}/{path}", state.workdir))
            };
            state.workdir = path.clone();
            Op::Workdir(path)
        }
        "user" => Op::Config(ConfigOp::User(ctx.expand(
            ins.args.first().map_or("", String::as_str),
            &state.env,
            ins.args_pos,
        )?)),
        "cmd" => Op::Config(ConfigOp::Cmd(command_args(ins, state))),
        "entrypoint" => Op::Config(ConfigOp::Entrypoint(command_args(ins, state))),
        "expose" => {
            let mut ports: Vec<String> = Vec::new();
            for (i, arg) in ins.args.iter().enumerate() {
                let p = ins.arg_pos(i);
                for word in ctx.expand_words(arg, &state.env, p)? {
                    for port in normalize_ports(&word).map_err(|e| ctx.err(p, e))? {
                        if !ports.contains(&port) {
                            ports.push(port);
                        }
                    }
                }
            }
            Op::Config(ConfigOp::Expose(ports))
        }
        "volume" => {
            let mut volumes = Vec::new();
            for (i, word) in ins.args.iter().enumerate() {
                let v = ctx.expand(word, &state.env, ins.arg_pos(i))?;
                if v.is_empty() {
                    return Err(ctx.err(pos, "VOLUME specified can not be an empty string"));
                }
                volumes.push(v);
            }
            Op::Config(ConfigOp::Volume(volumes))
        }
        "stopsignal" => {
            let value = ctx.expand(ins.args.first().map_or("", String::as_str), &state.env, ins.args_pos)?;
            if !valid_signal(&value) {
                return Err(ctx.err(ins.args_pos, format!("Invalid signal: {value}")));
            }
            Op::Config(ConfigOp::StopSignal(value))
        }
        "shell" => {
            state.shell = ins.args.clone();
            Op::Config(ConfigOp::Shell(ins.args.clone()))
        }
        "maintainer" => {
            let loc = ctx.loc(pos);
            ctx.warnings.push(format!(
                "[Warning] {loc}: MAINTAINER instruction is deprecated in favor of using label (MaintainerDeprecated)"
            ));
            Op::Config(ConfigOp::Maintainer(ins.args.first().cloned().unwrap_or_default()))
        }
        "healthcheck" => {
            let typ = ins.args.first().map(|t| t.to_uppercase()).unwrap_or_default();
            if typ == "NONE" {
                Op::Config(ConfigOp::Healthcheck(Healthcheck {
                    test: vec!["NONE".into()],
                    interval: None,
                    timeout: None,
                    start_period: None,
                    start_interval: None,
                    retries: None,
                }))
            } else {
                if typ != "CMD" {
                    return Err(
                        ctx.err(ins.args_pos, format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"))
                    );
                }
                let cmd: Vec<String> = ins.args.iter().skip(1).cloned().collect();
                if cmd.is_empty() {
                    return Err(ctx.err(pos, "Missing command after HEALTHCHECK CMD"));
                }
                let mut test = vec![if ins.json { "CMD".to_owned() } else { "CMD-SHELL".to_owned() }];
                test.extend(cmd);
                let retries = match flags.get("retries") {
                    None | Some(("", _)) => None,
                    Some((v, fpos)) => {
                        let n: i32 = v.parse().map_err(|_| {
                            ctx.err(fpos, format!("strconv.ParseInt: parsing \"{v}\": invalid syntax"))
                        })?;
                        if n < 0 {
                            return Err(ctx.err(fpos, format!("--retries cannot be negative ({n})")));
                        }
                        Some(n as u32)
                    }
                };
                Op::Config(ConfigOp::Healthcheck(Healthcheck {
                    test,
                    interval: healthcheck_interval(ctx, &flags, "interval")?,
                    timeout: healthcheck_interval(ctx, &flags, "timeout")?,
                    start_period: healthcheck_interval(ctx, &flags, "start-period")?,
                    start_interval: healthcheck_interval(ctx, &flags, "start-interval")?,
                    retries,
                }))
            }
        }
        "onbuild" => {
            // BuildKit's `Expression`: the text after ONBUILD, heredoc bodies appended.
            let original = ins.original.trim_start();
            let after = original.get(ins.keyword.len()..).unwrap_or_default().trim_start();
            let mut trigger = after.to_owned();
            for doc in &ins.heredocs {
                trigger.push('\n');
                trigger.push_str(&doc.content);
                trigger.push_str(&doc.name);
            }
            state.on_build.push(trigger.clone());
            Op::Config(ConfigOp::Onbuild(trigger))
        }
        "from" => return Err(ctx.err(pos, "unexpected FROM")),
        _ => return Err(ctx.err(pos, parser::unknown_instruction_message(&ins.keyword))),
    };
    Ok(op)
}

/// CMD / ENTRYPOINT arguments: exec form as written, shell form wrapped in the SHELL.
fn command_args(ins: &Instruction, state: &StageState) -> Vec<String> {
    if ins.json {
        return ins.args.clone();
    }
    match ins.args.first() {
        Some(cmd) => {
            let mut args = state.shell.clone();
            args.push(cmd.clone());
            args
        }
        None => Vec::new(),
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

fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let mut lines = doc.lines();
    let first = lines.next().unwrap_or_default().to_owned();
    if lines.next().is_some() { first + "..." } else { first }
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
        Err(_) => names.iter().position(|n| n.as_deref() == Some(value.to_lowercase().as_str())),
    };
    match found {
        None if value.is_empty() => Err(ctx.err(offset, "missing a value on flag: --from")),
        None => Ok(CopyFrom::Image(value.to_owned())),
        Some(i) if i < scope.index => Ok(CopyFrom::Stage(i)),
        Some(i) if i == scope.index => {
            Err(ctx.err(offset, format!("circular dependency detected on stage: {}", scope.display)))
        }
        Some(_) => Err(ctx.err(offset, later())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn signals() {
        assert!(
            valid_signal("SIGTERM")
                && valid_signal("kill")
                && valid_signal("9")
                && valid_signal("SIGRTMIN+3")
        );
        assert!(!valid_signal("SIGFOO") && !valid_signal("0"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_go_duration("500ms").unwrap(), 500_000_000);
        assert_eq!(parse_go_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_go_duration("0").unwrap(), 0);
        assert!(
            parse_go_duration("10").is_err()
                && parse_go_duration("1x").is_err()
                && parse_go_duration("").is_err()
        );
    }

    #[test]
    fn digests_and_sources() {
        assert!(check_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(check_digest("sha256:abc").is_err() && check_digest("md5:x").is_err());
        assert!(is_git_source("https://github.com/a/b.git#main") && is_git_source("git@github.com:a/b"));
        assert!(is_http_source("https://example.com/f.tar.gz"));
    }
}
