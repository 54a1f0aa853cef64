//! The hijacked connection `attach` and `exec start` answer with, as dockerd: the client asks
//! for `Upgrade: tcp`, gets `101 UPGRADED`, and from then on the connection carries the
//! process's output one way (raw with a terminal, docker's multiplexed frames without) and its
//! stdin the other. A client that closes its writing half (`CloseWrite` after its stdin ended)
//! still reads the output to the end.
//!
//! The processes' ends are blocking (the monitor's attach socket, pipes, a pseudo-terminal), so
//! threads feed the two channels here and this module does the async half.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A piece of a process's output.
pub(crate) enum Out {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// What the client sent: bytes for the process's stdin, then its end.
pub(crate) enum In {
    Data(Vec<u8>),
    Eof,
}

/// docker's multiplexed frame: stream byte (1 stdout, 2 stderr), three zeros, big-endian
/// length, payload.
pub(crate) fn mux(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn encode(tty: bool, o: Out) -> Vec<u8> {
    match (tty, o) {
        (true, Out::Stdout(d) | Out::Stderr(d)) => d,
        (false, Out::Stdout(d)) => mux(1, &d),
        (false, Out::Stderr(d)) => mux(2, &d),
    }
}

fn content_type(tty: bool) -> &'static str {
    if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" }
}

/// Whether the client asked to take the connection over (every docker client since API 1.17).
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.get(header::UPGRADE).is_some()
}

/// Answers `req` by taking its connection over, and relays `out` to it (and what it sends to
/// `input`, if given) on a task of its own until `out` ends. A client that did not ask for the
/// upgrade gets the output as a streamed body, without stdin.
pub(crate) fn answer(
    req: &mut Request,
    tty: bool,
    out: mpsc::Receiver<Out>,
    input: Option<mpsc::Sender<In>>,
    guard: crate::Busy,
) -> Response {
    if !wants_upgrade(req.headers()) {
        let stream = futures_util::stream::unfold((out, guard), move |(mut out, guard)| async move {
            out.recv().await.map(|o| (Ok::<_, std::io::Error>(encode(tty, o)), (out, guard)))
        });
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type(tty))
            .body(Body::from_stream(stream))
            .unwrap_or_default();
    }
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let _guard = guard;
        // The client went before the switch: dropping `out` tells the producer.
        let Ok(upgraded) = upgrade.await else { return };
        relay(TokioIo::new(upgraded), tty, out, input).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONTENT_TYPE, content_type(tty))
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .body(Body::empty())
        .unwrap_or_default()
}

/// How long after the `101` the first output waits. dockerd and podman start the process only
/// after they wrote the `101`, so its output never travels with the headers; ours may be
/// running already (a start error is answered with a status), and docker-py reads the headers
/// through a buffer, then the output from the raw socket: what came with the headers would be
/// lost (`exec_run` returning nothing). Output that comes later is not held.
const HEADERS_SETTLE: std::time::Duration = std::time::Duration::from_millis(30);

async fn relay<T>(io: T, tty: bool, mut out: mpsc::Receiver<Out>, input: Option<mpsc::Sender<In>>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let settled = tokio::time::Instant::now() + HEADERS_SETTLE;
    let (mut rd, mut wr) = tokio::io::split(io);
    let reader = input.map(|tx| {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(In::Eof).await;
                        return;
                    }
                    Ok(n) => {
                        if tx.send(In::Data(buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
    });
    while let Some(o) = out.recv().await {
        tokio::time::sleep_until(settled).await;
        if wr.write_all(&encode(tty, o)).await.is_err() || wr.flush().await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
    if let Some(r) = reader {
        r.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_dockers() {
        assert_eq!(mux(2, b"hi"), [2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        assert_eq!(encode(true, Out::Stderr(b"x".to_vec())), b"x");
    }

    #[tokio::test]
    async fn output_goes_out_and_input_comes_in_until_the_output_ends() {
        let (client, server) = tokio::io::duplex(1024);
        let (out_tx, out_rx) = mpsc::channel(4);
        let (in_tx, mut in_rx) = mpsc::channel(4);
        let task = tokio::spawn(relay(server, false, out_rx, Some(in_tx)));
        let (mut crd, mut cwr) = tokio::io::split(client);
        cwr.write_all(b"typed").await.unwrap();
        cwr.shutdown().await.unwrap();
        assert!(matches!(in_rx.recv().await, Some(In::Data(d)) if d == b"typed"));
        assert!(matches!(in_rx.recv().await, Some(In::Eof)));
        // The client's half-close does not end the output.
        out_tx.send(Out::Stdout(b"out".to_vec())).await.unwrap();
        drop(out_tx);
        let mut got = Vec::new();
        crd.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, mux(1, b"out"));
        task.await.unwrap();
    }
}
