//! Build contexts that are not a local directory, as `docker build URL` takes them: a git
//! repository (`https://host/repo.git#REF:DIR`, `git@host:repo.git`, `git://`, `ssh://`, or a
//! local repository `PATH#REF[:DIR]`) or an http(s) URL whose content is a tar archive (plain,
//! gzip or zstd; anything else is taken as the Dockerfile itself, with an empty context).
//!
//! Git goes through the `git` command, as BuildKit's git source does: it is what knows the
//! user's credential helpers, ssh keys and config, proxies and `insteadOf` rewrites, which a
//! library (gix, git2) would each have to be taught. The repository is fetched at depth 1 at
//! REF (a branch, a tag or a commit; the remote's HEAD if none), submodules included, and its
//! `.git` removed, as BuildKit's context (without `--keep-git-dir`).

use std::fs;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why a remote context could not be had.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("git context {url}: git is not installed (apt-get install git)")]
    NoGit { url: String },
    #[error("git context {url}: {message}")]
    Git { url: String, message: String },
    #[error("git context {url}: {subdir} is not a directory in the repository")]
    Subdir { url: String, subdir: String },
    #[error("context {url}: {message}")]
    Download { url: String, message: String },
    #[error("context {url}: {}", path.display())]
    Io {
        url: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A context named by a URL (or a local repository with `#`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteContext {
    Git { remote: String, reference: Option<String>, subdir: Option<String> },
    Http(String),
}

/// What fetching gave: the context directory, and the Dockerfile when the URL was one.
#[derive(Debug)]
pub struct Fetched {
    pub context: PathBuf,
    pub dockerfile: Option<Vec<u8>>,
}

impl RemoteContext {
    /// Docker's reading of a context argument that is not a local directory (the caller checks
    /// that first): git for `git://`, `git@`, `ssh://`, `github.com/` and http(s) URLs whose
    /// path ends in `.git` (before `#`); any other http(s) URL is a download; an existing
    /// repository directory followed by `#` is a local git context. `None`: not remote.
    pub fn parse(arg: &str) -> Option<RemoteContext> {
        let (base, fragment) = match arg.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (arg, None),
        };
        let git = |remote: &str| {
            let (reference, subdir) = match fragment {
                Some(f) => match f.split_once(':') {
                    Some((r, d)) => (r, Some(d)),
                    None => (f, None),
                },
                None => ("", None),
            };
            RemoteContext::Git {
                remote: remote.to_string(),
                reference: (!reference.is_empty()).then(|| reference.to_string()),
                subdir: subdir.filter(|d| !d.is_empty()).map(str::to_string),
            }
        };
        let http = arg.starts_with("http://") || arg.starts_with("https://");
        if ["git://", "git@", "ssh://"].iter().any(|p| base.starts_with(p)) {
            Some(git(base))
        } else if let Some(rest) = base.strip_prefix("github.com/") {
            Some(git(&format!("https://github.com/{rest}")))
        } else if http && (base.ends_with(".git") || base.ends_with(".git/")) {
            Some(git(base))
        } else if http {
            Some(RemoteContext::Http(arg.to_string()))
        } else if fragment.is_some() && is_repository(Path::new(base)) {
            Some(git(base))
        } else {
            None
        }
    }

    /// Fetches into `dir` (an empty directory the caller removes).
    pub fn fetch(&self, dir: &Path) -> Result<Fetched, RemoteError> {
        match self {
            RemoteContext::Git { remote, reference, subdir } => {
                git_checkout(remote, reference.as_deref(), dir, false)?;
                let context = match subdir {
                    None => dir.to_path_buf(),
                    Some(s) => {
                        let clean = hostutil::gopath::clean(&format!("/{s}"));
                        let path = dir.join(clean.trim_start_matches('/'));
                        // Symlinks in the repository must not lead the context out of it.
                        let inside = fs::canonicalize(&path)
                            .ok()
                            .zip(fs::canonicalize(dir).ok())
                            .is_some_and(|(p, d)| p.starts_with(d) && p.is_dir());
                        if !inside {
                            return Err(RemoteError::Subdir { url: remote.clone(), subdir: s.clone() });
                        }
                        path
                    }
                };
                Ok(Fetched { context, dockerfile: None })
            }
            RemoteContext::Http(url) => download(url, dir),
        }
    }
}

fn is_repository(path: &Path) -> bool {
    path.join(".git").exists() || (path.join("HEAD").is_file() && path.join("objects").is_dir())
}

fn git(url: &str, dir: &Path, args: &[&str]) -> Result<String, RemoteError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => RemoteError::NoGit { url: url.to_string() },
            _ => RemoteError::Git { url: url.to_string(), message: e.to_string() },
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("fatal:") || l.starts_with("error:"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("git failed")
        .trim()
        .to_string();
    Err(RemoteError::Git { url: url.to_string(), message })
}

/// The commit `reference` (a branch, a tag, a commit; HEAD if none) names in `remote`, asked
/// with `git ls-remote` (a full commit id needs no asking). For ADD's cache key: a ref that
/// moves is another input.
pub fn resolve_commit(remote: &str, reference: Option<&str>) -> Result<String, RemoteError> {
    let wanted = reference.unwrap_or("HEAD");
    if wanted.len() == 40 && wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(wanted.to_ascii_lowercase());
    }
    let out = git(remote, Path::new("/"), &["ls-remote", remote, wanted])?;
    // An annotated tag's own line names the tag object; its `^{}` line the commit.
    let lines: Vec<(&str, &str)> = out.lines().filter_map(|l| l.split_once('\t')).collect();
    let pick = |name: &str| lines.iter().find(|(_, n)| *n == name).map(|(id, _)| id.to_string());
    pick(&format!("refs/tags/{wanted}^{{}}"))
        .or_else(|| pick(&format!("refs/heads/{wanted}")))
        .or_else(|| pick(&format!("refs/tags/{wanted}")))
        .or_else(|| pick(wanted))
        .ok_or_else(|| RemoteError::Git {
            url: remote.to_string(),
            message: format!("no branch, tag or commit {wanted:?} in the repository"),
        })
}

/// ADD's git source `src` (as `RemoteContext::parse` reads it) at the commit its ref names
/// now: `(remote, commit, subdir)`. With `checksum`, the commit must start with it.
pub fn git_source_commit(
    src: &str,
    checksum: Option<&str>,
) -> Result<(String, String, Option<String>), RemoteError> {
    let Some(RemoteContext::Git { remote, reference, subdir }) = RemoteContext::parse(src) else {
        return Err(RemoteError::Git { url: src.to_string(), message: "not a git repository URL".into() });
    };
    let commit = resolve_commit(&remote, reference.as_deref())?;
    if let Some(c) = checksum
        && !commit.starts_with(&c.to_ascii_lowercase())
    {
        return Err(RemoteError::Git {
            url: remote,
            message: format!("expected checksum to match {c}, got {commit}"),
        });
    }
    Ok((remote, commit, subdir))
}

/// Fetches `remote` at `reference` into `dir` (empty) and returns the commit checked out;
/// `.git` is kept only with `keep_git`.
pub fn git_checkout(
    remote: &str,
    reference: Option<&str>,
    dir: &Path,
    keep_git: bool,
) -> Result<String, RemoteError> {
    git(remote, dir, &["init", "-q"])?;
    let wanted = reference.unwrap_or("HEAD");
    let shallow = git(remote, dir, &["fetch", "-q", "--depth=1", remote, wanted]);
    if let Err(e) = shallow {
        // A commit that is no ref's tip: servers need not serve it by itself; fetch all.
        let is_commit = wanted.len() >= 7 && wanted.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_commit {
            return Err(e);
        }
        git(
            remote,
            dir,
            &["fetch", "-q", remote, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"],
        )?;
        git(remote, dir, &["checkout", "-q", wanted])?;
    } else {
        git(remote, dir, &["checkout", "-q", "FETCH_HEAD"])?;
    }
    if dir.join(".gitmodules").is_file() {
        git(remote, dir, &["submodule", "update", "-q", "--init", "--recursive", "--depth=1"])?;
    }
    let commit = git(remote, dir, &["rev-parse", "HEAD"])?.trim().to_string();
    if !keep_git {
        let dotgit = dir.join(".git");
        fs::remove_dir_all(&dotgit).map_err(|source| RemoteError::Io {
            url: remote.to_string(),
            path: dotgit,
            source,
        })?;
    }
    Ok(commit)
}

/// Downloads `url`: a tar (plain, gzip, zstd) is unpacked into `dir`; anything else is the
/// Dockerfile.
fn download(url: &str, dir: &Path) -> Result<Fetched, RemoteError> {
    let fail = |message: String| RemoteError::Download { url: url.to_string(), message };
    let io_at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RemoteError::Io { url: url.to_string(), path, source }
    };
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut response = client.get(url).send().map_err(|e| fail(hostutil::errors::one_line(&e)))?;
    if !response.status().is_success() {
        return Err(fail(format!("the server answered {}", response.status())));
    }
    let path = dir.join(".rbuild-download");
    let mut file =
        fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(io_at(&path))?;
    response.copy_to(&mut file).map_err(|e| fail(hostutil::errors::one_line(&e)))?;
    file.rewind().map_err(io_at(&path))?;
    let mut head = Vec::new();
    cache::decompressed(&mut file).and_then(|r| r.take(512).read_to_end(&mut head)).map_err(io_at(&path))?;
    let is_tar = head.len() >= 262 && &head[257..262] == b"ustar";
    let root = dir.join("context");
    fs::create_dir(&root).map_err(io_at(&root))?;
    if !is_tar {
        let bytes = fs::read(&path).map_err(io_at(&path))?;
        fs::remove_file(&path).map_err(io_at(&path))?;
        return Ok(Fetched { context: root, dockerfile: Some(bytes) });
    }
    file.rewind().map_err(io_at(&path))?;
    let mut archive = tar::Archive::new(cache::decompressed(file).map_err(io_at(&path))?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.unpack(&root).map_err(|e| fail(format!("unpacking the archive: {e}")))?;
    fs::remove_file(&path).map_err(io_at(&path))?;
    Ok(Fetched { context: root, dockerfile: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_reads_these_as_remote_contexts() {
        let g = |remote: &str, r: Option<&str>, d: Option<&str>| {
            Some(RemoteContext::Git {
                remote: remote.into(),
                reference: r.map(Into::into),
                subdir: d.map(Into::into),
            })
        };
        assert_eq!(
            RemoteContext::parse("https://h/x/repo.git#v1:sub"),
            g("https://h/x/repo.git", Some("v1"), Some("sub"))
        );
        assert_eq!(RemoteContext::parse("git@h:x/repo.git"), g("git@h:x/repo.git", None, None));
        assert_eq!(RemoteContext::parse("git://h/repo#main"), g("git://h/repo", Some("main"), None));
        assert_eq!(RemoteContext::parse("github.com/o/r#:d"), g("https://github.com/o/r", None, Some("d")));
        assert_eq!(
            RemoteContext::parse("https://h/ctx.tar.gz"),
            Some(RemoteContext::Http("https://h/ctx.tar.gz".into()))
        );
        assert_eq!(RemoteContext::parse("/nonexistent/dir"), None);
        assert_eq!(RemoteContext::parse("/nonexistent/dir#main"), None);
    }
}
