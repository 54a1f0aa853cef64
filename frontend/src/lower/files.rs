//! COPY and ADD: sources (context paths, heredocs, URLs), `--from`, `--chown`, `--chmod`,
//! `--checksum`, and their history text.

use super::*;

/// A `--checksum` that go-digest's `Parse` refuses.
#[derive(Debug, thiserror::Error)]
pub(super) enum DigestError {
    #[error("invalid checksum digest format")]
    Format,
    #[error("unsupported digest algorithm")]
    Algorithm,
    #[error("invalid checksum digest length")]
    Length,
}

/// Whether `src` is a git source for ADD (BuildKit's `isGitSource`, simplified).
pub(super) fn is_git_source(src: &str) -> bool {
    if src.starts_with("git@") || src.starts_with("git://") || src.starts_with("ssh://") {
        return true;
    }
    let Some(rest) = src.strip_prefix("https://").or_else(|| src.strip_prefix("http://")) else {
        return false;
    };
    let path = rest.split('#').next().unwrap_or(rest);
    path.ends_with(".git") || (rest.contains('#') && path.contains(".git"))
}

pub(super) fn is_http_source(src: &str) -> bool {
    (src.starts_with("http://") || src.starts_with("https://")) && !is_git_source(src)
}

/// go-digest's `Parse` for `--checksum`.
pub(super) fn check_digest(value: &str) -> Result<(), DigestError> {
    let Some((alg, hex)) = value.split_once(':') else {
        return Err(DigestError::Format);
    };
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(DigestError::Algorithm),
    };
    if hex.len() != len {
        return Err(DigestError::Length);
    }
    if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(DigestError::Format);
    }
    Ok(())
}

/// Context paths with positions, heredoc files, destination, history words.
pub(super) type CopySources = (Vec<(String, Pos)>, Vec<InlineFile>, String, Vec<String>);

/// The sources of COPY/ADD: context paths (expanded), heredoc files (expanded unless the
/// delimiter was quoted), each path with its position.
pub(super) fn copy_sources(
    ctx: &Ctx<'_>,
    ins: &Instruction,
    env: &[(String, String)],
) -> Result<CopySources, Error> {
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
pub(super) fn expand_raw(content: &str, env: &[(String, String)]) -> Result<String, ExpandError> {
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
pub(super) fn copy_history(
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

pub(super) fn parse_chmod(ctx: &Ctx<'_>, value: &str, pos: Pos) -> Result<u32, Error> {
    u32::from_str_radix(value, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| ctx.err(pos, format!("invalid chmod parameter: {value}")))
}

pub(super) fn lower_copy(
    ctx: &mut Ctx<'_>,
    ins: &Instruction,
    flags: &Flags,
    state: &mut StageState,
    scope: &Scope<'_>,
) -> Result<Op, Error> {
    let mut from = None;
    let mut chown = None;
    let mut chmod = None;
    let mut chmod_text = None;
    let mut exclude = Vec::new();
    let mut parents = false;
    let mut link = false;
    for (name, value, fpos) in &flags.0 {
        let fpos = *fpos;
        match name.as_str() {
            // Not expanded: BuildKit's `CopyCommand.Expand` leaves the patterns alone.
            "exclude" => exclude.push(value.clone()),
            "parents" => parents = value == "true",
            "link" => link = value == "true",
            "from" => {
                // BuildKit's `toCommand` resolves --from before any ARG has a value, and
                // refuses a value that expansion would change (with its advice).
                if ctx.expand(value, &[], fpos)? != *value {
                    return Err(ctx.err(
                        fpos,
                        "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
                    ));
                }
                let value = value.clone();
                let later = || {
                    format!(
                        "cannot copy from stage \"{value}\", it needs to be defined before current stage \"{}\"",
                        scope.display
                    )
                };
                from = Some(resolve_stage_ref(ctx, &value, scope, fpos, later)?);
            }
            // Empty after expansion: no chown at all (BuildKit adds WithUser only if non-empty).
            "chown" => chown = Some(ctx.expand(value, &state.env, fpos)?).filter(|c| !c.is_empty()),
            "chmod" => {
                let value = ctx.expand(value, &state.env, fpos)?;
                chmod = Some(parse_chmod(ctx, &value, fpos)?);
                chmod_text = Some(value);
            }
            other => return Err(ctx.err(fpos, format!("COPY --{other} is not supported yet"))),
        }
    }
    let (paths, heredocs, dest, history) = copy_sources(ctx, ins, &state.env)?;
    // BuildKit's commit message names --parents (before --chown).
    let keyword = if parents { "COPY --parents" } else { "COPY" };
    let created_by = copy_history(keyword, &chown, &chmod_text, &history, &dest);
    let sources = paths.into_iter().map(|(p, _)| p).collect();
    // BuildKit links only without --chmod (`dispatchCopy`: `cfg.link && cfg.chmod == ""`);
    // with it the copy is an ordinary one.
    let link = link && chmod.is_none();
    Ok(Op::Copy(CopyOp { sources, heredocs, dest, from, chown, chmod, exclude, parents, link, created_by }))
}

pub(super) fn lower_add(
    ctx: &mut Ctx<'_>,
    ins: &Instruction,
    flags: &Flags,
    state: &mut StageState,
) -> Result<Op, Error> {
    let mut chown = None;
    let mut chmod = None;
    let mut chmod_text = None;
    let mut checksum = None;
    let mut keep_git_dir = None;
    let mut exclude = Vec::new();
    let mut link = false;
    let mut unpack = None;
    for (name, value, fpos) in &flags.0 {
        let fpos = *fpos;
        match name.as_str() {
            // Empty after expansion: no chown at all (BuildKit adds WithUser only if non-empty).
            "chown" => chown = Some(ctx.expand(value, &state.env, fpos)?).filter(|c| !c.is_empty()),
            "chmod" => {
                let value = ctx.expand(value, &state.env, fpos)?;
                chmod = Some(parse_chmod(ctx, &value, fpos)?);
                chmod_text = Some(value);
            }
            "checksum" => {
                let value = ctx.expand(value, &state.env, fpos)?;
                checksum = Some((value, fpos));
            }
            "keep-git-dir" => keep_git_dir = Some((value == "true", fpos)),
            "exclude" => exclude.push(value.clone()),
            "link" => link = value == "true",
            "unpack" => unpack = Some(value == "true"),
            other => return Err(ctx.err(fpos, format!("ADD --{other} is not supported yet"))),
        }
    }
    let (paths, heredocs, dest, history) = copy_sources(ctx, ins, &state.env)?;
    let mut sources = Vec::new();
    let mut urls = Vec::new();
    let mut git = Vec::new();
    for (p, _) in paths {
        if is_git_source(&p) {
            git.push(p);
        } else if is_http_source(&p) {
            urls.push(p);
        } else {
            sources.push(p);
        }
    }
    if let Some((value, fpos)) = &checksum {
        if sources.len() + urls.len() + git.len() + heredocs.len() != 1 {
            return Err(ctx.err(*fpos, "checksum can't be specified for multiple sources"));
        }
        if urls.is_empty() && git.is_empty() {
            return Err(ctx.err(*fpos, "checksum requires HTTP(S) or Git sources"));
        }
        if !urls.is_empty() {
            check_digest(value).map_err(|e| ctx.err(*fpos, e))?;
        } else if !(7..=64).contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ctx.err(*fpos, format!("invalid git checksum {value:?}: expected a commit id")));
        }
    }
    if let Some((_, fpos)) = keep_git_dir
        && git.is_empty()
    {
        return Err(ctx.err(fpos, "ADD --keep-git-dir is only valid for git sources"));
    }
    let created_by = copy_history("ADD", &chown, &chmod_text, &history, &dest);
    Ok(Op::Add(AddOp {
        sources,
        urls,
        heredocs,
        dest,
        chown,
        chmod,
        checksum: checksum.map(|(c, _)| c),
        git,
        keep_git_dir: keep_git_dir.is_some_and(|(k, _)| k),
        exclude,
        link: link && chmod.is_none(),
        unpack,
        created_by,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_sources() {
        assert!(check_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(matches!(check_digest("sha256:abc"), Err(DigestError::Length)));
        assert!(matches!(check_digest("md5:x"), Err(DigestError::Algorithm)));
        assert!(is_git_source("https://github.com/a/b.git#main") && is_git_source("git@github.com:a/b"));
        assert!(is_http_source("https://example.com/f.tar.gz"));
    }
}
