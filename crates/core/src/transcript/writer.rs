//! Writing a session as a transcript, secrets redacted.

use std::io::Write;

use crate::at::TraceEvent;

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

    /// Appends one event: a `#t=<seconds>` line before each host line, then the event in
    /// the transcript notation ([`TraceEvent::notation`]).
    pub fn write(&mut self, event: &TraceEvent) -> std::io::Result<()> {
        if let TraceEvent::Tx { at, .. } = event {
            writeln!(self.out, "#t={:.6}", at.as_secs_f64())?;
        }
        if let Some(line) = event.notation() {
            writeln!(self.out, "{line}")?;
        }
        self.out.flush()
    }
}
