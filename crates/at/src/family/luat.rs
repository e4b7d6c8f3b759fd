//! Hezhou/Luat Air780E(P) AT firmware (reference cellular.md §2): connection, MQTT
//! acknowledgement and HTTP URCs; the counted payloads of `+MSUB` and `+HTTPREAD`; the prompts
//! of `AT+FSWRITE` and `AT+MPUBEX` (a bare `>`) and `AT+HTTPDATA` (`DOWNLOAD`).

use super::Dialect;
use crate::command::{Command, line_prompt, param_at, param_len, raw_prompt};
use crate::digest::{PayloadHeader, PayloadStyle, number};

/// The Luat dialect.
pub const DIALECT: Dialect = Dialect {
    name: "Luat",
    urc_lines: &[
        "RDY",
        "+E_UTRAN Service",
        "CONNECT OK",
        "CONNECT FAIL",
        "ALREADY CONNECT",
        "CONNACK OK",
        "SUBACK",
        "UNSUBACK",
        "PUBACK",
        "PUBREC",
        "PUBCOMP",
        "+PDP DEACT",
    ],
    urc_prefixes: &[
        "^MODE:",
        "+CGEV:",
        "+NITZ:",
        "+MSUB:",
        "+HTTPACTION:",
        "+CNTP:",
        "STATE:",
    ],
    payloads: &[
        // +MSUB: "<topic>",<len> byte,<data>
        PayloadHeader {
            prefix: b"+MSUB: ",
            parse: msub,
            trigger: b',',
            style: PayloadStyle::Inline,
            trailer: b"",
        },
        // +HTTPREAD: <len> then the body on the following bytes
        PayloadHeader {
            prefix: b"+HTTPREAD: ",
            parse: number,
            trigger: b'\r',
            style: PayloadStyle::NextLine,
            trailer: b"",
        },
    ],
    catalog,
};

fn catalog(cmd: &mut Command, name: &str, set: bool) -> bool {
    let line = cmd.line.clone();
    if cmd.line.eq_ignore_ascii_case("AT+RESET") {
        cmd.reboots = true;
        return true;
    }
    match name {
        "+FSWRITE" if set => {
            cmd.prompt = raw_prompt(false, param_at(&line, 2));
            cmd.failure.push("TimeOut".into());
        }
        "+MPUBEX" if set => cmd.prompt = raw_prompt(false, param_len(&line, 0)),
        "+HTTPDATA" if set => cmd.prompt = line_prompt("DOWNLOAD", param_at(&line, 0)),
        // FTPPUT=2,<len> answers `+FTPPUT: 2,<len>`, then takes the data.
        "+FTPPUT" if set && param_at(&line, 0) == Some(2) => {
            let len = param_at(&line, 1);
            let shown = format!("+FTPPUT: 2,{}", len.unwrap_or(0));
            cmd.prompt = line_prompt(&shown, len);
        }
        // CIFSR answers the IP address alone, without OK.
        "+CIFSR" if !set => cmd.value_is_final = true,
        _ => return false,
    }
    true
}

/// `"<topic>",<len> byte,` → len.
fn msub(rest: &[u8]) -> Option<usize> {
    let rest = rest.strip_suffix(b" byte,")?;
    let comma = rest.iter().rposition(|&b| b == b',')?;
    let (topic, len) = (&rest[..comma], &rest[comma + 1..]);
    if !topic.starts_with(b"\"") || !topic.ends_with(b"\"") || topic.len() < 2 {
        return None;
    }
    number(len)
}
