//! The store's event log: what happened to containers, images, networks and volumes, as
//! dockerd reports it (`docker events`), written by whoever did it (the CLI, the API service, a
//! container's monitor, a pull, a push) so every front end reads the same history. Writing
//! lives here, under everything that emits; reading, following and filtering are
//! `runtime::events`'.
//!
//! `<store>/events.jsonl` holds one docker-shaped JSON object a line. Each line goes in with
//! one `write` on a descriptor opened with `O_APPEND`, so concurrent writers never interleave.
//! Past [`ROTATE_AT`] the file becomes `events.jsonl.1` (the one before is dropped): the log
//! stays bounded. Writing an event is best effort: a failure never fails the operation.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// The log's size past which it is rotated.
pub const ROTATE_AT: u64 = 1 << 20;

/// The log, in the store's directory.
pub const LOG: &str = "events.jsonl";
/// The log before the last rotation.
pub const OLD: &str = "events.jsonl.1";

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

    /// Seconds and nanoseconds since the epoch.
    pub fn when(&self) -> (i64, u32) {
        (self.time_nano.div_euclid(1_000_000_000), self.time_nano.rem_euclid(1_000_000_000) as u32)
    }

    /// The line `docker events` prints: `2026-12-07T03:00:00.000000000Z container start <id>
    /// (image=busybox, name=x)`.
    pub fn text(&self) -> String {
        let (secs, nanos) = self.when();
        let time = crate::time::format_unix(secs, 0);
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

/// `err` with the file it happened on.
fn at(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn append(root: &Path, event: &Event) -> io::Result<()> {
    let path = root.join(LOG);
    let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
    line.push(b'\n');
    if fs::metadata(&path).is_ok_and(|m| m.len() >= ROTATE_AT) {
        rotate(root)?;
    }
    let mut f = OpenOptions::new().append(true).create(true).open(&path).map_err(at(&path))?;
    // One write: with O_APPEND, lines of concurrent writers never mix.
    f.write_all(&line).map_err(at(&path))
}

/// Moves the full log aside, under a lock so that two writers past the size rotate once.
fn rotate(root: &Path) -> io::Result<()> {
    let lock_path = root.join("events.lock");
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(at(&lock_path))?;
    let _lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| at(&lock_path)(e.into()))?;
    let path = root.join(LOG);
    if fs::metadata(&path).is_ok_and(|m| m.len() >= ROTATE_AT) {
        fs::rename(&path, root.join(OLD)).map_err(at(&path))?;
    }
    Ok(())
}

/// An image's event as dockerd's `LogImageEvent` writes it: `id` (an image ID or a
/// reference) as the actor, `name` (the reference it is about, or the ID again) among the
/// attributes.
pub fn image(root: &Path, action: &str, id: &str, name: &str) {
    emit(root, Event::new("image", action, id, [("name".to_string(), name.to_string())]));
}
