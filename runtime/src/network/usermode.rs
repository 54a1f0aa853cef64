//! The network of rootless build steps: rootless rbuild has no say over the host's interfaces
//! (no veth, no bridge, no NAT rule), so a `default` step's namespace gets a user-mode TCP/IP
//! stack instead, slirp4netns, as podman's rootless default on Debian 12. slirp4netns runs
//! for as long as the step, in rbuild's user namespace, and forwards the step's connections
//! through ordinary sockets of the host: 10.0.2.100 is the step, 10.0.2.2 the gateway and
//! 10.0.2.3 a DNS forwarder to the host's resolvers; the host's own loopback is unreachable
//! (`--disable-host-loopback`).
//!
//! pasta (Debian's `passt`) is not used: bookworm's is a 2023 snapshot whose options have
//! changed since; slirp4netns 1.2 is stable and everywhere.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::fcntl::OFlag;

use super::Error;

/// The step's address, and the DNS forwarder, in slirp4netns's network.
pub(crate) const GUEST_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 100);
pub(crate) const DNS_IP: &str = "10.0.2.3";

/// A running slirp4netns, killed (by its PID) when dropped.
#[derive(Debug)]
pub(crate) struct Slirp {
    child: Child,
}

impl Slirp {
    /// Starts slirp4netns for the namespace at `netns` and waits until `tap0` is configured.
    /// `log` takes its stderr (the error quotes it if it fails).
    pub(crate) fn start(netns: &Path, log: &Path) -> Result<Slirp, Error> {
        let io_at = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let (ready_r, ready_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| Error::Invalid(format!("slirp4netns: a pipe: {e}")))?;
        let ready_fd = ready_w.as_raw_fd();
        let stderr = File::create(log).map_err(io_at(log))?;
        let mut cmd = Command::new("slirp4netns");
        cmd.args(["--configure", "--mtu=65520", "--disable-host-loopback", "--ready-fd=3"])
            .arg("--netns-type=path")
            .arg(netns)
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // SAFETY: between fork and exec the closure only calls dup2, which is
        // async-signal-safe, on a descriptor that stays open until after the spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(ready_fd, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::Invalid(
                "a rootless build's RUN steps get their network from slirp4netns, which is not \
                 installed: install it (apt-get install slirp4netns) or build with --network=none"
                    .into(),
            ),
            _ => Error::Invalid(format!("starting slirp4netns: {e}")),
        })?;
        drop(ready_w);
        let mut slirp = Slirp { child };
        let mut byte = [0u8; 1];
        // slirp4netns writes "1" once the interface is up; EOF means it died first.
        match File::from(ready_r).read(&mut byte) {
            Ok(1) => Ok(slirp),
            _ => {
                let _ = slirp.child.kill();
                let _ = slirp.child.wait();
                let said = std::fs::read_to_string(log).unwrap_or_default();
                let said = said.lines().collect::<Vec<_>>().join("; ");
                let hint = if said.contains("/dev/net/tun") {
                    " (/dev/net/tun must be open to every user, mode 0666, as Debian's udev makes it)"
                } else {
                    ""
                };
                Err(Error::Invalid(format!("slirp4netns could not set up the step's network: {said}{hint}")))
            }
        }
    }
}

impl Drop for Slirp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
