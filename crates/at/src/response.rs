//! What running a command produced: its final result and everything that belonged to it, and
//! the unsolicited messages that arrived meanwhile.

use std::time::Duration;

use super::classify::FinalCode;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// A success final (and the completing URC, when the command has one).
    Ok,
    /// An error final.
    Error {
        /// Which error final.
        code: FinalCode,
    },
    /// No answer in time; the session is dirty until resynchronised.
    Timeout {
        /// Which wait ran out.
        phase: Phase,
    },
    /// The module rebooted (`ready`, `RDY`) before the command finished.
    Reset,
    /// The module kept answering `busy p...` after every retry (or, to a command sent while
    /// the previous one had not finished, rejected it once).
    Busy,
    /// The module answered a prompt (`>`) the command did not expect: it wants data the caller
    /// did not give. The engine cancels the data phase before the next command.
    WantsData,
}

impl Status {
    /// The status as one word, for reports and JSON: `ok`, `error`, `timeout`, `reset`,
    /// `busy`, `wants_data`.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error { .. } => "error",
            Status::Timeout { .. } => "timeout",
            Status::Reset => "reset",
            Status::Busy => "busy",
            Status::WantsData => "wants_data",
        }
    }
}

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the prompt before the payload.
    Prompt,
    /// Waiting for the final result.
    Final,
    /// Waiting for the URC that completes the command after its `OK`.
    Completion,
    /// Waiting for the module to come back after a command that restarts it.
    Reboot,
}

/// A counted payload as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The header line (`+SYSFLASH:8,`).
    pub header: String,
    /// The payload bytes, exactly as counted.
    pub data: Vec<u8>,
}

/// A line that belongs to no command: a documented URC, or an unknown line (reported, never
/// dropped).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Urc {
    /// The line as shown, counted payloads rendered inline and escaped.
    pub line: String,
    /// The raw bytes of a counted payload carried by the URC.
    #[serde(skip)]
    pub payload: Option<Vec<u8>>,
    /// Whether the line is a documented unsolicited message of one of the families.
    pub known: bool,
    /// The command that was in flight when it arrived, if any.
    pub during: Option<String>,
}

/// Everything that belonged to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The command as shown (redacted when it carries a secret).
    pub command: String,
    /// The device echoed the command line.
    pub echo: bool,
    /// Information lines, in order (counted payloads rendered escaped).
    pub info: Vec<String>,
    /// Counted payloads that belong to the command, raw.
    pub payloads: Vec<Payload>,
    /// The prompt seen, if any.
    pub prompt: Option<String>,
    /// The final line, if one came.
    pub final_line: Option<String>,
    /// How it ended.
    pub status: Status,
    /// Lines explaining an error (`ERR CODE:0x...`, `+CWJAP:1`), also kept in `info`.
    pub details: Vec<String>,
    /// URCs that arrived while the command was in flight (also delivered to subscribers).
    pub urcs: Vec<Urc>,
    /// The URC that completed the command after its `OK`.
    pub completion: Option<String>,
    /// `busy p...` rejections before the command was accepted.
    pub busy_retries: u32,
    /// From sending the command to its end.
    pub elapsed: Duration,
}

impl Response {
    /// Whether the command succeeded.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// The first info line starting with `prefix`, with the prefix and spaces removed.
    pub fn value(&self, prefix: &str) -> Option<&str> {
        self.info
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim_start)
    }

    /// One line saying how the command ended, for error messages.
    pub fn summary(&self) -> String {
        let detail = if self.details.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.details.join("; "))
        };
        match &self.status {
            Status::Ok => format!(
                "{}: {}",
                self.command,
                self.final_line.as_deref().unwrap_or("OK")
            ),
            Status::Error { .. } => format!(
                "{}: {}{detail}",
                self.command,
                self.final_line.as_deref().unwrap_or("ERROR")
            ),
            Status::Timeout { phase } => {
                let what = match phase {
                    Phase::Prompt => "no prompt",
                    Phase::Final => "no answer",
                    Phase::Completion => "no completing message",
                    Phase::Reboot => "the module did not come back after restarting",
                };
                format!("{}: {what} within {:.1?}", self.command, self.elapsed)
            }
            Status::Reset => format!("{}: the module reset before answering", self.command),
            Status::Busy => format!(
                "{}: the module stayed busy (`busy p...` {} times)",
                self.command, self.busy_retries
            ),
            Status::WantsData => format!(
                "{}: the module wants data (it answered `{}`), but none was given: declare a payload (send --data/--payload, or the step's `payload`)",
                self.command,
                self.prompt.as_deref().unwrap_or(">")
            ),
        }
    }
}
