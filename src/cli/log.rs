//! What reaches the terminal from logs. With `MISSIONCTL_LOG` set, exactly
//! what it asks for (an `EnvFilter`, e.g. `debug` or `sqlx=warn`). Without
//! it, a quiet terminal: missionctl's own warnings, one line each, the first
//! time each is seen (repeats are counted and summed up at exit); library
//! warnings (sqlx's slow statements and acquires, hyper, …) are only counted,
//! and summed up at exit in one line per library that says how to see them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Where warnings are written (stderr; a buffer in tests).
type Sink = Arc<Mutex<dyn std::io::Write + Send>>;

#[derive(Default)]
struct Tally {
    /// missionctl's own warnings: message -> times seen.
    own: BTreeMap<String, u64>,
    /// Other crates' warnings and errors: crate -> times seen.
    libraries: BTreeMap<String, u64>,
}

#[derive(Clone)]
pub struct Quiet {
    tally: Arc<Mutex<Tally>>,
    sink: Sink,
}

/// The event's message, its `error` field, and its other fields.
#[derive(Default)]
struct Line {
    message: String,
    error: String,
    rest: String,
}

impl Line {
    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            "error" => self.error = format!(" error={value}"),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }
}

impl<S: Subscriber> Layer<S> for Quiet {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let krate = meta.target().split("::").next().unwrap_or_default();
        let mut t = self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if krate != "missionctl" {
            *t.libraries.entry(krate.to_string()).or_default() += 1;
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        // Repeats are the same message with the same error; other fields
        // (counts, attempts) do not make a warning new.
        let text = format!("{}{}", line.message, line.error);
        let level = if *meta.level() == Level::ERROR {
            "error"
        } else {
            "warning"
        };
        if t.own.len() >= MAX_DISTINCT && !t.own.contains_key(&text) {
            // A daemon's warnings can differ forever (an error naming a
            // commit, a peer address): past this many, new ones are said
            // but not remembered, so memory stays bounded.
            drop(t);
            self.say(&format!("{level}: {text}{}", line.rest));
            return;
        }
        let n = t.own.entry(text.clone()).or_default();
        *n += 1;
        // The first time, then at 10, 100, 1000, …: a daemon that keeps
        // failing the same way stays visible without flooding the log.
        let mut p = *n;
        while p.is_multiple_of(10) && p > 0 {
            p /= 10;
        }
        if p == 1 {
            let times = if *n > 1 {
                format!(" ({n} times so far)")
            } else {
                String::new()
            };
            let rest = if *n == 1 { line.rest.as_str() } else { "" };
            let said = format!("{level}: {text}{rest}{times}");
            drop(t);
            self.say(&said);
        }
    }
}

/// Distinct warnings remembered for repeat counting.
const MAX_DISTINCT: usize = 1000;

impl Quiet {
    fn new(sink: Sink) -> Quiet {
        Quiet {
            tally: Arc::default(),
            sink,
        }
    }

    fn say(&self, line: &str) {
        let mut sink = self
            .sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(sink, "{line}");
    }

    /// One line per repeated warning and per library that warned.
    pub fn summary(&self) {
        let t = self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut sink = self
            .sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (msg, n) in t.own.iter().filter(|(_, n)| **n > 1) {
            let _ = writeln!(sink, "warning: {msg} ({n} times in all)");
        }
        for (krate, n) in &t.libraries {
            let _ = match krate.as_str() {
                "sqlx" => writeln!(
                    sink,
                    "warning: the state store was slow: {n} statement(s) or connection wait(s) passed sqlx's slow threshold; see MISSIONCTL_LOG=debug"
                ),
                other => writeln!(
                    sink,
                    "warning: {other} logged {n} warning(s); MISSIONCTL_LOG={other}=warn shows them"
                ),
            };
        }
    }
}

/// Install the subscriber. Returns the quiet layer, whose summary `main`
/// prints at exit, unless `MISSIONCTL_LOG` chose the output.
pub fn init() -> Option<Quiet> {
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("MISSIONCTL_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            // Colour only on a terminal: logs piped to files or journald stay plain.
            .with_ansi(ansi)
            .init();
        return None;
    }
    let quiet = Quiet::new(Arc::new(Mutex::new(std::io::stderr())));
    tracing_subscriber::registry()
        .with(quiet.clone().with_filter(LevelFilter::WARN))
        .init();
    Some(quiet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buf").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Run `f` with a quiet layer writing to a buffer; then `after` (e.g.
    /// the summary) on the layer; what was written, and the layer.
    fn captured(f: impl FnOnce(), after: impl FnOnce(&Quiet)) -> (String, Quiet) {
        let buf = Buf::default();
        let quiet = Quiet::new(Arc::new(Mutex::new(buf.clone())));
        let subscriber =
            tracing_subscriber::registry().with(quiet.clone().with_filter(LevelFilter::WARN));
        tracing::subscriber::with_default(subscriber, f);
        after(&quiet);
        let out = String::from_utf8(buf.0.lock().expect("buf").clone()).expect("utf-8");
        (out, quiet)
    }

    #[test]
    fn library_warnings_are_counted_and_own_warnings_said_once() {
        let (out, _) = captured(
            || {
                for _ in 0..214 {
                    tracing::warn!(target: "sqlx::query", elapsed = "6.6s", "slow statement");
                }
                tracing::warn!(target: "sqlx::pool::acquire", "acquired connection, but time to acquire exceeded slow threshold");
                tracing::warn!(target: "hyper::proto", "connection error");
                for _ in 0..12 {
                    tracing::warn!(target: "missionctl::eval::llm", error = "database is locked", "could not cache a model response");
                }
                tracing::warn!(target: "missionctl::eval::llm", error = "disk full", "could not cache a model response");
                tracing::info!(target: "missionctl::gate", "not shown");
                tracing::debug!(target: "sqlx::query", "not counted");
            },
            Quiet::summary,
        );
        assert_eq!(
            out,
            "warning: could not cache a model response error=database is locked\n\
             warning: could not cache a model response error=database is locked (10 times so far)\n\
             warning: could not cache a model response error=disk full\n\
             warning: could not cache a model response error=database is locked (12 times in all)\n\
             warning: hyper logged 1 warning(s); MISSIONCTL_LOG=hyper=warn shows them\n\
             warning: the state store was slow: 215 statement(s) or connection wait(s) passed sqlx's slow threshold; see MISSIONCTL_LOG=debug\n"
        );
    }

    /// Warnings that never repeat (each names another commit) are all said,
    /// and no more than `MAX_DISTINCT` of them are remembered.
    #[test]
    fn distinct_warnings_are_said_and_memory_stays_bounded() {
        let (out, quiet) = captured(
            || {
                for i in 0..MAX_DISTINCT + 5 {
                    tracing::warn!(target: "missionctl::reconcile", error = %i, "could not fetch");
                }
            },
            |_| {},
        );
        assert_eq!(out.lines().count(), MAX_DISTINCT + 5);
        assert!(
            out.ends_with(&format!("error={}\n", MAX_DISTINCT + 4)),
            "{out}"
        );
        assert_eq!(quiet.tally.lock().expect("tally").own.len(), MAX_DISTINCT);
    }
}
