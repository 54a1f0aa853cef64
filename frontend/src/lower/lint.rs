//! The build checks BuildKit runs while it converts a Dockerfile (`crate::lint` has the rules),
//! in its order: the parser's warnings, per-instruction checks, stage names, casing, FROM's
//! arguments, then per stage the checks BuildKit makes while dispatching it (tagged with the
//! stage, so that a build reports them for needed stages only).
//!
//! CopyIgnoredFile runs where the `.dockerignore` patterns are known (`copy_ignored`, given
//! them by the caller). Not run: InvalidBaseImagePlatform (frontend/README.md says why).

use std::collections::BTreeMap;

use crate::lint::{self, Linter};
use crate::parser::{Dockerfile, Instruction};

use super::{ins_pos, parse_arg_pairs};

/// BuildKit's predefined platform args: always known to FROM.
const PREDEFINED: [&str; 11] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
];

fn line(ins: &Instruction) -> usize {
    ins_pos(ins).line
}

/// Every check but the per-stage ones.
pub(super) fn check_file(
    l: &mut Linter,
    dockerfile: &Dockerfile,
    global_args: &[Instruction],
    stages: &[(&Instruction, Vec<&Instruction>)],
) {
    for w in &dockerfile.warnings {
        l.run_global(&lint::NO_EMPTY_CONTINUATION, w.line, "Empty continuation line".into());
    }
    // The checks BuildKit makes while parsing each instruction.
    for ins in &dockerfile.instructions {
        if ins.name == "maintainer" {
            l.run_at(
                ins,
                &lint::MAINTAINER_DEPRECATED,
                "Maintainer instruction is deprecated in favor of using label".into(),
            );
        }
        if ins.name == "from" && ins.args.len() == 3 {
            let name = &ins.args[2];
            if *name != name.to_lowercase() {
                l.run_at(ins, &lint::STAGE_NAME_CASING, format!("Stage name '{name}' should be lowercase"));
            }
            let (from, as_) = (&ins.keyword, &ins.args[1]);
            let mismatch = if *from == from.to_lowercase() {
                *as_ != as_.to_lowercase()
            } else if *from == from.to_uppercase() {
                *as_ != as_.to_uppercase()
            } else {
                false
            };
            if mismatch {
                l.run_at(
                    ins,
                    &lint::FROM_AS_CASING,
                    format!("'{as_}' and '{from}' keywords' casing do not match"),
                );
            }
            definition_description(l, ins, "FROM", &[name.to_lowercase()]);
        }
        if ins.name == "arg"
            && let Ok(pairs) = parse_arg_pairs(&ins.args)
        {
            let keys: Vec<String> = pairs.into_iter().map(|(k, _)| k).collect();
            definition_description(l, ins, "ARG", &keys);
        }
    }
    for (from, _) in stages {
        if let Some(name) = from.args.get(2).map(|n| n.to_lowercase())
            && (name == "context" || name == "scratch")
        {
            l.run_global(
                &lint::RESERVED_STAGE_NAME,
                line(from),
                format!("Stage name should not use the same name as reserved stage \"{name}\""),
            );
        }
    }
    let mut seen: Vec<String> = Vec::new();
    for (from, _) in stages {
        if let Some(name) = from.args.get(2).map(|n| n.to_lowercase()) {
            if seen.contains(&name) {
                l.run_global(
                    &lint::DUPLICATE_STAGE_NAME,
                    line(from),
                    format!("Duplicate stage name \"{name}\", stage names should be unique"),
                );
            }
            seen.push(name);
        }
    }
    casing(l, stages);
    from_args(l, global_args, stages);
}

/// InvalidDefinitionDescription (experimental): a comment right above a named FROM or an ARG
/// describes it, so its last line must start with the stage's or one of the args' names.
fn definition_description(l: &mut Linter, ins: &Instruction, instruction: &str, keys: &[String]) {
    let Some(last) = ins.comments.last() else { return };
    if keys.is_empty() {
        return;
    }
    let first_word = last.split(' ').next().unwrap_or_default();
    if keys.iter().any(|k| k == first_word) {
        return;
    }
    let example = if keys.len() > 1 { "<arg_key>" } else { keys[0].as_str() };
    l.run_at(
        ins,
        &lint::INVALID_DEFINITION_DESCRIPTION,
        format!("Comment for {instruction} should follow the format: `# {example} <description>`"),
    );
}

/// ConsistentInstructionCasing: the majority of the keywords written all lower or all upper
/// (a tie is upper) decides; global ARGs are not counted.
fn casing(l: &mut Linter, stages: &[(&Instruction, Vec<&Instruction>)]) {
    let all: Vec<&Instruction> =
        stages.iter().flat_map(|(f, rest)| std::iter::once(*f).chain(rest.iter().copied())).collect();
    let (mut lower, mut upper) = (0, 0);
    for ins in &all {
        let k = &ins.keyword;
        if *k == k.to_lowercase() {
            lower += 1;
        } else if *k == k.to_uppercase() {
            upper += 1;
        }
    }
    let majority_lower = lower > upper;
    for ins in &all {
        let k = &ins.keyword;
        let wrong = if majority_lower { *k != k.to_lowercase() } else { *k != k.to_uppercase() };
        if wrong {
            let casing = if majority_lower { "lowercase" } else { "uppercase" };
            l.run_global(
                &lint::CONSISTENT_INSTRUCTION_CASING,
                line(ins),
                format!("Command '{k}' should match the case of the command majority ({casing})"),
            );
        }
    }
}

/// UndefinedArgInFrom, RedundantTargetPlatform, FromPlatformFlagConstDisallowed.
fn from_args(l: &mut Linter, global_args: &[Instruction], stages: &[(&Instruction, Vec<&Instruction>)]) {
    let mut known: Vec<String> = PREDEFINED.iter().map(|s| s.to_string()).collect();
    for arg in global_args.iter().filter(|i| i.name == "arg") {
        if let Ok(pairs) = parse_arg_pairs(&arg.args) {
            known.extend(pairs.into_iter().map(|(k, _)| k));
        }
    }
    for (from, _) in stages {
        let platform = from.flags.iter().find_map(|f| f.strip_prefix("--platform="));
        let words = from.args.first().into_iter().map(String::as_str).chain(platform);
        for word in words {
            for var in variables(word) {
                if !known.contains(&var) {
                    let hint =
                        suggest(&var, &known).map(|s| format!(" (did you mean {s}?)")).unwrap_or_default();
                    l.run(
                        &lint::UNDEFINED_ARG_IN_FROM,
                        line(from),
                        None,
                        format!("FROM argument '{var}' is not declared{hint}"),
                    );
                }
            }
        }
        let Some(platform) = platform else { continue };
        if platform == "$TARGETPLATFORM" || platform == "${TARGETPLATFORM}" {
            l.run(
                &lint::REDUNDANT_TARGET_PLATFORM,
                line(from),
                None,
                format!("Setting platform to predefined {platform} in FROM is redundant as this is the default behavior"),
            );
        } else if !platform.contains('$') {
            let (os, arch) = match platform.split('/').collect::<Vec<_>>().as_slice() {
                [os, arch, ..] => (os.to_string(), normalize_arch(arch)),
                [arch] => ("linux".to_string(), normalize_arch(arch)),
                [] => continue,
            };
            let stage = from.args.get(2).map(|n| n.to_lowercase()).unwrap_or_default();
            if !stage.contains(&os) && !stage.contains(&arch) {
                l.run(
                    &lint::FROM_PLATFORM_FLAG_CONST_DISALLOWED,
                    line(from),
                    None,
                    format!("FROM --platform flag should not use constant value \"{platform}\""),
                );
            }
        }
    }
}

fn normalize_arch(arch: &str) -> String {
    match arch.to_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        a => a.into(),
    }
}

/// The checks BuildKit makes while dispatching stage `index`.
pub(super) fn check_stages(l: &mut Linter, stages: &[(&Instruction, Vec<&Instruction>)]) {
    // What a stage inherits from the stage it is FROM: a WORKDIR set, a SHELL.
    let mut inherited: Vec<(bool, bool)> = Vec::new();
    for (index, (from, instructions)) in stages.iter().enumerate() {
        let base = from.args.first().map(|b| b.to_lowercase()).unwrap_or_default();
        let parent = stages[..index]
            .iter()
            .rposition(|(f, _)| f.args.get(2).map(|n| n.to_lowercase()) == Some(base.clone()));
        let (mut workdir_set, mut shell_set) = parent.map_or((false, false), |p| inherited[p]);
        let mut previous: BTreeMap<&str, usize> = BTreeMap::new();
        let stage = Some(index);
        for ins in instructions {
            let name = ins.name.as_str();
            if matches!(name, "cmd" | "entrypoint" | "healthcheck") {
                if let Some(prev) = previous.insert(name, line(ins)) {
                    l.run(
                        &lint::MULTIPLE_INSTRUCTIONS_DISALLOWED,
                        prev,
                        stage,
                        format!(
                            "Multiple {} instructions should not be used in the same stage because only the last one will be used",
                            ins.keyword
                        ),
                    );
                }
                if name != "healthcheck" && !ins.json && !shell_set {
                    l.run(
                        &lint::JSON_ARGS_RECOMMENDED,
                        line(ins),
                        stage,
                        format!(
                            "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                            ins.keyword
                        ),
                    );
                }
            }
            match name {
                "shell" => shell_set = true,
                "workdir" => {
                    let path = ins.args.first().map(String::as_str).unwrap_or("");
                    // A path from a variable is not judged (BuildKit expands it first).
                    if !workdir_set && !path.starts_with('/') && !path.starts_with('$') {
                        l.run(
                            &lint::WORKDIR_RELATIVE_PATH,
                            line(ins),
                            stage,
                            format!("Relative workdir \"{path}\" can have unexpected results if the base image changes"),
                        );
                    }
                    workdir_set = true;
                }
                "env" | "label" => {
                    let triples: Vec<&[String]> = ins.args.chunks(3).collect();
                    if triples.iter().any(|t| t.get(2).is_none_or(|sep| sep != "=")) {
                        let k = &ins.keyword;
                        l.run(
                            &lint::LEGACY_KEY_VALUE_FORMAT,
                            line(ins),
                            stage,
                            format!(
                                "\"{k} key=value\" should be used instead of legacy \"{k} key value\" format"
                            ),
                        );
                    }
                    if name == "env" {
                        for t in &triples {
                            secret(l, ins, stage, "ENV", &t[0]);
                        }
                    }
                }
                "arg" => {
                    for (key, _) in parse_arg_pairs(&ins.args).unwrap_or_default() {
                        secret(l, ins, stage, "ARG", &key);
                    }
                }
                "expose" => {
                    let mut ports = ins.args.clone();
                    ports.sort();
                    for port in &ports {
                        let (spec, proto) = port.split_once('/').unwrap_or((port, ""));
                        if proto != proto.to_lowercase() {
                            l.run(
                                &lint::EXPOSE_PROTO_CASING,
                                line(ins),
                                stage,
                                format!(
                                    "Defined protocol '{port}' in EXPOSE instruction should be lowercase"
                                ),
                            );
                        }
                        if spec.contains(':') {
                            l.run(
                                &lint::EXPOSE_INVALID_FORMAT,
                                line(ins),
                                stage,
                                format!(
                                    "EXPOSE instruction should not define an IP address or host-port mapping, found '{port}'"
                                ),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        inherited.push((workdir_set, shell_set));
    }
}

fn secret(l: &mut Linter, ins: &Instruction, stage: Option<usize>, kind: &str, key: &str) {
    if lint::is_secret_name(key) {
        l.run(
            &lint::SECRETS_USED_IN_ARG_OR_ENV,
            line(ins),
            stage,
            format!("Do not use ARG or ENV instructions for sensitive data ({kind} \"{key}\")"),
        );
    }
}

/// UndefinedVar: the words BuildKit expands with reporting (ENV and LABEL keys and values,
/// COPY/ADD flags, sources and destination, WORKDIR, USER, VOLUME, STOPSIGNAL, RUN's `--mount`
/// values, a stage ARG's default when no `--build-arg` gives it) may only name variables the
/// stage has: the image's ENV, PATH, ENV so far, and the ARGs declared in the stage (or its
/// parent stage). `env` and `args` are the state before the instruction.
pub(super) fn undefined_vars(
    l: &mut Linter,
    ins: &Instruction,
    env: &[(String, String)],
    args: &[(String, Option<String>)],
    stage: usize,
    build_args: &[(String, String)],
) {
    let mut words: Vec<&str> = Vec::new();
    match ins.name.as_str() {
        "env" | "label" => {
            for t in ins.args.chunks(3) {
                words.extend(t.iter().take(2).map(String::as_str));
            }
        }
        "copy" | "add" => {
            words.extend(ins.flags.iter().filter_map(|f| flag_value(f, &["chown", "chmod", "checksum"])));
            words.extend(ins.args.iter().map(String::as_str));
        }
        "workdir" | "user" | "volume" | "stopsignal" => words.extend(ins.args.iter().map(String::as_str)),
        "run" => words.extend(ins.flags.iter().filter_map(|f| flag_value(f, &["mount"]))),
        "arg" => {
            for (key, default) in parse_arg_pairs(&ins.args).unwrap_or_default() {
                if !build_args.iter().any(|(k, _)| *k == key)
                    && let Some(d) = default
                {
                    // Only this one word: the variables of a default are reported with its ARG.
                    for var in variables(&d) {
                        report(l, ins, stage, env, args, &var);
                    }
                }
            }
        }
        _ => {}
    }
    for word in words {
        for var in variables(word) {
            report(l, ins, stage, env, args, &var);
        }
    }
}

fn report(
    l: &mut Linter,
    ins: &Instruction,
    stage: usize,
    env: &[(String, String)],
    args: &[(String, Option<String>)],
    var: &str,
) {
    let defined = var == "PATH" || env.iter().any(|(k, _)| k == var) || args.iter().any(|(k, _)| k == var);
    if defined || var.starts_with("BUILDKIT_SBOM_SCAN_") {
        return;
    }
    let keys: Vec<String> = env.iter().map(|(k, _)| k.clone()).collect();
    let hint = suggest(var, &keys).map(|s| format!(" (did you mean ${s}?)")).unwrap_or_default();
    l.run(
        &lint::UNDEFINED_VAR,
        line(ins),
        Some(stage),
        format!("Usage of undefined variable '${var}'{hint}"),
    );
}

/// The value of a `--NAME=value` flag word whose NAME is one of `names`.
fn flag_value<'a>(f: &'a str, names: &[&str]) -> Option<&'a str> {
    let (k, v) = f.strip_prefix("--")?.split_once('=')?;
    names.contains(&k).then_some(v)
}

/// The variables a word refers to (`$X`, `${X}`, `${X:-d}`...), outside single quotes and
/// escapes.
fn variables(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut quoted = false;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '\'' => quoted = !quoted,
            '$' if !quoted => {
                let braced = chars.get(i + 1) == Some(&'{');
                let start = if braced { i + 2 } else { i + 1 };
                let mut end = start;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
                    end += 1;
                }
                if end > start {
                    out.push(chars[start..end].iter().collect());
                }
                i = end.max(i + 1) - 1;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// BuildKit's `suggest.Search`, case-sensitive as on Linux (`parser::suggest`).
fn suggest(value: &str, options: &[String]) -> Option<String> {
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    crate::parser::suggest(value, &options, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_and_suggestions() {
        assert_eq!(variables("busybox:${VERSION:-1} $A '$B' \\$C"), ["VERSION", "A"]);
        assert_eq!(suggest("VERSON", &["VERSION".into(), "OTHER".into()]).as_deref(), Some("VERSION"));
        assert_eq!(suggest("ZZZZZZ", &["VERSION".into()]), None);
    }
}
