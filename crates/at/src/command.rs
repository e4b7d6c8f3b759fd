//! A command and everything the engine must know to run it: its line, its final codes, its
//! info-line prefix, its prompt phase and the payload to send after it, the URC that completes
//! it, its timeouts, and how it shows in transcripts.
//!
//! [`Command::new`] fills in what the AT grammar of the families implies for a command line
//! (each family's catalog in [`crate::family`]), so `AT+QFUPL="ca.pem",1188,100` knows it waits for `CONNECT` and
//! then 1188 bytes. Flows override what they need with the builder methods.

use std::time::Duration;

/// The prompt a command waits for before its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptKind {
    /// A raw `>` (or `> `) with no line ending.
    Raw,
    /// A whole line, `DOWNLOAD` (Luat HTTPDATA) or `CONNECT` (Quectel QFUPL).
    Line(String),
}

impl PromptKind {
    /// The prompt as the device shows it.
    pub fn text(&self) -> &str {
        match self {
            PromptKind::Raw => ">",
            PromptKind::Line(l) => l,
        }
    }
}

/// A prompt phase: what to wait for, when, and what to send then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptPhase {
    /// Which prompt.
    pub kind: PromptKind,
    /// ESP-AT's two-phase commands answer `OK` first, then the prompt.
    pub after_ok: bool,
    /// The number of bytes the command line announces, when it does.
    pub announced_len: Option<usize>,
    /// The bytes to send after the prompt; `None` means the caller has none (the engine then
    /// sends `announced_len` filler bytes, which only replays use).
    pub payload: Option<Vec<u8>>,
}

/// A URC that completes a command after its `OK` (`CONNECT OK`, `+QMTOPEN: 0,0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Lines starting with any of these complete the command; the flow judges the result.
    pub prefixes: Vec<String>,
    /// How long to wait for it after the `OK`.
    pub timeout: Duration,
}

/// One AT command with its expectations.
#[derive(Debug, Clone)]
pub struct Command {
    /// The command line without its terminator, e.g. `AT+GMR`.
    pub line: String,
    /// Sent after the line. `\r\n` by default.
    pub terminator: &'static str,
    /// Time for the final result (and for the prompt) after sending.
    pub timeout: Duration,
    /// Lines starting with this belong to the command even when a URC shares the prefix.
    pub info_prefix: Option<String>,
    /// The prefixes of the further commands of a concatenated line (`AT+CSQ;+CREG?` →
    /// `+CREG:`): their lines belong to it too.
    pub more_prefixes: Vec<String>,
    /// The prompt the command waits for before its payload, if any.
    pub prompt: Option<PromptPhase>,
    /// Command-specific success finals (`+MQTTPUB:OK`, `CONNECT` for `ATD`).
    pub success: Vec<String>,
    /// Command-specific failure finals (`+MQTTPUB:FAIL`, `TimeOut`).
    pub failure: Vec<String>,
    /// The URC that completes the command after its `OK`, if any.
    pub completion: Option<Completion>,
    /// Retry after `busy p...`, with bounded backoff.
    pub retry_busy: bool,
    /// How the command line appears in transcripts and logs when it carries a secret.
    pub shown_as: Option<String>,
    /// The payload is secret (a private key, a password): transcripts show its length only.
    pub secret_payload: bool,
    /// The response carries a secret (reading a key back): transcripts show lengths only.
    pub secret_response: bool,
    /// A data-mode command (`ATD`, `ATO`, `AT+CGDATA`): `CONNECT` and `CONNECT <rate>` are its
    /// success.
    pub data_mode: bool,
    /// The module restarts after this command's `OK` (`AT+RST`, `AT+CFUN=1,1`): the engine
    /// waits, within its boot window, until the module is back before the command ends.
    pub reboots: bool,
    /// The command answers one bare value and no `OK` (SIMCom/Luat `AT+CIFSR`): that line is
    /// its final.
    pub value_is_final: bool,
    /// Time for the prompt, when shorter than [`Command::timeout`] (which then counts from
    /// the prompt): a lost `>` is noticed in seconds even when the data may take minutes.
    pub prompt_timeout: Option<Duration>,
    /// Without a payload, answer the prompt with the announced length of filler bytes (a
    /// replay of a capture that left the data out). Otherwise a prompt with no payload ends
    /// the command as wanting data.
    pub filler_payload: bool,
}

impl Command {
    /// A command with the expectations its line implies; see the module docs.
    pub fn new(line: impl Into<String>) -> Command {
        let line = line.into();
        let mut cmd = Command {
            info_prefix: info_prefix_of(&line),
            more_prefixes: concatenated_prefixes(&line),
            line,
            terminator: "\r\n",
            timeout: Duration::from_secs(5),
            prompt: None,
            success: Vec::new(),
            failure: Vec::new(),
            completion: None,
            retry_busy: true,
            shown_as: None,
            secret_payload: false,
            secret_response: false,
            data_mode: false,
            reboots: false,
            value_is_final: false,
            prompt_timeout: None,
            filler_payload: false,
        };
        apply_catalog(&mut cmd);
        // Whoever typed the line, its secret parameters are never shown.
        cmd.shown_as = super::redact::command_line(&cmd.line);
        cmd.secret_payload = super::redact::payload_is_secret(&cmd.line);
        cmd
    }

    /// Sets the time for the final result (and the prompt).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Sets the time for the prompt (the final's timeout then counts from the prompt).
    pub fn prompt_within(mut self, t: Duration) -> Self {
        self.prompt_timeout = Some(t);
        self
    }

    /// Sets the bytes sent after the prompt. A command without a known prompt gets a raw `>`.
    pub fn payload(mut self, data: impl Into<Vec<u8>>) -> Self {
        let data = data.into();
        match &mut self.prompt {
            Some(p) => p.payload = Some(data),
            // Unknown to the catalog: a bare `>`, or ESP-AT's `OK` then `>`.
            None => {
                self.prompt = Some(PromptPhase {
                    kind: PromptKind::Raw,
                    after_ok: true,
                    announced_len: Some(data.len()),
                    payload: Some(data),
                })
            }
        }
        self
    }

    /// Whether a line starts with one of the command's info prefixes.
    pub fn owns(&self, line: &str) -> bool {
        self.info_prefix
            .iter()
            .chain(&self.more_prefixes)
            .any(|p| line.starts_with(p.as_str()))
    }

    /// Lines starting with `prefix` belong to this command even when a URC shares it.
    pub fn info_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.info_prefix = Some(prefix.into());
        self
    }

    /// A line that ends the command successfully (besides `OK`).
    pub fn success_line(mut self, line: impl Into<String>) -> Self {
        self.success.push(line.into());
        self
    }

    /// A line that ends the command as failed (besides `ERROR`).
    pub fn failure_line(mut self, line: impl Into<String>) -> Self {
        self.failure.push(line.into());
        self
    }

    /// Waits, after the `OK`, for a line starting with one of `prefixes`.
    pub fn completes_on(mut self, prefixes: &[&str], timeout: Duration) -> Self {
        self.completion = Some(Completion {
            prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
            timeout,
        });
        self
    }

    /// Shows the command as `shown` in transcripts (for lines that carry a secret).
    pub fn shown_as(mut self, shown: impl Into<String>) -> Self {
        self.shown_as = Some(shown.into());
        self
    }

    /// The payload is a secret: transcripts show its length only.
    pub fn secret_payload(mut self) -> Self {
        self.secret_payload = true;
        self
    }

    /// The response carries a secret: transcripts show line lengths only.
    pub fn secret_response(mut self) -> Self {
        self.secret_response = true;
        self
    }

    /// The module restarts after this command's `OK`: wait until it is back (see
    /// [`Command::reboots`]).
    pub fn expect_reboot(mut self) -> Self {
        self.reboots = true;
        self
    }

    /// Answers a prompt with filler of the announced length when no payload is given
    /// ([`Command::filler_payload`]).
    pub fn filler_payload(mut self) -> Self {
        self.filler_payload = true;
        self
    }

    /// Fails at the first `busy p...` instead of resending.
    pub fn no_busy_retry(mut self) -> Self {
        self.retry_busy = false;
        self
    }

    /// The line as it may be shown: the redacted form when there is one.
    pub fn display(&self) -> &str {
        self.shown_as.as_deref().unwrap_or(&self.line)
    }

    /// The bytes written for the command line.
    pub fn wire_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.line.len() + 2);
        v.extend_from_slice(self.line.as_bytes());
        v.extend_from_slice(self.terminator.as_bytes());
        v
    }
}

/// `AT+NAME=...`, `AT+NAME?`, `AT+NAME` → `+NAME:`. Basic commands (`ATE0`, `ATI`) have none.
pub fn info_prefix_of(line: &str) -> Option<String> {
    // Modules take commands in any case but answer in upper case (`at+creg?` → `+CREG:`).
    let name = command_name(line)?;
    Some(format!("{}:", name.to_ascii_uppercase()))
}

/// The info prefixes of the commands after the first in a concatenated line
/// (`AT+CSQ;+CREG?;+COPS?` → `+CREG:`, `+COPS:`); `;` inside quotes does not split.
fn concatenated_prefixes(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut quoted, mut start) = (false, None);
    let mut pieces = Vec::new();
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                pieces.push(start.map_or(0, |s| s)..i);
                start = Some(i + 1);
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        pieces.push(s..line.len());
    }
    for r in pieces.into_iter().skip(1) {
        let piece = line[r].trim();
        let name_end = piece.find(['=', '?']).unwrap_or(piece.len());
        let name = &piece[..name_end];
        if name.len() > 1 && name.starts_with(['+', '^', '$', '*', '#', '!']) {
            out.push(format!("{}:", name.to_ascii_uppercase()));
        }
    }
    out
}

/// `AT+QFUPL="x",1` → `+QFUPL`; `AT^SYSINFO` → `^SYSINFO`; `AT#SGACT?` → `#SGACT`.
pub fn command_name(line: &str) -> Option<&str> {
    let rest = line.get(2..)?;
    if !line[..2].eq_ignore_ascii_case("AT") {
        return None;
    }
    let first = rest.chars().next()?;
    // `+` standard, `^` Huawei, `$` some vendors, `*` ZTE/Sierra, `#` Telit, `!` Sierra.
    if !matches!(first, '+' | '^' | '$' | '*' | '#' | '!') {
        return None;
    }
    let end = rest.find(['=', '?']).unwrap_or(rest.len());
    (end > 1).then(|| &rest[..end])
}

/// The parameters of a set command, split on commas outside quotes, quotes kept.
pub fn params(line: &str) -> Vec<&str> {
    let Some((_, args)) = line.split_once('=') else {
        return Vec::new();
    };
    split_args(args).into_iter().map(str::trim).collect()
}

/// The text after `=` split on commas outside quotes (backslash escapes respected), each
/// piece exactly as written (not trimmed), so that the line can be put back together.
pub fn split_args(args: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in args.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&args[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&args[start..]);
    out
}

/// The parameter `index_from_end` places from the end, as a number.
pub(crate) fn param_len(line: &str, index_from_end: usize) -> Option<usize> {
    let p = params(line);
    p.len()
        .checked_sub(index_from_end + 1)
        .and_then(|i| p[i].parse().ok())
}

/// The parameter at `index`, as a number.
pub(crate) fn param_at(line: &str, index: usize) -> Option<usize> {
    params(line).get(index).and_then(|p| p.parse().ok())
}

/// A raw `>` prompt (after an `OK` or not) for `len` bytes.
pub(crate) fn raw_prompt(after_ok: bool, len: Option<usize>) -> Option<PromptPhase> {
    Some(PromptPhase {
        kind: PromptKind::Raw,
        after_ok,
        announced_len: len,
        payload: None,
    })
}

/// A whole-line prompt (`CONNECT`, `DOWNLOAD`) for `len` bytes.
pub(crate) fn line_prompt(text: &str, len: Option<usize>) -> Option<PromptPhase> {
    Some(PromptPhase {
        kind: PromptKind::Line(text.to_string()),
        after_ok: false,
        announced_len: len,
        payload: None,
    })
}

/// What the grammar of the families ([`crate::family`]) says about a command line.
fn apply_catalog(cmd: &mut Command) {
    let upper = cmd.line.to_ascii_uppercase();
    let name = command_name(&upper).unwrap_or("").to_string();
    let set = upper.contains('=') && !upper.ends_with("=?");
    for dialect in crate::family::DIALECTS {
        if (dialect.catalog)(cmd, &name, set) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(info_prefix_of("AT+GMR").as_deref(), Some("+GMR:"));
        assert_eq!(info_prefix_of("AT+CGREG?").as_deref(), Some("+CGREG:"));
        assert_eq!(
            info_prefix_of("AT+QSSLCFG=\"ignorelocaltime\",1").as_deref(),
            Some("+QSSLCFG:")
        );
        assert_eq!(info_prefix_of("at+creg?").as_deref(), Some("+CREG:"));
        assert_eq!(
            Command::new("AT+CSQ;+CREG?;+cops?").more_prefixes,
            vec!["+CREG:".to_string(), "+COPS:".to_string()]
        );
        assert!(Command::new(r#"AT+X="a;+B?""#).more_prefixes.is_empty());
        assert!(Command::new("AT+CSQ;+CREG?").owns("+CREG: 0,1"));
        assert_eq!(info_prefix_of("ATE0"), None);
        assert_eq!(info_prefix_of("ATI"), None);
        assert_eq!(info_prefix_of("AT#SGACT?").as_deref(), Some("#SGACT:"));
        assert_eq!(info_prefix_of("AT^SYSINFO").as_deref(), Some("^SYSINFO:"));
        assert_eq!(info_prefix_of("hello"), None);
    }

    #[test]
    fn params_respect_quotes() {
        assert_eq!(
            params(r#"AT+CWJAP="a,b","p\"q",1"#),
            vec![r#""a,b""#, r#""p\"q""#, "1"]
        );
        assert!(params("AT").is_empty());
    }

    #[test]
    fn catalog() {
        let c = Command::new(r#"AT+SYSFLASH=1,"mqtt_cert",0,1044"#);
        let p = c.prompt.unwrap();
        assert_eq!(
            (p.kind, p.after_ok, p.announced_len),
            (PromptKind::Raw, false, Some(1044))
        );
        let c = Command::new(r#"AT+SYSMFG=2,"mqtt_ca","mqtt_ca",8,1204"#);
        let p = c.prompt.unwrap();
        assert!(p.after_ok);
        assert_eq!(p.announced_len, Some(1204));
        assert!(Command::new(r#"AT+SYSMFG=2,"ns","k",1,5"#).prompt.is_none());
        assert!(
            Command::new(r#"AT+SYSFLASH=2,"mqtt_cert",0,8"#)
                .prompt
                .is_none()
        );
        let c = Command::new(r#"AT+QFUPL="rootCA.pem",1267,100"#);
        assert_eq!(c.prompt.unwrap().kind, PromptKind::Line("CONNECT".into()));
        let c = Command::new("AT+HTTPDATA=112,20000");
        let p = c.prompt.unwrap();
        assert_eq!(
            (p.kind, p.announced_len),
            (PromptKind::Line("DOWNLOAD".into()), Some(112))
        );
        let c = Command::new(r#"AT+MQTTPUBRAW=0,"t",13,1,0"#);
        assert_eq!(c.prompt.unwrap().announced_len, Some(13));
        assert_eq!(c.success, vec!["+MQTTPUB:OK".to_string()]);
        let c = Command::new(r#"AT+QMTPUBEX=0,1,1,0,"t",11"#);
        assert_eq!(c.prompt.unwrap().announced_len, Some(11));
        // Five parameters: data ended by Ctrl-Z; the old quoted-message form has no prompt.
        let c = Command::new(r#"AT+QMTPUB=0,1,1,0,"t""#);
        assert_eq!(c.prompt.unwrap().announced_len, None);
        assert!(
            Command::new(r#"AT+QMTPUB=0,1,1,0,"t","hi""#)
                .prompt
                .is_none()
        );
        assert_eq!(
            Command::new("AT+QISEND=0,5").prompt.unwrap().announced_len,
            Some(5)
        );
        assert!(Command::new("AT+QISEND=0,0").prompt.is_none());
        assert_eq!(
            Command::new("AT+QISEND=0").prompt.unwrap().announced_len,
            None
        );
        let c = Command::new(r#"AT+CIPSEND=0,5,"192.168.1.2",8080"#);
        assert_eq!(c.prompt.unwrap().announced_len, Some(5));
        assert_eq!(
            Command::new("AT+CIPSENDL=0,2048")
                .prompt
                .unwrap()
                .announced_len,
            Some(2048)
        );
        assert!(Command::new("ATD*99#").data_mode);
        assert!(Command::new("AT+CGDATA=\"PPP\",1").data_mode);
        assert!(!Command::new("AT+SSLMIPSTART=\"h\",1883").data_mode);
        for l in ["AT+RST", "AT+CFUN=1,1", "AT+RESET", "at+cfun=1,1"] {
            assert!(Command::new(l).reboots, "{l}");
        }
        for l in ["AT+CFUN=1", "AT+CFUN=0", "AT+CFUN?", "AT+RESTORE=?"] {
            assert!(!Command::new(l).reboots, "{l}");
        }
    }
}
