//! `rbuild cp`, `diff` and `commit`: a container's files, in docker's spelling. The work is in
//! `runtime::fsops`; this is the command line and `commit -c`, read by the Dockerfile frontend.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cache::oci::ContainerConfig;
use cache::{ImageRef, Store};
use frontend::{ConfigOp, Op};
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
        eprintln!("Successfully copied {} to {to}", human_size(copied));
    }
    Ok(ExitCode::SUCCESS)
}

/// A size as docker's `units.HumanSize`: decimal units, four significant digits.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    let whole_digits = if v >= 1.0 { v.log10().floor() as usize + 1 } else { 1 };
    let mut s = format!("{v:.*}", 4usize.saturating_sub(whole_digits));
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[unit])
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
    apply_changes(&mut config, &a.changes)?;
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

/// The instructions `commit -c` takes, as docker's `validCommitCommands`.
const CHANGE_INSTRUCTIONS: [&str; 11] = [
    "cmd",
    "entrypoint",
    "env",
    "expose",
    "healthcheck",
    "label",
    "onbuild",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// The image a change's `FROM` names: only its ENV and WORKDIR are asked for (to expand
/// variables and resolve a relative WORKDIR), and they are the new config's.
const CHANGE_BASE: &str = "rbuild-commit-base";

struct ChangeBase<'a>(&'a ContainerConfig);

impl frontend::ImageResolver for ChangeBase<'_> {
    fn resolve(&self, _reference: &str) -> Result<frontend::BaseConfig, String> {
        Ok(frontend::BaseConfig {
            env: self.0.env.clone().unwrap_or_default(),
            working_dir: self.0.working_dir.clone(),
            on_build: Vec::new(),
        })
    }
}

/// Applies `-c` changes in order, each read as a Dockerfile line is (variables expanded with
/// the config's ENV, a relative WORKDIR against its WORKDIR). As in a build, an ENTRYPOINT
/// clears the CMD unless a CMD came before it.
fn apply_changes(config: &mut ContainerConfig, changes: &[String]) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let text = changes.join("\n");
    for ins in frontend::parse("--change", &text)?.instructions {
        if !CHANGE_INSTRUCTIONS.contains(&ins.name.as_str()) {
            bail!("{} is not a valid change command", ins.name);
        }
    }
    let dockerfile = format!("FROM {CHANGE_BASE}\n{text}\n");
    let definition = frontend::build_definition(
        "--change",
        &dockerfile,
        &frontend::LowerOptions::default(),
        &ChangeBase(config),
    )?;
    let mut cmd_set = false;
    for step in &definition.stages[definition.target].steps {
        match &step.op {
            Op::Workdir(dir) => config.working_dir = Some(dir.clone()),
            Op::Config(op) => {
                solver::apply_config(config, op, cmd_set);
                cmd_set |= matches!(op, ConfigOp::Cmd(_));
            }
            _ => bail!("{} is not a valid change command", step.text),
        }
    }
    Ok(())
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

    #[test]
    fn sizes_read_as_docker_s() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(2048), "2.048kB");
        assert_eq!(human_size(1_500_000), "1.5MB");
    }

    #[test]
    fn changes_apply_in_order_with_expansion() {
        let mut c = ContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "HOME=/root".into()]),
            cmd: Some(vec!["sh".into()]),
            working_dir: Some("/srv".into()),
            ..Default::default()
        };
        let changes = [
            "ENV GREETING=hi HOMEDIR=$HOME",
            "LABEL a=b",
            "WORKDIR app",
            "ENTRYPOINT [\"/bin/echo\"]",
            "EXPOSE 80",
        ]
        .map(String::from);
        apply_changes(&mut c, &changes).unwrap();
        assert_eq!(c.env_get("HOMEDIR"), Some("/root"));
        assert_eq!(c.env_get("GREETING"), Some("hi"));
        assert_eq!(c.working_dir.as_deref(), Some("/srv/app"));
        assert_eq!(c.entrypoint, Some(vec!["/bin/echo".to_string()]));
        assert_eq!(c.cmd, None, "ENTRYPOINT without a CMD in the changes clears CMD");
        assert!(c.exposed_ports.unwrap().contains_key("80/tcp"));
        assert_eq!(c.labels.unwrap()["a"], "b");
    }

    #[test]
    fn run_is_not_a_change() {
        let err = apply_changes(&mut ContainerConfig::default(), &["RUN true".into()]).unwrap_err();
        assert_eq!(err.to_string(), "run is not a valid change command");
    }
}
