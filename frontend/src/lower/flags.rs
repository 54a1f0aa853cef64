//! Instruction flags: which each instruction takes, parsed once, checked as BuildKit checks
//! them, and RUN's (`--mount`, `--network`, `--security`) lowered.

use super::*;

/// The kinds of BuildKit's `BFlags`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FlagKind {
    Bool,
    String,
    Strings,
}

/// Flags of one instruction after BuildKit's `BFlags.Parse`: name, value (`true`/`false` for
/// booleans), position.
#[derive(Default)]
pub(super) struct Flags(pub(super) Vec<(String, String, Pos)>);

impl Flags {
    pub(super) fn get(&self, name: &str) -> Option<(&str, Pos)> {
        self.0.iter().rev().find(|(n, _, _)| n == name).map(|(_, v, p)| (v.as_str(), *p))
    }
}

/// The flags each instruction accepts, as BuildKit declares them.
pub(super) fn allowed_flags(ins: &Instruction) -> &'static [(&'static str, FlagKind)] {
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
pub(super) fn parse_flags(ctx: &Ctx<'_>, ins: &Instruction) -> Result<Flags, Error> {
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
pub(super) fn check_instruction(ctx: &Ctx<'_>, ins: &Instruction) -> Result<(), Error> {
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
        // An empty RUN is BuildKit's `sh -c ""` (parseRun has no argument check).
        "run" => {}
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
pub(super) fn check_run_flags(ctx: &Ctx<'_>, flags: &Flags) -> Result<(), Error> {
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
pub(super) fn lower_run_flags(
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
        let mut expand = |word: &str| expand_word_with_escape(word, &state.env, ctx.escape);
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
