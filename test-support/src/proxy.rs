//! A TCP proxy on 127.0.0.1 that counts the bytes going each way, for tests that check how
//! much a client really sends or fetches (an upload that must stream once, a cache hit that
//! must not download).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Forwards every connection made to `127.0.0.1:port()` to `127.0.0.1:target`, a thread per
/// direction per connection (keep-alive connections just stay open). Dropping it closes the
/// listener and every connection and joins all its threads.
pub struct CountingProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    uploaded: AtomicU64,
    downloaded: AtomicU64,
    stop: AtomicBool,
    connections: Mutex<Vec<Connection>>,
}

/// A handle on both sockets of one proxied connection (to shut them down on drop) and its two
/// copy threads.
struct Connection {
    client: TcpStream,
    server: TcpStream,
    upload: JoinHandle<()>,
    download: JoinHandle<()>,
}

impl CountingProxy {
    /// A proxy to 127.0.0.1:`target`, listening on a free loopback port.
    pub fn start(target: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let acceptor = std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c), Ok(sv), Ok(c2), Ok(sv2)) =
                    (client.try_clone(), server.try_clone(), client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                let (up, down) = (s.clone(), s.clone());
                let upload = std::thread::spawn(move || pump(c, sv, |n| up.add_uploaded(n)));
                let download = std::thread::spawn(move || pump(server, client, |n| down.add_downloaded(n)));
                let mut connections = s.lock();
                connections.retain(|c| !(c.upload.is_finished() && c.download.is_finished()));
                connections.push(Connection { client: c2, server: sv2, upload, download });
            }
        });
        CountingProxy { port, shared, acceptor: Some(acceptor) }
    }

    /// The port the proxy listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Bytes sent from clients to the target so far (requests: headers and bodies).
    pub fn uploaded(&self) -> u64 {
        self.shared.uploaded.load(Ordering::SeqCst)
    }

    /// Bytes sent from the target to clients so far (responses).
    pub fn downloaded(&self) -> u64 {
        self.shared.downloaded.load(Ordering::SeqCst)
    }

    /// Sets both counters back to zero.
    pub fn reset(&self) {
        self.shared.uploaded.store(0, Ordering::SeqCst);
        self.shared.downloaded.store(0, Ordering::SeqCst);
    }
}

impl Shared {
    fn add_uploaded(&self, n: usize) {
        self.uploaded.fetch_add(n as u64, Ordering::SeqCst);
    }

    fn add_downloaded(&self, n: usize) {
        self.downloaded.fetch_add(n as u64, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Copies `from` to `to`, counting each chunk once it is written, until `from` ends or fails;
/// then passes the end on (half-close) so the other side sees it.
fn pump(mut from: TcpStream, mut to: TcpStream, count: impl Fn(usize)) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                count(n);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag (it checks it after each accept).
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let connections = std::mem::take(&mut *self.shared.lock());
        for c in connections {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.server.shutdown(Shutdown::Both);
            let _ = c.upload.join();
            let _ = c.download.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_both_directions_over_concurrent_connections() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut c = conn;
                    let mut buf = [0u8; 1024];
                    // Answers each read with twice its bytes.
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).and_then(|_| c.write_all(&buf[..n])).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = CountingProxy::start(target);
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let port = proxy.port();
                std::thread::spawn(move || {
                    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    for _ in 0..10 {
                        c.write_all(&[7u8; 100]).unwrap();
                        let mut back = [0u8; 200];
                        c.read_exact(&mut back).unwrap();
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        assert_eq!((proxy.uploaded(), proxy.downloaded()), (8000, 16000));
        proxy.reset();
        assert_eq!((proxy.uploaded(), proxy.downloaded()), (0, 0));
    }
}
