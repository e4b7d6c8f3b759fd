//! Writing a session as a transcript, secrets redacted.

use std::io::Write;

use crate::at::TraceEvent;
use crate::at::session::RxClass;

/// Writes trace events in the transcript format.
pub struct TranscriptWriter<W: Write> {
    out: W,
}

impl<W: Write> TranscriptWriter<W> {
    /// Starts a transcript with its header lines.
    pub fn new(mut out: W, header: &[String]) -> std::io::Result<Self> {
        for h in header {
            writeln!(out, "# {h}")?;
        }
        Ok(TranscriptWriter { out })
    }

    /// Appends one event.
    pub fn write(&mut self, event: &TraceEvent) -> std::io::Result<()> {
        match event {
            TraceEvent::Tx {
                at,
                text,
                len,
                secret,
                ..
            } => {
                writeln!(self.out, "#t={:.6}", at.as_secs_f64())?;
                if *secret {
                    writeln!(self.out, ">> <{len} bytes, secret, not shown>")?;
                } else {
                    writeln!(self.out, ">> {text}")?;
                }
            }
            TraceEvent::Rx {
                text,
                class,
                secret,
                ..
            } => {
                let marker = if *class == RxClass::Unsolicited {
                    "~~"
                } else {
                    "<<"
                };
                if *secret {
                    writeln!(
                        self.out,
                        "{marker} <{} characters, secret, not shown>",
                        text.len()
                    )?;
                } else {
                    writeln!(self.out, "{marker} {text}")?;
                }
            }
            TraceEvent::Note { text, .. } => writeln!(self.out, "# atprov: {text}")?,
            TraceEvent::Done { .. } => {}
        }
        self.out.flush()
    }
}
