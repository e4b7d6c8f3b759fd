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
    if cmd.line.eq_ignore_ascii_case("AT+RST") || cmd.line.eq_ignore_ascii_case("AT+RESTORE") {
        cmd.reboots = true;
        return true;
    }
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
        // The ESP8266 AT firmware before ESP-AT ends a failed join with `FAIL`, not `ERROR`.
        // Its error code comes as `+CWJAP:<n>` whichever form was sent.
        "+CWJAP" | "+CWJAP_CUR" | "+CWJAP_DEF" if set => {
            cmd.failure.push("FAIL".into());
            cmd.info_prefix = Some("+CWJAP".into());
        }
        "+MQTTLONGCLIENTID" | "+MQTTLONGUSERNAME" | "+MQTTLONGPASSWORD" if set => {
            cmd.prompt = raw_prompt(true, param_len(&line, 0));
        }
        // CIPSEND[EX]=<len> or =<link>,<len> (UDP adds host and port after the length);
        // CIPSENDL (ESP-AT 3.x, long data) takes the same forms. `OK`, then `>`.
        "+CIPSEND" | "+CIPSENDEX" | "+CIPSENDL" if set => {
            let len = if crate::command::params(&line).len() >= 3 {
                param_at(&line, 1)
            } else {
                param_len(&line, 0)
            };
            cmd.prompt = raw_prompt(true, len);
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

/// `<len>:`, `<link>,<len>:`, and with `AT+CIPDINFO=1` `<len>,"<ip>",<port>:` or
/// `<link>,<len>,"<ip>",<port>:` (quotes optional) → len.
fn ipd(rest: &[u8]) -> Option<usize> {
    let rest = rest.strip_suffix(b":")?;
    let fields: Vec<&[u8]> = rest.split(|&b| b == b',').collect();
    let len = match fields.len() {
        1 => fields[0],
        2 => {
            number(fields[0])?;
            fields[1]
        }
        3 => fields[0],
        4 => {
            number(fields[0])?;
            fields[1]
        }
        _ => return None,
    };
    if fields.len() >= 3 {
        number(fields[fields.len() - 1])?;
    }
    number(len)
}
