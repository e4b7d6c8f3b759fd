//! What the factory tells the world: typed [`Event`]s for the MES (written as JSON lines by
//! [`JsonLines`]) and the operator's per-station lines, both through an [`Observer`] the
//! application provides (the command line draws spinners; tests read JSON). Events carry no
//! secret: thing names, fingerprints, identities, stage names and reasons only.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::journal::{PoolStatus, UnitIdentity};
use crate::provision::{Progress, Stage};

/// One thing that happened on the line. Serialised as `{"event": "<kind>", ...fields}`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The line started.
    FactoryStarted {
        /// `atprov <version>`.
        tool: String,
        /// The device profile every unit gets.
        profile: String,
        /// Station names.
        stations: Vec<String>,
        /// Pool counts at start.
        pool: PoolStatus,
        /// Distinct units that passed before this run.
        units_passed: u64,
        /// Attempts left running by the last stop.
        interrupted_attempts: u64,
    },
    /// A station waits for a unit.
    Waiting {
        /// The station's port.
        port: String,
    },
    /// A unit appeared on a station's port.
    UnitDetected {
        /// The journal's attempt number.
        attempt: i64,
        /// The port it is on.
        port: String,
    },
    /// Identify named the unit.
    UnitIdentified {
        /// The journal's attempt number.
        attempt: i64,
        /// How the unit is shown (its unit id, else its identity key).
        unit: String,
        /// Everything identify saw.
        identity: UnitIdentity,
    },
    /// The journal gave the unit its credential.
    CredentialAllocated {
        /// The journal's attempt number.
        attempt: i64,
        /// How the unit is shown.
        unit: String,
        /// The credential's thing name.
        thing_name: String,
        /// SHA-256 of its certificate.
        cert_sha256: String,
        /// The unit held this credential before.
        again: bool,
        /// How long the station waited for the journal's allocation, in microseconds.
        allocate_us: u64,
    },
    /// A stage of a unit began.
    StageStarted {
        /// How the unit is shown.
        unit: String,
        /// The stage.
        stage: Stage,
    },
    /// A stage of a unit ended.
    StageDone {
        /// How the unit is shown.
        unit: String,
        /// The stage.
        stage: Stage,
        /// Whether it succeeded.
        ok: bool,
        /// How long it took.
        ms: u64,
        /// One short line.
        summary: String,
    },
    /// A unit passed.
    UnitPassed(Verdict),
    /// A unit failed.
    UnitFailed(Verdict),
    /// Attempts of another line (a PC whose factory stopped renewing its lease: it died)
    /// were marked interrupted while this line runs.
    AttemptsInterrupted {
        /// How many.
        attempts: u64,
    },
    /// The journal's database went out of reach: every station waits at its next journal
    /// step until it is back.
    JournalUnreachable {
        /// The one line the operator reads.
        message: String,
    },
    /// The journal's database is back; the stations go on.
    JournalReachable {
        /// The one line the operator reads.
        message: String,
    },
    /// The line stopped.
    FactoryStopped {
        /// Units finished in this run.
        units_this_run: u64,
        /// Distinct units that passed, all runs.
        units_passed: u64,
        /// Pool counts at the end.
        pool: PoolStatus,
    },
}

/// How a unit ended.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The journal's attempt number.
    pub attempt: i64,
    /// How the unit is shown.
    pub unit: String,
    /// Everything identify saw, when it got that far.
    pub identity: Option<UnitIdentity>,
    /// The credential's thing name, when one was allocated.
    pub thing_name: Option<String>,
    /// SHA-256 of its certificate.
    pub cert_sha256: Option<String>,
    /// The unit held this credential before.
    pub again: Option<bool>,
    /// The exit code the failure maps to (0 for a pass).
    pub exit_code: u8,
    /// The one line saying what went wrong.
    pub reason: Option<String>,
    /// How long the unit took.
    pub ms: u64,
}

/// Hears what the line does: events, and the operator's lines per station.
pub trait Observer: Send + Sync {
    /// An event; `station` is empty for the line's own events.
    fn event(&self, station: &str, event: &Event);
    /// What a station is doing now (a transient status line).
    fn status(&self, station: &str, text: &str);
    /// A line that stays: a verdict, a station problem, a note (`station` may be empty).
    fn say(&self, station: &str, text: &str);
    /// The station stopped.
    fn finish(&self, station: &str, text: &str);
}

/// An observer that also writes every event into the journal's `events` table (the MES
/// hand-off), then passes everything on to `inner`. The table is written by a thread of its
/// own, in order: a station never waits for it, and a journal server that went away holds up
/// the events, not the line.
pub struct JournalEvents {
    inner: std::sync::Arc<dyn Observer>,
    queue: std::sync::mpsc::Sender<Queued>,
    /// Events queued and not yet written.
    pending: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// What the writer thread is given: an event to write, or a request to say when every event
/// before it is written.
enum Queued {
    Event {
        at: String,
        station: String,
        name: String,
        json: String,
    },
    Flushed(std::sync::mpsc::Sender<()>),
}

impl JournalEvents {
    /// Passes events on to `inner` and writes them into `journal`'s events table.
    pub fn new(
        inner: std::sync::Arc<dyn Observer>,
        journal: std::sync::Arc<dyn crate::factory::journal::Journal>,
    ) -> JournalEvents {
        let (queue, queued) = std::sync::mpsc::channel::<Queued>();
        let pending: std::sync::Arc<std::sync::atomic::AtomicUsize> = Default::default();
        let written = pending.clone();
        let writer = std::thread::Builder::new()
            .name("events-table".into())
            .spawn(move || {
                for q in queued {
                    match q {
                        Queued::Event {
                            at,
                            station,
                            name,
                            json,
                        } => {
                            if let Err(e) = journal.record_event(&at, &station, &name, &json) {
                                tracing::error!("events table: {e}");
                            }
                            written.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Queued::Flushed(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
        if let Err(e) = writer {
            // Without a writer the queue is dropped: every event is still shown and sent.
            tracing::error!("events table: cannot start its writer: {e}");
        }
        JournalEvents {
            inner,
            queue,
            pending,
        }
    }

    /// Waits until every event so far is in the table, for `within` at most (blocking);
    /// says how many were not written when the journal did not take them in time.
    pub fn flush(&self, within: std::time::Duration) {
        let (done, wait) = std::sync::mpsc::channel();
        let sent = self.queue.send(Queued::Flushed(done));
        if sent.is_err() || wait.recv_timeout(within).is_err() {
            let left = self.pending.load(std::sync::atomic::Ordering::SeqCst);
            if left > 0 {
                tracing::error!(
                    "events table: {left} event(s) not written: the journal did not take them within {} s",
                    within.as_secs()
                );
            }
        }
    }
}

impl Observer for JournalEvents {
    fn event(&self, station: &str, event: &Event) {
        let json = serde_json::to_value(event).unwrap_or_default();
        let name = json["event"].as_str().unwrap_or("event").to_string();
        self.pending
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = self.queue.send(Queued::Event {
            at: crate::factory::utc_millis(),
            station: station.to_string(),
            name,
            json: json.to_string(),
        });
        self.inner.event(station, event);
    }
    fn status(&self, station: &str, text: &str) {
        self.inner.status(station, text);
    }
    fn say(&self, station: &str, text: &str) {
        self.inner.say(station, text);
    }
    fn finish(&self, station: &str, text: &str) {
        self.inner.finish(station, text);
    }
}

/// An observer that ignores everything.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&self, _: &str, _: &Event) {}
    fn status(&self, _: &str, _: &str) {}
    fn say(&self, _: &str, _: &str) {}
    fn finish(&self, _: &str, _: &str) {}
}

/// Events as JSON lines: `{"t": now, "event": kind, "station": name, ...fields}`, each line
/// flushed at once. A write error turns the stream off with one error log.
pub struct JsonLines {
    out: Mutex<Option<Box<dyn Write + Send>>>,
}

#[derive(Serialize)]
struct Line<'a> {
    t: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    station: &'a str,
    #[serde(flatten)]
    event: &'a Event,
}

impl JsonLines {
    /// Events written to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> JsonLines {
        JsonLines {
            out: Mutex::new(Some(out)),
        }
    }

    /// Writes one event.
    pub fn write(&self, station: &str, event: &Event) {
        let mut guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let Some(out) = guard.as_mut() else {
            return;
        };
        let line = Line {
            t: crate::factory::utc_millis(),
            station,
            event,
        };
        let text = match serde_json::to_string(&line) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("events: {e}");
                return;
            }
        };
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            tracing::error!("events: cannot write; events are off from now on");
            *guard = None;
        }
    }
}

/// Stage progress of one unit: the station's status line and stage events.
pub struct UnitProgress<'a> {
    /// The station.
    pub station: &'a str,
    /// Where progress goes.
    pub observer: &'a dyn Observer,
    /// How the unit is shown.
    pub unit: String,
    /// When the current stage began.
    pub started: Instant,
}

impl Progress for UnitProgress<'_> {
    fn stage(&mut self, stage: Stage) {
        self.started = Instant::now();
        self.observer.status(
            self.station,
            &format!("unit {}: {}", self.unit, stage.name()),
        );
        self.observer.event(
            self.station,
            &Event::StageStarted {
                unit: self.unit.clone(),
                stage,
            },
        );
    }

    fn step(&mut self, text: &str) {
        self.observer
            .status(self.station, &format!("unit {}: {text}", self.unit));
    }

    fn done(&mut self, stage: Stage, ok: bool, summary: &str) {
        self.observer.event(
            self.station,
            &Event::StageDone {
                unit: self.unit.clone(),
                stage,
                ok,
                ms: self.started.elapsed().as_millis() as u64,
                summary: summary.to_string(),
            },
        );
    }
}
