//! The standard grammar every family shares (3GPP TS 27.007): registration, SIM and power
//! URCs, the data-mode commands (`ATD`, `ATO`, `AT+CGDATA`) ending in `CONNECT [<rate>]`, and
//! the SMS prompts (`AT+CMGS`), and `AT+CFUN=<fun>,1`, which restarts the module after its `OK`.

use super::Dialect;
use crate::command::Command;

/// The standard dialect.
pub const DIALECT: Dialect = Dialect {
    name: "3GPP",
    urc_lines: &["RING", "SMS Ready", "Call Ready", "+NO Service"],
    urc_prefixes: &[
        "+CREG:", "+CEREG:", "+CGREG:", "+CPIN:", "+CFUN:", "+CMTI:", "+CMT:", "+CDS:", "+CDSI:",
        "+CIEV:", "+CTZV:", "+CRING:", "+CGEV:", "*PSUTTZ:", "DST: ",
    ],
    payloads: &[],
    catalog,
};

fn catalog(cmd: &mut Command, name: &str, set: bool) -> bool {
    let upper = cmd.line.to_ascii_uppercase();
    let basic_data = upper.starts_with("ATD") || upper == "ATO" || upper == "ATO0";
    if basic_data || (name == "+CGDATA" && set) {
        cmd.data_mode = true;
        return true;
    }
    // SIMCom's socket shutdown ends with its own line.
    if name == "+CIPSHUT" {
        cmd.success.push("SHUT OK".into());
        return true;
    }
    // SMS send/write: `> `, then the text (or PDU) ended by Ctrl-Z.
    if matches!(name, "+CMGS" | "+CMGW") && set {
        cmd.prompt = crate::command::raw_prompt(false, None);
        return true;
    }
    if name == "+CFUN" && set && crate::command::param_at(&cmd.line, 1) == Some(1) {
        cmd.reboots = true;
        return true;
    }
    false
}
