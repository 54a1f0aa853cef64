//! "The outside world" for network tests, on this machine only: a network namespace reached
//! from the host through a veth pair on a documentation-range (RFC 5737) /30 that no address of
//! this machine is in, with busybox's httpd
//! serving one page inside it. A build step that fetches the page went out through the build
//! network's NAT exactly as it would to the internet, and nothing left the machine.
//!
//! Dropping it kills the server (by PID) and deletes the namespace and the veth pair, by name.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the served page says.
pub const PAGE: &str = "hello from outside\n";

pub struct Outside {
    netns: String,
    host_link: String,
    server: Child,
    /// The server's address.
    pub ip: Ipv4Addr,
    pub port: u16,
    _www: tempfile::TempDir,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A /30 of the documentation ranges (RFC 5737) that no address of this machine is in: some
/// machines number their own network from TEST-NET-1 (192.0.2.0/24 was seen on eth0 here). The
/// first block tried depends on the process id, so that two test binaries at once rarely meet.
fn free_slash_30() -> (Ipv4Addr, Ipv4Addr) {
    let out = Command::new("ip").args(["-4", "-o", "addr", "show"]).output().expect("run ip");
    let taken: Vec<(u32, u32)> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "inet")
        .filter_map(|w| {
            let (addr, len) = w[1].split_once('/')?;
            let addr: Ipv4Addr = addr.parse().ok()?;
            let len: u32 = len.parse().ok()?;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len.min(32)) };
            Some((u32::from(addr) & mask, mask))
        })
        .collect();
    let start = (std::process::id() % 64) as u8;
    for net in [[198, 51, 100], [203, 0, 113], [192, 0, 2]] {
        for i in 0..64u8 {
            let n = (start + i) % 64;
            let block = u32::from(Ipv4Addr::new(net[0], net[1], net[2], n * 4));
            // Overlap of two prefixes: either contains the other's base.
            let free = taken.iter().all(|&(base, mask)| {
                let ours = u32::MAX << 2;
                (block & mask) != base && (base & ours) != block
            });
            if free {
                return (Ipv4Addr::from(block + 1), Ipv4Addr::from(block + 2));
            }
        }
    }
    panic!("no free /30 in the RFC 5737 ranges: every one overlaps an address of this machine");
}

impl Outside {
    /// Sets it up; the /30 and the names come from the test process's id, so that two test
    /// binaries running at once do not collide.
    pub fn start() -> Outside {
        let tag = format!("{:x}", std::process::id());
        let netns = format!("rbt-out-{tag}");
        let host_link = format!("rbto{tag}");
        let peer = format!("rbti{tag}");
        let (host_ip, server_ip) = free_slash_30();
        let www = tempfile::tempdir().expect("temp dir");
        std::fs::write(www.path().join("index.html"), PAGE).expect("write the page");
        ip(&["netns", "add", &netns]);
        // From here on, a panic still cleans up through Drop (the server is a placeholder).
        let placeholder = Command::new("true").spawn().expect("spawn true");
        let mut outside =
            Outside { netns, host_link, server: placeholder, ip: server_ip, port: 8080, _www: www };
        let _ = outside.server.wait();
        let ns = outside.netns.clone();
        ip(&["link", "add", &outside.host_link, "type", "veth", "peer", "name", &peer, "netns", &ns]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &outside.host_link]);
        ip(&["link", "set", &outside.host_link, "up"]);
        ip(&["-n", &ns, "addr", "add", &format!("{server_ip}/30"), "dev", &peer]);
        ip(&["-n", &ns, "link", "set", &peer, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        // Replies go back to whoever asked, through the host.
        ip(&["-n", &ns, "route", "add", "default", "via", &host_ip.to_string()]);
        outside.server = Command::new("ip")
            .args(["netns", "exec", &ns, "/bin/busybox", "httpd", "-f", "-p"])
            .arg(format!("{server_ip}:{}", outside.port))
            .arg("-h")
            .arg(outside._www.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(outside._www.path().join("httpd.log")).expect("httpd log"))
            .spawn()
            .expect("start busybox httpd in the outside namespace");
        outside.wait_listening();
        outside
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}:{}/", self.ip, self.port)
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let probe = format!("/bin/busybox wget -q -O- {}", self.url());
        while Instant::now() < deadline {
            let out = Command::new("sh").arg("-c").arg(&probe).output().expect("probe");
            if out.status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = self.server.try_wait();
        let log = std::fs::read_to_string(self._www.path().join("httpd.log")).unwrap_or_default();
        let addrs = Command::new("ip").args(["-n", &self.netns, "addr"]).output().map(|o| o.stdout);
        let probe = Command::new("sh").arg("-c").arg(&probe).output();
        panic!(
            "the outside world's httpd did not answer on {}: server {status:?}, log {log:?}, \
             addresses {:?}, probe {probe:?}",
            self.url(),
            addrs.map(|a| String::from_utf8_lossy(&a).into_owned())
        );
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // Deleting the host end deletes the pair; the namespace goes by name.
        let _ = Command::new("ip").args(["link", "del", &self.host_link]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
        debug_assert!(!Path::new(&format!("/run/netns/{}", self.netns)).exists());
    }
}
