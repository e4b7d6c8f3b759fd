//! Quectel standard AT firmware (EC200U, EC600N, EG915U, BG95/BG96; reference cellular.md §3):
//! MQTT, socket, NTP and HTTP URCs; the counted payload of `+QMTRECV`; the prompts of
//! `AT+QFUPL` and `AT+QHTTPURL`/`AT+QHTTPPOST` (`CONNECT`) and of the length forms of
//! `AT+QMTPUBEX`, `AT+QMTPUB` and `AT+QISEND` (`> `).

use super::Dialect;
use crate::command::{Command, line_prompt, param_at, param_len, params, raw_prompt};
use crate::digest::{PayloadHeader, PayloadStyle, number};

/// The Quectel dialect.
pub const DIALECT: Dialect = Dialect {
    name: "Quectel",
    urc_lines: &["POWERED DOWN", "APP RDY"],
    urc_prefixes: &[
        "+QUSIM:",
        "+QIND:",
        "+QIURC:",
        "+QMTOPEN:",
        "+QMTCONN:",
        "+QMTSUB:",
        "+QMTUNS:",
        "+QMTPUB:",
        "+QMTPUBEX:",
        "+QMTDISC:",
        "+QMTCLOSE:",
        "+QMTRECV:",
        "+QMTSTAT:",
        "+QMTPING:",
        "+QNTP:",
        "+QHTTPGET:",
        "+QHTTPPOST:",
        "+QHTTPREAD:",
    ],
    payloads: &[
        // recv/mode 0,1: +QMTRECV: <id>,<msgid>,"<topic>",<len>,"<data>"
        PayloadHeader {
            prefix: b"+QMTRECV: ",
            parse: qmtrecv,
            trigger: b'"',
            style: PayloadStyle::Inline,
            trailer: b"\"",
        },
    ],
    catalog,
};

fn catalog(cmd: &mut Command, name: &str, set: bool) -> bool {
    let line = cmd.line.clone();
    match name {
        "+QFUPL" if set => cmd.prompt = line_prompt("CONNECT", param_at(&line, 1)),
        "+QHTTPURL" | "+QHTTPPOST" if set => {
            cmd.prompt = line_prompt("CONNECT", param_at(&line, 0))
        }
        // QMTPUB[EX]=<id>,<msgid>,<qos>,<retain>,"<topic>"[,<len>]: `> `, then exactly len
        // bytes, or (no length) data ended by Ctrl-Z. The old form with the message as a
        // quoted sixth parameter has no prompt.
        "+QMTPUBEX" | "+QMTPUB" if set => match params(&line).len() {
            5 => cmd.prompt = raw_prompt(false, None),
            6 if param_len(&line, 0).is_some() => {
                cmd.prompt = raw_prompt(false, param_len(&line, 0))
            }
            _ => return false,
        },
        // QIOPEN in transparent access mode (last parameter 2) answers CONNECT, or ERROR.
        "+QIOPEN" if set && params(&line).last() == Some(&"2") && params(&line).len() >= 6 => {
            cmd.data_mode = true;
        }
        // QISEND=<id>[,<len>[,"<ip>",<port>]]: `> `, then len bytes (or data ended by Ctrl-Z
        // without a length). `AT+QISEND=<id>,0` queries what was sent: no prompt.
        "+QISEND" if set => match param_at(&line, 1) {
            Some(0) => return false,
            Some(len) => cmd.prompt = raw_prompt(false, Some(len)),
            None if params(&line).len() == 1 => cmd.prompt = raw_prompt(false, None),
            None => return false,
        },
        _ => return false,
    }
    true
}

/// `<id>,<msgid>,"<topic>",<len>,"` → len.
fn qmtrecv(rest: &[u8]) -> Option<usize> {
    let rest = rest.strip_suffix(b",\"")?;
    let comma = rest.iter().rposition(|&b| b == b',')?;
    let (head, len) = (&rest[..comma], &rest[comma + 1..]);
    let mut parts = head.splitn(3, |&b| b == b',');
    number(parts.next()?)?;
    number(parts.next()?)?;
    let topic = parts.next()?;
    if !topic.starts_with(b"\"") || !topic.ends_with(b"\"") || topic.len() < 2 {
        return None;
    }
    number(len)
}
