//! What each module family's dialect adds to the standard grammar: its unsolicited messages,
//! the headers of its counted payloads, and the commands whose expectations the catalog knows
//! (prompts, their payload lengths, own finals). One module per family: supporting a new
//! family's AT dialect is one file here, listed in [`DIALECTS`].
//!
//! The tables are always all active: a URC or a payload of any family can arrive at any
//! time, and no family's URC prefix starts an ordinary line of another.

pub mod esp_at;
pub mod gsm;
pub mod luat;
pub mod quectel;

use crate::command::Command;
use crate::digest::PayloadHeader;

/// One family's additions to the grammar.
pub struct Dialect {
    /// The family, for documentation and tests.
    pub name: &'static str,
    /// Exact unsolicited lines.
    pub urc_lines: &'static [&'static str],
    /// Prefixes of unsolicited lines.
    pub urc_prefixes: &'static [&'static str],
    /// Headers that announce a counted payload.
    pub(crate) payloads: &'static [PayloadHeader],
    /// Fills in what the family's grammar says about a command (its name upper-cased, and
    /// whether the line is a set command); returns whether it knew the command.
    pub(crate) catalog: fn(&mut Command, name: &str, set: bool) -> bool,
}

/// Every family atprov speaks, the standard (3GPP) grammar first.
pub const DIALECTS: &[&Dialect] = &[
    &gsm::DIALECT,
    &esp_at::DIALECT,
    &luat::DIALECT,
    &quectel::DIALECT,
];

/// Every payload header of every family.
pub(crate) fn payload_headers() -> impl Iterator<Item = &'static PayloadHeader> {
    DIALECTS.iter().flat_map(|d| d.payloads.iter())
}
