//! The exit-code table and the error type every command returns. The README's table is
//! checked against [`Code::ALL`] by a test, so the two cannot drift apart.

use std::fmt;

/// A documented exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok,
    Internal,
    Usage,
    PortNotFound,
    PortBusy,
    PortPermission,
    NoAnswer,
    AtError,
    PortLost,
    ModuleReset,
    Credentials,
    VerifyMismatch,
    Network,
    Connect,
    Smoke,
    Journal,
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
            Code::Credentials => "the credentials are unusable (pki check failed)",
            Code::VerifyMismatch => "what was read back differs from what was written",
            Code::Network => "network bring-up failed (Wi-Fi, cellular, time sync)",
            Code::Connect => "the MQTT/TLS connection was refused or failed",
            Code::Smoke => "the smoke-test message did not come back",
            Code::Journal => "the factory journal cannot be opened or written",
        }
    }
}

/// A failure: one line for the user and the exit code it maps to.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

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

impl From<crate::port::PortError> for Failure {
    fn from(e: crate::port::PortError) -> Failure {
        use crate::port::PortError as P;
        let code = match &e {
            P::BadSelector(_) => Code::Usage,
            P::NotFound { .. } => Code::PortNotFound,
            P::Busy { .. } => Code::PortBusy,
            P::Permission { .. } => Code::PortPermission,
            P::Other { .. } => Code::PortNotFound,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<crate::at::EngineError> for Failure {
    fn from(e: crate::at::EngineError) -> Failure {
        use crate::at::EngineError as E;
        let code = match &e {
            E::Closed | E::Io(_) => Code::PortLost,
            E::Lost { .. } => Code::NoAnswer,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<crate::transcript::ParseError> for Failure {
    fn from(e: crate::transcript::ParseError) -> Failure {
        Failure::usage(e.to_string())
    }
}

/// The exit code for a command that did not end well.
pub fn code_for_status(status: &crate::at::Status) -> Code {
    use crate::at::Status as S;
    match status {
        S::Ok => Code::Ok,
        S::Error { .. } | S::Busy => Code::AtError,
        S::Timeout { .. } => Code::NoAnswer,
        S::Reset => Code::ModuleReset,
    }
}
