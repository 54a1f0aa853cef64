//! `rbuild events`: what happened to containers, networks and volumes, from the store's event
//! log (runtime::events), as `docker events` prints it; without `--until` it goes on with new
//! events as they happen.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use cache::Store;
use runtime::events::{self, Event, Filter, Follower};

use crate::output::Format;

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Events from this time on: a Unix timestamp, an RFC 3339 time or a duration ago (`10m`).
    #[arg(long)]
    pub since: Option<String>,
    /// Events up to this time, then exit (same forms as `--since`).
    #[arg(long)]
    pub until: Option<String>,
    /// `type=`, `event=`, `container=`, `image=`, `network=`, `volume=`, `label=` (repeatable:
    /// values of one key are alternatives, different keys must all match).
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// A Go template over each event's JSON (`{{.Action}}`, `{{json .}}`).
    #[arg(long)]
    pub format: Option<String>,
}

pub fn events(store: &Store, a: EventsArgs) -> Result<ExitCode> {
    let since = a.since.as_deref().map(events::parse_time).transpose()?;
    let until = a.until.as_deref().map(events::parse_time).transpose()?;
    let filter = Filter::parse(&a.filters)?;
    let format = a.format.as_deref().map(Format::parse).transpose()?;
    let print = |e: &Event| -> Result<()> {
        if !filter.matches(e) {
            return Ok(());
        }
        let line = match &format {
            Some(t) => t.render(&serde_json::to_value(e)?)?,
            None => e.text(),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        Ok(())
    };
    // Without --since or --until, only what happens from now on (as docker).
    let (past, at) = events::read(store.root(), since, until)?;
    if since.is_some() || until.is_some() {
        for e in &past {
            print(e)?;
        }
    }
    if until.is_some_and(|u| u <= events::now_nanos()) {
        return Ok(ExitCode::SUCCESS);
    }
    let mut follower = Follower::new(store.root(), at);
    loop {
        for e in follower.poll()? {
            if until.is_some_and(|u| e.time_nano > u) {
                return Ok(ExitCode::SUCCESS);
            }
            print(&e)?;
        }
        if until.is_some_and(|u| u <= events::now_nanos()) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
