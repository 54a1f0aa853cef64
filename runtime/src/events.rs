//! Events: what happened to containers, networks, volumes and images, as dockerd reports them
//! (`docker events`), kept in an append-only log in the store so that every front end (the
//! CLI, the API service, a container's monitor) writes and reads the same history.
//!
//! `<store>/events.jsonl` holds one docker-shaped JSON object a line. Each line goes in with
//! one `write` on a descriptor opened with `O_APPEND`, so concurrent writers never interleave.
//! Past [`ROTATE_AT`] the file becomes `events.jsonl.1` (the one before is dropped): the log
//! stays bounded. Writing an event is best effort: a failure never fails the operation.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::container::Container;

/// The log's size past which it is rotated.
pub const ROTATE_AT: u64 = 1 << 20;

const LOG: &str = "events.jsonl";
const OLD: &str = "events.jsonl.1";

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

/// Who an event is about: its id (a container's or network's id, a volume's name, an image
/// reference) and docker's attributes (name, image, exitCode, signal, labels...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// One event, in dockerd's JSON shape (`events.Message`): containers' events also carry the
/// old `status`, `id` and `from` fields that clients of old API versions read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `container`, `network`, `volume`, `image`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `create`, `start`, `die`, `health_status: healthy`...
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

/// Nanoseconds since the epoch, now (events' `timeNano`).
pub fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

impl Event {
    /// An event about `id` now.
    pub fn new(
        kind: &str,
        action: &str,
        id: &str,
        attributes: impl IntoIterator<Item = (String, String)>,
    ) -> Event {
        let time_nano = now_nanos();
        Event {
            status: None,
            id: None,
            from: None,
            kind: kind.to_string(),
            action: action.to_string(),
            actor: Actor { id: id.to_string(), attributes: attributes.into_iter().collect() },
            scope: "local".into(),
            time: time_nano.div_euclid(1_000_000_000),
            time_nano,
        }
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

    /// Seconds and nanoseconds since the epoch.
    pub fn when(&self) -> (i64, u32) {
        (self.time_nano.div_euclid(1_000_000_000), self.time_nano.rem_euclid(1_000_000_000) as u32)
    }

    /// The line `docker events` prints: `2026-12-07T03:00:00.000000000Z container start <id>
    /// (image=busybox, name=x)`.
    pub fn text(&self) -> String {
        let (secs, nanos) = self.when();
        let time = cache::time::format_unix(secs, 0);
        let time = format!("{}.{nanos:09}Z", time.trim_end_matches('Z'));
        let attrs: Vec<String> = self.actor.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut line = format!("{time} {} {} {}", self.kind, self.action, self.actor.id);
        if !attrs.is_empty() {
            line.push_str(&format!(" ({})", attrs.join(", ")));
        }
        line
    }
}

/// Appends `event` to the store's log. Never fails the caller: an event that cannot be
/// written is lost (and said on stderr), the operation it reports stands.
pub fn emit(store_root: &Path, event: Event) {
    if let Err(e) = append(store_root, &event) {
        eprintln!(
            "rbuild: recording event {} {}: {}",
            event.kind,
            event.action,
            hostutil::errors::one_line(&e)
        );
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

fn append(root: &Path, event: &Event) -> Result<(), Error> {
    let path = root.join(LOG);
    let mut line = serde_json::to_vec(event).map_err(|e| io_at(&path)(io::Error::other(e)))?;
    line.push(b'\n');
    if fs::metadata(&path).is_ok_and(|m| m.len() >= ROTATE_AT) {
        rotate(root)?;
    }
    let mut f = OpenOptions::new().append(true).create(true).open(&path).map_err(io_at(&path))?;
    // One write: with O_APPEND, lines of concurrent writers never mix.
    f.write_all(&line).map_err(io_at(&path))
}

/// Moves the full log aside, under a lock so that two writers past the size rotate once.
fn rotate(root: &Path) -> Result<(), Error> {
    let lock_path = root.join("events.lock");
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io_at(&lock_path))?;
    let _lock = Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::Io { path: lock_path.clone(), source: e.into() })?;
    let path = root.join(LOG);
    if fs::metadata(&path).is_ok_and(|m| m.len() >= ROTATE_AT) {
        fs::rename(&path, root.join(OLD)).map_err(io_at(&path))?;
    }
    Ok(())
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
