//! Netfilter rules: outbound masquerading of each bridge network, isolation of `--internal`
//! ones, and DNAT of published ports, through `nft` (preferred) or `iptables`, as docker and
//! netavark shell out to them. Where neither works, nothing is added: published ports still
//! work through the userland proxy, and containers have no outbound NAT.
//!
//! Every rule carries a comment naming its owner (`rbuild-net:<network id>` or
//! `rbuild-ctr:<container id>`), so removal deletes exactly one owner's rules. With nft they
//! live in the table `ip rbuild`, deleted when its last rule goes; with iptables in chains
//! `RBUILD-*` jumped to from the built-in ones, removed when empty.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::spec::{PortMapping, Protocol};

use super::Error;
use super::subnet::Subnet;

/// Which netfilter front end rbuild drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firewall {
    Nft,
    Iptables,
}

/// One rule rbuild adds, whatever the front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Outbound traffic of a network leaves with the host's address.
    Masquerade { subnet: Subnet },
    /// An `--internal` network: nothing is forwarded into or out of its bridge.
    Isolate { bridge: String },
    /// A published port: traffic to a local address (`host_ip`, or any non-loopback local
    /// one), from outside (`output: false`) or from the host itself (`output: true`).
    Dnat { output: bool, host_ip: Option<Ipv4Addr>, protocol: Protocol, host_port: u16, to: SocketAddrV4 },
}

/// What [`publish_nat`] added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatRules {
    /// `None`: no netfilter here; the userland proxy alone serves the ports.
    pub firewall: Option<Firewall>,
    pub rules: Vec<Rule>,
}

const TABLE: &str = "rbuild";

pub(crate) fn network_tag(network_id: &str) -> String {
    format!("rbuild-net:{network_id}")
}

fn container_tag(container_id: &str) -> String {
    format!("rbuild-ctr:{container_id}")
}

/// DNAT for the published ports of a container, as docker does: traffic arriving from outside
/// and host-originated traffic to a non-loopback local address go straight to the container;
/// loopback traffic (and everything where netfilter is missing) goes through the proxy,
/// which is why `bound` must be what the proxy actually bound. IPv6 and loopback host
/// addresses get no rule. Replaces the container's previous rules.
pub fn publish_nat(
    container_id: &str,
    container_ip: Ipv4Addr,
    bound: &[PortMapping],
) -> Result<NatRules, Error> {
    let firewall = Firewall::detect();
    let rules = match firewall {
        Some(fw) => fw.publish(container_id, container_ip, bound)?,
        None => dnat_rules(container_ip, bound),
    };
    Ok(NatRules { firewall, rules })
}

/// Removes the rules [`publish_nat`] added for this container; none is fine.
pub fn unpublish_nat(container_id: &str) -> Result<(), Error> {
    Firewall::detect().map_or(Ok(()), |fw| fw.unpublish(container_id))
}

fn dnat_rules(container_ip: Ipv4Addr, bound: &[PortMapping]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for m in bound {
        let host_ip = match m.host_ip {
            None => None,
            Some(IpAddr::V4(ip)) if ip.is_unspecified() => None,
            Some(IpAddr::V4(ip)) if !ip.is_loopback() => Some(ip),
            Some(_) => continue,
        };
        let to = SocketAddrV4::new(container_ip, m.container_port);
        for output in [false, true] {
            rules.push(Rule::Dnat { output, host_ip, protocol: m.protocol, host_port: m.host_port, to });
        }
    }
    rules
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
    let mut child = Command::new(program)
        .args(args)
        // Its messages are matched (a missing table), so untranslated.
        .env("LC_ALL", "C")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Firewall(format!("running {program}: {e}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|e| Error::Firewall(format!("writing to {program}: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Firewall(format!("running {program}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.lines().next().unwrap_or("").trim();
        Err(Error::Firewall(format!("{program} {}: {err}", args.join(" "))))
    }
}

impl Firewall {
    /// The front end that works here, checked once per process: `nft`, else `iptables`, else
    /// none. `RBUILD_FIREWALL=nft|iptables|none` forces a choice.
    pub fn detect() -> Option<Firewall> {
        static DETECTED: OnceLock<Option<Firewall>> = OnceLock::new();
        *DETECTED.get_or_init(|| match std::env::var("RBUILD_FIREWALL").as_deref() {
            Ok("nft") => Some(Firewall::Nft),
            Ok("iptables") => Some(Firewall::Iptables),
            Ok("none") => None,
            _ if Firewall::Nft.works() => Some(Firewall::Nft),
            _ if Firewall::Iptables.works() => Some(Firewall::Iptables),
            _ => None,
        })
    }

    /// Whether the tool is installed and the kernel answers it.
    pub fn works(self) -> bool {
        match self {
            Firewall::Nft => run("nft", &["list", "tables"], None).is_ok(),
            Firewall::Iptables => run("iptables", &["-w", "-t", "nat", "-S", "POSTROUTING"], None).is_ok(),
        }
    }

    /// [`publish_nat`] with this front end.
    pub fn publish(
        self,
        container_id: &str,
        container_ip: Ipv4Addr,
        bound: &[PortMapping],
    ) -> Result<Vec<Rule>, Error> {
        let rules = dnat_rules(container_ip, bound);
        let _lock = super::host_lock()?;
        let tag = container_tag(container_id);
        self.remove(&tag)?;
        self.add(&tag, &rules)?;
        Ok(rules)
    }

    /// [`unpublish_nat`] with this front end.
    pub fn unpublish(self, container_id: &str) -> Result<(), Error> {
        let _lock = super::host_lock()?;
        self.remove(&container_tag(container_id))
    }

    /// Adds `rules` under the owner `tag`. The caller holds the host lock.
    pub(crate) fn add(self, tag: &str, rules: &[Rule]) -> Result<(), Error> {
        if rules.is_empty() {
            return Ok(());
        }
        match self {
            Firewall::Nft => nft_add(tag, rules),
            Firewall::Iptables => rules.iter().try_for_each(|r| ipt_add(tag, r)),
        }
    }

    /// Deletes every rule of the owner `tag`, then what is left empty. The caller holds the
    /// host lock.
    pub(crate) fn remove(self, tag: &str) -> Result<(), Error> {
        match self {
            Firewall::Nft => nft_remove(tag),
            Firewall::Iptables => ipt_remove(tag),
        }
    }
}

fn nft_rule(rule: &Rule) -> (&'static str, String) {
    match rule {
        Rule::Masquerade { subnet } => {
            ("postrouting", format!("ip saddr {subnet} ip daddr != {subnet} masquerade"))
        }
        Rule::Isolate { bridge } => ("forward", format!("iifname \"{bridge}\" oifname != \"{bridge}\" drop")),
        Rule::Dnat { output, host_ip, protocol, host_port, to } => {
            let dest = match host_ip {
                Some(ip) => format!("ip daddr {ip}"),
                None if *output => "ip daddr != 127.0.0.0/8 fib daddr type local".to_string(),
                None => "fib daddr type local".to_string(),
            };
            let chain = if *output { "output" } else { "prerouting" };
            (chain, format!("{dest} {} dport {host_port} dnat to {to}", protocol.as_str()))
        }
    }
}

fn nft_add(tag: &str, rules: &[Rule]) -> Result<(), Error> {
    let mut script = format!(
        "table ip {TABLE} {{\n\
         chain postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
         chain output {{ type nat hook output priority -100; policy accept; }}\n\
         chain forward {{ type filter hook forward priority filter; policy accept; }}\n}}\n"
    );
    for rule in rules {
        let (chain, text) = nft_rule(rule);
        script.push_str(&format!("add rule ip {TABLE} {chain} {text} comment \"{tag}\"\n"));
        // An isolated bridge drops what comes in from elsewhere too.
        if let Rule::Isolate { bridge } = rule {
            script.push_str(&format!(
                "add rule ip {TABLE} {chain} oifname \"{bridge}\" iifname != \"{bridge}\" drop comment \"{tag}\"\n"
            ));
        }
    }
    run("nft", &["-f", "-"], Some(&script)).map(drop)
}

fn nft_remove(tag: &str) -> Result<(), Error> {
    let listing = match run("nft", &["-j", "-a", "list", "table", "ip", TABLE], None) {
        Ok(l) => l,
        // No table: nothing of ours.
        Err(Error::Firewall(e)) if e.contains("No such file or directory") => return Ok(()),
        Err(e) => return Err(e),
    };
    let json: serde_json::Value =
        serde_json::from_str(&listing).map_err(|e| Error::Firewall(format!("reading nft's listing: {e}")))?;
    let mut script = String::new();
    let mut left = 0;
    for item in json["nftables"].as_array().into_iter().flatten() {
        let rule = &item["rule"];
        if rule.is_null() {
            continue;
        }
        match (rule["comment"].as_str(), rule["chain"].as_str(), rule["handle"].as_u64()) {
            (Some(c), Some(chain), Some(handle)) if c == tag => {
                script.push_str(&format!("delete rule ip {TABLE} {chain} handle {handle}\n"));
            }
            _ => left += 1,
        }
    }
    if left == 0 {
        script = format!("delete table ip {TABLE}\n");
    }
    if script.is_empty() { Ok(()) } else { run("nft", &["-f", "-"], Some(&script)).map(drop) }
}

/// The iptables chains rbuild owns: (table, chain, built-in chain, the jump's match).
const IPT_CHAINS: [(&str, &str, &str, &[&str]); 4] = [
    ("nat", "RBUILD-POSTROUTING", "POSTROUTING", &[]),
    ("nat", "RBUILD-PREROUTING", "PREROUTING", &["-m", "addrtype", "--dst-type", "LOCAL"]),
    ("nat", "RBUILD-OUTPUT", "OUTPUT", &["!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL"]),
    ("filter", "RBUILD-FORWARD", "FORWARD", &[]),
];

fn ipt(table: &str, args: &[&str]) -> Result<String, Error> {
    let mut all = vec!["-w", "-t", table];
    all.extend_from_slice(args);
    run("iptables", &all, None)
}

fn ipt_add(tag: &str, rule: &Rule) -> Result<(), Error> {
    let comment = ["-m", "comment", "--comment", tag];
    let mut specs: Vec<(usize, Vec<String>)> = Vec::new();
    match rule {
        Rule::Masquerade { subnet } => {
            let s = subnet.to_string();
            specs.push((
                0,
                vec!["-s".into(), s.clone(), "!".into(), "-d".into(), s, "-j".into(), "MASQUERADE".into()],
            ));
        }
        Rule::Isolate { bridge } => {
            for (a, b) in [("-i", "-o"), ("-o", "-i")] {
                let spec = [a, bridge, "!", b, bridge, "-j", "DROP"];
                specs.push((3, spec.iter().map(|s| s.to_string()).collect()));
            }
        }
        Rule::Dnat { output, host_ip, protocol, host_port, to } => {
            let mut spec = Vec::new();
            if let Some(ip) = host_ip {
                spec.extend(["-d".to_string(), ip.to_string()]);
            }
            spec.extend(["-p", protocol.as_str(), "--dport"].map(str::to_string));
            spec.push(host_port.to_string());
            spec.extend(["-j", "DNAT", "--to-destination"].map(str::to_string));
            spec.push(to.to_string());
            specs.push((if *output { 2 } else { 1 }, spec));
        }
    }
    for (chain_idx, spec) in specs {
        let (table, chain, builtin, jump_match) = IPT_CHAINS[chain_idx];
        if ipt(table, &["-S", chain]).is_err() {
            ipt(table, &["-N", chain])?;
        }
        let mut jump: Vec<&str> = jump_match.to_vec();
        jump.extend(["-j", chain]);
        let mut check = vec!["-C", builtin];
        check.extend(&jump);
        if ipt(table, &check).is_err() {
            let mut insert = vec!["-I", builtin];
            insert.extend(&jump);
            ipt(table, &insert)?;
        }
        let mut args = vec!["-A", chain];
        args.extend(spec.iter().map(String::as_str));
        args.extend(comment);
        ipt(table, &args)?;
    }
    Ok(())
}

fn ipt_remove(tag: &str) -> Result<(), Error> {
    for (table, chain, builtin, jump_match) in IPT_CHAINS {
        let Ok(listing) = ipt(table, &["-S", chain]) else { continue };
        let mut left = 0;
        for line in listing.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() != Some(&"-A") {
                continue;
            }
            let tagged = words.windows(2).any(|w| w[0] == "--comment" && w[1].trim_matches('"') == tag);
            if !tagged {
                left += 1;
                continue;
            }
            let mut args = vec!["-D"];
            args.extend(words[1..].iter().map(|w| w.trim_matches('"')));
            ipt(table, &args)?;
        }
        if left == 0 {
            let mut unjump = vec!["-D", builtin];
            unjump.extend(jump_match);
            unjump.extend(["-j", chain]);
            while ipt(table, &unjump).is_ok() {}
            ipt(table, &["-X", chain])?;
        }
    }
    Ok(())
}
