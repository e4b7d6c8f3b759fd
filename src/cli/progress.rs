//! Progress on stderr: an `indicatif` line per stage on a terminal (a spinner with the current
//! step, then a tick or a cross and a summary), plain lines otherwise (logs, CI, pipes).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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
