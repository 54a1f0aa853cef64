//! Progress of `rbuild pull` and `rbuild push`, drawn from the registry client's per-blob events
//! ([`registry::Progress`], which come from several transfer threads at once):
//!
//! - stderr is a terminal: one indicatif bar per blob (config and layers), as docker draws them,
//!   `0123456789ab: Downloading [=====>      ] 12.3MB/40.1MB`, that ends as `Downloaded 40.1MB`,
//!   `Already exists`, `Pushed 40.1MB`, `Layer already exists` or `Mounted from HOST/REPO`.
//! - otherwise (CI logs, pipes): one line per blob when it is settled, with the same ending,
//!   `0123456789ab: Downloaded 40.1MB`.
//! - `-q`: nothing.
//!
//! Everything goes to stderr; stdout keeps only the digest lines scripts read.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use registry::{Outcome, Progress, ProgressFn};

use crate::output::human_size;

/// Which way blobs move; it decides the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Pull,
    Push,
}

impl Direction {
    /// What a bar says while its blob moves.
    fn moving(self) -> &'static str {
        match self {
            Direction::Pull => "Downloading",
            Direction::Push => "Pushing",
        }
    }
}

/// How a settled blob is described: `Downloaded 12.3MB`, `Already exists`, `Pushed 12.3MB`,
/// `Layer already exists`, `Mounted from 127.0.0.1:5000/base` (docker's words; sizes in its
/// decimal units).
pub fn settled(direction: Direction, outcome: &Outcome, size: u64) -> String {
    match (direction, outcome) {
        (Direction::Pull, Outcome::Transferred) => format!("Downloaded {}", human_size(size, 3)),
        (Direction::Push, Outcome::Transferred) => format!("Pushed {}", human_size(size, 3)),
        (Direction::Pull, Outcome::AlreadyPresent) => "Already exists".to_string(),
        (Direction::Push, Outcome::AlreadyPresent) => "Layer already exists".to_string(),
        (_, Outcome::Mounted { from }) => format!("Mounted from {from}"),
    }
}

/// The progress callback for a pull or push: bars when stderr is a terminal, lines otherwise,
/// `None` (no callback at all) when `quiet`.
pub fn reporter(direction: Direction, quiet: bool) -> Option<ProgressFn> {
    if quiet {
        return None;
    }
    if io::stderr().is_terminal() {
        let bars = Bars::new(direction, ProgressDrawTarget::stderr());
        Some(Arc::new(move |p: &Progress| bars.event(p)))
    } else {
        let lines = Lines::new(direction, Box::new(io::stderr()));
        Some(Arc::new(move |p: &Progress| lines.event(p)))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One line per settled blob.
pub struct Lines {
    direction: Direction,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Lines {
    pub fn new(direction: Direction, out: Box<dyn Write + Send>) -> Lines {
        Lines { direction, out: Mutex::new(out) }
    }

    pub fn event(&self, event: &Progress) {
        if let Progress::Done { digest, size, outcome } = event {
            let line = format!("{}: {}\n", digest.short(), settled(self.direction, outcome, *size));
            let mut out = lock(&self.out);
            // A closed stderr must not fail the transfer.
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}

/// One bar per blob, in the order the blobs were first heard of.
pub struct Bars {
    direction: Direction,
    multi: MultiProgress,
    bars: Mutex<HashMap<cache::Digest, ProgressBar>>,
}

const MOVING: &str = "{prefix}: {msg:<11} [{bar:40}] {decimal_bytes}/{decimal_total_bytes}";
const SETTLED: &str = "{prefix}: {msg}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> ")
}

impl Bars {
    pub fn new(direction: Direction, target: ProgressDrawTarget) -> Bars {
        Bars { direction, multi: MultiProgress::with_draw_target(target), bars: Mutex::new(HashMap::new()) }
    }

    pub fn event(&self, event: &Progress) {
        let mut bars = lock(&self.bars);
        let (digest, size) = match event {
            Progress::Start { digest, size }
            | Progress::Bytes { digest, size, .. }
            | Progress::Done { digest, size, .. } => (digest, *size),
        };
        let bar = bars.entry(digest.clone()).or_insert_with(|| {
            // Built whole before it is added, so it is never drawn half made.
            let bar = ProgressBar::new(size).with_prefix(digest.short().to_string());
            let bar = match event {
                Progress::Done { outcome, .. } => {
                    bar.with_style(style(SETTLED)).with_message(settled(self.direction, outcome, size))
                }
                _ => bar.with_style(style(MOVING)).with_message(self.direction.moving()),
            };
            self.multi.add(bar)
        });
        match event {
            // Also a retry from the start.
            Progress::Start { size, .. } => {
                bar.set_length(*size);
                bar.set_position(0);
            }
            Progress::Bytes { done, size, .. } => {
                bar.set_length(*size);
                bar.set_position(*done);
            }
            Progress::Done { size, outcome, .. } => {
                bar.set_style(style(SETTLED));
                bar.finish_with_message(settled(self.direction, outcome, *size));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn digest(data: &[u8]) -> cache::Digest {
        cache::Digest::of(data)
    }

    #[test]
    fn settled_blobs_read_as_docker_words_them() {
        let t = Outcome::Transferred;
        assert_eq!(settled(Direction::Pull, &t, 12_345_678), "Downloaded 12.3MB");
        assert_eq!(settled(Direction::Push, &t, 1_500), "Pushed 1.5kB");
        assert_eq!(settled(Direction::Pull, &Outcome::AlreadyPresent, 1), "Already exists");
        assert_eq!(settled(Direction::Push, &Outcome::AlreadyPresent, 1), "Layer already exists");
        let m = Outcome::Mounted { from: "127.0.0.1:5000/base".into() };
        assert_eq!(settled(Direction::Push, &m, 1), "Mounted from 127.0.0.1:5000/base");
    }

    #[test]
    fn lines_print_one_line_per_settled_blob() {
        let out = Shared::default();
        let lines = Lines::new(Direction::Pull, Box::new(out.clone()));
        let (a, b) = (digest(b"a"), digest(b"b"));
        lines.event(&Progress::Start { digest: a.clone(), size: 2_000_000 });
        lines.event(&Progress::Bytes { digest: a.clone(), done: 1 << 20, size: 2_000_000 });
        lines.event(&Progress::Done { digest: b.clone(), size: 5, outcome: Outcome::AlreadyPresent });
        lines.event(&Progress::Bytes { digest: a.clone(), done: 2_000_000, size: 2_000_000 });
        lines.event(&Progress::Done { digest: a.clone(), size: 2_000_000, outcome: Outcome::Transferred });
        let text = String::from_utf8(lock(&out.0).clone()).unwrap();
        assert_eq!(text, format!("{}: Already exists\n{}: Downloaded 2MB\n", b.short(), a.short()));
    }

    #[test]
    fn bars_follow_each_blob_to_its_end() {
        let bars = Bars::new(Direction::Push, ProgressDrawTarget::hidden());
        let (a, b) = (digest(b"a"), digest(b"b"));
        bars.event(&Progress::Start { digest: a.clone(), size: 100 });
        bars.event(&Progress::Bytes { digest: a.clone(), done: 40, size: 100 });
        bars.event(&Progress::Done { digest: b.clone(), size: 7, outcome: Outcome::AlreadyPresent });
        {
            let map = lock(&bars.bars);
            assert_eq!(map[&a].position(), 40);
            assert!(!map[&a].is_finished());
            assert!(map[&b].is_finished());
            assert_eq!(map[&b].message(), "Layer already exists");
        }
        // A retry starts the bar over.
        bars.event(&Progress::Start { digest: a.clone(), size: 100 });
        assert_eq!(lock(&bars.bars)[&a].position(), 0);
        bars.event(&Progress::Done { digest: a.clone(), size: 100, outcome: Outcome::Transferred });
        assert!(lock(&bars.bars)[&a].is_finished());
        assert_eq!(lock(&bars.bars)[&a].message(), "Pushed 100B");
    }
}
