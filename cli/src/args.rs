//! The command line, in Docker's spelling.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Build OCI images from Dockerfiles and run them, without a daemon.
///
/// `rbuild [OPTIONS] CONTEXT` is the same as `rbuild build [OPTIONS] CONTEXT`.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, arg_required_else_help = true)]
pub struct Cli {
    /// The store directory. Rootless (run by a user other than root), the default is
    /// `$XDG_DATA_HOME/rbuild`, else `~/.local/share/rbuild`.
    #[arg(long, global = true, env = "RBUILD_ROOT", default_value_os_t = runtime::process::default_store_root(), value_name = "DIR")]
    pub root: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the command line, treating `rbuild [OPTIONS] CONTEXT` as `rbuild build ...`:
    /// when the first word after the global options is not a command, `build` is implied.
    pub fn parse_with_default_build(mut argv: Vec<String>) -> Cli {
        let cmd = <Cli as clap::CommandFactory>::command();
        let mut i = 1;
        while i < argv.len() {
            match argv[i].as_str() {
                "--root" => i += 2,
                a if a.starts_with("--root=") => i += 1,
                _ => break,
            }
        }
        if let Some(word) = argv.get(i) {
            let is_command =
                cmd.get_subcommands().any(|c| c.get_name() == word || c.get_all_aliases().any(|a| a == word));
            let asks_help = matches!(word.as_str(), "help" | "-h" | "--help" | "-V" | "--version");
            if !is_command && !asks_help {
                argv.insert(i, "build".to_string());
            }
        }
        <Cli as clap::Parser>::parse_from(argv)
    }
}

#[derive(Debug, Subcommand)]
// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(BuildArgs),
    /// Make a one-layer image from a root filesystem tar (as `docker import`).
    Import(ImportArgs),
    /// List images.
    Images(ImagesArgs),
    /// Give an image another name (`TARGET`), as `docker tag`.
    Tag(TagArgs),
    /// Remove images: untag them, and delete those left without a name.
    Rmi(RmiArgs),
    /// Show images as a JSON array, as `docker inspect`.
    Inspect(InspectArgs),
    /// Show the history of an image: one line per step, newest first.
    History(HistoryArgs),
    /// Manage images (`ls`, `inspect`, `history`, `tag`, `rm`, `prune`, `save`, `load`, `import`).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Write images to a tar archive (OCI layout or `docker save` format).
    Save(SaveArgs),
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// Push an image to a registry.
    Push(PushArgs),
    /// Save credentials for a registry (checked against it first).
    Login(LoginArgs),
    /// Forget the credentials of a registry.
    Logout(LogoutArgs),
    /// Read images from a tar archive written by `save`, `docker save` or skopeo.
    Load(LoadArgs),
    /// Run a command in a new container.
    Run(crate::container_args::RunArgs),
    /// Create a container (without starting it).
    Create(crate::container_args::CreateArgs),
    /// Start stopped containers.
    Start(crate::container_args::StartArgs),
    /// Stop running containers: the stop signal, then SIGKILL after a timeout.
    Stop(crate::container_args::StopArgs),
    /// Restart containers.
    Restart(crate::container_args::StopArgs),
    /// Send a signal to running containers (default SIGKILL).
    Kill(crate::container_args::KillArgs),
    /// Freeze every process of containers.
    Pause(crate::container_args::ContainersArgs),
    /// Thaw paused containers.
    Unpause(crate::container_args::ContainersArgs),
    /// Run a command in a running container.
    Exec(crate::container_args::ExecArgs),
    /// Print a container's output.
    Logs(crate::container_args::LogsArgs),
    /// List containers.
    Ps(crate::container_args::PsArgs),
    /// Remove containers.
    Rm(crate::container_args::RmArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(crate::container_args::WaitArgs),
    /// Show a container's processes.
    Top(crate::container_args::TopArgs),
    /// Show containers' CPU, memory, network and process counts (from their cgroups).
    Stats(crate::container_args::StatsArgs),
    /// Show a container's published ports.
    Port(crate::container_args::PortArgs),
    /// Rename a container.
    Rename(crate::container_args::RenameArgs),
    /// Attach this terminal to a running container's stdio.
    Attach(crate::container_args::AttachArgs),
    /// Manage containers.
    #[command(subcommand)]
    Container(crate::container_args::ContainerCommand),
    /// Copy files between a container and the host (`CONTAINER:PATH`; `-` is a tar stream).
    Cp(crate::container_fs::CpArgs),
    /// List the files a container changed (A added, C changed, D deleted).
    Diff(crate::container_fs::DiffArgs),
    /// Write a container's file system as a tar archive (to stdout, or `-o FILE`).
    Export(crate::container_fs::ExportArgs),
    /// Make an image from a container's changes.
    Commit(crate::container_fs::CommitArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(crate::networks::NetworkCommand),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(crate::volumes::VolumeCommand),
    /// Show what happens to containers, networks and volumes (from the store's event log).
    Events(crate::events::EventsArgs),
    /// Print a shell completion script.
    Completion(CompletionArgs),
    /// Look inside the frontend: the parsed AST or the lowered build graph.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Manage the build cache.
    #[command(subcommand)]
    Builder(BuilderCommand),
    /// Manage the store as a whole.
    #[command(subcommand)]
    System(SystemCommand),
}

impl Command {
    /// Whether the command needs rbuild's user namespace when run rootless: all but those that
    /// touch no store and run nothing.
    pub fn needs_user_namespace(&self) -> bool {
        !matches!(self, Command::Completion(_) | Command::Debug(DebugCommand::DumpAst { .. }))
    }
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// `[HOST[:PORT]/]NAME[:TAG|@DIGEST]`
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// The platform to pick from a multi-platform image (`os/arch[/variant]`; default: this host).
    #[arg(long, value_name = "OS/ARCH", conflicts_with = "all_platforms")]
    pub platform: Option<String>,
    /// Pull every platform of a multi-platform image and keep its index (as `docker pull
    /// --all-platforms`): the name then points at the index, `run` and `build` use this host's
    /// platform from it, and `push` sends the whole index.
    #[arg(short = 'a', long)]
    pub all_platforms: bool,
    /// Reach this registry over plain HTTP; may be repeated.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Print only the image digest.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image in the store, pushed to the registry its name names.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Push under this name instead (`HOST/NAME:TAG`).
    #[arg(value_name = "DESTINATION")]
    pub destination: Option<String>,
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (`HOST[:PORT]`; default docker.io).
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
    #[arg(short, long)]
    pub username: String,
    /// The password; `--password-stdin` reads it from stdin instead.
    #[arg(short, long)]
    pub password: Option<String>,
    #[arg(long)]
    pub password_stdin: bool,
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove the build cache (images stay), then collect what only it used; with
    /// `--keep-storage` or `--filter until=`, only what is least recently or long unused.
    Prune(BuilderPruneArgs),
}

#[derive(Debug, Args)]
pub struct BuilderPruneArgs {
    /// Keep the store at most this big (`10GB`, `1.5g`, `500m`: binary units, as buildx):
    /// remove least recently used build cache, dangling images and unpacked layers until it is.
    #[arg(long = "keep-storage", value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// `until=DURATION` (a Go duration: `24h`, `90m`, `1h30m`): remove only build cache and
    /// dangling images unused for longer.
    #[arg(long = "filter", value_name = "until=DURATION")]
    pub filter: Vec<String>,
    /// Accepted for buildx's sake: every record is removable here (rbuild keeps no internal
    /// or frontend images in its cache).
    #[arg(short, long)]
    pub all: bool,
    /// Don't ask (rbuild never asks; accepted for buildx compatibility).
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Show images as a JSON array.
    Inspect(InspectArgs),
    /// Show the history of an image.
    History(HistoryArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Remove images.
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Remove dangling images (with `-a`, every image no container uses), then collect their blobs.
    Prune(PruneArgs),
    /// Write images to a tar archive.
    Save(SaveArgs),
    /// Read images from a tar archive.
    Load(LoadArgs),
    /// Make a one-layer image from a root filesystem tar.
    Import(ImportArgs),
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Remove stopped containers, unused networks, dangling images (every unused image with
    /// -a), the build cache, and with --volumes unused anonymous volumes; then blobs, layers and
    /// temp files nothing references.
    Prune(SystemPruneArgs),
    /// Show this machine's rbuild: version, store, and the platforms it can build for and run
    /// (natively, or through QEMU user emulation registered in binfmt_misc).
    Info,
    /// Show how much space images, containers, volumes and the build cache take.
    Df(DfArgs),
    /// Check every blob against its digest and every image and cache record for missing blobs.
    Verify,
    /// Serve the Docker Engine API on a socket, so docker CLI, compose and docker-py drive
    /// this store (`DOCKER_HOST=unix:///run/rbuild/docker.sock`).
    Service(ServiceArgs),
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Seconds without a request after which the service exits; 0: serve for ever.
    /// (`--time` as podman's; `--timeout` is accepted too.)
    #[arg(short, long, visible_alias = "timeout", default_value_t = 5)]
    pub time: u64,
    /// Group that may use the socket (it is 0660); default: root's only.
    #[arg(long)]
    pub group: Option<String>,
    /// `unix:///path/to.sock` (default `/run/rbuild/docker.sock`, rootless
    /// `$XDG_RUNTIME_DIR/rbuild/docker.sock`) or `tcp://127.0.0.1:PORT` (loopback only).
    #[arg(value_name = "URI")]
    pub uri: Option<String>,
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Also list every image, build-cache record and cache mount.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct SystemPruneArgs {
    /// Remove every unused image, not only dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Also remove unused anonymous volumes.
    #[arg(long)]
    pub volumes: bool,
    /// Don't ask (rbuild never asks; accepted for docker compatibility).
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print a Dockerfile's AST in BuildKit's parser-test format, one `(instruction ...)` a line.
    DumpAst {
        /// The Dockerfile.
        #[arg(value_name = "DOCKERFILE")]
        file: PathBuf,
    },
    /// Print the build graph a Dockerfile lowers to: stages, steps, and what the target needs.
    Graph(GraphArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    Text,
    /// Graphviz DOT (`| dot -Tsvg`).
    Dot,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Set a build argument (`NAME=value`, or `NAME` to take it from the environment).
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// Lower for this target stage.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: GraphFormat,
    /// The build context directory.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from stdin.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Name and tag the image (`name:tag`); may be given several times.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Set a build argument (`NAME=value`, or `NAME` to take it from the environment).
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build this stage instead of the last one.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the build cache for this stage (name or index); may be repeated.
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Say, for each step that misses the cache, why (which file, build arg, base image...).
    #[arg(long)]
    pub explain_cache: bool,
    /// How many steps may run at once (default: the number of cores).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub jobs: usize,
    /// Progress output: auto (a live display on a terminal, else plain), plain, tty or json.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: crate::progress::Mode,
    /// Print only the image ID on success.
    #[arg(short, long)]
    pub quiet: bool,
    /// A secret for `RUN --mount=type=secret`: `id=NAME,src=FILE` or `id=NAME,env=VAR`
    /// (`type=file|env` as in Docker); may be repeated. Never stored in the image or cache.
    #[arg(long, value_name = "id=NAME,src=FILE|env=VAR")]
    pub secret: Vec<String>,
    /// Allow an entitlement: `network.host` (`RUN --network=host`), `security.insecure`
    /// (`RUN --security=insecure`).
    #[arg(long, value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// The limits of every RUN's cgroup.
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// The size of every RUN's /dev/shm (`64m`, `1g`; default 64m).
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// A process limit of every RUN: `NAME=SOFT[:HARD]` (`nofile=1024:2048`, `-1` unlimited);
    /// may be repeated.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// Where the result goes: `type=image` (the default: the store), `type=oci,dest=FILE`,
    /// `type=docker,dest=FILE` (archives), `type=local,dest=DIR` (the root filesystem),
    /// `type=tar,dest=FILE` (it as a tar; `-` for stdout); a bare `DIR` is `type=local,dest=DIR`.
    /// May be repeated.
    #[arg(short = 'o', long = "output", value_name = "type=TYPE[,dest=PATH]|DIR")]
    pub output: Vec<String>,
    /// Export the build cache: `type=registry,ref=HOST/REPO:TAG`, `type=local,dest=DIR`,
    /// `type=s3,bucket=B,region=R[,name=N,prefix=P,endpoint_url=URL,use_path_style=true]` or
    /// `type=inline`, each with `mode=min|max` (min: the target stage's steps; max: every step)
    /// and `cache-mounts=true[,cache-mounts-max-size=SIZE]` (the RUN cache mounts too).
    #[arg(long = "cache-to", value_name = "type=TYPE,...")]
    pub cache_to: Vec<String>,
    /// Use a build cache: `type=registry,ref=HOST/REPO:TAG` (a cache, or an image built with
    /// `type=inline`), `type=local,src=DIR`, `type=s3,...`, or a bare reference. Opened when the
    /// build first misses; its layers are fetched only when the build needs them.
    #[arg(long = "cache-from", value_name = "type=TYPE,...")]
    pub cache_from: Vec<String>,
    /// Clamp layer mtimes, the config's and the history's `created` to this Unix time, for
    /// reproducible images (default: the SOURCE_DATE_EPOCH environment variable).
    #[arg(long = "source-date-epoch", env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    pub source_date_epoch: Option<i64>,
    /// Layer compression: gzip (default), zstd or uncompressed.
    #[arg(long, value_name = "ALGORITHM", default_value = "gzip")]
    pub compression: String,
    /// A registry to reach over plain HTTP (loopback registries always are); may be repeated.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// When to pull the images FROM, `COPY --from` and `RUN --mount from=` name: `missing` (the
    /// default), `always` (`--pull` alone, as docker's), `never`.
    #[arg(long, value_name = "POLICY", num_args = 0..=1, require_equals = true,
          default_value = "missing", default_missing_value = "always")]
    pub pull: solver::PullPolicy,
    /// Set a label on the image (`KEY=VALUE`, or `KEY` for an empty value); may be repeated.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Write the image ID (`sha256:...`) to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write the build's result as JSON to this file (docker buildx's keys:
    /// `containerimage.digest`, `containerimage.config.digest`, `containerimage.descriptor`,
    /// `image.name`; and rbuild's step counts).
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// The platform to build for: `OS/ARCH[/VARIANT]` or `local`. This machine's own platform
    /// only (a foreign one needs emulation, which rbuild has not).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// An annotation of the image's manifest: `KEY=VALUE` or `manifest:KEY=VALUE`; may be
    /// repeated.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Push the image to the registry its `-t` names name (`-o type=image,push=true`).
    #[arg(long)]
    pub push: bool,
    /// Accepted for docker buildx's sake: the image goes to rbuild's store unless `-o` says
    /// otherwise, which is what `--load` asks for.
    #[arg(long)]
    pub load: bool,
    /// The network of RUN steps without `--network`: `default` (each step in a namespace of
    /// its own on the build network, with outbound NAT), `none`, or `host` (no `--allow`
    /// needed when given here).
    #[arg(long, value_name = "MODE", default_value = "default")]
    pub network: String,
    /// An ssh agent for `RUN --mount=type=ssh`: `default` (`$SSH_AUTH_SOCK`), `ID=SOCKET`, or
    /// `ID=KEY[,KEY...]` (private key files, served by an ssh-agent for the build); may be
    /// repeated.
    #[arg(long, value_name = "default|ID[=SOCKET|KEY[,KEY...]]")]
    pub ssh: Vec<String>,
    /// Run only the build checks (BuildKit's linter) and print their warnings; exit 1 if any.
    #[arg(long)]
    pub check: bool,
    /// Keep the store at most this big (`20GB`; binary units): when the build leaves it bigger,
    /// least recently used build cache, dangling images and unpacked layers are removed
    /// (`builder prune --keep-storage`). Default: `[gc] keep-storage` of `<store>/rbuild.toml`.
    #[arg(long = "gc-keep-storage", value_name = "SIZE")]
    pub gc_keep_storage: Option<String>,
    /// The cgroup every RUN's cgroup is made in (a path under each hierarchy's root, made if
    /// missing; default `rbuild`).
    #[arg(long = "cgroup-parent", value_name = "PATH")]
    pub cgroup_parent: Option<String>,
    /// A named context, in place of the stage or image called NAME: `NAME=DIR`,
    /// `NAME=docker-image://REF` or `NAME=oci-layout://PATH[@TAG]`; may be repeated.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_context: Vec<String>,
    /// An entry of every RUN's /etc/hosts: `HOST:IP` (or `HOST=IP`); may be repeated.
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// The build context: a directory; `-` for a tar stream on stdin (plain, gzip or zstd); a
    /// git repository (`https://HOST/REPO.git#REF:DIR`, `git@HOST:REPO`, `git://`, `ssh://`, or
    /// a local `REPO#REF:DIR`); or an http(s) URL of a tar (or of a Dockerfile alone).
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image config (`CMD`, `ENTRYPOINT`, `ENV`, `EXPOSE`,
    /// `LABEL`, `USER`, `WORKDIR`, `VOLUME`, `STOPSIGNAL`, `ONBUILD`); may be repeated.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// The history comment (default: `Imported from FILE`).
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// The root filesystem tar (plain or gzip), or `-` for stdin.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The image's name and tag.
    #[arg(value_name = "NAME[:TAG]")]
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show only image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show full image IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Format the output: a template (`{{.Repository}}:{{.Tag}}`, `table {{.ID}}\t{{.Size}}`),
    /// `table`, or `json` (one JSON object per line).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Only images of this repository (and tag; `*` matches any characters in the tag).
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image: a name, an ID or a digest.
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    /// The new name.
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove an image that has several names by ID, or one that a container uses.
    #[arg(short, long)]
    pub force: bool,
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Go template (`{{.State.ExitCode}}`, `{{json .Config}}`).
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
    #[arg(value_name = "NAME", required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Do not truncate IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show only image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ArchiveFormat {
    /// An OCI image layout in a tar.
    Oci,
    /// The `docker save` format.
    Docker,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Where to write the archive.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value = "docker")]
    pub format: ArchiveFormat,
    /// Images to save.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive to read.
    #[arg(short, long, value_name = "FILE")]
    pub input: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `--memory`, `--cpus`, `--cpu-shares`, `--pids-limit`: the same flags, read by the same rules
/// (`runtime::Resources::from_flags`, docker's), for `build` (every RUN) and `run`/`create`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ResourceFlags {
    /// Memory limit (`512m`, `2g`; at least 6m), swap included.
    #[arg(short = 'm', long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Number of CPUs (`1.5`).
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// CPU shares (relative weight, 1024 = normal).
    #[arg(short = 'c', long = "cpu-shares", value_name = "N")]
    pub cpu_shares: Option<i64>,
    /// Most processes at once (0 or -1: unlimited).
    #[arg(long = "pids-limit", value_name = "N", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
}

impl ResourceFlags {
    pub fn resources(&self) -> anyhow::Result<runtime::Resources> {
        Ok(runtime::Resources::from_flags(
            self.memory.as_deref(),
            self.cpus.as_deref(),
            self.cpu_shares,
            self.pids_limit,
        )?)
    }
}

/// `--network` of `build`: docker's modes for build steps (checked after parsing, so that a
/// bad value is a one-line error with exit 1 as every other bad value, not a usage error).
pub fn parse_step_network(value: &str) -> anyhow::Result<solver::StepNetwork> {
    match value {
        "default" | "bridge" => Ok(solver::StepNetwork::Default),
        "none" => Ok(solver::StepNetwork::None),
        "host" => Ok(solver::StepNetwork::Host),
        _ => anyhow::bail!("--network {value:?} is not a build network: use default, none or host"),
    }
}

/// `--add-host HOST:IP` (docker's `HOST=IP` and `HOST:[IPv6]` too).
pub fn parse_add_host(value: &str) -> anyhow::Result<(String, std::net::IpAddr)> {
    Ok(runtime::spec::parse_extra_host(value)?)
}
