//! Progress on stderr: an `indicatif` line per stage on a terminal (a spinner with the current
//! step, then a tick or a cross and a summary), plain lines otherwise (logs, CI, pipes); and the
//! factory's operator board, one line per station, with the JSON-lines event stream beside it.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::factory::events::{Event, JsonLines, Observer};
use crate::provision::{Progress, Stage};

pub struct Bars {
    multi: Option<MultiProgress>,
    current: Option<ProgressBar>,
    started: Instant,
}

impl Bars {
    pub fn new() -> Bars {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Bars {
            multi,
            current: None,
            started: Instant::now(),
        }
    }
}

impl Progress for Bars {
    fn stage(&mut self, stage: Stage) {
        self.started = Instant::now();
        if let Some(multi) = &self.multi {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {prefix:9.bold} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(stage.name());
            bar.enable_steady_tick(Duration::from_millis(100));
            self.current = Some(bar);
        }
    }

    fn step(&mut self, text: &str) {
        if let Some(bar) = &self.current {
            bar.set_message(text.to_string());
        }
    }

    fn done(&mut self, stage: Stage, ok: bool, summary: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        match self.current.take() {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix:9.bold} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(format!("{} {}", if ok { "✓" } else { "✗" }, stage.name()));
                let text = if ok {
                    format!("{summary} ({secs:.1} s)")
                } else {
                    String::new()
                };
                bar.finish_with_message(text);
            }
            // The failure itself is the command's last line; do not say it twice.
            None if ok => eprintln!("ok   {:<9} {summary} ({secs:.1} s)", stage.name()),
            None => eprintln!("FAIL {}", stage.name()),
        }
    }
}

/// The factory's operator view: one spinner line per station on a terminal (plain lines on
/// stderr otherwise), and the events as JSON lines when asked for.
pub struct Board {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    events: Option<JsonLines>,
}

impl Board {
    pub fn new(events: Option<JsonLines>) -> Board {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Board {
            multi,
            bars: Mutex::new(HashMap::new()),
            events,
        }
    }

    fn bar(&self, station: &str) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        let bar = bars.entry(station.to_string()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {prefix:8.bold} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(station.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Some(bar.clone())
    }
}

impl Observer for Board {
    fn event(&self, station: &str, event: &Event) {
        if let Some(e) = &self.events {
            e.write(station, event);
        }
    }

    fn status(&self, station: &str, text: &str) {
        if let Some(bar) = self.bar(station) {
            bar.set_message(text.to_string());
        }
    }

    fn say(&self, station: &str, text: &str) {
        let line = if station.is_empty() {
            text.to_string()
        } else {
            format!("{station:8} {text}")
        };
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self, station: &str, text: &str) {
        if let Some(bar) = self.bar(station) {
            bar.finish_with_message(text.to_string());
        }
    }
}
