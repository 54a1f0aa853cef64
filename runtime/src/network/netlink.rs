//! A small synchronous rtnetlink client: the few link, address and route requests networks
//! need, each one request answered by an ACK (or a dump), never a background task.
//!
//! A netlink socket stays in the network namespace it was created in, so work inside a
//! container's namespace opens the socket from a thread that joined it ([`Netlink::open_in`])
//! and then uses it from anywhere.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::Error;
use super::subnet::Subnet;

/// What networks need to know of a link.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `bridge`, `veth`... (`IFLA_INFO_KIND`).
    pub kind: Option<String>,
    /// `IFLA_IFALIAS`: rbuild marks its bridges with the network's id here.
    pub alias: Option<String>,
}

/// One IPv4 route of the main table.
#[derive(Debug, Clone)]
pub struct Route {
    pub destination: Subnet,
    pub oif: Option<u32>,
}

pub struct Netlink {
    socket: Socket,
    seq: u32,
}

fn nl_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Netlink { what, source }
}

impl Netlink {
    /// A socket in the caller's network namespace.
    pub fn open() -> Result<Netlink, Error> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(nl_err("opening a netlink socket"))?;
        socket.bind_auto().map_err(nl_err("binding a netlink socket"))?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(nl_err("connecting a netlink socket"))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// A socket in the network namespace bind-mounted at `netns`.
    pub fn open_in(netns: &Path) -> Result<Netlink, Error> {
        super::netns::run_in_netns(netns, Netlink::open)?
    }

    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        packet.header.flags = NLM_F_REQUEST | flags;
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let reply: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(&data[offset..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += len;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(_) => Err(e.to_io()),
                            None => Ok(out),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.request(msg, NLM_F_ACK | flags).map(drop)
    }

    pub fn links(&mut self) -> Result<Vec<Link>, Error> {
        let replies = self
            .request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP)
            .map_err(nl_err("listing links"))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(l)),
                _ => None,
            })
            .collect())
    }

    /// The link named `name`, if there is one.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, Error> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(l)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl_err(format!("looking up link {name}"))(e)),
        }
    }

    pub fn create_bridge(&mut self, name: &str) -> Result<u32, Error> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Bridge)]));
        self.ack(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map_err(nl_err(format!("creating bridge {name}")))?;
        self.index_of(name)
    }

    /// A veth pair: `host` in this namespace, enslaved to `bridge`; its peer created directly
    /// in the namespace `peer_netns` (so its name never clashes with the host's) as `peer`
    /// with the MAC address `peer_mac`.
    pub fn create_veth(
        &mut self,
        host: &str,
        bridge: u32,
        peer: &str,
        peer_mac: [u8; 6],
        peer_netns: &Path,
    ) -> Result<u32, Error> {
        let ns = std::fs::File::open(peer_netns)
            .map_err(|source| Error::Io { path: peer_netns.to_path_buf(), source })?;
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.to_string()));
        peer_msg.attributes.push(LinkAttribute::Address(peer_mac.to_vec()));
        peer_msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(host.to_string()));
        msg.attributes.push(LinkAttribute::Controller(bridge));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::Kind(InfoKind::Veth),
            NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.ack(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map_err(nl_err(format!("creating veth pair {host} / {peer}")))?;
        drop(ns);
        self.index_of(host)
    }

    fn index_of(&mut self, name: &str) -> Result<u32, Error> {
        self.link(name)?.map(|l| l.index).ok_or_else(|| Error::Netlink {
            what: format!("looking up link {name}"),
            source: io::Error::from_raw_os_error(libc::ENODEV),
        })
    }

    pub fn set_up(&mut self, index: u32) -> Result<(), Error> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.ack(RouteNetlinkMessage::SetLink(msg), 0).map_err(nl_err(format!("setting link {index} up")))
    }

    pub fn set_alias(&mut self, index: u32, alias: &str) -> Result<(), Error> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::IfAlias(alias.to_string()));
        self.ack(RouteNetlinkMessage::SetLink(msg), 0)
            .map_err(nl_err(format!("setting the alias of link {index}")))
    }

    /// Deletes the link named `name`; `false` if there was none.
    pub fn delete_link(&mut self, name: &str) -> Result<bool, Error> {
        let Some(link) = self.link(name)? else { return Ok(false) };
        let mut msg = LinkMessage::default();
        msg.header.index = link.index;
        match self.ack(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(nl_err(format!("deleting link {name}"))(e)),
        }
    }

    /// Adds `ip/prefix_len` to the link; already there is fine.
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix_len: u8) -> Result<(), Error> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix_len;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        msg.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
        let broadcast = Subnet::containing(ip, prefix_len).broadcast();
        msg.attributes.push(AddressAttribute::Broadcast(broadcast));
        match self.ack(RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_EXCL) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                Err(nl_err(format!("adding address {ip}/{prefix_len} to link {index}"))(e))
            }
            _ => Ok(()),
        }
    }

    /// A default route via `gateway`, unless the namespace has one already (`false` then).
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<bool, Error> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        match self.ack(RouteNetlinkMessage::NewRoute(msg), NLM_F_CREATE | NLM_F_EXCL) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(nl_err(format!("adding a default route via {gateway}"))(e)),
        }
    }

    /// The IPv4 routes of the main table, but the default one.
    pub fn routes(&mut self) -> Result<Vec<Route>, Error> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let replies =
            self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP).map_err(nl_err("listing routes"))?;
        let mut routes = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewRoute(r) = reply else { continue };
            if r.header.table != RouteHeader::RT_TABLE_MAIN || r.header.destination_prefix_length == 0 {
                continue;
            }
            let mut dest = None;
            let mut oif = None;
            for attr in &r.attributes {
                match attr {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => dest = Some(*ip),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            if let Some(ip) = dest {
                routes.push(Route {
                    destination: Subnet::containing(ip, r.header.destination_prefix_length),
                    oif,
                });
            }
        }
        Ok(routes)
    }
}

fn link_of(l: LinkMessage) -> Link {
    let mut link = Link { index: l.header.index, name: String::new(), kind: None, alias: None };
    for attr in l.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::IfAlias(a) => link.alias = Some(a),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let NlLinkInfo::Kind(k) = info {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}
