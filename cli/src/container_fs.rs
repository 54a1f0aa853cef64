//! `rbuild cp`, `diff`, `export` and `commit`: a container's files, in docker's spelling. The work is in
//! `runtime::fsops` (and `commit -c` in `solver::apply_changes`); this is the command line.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cache::{ImageRef, Store};
use runtime::container::Containers;
use runtime::fsops::{self, CommitOptions, CopyOptions, HostDest, HostSource};

#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// Archive mode: keep the source's owners (uid/gid).
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow a symlink at SRC_PATH (copy what it points to).
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Do not report what was copied on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// `CONTAINER:SRC_PATH`, a host path, or `-` (a tar stream on stdin).
    #[arg(value_name = "SRC")]
    pub src: String,
    /// `CONTAINER:DEST_PATH`, a host path, or `-` (a tar stream on stdout).
    #[arg(value_name = "DEST")]
    pub dest: String,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    pub container: String,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    pub container: String,
}

#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    /// The image's author, e.g. "Jane Doe <jane@example.com>".
    #[arg(short, long)]
    pub author: Option<String>,
    /// A Dockerfile instruction for the image's config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// The commit message (the history entry's comment).
    #[arg(short, long)]
    pub message: Option<String>,
    /// Freeze the container while its changes are read (`--pause=false` to not).
    #[arg(short, long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub pause: bool,
    pub container: String,
    /// `REPOSITORY[:TAG]` for the new image.
    pub reference: Option<String>,
}

/// Docker's reading of a `cp` argument: `CONTAINER:PATH` unless it is an absolute path, has no
/// `:`, or starts with `.` (`./file:with:colons` is a local file).
fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((container, path)) if !container.starts_with('.') => (Some(container), path),
        _ => (None, arg),
    }
}

/// A path in a container: relative ones (and an empty one) are taken from its `/`.
fn container_path(p: &str) -> String {
    if p.starts_with('/') { p.to_string() } else { format!("/{p}") }
}

pub fn cp(store: &Store, a: CpArgs) -> Result<ExitCode> {
    let opts = CopyOptions { archive: a.archive, follow_link: a.follow_link };
    let (copied, to) = match (split_cp_arg(&a.src), split_cp_arg(&a.dest)) {
        ((Some(_), _), (Some(_), _)) => bail!("copying between containers is not supported"),
        ((None, _), (None, _)) => bail!("must specify at least one container source"),
        ((Some(container), src), (None, dest)) => {
            let src = container_path(src);
            if dest == "-" {
                let stdout = io::stdout();
                let mut out = io::BufWriter::with_capacity(256 * 1024, stdout.lock());
                fsops::copy_out(store, container, Path::new(&src), HostDest::Tar(&mut out), &opts)?;
                out.flush().context("writing to stdout")?;
                return Ok(ExitCode::SUCCESS);
            }
            (
                fsops::copy_out(store, container, Path::new(&src), HostDest::Path(Path::new(dest)), &opts)?,
                dest,
            )
        }
        ((None, src), (Some(container), dest)) => {
            let dest_path = container_path(dest);
            if src == "-" {
                let stdin = io::stdin();
                let mut input = io::BufReader::with_capacity(256 * 1024, stdin.lock());
                fsops::copy_in(store, HostSource::Tar(&mut input), container, Path::new(&dest_path), &opts)?;
                return Ok(ExitCode::SUCCESS);
            }
            let copied = fsops::copy_in(
                store,
                HostSource::Path(Path::new(src)),
                container,
                Path::new(&dest_path),
                &opts,
            )?;
            (copied, a.dest.as_str())
        }
    };
    // Docker's closing line, for a person watching (never into a pipe or a log).
    if !a.quiet && io::stderr().is_terminal() {
        eprintln!("Successfully copied {} to {to}", crate::output::human_size(copied, 4));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn diff(store: &Store, a: DiffArgs) -> Result<ExitCode> {
    let c = Containers::open(store.root())?.find(&a.container)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for change in fsops::diff(store, &c)? {
        writeln!(out, "{change}").context("writing to stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `export`: the container's file system (no volumes) as a tar, refusing to write one to a
/// terminal, as docker does.
pub fn export(store: &Store, a: ExportArgs) -> Result<ExitCode> {
    let c = Containers::open(store.root())?.find(&a.container)?;
    match &a.output {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            let mut out = io::BufWriter::with_capacity(256 * 1024, file);
            fsops::export(store, &c, &mut out)?;
            out.flush().with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let stdout = io::stdout();
            let mut out = io::BufWriter::with_capacity(256 * 1024, stdout.lock());
            fsops::export(store, &c, &mut out)?;
            out.flush().context("writing to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn commit(store: &Store, a: CommitArgs) -> Result<ExitCode> {
    let c = Containers::open(store.root())?.find(&a.container)?;
    let reference = match &a.reference {
        Some(r) => {
            let parsed: ImageRef = r.parse()?;
            if parsed.digest().is_some() {
                bail!("refusing to create a tag with a digest reference: {r}");
            }
            Some(parsed)
        }
        None => None,
    };
    let image = store.image(&c.config.image_id)?;
    let mut config = fsops::commit_config(&image.config.config, &c.config.config);
    solver::apply_changes(&mut config, &a.changes)?;
    let opts = CommitOptions {
        author: a.author,
        comment: a.message,
        pause: a.pause,
        compression: cache::Compression::default(),
        config,
        reference: reference.as_ref(),
    };
    let committed = fsops::commit(store, &c, &opts)?;
    println!("{}", committed.digest);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_arguments_split_as_docker_s() {
        assert_eq!(split_cp_arg("web:/etc/hosts"), (Some("web"), "/etc/hosts"));
        assert_eq!(split_cp_arg("/abs:path"), (None, "/abs:path"));
        assert_eq!(split_cp_arg("./f:g"), (None, "./f:g"));
        assert_eq!(split_cp_arg("plain"), (None, "plain"));
        assert_eq!(split_cp_arg("-"), (None, "-"));
        assert_eq!(container_path("etc"), "/etc");
        assert_eq!(container_path(""), "/");
    }
}
