//! The standard grammar every family shares (3GPP TS 27.007): registration, SIM and power
//! URCs, and `ATD` ending in `CONNECT`.

use super::Dialect;
use crate::command::Command;

/// The standard dialect.
pub const DIALECT: Dialect = Dialect {
    name: "3GPP",
    urc_lines: &[],
    urc_prefixes: &["+CREG:", "+CEREG:", "+CGREG:", "+CPIN:", "+CFUN:"],
    payloads: &[],
    catalog,
};

fn catalog(cmd: &mut Command, _name: &str, _set: bool) -> bool {
    if cmd
        .line
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("ATD"))
    {
        cmd.success.push("CONNECT".into());
        return true;
    }
    false
}
