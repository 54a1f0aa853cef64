//! Build progress display, in three renderers chosen by `--progress`:
//!
//! - [`Plain`]: one line per event on stderr, as BuildKit's `--progress=plain`. Every line
//!   names its step, so the output of steps running in parallel stays readable.
//! - [`Json`]: one JSON object per event and line, with the time since the build started.
//! - [`Tty`]: a live display on a terminal: one spinner per running step with its last output
//!   line, and a line for each step that finished, failed or was cached above them.
//!
//! The solver calls [`Progress::event`] from several threads at once; each renderer keeps its
//! state behind a mutex and writes whole lines under it, so lines never tear. After the build,
//! [`ProgressSink::finish`] prints a summary of the steps that ran and how long each took.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use solver as ev;

use ev::{Event, Progress, StepName};

/// Which renderer `--progress` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// `tty` when stderr is a terminal, else `plain`.
    #[default]
    Auto,
    /// One line per event.
    Plain,
    /// A live display with one line per running step.
    Tty,
    /// One JSON object per event and line.
    Json,
}

/// A renderer the build reports to, and that prints a summary when the build is over.
pub trait ProgressSink: Progress {
    /// Prints the summary of the steps that ran (a JSON object for [`Json`]) and clears any
    /// live display. Call once, after the build.
    fn finish(&self);
    /// The steps that ran, in id order, with their times: `  1.23s [builder 4/4] RUN make`.
    fn summary(&self) -> String;
    /// This sink as the solver's `&dyn Progress`.
    fn as_progress(&self) -> &dyn Progress;
}

/// The renderer for `mode`; `quiet` shows nothing at all, not even the summary.
pub fn for_mode(mode: Mode, quiet: bool) -> Box<dyn ProgressSink> {
    if quiet {
        return Box::new(Quiet);
    }
    match mode {
        Mode::Auto if io::stderr().is_terminal() => Box::new(Tty::stderr()),
        Mode::Auto | Mode::Plain => Box::new(Plain::stderr()),
        Mode::Tty => Box::new(Tty::stderr()),
        Mode::Json => Box::new(Json::stderr()),
    }
}

type Writer = Box<dyn Write + Send>;

/// Locks `m`, ignoring poisoning: a panic elsewhere must not silence progress.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `[stage 2/5]`.
fn tag(s: &StepName) -> String {
    format!("[{} {}/{}]", s.stage, s.index, s.total)
}

/// Writes `text` (whole lines, each ending in a newline) at once. A closed stderr must not
/// fail the build, so errors are ignored.
fn emit(out: &mut Writer, text: &str) {
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Shows nothing.
struct Quiet;

impl Progress for Quiet {
    fn event(&self, _: Event<'_>) {}
}

impl ProgressSink for Quiet {
    fn finish(&self) {}
    fn summary(&self) -> String {
        String::new()
    }
    fn as_progress(&self) -> &dyn Progress {
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The steps that ran, for the summary.

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Running,
    Done(Duration),
    Failed(Duration),
}

#[derive(Debug)]
struct Ran {
    name: StepName,
    started: Instant,
    outcome: Outcome,
}

/// Every step that started, by id; and the build checks' warnings (buildx's `Short` form).
#[derive(Debug, Default)]
struct Steps(BTreeMap<usize, Ran>, Vec<String>);

impl Steps {
    fn lint(&mut self, w: &solver::LintWarning) {
        let short = w.short();
        if !self.1.contains(&short) {
            self.1.push(short);
        }
    }

    fn started(&mut self, s: &StepName) {
        self.0.insert(s.id, Ran { name: s.clone(), started: Instant::now(), outcome: Outcome::Running });
    }

    /// Records that `s` finished; false when it never started (a FROM).
    fn finished(&mut self, s: &StepName, d: Duration) -> bool {
        match self.0.get_mut(&s.id) {
            Some(ran) => {
                ran.outcome = Outcome::Done(d);
                true
            }
            None => false,
        }
    }

    /// Records that `s` failed, and returns how long it had run.
    fn failed(&mut self, s: &StepName) -> Duration {
        let ran = self.0.entry(s.id).or_insert_with(|| Ran {
            name: s.clone(),
            started: Instant::now(),
            outcome: Outcome::Running,
        });
        let d = ran.started.elapsed();
        ran.outcome = Outcome::Failed(d);
        d
    }

    /// A step's time so far, or in all; and how it ended.
    fn time(ran: &Ran) -> (Duration, &'static str) {
        match ran.outcome {
            Outcome::Done(d) => (d, ""),
            Outcome::Failed(d) => (d, " (failed)"),
            Outcome::Running => (ran.started.elapsed(), " (unfinished)"),
        }
    }

    /// Each step's time, then the build checks' warnings as buildx lists them at the end
    /// (in the order found, not buildx's random one; no colour codes off a terminal).
    fn summary(&self) -> String {
        let mut out = String::new();
        for ran in self.0.values() {
            let (d, how) = Self::time(ran);
            let _ = writeln!(out, "{:>6.2}s {} {}{how}", d.as_secs_f64(), tag(&ran.name), ran.name.text);
        }
        if !self.1.is_empty() {
            let n = self.1.len();
            let header = if n == 1 { "1 warning found".to_string() } else { format!("{n} warnings found") };
            let _ = writeln!(out, "\n {header}:");
            for short in &self.1 {
                let _ = writeln!(out, " - {short}");
            }
        }
        out
    }

    fn json(&self) -> Value {
        let steps = self.0.values().map(|ran| {
            let (d, _) = Self::time(ran);
            let status = match ran.outcome {
                Outcome::Done(_) => "done",
                Outcome::Failed(_) => "failed",
                Outcome::Running => "unfinished",
            };
            let mut o = step_fields(&ran.name);
            o.insert("duration".into(), json!(d.as_secs_f64()));
            o.insert("status".into(), json!(status));
            Value::Object(o)
        });
        Value::Array(steps.collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Plain lines.

/// One line per event, as BuildKit's `--progress=plain`.
pub struct Plain {
    inner: Mutex<Lines>,
}

struct Lines {
    out: Writer,
    steps: Steps,
}

impl Plain {
    /// Writes to stderr.
    pub fn stderr() -> Self {
        Self::to_writer(Box::new(io::stderr()))
    }

    /// Writes to `out`.
    pub fn to_writer(out: Box<dyn Write + Send>) -> Self {
        Plain { inner: Mutex::new(Lines { out, steps: Steps::default() }) }
    }
}

impl Progress for Plain {
    fn event(&self, event: Event<'_>) {
        let mut inner = lock(&self.inner);
        let text = match event {
            Event::Warning(w) => format!("WARNING: {w}\n"),
            Event::Note(n) => format!("{n}\n"),
            Event::Lint(w) => {
                inner.steps.lint(w);
                format!("WARN: {}\n", w.short())
            }
            Event::Started(s) => {
                inner.steps.started(s);
                format!("{} {}\n", tag(s), s.text)
            }
            Event::Cached(s) => format!("CACHED {} {}\n", tag(s), s.text),
            Event::Output(s, line) => format!("{} | {}\n", tag(s), line.trim_end_matches(['\n', '\r'])),
            Event::Finished(s, d) => {
                if inner.steps.finished(s, d) || s.index != 1 {
                    format!("{} DONE {:.2}s\n", tag(s), d.as_secs_f64())
                } else {
                    // A FROM: it has no Started line, so name it here.
                    format!("{} {}\n", tag(s), s.text)
                }
            }
            Event::Explain(s, reason) => format!("{} cache miss: {reason}\n", tag(s)),
            Event::Failed(s, message) => {
                inner.steps.failed(s);
                format!("{} ERROR: {}\n", tag(s), message.trim_end())
            }
        };
        emit(&mut inner.out, &text);
    }
}

impl ProgressSink for Plain {
    fn finish(&self) {
        let summary = self.summary();
        emit(&mut lock(&self.inner).out, &summary);
    }
    fn summary(&self) -> String {
        lock(&self.inner).steps.summary()
    }
    fn as_progress(&self) -> &dyn Progress {
        self
    }
}

// ---------------------------------------------------------------------------------------------
// JSON lines.

/// One JSON object per event and line: `{"event":"started","id":3,"stage":"builder",
/// "index":2,"total":5,"text":"RUN make","time":0.0123}`, with `time` in seconds since the
/// renderer was made, taken when the event arrives.
pub struct Json {
    start: Instant,
    inner: Mutex<Lines>,
}

fn step_fields(s: &StepName) -> serde_json::Map<String, Value> {
    let mut o = serde_json::Map::new();
    o.insert("id".into(), json!(s.id));
    o.insert("stage".into(), json!(s.stage));
    o.insert("index".into(), json!(s.index));
    o.insert("total".into(), json!(s.total));
    o.insert("text".into(), json!(s.text));
    o
}

impl Json {
    /// Writes to stderr.
    pub fn stderr() -> Self {
        Self::to_writer(Box::new(io::stderr()))
    }

    /// Writes to `out`.
    pub fn to_writer(out: Box<dyn Write + Send>) -> Self {
        Json { start: Instant::now(), inner: Mutex::new(Lines { out, steps: Steps::default() }) }
    }
}

impl Progress for Json {
    fn event(&self, event: Event<'_>) {
        let mut inner = lock(&self.inner);
        // Under the lock, so the times of the lines written never decrease.
        let time = self.start.elapsed().as_secs_f64();
        let (kind, mut o) = match event {
            Event::Warning(w) => {
                let mut o = serde_json::Map::new();
                o.insert("message".into(), json!(w));
                ("warning", o)
            }
            Event::Note(n) => {
                let mut o = serde_json::Map::new();
                o.insert("message".into(), json!(n));
                ("note", o)
            }
            Event::Lint(w) => {
                let mut o = serde_json::Map::new();
                o.insert("rule".into(), json!(w.rule));
                o.insert("description".into(), json!(w.description));
                o.insert("url".into(), json!(w.url));
                o.insert("detail".into(), json!(w.detail));
                o.insert("line".into(), json!(w.line));
                ("lint", o)
            }
            Event::Started(s) => {
                inner.steps.started(s);
                ("started", step_fields(s))
            }
            Event::Cached(s) => ("cached", step_fields(s)),
            Event::Output(s, line) => {
                let mut o = step_fields(s);
                o.insert("line".into(), json!(line.trim_end_matches(['\n', '\r'])));
                ("output", o)
            }
            Event::Finished(s, d) => {
                inner.steps.finished(s, d);
                let mut o = step_fields(s);
                o.insert("duration".into(), json!(d.as_secs_f64()));
                ("finished", o)
            }
            Event::Explain(s, reason) => {
                let mut o = step_fields(s);
                o.insert("reason".into(), json!(reason));
                ("explain", o)
            }
            Event::Failed(s, message) => {
                inner.steps.failed(s);
                let mut o = step_fields(s);
                o.insert("message".into(), json!(message));
                ("failed", o)
            }
        };
        o.insert("time".into(), json!(time));
        o.insert("event".into(), json!(kind));
        let line = format!("{}\n", Value::Object(o));
        emit(&mut inner.out, &line);
    }
}

impl ProgressSink for Json {
    /// Prints `{"event":"summary","time":...,"steps":[{"id":..,"duration":..,"status":..},..]}`.
    fn finish(&self) {
        let mut inner = lock(&self.inner);
        let mut o = serde_json::Map::new();
        o.insert("event".into(), json!("summary"));
        o.insert("time".into(), json!(self.start.elapsed().as_secs_f64()));
        o.insert("steps".into(), inner.steps.json());
        let line = format!("{}\n", Value::Object(o));
        emit(&mut inner.out, &line);
    }
    /// The steps that ran, as text (the JSON summary is printed by `finish`).
    fn summary(&self) -> String {
        lock(&self.inner).steps.summary()
    }
    fn as_progress(&self) -> &dyn Progress {
        self
    }
}

// ---------------------------------------------------------------------------------------------
// A live terminal display.

/// A spinner per running step (`[stage i/n] text`, its time, and its last output line,
/// dimmed), with the lines of steps that finished, failed or were cached printed above.
pub struct Tty {
    multi: MultiProgress,
    inner: Mutex<TtyState>,
}

struct TtyState {
    bars: HashMap<usize, Bar>,
    steps: Steps,
    /// Where lines go when the display is hidden (stderr is not a terminal).
    fallback: Writer,
}

struct Bar {
    bar: ProgressBar,
    has_output: bool,
}

const TEMPLATE: &str = "{spinner:.cyan} {elapsed:>4} {wide_msg}";
const TEMPLATE_OUTPUT: &str = "{spinner:.cyan} {elapsed:>4} {wide_msg}\n       {prefix:.dim}";
/// The width of what comes before the output line in [`TEMPLATE_OUTPUT`], and one more.
const OUTPUT_INDENT: usize = 8;

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("a valid template")
}

/// An output line made fit for one terminal line: the last thing drawn after a carriage
/// return, without escape sequences or control characters.
fn clean_line(line: &str) -> String {
    let line = line.trim_end_matches(['\n', '\r']);
    let line = line.rsplit('\r').find(|part| !part.trim().is_empty()).unwrap_or("");
    let line = console::strip_ansi_codes(line);
    line.chars().map(|c| if c == '\t' { ' ' } else { c }).filter(|c| !c.is_control()).collect()
}

impl Tty {
    /// Draws on stderr, or prints plain lines there when it is not a terminal.
    pub fn stderr() -> Self {
        Self::with_target(ProgressDrawTarget::stderr(), Box::new(io::stderr()))
    }

    /// Draws on `target`; when it is hidden, the lines that would be printed above the bars
    /// go to `fallback`.
    pub fn with_target(target: ProgressDrawTarget, fallback: Box<dyn Write + Send>) -> Self {
        Tty {
            multi: MultiProgress::with_draw_target(target),
            inner: Mutex::new(TtyState { bars: HashMap::new(), steps: Steps::default(), fallback }),
        }
    }

    /// Prints `text` (whole lines) above the bars.
    fn above(&self, state: &mut TtyState, text: &str) {
        if self.multi.is_hidden() {
            emit(&mut state.fallback, &format!("{text}\n"));
        } else {
            let _ = self.multi.println(text);
        }
    }

    fn remove_bar(&self, state: &mut TtyState, id: usize) {
        if let Some(b) = state.bars.remove(&id) {
            b.bar.finish_and_clear();
            self.multi.remove(&b.bar);
        }
    }
}

impl Progress for Tty {
    fn event(&self, event: Event<'_>) {
        let mut state = lock(&self.inner);
        let state = &mut *state;
        match event {
            Event::Warning(w) => {
                let line = style(format!("WARNING: {w}")).yellow().for_stderr().to_string();
                self.above(state, &line);
            }
            Event::Note(n) => self.above(state, n),
            Event::Lint(w) => state.steps.lint(w),
            Event::Started(s) => {
                state.steps.started(s);
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(bar_style(TEMPLATE));
                bar.set_message(format!("{} {}", tag(s), s.text));
                bar.enable_steady_tick(Duration::from_millis(100));
                state.bars.insert(s.id, Bar { bar, has_output: false });
            }
            Event::Cached(s) => {
                let line = format!("{} {} {}", style("CACHED").blue().for_stderr(), tag(s), s.text);
                self.above(state, &line);
            }
            Event::Output(s, line) => {
                if let Some(b) = state.bars.get_mut(&s.id) {
                    let width = console::Term::stderr().size().1 as usize;
                    let line = clean_line(line);
                    let line = console::truncate_str(&line, width.saturating_sub(OUTPUT_INDENT), "…");
                    if !b.has_output {
                        b.has_output = true;
                        b.bar.set_style(bar_style(TEMPLATE_OUTPUT));
                    }
                    b.bar.set_prefix(line.into_owned());
                }
            }
            Event::Finished(s, d) => {
                self.remove_bar(state, s.id);
                let line = if state.steps.finished(s, d) {
                    let time = style(format!("{:.1}s", d.as_secs_f64())).dim().for_stderr();
                    format!("{} {} {} {time}", style("✔").green().for_stderr(), tag(s), s.text)
                } else {
                    format!("{} {} {}", style("✔").green().for_stderr(), tag(s), s.text)
                };
                self.above(state, &line);
            }
            Event::Explain(s, reason) => {
                let line = style(format!("{} cache miss: {reason}", tag(s))).dim().for_stderr().to_string();
                self.above(state, &line);
            }
            Event::Failed(s, message) => {
                self.remove_bar(state, s.id);
                let d = state.steps.failed(s);
                let mut text = format!(
                    "{} {} {} {}",
                    style("✘").red().for_stderr(),
                    tag(s),
                    s.text,
                    style(format!("{:.1}s", d.as_secs_f64())).dim().for_stderr()
                );
                for (i, line) in message.trim_end().lines().enumerate() {
                    let line = if i == 0 { format!("ERROR: {line}") } else { line.to_string() };
                    let _ = write!(text, "\n  {}", style(line).red().for_stderr());
                }
                self.above(state, &text);
            }
        }
    }
}

impl ProgressSink for Tty {
    /// Clears the bars still running and prints the summary.
    fn finish(&self) {
        let summary = self.summary();
        let mut state = lock(&self.inner);
        let ids: Vec<usize> = state.bars.keys().copied().collect();
        for id in ids {
            self.remove_bar(&mut state, id);
        }
        if !summary.is_empty() {
            self.above(&mut state, summary.trim_end());
        }
    }
    fn summary(&self) -> String {
        lock(&self.inner).steps.summary()
    }
    fn as_progress(&self) -> &dyn Progress {
        self
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).unwrap()
        }
    }

    fn step(id: usize, stage: &str, index: usize, total: usize, text: &str) -> StepName {
        StepName { id, stage: stage.into(), index, total, text: text.into() }
    }

    /// A small build: a FROM, a cached step, a step with output and explanation, and a
    /// failure, with a warning first.
    fn feed(p: &dyn Progress) {
        let from = step(0, "stage-0", 1, 4, "FROM alpine");
        let cached = step(1, "stage-0", 2, 4, "RUN echo before");
        let run = step(2, "stage-0", 3, 4, "RUN make");
        let bad = step(3, "stage-0", 4, 4, "RUN false");
        p.event(Event::Warning("empty continuation line"));
        p.event(Event::Finished(&from, Duration::from_millis(3)));
        p.event(Event::Cached(&cached));
        p.event(Event::Explain(&run, "the context changed"));
        p.event(Event::Started(&run));
        p.event(Event::Output(&run, "one"));
        p.event(Event::Output(&run, "two\n"));
        p.event(Event::Finished(&run, Duration::from_millis(1234)));
        p.event(Event::Started(&bad));
        p.event(Event::Failed(&bad, "exit status 1"));
    }

    #[test]
    fn plain_lines() {
        let buf = Buf::default();
        let p = Plain::to_writer(Box::new(buf.clone()));
        feed(&p);
        assert_eq!(
            buf.text(),
            "WARNING: empty continuation line\n\
             [stage-0 1/4] FROM alpine\n\
             CACHED [stage-0 2/4] RUN echo before\n\
             [stage-0 3/4] cache miss: the context changed\n\
             [stage-0 3/4] RUN make\n\
             [stage-0 3/4] | one\n\
             [stage-0 3/4] | two\n\
             [stage-0 3/4] DONE 1.23s\n\
             [stage-0 4/4] RUN false\n\
             [stage-0 4/4] ERROR: exit status 1\n"
        );
        let summary = p.summary();
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines.len(), 2, "{summary}");
        assert_eq!(lines[0], "  1.23s [stage-0 3/4] RUN make");
        assert!(lines[1].ends_with("s [stage-0 4/4] RUN false (failed)"), "{summary}");
        p.finish();
        assert!(buf.text().ends_with(&summary));
    }

    #[test]
    fn summary_in_id_order() {
        let buf = Buf::default();
        let p = Plain::to_writer(Box::new(buf.clone()));
        let a = step(1, "builder", 4, 4, "RUN make");
        let b = step(2, "final", 2, 3, "COPY --from=builder /out /");
        let c = step(3, "other", 2, 2, "RUN sleep 100");
        // Started and finished out of id order; a cached step and a FROM do not count.
        p.event(Event::Started(&c));
        p.event(Event::Started(&b));
        p.event(Event::Started(&a));
        p.event(Event::Cached(&step(4, "final", 3, 3, "RUN true")));
        p.event(Event::Finished(&step(5, "x", 1, 2, "FROM y"), Duration::ZERO));
        p.event(Event::Finished(&b, Duration::from_millis(50)));
        p.event(Event::Finished(&a, Duration::from_secs_f64(12.345)));
        assert_eq!(
            p.summary().lines().map(|l| l.split_once('s').unwrap().1).collect::<Vec<_>>(),
            [
                " [builder 4/4] RUN make",
                " [final 2/3] COPY --from=builder /out /",
                " [other 2/2] RUN sleep 100 (unfinished)"
            ]
        );
        assert!(
            p.summary().starts_with(" 12.35s [builder 4/4] RUN make\n  0.05s [final 2/3]"),
            "{}",
            p.summary()
        );
    }

    /// Runs two threads that each send many output lines for their own step.
    fn interleave(p: &(dyn Progress + Sync)) {
        std::thread::scope(|scope| {
            for (id, stage) in [(10, "builder"), (11, "tests")] {
                scope.spawn(move || {
                    let s = step(id, stage, 2, 3, "RUN make");
                    p.event(Event::Started(&s));
                    for i in 0..500 {
                        p.event(Event::Output(&s, &format!("line {i} of {stage} {}", "x".repeat(200))));
                    }
                    p.event(Event::Finished(&s, Duration::from_millis(10)));
                });
            }
        });
    }

    #[test]
    fn plain_lines_from_threads_are_whole() {
        let buf = Buf::default();
        let p = Plain::to_writer(Box::new(buf.clone()));
        interleave(&p);
        let text = buf.text();
        let mut next = HashMap::new();
        for line in text.lines() {
            let (step, rest) = line.split_once("] ").unwrap();
            let stage = step.trim_start_matches('[').split(' ').next().unwrap();
            if let Some(out) = rest.strip_prefix("| ") {
                let n = next.entry(stage.to_string()).or_insert(0);
                assert_eq!(out, format!("line {n} of {stage} {}", "x".repeat(200)));
                *n += 1;
            } else {
                assert!(rest == "RUN make" || rest == "DONE 0.01s", "{line}");
            }
        }
        assert_eq!(next.get("builder"), Some(&500));
        assert_eq!(next.get("tests"), Some(&500));
    }

    fn parse(text: &str) -> Vec<Value> {
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    #[test]
    fn json_lines() {
        let buf = Buf::default();
        let p = Json::to_writer(Box::new(buf.clone()));
        feed(&p);
        p.event(Event::Output(&step(9, "s", 2, 2, "RUN x"), "quote \" and \\ and \u{1}"));
        p.finish();
        let events = parse(&buf.text());
        let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "warning", "finished", "cached", "explain", "started", "output", "output", "finished",
                "started", "failed", "output", "summary"
            ]
        );
        let mut last = 0.0;
        for e in &events {
            let t = e["time"].as_f64().unwrap();
            assert!(t >= last, "time went back: {e}");
            last = t;
        }
        let mut started = events[4].clone();
        started.as_object_mut().unwrap().remove("time");
        assert_eq!(
            started,
            json!({"event": "started", "id": 2, "stage": "stage-0", "index": 3, "total": 4, "text": "RUN make"})
        );
        assert_eq!(events[0]["message"], "empty continuation line");
        assert_eq!(events[3]["reason"], "the context changed");
        assert_eq!(events[6]["line"], "two");
        assert_eq!(events[7]["duration"], 1.234);
        assert_eq!(events[9]["message"], "exit status 1");
        assert_eq!(events[10]["line"], "quote \" and \\ and \u{1}");
        let steps = events[11]["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0]["id"], 2);
        assert_eq!(steps[0]["duration"], 1.234);
        assert_eq!(steps[0]["status"], "done");
        assert_eq!(steps[1]["id"], 3);
        assert_eq!(steps[1]["status"], "failed");
    }

    #[test]
    fn json_lines_from_threads_parse_in_time_order() {
        let buf = Buf::default();
        let p = Json::to_writer(Box::new(buf.clone()));
        interleave(&p);
        let events = parse(&buf.text());
        assert_eq!(events.len(), 2 * 502);
        let times: Vec<f64> = events.iter().map(|e| e["time"].as_f64().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn tty_hidden_prints_lines_to_fallback() {
        let buf = Buf::default();
        let p = Tty::with_target(ProgressDrawTarget::hidden(), Box::new(buf.clone()));
        feed(&p);
        // A step still running at the end, with a long output line with escapes.
        let late = step(7, "late", 2, 2, "RUN sleep 1");
        p.event(Event::Started(&late));
        p.event(Event::Output(
            &late,
            &format!("\x1b[1mprogress 10%\rprogress 100%\t{}\x1b[0m", "y".repeat(500)),
        ));
        p.event(Event::Output(&step(8, "gone", 2, 2, "RUN x"), "a step that never started"));
        interleave(&p);
        p.finish();
        let text = console::strip_ansi_codes(&buf.text()).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..7],
            [
                "WARNING: empty continuation line",
                "✔ [stage-0 1/4] FROM alpine",
                "CACHED [stage-0 2/4] RUN echo before",
                "[stage-0 3/4] cache miss: the context changed",
                "✔ [stage-0 3/4] RUN make 1.2s",
                "✘ [stage-0 4/4] RUN false 0.0s",
                "  ERROR: exit status 1",
            ]
        );
        assert!(text.contains("✔ [builder 2/3] RUN make 0.0s\n"), "{text}");
        assert!(text.contains("  1.23s [stage-0 3/4] RUN make\n"), "{text}");
        assert!(text.contains("s [late 2/2] RUN sleep 1 (unfinished)\n"), "{text}");
        assert!(lock(&p.inner).bars.is_empty());
    }

    #[test]
    fn tty_bars_follow_steps() {
        let p = Tty::with_target(ProgressDrawTarget::hidden(), Box::new(io::sink()));
        let s = step(1, "builder", 2, 3, "RUN make");
        p.event(Event::Started(&s));
        p.event(Event::Output(&s, "compiling\tfoo\r\n"));
        {
            let state = lock(&p.inner);
            let bar = &state.bars[&1];
            assert!(bar.has_output);
            assert_eq!(bar.bar.message(), "[builder 2/3] RUN make");
            assert_eq!(bar.bar.prefix(), "compiling foo");
        }
        p.event(Event::Finished(&s, Duration::from_millis(5)));
        assert!(lock(&p.inner).bars.is_empty());
    }

    #[test]
    fn clean_line_keeps_the_last_redraw() {
        assert_eq!(clean_line("50%\r100%\r"), "100%");
        assert_eq!(clean_line("\x1b[31mred\x1b[0m\ttab\u{7}"), "red tab");
        assert_eq!(clean_line(""), "");
    }

    #[test]
    fn quiet_shows_nothing() {
        let p = for_mode(Mode::Plain, true);
        feed(p.as_progress());
        assert_eq!(p.summary(), "");
        p.finish();
    }
}
