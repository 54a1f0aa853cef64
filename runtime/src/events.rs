//! Events: what happened to containers, networks, volumes and images, as dockerd reports them
//! (`docker events`), kept in an append-only log in the store so that every front end (the
//! CLI, the API service, a container's monitor) writes and reads the same history.
//!
//! The log and its writer are `cache::events` (pulls, pushes and tags emit below this crate);
//! here: containers' events, reading the log back, following it across rotations, and
//! `docker events`' time bounds and filters.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use cache::events::{Actor, Event, ROTATE_AT, emit, image, now_nanos};
use cache::events::{LOG, OLD};

use crate::container::Container;

/// Why a `since`/`until` time or a filter is refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid time {0:?}: give a Unix timestamp, an RFC 3339 time or a duration like 10m")]
    Time(String),
    #[error("invalid filter {0:?}: expected KEY=VALUE with KEY one of {FILTER_KEYS}")]
    Filter(String),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

const FILTER_KEYS: &str = "type, event, container, image, network, volume, label";

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// A container's event: its labels, `image` and `name` among the attributes, then
/// `extra` (`exitCode`, `signal`...), as dockerd's `LogContainerEventWithAttributes`.
pub fn container(c: &Container, action: &str, extra: &[(&str, String)]) -> Event {
    let image = c.config.config.image.clone();
    let mut attrs: BTreeMap<String, String> = c.config.config.labels.clone();
    attrs.insert("image".into(), image.clone());
    attrs.insert("name".into(), c.name().to_string());
    for (k, v) in extra {
        attrs.insert((*k).to_string(), v.clone());
    }
    let mut e = Event::new("container", action, c.id().as_str(), attrs);
    e.status = Some(action.to_string());
    e.id = Some(c.id().to_string());
    e.from = Some(image);
    e
}

/// A time bound as `docker events --since/--until` and the API take it: a Unix timestamp
/// (`1700000000`, `1700000000.5`), an RFC 3339 time, or a duration before now (`10m`,
/// `1h30m`, `90s`). Returns nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, Error> {
    let bad = || Error::Time(s.to_string());
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Some((secs, nanos)) = cache::time::parse_rfc3339_nanos(s) {
        return Ok(secs * 1_000_000_000 + i64::from(nanos));
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let secs: i64 = whole.parse().map_err(|_| bad())?;
        let frac = if frac.is_empty() { "0" } else { frac };
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let digits = &frac[..frac.len().min(9)];
        let nanos: i64 = format!("{digits:0<9}").parse().map_err(|_| bad())?;
        return Ok(secs * 1_000_000_000 + nanos);
    }
    Ok(now_nanos() - parse_duration(s).ok_or_else(bad)?)
}

/// Go's durations as the docker CLI takes them: `1h30m`, `10m`, `45s`, `1.5h`, `500ms`.
fn parse_duration(s: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if n == 0 {
            return None;
        }
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * unit;
        rest = &rest[u..];
    }
    Some(total as i64)
}

/// `--filter` values: the values of one key are alternatives, the keys must all match (as
/// dockerd's event filters).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    by_key: BTreeMap<String, Vec<String>>,
}

impl Filter {
    /// From `key=value` strings (`event=start`, `container=web`, `label=a=b`).
    pub fn parse(values: &[String]) -> Result<Filter, Error> {
        let mut f = Filter::default();
        for v in values {
            let (k, val) = v.split_once('=').ok_or_else(|| Error::Filter(v.clone()))?;
            let key = match k {
                "action" => "event",
                "type" | "event" | "container" | "image" | "network" | "volume" | "label" => k,
                _ => return Err(Error::Filter(v.clone())),
            };
            f.by_key.entry(key.to_string()).or_default().push(val.to_string());
        }
        Ok(f)
    }

    pub fn matches(&self, e: &Event) -> bool {
        let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str);
        let id_or_name =
            |v: &str, id: &str, name: Option<&str>| (!v.is_empty() && id.starts_with(v)) || name == Some(v);
        // Label filters must all match, as dockerd's; other keys' values are alternatives.
        self.by_key.iter().all(|(key, values)| {
            let one = |v: &String| match key.as_str() {
                "type" => e.kind == *v,
                // `health_status` matches `health_status: healthy`, `exec_start` any exec's.
                "event" => e.action == *v || e.action.split(':').next() == Some(v.as_str()),
                "container" => match e.kind.as_str() {
                    "container" => id_or_name(v, &e.actor.id, attr("name")),
                    _ => attr("container").is_some_and(|c| id_or_name(v, c, None)),
                },
                "image" => {
                    (e.kind == "image" && (e.actor.id == *v || attr("name") == Some(v)))
                        || attr("image") == Some(v.as_str())
                }
                "network" => e.kind == "network" && id_or_name(v, &e.actor.id, attr("name")),
                "volume" => e.kind == "volume" && e.actor.id == *v,
                "label" => match v.split_once('=') {
                    Some((k, want)) => attr(k) == Some(want),
                    None => e.actor.attributes.contains_key(v),
                },
                _ => false,
            };
            match key.as_str() {
                "label" => values.iter().all(one),
                _ => values.iter().any(one),
            }
        })
    }
}

/// The log's events from `since` (nanoseconds, inclusive) to `until` (inclusive), oldest
/// first, and where the current log ends (to [`Follower::new`] from there).
pub fn read(
    store_root: &Path,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<(Vec<Event>, Position), Error> {
    let mut out = Vec::new();
    let keep = |e: &Event| since.is_none_or(|s| e.time_nano >= s) && until.is_none_or(|u| e.time_nano <= u);
    let old = store_root.join(OLD);
    if let Ok(bytes) = fs::read(&old) {
        out.extend(parse_lines(&bytes).into_iter().filter(keep));
    }
    let path = store_root.join(LOG);
    let (bytes, position) = match File::open(&path) {
        Ok(mut f) => {
            let meta = f.metadata().map_err(io_at(&path))?;
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map_err(io_at(&path))?;
            // A line being written now is read once it is whole.
            let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            bytes.truncate(end);
            (bytes, Position { inode: meta.ino(), offset: end as u64 })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), Position::default()),
        Err(e) => return Err(io_at(&path)(e)),
    };
    out.extend(parse_lines(&bytes).into_iter().filter(keep));
    Ok((out, position))
}

/// Whole lines that parse; a damaged one is skipped.
fn parse_lines(bytes: &[u8]) -> Vec<Event> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// Where a reader of the log is: the file (by inode, which rotation keeps) and the offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    inode: u64,
    offset: u64,
}

/// Reads the events appended after a [`Position`], across rotations.
#[derive(Debug)]
pub struct Follower {
    root: PathBuf,
    at: Position,
}

impl Follower {
    pub fn new(store_root: &Path, at: Position) -> Follower {
        Follower { root: store_root.to_path_buf(), at }
    }

    /// The events appended since the last call.
    pub fn poll(&mut self) -> Result<Vec<Event>, Error> {
        let mut out = Vec::new();
        let path = self.root.join(LOG);
        let inode = match fs::metadata(&path) {
            Ok(m) => m.ino(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_at(&path)(e)),
        };
        if inode != self.at.inode {
            // Rotated: the rest of the file we were reading, if it is the old one now.
            let old = self.root.join(OLD);
            if self.at.inode != 0 && fs::metadata(&old).is_ok_and(|m| m.ino() == self.at.inode) {
                out.extend(read_from(&old, self.at.offset)?.0);
            }
            self.at = Position { inode, offset: 0 };
        }
        let (events, offset) = read_from(&path, self.at.offset)?;
        self.at.offset = offset;
        out.extend(events);
        Ok(out)
    }
}

/// The whole lines of `path` after `offset`, and the offset after the last of them.
fn read_from(path: &Path, offset: u64) -> Result<(Vec<Event>, u64), Error> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(io_at(path)(e)),
    };
    f.seek(SeekFrom::Start(offset)).map_err(io_at(path))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(io_at(path))?;
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    bytes.truncate(end);
    Ok((parse_lines(&bytes), offset + end as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event::new(kind, action, id, attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn events_are_read_back_in_order_and_followed_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        emit(dir.path(), ev("container", "create", "a1", &[]));
        let (past, at) = read(dir.path(), None, None).unwrap();
        assert_eq!(past.len(), 1);
        let mut f = Follower::new(dir.path(), at);
        assert!(f.poll().unwrap().is_empty());
        emit(dir.path(), ev("container", "start", "a1", &[]));
        // Rotation between two polls: the follower finishes the old file first.
        fs::rename(dir.path().join(LOG), dir.path().join(OLD)).unwrap();
        emit(dir.path(), ev("container", "die", "a1", &[("exitCode", "0")]));
        let got: Vec<String> = f.poll().unwrap().into_iter().map(|e| e.action).collect();
        assert_eq!(got, ["start", "die"]);
        let (all, _) = read(dir.path(), None, None).unwrap();
        assert_eq!(all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["create", "start", "die"]);
    }

    #[test]
    fn filters_and_keys_and_values_or() {
        let start = ev("container", "start", "abc123", &[("name", "web"), ("image", "busybox"), ("a", "b")]);
        let f = |v: &[&str]| Filter::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        assert!(f(&["event=start", "container=web"]).matches(&start));
        assert!(f(&["event=die", "event=start"]).matches(&start));
        assert!(!f(&["event=start", "container=other"]).matches(&start));
        assert!(f(&["container=abc"]).matches(&start));
        assert!(f(&["label=a=b", "image=busybox", "type=container"]).matches(&start));
        assert!(!f(&["label=a=c"]).matches(&start));
        let health = ev("container", "health_status: healthy", "abc123", &[]);
        assert!(f(&["event=health_status"]).matches(&health));
        assert!(Filter::parse(&["bogus=1".to_string()]).is_err());
    }

    #[test]
    fn times_are_timestamps_rfc3339_or_durations_ago() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(parse_time("1700000000.5").unwrap(), 1_700_000_000_500_000_000);
        assert_eq!(parse_time("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000_000_000);
        let ago = now_nanos() - parse_time("1h30m").unwrap();
        assert!((5_399_000_000_000..5_401_000_000_000).contains(&ago), "{ago}");
        assert!(parse_time("soon").is_err());
    }

    #[test]
    fn the_text_line_is_dockers() {
        let mut e = ev("container", "start", "abc", &[("name", "x"), ("image", "busybox")]);
        e.time_nano = 1_700_000_000_000_000_001;
        assert_eq!(e.text(), "2023-11-14T22:13:20.000000001Z container start abc (image=busybox, name=x)");
    }
}
