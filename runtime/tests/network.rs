//! Networks for real: bridges, veth pairs, network namespaces, /etc/hosts, the userland proxy
//! and NAT rules. Needs root. Every test has its own store, its own subnet (10.199.N.0/24,
//! N per test) and removes by exact name what it made, also when it fails (the fixture's
//! Drop). Traffic goes only over loopback and the bridges the tests make.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use runtime::network::{
    self, AttachRequest, CreateOptions, Endpoint, Error, Firewall, HostsFile, Network, Networks, Proxy,
};
use runtime::{PortMapping, Protocol};

/// A temp store and what a test attached, undone on drop.
struct Fixture {
    dir: tempfile::TempDir,
    nets: Networks,
    attached: Vec<(String, String)>,
    netns: Vec<PathBuf>,
    published: Vec<(Firewall, String)>,
}

/// A pretend container: an id, a name, a namespace and a hosts file.
struct Ctr {
    id: String,
    name: String,
    netns: PathBuf,
    hosts: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let nets = Networks::open(dir.path()).expect("open networks");
        Fixture { dir, nets, attached: Vec::new(), netns: Vec::new(), published: Vec::new() }
    }

    fn network(&self, name: &str, subnet: &str) -> Network {
        let opts =
            CreateOptions { subnet: Some(subnet.parse().expect("subnet")), ..CreateOptions::default() };
        self.nets.create(name, &opts).expect("create network")
    }

    fn container(&mut self, name: &str) -> Ctr {
        let id = format!("{:032x}{:032x}", rand_u128(), rand_u128());
        let netns = self.dir.path().join(format!("{name}.netns"));
        self.netns.push(netns.clone());
        network::create_netns(&netns).expect("create netns");
        Ctr { id, name: name.to_string(), netns, hosts: self.dir.path().join(format!("{name}.hosts")) }
    }

    fn attach(&mut self, network: &str, c: &Ctr, ifname: &str) -> Result<Endpoint, Error> {
        let req = AttachRequest {
            container_id: &c.id,
            name: &c.name,
            aliases: &[],
            netns: &c.netns,
            ifname,
            hosts: HostsFile { path: &c.hosts, hostname: &c.id[..12], extra: &[] },
        };
        let e = self.nets.attach(network, &req)?;
        self.attached.push((network.to_string(), c.id.clone()));
        Ok(e)
    }

    fn detach(&mut self, network: &str, c: &Ctr) {
        self.nets.detach(network, &c.id).expect("detach");
        self.attached.retain(|(n, id)| !(n == network && *id == c.id));
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for (net, id) in self.attached.drain(..) {
            let _ = self.nets.detach(&net, &id);
        }
        for (fw, id) in self.published.drain(..) {
            let _ = fw.unpublish(&id);
        }
        for ns in &self.netns {
            let _ = network::remove_netns(ns);
        }
        if let Ok(list) = self.nets.list() {
            for n in list.iter().filter(|n| !n.is_predefined()) {
                let _ = self.nets.remove(&n.id);
            }
        }
    }
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).expect("urandom");
    u128::from_ne_bytes(b)
}

fn links() -> Vec<String> {
    network::host_links().expect("list links")
}

fn bridge_of(n: &Network) -> String {
    n.bridge.as_ref().expect("a bridge network").interface.clone()
}

/// A TCP listener inside the namespace, on `ip:0`.
fn listen_in(netns: &Path, ip: Ipv4Addr) -> TcpListener {
    network::run_in_netns(netns, || TcpListener::bind((ip, 0))).expect("join netns").expect("bind in netns")
}

/// Accepts one connection and echoes what it reads, upper-cased, until EOF.
fn serve_upper_once(listener: TcpListener) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).expect("read");
        s.write_all(&buf.to_ascii_uppercase()).expect("write");
    })
}

fn exchange(mut s: TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    out
}

#[test]
fn two_namespaces_on_a_network_talk_by_tcp_and_find_each_other_in_hosts() {
    let mut fx = Fixture::new();
    let net = fx.network("talk", "10.199.1.0/24");
    let bridge = bridge_of(&net);
    let before = links();
    assert!(!before.contains(&bridge), "no bridge before the first attach");

    let a = fx.container("alpha");
    let b = fx.container("beta");
    let ea = fx.attach("talk", &a, "eth0").expect("attach alpha");
    let eb = fx.attach("talk", &b, "eth0").expect("attach beta");
    assert_eq!(ea.ip, Ipv4Addr::new(10, 199, 1, 2), "lowest free address, after the gateway");
    assert_eq!(eb.ip, Ipv4Addr::new(10, 199, 1, 3));
    assert_eq!(ea.mac, "02:42:0a:c7:01:02");
    assert_eq!(ea.gateway, Ipv4Addr::new(10, 199, 1, 1));
    let now = links();
    assert!(now.contains(&bridge) && now.contains(&ea.host_veth) && now.contains(&eb.host_veth));

    let listener = listen_in(&a.netns, ea.ip);
    let addr = listener.local_addr().expect("local addr");
    let server = serve_upper_once(listener);
    let reply = network::run_in_netns(&b.netns, || TcpStream::connect(addr))
        .expect("join netns")
        .map(|s| exchange(s, b"hello over the bridge"))
        .expect("connect from beta to alpha");
    server.join().expect("server");
    assert_eq!(reply, b"HELLO OVER THE BRIDGE");

    let hosts_a = std::fs::read_to_string(&a.hosts).expect("alpha's hosts");
    let hosts_b = std::fs::read_to_string(&b.hosts).expect("beta's hosts");
    assert!(hosts_a.contains(&format!("10.199.1.3\tbeta {}\n", &b.id[..12])), "{hosts_a}");
    assert!(hosts_b.contains(&format!("10.199.1.2\talpha {}\n", &a.id[..12])), "{hosts_b}");
    assert!(hosts_a.contains(&format!("10.199.1.2\t{} alpha\n", &a.id[..12])), "own entry: {hosts_a}");

    fx.detach("talk", &b);
    let now = links();
    assert!(!now.contains(&eb.host_veth), "detach deletes the veth");
    assert!(now.contains(&bridge), "the bridge stays while alpha is attached");
    let hosts_a = std::fs::read_to_string(&a.hosts).expect("alpha's hosts");
    assert!(!hosts_a.contains("beta"), "beta left alpha's hosts: {hosts_a}");
    fx.detach("talk", &a);
    fx.detach("talk", &a);
    let after = links();
    assert!(!after.contains(&ea.host_veth), "detach deletes the veth");
    assert!(after.contains(&bridge), "the bridge stays while the network exists");
    assert_eq!(fx.nets.endpoints("talk").expect("endpoints"), []);
    fx.nets.remove("talk").expect("remove");
    assert!(!links().contains(&bridge), "network rm deletes the bridge");
}

#[test]
fn addresses_run_out_and_a_released_one_is_given_again() {
    let mut fx = Fixture::new();
    // A /29: .1 is the gateway, .2 to .6 for containers, .7 broadcast.
    fx.network("tiny", "10.199.2.0/29");
    let mut ctrs = Vec::new();
    for i in 0..5 {
        let c = fx.container(&format!("c{i}"));
        let e = fx.attach("tiny", &c, "eth0").expect("attach");
        assert_eq!(e.ip, Ipv4Addr::new(10, 199, 2, 2 + i as u8));
        ctrs.push(c);
    }
    let extra = fx.container("extra");
    let err = fx.attach("tiny", &extra, "eth0").expect_err("the subnet is full");
    assert_eq!(err.to_string(), "no free IP address left in network tiny (10.199.2.0/29)");
    assert!(matches!(err, Error::Exhausted { .. }));

    fx.detach("tiny", &ctrs[1]);
    let e = fx.attach("tiny", &extra, "eth0").expect("attach after a release");
    assert_eq!(e.ip, Ipv4Addr::new(10, 199, 2, 3), "the released address");
}

#[test]
fn overlapping_subnets_duplicate_names_and_bad_gateways_are_refused() {
    let fx = Fixture::new();
    fx.network("first", "10.199.3.0/24");
    let create = |name: &str, subnet: Option<&str>, gateway: Option<&str>| {
        let opts = CreateOptions {
            subnet: subnet.map(|s| s.parse().expect("subnet")),
            gateway: gateway.map(|g| g.parse().expect("gateway")),
            ..CreateOptions::default()
        };
        fx.nets.create(name, &opts)
    };
    let err = create("second", Some("10.199.3.128/25"), None).expect_err("overlap");
    assert_eq!(err.to_string(), "subnet 10.199.3.128/25 overlaps with network first");
    let err = create("first", Some("10.199.13.0/24"), None).expect_err("duplicate");
    assert_eq!(err.to_string(), "network with name first already exists");
    let err = create("bridge", None, None).expect_err("predefined name");
    assert_eq!(err.to_string(), "network with name bridge already exists");
    let err = create("third", Some("10.199.13.0/24"), Some("10.199.14.1")).expect_err("gateway outside");
    assert_eq!(err.to_string(), "gateway 10.199.14.1 is not in subnet 10.199.13.0/24");
    let err = create("third", Some("10.199.13.0/24"), Some("10.199.13.255")).expect_err("broadcast gateway");
    assert!(err.to_string().contains("broadcast"), "{err}");
    assert!(create("bad/name", None, None).is_err());
    // The host's own routes are taken too.
    let host_route = std::fs::read_to_string("/proc/net/route").expect("routes");
    if let Some(dest) = host_route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
        let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
        (dest != 0 && mask.count_ones() <= 30)
            .then(|| format!("{}/{}", Ipv4Addr::from(u32::from_be(dest)), mask.count_ones()))
    }) {
        let err = create("onhost", Some(&dest), None).expect_err("a host route's subnet");
        assert!(err.to_string().contains("a route of the host"), "{err}");
    }

    let custom = create("third", Some("10.199.13.0/24"), Some("10.199.13.254")).expect("create");
    let cfg = custom.bridge.as_ref().expect("bridge");
    assert_eq!(
        (cfg.subnet.to_string(), cfg.gateway),
        ("10.199.13.0/24".into(), Ipv4Addr::new(10, 199, 13, 254))
    );
    assert!(cfg.interface.starts_with("rbr-") && custom.id.starts_with(&cfg.interface[4..]));
    let auto = create("fourth", None, None).expect("create with a picked subnet");
    let auto_subnet = auto.bridge.as_ref().expect("bridge").subnet;
    assert!(auto_subnet.to_string().starts_with("10.") && auto_subnet.prefix_len() == 24);
    assert!(!auto_subnet.overlaps(&cfg.subnet));

    // By name, full id and unique prefix.
    assert_eq!(fx.nets.get(&custom.id).expect("by id").name, "third");
    assert_eq!(fx.nets.get(&custom.id[..10]).expect("by prefix").name, "third");
    assert!(matches!(fx.nets.get("nope"), Err(Error::NotFound(_))));
}

#[test]
fn predefined_networks_are_listed_and_the_default_one_is_made_on_first_use() {
    let fx = Fixture::new();
    let list = fx.nets.list().expect("list");
    let drivers: BTreeMap<&str, &str> = list.iter().map(|n| (n.name.as_str(), n.driver.as_str())).collect();
    assert_eq!(drivers, BTreeMap::from([("bridge", "bridge"), ("host", "host"), ("none", "null")]));
    let bridge = fx.nets.get("bridge").expect("bridge");
    assert_eq!(bridge.id, list[0].id, "made once, then kept");
    let cfg = bridge.bridge.as_ref().expect("a bridge");
    assert!(cfg.interface.starts_with("rbuild"));
    for name in ["bridge", "host", "none"] {
        let err = fx.nets.remove(name).expect_err("predefined");
        assert_eq!(err.to_string(), format!("{name} is a pre-defined network and cannot be removed"));
    }
    assert_eq!(fx.nets.prune().expect("prune"), []);
}

#[test]
fn remove_refuses_a_network_in_use_and_prune_spares_it() {
    let mut fx = Fixture::new();
    fx.network("busy", "10.199.4.0/24");
    fx.network("idle", "10.199.14.0/24");
    let c = fx.container("worker");
    fx.attach("busy", &c, "eth0").expect("attach");
    let err = fx.nets.remove("busy").expect_err("in use");
    assert_eq!(err.to_string(), "network busy has active endpoints (containers: worker)");
    let pruned: Vec<String> = fx.nets.prune().expect("prune").into_iter().map(|n| n.name).collect();
    assert_eq!(pruned, ["idle"]);
    fx.detach("busy", &c);
    assert_eq!(fx.nets.remove("busy").expect("remove").name, "busy");
    assert!(fx.nets.list().expect("list").iter().all(|n| n.name != "busy"));
}

#[test]
fn a_dead_containers_endpoint_is_reclaimed() {
    let mut fx = Fixture::new();
    let net = fx.network("reap", "10.199.8.0/24");
    let c = fx.container("ghost");
    let e = fx.attach("reap", &c, "eth0").expect("attach");
    // The container died and its namespace went without a detach.
    network::remove_netns(&c.netns).expect("remove netns");
    assert_eq!(fx.nets.endpoints("reap").expect("endpoints"), []);
    let now = links();
    assert!(!now.contains(&e.host_veth));
    assert_eq!(fx.nets.remove("reap").expect("remove").name, "reap");
    assert!(!links().contains(&bridge_of(&net)));
}

#[test]
fn netns_has_lo_up_and_removal_is_idempotent() {
    let mut fx = Fixture::new();
    let c = fx.container("lonely");
    assert!(network::is_netns(&c.netns));
    let listener = listen_in(&c.netns, Ipv4Addr::LOCALHOST);
    let addr = listener.local_addr().expect("addr");
    let server = serve_upper_once(listener);
    let reply = network::run_in_netns(&c.netns, || TcpStream::connect(addr))
        .expect("join")
        .map(|s| exchange(s, b"lo"))
        .expect("connect over lo");
    server.join().expect("server");
    assert_eq!(reply, b"LO");
    let only_lo = network::run_in_netns(&c.netns, network::host_links).expect("join").expect("links");
    assert_eq!(only_lo, ["lo"]);
    network::remove_netns(&c.netns).expect("remove");
    assert!(!c.netns.exists());
    network::remove_netns(&c.netns).expect("remove again");
    let err = network::create_netns(Path::new("/nonexistent-dir/netns")).expect_err("no such dir");
    let err = hostutil::errors::one_line(&err);
    assert!(err.starts_with("/nonexistent-dir/netns: "), "{err}");
}

#[test]
fn a_container_on_two_networks_sees_the_peers_of_both_with_one_default_route() {
    let mut fx = Fixture::new();
    fx.network("front", "10.199.9.0/24");
    fx.network("back", "10.199.10.0/24");
    let app = fx.container("app");
    let web = fx.container("web");
    let db = fx.container("db");
    fx.attach("front", &web, "eth0").expect("web");
    fx.attach("back", &db, "eth0").expect("db");
    fx.attach("front", &app, "eth0").expect("app front");
    let inode = std::fs::metadata(&app.hosts).expect("hosts").ino();
    fx.attach("back", &app, "eth1").expect("app back");
    assert_eq!(std::fs::metadata(&app.hosts).expect("hosts").ino(), inode, "rewritten in place");
    let hosts = std::fs::read_to_string(&app.hosts).expect("hosts");
    assert!(hosts.contains("10.199.9.2\tweb "), "{hosts}");
    assert!(hosts.contains("10.199.10.2\tdb "), "{hosts}");
    assert!(hosts.contains("10.199.9.3\t") && hosts.contains("10.199.10.3\t"), "both own addresses: {hosts}");
    let web_hosts = std::fs::read_to_string(&web.hosts).expect("hosts");
    // db is on the other network only: no line names it (ids are hex and may contain "db").
    let names_db = web_hosts.lines().any(|l| l.split_whitespace().skip(1).any(|n| n == "db"));
    assert!(web_hosts.contains("10.199.9.3\tapp ") && !names_db, "{web_hosts}");

    let routes = network::run_in_netns(&app.netns, || std::fs::read_to_string("/proc/thread-self/net/route"))
        .expect("join")
        .expect("routes");
    let defaults: Vec<&str> =
        routes.lines().filter(|l| l.split_whitespace().nth(1) == Some("00000000")).collect();
    assert_eq!(defaults.len(), 1, "{routes}");
    assert!(defaults[0].starts_with("eth0"), "the first network gives the default route: {routes}");

    fx.detach("front", &app);
    let hosts = std::fs::read_to_string(&app.hosts).expect("hosts");
    assert!(!hosts.contains("web") && hosts.contains("db"), "{hosts}");
}

#[test]
fn the_default_bridge_network_gives_no_names() {
    let mut fx = Fixture::new();
    let a = fx.container("one");
    let b = fx.container("two");
    let ea = fx.attach("bridge", &a, "eth0").expect("attach one");
    let eb = fx.attach("bridge", &b, "eth0").expect("attach two");
    let bridge = fx.nets.get("bridge").expect("bridge");
    assert!(links().contains(&bridge_of(&bridge)));
    let hosts = std::fs::read_to_string(&a.hosts).expect("hosts");
    assert!(!hosts.contains("two") && hosts.contains(&format!("{}\t", ea.ip)), "{hosts}");
    // Still reachable by address.
    let listener = listen_in(&b.netns, eb.ip);
    let addr = listener.local_addr().expect("addr");
    let server = serve_upper_once(listener);
    let reply = network::run_in_netns(&a.netns, || TcpStream::connect(addr))
        .expect("join")
        .map(|s| exchange(s, b"by ip"))
        .expect("connect");
    server.join().expect("server");
    assert_eq!(reply, b"BY IP");
    fx.detach("bridge", &a);
    fx.detach("bridge", &b);
    // The default network stays; prune takes its idle bridge down.
    let bridge = bridge_of(&fx.nets.get("bridge").expect("bridge"));
    assert!(links().contains(&bridge));
    fx.nets.prune().expect("prune");
    assert!(!links().contains(&bridge));
}

#[test]
fn proxy_relays_tcp_and_udp_from_loopback_into_a_namespace() {
    let mut fx = Fixture::new();
    fx.network("proxied", "10.199.5.0/24");
    let c = fx.container("srv");
    let e = fx.attach("proxied", &c, "eth0").expect("attach");
    let listener = listen_in(&c.netns, e.ip);
    let tcp_port = listener.local_addr().expect("addr").port();
    let server = serve_upper_once(listener);
    let udp =
        network::run_in_netns(&c.netns, || UdpSocket::bind((e.ip, 0))).expect("join").expect("udp bind");
    let udp_port = udp.local_addr().expect("addr").port();
    let udp_server = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n, from) = udp.recv_from(&mut buf).expect("udp recv");
        udp.send_to(&buf[..n].to_ascii_uppercase(), from).expect("udp send");
    });

    let loopback = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mappings = [
        PortMapping { host_ip: loopback, host_port: 0, container_port: tcp_port, protocol: Protocol::Tcp },
        PortMapping { host_ip: loopback, host_port: 0, container_port: udp_port, protocol: Protocol::Udp },
    ];
    let proxy = Proxy::start(&mappings, e.ip).expect("start proxy");
    let bound = proxy.bound();
    assert_eq!(bound.len(), 2);
    assert!(bound.iter().all(|m| m.host_port != 0 && m.host_ip == loopback));
    assert_eq!((bound[0].container_port, bound[1].protocol), (tcp_port, Protocol::Udp));

    let reply =
        exchange(TcpStream::connect((Ipv4Addr::LOCALHOST, bound[0].host_port)).expect("connect"), b"tcp");
    server.join().expect("server");
    assert_eq!(reply, b"TCP");

    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("client");
    // Only so a lost datagram fails the test instead of hanging it.
    client.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    client.send_to(b"udp", (Ipv4Addr::LOCALHOST, bound[1].host_port)).expect("send");
    let mut buf = [0u8; 64];
    let (n, _) = client.recv_from(&mut buf).expect("the relayed reply");
    udp_server.join().expect("udp server");
    assert_eq!(&buf[..n], b"UDP");

    // A taken address is refused, binding nothing.
    let taken = PortMapping { host_port: bound[0].host_port, ..mappings[0].clone() };
    let err = Proxy::start(&[mappings[1].clone(), taken], e.ip).err().expect("port in use");
    let err = hostutil::errors::one_line(&err);
    assert!(err.starts_with(&format!("cannot publish 127.0.0.1:{}/tcp: ", bound[0].host_port)), "{err}");

    let port = bound[0].host_port;
    drop(proxy);
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(), "the listener is closed");
}

/// Whether nft shows the table `ip nat` (iptables-nft makes it on first use).
fn nft_nat_table() -> Option<serde_json::Value> {
    let out = Command::new("nft").args(["-j", "list", "table", "ip", "nat"]).output().ok()?;
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

fn ruleset(fw: Firewall) -> String {
    let out = match fw {
        Firewall::Nft => Command::new("nft").args(["list", "ruleset"]).output(),
        Firewall::Iptables => Command::new("iptables").args(["-w", "-t", "nat", "-S"]).output(),
    }
    .expect("list rules");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn nat_rules_are_added_removed_and_forward_host_traffic() {
    let fws: Vec<Firewall> = [Firewall::Nft, Firewall::Iptables].into_iter().filter(|f| f.works()).collect();
    if fws.is_empty() {
        println!("skipped: neither nft nor iptables works here");
        return;
    }
    let mut fx = Fixture::new();
    let net = fx.network("natted", "10.199.6.0/24");
    let c = fx.container("natsrv");
    let e = fx.attach("natted", &c, "eth0").expect("attach");
    if let Some(fw) = Firewall::detect() {
        let rules = ruleset(fw);
        assert!(rules.contains(&format!("rbuild-net:{}", net.id)), "masquerade of the network: {rules}");
    }
    // iptables-nft leaves the built-in chains it made, empty, in a table `ip nat`: removed
    // below if the test made it.
    let nat_table_before = nft_nat_table().is_some();
    for fw in fws {
        let listener = listen_in(&c.netns, e.ip);
        let container_port = listener.local_addr().expect("addr").port();
        let server = serve_upper_once(listener);
        let host_port = 20_000 + (rand_u128() % 40_000) as u16;
        let bound = [PortMapping { host_ip: None, host_port, container_port, protocol: Protocol::Tcp }];
        fx.published.push((fw, c.id.clone()));
        let rules = fw.publish(&c.id, e.ip, &bound).expect("publish");
        assert_eq!(rules.len(), 2, "from outside and from the host: {rules:?}");
        assert!(ruleset(fw).contains(&c.id), "{fw:?} rules name the container");
        // Host traffic to a local non-loopback address (the bridge's gateway) is DNATed.
        let reply = exchange(TcpStream::connect((e.gateway, host_port)).expect("connect"), b"natted");
        server.join().expect("server");
        assert_eq!(reply, b"NATTED", "{fw:?}");
        fw.unpublish(&c.id).expect("unpublish");
        fw.unpublish(&c.id).expect("unpublish again");
        assert!(!ruleset(fw).contains(&c.id), "{fw:?} rules removed");
    }
    fx.detach("natted", &c);
    fx.nets.remove("natted").expect("remove");
    if let Some(fw) = Firewall::detect() {
        assert!(!ruleset(fw).contains(&net.id), "the network's rules go with the network");
    }
    if !nat_table_before
        && let Some(table) = nft_nat_table()
        && table["nftables"].as_array().is_some_and(|items| items.iter().all(|i| i.get("rule").is_none()))
    {
        let _ = Command::new("nft").args(["delete", "table", "ip", "nat"]).status();
    }
}

#[test]
fn an_internal_network_gets_no_masquerade() {
    let Some(fw) = Firewall::detect() else {
        println!("skipped: neither nft nor iptables works here");
        return;
    };
    let mut fx = Fixture::new();
    let opts = CreateOptions {
        subnet: Some("10.199.7.0/24".parse().expect("subnet")),
        internal: true,
        ..CreateOptions::default()
    };
    let net = fx.nets.create("inner", &opts).expect("create");
    assert!(net.internal);
    let c = fx.container("hermit");
    fx.attach("inner", &c, "eth0").expect("attach");
    let rules = ruleset(fw);
    let mine: Vec<&str> = rules.lines().filter(|l| l.contains(&net.id)).collect();
    assert!(
        !mine.is_empty() && mine.iter().all(|l| !l.contains("masquerade") && !l.contains("MASQUERADE")),
        "{rules}"
    );
    fx.detach("inner", &c);
    fx.nets.remove("inner").expect("remove");
    assert!(!ruleset(fw).contains(&net.id));
}
