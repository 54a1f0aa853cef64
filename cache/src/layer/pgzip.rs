//! Parallel gzip: the stream is cut into fixed-size chunks, each compressed on rayon's pool as
//! an independent gzip member, and the members are written in order.
//!
//! Concatenated members are one valid gzip stream (RFC 1952 §2.2): gunzip, Go's
//! `compress/gzip` (what docker and containerd use), zlib's `gzread` and flate2's
//! `MultiGzDecoder` read them whole. Each member's header is fixed (no name, mtime 0, OS
//! "unknown"), and the chunk size does not depend on the number of threads, so the output is
//! the same bytes for the same input on any machine. Cutting the window every [`CHUNK`] bytes
//! costs well under 1% of ratio at 1 MiB.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;

use flate2::GzBuilder;

/// Uncompressed bytes per gzip member.
pub(super) const CHUNK: usize = 1 << 20;

/// A writer that gzips what it is given on rayon's pool and writes the members, in order, to
/// `out` (on the caller's thread, so `out` may hash what it is given).
pub(super) struct ParGzWriter<W: Write> {
    out: W,
    level: flate2::Compression,
    buf: Vec<u8>,
    /// Members being compressed, oldest first.
    pending: VecDeque<mpsc::Receiver<Vec<u8>>>,
    max_pending: usize,
    members: u64,
}

impl<W: Write> ParGzWriter<W> {
    pub(super) fn new(out: W, level: flate2::Compression) -> Self {
        ParGzWriter {
            out,
            level,
            buf: Vec::with_capacity(CHUNK),
            pending: VecDeque::new(),
            // Enough in flight to keep every thread busy while the oldest is written out.
            max_pending: 2 * rayon::current_num_threads() + 1,
            members: 0,
        }
    }

    /// Compresses what is left and returns `out` (not flushed).
    pub(super) fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.members == 0 {
            // An empty input still makes one (empty) member: a gzip stream has at least one.
            self.submit();
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        Ok(self.out)
    }

    fn submit(&mut self) {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let level = self.level;
        let (tx, rx) = mpsc::sync_channel(1);
        rayon::spawn(move || {
            let _ = tx.send(member(&chunk, level));
        });
        self.pending.push_back(rx);
        self.members += 1;
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else { return Ok(()) };
        let bytes = wait(&rx)?;
        self.out.write_all(&bytes)
    }
}

impl<W: Write> Write for ParGzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.submit();
            while self.pending.len() > self.max_pending {
                self.write_oldest()?;
            }
        }
        Ok(n)
    }

    /// Writes out the members already compressed; a partial chunk stays buffered (flushing it
    /// would make the output depend on when flush was called).
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Waits for a member. On one of rayon's threads, runs other jobs meanwhile (so a commit made
/// from inside the pool cannot deadlock it); blocks only once nothing is left to run, when the
/// awaited job is already running elsewhere.
fn wait(rx: &mpsc::Receiver<Vec<u8>>) -> io::Result<Vec<u8>> {
    let gone = || io::Error::other("a gzip compression thread panicked");
    loop {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(mpsc::TryRecvError::Disconnected) => return Err(gone()),
            Err(mpsc::TryRecvError::Empty) => {}
        }
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => {}
            _ => return rx.recv().map_err(|_| gone()),
        }
    }
}

/// One gzip member holding `data`.
pub(super) fn member(data: &[u8], level: flate2::Compression) -> Vec<u8> {
    let out = Vec::with_capacity(data.len() / 3 + 64);
    let mut gz = GzBuilder::new().mtime(0).operating_system(255).write(out, level);
    // Writing into a Vec cannot fail.
    gz.write_all(data).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn pgzip(data: &[u8], write_size: usize) -> Vec<u8> {
        let mut w = ParGzWriter::new(Vec::new(), flate2::Compression::default());
        for piece in data.chunks(write_size.max(1)) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(gz).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn round_trips_and_is_independent_of_write_sizes_and_threads() {
        let data: Vec<u8> = (0..(3 * CHUNK + 12345)).map(|i| (i * 7 % 251) as u8 ^ (i >> 12) as u8).collect();
        let a = pgzip(&data, 4096);
        assert_eq!(gunzip(&a), data);
        assert_eq!(pgzip(&data, 1 << 22), a);
        assert_eq!(pgzip(&data, 1000), a);
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(one.install(|| pgzip(&data, 65536)), a);
        // Four members, each a standard gzip header with mtime 0 and no name.
        assert_eq!(a[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        let mut d = flate2::read::GzDecoder::new(&a[..]);
        let mut first = Vec::new();
        d.read_to_end(&mut first).unwrap();
        assert_eq!(first.len(), CHUNK);
    }

    #[test]
    fn empty_input_is_one_empty_member() {
        let gz = pgzip(b"", 1);
        assert_eq!(gz, member(b"", flate2::Compression::default()));
        assert!(gunzip(&gz).is_empty());
    }

    #[test]
    fn nested_in_a_busy_pool_does_not_deadlock() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let data = vec![7u8; 2 * CHUNK + 1];
        let outs: Vec<Vec<u8>> = pool.install(|| {
            use rayon::prelude::*;
            (0..8).into_par_iter().map(|_| pgzip(&data, 100_000)).collect()
        });
        assert!(outs.iter().all(|o| o == &outs[0]));
    }
}
