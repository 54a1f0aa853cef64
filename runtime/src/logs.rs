//! A container's log: docker's `json-file` format, one JSON object per line
//! (`{"log":"text\n","stream":"stdout","time":"2024-01-01T00:00:00.000000001Z"}`), written by
//! the monitor and read by `rbuild logs`. Kept in `containers/<id>/container.log`; a new
//! start appends, as docker does.
//!
//! Rotation, as docker's json-file driver (`--log-opt max-size=10m,max-file=3`): a write that
//! would take the file past `max-size` first renames `container.log` to `container.log.1`
//! (`.1` to `.2`..., the oldest beyond `max-file - 1` dropped; with `max-file=1` the file is
//! emptied). Readers take the rotated files oldest first; a follower that sees the file
//! replaced finishes the old one, then reads the new one from its start.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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

/// Docker's `LogConfig`: the driver (`json-file`, or `none`: nothing is kept) and its options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub driver: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig { driver: "json-file".into(), config: BTreeMap::new() }
    }
}

/// When a log rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_size: u64,
    /// Files kept, the current one included (at least 1).
    pub max_file: u32,
}

impl LogConfig {
    /// `--log-driver` and `--log-opt KEY=VALUE`s, checked as docker checks them.
    pub fn parse(driver: Option<&str>, opts: &[String]) -> Result<LogConfig, String> {
        let driver = driver.unwrap_or("json-file").to_string();
        if !["json-file", "none"].contains(&driver.as_str()) {
            return Err(format!("logging driver {driver:?} is not supported (json-file, none)"));
        }
        let mut config = BTreeMap::new();
        for o in opts {
            let Some((k, v)) = o.split_once('=') else {
                return Err(format!("invalid log opt {o:?}: not key=value"));
            };
            if driver == "none" || !["max-size", "max-file"].contains(&k) {
                return Err(format!("unknown log opt '{k}' for {driver} log driver"));
            }
            config.insert(k.to_string(), v.to_string());
        }
        let c = LogConfig { driver, config };
        c.rotation()?;
        Ok(c)
    }

    /// Whether output is kept at all.
    pub fn keeps(&self) -> bool {
        self.driver != "none"
    }

    /// `max-size` (docker's units: `10m`, `1g`, `500k`) and `max-file` (default 1), if set.
    pub fn rotation(&self) -> Result<Option<Rotation>, String> {
        let max_file = match self.config.get("max-file") {
            None => 1,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => return Err(format!("max-file {v:?}: must be a number of at least 1")),
            },
        };
        let Some(size) = self.config.get("max-size") else {
            if self.config.contains_key("max-file") && max_file > 1 {
                return Err("max-file needs max-size".into());
            }
            return Ok(None);
        };
        match hostutil::units::ram_in_bytes(size) {
            Some(max_size) if max_size > 0 => Ok(Some(Rotation { max_size, max_file })),
            _ => Err(format!("max-size {size:?}: not a size (10m, 1g)")),
        }
    }
}

/// The log's files, oldest first: `container.log.N` ... `container.log.1`, `container.log`.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return vec![path.to_path_buf()];
    };
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let file = e.file_name();
            let Some(n) = file.to_str().and_then(|f| f.strip_prefix(name)).and_then(|r| r.strip_prefix('.'))
            else {
                continue;
            };
            if let Ok(n) = n.parse::<u32>() {
                rotated.push((n, e.path()));
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    out.push(path.to_path_buf());
    out
}

/// Appends output to a log file, one entry per line of output.
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Option<Rotation>,
    /// Per stream: the unfinished line of the previous chunk.
    pending: [Vec<u8>; 2],
}

impl Writer {
    pub fn open(path: &Path, rotation: Option<Rotation>) -> io::Result<Writer> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Writer { path: path.to_path_buf(), file, size, rotation, pending: [Vec::new(), Vec::new()] })
    }

    fn append(&mut self, out: &[u8]) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        if let Some(r) = self.rotation
            && self.size > 0
            && self.size + out.len() as u64 > r.max_size
        {
            self.rotate(r)?;
        }
        self.file.write_all(out)?;
        self.size += out.len() as u64;
        Ok(())
    }

    fn rotate(&mut self, r: Rotation) -> io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if r.max_file > 1 {
            let _ = std::fs::remove_file(numbered(r.max_file - 1));
            for n in (1..r.max_file - 1).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&self.path, numbered(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
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
        self.append(&out)
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
        self.append(&out)
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
/// The rotated files come first.
pub fn read(path: &Path, filter: &Filter) -> io::Result<(Vec<Entry>, u64)> {
    let mut entries = Vec::new();
    let mut offset = 0;
    for f in files(path) {
        let file = match File::open(&f) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let (more, at) = read_from(file, 0)?;
        entries.extend(more);
        offset = if f == path { at } else { 0 };
    }
    let mut kept: Vec<Entry> = entries.into_iter().filter(|e| filter.keeps(e)).collect();
    if let Some(n) = filter.tail {
        let skip = kept.len().saturating_sub(n);
        kept.drain(..skip);
    }
    Ok((kept, offset))
}

/// Follows a log as it grows (`logs -f`), across rotations: the file being read is held open
/// and known by its inode; when the path names another file, the held one is finished, then
/// the file that came after it (a rotated one, if several rotations came between two polls),
/// from its start.
pub struct Follower {
    path: PathBuf,
    file: Option<(File, Option<u64>)>,
    offset: u64,
}

fn inode(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

impl Follower {
    /// Follows `path` from `offset` (what [`read`] returned).
    pub fn new(path: &Path, offset: u64) -> Follower {
        let file = File::open(path).ok().map(|f| (f, inode(path)));
        Follower { path: path.to_path_buf(), file, offset }
    }

    /// The entries written since the last call.
    pub fn poll(&mut self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        loop {
            if let Some((f, _)) = &self.file {
                let (entries, next) = read_from(f.try_clone()?, self.offset)?;
                self.offset = next;
                out.extend(entries);
            }
            let now = inode(&self.path);
            let done = self.file.as_ref().and_then(|(_, ino)| *ino);
            if now.is_none() || done == now {
                return Ok(out);
            }
            let all = files(&self.path);
            let next = match all.iter().position(|f| done.is_some() && inode(f) == done) {
                Some(i) => all.get(i + 1).cloned(),
                // The one we read was dropped meanwhile: the oldest one left.
                None if done.is_some() => all.first().cloned(),
                None => Some(self.path.clone()),
            };
            let Some(next) = next else { return Ok(out) };
            self.file = File::open(&next).ok().map(|f| (f, inode(&next)));
            self.offset = 0;
        }
    }
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
        let mut w = Writer::open(&path, None).unwrap();
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

#[cfg(test)]
mod rotation_tests {
    use super::*;

    #[test]
    fn a_full_log_rotates_and_readers_get_every_kept_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = Writer::open(&path, Some(Rotation { max_size: 400, max_file: 3 })).unwrap();
        for i in 0..40 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes()).unwrap();
        }
        let names: Vec<String> =
            files(&path).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["container.log.2", "container.log.1", "container.log"]);
        for f in files(&path) {
            assert!(std::fs::metadata(&f).unwrap().len() <= 400, "{}", f.display());
        }
        let (entries, _) = read(&path, &Filter::default()).unwrap();
        let n: Vec<u32> =
            entries.iter().map(|e| e.log.trim().trim_start_matches("line ").parse().unwrap()).collect();
        assert_eq!(*n.last().unwrap(), 39);
        assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "in order, no gap: {n:?}");
        assert!(n[0] > 0, "the oldest lines were dropped");
    }

    #[test]
    fn log_opts_are_checked_as_docker_checks_them() {
        let ok = LogConfig::parse(None, &["max-size=10m".into(), "max-file=3".into()]).unwrap();
        assert_eq!(ok.rotation().unwrap(), Some(Rotation { max_size: 10 << 20, max_file: 3 }));
        for (driver, opts, expect) in [
            (None, vec!["max-size=lots"], "not a size"),
            (None, vec!["max-file=0", "max-size=1m"], "at least 1"),
            (None, vec!["compress=true"], "unknown log opt 'compress' for json-file log driver"),
            (Some("syslog"), vec![], "not supported"),
            (Some("none"), vec!["max-size=1m"], "unknown log opt"),
        ] {
            let opts: Vec<String> = opts.into_iter().map(String::from).collect();
            let e = LogConfig::parse(driver, &opts).unwrap_err();
            assert!(e.contains(expect), "{e}");
        }
    }
}
