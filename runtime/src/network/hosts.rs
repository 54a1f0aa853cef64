//! The files a container gets at /etc/hosts and /etc/resolv.conf.
//!
//! Containers on a user-defined network find each other by name through /etc/hosts entries
//! that rbuild rewrites on every attach and detach (no DNS server runs). The file is
//! bind-mounted into the container, so it is rewritten in place (same inode), never replaced.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::Error;

/// A container's /etc/hosts: where it lives on the host and what the container adds to it.
#[derive(Debug, Clone, Copy)]
pub struct HostsFile<'a> {
    pub path: &'a Path,
    pub hostname: &'a str,
    /// `--add-host NAME:IP`.
    pub extra: &'a [(String, IpAddr)],
}

/// One line of other containers' names: an address and the names it answers to.
pub type HostsEntry = (Ipv4Addr, Vec<String>);

/// The text of a hosts file: localhost, the `--add-host` extras, the container's own
/// addresses with its hostname (and `own_names`), then its peers.
pub fn hosts_file_content(
    h: &HostsFile,
    own_ips: &[Ipv4Addr],
    own_names: &[String],
    peers: &[HostsEntry],
) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (name, ip) in h.extra {
        let _ = writeln!(out, "{ip}\t{name}");
    }
    for ip in own_ips {
        let mut names = vec![h.hostname.to_string()];
        for n in own_names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let _ = writeln!(out, "{ip}\t{}", names.join(" "));
    }
    for (ip, names) in peers {
        let _ = writeln!(out, "{ip}\t{}", names.join(" "));
    }
    out
}

/// Writes the hosts file in place (truncate and write: the inode a container has
/// bind-mounted stays the same); creates it if missing.
pub fn write_hosts_file(
    h: &HostsFile,
    own_ips: &[Ipv4Addr],
    own_names: &[String],
    peers: &[HostsEntry],
) -> Result<(), Error> {
    let text = hosts_file_content(h, own_ips, own_names, peers);
    write_in_place(h.path, text.as_bytes(), true)
}

/// Truncates and writes `path`; `create`: make it if missing (else a missing file is left so).
pub(crate) fn write_in_place(path: &Path, bytes: &[u8], create: bool) -> Result<(), Error> {
    let io_err = |source| Error::Io { path: path.to_path_buf(), source };
    let mut f = match OpenOptions::new().write(true).truncate(true).create(create).open(path) {
        Ok(f) => f,
        Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(e)),
    };
    f.write_all(bytes).map_err(io_err)
}

/// The host's resolv.conf as docker reads it: where /etc/resolv.conf names only
/// systemd-resolved's stub (127.0.0.53), which a container cannot reach, the file of the
/// servers behind it. Empty if there is none.
pub fn host_resolv_conf() -> String {
    let etc = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers: Vec<&str> =
        etc.lines().filter_map(|l| l.strip_prefix("nameserver")).map(str::trim).collect();
    if !servers.is_empty()
        && servers.iter().all(|s| *s == "127.0.0.53")
        && let Ok(upstream) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf")
    {
        return upstream;
    }
    etc
}

/// A container's resolv.conf, by docker's rules: `--dns` servers replace the host's; else
/// the host's nameservers but those on localhost (127.0.0.0/8, ::1), which the container
/// cannot reach; if none is left, Google's 8.8.8.8 and 8.8.4.4. `--dns-search` replaces the
/// host's `search` (`.` alone: no search line); the host's `options` are kept.
///
/// `host_resolv_conf` is the host's file as read by the caller (on systemd-resolved hosts
/// that is /run/systemd/resolve/resolv.conf, whose servers are not the 127.0.0.53 stub).
pub fn resolv_conf(dns: &[IpAddr], search: &[String], host_resolv_conf: &str) -> String {
    let mut servers: Vec<String> = Vec::new();
    let mut host_search: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    for line in host_resolv_conf.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok())
                    && !ip.is_loopback()
                {
                    servers.push(ip.to_string());
                }
            }
            // The last search (or domain) line wins, as in the resolver.
            Some("search") | Some("domain") => host_search = words.map(str::to_string).collect(),
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    if !dns.is_empty() {
        servers = dns.iter().map(IpAddr::to_string).collect();
    } else if servers.is_empty() {
        servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    let search: Vec<String> = if search.is_empty() {
        host_search
    } else {
        search.iter().filter(|s| s.as_str() != ".").cloned().collect()
    };
    let mut out = String::new();
    for s in &servers {
        let _ = writeln!(out, "nameserver {s}");
    }
    if !search.is_empty() {
        let _ = writeln!(out, "search {}", search.join(" "));
    }
    if !options.is_empty() {
        let _ = writeln!(out, "options {}", options.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_localhost_servers_and_falls_back_to_public_ones() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver ::1\nsearch corp.example\noptions edns0 trust-ad\n";
        assert_eq!(
            resolv_conf(&[], &[], host),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch corp.example\noptions edns0 trust-ad\n"
        );
        let host = "nameserver 10.0.0.2\nnameserver 127.0.0.1\n";
        assert_eq!(resolv_conf(&[], &[], host), "nameserver 10.0.0.2\n");
    }

    #[test]
    fn resolv_conf_dns_flags_override_the_host() {
        let host = "nameserver 10.0.0.2\nsearch a.example\n";
        let dns = ["1.1.1.1".parse().unwrap()];
        assert_eq!(resolv_conf(&dns, &["b.example".into()], host), "nameserver 1.1.1.1\nsearch b.example\n");
        assert_eq!(resolv_conf(&dns, &[".".into()], host), "nameserver 1.1.1.1\n");
    }

    #[test]
    fn hosts_lists_self_extras_and_peers() {
        let extra = [("db.local".to_string(), "192.168.1.9".parse().unwrap())];
        let h = HostsFile { path: Path::new("/nonexistent"), hostname: "abc123", extra: &extra };
        let peers = [(Ipv4Addr::new(10, 89, 0, 3), vec!["web".to_string(), "0123456789ab".to_string()])];
        let text = hosts_file_content(&h, &[Ipv4Addr::new(10, 89, 0, 2)], &["app".to_string()], &peers);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"));
        assert!(text.contains("192.168.1.9\tdb.local\n"));
        assert!(text.contains("10.89.0.2\tabc123 app\n"));
        assert!(text.ends_with("10.89.0.3\tweb 0123456789ab\n"));
    }
}
