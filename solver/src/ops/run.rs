//! RUN: the argv in the sandbox over a snapshot of the parent's layers, with the image's ENV
//! (plus build args), WORKDIR and USER, its `--mount`s, network and security, and the build's
//! limits; its output streamed to progress, the last lines kept for the error.

use std::collections::VecDeque;

use cache::oci::{ContainerConfig, Layer};
use executor::StepNetwork;
use frontend::{CopyFrom, RunMount, RunNetwork, RunOp, RunSecurity, Step};

use crate::error::{ErrorKind, Result, StepError};
use crate::mounts::{self, Source};
use crate::ops::sandbox_rootfs;
use crate::schedule::{AtStep, Builder, State};
use crate::{Event, StepName};

/// How many of a failed RUN's last output lines the error shows.
const OUTPUT_TAIL: usize = 10;

/// Every RUN's hostname (BuildKit's is `buildkitsandbox`).
const SANDBOX_HOSTNAME: &str = "rbuild-sandbox";

impl Builder<'_> {
    pub(super) fn run(
        &self,
        state: &State,
        step: &Step,
        run: &RunOp,
        name: &StepName,
    ) -> Result<Option<Layer>> {
        // The programs are the image's platform's (its config says which): another platform's
        // need an emulator, checked (and registered) before anything is set up.
        let c = &state.config;
        if !c.architecture.is_empty() {
            executor::emulation::ensure(&c.os, &c.architecture).map_err(StepError::from).at(step)?;
        }
        self.ensure_layers(&state.layers)?;
        let snapshot = self.store.create_snapshot(&state.layers).at(step)?;
        let cfg = &state.config.config;
        // The frontend hands over exactly the entries where the RUN's environment differs from
        // the image's ENV (an ARG declared after an ENV of the same name wins, as in BuildKit).
        let mut run_env = ContainerConfig { env: cfg.env.clone(), ..Default::default() };
        for arg in &run.build_args {
            let (k, v) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
            run_env.env_set(k, v);
        }
        let refused = |what, entitlement| Err(StepError::NotAllowed { what, entitlement }).at(step);
        // The build's `--network=host` needs no entitlement (docker's rule): the user typed it.
        let network = match run.network {
            RunNetwork::Default => self.options.network.mode,
            RunNetwork::None => StepNetwork::None,
            RunNetwork::Host if self.options.allow.network_host => StepNetwork::Host,
            RunNetwork::Host => return refused("RUN --network=host", "network.host"),
        };
        let security = match run.security {
            RunSecurity::Sandbox => executor::Security::docker_default(),
            RunSecurity::Insecure if self.options.allow.security_insecure => executor::Security::insecure(),
            RunSecurity::Insecure => return refused("RUN --security=insecure", "security.insecure"),
        };
        let provided = match &self.options.network.provider {
            Some(p) => Some(
                p.provide(network, SANDBOX_HOSTNAME)
                    .map_err(|source| StepError::Network { network, source })
                    .at(step)?,
            ),
            None => None,
        };
        let sources = self.mount_sources(step, &run.mounts)?;
        let prepared = mounts::prepare(
            self.store,
            &run.mounts,
            &self.options.secrets,
            &self.options.ssh,
            sources,
            &self.options.cache_from,
        )
        .at(step)?;
        for w in &prepared.warnings {
            self.progress.event(crate::Event::Warning(w));
        }
        for kv in &prepared.env {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            run_env.env_set(k, v);
        }
        if let Some(sock) = &prepared.ssh_auth_sock
            && run_env.env_get("SSH_AUTH_SOCK").is_none()
        {
            run_env.env_set("SSH_AUTH_SOCK", sock);
        }
        // Proxies given as build args: in the step's environment only (not in its key).
        for kv in &run.proxy_env {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            run_env.env_set(k, v);
        }
        let env = run_env.env.unwrap_or_default();
        let (mode, mut mounts) = match &provided {
            Some(p) => (p.mode.clone(), p.mounts.clone()),
            None if network == StepNetwork::Host => (executor::NetworkMode::Host, vec![]),
            None => (executor::NetworkMode::None, vec![]),
        };
        // The step's own mounts come after /etc/hosts & co, so that a `--mount` there wins.
        mounts.extend(prepared.mounts.iter().cloned());
        let mut stubs: Vec<String> =
            provided.iter().flat_map(|p| p.mounts.iter().map(|m| m.target.clone())).collect();
        stubs.extend(prepared.targets.iter().cloned());
        let spec = executor::SandboxSpec {
            rootfs: sandbox_rootfs(&snapshot),
            process: executor::Process {
                args: run.args.clone(),
                env,
                cwd: cfg.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()),
                user: cfg.user.clone().unwrap_or_default(),
            },
            hostname: SANDBOX_HOSTNAME.into(),
            network: mode,
            mounts,
            resources: self.options.resources.clone(),
            limits: self.options.limits.clone(),
            security,
            readonly_rootfs: false,
        };
        let mut tail: VecDeque<String> = VecDeque::new();
        let mut partial: Vec<u8> = Vec::new();
        let progress = self.progress;
        let mut on_line = |line: &[u8]| {
            let line = String::from_utf8_lossy(line).into_owned();
            progress.event(Event::Output(name, &line));
            if tail.len() == OUTPUT_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        };
        let mut on_output = |chunk: &[u8]| {
            partial.extend_from_slice(chunk);
            while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=pos).collect();
                on_line(&line[..line.len() - 1]);
            }
        };
        let outcome =
            match executor::run_cancellable(&spec, executor::Stdio::Capture(&mut on_output), self.cancel) {
                Ok(outcome) => outcome,
                Err(executor::Error::Cancelled) => return Err(ErrorKind::Cancelled.into()),
                Err(e) => return Err(e).at(step),
            };
        // The namespace and address go back now, not after the commit.
        drop(provided);
        if !partial.is_empty() {
            on_line(&partial);
        }
        if !outcome.success() {
            return Err(ErrorKind::RunFailed {
                location: step.location.clone(),
                step: step.text.clone(),
                status: outcome.status,
                oom: outcome.oom_killed.then_some(self.options.resources.memory),
                network,
                output_tail: tail.into(),
            }
            .into());
        }
        mounts::remove_stubs(&snapshot.upper(), &snapshot.lowers, &stubs);
        let layer = self.commit(&snapshot, step);
        drop(prepared);
        layer
    }

    /// Where each mount reads from (`from=`: the context, a stage's or an image's layers), for
    /// bind mounts and cache mounts seeded `from=`; waiting for a stage as needed.
    fn mount_sources(&self, step: &Step, run_mounts: &[RunMount]) -> Result<Vec<Option<Source<'_>>>> {
        let mut sources = Vec::with_capacity(run_mounts.len());
        for m in run_mounts {
            let from = match m {
                RunMount::Bind { from, .. } => from,
                RunMount::Cache { from: from @ Some(_), .. } => from,
                _ => {
                    sources.push(None);
                    continue;
                }
            };
            let source = match from {
                None => Source::Context(self.context().at(step)?),
                Some(CopyFrom::Stage(i)) => {
                    let layers = self.wait_stage(*i)?.layers;
                    self.ensure_layers(&layers)?;
                    Source::Layers(layers)
                }
                Some(CopyFrom::Image(r)) => {
                    Source::Layers(self.source_image(step, r, "--mount from=")?.layers())
                }
            };
            sources.push(Some(source));
        }
        Ok(sources)
    }
}
