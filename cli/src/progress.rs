//! Build progress as plain lines on stderr, one per event, as BuildKit's `--progress=plain`.

use std::io::Write;

use solver::{Event, Progress};

pub struct Plain {
    pub quiet: bool,
}

impl Progress for Plain {
    fn event(&self, event: Event<'_>) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        // A closed stderr must not fail the build.
        let _ = match event {
            Event::Warning(w) => writeln!(err, "WARNING: {w}"),
            Event::Started(s) => writeln!(err, "{s}"),
            Event::Cached(s) => writeln!(err, "CACHED {s}"),
            Event::Output(s, line) => writeln!(err, "[{} {}/{}] | {line}", s.stage, s.index, s.total),
            Event::Finished(s, d) => {
                if s.index == 1 {
                    writeln!(err, "{s}")
                } else {
                    writeln!(err, "[{} {}/{}] DONE {:.2}s", s.stage, s.index, s.total, d.as_secs_f64())
                }
            }
        };
    }
}
