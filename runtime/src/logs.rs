//! A container's log: docker's `json-file` format, one JSON object per line
//! (`{"log":"text\n","stream":"stdout","time":"2024-01-01T00:00:00.000000001Z"}`), written by
//! the monitor and read by `rbuild logs`. Kept in `containers/<id>/container.log`; a new
//! start appends, as docker does.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::container::{now_rfc3339, parse_rfc3339};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Bytes that are not UTF-8 are replaced (docker does the same).
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

/// Appends output to a log file, one entry per line of output.
pub struct Writer {
    file: File,
    /// Per stream: the unfinished line of the previous chunk.
    pending: [Vec<u8>; 2],
}

impl Writer {
    pub fn open(path: &Path) -> io::Result<Writer> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Writer { file, pending: [Vec::new(), Vec::new()] })
    }

    /// Records a chunk of output: every complete line becomes an entry; a partial line waits
    /// for the rest (or for [`Writer::flush_partial`]).
    pub fn write(&mut self, stream: Stream, chunk: &[u8]) -> io::Result<()> {
        let idx = stream as usize;
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut self.pending[idx]);
            line.extend_from_slice(&rest[..=nl]);
            rest = &rest[nl + 1..];
            encode(&mut out, stream, &line);
        }
        self.pending[idx].extend_from_slice(rest);
        // A program printing a prompt without a newline should not stay invisible for ever.
        if self.pending[idx].len() >= 16 * 1024 {
            let line = std::mem::take(&mut self.pending[idx]);
            encode(&mut out, stream, &line);
        }
        if out.is_empty() { Ok(()) } else { self.file.write_all(&out) }
    }

    /// Writes what is left of unfinished lines (at the end of the process).
    pub fn flush_partial(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        for (idx, stream) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
            let line = std::mem::take(&mut self.pending[idx]);
            if !line.is_empty() {
                encode(&mut out, stream, &line);
            }
        }
        if out.is_empty() { Ok(()) } else { self.file.write_all(&out) }
    }
}

fn encode(out: &mut Vec<u8>, stream: Stream, line: &[u8]) {
    let entry = Entry { log: String::from_utf8_lossy(line).into_owned(), stream, time: now_rfc3339() };
    if let Ok(json) = serde_json::to_vec(&entry) {
        out.extend_from_slice(&json);
        out.push(b'\n');
    }
}

/// Which entries `rbuild logs` prints.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only the last N entries (`--tail`).
    pub tail: Option<usize>,
    /// Only entries at or after this time (seconds, nanos since the epoch) (`--since`).
    pub since: Option<(i64, u32)>,
    /// Only entries before this time (`--until`).
    pub until: Option<(i64, u32)>,
}

impl Filter {
    fn keeps(&self, e: &Entry) -> bool {
        let Some(t) = parse_rfc3339(&e.time) else { return true };
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

/// Reads a log from its start: the entries `filter` keeps, and the offset where it stopped (for
/// following). A torn last line (the monitor is writing it) is left for the next read.
pub fn read(path: &Path, filter: &Filter) -> io::Result<(Vec<Entry>, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let (entries, offset) = read_from(file, 0)?;
    let mut kept: Vec<Entry> = entries.into_iter().filter(|e| filter.keeps(e)).collect();
    if let Some(n) = filter.tail {
        let skip = kept.len().saturating_sub(n);
        kept.drain(..skip);
    }
    Ok((kept, offset))
}

/// The complete entries after `offset`, and the new offset.
pub fn read_from(mut file: File, offset: u64) -> io::Result<(Vec<Entry>, u64)> {
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut pos = offset;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        pos += n as u64;
        if let Ok(e) = serde_json::from_slice::<Entry>(&line) {
            entries.push(e);
        }
    }
    Ok((entries, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_partial_lines_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = Writer::open(&path).unwrap();
        w.write(Stream::Stdout, b"one\ntw").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        w.write(Stream::Stdout, b"o\nthree").unwrap();
        w.flush_partial().unwrap();
        let (all, _) = read(&path, &Filter::default()).unwrap();
        let logs: Vec<(&str, Stream)> = all.iter().map(|e| (e.log.as_str(), e.stream)).collect();
        assert_eq!(
            logs,
            [
                ("one\n", Stream::Stdout),
                ("err\n", Stream::Stderr),
                ("two\n", Stream::Stdout),
                ("three", Stream::Stdout)
            ]
        );
        let (last, _) = read(&path, &Filter { tail: Some(2), ..Default::default() }).unwrap();
        assert_eq!(last.len(), 2);
        assert_eq!(last[1].log, "three");
    }
}
