//! Espressif ESP-AT (reference esp-at.md): Wi-Fi, SNTP, MQTT and socket URCs; the counted
//! payloads of `AT+SYSFLASH`, `AT+SYSMFG`, `+MQTTSUBRECV`, `+IPD` and `+CIPRECVDATA`; the
//! prompts of the flash, NVS, MQTT and socket writes (a bare `>`, or `OK` then `>`).

use super::Dialect;
use crate::command::{Command, param_at, param_len, raw_prompt};
use crate::digest::{PayloadHeader, PayloadStyle, number};

/// The ESP-AT dialect.
pub const DIALECT: Dialect = Dialect {
    name: "ESP-AT",
    urc_lines: &[
        "ready",
        "WIFI CONNECTED",
        "WIFI GOT IP",
        "WIFI DISCONNECT",
        "+TIME_UPDATED",
        "Will force to restart!!!",
        "NO CERT FOUND",
        "NO PRVT_KEY FOUND",
        "NO CA FOUND",
        "CLOSED",
    ],
    urc_prefixes: &[
        "+MQTTCONNECTED:",
        "+MQTTDISCONNECTED:",
        "+MQTTSUBRECV:",
        "+MQTTPUB:",
        "+IPD,",
        "+STA_CONNECTED:",
        "+STA_DISCONNECTED:",
        "+DIST_STA_IP:",
        "+LINK_CONN:",
    ],
    payloads: &[
        // +MQTTSUBRECV:<id>,"<topic>",<len>,<data>
        PayloadHeader {
            prefix: b"+MQTTSUBRECV:",
            parse: id_topic_len,
            trigger: b',',
            style: PayloadStyle::Inline,
            trailer: b"",
        },
        // +SYSFLASH:<len>,<data> (the query form starts with a quote, not a digit)
        PayloadHeader {
            prefix: b"+SYSFLASH:",
            parse: len_comma,
            trigger: b',',
            style: PayloadStyle::Inline,
            trailer: b"",
        },
        // +SYSMFG:"<ns>","<key>",<type>,<len>,<value>
        PayloadHeader {
            prefix: b"+SYSMFG:",
            parse: sysmfg,
            trigger: b',',
            style: PayloadStyle::Inline,
            trailer: b"",
        },
        // +IPD,<len>:<data> and +IPD,<link>,<len>:<data>
        PayloadHeader {
            prefix: b"+IPD,",
            parse: ipd,
            trigger: b':',
            style: PayloadStyle::Inline,
            trailer: b"",
        },
        // Passive receive: +CIPRECVDATA:<len>,<data>
        PayloadHeader {
            prefix: b"+CIPRECVDATA:",
            parse: len_comma,
            trigger: b',',
            style: PayloadStyle::Inline,
            trailer: b"",
        },
    ],
    catalog,
};

fn catalog(cmd: &mut Command, name: &str, set: bool) -> bool {
    let line = cmd.line.clone();
    match name {
        // SYSFLASH write answers a bare '>' (no OK first).
        "+SYSFLASH" if set && param_at(&line, 0) == Some(1) => {
            cmd.prompt = raw_prompt(false, param_len(&line, 0));
        }
        // SYSMFG binary/string write answers OK, then '>'.
        "+SYSMFG" if set && param_at(&line, 0) == Some(2) => {
            if matches!(param_at(&line, 3), Some(7 | 8)) {
                cmd.prompt = raw_prompt(true, param_len(&line, 0));
            }
        }
        "+MQTTPUBRAW" if set => {
            cmd.prompt = raw_prompt(true, param_at(&line, 2));
            cmd.success.push("+MQTTPUB:OK".into());
            cmd.failure.push("+MQTTPUB:FAIL".into());
            cmd.info_prefix = Some("+MQTTPUB:".into());
        }
        "+MQTTLONGCLIENTID" | "+MQTTLONGUSERNAME" | "+MQTTLONGPASSWORD" if set => {
            cmd.prompt = raw_prompt(true, param_len(&line, 0));
        }
        "+CIPSEND" | "+CIPSENDEX" if set => {
            cmd.prompt = raw_prompt(true, param_len(&line, 0));
        }
        _ => return false,
    }
    true
}

/// `<len>,` → len.
fn len_comma(rest: &[u8]) -> Option<usize> {
    number(rest.strip_suffix(b",")?)
}

/// `<id>,"<topic>",<len>,` → len. The topic is everything between the first quote and the
/// last `",` before the length, so a topic containing quotes still parses.
fn id_topic_len(rest: &[u8]) -> Option<usize> {
    let rest = rest.strip_suffix(b",")?;
    let comma = rest.iter().rposition(|&b| b == b',')?;
    let (head, len) = (&rest[..comma], &rest[comma + 1..]);
    let quote = head.iter().position(|&b| b == b'"')?;
    let id = &head[..quote];
    let id = id.strip_suffix(b",")?;
    if !id.iter().all(u8::is_ascii_digit) || head.len() < quote + 2 || !head.ends_with(b"\"") {
        return None;
    }
    number(len)
}

/// `"<ns>","<key>",<type>,<len>,` → len.
fn sysmfg(rest: &[u8]) -> Option<usize> {
    let rest = rest.strip_suffix(b",")?;
    let mut fields = rest.rsplitn(3, |&b| b == b',');
    let len = fields.next()?;
    let kind = fields.next()?;
    let names = fields.next()?;
    if !names.starts_with(b"\"") || !names.ends_with(b"\"") || names.len() < 5 {
        return None;
    }
    number(kind)?;
    number(len)
}

/// `<len>:` or `<link>,<len>:` → len.
fn ipd(rest: &[u8]) -> Option<usize> {
    let rest = rest.strip_suffix(b":")?;
    let len = match rest.iter().position(|&b| b == b',') {
        Some(i) => {
            number(&rest[..i])?;
            &rest[i + 1..]
        }
        None => rest,
    };
    number(len)
}
