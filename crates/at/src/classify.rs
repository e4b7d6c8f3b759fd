//! What a line means on its own, before knowing which command is in flight: final result
//! codes, busy rejections, boot banners and whether a line is a known unsolicited message of
//! one of the families ([`crate::family`] holds their tables). Pure functions over one line.

/// A final result code that ends a command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FinalCode {
    /// `OK`, `SEND OK`, `SET OK`, or a command's own success line.
    Ok,
    /// `ERROR`.
    Error,
    /// `+CME ERROR: <n|text>`.
    Cme {
        /// The number, when the module reports one (`AT+CMEE=1`).
        code: Option<u32>,
        /// What follows the colon, as sent.
        text: String,
    },
    /// `+CMS ERROR: <n|text>`.
    Cms {
        /// The number, when the module reports one.
        code: Option<u32>,
        /// What follows the colon, as sent.
        text: String,
    },
    /// `COMMAND NOT SUPPORT` (Huawei and others).
    NotSupported,
    /// `SEND FAIL`.
    SendFail,
    /// `NO CARRIER`, `BUSY`, `NO ANSWER`, `NO DIALTONE`, `MODEM ERROR`.
    CallFailed {
        /// The line, e.g. `NO CARRIER`.
        reason: String,
    },
    /// A command's own failure line, e.g. `+MQTTPUB:FAIL` or Luat's `TimeOut`.
    Failed,
}

impl FinalCode {
    /// Whether this is a success final.
    pub fn is_ok(&self) -> bool {
        matches!(self, FinalCode::Ok)
    }
}

/// Classifies a standard final result line. Command-specific finals are the caller's business.
pub fn final_code(line: &str) -> Option<FinalCode> {
    Some(match line {
        "OK" | "SEND OK" | "SET OK" => FinalCode::Ok,
        "ERROR" => FinalCode::Error,
        "COMMAND NOT SUPPORT" | "TOO MANY PARAMETERS" => FinalCode::NotSupported,
        // u-blox: a command aborted by a character sent meanwhile.
        "ABORTED" => FinalCode::Error,
        "SEND FAIL" => FinalCode::SendFail,
        "NO CARRIER" | "BUSY" | "NO ANSWER" | "NO DIALTONE" | "MODEM ERROR" => {
            FinalCode::CallFailed {
                reason: line.to_string(),
            }
        }
        _ if line.strip_prefix("MODEM ERROR:").is_some_and(|n| {
            n.trim().bytes().all(|b| b.is_ascii_digit()) && !n.trim().is_empty()
        }) =>
        {
            FinalCode::CallFailed {
                reason: line.to_string(),
            }
        }
        _ => {
            if let Some(rest) = line.strip_prefix("+CME ERROR:") {
                let (code, text) = code_and_text(rest);
                FinalCode::Cme { code, text }
            } else if let Some(rest) = line.strip_prefix("+CMS ERROR:") {
                let (code, text) = code_and_text(rest);
                FinalCode::Cms { code, text }
            } else if line
                .strip_prefix("ERROR: ")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                // Luat's HTTP and some SIMCom commands: `ERROR: <n>`.
                FinalCode::Error
            } else {
                return None;
            }
        }
    })
}

fn code_and_text(rest: &str) -> (Option<u32>, String) {
    let text = rest.trim().to_string();
    (text.parse().ok(), text)
}

/// ESP-AT's answer to a command sent while another one is still running (`busy p...`), and the
/// ESP8266 NonOS variant (`busy s...`). The new command was discarded.
pub fn is_busy(line: &str) -> bool {
    line == "busy p..." || line == "busy s..."
}

/// A boot banner: the module has just (re)started and takes commands again. `ready` is
/// ESP-AT's, `RDY` the cellular one (Quectel, Luat, SIMCom). (Quectel's UNISOC modules add
/// `APP RDY` later in the same boot: a URC, not a second restart.)
pub fn is_boot_banner(line: &str) -> bool {
    matches!(line, "ready" | "RDY")
}

/// A sign that the module is restarting, before its banner: the ESP32 ROM's first lines
/// (`ets Jun  8 2016 00:22:57`, `rst:0x1 (POWERON_RESET),boot:0x13 ...`), a brown-out or panic
/// message, Quectel's `POWERED DOWN` / `NORMAL POWER DOWN`. Boot banners are signs too.
pub fn is_reset_sign(line: &str) -> bool {
    is_boot_banner(line)
        || matches!(line, "POWERED DOWN" | "NORMAL POWER DOWN" | "Rebooting...")
        || line.starts_with("rst:0x")
        || line.starts_with("Brownout detector was triggered")
        || line.starts_with("Guru Meditation Error")
        || is_rom_banner(line)
}

/// `ets Jun  8 2016 00:22:57` (ESP32) or `ets Jan  8 2013,rst cause:2, boot mode:(3,6)`
/// (ESP8266): the ROM's first line after a reset.
fn is_rom_banner(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("ets ") else {
        return line.contains("rst cause:");
    };
    let mut words = rest.split_whitespace();
    let month = words.next().unwrap_or("");
    let day = words.next().unwrap_or("");
    month.len() == 3
        && month.chars().all(|c| c.is_ascii_alphabetic())
        && !day.is_empty()
        && day.chars().all(|c| c.is_ascii_digit())
}

/// `CONNECT` or `CONNECT <rate>` (`CONNECT 150000000`, `CONNECT 9600/RLP`): a data-mode
/// command's success. `CONNECT OK` (Luat's asynchronous socket result) is not one.
pub fn is_connect_result(line: &str) -> bool {
    line == "CONNECT"
        || line
            .strip_prefix("CONNECT ")
            .or_else(|| line.strip_prefix("CONNECT: "))
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
}

/// Lines that explain the error that follows them: ESP-AT `ERR CODE:0x...` (with
/// `AT+SYSLOG=1`) and `+ERRNO:`.
pub fn is_error_detail(line: &str) -> bool {
    line.starts_with("ERR CODE:") || line.starts_with("+ERRNO:")
}

/// Whether a line is a documented unsolicited message of one of the families.
pub fn is_known_urc(line: &str) -> bool {
    crate::family::DIALECTS
        .iter()
        .any(|d| d.urc_lines.contains(&line) || d.urc_prefixes.iter().any(|p| line.starts_with(p)))
        || is_link_event(line)
        || is_reset_sign(line)
}

/// ESP-AT multi-link socket events: `0,CONNECT`, `1,CLOSED`, `2,CONNECT FAIL`.
fn is_link_event(line: &str) -> bool {
    let Some((id, event)) = line.split_once(',') else {
        return false;
    };
    !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && matches!(event, "CONNECT" | "CLOSED" | "CONNECT FAIL")
}

/// Whether a line looks like an information line of some command (`+NAME:`, or a vendor's
/// `^NAME:` Huawei, `*NAME:` ZTE/Sierra, `#NAME:` Telit, `!NAME:` Sierra), used to report a
/// line that belongs to no command in flight as an unknown unsolicited message.
pub fn has_plus_prefix(line: &str) -> bool {
    let Some(rest) = line.strip_prefix(['+', '^', '*', '#', '!']) else {
        return false;
    };
    // The name before the colon: letters, digits, `_`, `-` (not free text such as `+++`).
    match rest.split_once(':') {
        Some((name, _)) => {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b' ')
        }
        None => false,
    }
}

/// The tables a profile adds to the built-in ones above: its own finals, busy answers, boot
/// banners, error details and URCs. The built-in tables always apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grammar {
    ok: Vec<String>,
    error: Vec<String>,
    busy: Vec<String>,
    boot: Vec<String>,
    error_details: Vec<String>,
    urc_lines: Vec<String>,
    urc_prefixes: Vec<String>,
    secret_urcs: Vec<String>,
}

impl Grammar {
    /// The built-in tables only.
    pub fn builtin() -> Grammar {
        Grammar::default()
    }

    /// Adds a profile's tables.
    #[allow(clippy::too_many_arguments)]
    pub fn extend(
        &mut self,
        ok: &[String],
        error: &[String],
        busy: &[String],
        boot: &[String],
        error_details: &[String],
        urc_lines: &[String],
        urc_prefixes: &[String],
    ) {
        self.ok.extend_from_slice(ok);
        self.error.extend_from_slice(error);
        self.busy.extend_from_slice(busy);
        self.boot.extend_from_slice(boot);
        self.error_details.extend_from_slice(error_details);
        self.urc_lines.extend_from_slice(urc_lines);
        self.urc_prefixes.extend_from_slice(urc_prefixes);
    }

    /// Adds prefixes of URCs that carry a secret (traced as their length only).
    pub fn extend_secret_urcs(&mut self, prefixes: &[String]) {
        self.secret_urcs.extend_from_slice(prefixes);
    }

    /// Whether an unsolicited line carries a secret (e.g. Aliyun's `/ext/register` message).
    pub fn is_secret_urc(&self, line: &str) -> bool {
        self.secret_urcs
            .iter()
            .any(|p| line.starts_with(p.as_str()))
    }

    /// The final result a line is, by the built-in and the profile's tables.
    pub fn final_code(&self, line: &str) -> Option<FinalCode> {
        final_code(line).or_else(|| {
            if self.ok.iter().any(|l| l == line) {
                Some(FinalCode::Ok)
            } else if self.error.iter().any(|l| l == line) {
                Some(FinalCode::Error)
            } else {
                None
            }
        })
    }

    /// Whether a line rejects the command as busy.
    pub fn is_busy(&self, line: &str) -> bool {
        is_busy(line) || self.busy.iter().any(|l| l == line)
    }

    /// Whether a line says the module has just (re)started.
    pub fn is_boot_banner(&self, line: &str) -> bool {
        is_boot_banner(line) || self.boot.iter().any(|l| l == line)
    }

    /// Whether a line says the module is restarting (its banner included).
    pub fn is_reset_sign(&self, line: &str) -> bool {
        is_reset_sign(line) || self.is_boot_banner(line)
    }

    /// Whether a line explains the error that follows it.
    pub fn is_error_detail(&self, line: &str) -> bool {
        is_error_detail(line)
            || self
                .error_details
                .iter()
                .any(|p| line.starts_with(p.as_str()))
    }

    /// Whether a line is a documented unsolicited message (built-in or the profile's).
    pub fn is_known_urc(&self, line: &str) -> bool {
        is_known_urc(line)
            || self.urc_lines.iter().any(|l| l == line)
            || self
                .urc_prefixes
                .iter()
                .any(|p| line.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finals() {
        assert_eq!(final_code("OK"), Some(FinalCode::Ok));
        assert_eq!(final_code("SEND OK"), Some(FinalCode::Ok));
        assert_eq!(final_code("ERROR"), Some(FinalCode::Error));
        assert_eq!(
            final_code("+CME ERROR: 100"),
            Some(FinalCode::Cme {
                code: Some(100),
                text: "100".into()
            })
        );
        assert_eq!(
            final_code("+CME ERROR: SIM not inserted"),
            Some(FinalCode::Cme {
                code: None,
                text: "SIM not inserted".into()
            })
        );
        assert!(matches!(
            final_code("+CMS ERROR: 500"),
            Some(FinalCode::Cms {
                code: Some(500),
                ..
            })
        ));
        assert_eq!(
            final_code("COMMAND NOT SUPPORT"),
            Some(FinalCode::NotSupported)
        );
        assert_eq!(final_code("SEND FAIL"), Some(FinalCode::SendFail));
        assert_eq!(final_code("ERROR: 12"), Some(FinalCode::Error));
        assert_eq!(final_code("ERROR: bad"), None);
        assert_eq!(final_code("ABORTED"), Some(FinalCode::Error));
        for l in ["NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE"] {
            assert!(matches!(final_code(l), Some(FinalCode::CallFailed { .. })));
        }
        for l in [
            "CONNECT OK",
            "OK then",
            "+CME ERRORS",
            "CONNACK OK",
            "okay",
            "CONNECT",
        ] {
            assert_eq!(final_code(l), None, "{l}");
        }
    }

    #[test]
    fn urcs_and_banners() {
        assert!(is_known_urc("WIFI GOT IP"));
        assert!(is_known_urc("+MQTTDISCONNECTED:0"));
        assert!(is_known_urc("+QMTOPEN: 0,-1"));
        assert!(is_known_urc("0,CLOSED"));
        assert!(is_known_urc("CONNECT OK"));
        assert!(!is_known_urc("OK"));
        assert!(!is_known_urc("+MQTTCONN:0,4,1,\"\",\"\",\"\",0"));
        assert!(!is_known_urc("x,CLOSED"));
        assert!(is_boot_banner("ready") && is_boot_banner("RDY") && !is_boot_banner("APP RDY"));
        assert!(is_known_urc("APP RDY") && !is_reset_sign("APP RDY"));
        for l in [
            "ets Jun  8 2016 00:22:57",
            "ets Jan 8 2013,rst cause:2, boot mode:(3,6)",
            " ets Jan  8 2013,rst cause:4, boot mode:(3,7)",
            "rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
            "POWERED DOWN",
            "Brownout detector was triggered",
            "ready",
        ] {
            assert!(is_reset_sign(l), "{l}");
        }
        for l in ["ets", "ets go", "+CPIN: READY", "OK", "readyness"] {
            assert!(!is_reset_sign(l), "{l}");
        }
        for l in ["CONNECT", "CONNECT 150000000", "CONNECT 9600/RLP"] {
            assert!(is_connect_result(l), "{l}");
        }
        for l in ["CONNECT OK", "CONNECT FAIL", "CONNECTED", "0,CONNECT"] {
            assert!(!is_connect_result(l), "{l}");
        }
        assert!(is_busy("busy p..."));
        assert!(is_error_detail("ERR CODE:0x010a6009"));
    }

    #[test]
    fn grammar_adds_to_builtin_tables() {
        let mut g = Grammar::builtin();
        assert!(!g.is_known_urc("+FOO: 1") && g.final_code("DONE").is_none());
        let v = |s: &str| vec![s.to_string()];
        g.extend(
            &v("DONE"),
            &v("FAILED"),
            &v("wait..."),
            &v("BOOT"),
            &v("+WHY:"),
            &v("HELLO"),
            &v("+FOO:"),
        );
        assert_eq!(g.final_code("DONE"), Some(FinalCode::Ok));
        assert_eq!(g.final_code("FAILED"), Some(FinalCode::Error));
        assert_eq!(g.final_code("OK"), Some(FinalCode::Ok));
        assert!(g.is_busy("wait...") && g.is_busy("busy p..."));
        assert!(g.is_boot_banner("BOOT") && g.is_boot_banner("ready"));
        assert!(
            g.is_error_detail("+WHY: x") && g.is_known_urc("HELLO") && g.is_known_urc("+FOO: 1")
        );
    }
}
