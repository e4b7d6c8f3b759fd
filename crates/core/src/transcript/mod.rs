//! Transcript files: the format of `shared/transcripts` (`DESIGN.md`), which atprov both replays
//! and writes.
//!
//! ```text
//! # a header or comment line
//! >> AT+GMR                  a line the host sent (no CR/LF shown)
//! << AT version:...          a line the device sent
//! <<                         an empty device line
//! ~~ +QMTSTAT: 0,1           a device line that was clearly unsolicited
//! ```
//!
//! atprov writes timestamps as comment lines `#t=<seconds since the session began>` before each
//! host line, so any reader of the format can skip them, and says what its engine did on its
//! own in `# atprov: ...` comments: a host line right after `# atprov: sending sentinel`,
//! `... filler bytes ...` or `... ESC ...` was the engine's, not the caller's.

pub mod replay;
mod writer;

pub use writer::TranscriptWriter;

use std::path::Path;

/// One record of a transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `>> line`: bytes the host sent.
    Host {
        /// The line.
        line: String,
        /// Its line number in the file.
        lineno: usize,
        /// The engine sent it on its own (a resync sentinel, filler, ESC), as the comment
        /// before it says.
        sentinel: bool,
    },
    /// `<< line` or `~~ line`: a line the device sent.
    Device {
        /// The line.
        line: String,
        /// Marked `~~`: unsolicited.
        unsolicited: bool,
        /// Its line number in the file.
        lineno: usize,
    },
}

/// A parsed transcript.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    /// The `#` lines, without the `#`.
    pub header: Vec<String>,
    /// The records, in order.
    pub entries: Vec<Entry>,
}

/// A syntax error, with the place it was found.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    /// The file.
    pub file: String,
    /// The line (0 when the whole file is at fault).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Transcript {
    /// Reads and parses a transcript file.
    pub fn load(path: &Path) -> Result<Transcript, ParseError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ParseError {
            file: file.clone(),
            line: 0,
            message: format!("cannot read the transcript: {e}"),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            ParseError {
                file: file.clone(),
                line: upto.iter().filter(|&&b| b == b'\n').count() + 1,
                message: "the transcript is not UTF-8 text".into(),
            }
        })?;
        Transcript::parse(&text, &file)
    }

    /// Parses transcript text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Transcript, ParseError> {
        let mut t = Transcript::default();
        let mut engine_own = false;
        for (i, raw) in text.lines().enumerate() {
            let lineno = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if let Some(h) = line.strip_prefix('#') {
                let h = h.trim_start();
                if let Some(note) = h.strip_prefix("atprov: ") {
                    engine_own = note.starts_with("sending sentinel")
                        || note.contains("filler bytes")
                        || note.contains("sending ESC");
                }
                t.header.push(h.to_string());
                continue;
            }
            let sentinel = std::mem::take(&mut engine_own);
            if line.trim().is_empty() {
                continue;
            } else if let Some(rest) = line.strip_prefix(">>") {
                let Some(cmd) = rest.strip_prefix(' ').filter(|c| !c.is_empty()) else {
                    return Err(ParseError {
                        file: file.into(),
                        line: lineno,
                        message: "`>>` must be followed by a space and the line the host sent"
                            .into(),
                    });
                };
                t.entries.push(Entry::Host {
                    line: cmd.to_string(),
                    lineno,
                    sentinel,
                });
            } else if let Some(rest) = line.strip_prefix("<<") {
                let text = match rest {
                    "" => String::new(),
                    r => match r.strip_prefix(' ') {
                        Some(s) => s.to_string(),
                        None => {
                            return Err(ParseError {
                                file: file.into(),
                                line: lineno,
                                message: "`<<` must be followed by a space or nothing".into(),
                            });
                        }
                    },
                };
                t.entries.push(Entry::Device {
                    line: text,
                    unsolicited: false,
                    lineno,
                });
            } else if let Some(rest) = line.strip_prefix("~~") {
                t.entries.push(Entry::Device {
                    line: rest.strip_prefix(' ').unwrap_or(rest).to_string(),
                    unsolicited: true,
                    lineno,
                });
            } else {
                let shown: String = line.chars().take(40).collect();
                return Err(ParseError {
                    file: file.into(),
                    line: lineno,
                    message: format!(
                        "`{shown}` is not a transcript line: start it with `>> ` (host), `<< ` (device), `~~ ` (unsolicited) or `#` (comment)"
                    ),
                });
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let t = Transcript::parse("# h\n>> AT\n<<\n<< OK\n~~ RDY\n", "x").unwrap();
        assert_eq!(t.header, vec!["h"]);
        assert_eq!(t.entries.len(), 4);
        assert_eq!(
            t.entries[1],
            Entry::Device {
                line: String::new(),
                unsolicited: false,
                lineno: 3
            }
        );
        let e = Transcript::parse(">> AT\nOK\n", "f.txt").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("f.txt", 2));
        assert!(e.to_string().starts_with("f.txt:2: "));
        assert!(Transcript::parse(">>AT\n", "f").is_err());
        assert!(Transcript::parse("<<OK\n", "f").is_err());
    }
}
