//! Errors: the exit-code table ([`Code`], checked against the README's table by a test), the
//! one-line [`Failure`] every job and command ends with, and the [`InputError`] of a file a
//! person wrote (`file:line:column: field: problem`). Which code each area's typed error maps
//! to is decided in one place, [`crate::exit`].

use std::fmt;

/// A documented exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 0: success.
    Ok,
    /// 1: a bug in atprov.
    Internal,
    /// 2: a bad command line or input file.
    Usage,
    /// 3: the port does not exist.
    PortNotFound,
    /// 4: another process holds the port.
    PortBusy,
    /// 5: no permission to open the port.
    PortPermission,
    /// 6: the module did not answer in time.
    NoAnswer,
    /// 7: the module answered with an error.
    AtError,
    /// 8: the port closed during the session.
    PortLost,
    /// 9: the module reset unexpectedly.
    ModuleReset,
    /// 10: the credentials are unusable.
    Credentials,
    /// 11: what was read back differs from what was written.
    VerifyMismatch,
    /// 12: network bring-up failed.
    Network,
    /// 13: the MQTT/TLS connection was refused or failed.
    Connect,
    /// 14: the smoke-test message did not come back.
    Smoke,
    /// 15: the factory journal cannot be opened or written.
    Journal,
    /// 16: an input file is missing or cannot be read.
    Unreadable,
    /// 130: stopped by Ctrl-C (the line says what state the unit was left in).
    Interrupted,
}

impl Code {
    /// Every code, in table order.
    pub const ALL: &[Code] = &[
        Code::Ok,
        Code::Internal,
        Code::Usage,
        Code::PortNotFound,
        Code::PortBusy,
        Code::PortPermission,
        Code::NoAnswer,
        Code::AtError,
        Code::PortLost,
        Code::ModuleReset,
        Code::Credentials,
        Code::VerifyMismatch,
        Code::Network,
        Code::Connect,
        Code::Smoke,
        Code::Journal,
        Code::Unreadable,
        Code::Interrupted,
    ];

    /// The process exit status.
    pub fn number(self) -> u8 {
        match self {
            Code::Ok => 0,
            Code::Internal => 1,
            Code::Usage => 2,
            Code::PortNotFound => 3,
            Code::PortBusy => 4,
            Code::PortPermission => 5,
            Code::NoAnswer => 6,
            Code::AtError => 7,
            Code::PortLost => 8,
            Code::ModuleReset => 9,
            Code::Credentials => 10,
            Code::VerifyMismatch => 11,
            Code::Network => 12,
            Code::Connect => 13,
            Code::Smoke => 14,
            Code::Journal => 15,
            Code::Unreadable => 16,
            Code::Interrupted => 130,
        }
    }

    /// What the code means, as the README's table says.
    pub fn meaning(self) -> &'static str {
        match self {
            Code::Ok => "success",
            Code::Internal => "internal error (a bug in atprov: please report it)",
            Code::Usage => {
                "bad command line or bad input file (transcript, profile, job, selector)"
            }
            Code::PortNotFound => "the port does not exist",
            Code::PortBusy => "the port is held by another process",
            Code::PortPermission => "no permission to open the port",
            Code::NoAnswer => "the module did not answer in time",
            Code::AtError => "the module answered with an error (ERROR, +CME ERROR, busy)",
            Code::PortLost => "the port closed during the session (unplugged?)",
            Code::ModuleReset => "the module reset unexpectedly",
            Code::Credentials => {
                "the credentials are unusable (pki check failed, or no certificate can be made from them)"
            }
            Code::VerifyMismatch => {
                "what was read back (or replayed) differs from what was written (or recorded)"
            }
            Code::Network => "network bring-up failed (Wi-Fi, cellular, time sync)",
            Code::Connect => "the MQTT/TLS connection was refused or failed",
            Code::Smoke => "the smoke-test message did not come back",
            Code::Journal => "the factory journal cannot be opened or written",
            Code::Unreadable => "an input file is missing or cannot be read",
            Code::Interrupted => {
                "stopped by Ctrl-C (the line says what state the unit was left in)"
            }
        }
    }
}

/// A failure: one line for the user and the exit code it maps to.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The exit code it maps to.
    pub code: Code,
    /// The one line a person reads.
    pub message: String,
}

impl Failure {
    /// A failure with this code and line.
    pub fn new(code: Code, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// An input file that cannot be read (exit 16): `PATH: no such file`, or
    /// `PATH: cannot read it: WHY`.
    pub fn unreadable(path: impl std::fmt::Display, e: &std::io::Error) -> Failure {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "no such file".to_string()
        } else {
            format!("cannot read it: {e}")
        };
        Failure::new(Code::Unreadable, format!("{path}: {why}"))
    }

    /// A bad command line or input file (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Code::Usage, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A problem in a file a person wrote (a profile, a job, a factory config), located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{at}: {field}{message}", at = self.position(), field = self.field_prefix())]
pub struct InputError {
    /// How the file is named (`job file unit.toml`, `built-in profile esp32-at`).
    pub origin: String,
    /// 1-based line and column (in characters), when known.
    pub at: Option<(usize, usize)>,
    /// The field at fault, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl InputError {
    /// A problem with no position.
    pub fn new(origin: impl Into<String>, message: impl Into<String>) -> InputError {
        InputError {
            origin: origin.into(),
            at: None,
            field: None,
            message: message.into(),
        }
    }

    /// A TOML parse or schema error of `text`, located from its span.
    pub fn from_toml(origin: &str, text: &str, e: &toml::de::Error) -> InputError {
        let message = e.message().trim().replace('\n', " ");
        let Some((line, column)) = toml_location(text, e) else {
            return InputError::new(origin, message);
        };
        let line_text = text.lines().nth(line - 1).unwrap_or("");
        let field = line_text
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| {
                !k.is_empty() && !k.starts_with('[') && !message.contains(&format!("`{k}`"))
            })
            .map(str::to_string);
        InputError {
            origin: origin.to_string(),
            at: Some((line, column)),
            field,
            message,
        }
    }

    fn position(&self) -> String {
        self.at
            .map(|(l, c)| format!(":{l}:{c}"))
            .unwrap_or_default()
    }

    fn field_prefix(&self) -> String {
        self.field
            .as_ref()
            .map(|f| format!("field `{f}`: "))
            .unwrap_or_default()
    }
}

/// Line and column (1-based, columns in characters) of a TOML error, from its span.
pub fn toml_location(text: &str, e: &toml::de::Error) -> Option<(usize, usize)> {
    let span = e.span()?;
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Some((line, before[line_start..].chars().count() + 1))
}

/// The exit code for a command that did not end well.
pub fn code_for_status(status: &crate::at::Status) -> Code {
    use crate::at::Status as S;
    match status {
        S::Ok => Code::Ok,
        S::Error { .. } | S::Busy | S::WantsData => Code::AtError,
        S::Timeout { .. } => Code::NoAnswer,
        S::Reset => Code::ModuleReset,
    }
}
