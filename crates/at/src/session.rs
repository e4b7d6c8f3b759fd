//! The session: a pure state machine that gives every byte from the device an owner.
//!
//! It combines the [`Digester`] (framing) with the command in flight (expectations) and decides,
//! record by record: echo, info line, prompt, final result, completing URC, or unsolicited. It
//! does no I/O and knows no time: the engine feeds it bytes, writes what it asks for, and tells
//! it when a deadline passed. That keeps every rule here testable byte for byte.
//!
//! The order of the rules, for a line while a command is in flight:
//! 1. the first line equal to the bytes sent is the echo;
//! 2. after the `OK` of a command that completes on a URC, a line with a completing prefix ends it;
//! 3. a sign of a restart (`ready`, `RDY`, the ESP32 ROM's `ets ...`/`rst:0x...`, `POWERED
//!    DOWN`) means the module reset: the command fails, unless it is one that restarts the
//!    module (`AT+RST`), which it then ends;
//! 4. `busy p...` is a rejection only of a command sent while the previous one had not
//!    finished (the engine resends it); otherwise it is only the firmware's complaint, an
//!    info line, and the command still waits for its result;
//! 5. the command's own success/failure lines, `CONNECT [<rate>]` for data-mode commands,
//!    then the standard final codes;
//! 6. a line prompt (`DOWNLOAD`, `CONNECT`) the command waits for; a `>` glued to the line
//!    after it (`>+MQTTPUB:OK`, ESP-AT sends no line end after its prompt) is the prompt and
//!    that line;
//! 7. a line with the command's info prefix is its own, even if a URC shares the prefix;
//! 8. documented URCs, and other `+NAME:` lines, are unsolicited;
//! 9. anything else (GMR text, an IMEI, `ERR CODE:` details) is an info line.
//!
//! A raw prompt nobody armed (`>` of an uncatalogued command, u-blox `@`) has no line end, so
//! only time tells it from the start of a line: the engine asks
//! [`Session::take_unexpected_prompt`] after a quiet spell, and the command ends saying the
//! module wants data.

use std::time::Duration;

use super::classify::{self, FinalCode};
use super::command::{Command, PromptKind};
use super::digest::{Digester, Event, PayloadStyle};
use super::response::{Payload, Phase, Response, Status, Urc};
use super::text::escape;

/// How a device record was classified, for traces and transcripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxClass {
    /// The module echoed the command line.
    Echo,
    /// An information line of the command in flight.
    Info,
    /// A prompt for the payload.
    Prompt,
    /// The final result.
    Final,
    /// The URC that completed a command.
    Completion,
    /// A URC that arrived while a command was in flight.
    Urc,
    /// A line while no command was in flight.
    Unsolicited,
    /// A `busy p...` rejection.
    Busy,
    /// A line of an earlier command that timed out but was still running in the module
    /// (ESP-AT answers commands sent meanwhile `busy p...`); only in replays.
    LateInfo,
    /// The final result of such an earlier command.
    LateFinal,
}

/// What the session asks of the engine, or tells it.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A device record and its class (lines escaped; payloads rendered inline).
    Rx {
        /// The record, escaped.
        text: String,
        /// How it was classified.
        class: RxClass,
        /// Whether it carries a secret.
        secret: bool,
    },
    /// An unsolicited message for subscribers.
    Urc(Urc),
    /// The prompt came: write these bytes now.
    SendPayload(Vec<u8>),
    /// The command in flight ended.
    Done(Box<Response>),
    /// The command in flight was discarded with `busy p...`; resend it after a pause.
    Busy,
    /// The module is restarting: `back` when the line was a boot banner (it takes commands
    /// again), otherwise an earlier sign (ROM noise, `POWERED DOWN`).
    Reset {
        /// The line was a boot banner.
        back: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the final result (and the prompt, if any).
    Final,
    /// The success final came; waiting for the completing URC.
    Completion,
    /// Discarded with `busy p...`; lines until the resend belong to nobody.
    Rejected,
}

#[derive(Debug, Clone)]
struct InFlight {
    cmd: Command,
    stage: Stage,
    /// Whether a line may still be the echo.
    echo_possible: bool,
    /// The `OK` before an ESP-AT prompt came.
    first_ok: bool,
    prompt_done: bool,
    /// Sent while the previous command had not finished (it timed out): a `busy p...` is
    /// then this command's rejection.
    sent_while_busy: bool,
    /// A sign of a restart came while it ran: without a final soon, it ends as a reset.
    reset_seen: bool,
    /// The module echoed the payload.
    payload_echoed: bool,
    resp: Response,
}

/// Owns the digester and the command in flight.
#[derive(Debug, Default)]
pub struct Session {
    grammar: std::sync::Arc<classify::Grammar>,
    digester: Digester,
    inflight: Option<InFlight>,
    events: Vec<Event>,
    /// The last command ended without a final (timed out): the module may still run it.
    unfinished: bool,
    /// Replays: keep a timed-out command as still running in the module, and give it the
    /// lines that come while later commands are rejected with `busy p...` (ESP-AT's nesting).
    nesting: bool,
    /// The oldest command that timed out while the module may still run it (with `nesting`).
    lingering: Option<InFlight>,
    /// A later command was rejected with `busy p...`: the module is indeed still running the
    /// lingering command.
    lingering_confirmed: bool,
}

impl Session {
    /// A session with the built-in grammar only.
    pub fn new() -> Session {
        Session::default()
    }

    /// A session that also knows a profile's grammar tables.
    pub fn with_grammar(grammar: std::sync::Arc<classify::Grammar>) -> Session {
        Session {
            grammar,
            ..Session::default()
        }
    }

    /// Recorded sessions: a command that timed out may still be running in the module, and
    /// lines that come while later commands are rejected with `busy p...` are its own
    /// ([`RxClass::LateInfo`], [`RxClass::LateFinal`]). Live sessions resynchronise instead.
    pub fn set_nesting(&mut self, on: bool) {
        self.nesting = on;
    }

    /// Whether a command is in flight.
    pub fn busy(&self) -> bool {
        self.inflight.is_some()
    }

    /// The phase the command in flight is waiting in, for the engine's deadline.
    pub fn phase(&self) -> Option<Phase> {
        let f = self.inflight.as_ref()?;
        Some(match f.stage {
            Stage::Completion => Phase::Completion,
            _ if f.cmd.prompt.is_some() && !f.prompt_done => Phase::Prompt,
            _ => Phase::Final,
        })
    }

    /// The completion timeout of the command in flight, once it waits for its URC.
    pub fn completion_timeout(&self) -> Option<Duration> {
        let f = self.inflight.as_ref()?;
        (f.stage == Stage::Completion).then(|| f.cmd.completion.as_ref().map(|c| c.timeout))?
    }

    /// How often the command in flight was resent after `busy p...`.
    pub fn busy_retries(&self) -> u32 {
        self.inflight.as_ref().map_or(0, |f| f.resp.busy_retries)
    }

    /// Starts a command; returns the bytes to write.
    pub fn begin(&mut self, cmd: Command) -> Vec<u8> {
        let raw_prompt = matches!(cmd.prompt.as_ref().map(|p| &p.kind), Some(PromptKind::Raw));
        self.digester.arm_prompt(raw_prompt);
        let bytes = cmd.wire_bytes();
        let resp = Response {
            command: cmd.display().to_string(),
            echo: false,
            info: Vec::new(),
            payloads: Vec::new(),
            prompt: None,
            final_line: None,
            status: Status::Ok,
            details: Vec::new(),
            urcs: Vec::new(),
            completion: None,
            busy_retries: 0,
            elapsed: Duration::ZERO,
        };
        self.inflight = Some(InFlight {
            cmd,
            stage: Stage::Final,
            echo_possible: true,
            first_ok: false,
            prompt_done: false,
            sent_while_busy: self.unfinished,
            reset_seen: false,
            payload_echoed: false,
            resp,
        });
        bytes
    }

    /// The payload bytes the module may still be waiting for: the command in flight had an
    /// announced length and its prompt never came. After a timeout the engine sends this much
    /// filler so that a module waiting in its data phase finishes it (and fails) instead of
    /// swallowing the next commands.
    pub fn prompt_debt(&self) -> Option<usize> {
        let f = self.inflight.as_ref()?;
        let p = f.cmd.prompt.as_ref()?;
        if f.prompt_done || f.stage != Stage::Final {
            return None;
        }
        p.announced_len.filter(|&n| n > 0)
    }

    /// Whether the device left a raw prompt nobody armed at the start of a line while a
    /// command waits for its result (see the module docs).
    pub fn unexpected_prompt_pending(&self) -> bool {
        self.inflight
            .as_ref()
            .is_some_and(|f| f.stage == Stage::Final && !f.prompt_done)
            && self.digester.pending_prompt().is_some()
    }

    /// Whether the device left a raw prompt at the start of a line while no command is in
    /// flight: a command that ended with `OK` wants data after all (ESP-AT's `OK` then `>`).
    pub fn idle_prompt_pending(&self) -> bool {
        self.inflight.is_none() && self.digester.pending_prompt().is_some()
    }

    /// Takes an idle pending prompt (see [`Session::idle_prompt_pending`]) as an unsolicited
    /// record; returns whether there was one.
    pub fn take_idle_prompt(&mut self, out: &mut Vec<Output>) -> bool {
        if !self.idle_prompt_pending() {
            return false;
        }
        let shown = self.digester.take_pending_prompt().expect("checked above");
        self.unsolicited(shown.to_string(), false, None, out);
        true
    }

    /// Takes a pending raw prompt (after a quiet spell) as the prompt it is: a command with a
    /// payload gets its payload sent; one without ends as [`Status::WantsData`].
    pub fn take_unexpected_prompt(&mut self, out: &mut Vec<Output>) {
        if !self.unexpected_prompt_pending() {
            return;
        }
        let shown = self.digester.take_pending_prompt().expect("checked above");
        let f = self.inflight.as_mut().expect("checked above");
        if f.cmd.prompt.as_ref().is_some_and(|p| p.payload.is_some()) {
            self.on_prompt(out);
            return;
        }
        out.push(Output::Rx {
            text: shown.to_string(),
            class: RxClass::Prompt,
            secret: false,
        });
        f.prompt_done = true;
        f.resp.prompt = Some(shown.to_string());
        self.finish(Status::WantsData, out);
    }

    /// Resends a command discarded with `busy p...`; returns the bytes to write.
    pub fn resend(&mut self) -> Option<Vec<u8>> {
        let f = self.inflight.as_mut()?;
        f.stage = Stage::Final;
        f.echo_possible = true;
        f.resp.busy_retries += 1;
        let raw_prompt = matches!(
            f.cmd.prompt.as_ref().map(|p| &p.kind),
            Some(PromptKind::Raw)
        );
        self.digester.arm_prompt(raw_prompt);
        Some(f.cmd.wire_bytes())
    }

    /// Ends the command in flight as timed out (or as busy when it was rejected to the end).
    pub fn expire(&mut self, elapsed: Duration) -> Option<Response> {
        let f = self.inflight.take()?;
        self.digester.arm_prompt(false);
        // A command ended by a restart is not running any more.
        self.unfinished = !f.reset_seen;
        if self.nesting && f.stage == Stage::Final && self.lingering.is_none() && !f.reset_seen {
            self.lingering = Some(f.clone());
            self.lingering_confirmed = false;
        }
        let mut resp = f.resp;
        resp.status = if f.stage == Stage::Rejected {
            Status::Busy
        } else if f.reset_seen {
            Status::Reset
        } else {
            Status::Timeout {
                phase: match f.stage {
                    Stage::Completion => Phase::Completion,
                    _ if f.cmd.prompt.is_some() && !f.prompt_done => Phase::Prompt,
                    _ => Phase::Final,
                },
            }
        };
        resp.elapsed = elapsed;
        Some(resp)
    }

    /// Feeds device bytes; appends what happened to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Output>) {
        let mut events = std::mem::take(&mut self.events);
        self.digester.feed(bytes, &mut events);
        for ev in events.drain(..) {
            match ev {
                Event::Line(raw) => self.on_line(&raw, out),
                Event::Prompt => self.on_prompt(out),
                Event::Payload {
                    header,
                    data,
                    style,
                } => self.on_payload(header, data, style, out),
                Event::Overflow { dropped } => self.unsolicited(
                    format!("<line too long: {dropped} more bytes dropped>"),
                    false,
                    None,
                    out,
                ),
            }
        }
        self.events = events;
    }

    fn on_prompt(&mut self, out: &mut Vec<Output>) {
        let Some(f) = self.inflight.as_mut() else {
            return;
        };
        let Some(phase) = f.cmd.prompt.as_ref() else {
            return;
        };
        let text = phase.kind.text().to_string();
        out.push(Output::Rx {
            text: text.clone(),
            class: RxClass::Prompt,
            secret: false,
        });
        f.prompt_done = true;
        f.echo_possible = false;
        f.resp.prompt = Some(text);
        if phase.payload.is_none() && !f.cmd.filler_payload {
            // Nothing to send: say so (the engine then cancels the data phase).
            self.finish(Status::WantsData, out);
            return;
        }
        out.push(Output::SendPayload(payload_bytes(&f.cmd)));
    }

    fn on_payload(
        &mut self,
        header: Vec<u8>,
        data: Vec<u8>,
        style: PayloadStyle,
        out: &mut Vec<Output>,
    ) {
        let header_text = escape(&header);
        let rendered = match style {
            PayloadStyle::Inline => vec![format!("{header_text}{}", escape(&data))],
            PayloadStyle::NextLine => vec![header_text.clone(), escape(&data)],
        };
        let owned = self
            .inflight
            .as_ref()
            .is_some_and(|f| f.stage == Stage::Final && f.cmd.owns(&header_text));
        if owned {
            let f = self.inflight.as_mut().expect("checked above");
            f.echo_possible = false;
            let secret = f.cmd.secret_response;
            for text in &rendered {
                out.push(Output::Rx {
                    text: text.clone(),
                    class: RxClass::Info,
                    secret,
                });
            }
            f.resp.info.extend(rendered);
            f.resp.payloads.push(Payload {
                header: header_text,
                data,
            });
        } else {
            self.unsolicited(rendered.concat(), true, Some(data), out);
        }
    }

    fn on_line(&mut self, raw: &[u8], out: &mut Vec<Output>) {
        let text = escape(raw);
        if self.inflight.is_none() && self.take_late_line(&text, out) {
            return;
        }
        let Some(f) = self.inflight.as_mut() else {
            if self.grammar.is_reset_sign(&text) {
                out.push(Output::Reset {
                    back: self.grammar.is_boot_banner(&text),
                });
                self.unfinished = false;
                self.lingering = None;
                self.lingering_confirmed = false;
            }
            let known = self.grammar.is_known_urc(&text) || self.grammar.is_reset_sign(&text);
            self.unsolicited(text, known, None, out);
            return;
        };
        let secret = f.cmd.secret_response;
        let rx = |out: &mut Vec<Output>, text: &str, class| {
            out.push(Output::Rx {
                text: text.to_string(),
                class,
                secret: secret && class == RxClass::Info,
            })
        };

        if f.stage == Stage::Rejected {
            // Our command was discarded; this is the reply of the one still running.
            if self.grammar.is_reset_sign(&text) {
                out.push(Output::Reset {
                    back: self.grammar.is_boot_banner(&text),
                });
                f.reset_seen = !f.cmd.reboots;
            }
            let known = self.grammar.is_known_urc(&text) || self.grammar.is_reset_sign(&text);
            self.unsolicited(text, known, None, out);
            return;
        }

        // 1. Echo: the line we sent, once, before anything of the command's own.
        // (The digester drops trailing spaces; a command typed with one echoes without it.)
        if f.echo_possible && text.trim_end() == f.cmd.line.trim_end() && !text.is_empty() {
            f.echo_possible = false;
            f.resp.echo = true;
            let shown = f.cmd.display().to_string();
            rx(out, &shown, RxClass::Echo);
            return;
        }

        // 1b. Modems in text mode echo the data typed after the prompt (with its Ctrl-Z).
        if f.prompt_done && !f.payload_echoed && is_payload_echo(raw, &f.cmd) {
            f.payload_echoed = true;
            rx(out, &text, RxClass::Echo);
            return;
        }

        // 2. The completing URC after the OK.
        if f.stage == Stage::Completion {
            let completes = f
                .cmd
                .completion
                .as_ref()
                .is_some_and(|c| c.prefixes.iter().any(|p| text.starts_with(p.as_str())));
            if completes {
                rx(out, &text, RxClass::Completion);
                f.resp.completion = Some(text);
                self.finish(Status::Ok, out);
                return;
            }
            if let Some(code) = self.grammar.final_code(&text).filter(|c| !c.is_ok()) {
                rx(out, &text, RxClass::Final);
                f.resp.final_line = Some(text);
                self.finish(Status::Error { code }, out);
                return;
            }
        }

        // 3. A restart: the module rebooted under the command (or because of it). A command
        // that restarts the module ends here; any other still takes a final that comes at
        // once (a module that took the command after booting), else the engine ends it as a
        // reset after a short grace.
        if self.grammar.is_reset_sign(&text) {
            let back = self.grammar.is_boot_banner(&text);
            out.push(Output::Reset { back });
            let expected = f.cmd.reboots;
            f.reset_seen = !expected;
            self.unsolicited(text, true, None, out);
            self.unfinished = false;
            self.lingering = None;
            if expected {
                self.finish(Status::Ok, out);
            }
            return;
        }

        // An earlier command still running in the module (see `set_nesting`) takes the lines
        // that are neither this command's rejection nor unsolicited.
        if f.stage == Stage::Final && self.take_late_line(&text, out) {
            return;
        }
        let Some(f) = self.inflight.as_mut() else {
            return;
        };

        if f.stage == Stage::Final {
            // 4. busy p...: a rejection of a command sent while another ran; otherwise the
            // firmware's complaint about something of its own, and the command waits on.
            if self.grammar.is_busy(&text) {
                if f.cmd.retry_busy {
                    rx(out, &text, RxClass::Busy);
                    f.stage = Stage::Rejected;
                    self.digester.arm_prompt(false);
                    out.push(Output::Busy);
                } else if f.sent_while_busy {
                    self.lingering_confirmed = true;
                    rx(out, &text, RxClass::Busy);
                    f.resp.final_line = Some(text);
                    f.resp.status = Status::Busy;
                    self.finish(Status::Busy, out);
                } else {
                    f.echo_possible = false;
                    rx(out, &text, RxClass::Info);
                    f.resp.info.push(text);
                }
                return;
            }

            // 6 (early). A raw prompt glued to the line after it.
            if let Some(rest) = glued_prompt(&text)
                && f.cmd
                    .prompt
                    .as_ref()
                    .is_none_or(|p| p.kind == PromptKind::Raw)
                && !f.prompt_done
            {
                let rest = rest.to_string();
                out.push(Output::Rx {
                    text: ">".into(),
                    class: RxClass::Prompt,
                    secret: false,
                });
                f.prompt_done = true;
                f.echo_possible = false;
                f.resp.prompt = Some(">".into());
                self.digester.arm_prompt(false);
                self.on_line(rest.as_bytes(), out);
                return;
            }

            // 5. Finals: the command's own, then the standard ones.
            if let Some(code) = final_of(&self.grammar, &f.cmd, &text) {
                self.on_final(text, code, out);
                return;
            }

            // 6. A line prompt.
            let line_prompt = f
                .cmd
                .prompt
                .as_ref()
                .is_some_and(|p| !f.prompt_done && p.kind == PromptKind::Line(text.clone()));
            if line_prompt {
                self.on_prompt(out);
                return;
            }
        }

        // 7. The command's own info lines.
        let own = f.stage == Stage::Final && f.cmd.owns(&text);
        if own || (f.stage == Stage::Final && !is_foreign(&self.grammar, &text)) {
            f.echo_possible = false;
            rx(out, &text, RxClass::Info);
            if self.grammar.is_error_detail(&text) {
                f.resp.details.push(text.clone());
            }
            f.resp.info.push(text);
            return;
        }

        // 8. Everything else is unsolicited.
        let known = self.grammar.is_known_urc(&text);
        self.unsolicited(text, known, None, out);
    }

    /// Gives a line to the lingering command (see [`Session::set_nesting`]) when the module
    /// has shown it still runs it; returns whether it took the line.
    fn take_late_line(&mut self, text: &str, out: &mut Vec<Output>) -> bool {
        if !self.lingering_confirmed
            || self.grammar.is_busy(text)
            || self.grammar.is_known_urc(text)
            || self.grammar.is_reset_sign(text)
        {
            return false;
        }
        let Some(l) = self.lingering.as_mut() else {
            return false;
        };
        let code = final_of(&self.grammar, &l.cmd, text);
        let class = if code.is_some() {
            RxClass::LateFinal
        } else {
            RxClass::LateInfo
        };
        out.push(Output::Rx {
            text: text.to_string(),
            class,
            secret: l.cmd.secret_response,
        });
        if code.is_some() {
            self.lingering = None;
            self.lingering_confirmed = false;
            self.unfinished = false;
        } else {
            l.resp.info.push(text.to_string());
        }
        true
    }

    fn on_final(&mut self, text: String, code: FinalCode, out: &mut Vec<Output>) {
        let f = self
            .inflight
            .as_mut()
            .expect("called with a command in flight");
        f.echo_possible = false;
        let waits_for_prompt = f
            .cmd
            .prompt
            .as_ref()
            .is_some_and(|p| p.after_ok && !f.prompt_done);
        if code.is_ok() && waits_for_prompt && !f.first_ok {
            // ESP-AT: `OK` then `>`; the command goes on: this `OK` only says the command
            // was taken, the final comes after the data.
            f.first_ok = true;
            out.push(Output::Rx {
                text: text.clone(),
                class: RxClass::Info,
                secret: false,
            });
            f.resp.info.push(text);
            return;
        }
        out.push(Output::Rx {
            text: text.clone(),
            class: RxClass::Final,
            secret: false,
        });
        f.resp.final_line = Some(text);
        if code.is_ok() && f.cmd.completion.is_some() {
            f.stage = Stage::Completion;
            self.digester.arm_prompt(false);
            return;
        }
        let status = if code.is_ok() {
            Status::Ok
        } else {
            Status::Error { code }
        };
        self.finish(status, out);
    }

    fn finish(&mut self, status: Status, out: &mut Vec<Output>) {
        let Some(f) = self.inflight.take() else {
            return;
        };
        self.digester.arm_prompt(false);
        // A rejection leaves the earlier command running.
        if !matches!(status, Status::WantsData | Status::Busy) {
            self.unfinished = false;
            self.lingering = None;
            self.lingering_confirmed = false;
        }
        let mut resp = f.resp;
        if !matches!(status, Status::Ok) && resp.details.is_empty() {
            resp.details = resp.info.clone();
        }
        resp.status = status;
        out.push(Output::Done(Box::new(resp)));
    }

    fn unsolicited(
        &mut self,
        line: String,
        known: bool,
        payload: Option<Vec<u8>>,
        out: &mut Vec<Output>,
    ) {
        let during = self
            .inflight
            .as_ref()
            .filter(|f| f.stage != Stage::Rejected)
            .map(|f| f.cmd.display().to_string());
        let class = if during.is_some() {
            RxClass::Urc
        } else {
            RxClass::Unsolicited
        };
        out.push(Output::Rx {
            text: line.clone(),
            class,
            secret: self.grammar.is_secret_urc(&line),
        });
        let urc = Urc {
            line,
            payload,
            known,
            during,
        };
        if let Some(f) = self.inflight.as_mut()
            && f.stage != Stage::Rejected
        {
            f.resp.urcs.push(urc.clone());
        }
        out.push(Output::Urc(urc));
    }
}

/// Whether a line is the module's echo of the payload sent after the prompt (one line of
/// data, Ctrl-Z or not).
fn is_payload_echo(raw: &[u8], cmd: &Command) -> bool {
    let Some(payload) = cmd.prompt.as_ref().and_then(|p| p.payload.as_deref()) else {
        return false;
    };
    let trim = |b: &[u8]| -> Vec<u8> {
        let mut v = b.to_vec();
        while matches!(v.last(), Some(b'\r' | b'\n' | 0x1a | b' ')) {
            v.pop();
        }
        v
    };
    let p = trim(payload);
    !p.is_empty() && !p.contains(&b'\n') && trim(raw) == p
}

/// `>+MQTTPUB:OK`, `> OK`: a raw prompt and, glued to it, a line the module sent after the
/// data (ESP-AT does not echo raw data, so nothing separates them). Only when what follows
/// the `>` is a line that ends or reports something.
fn glued_prompt(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('>')?.trim_start();
    let meaningful = classify::final_code(rest).is_some()
        || rest.starts_with("+MQTTPUB:")
        || classify::is_busy(rest)
        || classify::is_known_urc(rest);
    (!rest.is_empty() && meaningful).then_some(rest)
}

/// The final result a line is for `cmd`: its own success and failure lines (`CONNECT [<rate>]`
/// for a data-mode command, the bare value of one that answers without `OK`), then the
/// standard and the profile's finals.
fn final_of(grammar: &classify::Grammar, cmd: &Command, text: &str) -> Option<FinalCode> {
    let own_success = cmd.success.iter().any(|s| s == text)
        || (cmd.data_mode && classify::is_connect_result(text))
        || (cmd.value_is_final && !is_foreign(grammar, text) && grammar.final_code(text).is_none());
    if own_success {
        Some(FinalCode::Ok)
    } else if cmd.failure.iter().any(|s| s == text) {
        Some(FinalCode::Failed)
    } else {
        grammar.final_code(text)
    }
}

/// A line that cannot be an info line of another command: a documented URC, or a `+NAME:` line
/// (the command in flight has its own prefix, checked before).
fn is_foreign(grammar: &classify::Grammar, text: &str) -> bool {
    grammar.is_known_urc(text)
        || (classify::has_plus_prefix(text) && !grammar.is_error_detail(text))
}

/// The payload to send after the prompt: the caller's, or filler of the announced length.
fn payload_bytes(cmd: &Command) -> Vec<u8> {
    let phase = cmd
        .prompt
        .as_ref()
        .expect("only called for prompt commands");
    match &phase.payload {
        Some(p) => p.clone(),
        None => vec![b'0'; phase.announced_len.unwrap_or(0)],
    }
}
