//! The container commands' flags, in docker's spelling.

use clap::Args;

/// What `create` and `run` share.
#[derive(Debug, Args, Clone, Default)]
pub struct CreateFlags {
    /// Assign a name to the container.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Set an environment variable (`NAME=value`, or `NAME` to take it from the environment).
    #[arg(short, long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file (`NAME=value` lines; `#` comments).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<std::path::PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (`name|uid[:group|gid]`).
    #[arg(short, long, value_name = "USER")]
    pub user: Option<String>,
    /// Override the image's ENTRYPOINT (`""` clears it).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Container host name.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Run an init (rbuild-init) as PID 1 that forwards signals and reaps zombies.
    #[arg(long)]
    pub init: bool,
    /// Set a label (`key=value`).
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Add a Linux capability (`NET_ADMIN`, `ALL`, ...).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability.
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give the container every capability, no seccomp and no masked paths.
    #[arg(long)]
    pub privileged: bool,
    /// Restart policy: `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    #[arg(long, value_name = "POLICY", default_value = "no")]
    pub restart: String,
    #[command(flatten)]
    pub resources: crate::args::ResourceFlags,
    /// The size of /dev/shm (`64m`, `1g`; default 64m).
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// A process limit: `NAME=SOFT[:HARD]` (`nofile=1024:2048`, `-1` unlimited); may be repeated.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// Mount the volumes and bind mounts of another container (`NAME[:ro|:rw]`); may be repeated.
    #[arg(long = "volumes-from", value_name = "CONTAINER")]
    pub volumes_from: Vec<String>,
    /// Signal to stop the container with (default: the image's STOPSIGNAL, else SIGTERM).
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds to wait after the stop signal before SIGKILL (default 10).
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    pub stop_timeout: Option<u32>,
    /// Healthcheck command, run with `/bin/sh -c` in the container (over the image's).
    #[arg(long = "health-cmd", value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between healthchecks, a Go duration such as `30s` (default 30s).
    #[arg(long = "health-interval", value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Longest a healthcheck may run (default 30s).
    #[arg(long = "health-timeout", value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Time to start before failed healthchecks count (default 0s).
    #[arg(long = "health-start-period", value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Time between healthchecks during the start period (default 5s).
    #[arg(long = "health-start-interval", value_name = "DURATION")]
    pub health_start_interval: Option<String>,
    /// Failures in a row that make the container unhealthy (default 3).
    #[arg(long = "health-retries", value_name = "N")]
    pub health_retries: Option<u32>,
    /// Disable the image's healthcheck.
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Logging driver: `json-file` (default) or `none`.
    #[arg(long = "log-driver", value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// Log option: `max-size=SIZE` (rotate past it: 10m, 1g), `max-file=N` (files kept).
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Network: `bridge` (default), `none`, `host`, `container:NAME|ID`, or a network's name.
    #[arg(long = "network", alias = "net", value_name = "NETWORK")]
    pub network: Vec<String>,
    /// Another name for the container on user-defined networks.
    #[arg(long = "network-alias", value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// Publish a port: `[IP:][HOST_PORT:]CONTAINER_PORT[/udp]`.
    #[arg(short, long = "publish", value_name = "PORTS")]
    pub publish: Vec<String>,
    /// Publish every EXPOSEd port on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Bind mount a volume: `NAME:/path[:ro]`, `/host/path:/path[:ro]`, or `/path`.
    #[arg(short, long = "volume", value_name = "VOLUME")]
    pub volume: Vec<String>,
    /// Attach a mount: `type=volume|bind|tmpfs,source=...,target=...[,readonly]`.
    #[arg(long = "mount", value_name = "MOUNT")]
    pub mount: Vec<String>,
    /// Mount a tmpfs: `/path[:size=64m,mode=1777]`.
    #[arg(long = "tmpfs", value_name = "PATH")]
    pub tmpfs: Vec<String>,
    /// Add a line to /etc/hosts: `HOST:IP`.
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// A DNS server for /etc/resolv.conf.
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// A DNS search domain.
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// Pull the image: `missing` (the default: only when the store lacks it), `always`,
    /// `never`.
    #[arg(long, value_name = "POLICY", default_value = "missing")]
    pub pull: solver::PullPolicy,
    /// The platform to run (`os/arch[/variant]`): its image from a multi-platform image, pulled
    /// for it if the store lacks it; another architecture's runs through QEMU emulation.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// The image.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Command and arguments, replacing the image's CMD.
    #[arg(value_name = "COMMAND", allow_hyphen_values = true, trailing_var_arg = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container's id.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container (and its anonymous volumes) when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Forward signals the rbuild process gets to the container (without -t).
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub create: CreateFlags,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub create: CreateFlags,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach stdout and stderr and wait for the exit.
    #[arg(short, long)]
    pub attach: bool,
    /// Attach stdin.
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL.
    #[arg(short = 't', long = "time", alias = "timeout", value_name = "SECONDS")]
    pub time: Option<u32>,
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short, long, default_value = "KILL", value_name = "SIGNAL")]
    pub signal: String,
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ContainersArgs {
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill and remove a running container.
    #[arg(short, long)]
    pub force: bool,
    /// Also remove its anonymous volumes.
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    /// Run in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable.
    #[arg(short, long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<std::path::PathBuf>,
    /// User (`name|uid[:group|gid]`).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Every capability, as a privileged container.
    #[arg(long)]
    pub privileged: bool,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "COMMAND", required = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines (`all` for every line).
    #[arg(short = 'n', long, value_name = "N", default_value = "all")]
    pub tail: String,
    /// Prefix each line with its time.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only lines since this time (RFC 3339, Unix seconds, or a duration like `10m`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only lines before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show every container (default: running ones).
    #[arg(short, long)]
    pub all: bool,
    /// Only ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show the latest created container.
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// `status=running|exited|...`, `name=NAME`, `label=KEY[=VALUE]`, `id=ID`, `ancestor=IMAGE`.
    #[arg(short, long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Go template (`{{.ID}} {{.Names}}`), `table TEMPLATE` or `json`.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one sample and exit.
    #[arg(long)]
    pub no_stream: bool,
    /// Include stopped containers.
    #[arg(short, long)]
    pub all: bool,
    /// Go template over ID, Name, CPUPerc, MemUsage, MemPerc, PIDs, or `json`.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// `PORT[/PROTO]`
    #[arg(value_name = "PORT")]
    pub port: Option<String>,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "NEW_NAME")]
    pub new_name: String,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Don't attach stdin.
    #[arg(long)]
    pub no_stdin: bool,
    /// Forward signals to the container.
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Don't ask (rbuild never asks; accepted for docker compatibility).
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ContainerInspectArgs {
    /// Go template (`{{.State.ExitCode}}`).
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

/// `rbuild container ...`: the same commands under docker's management command.
#[derive(Debug, clap::Subcommand)]
pub enum ContainerCommand {
    /// Create a container.
    Create(CreateArgs),
    /// Run a command in a new container.
    Run(RunArgs),
    /// Start containers.
    Start(StartArgs),
    /// Stop containers.
    Stop(StopArgs),
    /// Restart containers.
    Restart(StopArgs),
    /// Send a signal to containers.
    Kill(KillArgs),
    /// Pause containers.
    Pause(ContainersArgs),
    /// Unpause containers.
    Unpause(ContainersArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Print a container's output.
    Logs(LogsArgs),
    /// List containers.
    #[command(alias = "list", alias = "ps")]
    Ls(PsArgs),
    /// Show containers as JSON.
    Inspect(ContainerInspectArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Wait for containers to stop; print their exit codes.
    Wait(WaitArgs),
    /// Show a container's processes.
    Top(TopArgs),
    /// Show containers' resource use.
    Stats(StatsArgs),
    /// Show published ports.
    Port(PortArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// Attach to a running container's stdio.
    Attach(AttachArgs),
    /// Remove every stopped container.
    Prune(PruneArgs),
    /// Copy files between a container and the host.
    Cp(crate::container_fs::CpArgs),
    /// List a container's changed files.
    Diff(crate::container_fs::DiffArgs),
    /// Write a container's file system as a tar archive (to stdout, or `-o FILE`).
    Export(crate::container_fs::ExportArgs),
    /// Make an image from a container.
    Commit(crate::container_fs::CommitArgs),
}
