//! What the factory tells the world: JSON-lines events for the factory's MES (`--events FILE`
//! or `-` for stdout), and one line per station for the operator (an `indicatif` spinner on a
//! terminal, plain lines on stderr otherwise). Events carry no secret: thing names,
//! fingerprints, identities, stage names and reasons only.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::provision::{Progress, Stage};

/// The JSON-lines sink; each event is one line, flushed at once.
pub struct Events {
    out: Mutex<Option<Box<dyn Write + Send>>>,
}

impl Events {
    pub fn none() -> Events {
        Events {
            out: Mutex::new(None),
        }
    }

    /// `-` is stdout; anything else a file appended to.
    pub fn open(target: &str) -> Result<Events, String> {
        let out: Box<dyn Write + Send> = if target == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(target)
                    .map_err(|e| format!("--events {target}: cannot open it: {e}"))?,
            )
        };
        Ok(Events {
            out: Mutex::new(Some(out)),
        })
    }

    /// Writes `{"t": now, "event": kind, "station": station, ...fields}`.
    pub fn emit(&self, station: &str, kind: &str, fields: Value) {
        let mut guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let Some(out) = guard.as_mut() else {
            return;
        };
        let mut line = Map::new();
        line.insert("t".into(), json!(crate::util::utc_millis()));
        line.insert("event".into(), json!(kind));
        if !station.is_empty() {
            line.insert("station".into(), json!(station));
        }
        if let Value::Object(extra) = fields {
            line.extend(extra);
        }
        let text = Value::Object(line).to_string();
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            tracing::error!("events: cannot write; events are off from now on");
            *guard = None;
        }
    }
}

/// The operator's view: one line per station.
pub struct Board {
    multi: Option<MultiProgress>,
}

impl Board {
    pub fn new() -> Board {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Board { multi }
    }

    /// The line of one station.
    pub fn line(&self, station: &str) -> StationLine {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {prefix:8.bold} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(station.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        StationLine {
            station: station.to_string(),
            bar,
            multi: self.multi.clone(),
        }
    }
}

impl Default for Board {
    fn default() -> Self {
        Board::new()
    }
}

/// One station's line.
pub struct StationLine {
    station: String,
    bar: Option<ProgressBar>,
    multi: Option<MultiProgress>,
}

impl StationLine {
    /// What the station is doing now (the spinner's text; not printed without a terminal).
    pub fn status(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_string());
        }
    }

    /// A line that stays: a unit's verdict, a station problem.
    pub fn say(&self, text: &str) {
        let line = format!("{:8} {text}", self.station);
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(text.to_string());
        }
    }
}

/// Stage progress of one unit: the station line's text and stage events.
pub struct UnitProgress<'a> {
    pub line: &'a StationLine,
    pub events: &'a Events,
    pub unit: String,
    pub started: Instant,
}

impl Progress for UnitProgress<'_> {
    fn stage(&mut self, stage: Stage) {
        self.started = Instant::now();
        self.line
            .status(&format!("unit {}: {}", self.unit, stage.name()));
        self.events.emit(
            &self.line.station,
            "stage_started",
            json!({"unit": self.unit, "stage": stage.name()}),
        );
    }

    fn step(&mut self, text: &str) {
        self.line.status(&format!("unit {}: {text}", self.unit));
    }

    fn done(&mut self, stage: Stage, ok: bool, summary: &str) {
        self.events.emit(
            &self.line.station,
            "stage_done",
            json!({
                "unit": self.unit,
                "stage": stage.name(),
                "ok": ok,
                "ms": self.started.elapsed().as_millis() as u64,
                "summary": summary,
            }),
        );
    }
}
