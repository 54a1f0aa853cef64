//! One function per command. Errors carry the context a user needs, as one line.

use std::fs::File;
use std::io::{self, Read};

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use cache::{ImageRef, Store};
use solver::buildcache::{CacheFrom, CacheTarget, CacheTo};

use crate::args::{self, Cli, Command};
use crate::{containers, images, progress};

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    let root = cli.root.clone();
    let store = || Store::open(&root).with_context(|| format!("opening the store at {}", root.display()));
    match cli.command {
        Command::Build(b) => build(&store()?, b),
        Command::Import(a) => import(&store()?, a),
        Command::Images(a) => images::images(&store()?, a),
        Command::Tag(a) => images::tag(&store()?, a),
        Command::Rmi(a) => images::rmi(&store()?, a),
        Command::Inspect(a) => containers::inspect(&store()?, &a.images, a.format.as_deref(), false),
        Command::History(a) => images::history(&store()?, a),
        Command::Image(c) => {
            let store = store()?;
            match c {
                args::ImageCommand::Ls(a) => images::images(&store, a),
                args::ImageCommand::Inspect(a) => images::inspect(&store, a),
                args::ImageCommand::History(a) => images::history(&store, a),
                args::ImageCommand::Tag(a) => images::tag(&store, a),
                args::ImageCommand::Rm(a) => images::rmi(&store, a),
                args::ImageCommand::Prune(a) => images::image_prune(&store, a),
                args::ImageCommand::Save(a) => save(&store, a),
                args::ImageCommand::Load(a) => load(&store, a),
                args::ImageCommand::Import(a) => import(&store, a),
            }
        }
        Command::Save(a) => save(&store()?, a),
        Command::Pull(a) => crate::transfer::pull(&store()?, a),
        Command::Push(a) => crate::transfer::push(&store()?, a),
        Command::Login(a) => crate::transfer::login(a),
        Command::Logout(a) => crate::transfer::logout(a),
        Command::Load(a) => load(&store()?, a),
        Command::Run(a) => containers::run(&store()?, a),
        Command::Create(a) => containers::create(&store()?, a),
        Command::Start(a) => containers::start(&store()?, a),
        Command::Stop(a) => containers::stop(&store()?, a),
        Command::Restart(a) => containers::restart(&store()?, a),
        Command::Kill(a) => containers::kill(&store()?, a),
        Command::Pause(a) => containers::pause(&store()?, a, true),
        Command::Unpause(a) => containers::pause(&store()?, a, false),
        Command::Exec(a) => containers::exec(&store()?, a),
        Command::Logs(a) => containers::logs(&store()?, a),
        Command::Ps(a) => containers::ps(&store()?, a),
        Command::Rm(a) => containers::rm(&store()?, a),
        Command::Wait(a) => containers::wait(&store()?, a),
        Command::Top(a) => containers::top(&store()?, a),
        Command::Stats(a) => containers::stats(&store()?, a),
        Command::Port(a) => containers::port(&store()?, a),
        Command::Rename(a) => containers::rename(&store()?, a),
        Command::Attach(a) => containers::attach(&store()?, a),
        Command::Container(c) => container_command(&store()?, c),
        Command::Cp(a) => crate::container_fs::cp(&store()?, a),
        Command::Diff(a) => crate::container_fs::diff(&store()?, a),
        Command::Export(a) => crate::container_fs::export(&store()?, a),
        Command::Commit(a) => crate::container_fs::commit(&store()?, a),
        Command::Network(c) => crate::networks::network(&store()?, c),
        Command::Volume(c) => crate::volumes::volume(&store()?, c),
        Command::Events(a) => crate::events::events(&store()?, a),
        Command::Debug(args::DebugCommand::DumpAst { file }) => dump_ast(&file),
        Command::Debug(args::DebugCommand::Graph(a)) => graph(&store()?, a),
        Command::Builder(args::BuilderCommand::Prune(a)) => crate::storelimit::builder_prune(&store()?, a),
        Command::System(args::SystemCommand::Prune(a)) => images::system_prune(&store()?, a),
        Command::System(args::SystemCommand::Df(a)) => images::system_df(&store()?, a.verbose),
        Command::System(args::SystemCommand::Info) => system_info(&store()?),
        Command::System(args::SystemCommand::Service(a)) => crate::service::run(&store()?, a),
        Command::System(args::SystemCommand::Verify) => {
            let report = store()?.verify()?;
            if report.is_ok() {
                println!("store verified: no problems");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{report}");
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Completion(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut cmd, "rbuild", &mut io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_ref(s: &str) -> Result<ImageRef> {
    Ok(s.parse::<ImageRef>()?)
}

/// `NAME=value`, or `NAME` alone meaning the caller's environment value (as docker does).
fn key_value(s: &str, what: &str) -> Result<Option<(String, String)>> {
    match s.split_once('=') {
        Some(("", _)) => bail!("invalid {what} {s:?}: the name is empty"),
        Some((k, v)) => Ok(Some((k.to_string(), v.to_string()))),
        None => Ok(std::env::var(s).ok().map(|v| (s.to_string(), v))),
    }
}

/// Checks the context directory and reads the Dockerfile (default `CONTEXT/Dockerfile`);
/// returns its name for messages and its text (non-UTF-8 is a located error).
/// The Dockerfile's name (as errors call it) and text: `-f FILE`, `-f -` (stdin), or the
/// context's `Dockerfile`.
fn read_dockerfile(context: &std::path::Path, file: Option<&std::path::Path>) -> Result<(String, String)> {
    let meta = std::fs::metadata(context)
        .map_err(|_| anyhow!("context directory {:?} does not exist", context.display().to_string()))?;
    if !meta.is_dir() {
        bail!("context {:?} is not a directory", context.display().to_string());
    }
    if file == Some(std::path::Path::new("-")) {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)
            .context("reading the Dockerfile from stdin")?;
        return Ok(("<stdin>".to_string(), frontend::decode("<stdin>", &bytes)?.to_string()));
    }
    let file = file.map_or_else(|| context.join("Dockerfile"), std::path::Path::to_path_buf);
    let bytes = std::fs::read(&file).with_context(|| format!("reading Dockerfile {}", file.display()))?;
    let name = file.display().to_string();
    let text = frontend::decode(&name, &bytes)?.to_string();
    Ok((name, text))
}

/// `rbuild build -`: the context is a tar stream on stdin (plain, gzip or zstd), unpacked into a
/// directory of the store's `tmp/` that goes when the build does. `-f` then names a file in it.
fn stdin_context(
    store: &Store,
    file: Option<&std::path::Path>,
) -> Result<(tempfile::TempDir, Option<PathBuf>)> {
    if file == Some(std::path::Path::new("-")) {
        bail!("invalid argument: can't use stdin for both build context and dockerfile");
    }
    let dir =
        store.unpack_context(std::io::stdin().lock()).context("unpacking the context tar from stdin")?;
    let file = file.map(|f| dir.path().join(f));
    Ok((dir, file))
}

/// `rbuild build URL` (docker's rules, `solver::RemoteContext`): fetched into the store's
/// `tmp/`, which the returned directory removes when dropped. A local directory is never
/// remote, whatever its name. `-f` names a file of the fetched context; a URL that was the
/// Dockerfile itself gives an empty context.
fn remote_context(store: &Store, a: &mut args::BuildArgs) -> Result<Option<tempfile::TempDir>> {
    let Some(arg) = a.context.to_str().filter(|_| !a.context.exists()) else { return Ok(None) };
    let Some(remote) = solver::RemoteContext::parse(arg) else { return Ok(None) };
    let dir = store.temp_dir("context-")?;
    let fetched = remote.fetch(dir.path())?;
    a.context = fetched.context;
    if let Some(bytes) = fetched.dockerfile {
        let path = dir.path().join("Dockerfile");
        std::fs::write(&path, bytes).with_context(|| format!("{}", path.display()))?;
        a.file.get_or_insert(path);
    } else if let Some(f) = a.file.as_mut().filter(|f| f.is_relative() && f.as_os_str() != "-") {
        *f = a.context.join(&*f);
    }
    Ok(Some(dir))
}

/// `build --check`, as `docker buildx build --check`: the build checks of every stage, printed
/// to stdout sorted by line, each with its rule, URL, message and the lines around it; exit 1
/// when there is any (and the `error=true` failure on stderr).
fn check(store: &Store, options: &solver::BuildOptions) -> Result<ExitCode> {
    let def = solver::lower(store, options)?;
    let mut warnings: Vec<&solver::LintWarning> = def.lint.iter().collect();
    warnings.sort_by_key(|w| w.line);
    let mut out = String::new();
    match warnings.len() {
        0 => out.push_str("Check complete, no warnings found.\n"),
        1 => out.push_str("Check complete, 1 warning has been found!\n"),
        n => out.push_str(&format!("Check complete, {n} warnings have been found!\n")),
    }
    for w in &warnings {
        out.push_str(&format!("\nWARNING: {} - {}\n{}\n", w.rule, w.url, w.detail));
        out.push_str(&source_excerpt(&options.dockerfile_name, &options.dockerfile, w.line));
    }
    print!("{out}");
    if warnings.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if def.check.error {
        let mut rules: Vec<&str> = warnings.iter().map(|w| w.rule.as_str()).collect();
        rules.sort();
        rules.dedup();
        eprintln!("rbuild: error: lint violation found for rules: {}", rules.join(", "));
    }
    Ok(ExitCode::FAILURE)
}

/// BuildKit's source excerpt (`errdefs.Source.Print`) of one line: up to two lines of context
/// each side, the line marked `>>>`.
fn source_excerpt(file: &str, text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    if line < 1 || line > lines.len() {
        return String::new();
    }
    let (mut start, mut end) = (line, line);
    let mut p = 0;
    while p < 4 {
        if start > 1 {
            start -= 1;
            p += 1;
        }
        if end != lines.len() {
            end += 1;
            p += 1;
        }
        p += 1;
    }
    let mut out = format!("{file}:{line}\n--------------------\n");
    for i in start..=end {
        let pfx = if i == line { ">>>" } else { "   " };
        out.push_str(&format!(" {i:>3} | {pfx} {}\n", lines[i - 1]));
    }
    out.push_str("--------------------\n");
    out
}

/// `--shm-size` (go-units' RAMInBytes, as docker) and `--ulimit`s.
pub(crate) fn process_limits(shm_size: Option<&str>, ulimits: &[String]) -> Result<runtime::ProcessLimits> {
    let shm_size = match shm_size {
        None => None,
        Some(s) => match hostutil::units::ram_in_bytes(s) {
            Some(0) | None => {
                bail!("invalid argument {s:?} for \"--shm-size\" flag: not a size (e.g. 64m, 1g)")
            }
            Some(n) => Some(n),
        },
    };
    let ulimits = ulimits
        .iter()
        .map(|u| {
            u.parse::<runtime::Ulimit>()
                .map_err(|e| anyhow!("invalid argument {u:?} for \"--ulimit\" flag: {e}"))
        })
        .collect::<Result<_>>()?;
    Ok(runtime::ProcessLimits { shm_size, ulimits })
}

/// Writes `bytes` to `path` whole or not at all (a temp file beside it, renamed).
pub(crate) fn write_whole(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("rbuild-tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// `build --platform P1,P2,...`: each platform once, in the order given (`local` is this
/// machine's).
fn parse_platforms(value: &str) -> Result<Vec<frontend::Platform>> {
    let mut out: Vec<frontend::Platform> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p = frontend::Platform::parse(part).map_err(|e| anyhow!("--platform: {e}"))?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        bail!("--platform {value:?}: give os/arch[/variant], e.g. linux/arm64");
    }
    Ok(out)
}

/// `--label KEY=VALUE` (`KEY` alone: an empty value, as docker).
fn parse_label(label: &str) -> Result<(String, String)> {
    let (key, value) = label.split_once('=').unwrap_or((label, ""));
    if key.is_empty() {
        bail!("--label {label:?}: the key is empty");
    }
    Ok((key.to_string(), value.to_string()))
}

/// `--memory` & co, and `--cgroup-parent` (a relative path: no `.`, `..` or empty component).
fn executor_resources(a: &args::BuildArgs) -> Result<runtime::Resources> {
    let mut r = a.resources.resources()?;
    if let Some(p) = &a.cgroup_parent {
        let trimmed = p.trim_matches('/');
        if trimmed.is_empty() || trimmed.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            bail!("--cgroup-parent {p:?}: use a cgroup path such as build/ci (no empty, . or .. parts)");
        }
        r.cgroup_parent = Some(trimmed.to_string());
    }
    Ok(r)
}

fn build_args(args: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for b in args {
        out.extend(key_value(b, "--build-arg")?);
    }
    Ok(out)
}

fn build(store: &Store, mut a: args::BuildArgs) -> Result<ExitCode> {
    // Read before building, so a bad size or config file fails at once.
    let limit = crate::storelimit::build_limit(store, a.gc_keep_storage.as_deref())?;
    // Until the image is named: a prune run meanwhile (another build's limit) spares what this
    // build uses and makes.
    let lease = store.lease()?;
    let platforms = a.platform.as_deref().map(parse_platforms).transpose()?.unwrap_or_default();
    let annotations =
        a.annotations.iter().map(|n| crate::annotations::parse(n)).collect::<Result<Vec<_>>>()?;
    // Kept until the build is done: the unpacked stdin context.
    let _stdin_context = if a.context == std::path::Path::new("-") {
        let (dir, file) = stdin_context(store, a.file.as_deref())?;
        a.context = dir.path().to_path_buf();
        a.file = file;
        Some(dir)
    } else {
        None
    };
    // Kept until the build is done: a git repository or a download (`build URL`).
    let _remote_context = remote_context(store, &mut a)?;
    let (dockerfile_name, dockerfile) = read_dockerfile(&a.context, a.file.as_deref())?;
    let tags = a.tags.iter().map(|t| parse_ref(t)).collect::<Result<Vec<_>>>()?;
    let outputs = images::parse_outputs(&a.output)?;
    let outputs = if a.push { images::with_push(outputs) } else { outputs };
    let push_to = images::push_names(&outputs, &tags)?;
    // Checked before building, as buildx does: a push needs a name.
    if push_to.is_empty() && outputs.iter().any(|o| matches!(o, images::Output::Image { push: true, .. })) {
        bail!("--push: the image has no name to push to (give -t NAME)");
    }
    store.remove_stale_snapshots()?;
    // Agents started for `--ssh ID=KEY` listen in here; killed and removed after the build.
    let ssh_dir = store.temp_dir("ssh-agent-")?;
    let ssh =
        a.ssh.iter().map(|v| solver::SshSource::parse(v, ssh_dir.path())).collect::<Result<Vec<_>, _>>()?;
    let options = solver::BuildOptions {
        context: a.context.clone(),
        dockerfile,
        dockerfile_name,
        build_args: build_args(&a.build_args)?,
        target: a.target.clone(),
        // Without `type=image` the image is not named (the -t names go into archives).
        tags: if images::stores_image(&outputs) { tags.clone() } else { Vec::new() },
        no_cache: a.no_cache,
        no_cache_filter: a.no_cache_filter.clone(),
        jobs: a.jobs,
        explain: a.explain_cache,
        cancel: Some(crate::interrupt::install()),
        secrets: a.secret.iter().map(|s| parse_secret(s)).collect::<Result<_>>()?,
        ssh,
        allow: parse_allow(&a.allow)?,
        resources: executor_resources(&a)?,
        limits: process_limits(a.shm_size.as_deref(), &a.ulimits)?,
        cache_from: crate::cacheopts::sources(
            store,
            &a.cache_from.iter().map(|c| CacheFrom::parse(c)).collect::<Result<Vec<_>, _>>()?,
            &a.insecure_registry,
        )?,
        inline_cache: None,
        source_date_epoch: a.source_date_epoch,
        compression: cache::Compression::from_name(&a.compression).ok_or_else(|| {
            anyhow!("--compression {:?}: must be gzip, zstd or uncompressed", a.compression)
        })?,
        fetcher: crate::transfer::fetcher(&a.insecure_registry, a.pull)?,
        labels: a.labels.iter().map(|l| parse_label(l)).collect::<Result<_>>()?,
        annotations: Default::default(),
        named_contexts: crate::contexts::named_contexts(store, &a.build_context)?,
        network: solver::StepNetworks {
            mode: crate::args::parse_step_network(&a.network)?,
            provider: Some(std::sync::Arc::new(runtime::network::BuildNetwork::open(
                store.root(),
                a.add_host.iter().map(|h| crate::args::parse_add_host(h)).collect::<Result<_>>()?,
            )?)),
        },
        platform: None,
        platform_label: false,
        first_step_id: 0,
        eager_copy: outputs
            .iter()
            .any(|o| matches!(o, images::Output::Local { .. } | images::Output::Tar { .. })),
    };
    let mut options = options;
    if a.check {
        return check(store, &options);
    }
    let cache_to = a.cache_to.iter().map(|c| CacheTo::parse(c)).collect::<Result<Vec<_>, _>>()?;
    options.inline_cache = cache_to
        .iter()
        .find(|t| t.target == CacheTarget::Inline)
        .map(|t| solver::InlineOptions { cache_mounts: t.cache_mounts, mounts_max_size: t.mounts_max_size });
    if platforms.len() > 1 {
        let multi = crate::multiplatform::Build { outputs, tags, push_to, cache_to, annotations };
        let code = crate::multiplatform::build(store, &a, options, &platforms, multi)?;
        drop(lease);
        if code == ExitCode::SUCCESS {
            crate::storelimit::enforce(store, limit, a.quiet)?;
        }
        return Ok(code);
    }
    options.annotations = crate::annotations::single(
        &annotations,
        &platforms.first().cloned().unwrap_or_else(frontend::Platform::host),
    )?;
    options.platform = platforms.into_iter().next();
    let sink = progress::for_mode(a.progress, a.quiet);
    let out = solver::build(store, &options, sink.as_progress());
    sink.finish();
    let out = out?;
    images::write_outputs(store, &out.image, &outputs, &tags)?;
    if let Some(path) = &a.iidfile {
        // docker's form: the ID alone, no newline.
        write_whole(path, out.image.digest.as_str().as_bytes())
            .with_context(|| format!("--iidfile {}", path.display()))?;
    }
    if let Some(path) = &a.metadata_file {
        let image = &out.image;
        let names: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let mut meta = serde_json::json!({
            "containerimage.digest": image.digest.as_str(),
            "containerimage.config.digest": image.config_digest.as_str(),
            "containerimage.descriptor": {
                "mediaType": image.manifest.media_type.clone()
                    .unwrap_or_else(|| cache::oci::MEDIA_TYPE_MANIFEST.to_string()),
                "digest": image.digest.as_str(),
                "size": std::fs::metadata(store.blob_path(&image.digest))?.len(),
            },
            "rbuild.steps.run": out.executed,
            "rbuild.steps.cached": out.cached,
        });
        if !names.is_empty() {
            meta["image.name"] = serde_json::Value::String(names.join(","));
        }
        let text = serde_json::to_vec_pretty(&meta)?;
        write_whole(path, &text).with_context(|| format!("--metadata-file {}", path.display()))?;
    }
    if !push_to.is_empty() {
        let client = crate::transfer::client_with_progress(
            &a.insecure_registry,
            a.quiet,
            crate::transfer_progress::Direction::Push,
        )?;
        for name in &push_to {
            let digest = client.push(store, &out.image, name).map_err(|e| anyhow!("{e}"))?;
            crate::transfer::push_inline_mounts(store, &client, &out.image, name);
            if !a.quiet {
                eprintln!("pushed {name}: digest: {digest}");
            }
        }
    }
    crate::cacheopts::export(store, &out, &cache_to, &options.cache_from, &a.insecure_registry)?;
    // Last, with the image named and the cache exported: the limit holds when the build ends.
    drop(lease);
    crate::storelimit::enforce(store, limit, a.quiet)?;
    if a.quiet {
        // Not into a rootfs tar going to stdout (`-o -`).
        if !outputs.contains(&images::Output::Tar { dest: None }) {
            println!("{}", out.image.digest);
        }
    } else {
        eprintln!("writing image {} ({} steps run, {} cached)", out.image.digest, out.executed, out.cached);
        if images::stores_image(&outputs) {
            for t in &tags {
                eprintln!("naming to {t}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `system info`: version, store, and every platform this machine can run and how.
fn system_info(store: &Store) -> Result<ExitCode> {
    println!("rbuild {}", env!("CARGO_PKG_VERSION"));
    println!("store: {}", store.root().display());
    println!("platform: {}", frontend::Platform::host());
    println!("platforms (build --platform, run --platform):");
    for (platform, how) in runtime::emulation::platforms() {
        match how {
            Ok(runner) => println!("  {platform:<14} {runner}"),
            Err(why) => println!("  {platform:<14} {why}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn container_command(store: &Store, c: crate::container_args::ContainerCommand) -> Result<ExitCode> {
    use crate::container_args::ContainerCommand as C;
    match c {
        C::Create(a) => containers::create(store, a),
        C::Run(a) => containers::run(store, a),
        C::Start(a) => containers::start(store, a),
        C::Stop(a) => containers::stop(store, a),
        C::Restart(a) => containers::restart(store, a),
        C::Kill(a) => containers::kill(store, a),
        C::Pause(a) => containers::pause(store, a, true),
        C::Unpause(a) => containers::pause(store, a, false),
        C::Exec(a) => containers::exec(store, a),
        C::Logs(a) => containers::logs(store, a),
        C::Ls(a) => containers::ps(store, a),
        C::Inspect(a) => containers::inspect(store, &a.containers, a.format.as_deref(), true),
        C::Rm(a) => containers::rm(store, a),
        C::Wait(a) => containers::wait(store, a),
        C::Top(a) => containers::top(store, a),
        C::Stats(a) => containers::stats(store, a),
        C::Port(a) => containers::port(store, a),
        C::Rename(a) => containers::rename(store, a),
        C::Attach(a) => containers::attach(store, a),
        C::Prune(a) => containers::prune(store, a),
        C::Cp(a) => crate::container_fs::cp(store, a),
        C::Diff(a) => crate::container_fs::diff(store, a),
        C::Export(a) => crate::container_fs::export(store, a),
        C::Commit(a) => crate::container_fs::commit(store, a),
    }
}

fn dump_ast(file: &std::path::Path) -> Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading Dockerfile {}", file.display()))?;
    let name = file.display().to_string();
    let ast = frontend::parse(&name, frontend::decode(&name, &bytes)?)?;
    print!("{}", frontend::parser::dump(&ast.instructions));
    Ok(ExitCode::SUCCESS)
}

fn graph(store: &Store, a: args::GraphArgs) -> Result<ExitCode> {
    let (dockerfile_name, dockerfile) = read_dockerfile(&a.context, a.file.as_deref())?;
    let options = solver::BuildOptions {
        context: a.context.clone(),
        dockerfile,
        dockerfile_name,
        build_args: build_args(&a.build_args)?,
        target: a.target.clone(),
        ..Default::default()
    };
    let def = solver::lower(store, &options)?;
    let out = match a.format {
        args::GraphFormat::Text => crate::graph::text(&def),
        args::GraphFormat::Dot => crate::graph::dot(&def),
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn import(store: &Store, a: args::ImportArgs) -> Result<ExitCode> {
    let reference = parse_ref(&a.reference)?;
    let input: Box<dyn Read> = if a.file.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?)
    };
    let source = a.file.display().to_string();
    let image = solver::import(
        store,
        io::BufReader::new(input),
        Some(&reference),
        &a.changes,
        &source,
        a.message.as_deref(),
    )
    .with_context(|| format!("importing {source}"))?;
    println!("{}", image.digest);
    Ok(ExitCode::SUCCESS)
}

fn save(store: &Store, a: args::SaveArgs) -> Result<ExitCode> {
    // A multi-platform image saved as an OCI layout keeps its index and every platform (the
    // docker format has no index: its host's image is saved, as before).
    if let (args::ArchiveFormat::Oci, [name]) = (&a.format, a.images.as_slice())
        && let Ok(digest) = store.lookup(name)
        && store.index(&digest)?.is_some()
    {
        let names: Vec<ImageRef> =
            name.parse::<ImageRef>().ok().filter(|r| r.digest().is_none()).into_iter().collect();
        store
            .save_index(&digest, &names, &a.output)
            .with_context(|| format!("saving to {}", a.output.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let images = store.images_to_save(&a.images)?;
    let format = match a.format {
        args::ArchiveFormat::Oci => cache::ArchiveFormat::Oci,
        args::ArchiveFormat::Docker => cache::ArchiveFormat::Docker,
    };
    store.save(&images, format, &a.output).with_context(|| format!("saving to {}", a.output.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn load(store: &Store, a: args::LoadArgs) -> Result<ExitCode> {
    let loaded = store.load(&a.input).with_context(|| format!("loading {}", a.input.display()))?;
    for l in loaded {
        match l.reference {
            Some(r) => println!("Loaded image: {r}"),
            None => println!("Loaded image ID: {}", l.image.digest),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--secret id=NAME,src=FILE` / `id=NAME,env=VAR` (also `type=file|env`, `source=`), as
/// `docker build` takes it.
fn parse_secret(value: &str) -> Result<solver::Secret> {
    let (mut id, mut src, mut env, mut typ) = (None, None, None, None);
    for field in value.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--secret {value:?}: {field:?} is not key=value"))?;
        match k.trim().to_ascii_lowercase().as_str() {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" => typ = Some(v.to_string()),
            other => bail!("--secret {value:?}: unknown key {other:?} (id, src, env, type)"),
        }
    }
    let source = match (typ.as_deref(), src, env) {
        (Some("env"), Some(v), None) | (Some("env") | None, None, Some(v)) => solver::SecretSource::Env(v),
        (Some("file") | None, Some(p), None) => solver::SecretSource::File(PathBuf::from(p)),
        (Some(t), _, _) if t != "file" && t != "env" => bail!("--secret {value:?}: type must be file or env"),
        (_, None, None) => match &id {
            // Docker: `--secret id=X` alone reads the environment variable X.
            Some(id) => solver::SecretSource::Env(id.clone()),
            None => bail!("--secret {value:?}: needs id= and src= or env="),
        },
        _ => bail!("--secret {value:?}: give either src= or env=, not both"),
    };
    let id = match id {
        Some(id) if !id.is_empty() => id,
        _ => bail!("--secret {value:?}: id= is required"),
    };
    if let solver::SecretSource::File(p) = &source
        && !p.is_file()
    {
        bail!("--secret {value:?}: {} is not a readable file", p.display());
    }
    Ok(solver::Secret { id, source })
}

fn parse_allow(values: &[String]) -> Result<solver::Entitlements> {
    let mut allow = solver::Entitlements::default();
    for v in values.iter().flat_map(|v| v.split(',')) {
        match v.trim() {
            "network.host" => allow.network_host = true,
            "security.insecure" => allow.security_insecure = true,
            other => bail!("--allow {other:?}: unknown entitlement (network.host, security.insecure)"),
        }
    }
    Ok(allow)
}
