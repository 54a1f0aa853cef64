//! The attach protocol between a container's monitor and the `rbuild` commands that attach to
//! it (`run` in the foreground, `start -a`, `attach`), over the unix socket
//! `containers/<id>/attach.sock`.
//!
//! Frames are `[kind: u8][length: u32 big-endian][payload]`. Several clients may attach at once:
//! each gets every output frame from the moment it connects.
//!
//! The socket's path can be longer than `sun_path` allows (a deep store plus a 64-digit id), so
//! both sides reach it through `/proc/self/fd/<dir fd>/attach.sock`, as conmon does.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

pub const SOCKET: &str = "attach.sock";

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Stdin(Vec<u8>),
    /// The client's stdin ended: the container's stdin is closed (without a tty).
    StdinClose,
    Resize {
        rows: u16,
        cols: u16,
    },
}

/// What the monitor sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorFrame {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The process runs (sent to the client that asked the monitor to start it).
    Started,
    /// The start failed: `CODE MESSAGE` (the exit status docker gives it, and why).
    Error(String),
    /// The container's process ended with this code (128 + signal for a signal), and the
    /// monitor has cleaned up (and removed the container, for `--rm`).
    Exit(i32),
}

const STDIN: u8 = 0;
const STDIN_CLOSE: u8 = 1;
const RESIZE: u8 = 2;
const STDOUT: u8 = 10;
const STDERR: u8 = 11;
const STARTED: u8 = 12;
const ERROR: u8 = 13;
const EXIT: u8 = 14;

/// Frames larger than this are a protocol error (output is sent in chunks of at most 64 KiB).
const MAX_FRAME: usize = 1 << 20;

fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.push(kind);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)
}

/// `Ok(None)` at a clean end of stream.
fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "attach: frame too large"));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("attach: bad {what} frame"))
}

impl ClientFrame {
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        match self {
            ClientFrame::Stdin(d) => write_frame(w, STDIN, d),
            ClientFrame::StdinClose => write_frame(w, STDIN_CLOSE, &[]),
            ClientFrame::Resize { rows, cols } => {
                let mut p = rows.to_be_bytes().to_vec();
                p.extend_from_slice(&cols.to_be_bytes());
                write_frame(w, RESIZE, &p)
            }
        }
    }

    pub fn read_from(r: &mut impl Read) -> io::Result<Option<ClientFrame>> {
        let Some((kind, p)) = read_frame(r)? else { return Ok(None) };
        Ok(Some(match kind {
            STDIN => ClientFrame::Stdin(p),
            STDIN_CLOSE => ClientFrame::StdinClose,
            RESIZE if p.len() == 4 => ClientFrame::Resize {
                rows: u16::from_be_bytes([p[0], p[1]]),
                cols: u16::from_be_bytes([p[2], p[3]]),
            },
            _ => return Err(bad("client")),
        }))
    }
}

impl MonitorFrame {
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = match self {
            MonitorFrame::Stdout(d) => write_frame(&mut buf, STDOUT, d),
            MonitorFrame::Stderr(d) => write_frame(&mut buf, STDERR, d),
            MonitorFrame::Started => write_frame(&mut buf, STARTED, &[]),
            MonitorFrame::Error(m) => write_frame(&mut buf, ERROR, m.as_bytes()),
            MonitorFrame::Exit(c) => write_frame(&mut buf, EXIT, &c.to_be_bytes()),
        };
        buf
    }

    pub fn read_from(r: &mut impl Read) -> io::Result<Option<MonitorFrame>> {
        let Some((kind, p)) = read_frame(r)? else { return Ok(None) };
        Ok(Some(match kind {
            STDOUT => MonitorFrame::Stdout(p),
            STDERR => MonitorFrame::Stderr(p),
            STARTED => MonitorFrame::Started,
            ERROR => MonitorFrame::Error(String::from_utf8_lossy(&p).into_owned()),
            EXIT if p.len() == 4 => MonitorFrame::Exit(i32::from_be_bytes([p[0], p[1], p[2], p[3]])),
            _ => return Err(bad("monitor")),
        }))
    }
}

/// The monitor's side: listens at `dir/attach.sock` (an old socket file is replaced).
pub fn listen(dir: &Path) -> io::Result<UnixListener> {
    let d = File::open(dir)?;
    let path = format!("/proc/self/fd/{}/{SOCKET}", d.as_raw_fd());
    let _ = std::fs::remove_file(dir.join(SOCKET));
    UnixListener::bind(path)
}

/// A client's side: connects to the monitor of the container kept in `dir`.
pub fn connect(dir: &Path) -> io::Result<UnixStream> {
    let d = File::open(dir)?;
    UnixStream::connect(format!("/proc/self/fd/{}/{SOCKET}", d.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        for f in [
            ClientFrame::Stdin(b"hi".to_vec()),
            ClientFrame::StdinClose,
            ClientFrame::Resize { rows: 24, cols: 80 },
        ] {
            f.write_to(&mut buf).unwrap();
        }
        let mut r = buf.as_slice();
        assert_eq!(ClientFrame::read_from(&mut r).unwrap(), Some(ClientFrame::Stdin(b"hi".to_vec())));
        assert_eq!(ClientFrame::read_from(&mut r).unwrap(), Some(ClientFrame::StdinClose));
        assert_eq!(ClientFrame::read_from(&mut r).unwrap(), Some(ClientFrame::Resize { rows: 24, cols: 80 }));
        assert_eq!(ClientFrame::read_from(&mut r).unwrap(), None);

        let frames = [
            MonitorFrame::Stdout(b"out".to_vec()),
            MonitorFrame::Stderr(vec![]),
            MonitorFrame::Started,
            MonitorFrame::Error("no".into()),
            MonitorFrame::Exit(-3),
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.encode()).collect();
        let mut r = bytes.as_slice();
        for f in frames {
            assert_eq!(MonitorFrame::read_from(&mut r).unwrap(), Some(f));
        }
    }

    #[test]
    fn long_store_paths_still_connect() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a".repeat(60)).join("b".repeat(64));
        std::fs::create_dir_all(&deep).unwrap();
        let listener = listen(&deep).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(&MonitorFrame::Exit(7).encode()).unwrap();
        });
        let mut c = connect(&deep).unwrap();
        assert_eq!(MonitorFrame::read_from(&mut c).unwrap(), Some(MonitorFrame::Exit(7)));
        t.join().unwrap();
    }
}
