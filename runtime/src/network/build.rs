//! The network of RUN steps, as `docker build` gives it: every step in a namespace of its
//! own, attached to one hidden bridge network ([`BUILD_NETWORK`]) with outbound NAT, made on
//! first use and kept like `bridge`. A step costs a namespace and a veth pair, never a bridge.
//!
//! Every step, whatever its network, gets /etc/resolv.conf and /etc/hosts mounted read-only
//! (no /etc/hostname: BuildKit gives none, so `cat /etc/hostname` fails in its RUN too; the
//! name is the UTS hostname), each a file on a tmpfs of its own (the executor's in-memory file mount,
//! as secrets), so they never land in its layer and no host path shows in the sandbox:
//! - resolv.conf: `default` has the host's servers by docker's rules ([`resolv_conf`]: loopback
//!   resolvers such as systemd-resolved's 127.0.0.53 are unreachable from the namespace and
//!   dropped, the servers behind the stub used instead, Google's as the last resort); `host`
//!   has the host's file as it is (its loopback resolver is reachable there); `none` keeps only
//!   `search` and `options`: no server it could not reach.
//! - hosts: localhost, the build's `--add-host` entries, and the sandbox's hostname (on its
//!   address on the build network, else on 127.0.0.1, as BuildKit).
//!
//! Files and namespaces live under `<store>/build-net/<pid>-<random>/`, one directory per build
//! process; a build that was SIGKILLed leaves its directory, which the next build sweeps.
//! Rootless rbuild cannot make veths on the host: it gives `default` steps a user-mode network,
//! slirp4netns (`usermode.rs`), and the step's resolv.conf names slirp4netns's DNS forwarder.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use executor::{Mount, MountKind, NetworkMode, NetworkProvider, ProvidedNetwork, ProviderError, StepNetwork};

use super::hosts::{HostsFile, host_resolv_conf, hosts_file_content, resolv_conf};
use super::netns::{create_netns, is_netns, is_root, make_netns, remove_netns};
use super::usermode::{self, Slirp};
use super::{AttachRequest, BUILD_NETWORK, Error, Networks};

/// Gives a build's RUN steps their network ([`executor::NetworkProvider`]).
#[derive(Debug)]
pub struct BuildNetwork {
    nets: Networks,
    /// This build's directory under `<store>/build-net`.
    dir: PathBuf,
    extra_hosts: Vec<(String, IpAddr)>,
    next: AtomicU64,
    /// Steps' teardowns, running in the background (off the path from one step to the next);
    /// joined when the build is done.
    releasing: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

impl BuildNetwork {
    /// The build network of the store at `store_root`, with `--add-host` entries for every
    /// step's /etc/hosts. Sweeps what SIGKILLed builds left.
    pub fn open(store_root: &Path, extra_hosts: Vec<(String, IpAddr)>) -> Result<BuildNetwork, Error> {
        let nets = Networks::open(store_root)?;
        let parent = store_root.join("build-net");
        fs::create_dir_all(&parent).map_err(io_at(&parent))?;
        sweep(&parent);
        let dir = parent.join(format!("{}-{:08x}", std::process::id(), rand::random::<u32>()));
        fs::create_dir(&dir).map_err(io_at(&dir))?;
        Ok(BuildNetwork { nets, dir, extra_hosts, next: AtomicU64::new(0), releasing: Arc::default() })
    }

    fn step(&self, network: StepNetwork, hostname: &str) -> Result<ProvidedNetwork, Error> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(n.to_string());
        fs::create_dir(&dir).map_err(io_at(&dir))?;
        let mut release = Release {
            nets: None,
            id: String::new(),
            slirp: None,
            netns: None,
            dir: dir.clone(),
            releasing: Some(self.releasing.clone()),
        };
        let hosts_path = dir.join("hosts");
        let h = HostsFile { path: &hosts_path, hostname, extra: &self.extra_hosts };
        let (mode, hosts, resolv) = match network {
            StepNetwork::Default if !is_root() => {
                let ns = dir.join("netns");
                make_netns(&ns)?;
                release.netns = Some(ns.clone());
                release.slirp = Some(Slirp::start(&ns, &dir.join("slirp4netns.log"))?);
                let hosts = hosts_file_content(&h, &[usermode::GUEST_IP], &[], &[]);
                let host = host_resolv_conf();
                let resolv = format!("nameserver {}\n{}", usermode::DNS_IP, without_servers(&host));
                (NetworkMode::Join(ns), hosts, resolv)
            }
            StepNetwork::Default => {
                let ns = dir.join("netns");
                self.nets.ensure_build_network()?;
                create_netns(&ns)?;
                release.netns = Some(ns.clone());
                release.id = format!("build-{}-{n}", self.dir_name());
                let req = AttachRequest {
                    container_id: &release.id,
                    name: hostname,
                    aliases: &[],
                    netns: &ns,
                    ifname: "eth0",
                    hosts: h,
                };
                // Writes the hosts file too: localhost, the extras, our address and hostname.
                self.nets.attach(BUILD_NETWORK, &req)?;
                release.nets = Some(self.nets.clone());
                let hosts = fs::read_to_string(&hosts_path).map_err(io_at(&hosts_path))?;
                (NetworkMode::Join(ns), hosts, resolv_conf(&[], &[], &host_resolv_conf()))
            }
            StepNetwork::None | StepNetwork::Host => {
                let hosts = hosts_file_content(&h, &[Ipv4Addr::LOCALHOST], &[], &[]);
                if network == StepNetwork::Host {
                    (NetworkMode::Host, hosts, fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
                } else {
                    (NetworkMode::None, hosts, without_servers(&host_resolv_conf()))
                }
            }
        };
        let file = |target: &str, contents: String| Mount {
            target: target.into(),
            kind: MountKind::Secret { contents: contents.into_bytes(), mode: 0o644, uid: 0, gid: 0 },
        };
        let mounts = vec![file("/etc/resolv.conf", resolv), file("/etc/hosts", hosts)];
        Ok(ProvidedNetwork::new(mode, mounts, Box::new(release)))
    }

    fn dir_name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

impl NetworkProvider for BuildNetwork {
    fn provide(&self, network: StepNetwork, hostname: &str) -> Result<ProvidedNetwork, ProviderError> {
        Ok(self.step(network, hostname)?)
    }
}

impl Drop for BuildNetwork {
    fn drop(&mut self) {
        // The solver holds no step's network past its step: every teardown has started.
        let handles = std::mem::take(&mut *self.releasing.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = h.join();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What one step holds: dropping it detaches the step and removes its namespace and files, on
/// a thread of its own that the [`BuildNetwork`] joins.
struct Release {
    nets: Option<Networks>,
    id: String,
    slirp: Option<Slirp>,
    netns: Option<PathBuf>,
    dir: PathBuf,
    /// Set while the step holds it; taken by the drop that hands the work to a thread.
    releasing: Option<Arc<Mutex<Vec<JoinHandle<()>>>>>,
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(releasing) = self.releasing.take() {
            let rest = Release {
                nets: self.nets.take(),
                id: std::mem::take(&mut self.id),
                slirp: self.slirp.take(),
                netns: self.netns.take(),
                dir: std::mem::take(&mut self.dir),
                releasing: None,
            };
            let handle = std::thread::spawn(move || drop(rest));
            releasing.lock().unwrap_or_else(|p| p.into_inner()).push(handle);
            return;
        }
        if self.dir.as_os_str().is_empty() {
            return;
        }
        if let Some(nets) = &self.nets {
            // The kernel deletes the veth with the namespace, right below.
            let _ = nets.detach_exiting(BUILD_NETWORK, &self.id);
        }
        // Stopped before its namespace goes.
        self.slirp.take();
        if let Some(ns) = &self.netns {
            let _ = remove_netns(ns);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// resolv.conf for a step without a network: the host's `search` and `options`, no server.
fn without_servers(host: &str) -> String {
    host.lines()
        .filter(|l| matches!(l.split_whitespace().next(), Some("search" | "domain" | "options")))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Removes the directories of builds whose process is gone: their namespaces first (so the
/// build network reaps their endpoints as stale on its next change).
fn sweep(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(steps) = fs::read_dir(entry.path()) {
            for step in steps.flatten() {
                let ns = step.path().join("netns");
                if is_netns(&ns) {
                    let _ = remove_netns(&ns);
                }
            }
        }
        let _ = fs::remove_dir_all(entry.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_server_without_a_network() {
        let host = "nameserver 10.0.0.2\nsearch corp.example\noptions edns0\n";
        assert_eq!(without_servers(host), "search corp.example\noptions edns0\n");
    }
}
