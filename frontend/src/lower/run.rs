//! RUN: the command (exec form, shell form in the stage's SHELL, heredoc scripts), the build
//! args its environment gets, and its history text.

use super::*;

pub(super) fn lower_run(
    ctx: &mut Ctx<'_>,
    ins: &Instruction,
    flags: &Flags,
    state: &mut StageState,
    scope: &Scope<'_>,
    text: &mut String,
) -> Result<Op, Error> {
    let (mut mounts, network, security) = lower_run_flags(ctx, flags, state, scope)?;
    let args = if ins.json {
        ins.args.clone()
    } else {
        let cmd = ins.args.first().cloned().unwrap_or_default();
        let script = match ins.heredocs.first() {
            None => cmd,
            Some(first) if heredoc_word(&cmd).is_some() => {
                // The whole command is one heredoc: its content is the script.
                let data =
                    if first.chomp { chomp_heredoc_content(&first.content) } else { first.content.clone() };
                text.push_str(&format!(" ({})", summarize_heredoc(&first.content)));
                if data.starts_with("#!") {
                    // A script with its interpreter: a file of its own, run by path
                    // (BuildKit's `dispatchRun`; the shell still starts it).
                    let target = format!("/dev/pipes/{}", first.name);
                    mounts.push(RunMount::File { target: target.clone(), content: data, mode: 0o755 });
                    target
                } else {
                    data
                }
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
    // What the RUN's environment has beyond the image config: proxies, and ARG values.
    let mut proxy_env: Vec<String> = Vec::new();
    for (k, v) in &ctx.build_args {
        if PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(k)) {
            for key in [k.to_ascii_uppercase(), k.to_ascii_lowercase()] {
                if env_get(&state.env, &key).is_none() {
                    proxy_env.retain(|a| !a.starts_with(&format!("{key}=")));
                    proxy_env.push(format!("{key}={v}"));
                }
            }
        }
    }
    let mut build_args: Vec<String> = Vec::new();
    for (k, v) in &state.env {
        if env_get(&state.config_env, k) != Some(v.as_str()) {
            build_args.push(format!("{k}={v}"));
        }
    }
    // As BuildKit's history: the command only, whatever the mounts, network and security.
    let created_by = format!("RUN {}", run_command_string(&args, state));
    Ok(Op::Run(RunOp { args, build_args, proxy_env, created_by, mounts, network, security }))
}

/// CMD / ENTRYPOINT arguments: exec form as written, shell form wrapped in the SHELL.
pub(super) fn command_args(ins: &Instruction, state: &StageState) -> Vec<String> {
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
pub(super) fn run_command_string(args: &[String], state: &StageState) -> String {
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

pub(super) fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let mut lines = doc.lines();
    let first = lines.next().unwrap_or_default().to_owned();
    if lines.next().is_some() { first + "..." } else { first }
}
