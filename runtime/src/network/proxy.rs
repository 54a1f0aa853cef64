//! The userland proxy of published ports (docker-proxy's job), run by the container's monitor:
//! it binds the host's address and port and relays to the container's. It serves loopback
//! clients (which DNAT cannot reach) and every client on a host without netfilter.
//!
//! Plain threads: one accept (or receive) loop per port, two copy threads per TCP connection,
//! one reply thread per UDP client. Dropping the proxy shuts its sockets down, which wakes
//! every blocked thread.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, SockRef, Socket, Type};

use crate::spec::{PortMapping, Protocol};

use super::Error;

/// A UDP "connection" with no datagram either way for this long is forgotten (docker's
/// UDPConnTrackTimeout).
const UDP_IDLE: Duration = Duration::from_secs(90);
/// How often blocked UDP reads wake to check for idleness and shutdown.
const UDP_TICK: Duration = Duration::from_secs(1);

/// Published ports relayed to one container.
pub struct Proxy {
    bound: Vec<PortMapping>,
    shared: Arc<Shared>,
    listeners: Vec<Arc<TcpListener>>,
    udp: Vec<Arc<UdpSocket>>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    next_conn: AtomicU64,
    /// Both sockets of every open TCP relay and every UDP client's socket, to shut them down
    /// when the proxy stops.
    open: Mutex<HashMap<u64, Vec<Closer>>>,
}

enum Closer {
    Tcp(TcpStream),
    Udp(Arc<UdpSocket>),
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn track(&self, closers: Vec<Closer>) -> u64 {
        let id = self.next_conn.fetch_add(1, Ordering::SeqCst);
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(id, closers);
        id
    }

    fn untrack(&self, id: u64) {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }
}

fn bind_error(addr: SocketAddr, protocol: Protocol) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Bind { addr, protocol: protocol.as_str(), source }
}

impl Proxy {
    /// Binds every mapping (host port 0: a free port) and starts relaying to `container_ip`.
    /// Fails, binding nothing, if one address is taken.
    pub fn start(mappings: &[PortMapping], container_ip: Ipv4Addr) -> Result<Proxy, Error> {
        let mut proxy = Proxy {
            bound: Vec::new(),
            shared: Arc::default(),
            listeners: Vec::new(),
            udp: Vec::new(),
            threads: Vec::new(),
        };
        for m in mappings {
            let addr = SocketAddr::new(m.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), m.host_port);
            let target = SocketAddr::V4(SocketAddrV4::new(container_ip, m.container_port));
            let local = match m.protocol {
                Protocol::Tcp => {
                    let listener = Arc::new(tcp_listener(addr).map_err(bind_error(addr, m.protocol))?);
                    let local = listener.local_addr().map_err(bind_error(addr, m.protocol))?;
                    let (l, shared) = (listener.clone(), proxy.shared.clone());
                    proxy.threads.push(std::thread::spawn(move || accept_loop(&l, target, &shared)));
                    proxy.listeners.push(listener);
                    local
                }
                Protocol::Udp => {
                    let socket = Arc::new(UdpSocket::bind(addr).map_err(bind_error(addr, m.protocol))?);
                    socket.set_read_timeout(Some(UDP_TICK)).map_err(bind_error(addr, m.protocol))?;
                    let local = socket.local_addr().map_err(bind_error(addr, m.protocol))?;
                    let (s, shared) = (socket.clone(), proxy.shared.clone());
                    proxy.threads.push(std::thread::spawn(move || udp_loop(&s, target, &shared)));
                    proxy.udp.push(socket);
                    local
                }
            };
            proxy.bound.push(PortMapping { host_port: local.port(), ..m.clone() });
        }
        Ok(proxy)
    }

    /// The mappings with the host ports actually bound.
    pub fn bound(&self) -> Vec<PortMapping> {
        self.bound.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Shutting a listening socket down makes a blocked accept() return (Linux).
        for l in &self.listeners {
            let _ = SockRef::from(&**l).shutdown(Shutdown::Read);
        }
        for u in &self.udp {
            let _ = SockRef::from(&**u).shutdown(Shutdown::Read);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let open = std::mem::take(&mut *self.shared.open.lock().unwrap_or_else(PoisonError::into_inner));
        for closer in open.into_values().flatten() {
            match closer {
                Closer::Tcp(s) => {
                    let _ = s.shutdown(Shutdown::Both);
                }
                Closer::Udp(u) => {
                    let _ = SockRef::from(&*u).shutdown(Shutdown::Both);
                }
            }
        }
    }
}

/// A listener with SO_REUSEADDR, as docker-proxy's (so a port in TIME_WAIT can be reused).
fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping() {
            return;
        }
        let (client, _) = match accepted {
            Ok(c) => c,
            // A client that gave up before accept() is no reason to stop serving.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            // Out of descriptors or memory: wait for connections to close rather than spin.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let shared = shared.clone();
        std::thread::spawn(move || relay_tcp(client, target, &shared));
    }
}

fn relay_tcp(client: TcpStream, target: SocketAddr, shared: &Shared) {
    let Ok(upstream) = TcpStream::connect(target) else { return };
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) =
        (client.try_clone(), upstream.try_clone(), client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let id = shared.track(vec![Closer::Tcp(c3), Closer::Tcp(u3)]);
    if shared.stopping() {
        shared.untrack(id);
        return;
    }
    let up = std::thread::spawn(move || copy_half(client, upstream));
    copy_half(u2, c2);
    let _ = up.join();
    shared.untrack(id);
}

/// Copies until EOF (or an error), then passes the EOF on.
fn copy_half(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

struct UdpClient {
    socket: Arc<UdpSocket>,
    last: Arc<Mutex<Instant>>,
}

fn udp_loop(socket: &Arc<UdpSocket>, target: SocketAddr, shared: &Arc<Shared>) {
    let clients: Arc<Mutex<HashMap<SocketAddr, UdpClient>>> = Arc::default();
    let mut buf = vec![0u8; 65_536];
    while !shared.stopping() {
        let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
        if shared.stopping() {
            return;
        }
        let mut map = clients.lock().unwrap_or_else(PoisonError::into_inner);
        let c = match map.entry(from) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => match udp_client(socket, from, target, shared, &clients) {
                Ok(c) => v.insert(c),
                Err(_) => continue,
            },
        };
        *c.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        let _ = c.socket.send(&buf[..n]);
    }
}

/// A socket connected to the container for one client, and the thread relaying its replies
/// until the client has been idle for [`UDP_IDLE`].
fn udp_client(
    main: &Arc<UdpSocket>,
    client: SocketAddr,
    target: SocketAddr,
    shared: &Arc<Shared>,
    clients: &Arc<Mutex<HashMap<SocketAddr, UdpClient>>>,
) -> io::Result<UdpClient> {
    let any: SocketAddr = (Ipv4Addr::UNSPECIFIED, 0).into();
    let upstream = Arc::new(UdpSocket::bind(any)?);
    upstream.connect(target)?;
    upstream.set_read_timeout(Some(UDP_TICK))?;
    let last = Arc::new(Mutex::new(Instant::now()));
    let id = shared.track(vec![Closer::Udp(upstream.clone())]);
    let (up, main, shared, clients, seen) =
        (upstream.clone(), main.clone(), shared.clone(), clients.clone(), last.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while !shared.stopping() {
            match up.recv(&mut buf) {
                Ok(n) => {
                    *seen.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                    let _ = main.send_to(&buf[..n], client);
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if seen.lock().unwrap_or_else(PoisonError::into_inner).elapsed() >= UDP_IDLE {
                        break;
                    }
                }
                // The container refused (ICMP port unreachable): keep the client for its retries.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(_) => break,
            }
        }
        clients.lock().unwrap_or_else(PoisonError::into_inner).remove(&client);
        shared.untrack(id);
    });
    Ok(UdpClient { socket: upstream, last })
}
