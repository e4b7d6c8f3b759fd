//! The transcript replayer: a fake device that answers as a recorded session did, and the
//! replay of a recording through the real engine.
//!
//! The fake device waits for each recorded host line and then sends the device lines recorded
//! after it. A prompt (the command's catalogued one, or any raw `>`, `> `, `@`, also glued to
//! the line after it as in `>+MQTTPUB:OK`) ends the command phase: the next recorded host line
//! is its payload (atprov's own `<N bytes, secret, not shown>` stands for N bytes); when the
//! recording went on without one, the announced number of bytes is read instead. Device lines
//! before the first host line are sent at once. An unscripted `AT` is answered `OK`; any other
//! unexpected line gets `ERROR` and a warning. When the script is done the device hangs up.
//!
//! [`replay`] sends exactly the recorded host side, sentinels and filler included, on a
//! virtual clock: silence (a module rebooting while the host polls `AT`) costs no real time,
//! and every command of the recording gets one row, whatever happens.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::at::command::{Command, PromptKind};
use crate::at::session::RxClass;
use crate::at::{Engine, EngineConfig, Status, TraceEvent};
use crate::error::{Code, Failure};
use crate::transcript::{Entry, ParseError, Transcript};

/// What the fake device expects from the host next, and what it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The recorded host line (a command, or a payload when `payload_of_previous`).
    pub host: String,
    /// Whether `host` is the payload after the previous command's prompt.
    pub payload_of_previous: bool,
    /// The bytes the host sends for a payload or an engine's raw write (filler, ESC); empty
    /// for a command line (sent with its line ending).
    pub bytes: Vec<u8>,
    /// The engine sent it on its own (sentinel, filler, ESC).
    pub sentinel: bool,
    /// Device lines sent after the host line (up to and including a prompt).
    pub before_prompt: Vec<String>,
    /// For a prompt whose payload was not recorded: its length and the lines after it.
    pub unrecorded_payload: Option<(usize, Vec<String>)>,
    /// The prompt is raw (`>`): send it without a line ending.
    pub raw_prompt: bool,
    /// The prompt was a whole line that ends the command's row (`DOWNLOAD`): a recorded
    /// payload after it is a row of its own in the report; after a raw `>` or Quectel's
    /// `CONNECT` it belongs to the command's row.
    pub line_prompt: bool,
}

impl Exchange {
    fn new(host: String, payload_of_previous: bool, bytes: Vec<u8>, sentinel: bool) -> Self {
        Exchange {
            host,
            payload_of_previous,
            bytes,
            sentinel,
            before_prompt: Vec::new(),
            unrecorded_payload: None,
            raw_prompt: false,
            line_prompt: false,
        }
    }

    /// Whether this is an engine's raw write (filler, ESC) rather than a command line.
    fn is_raw_write(&self) -> bool {
        !self.payload_of_previous && !self.bytes.is_empty()
    }
}

/// A transcript turned into what the fake device does.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Device lines before the first host line.
    pub preamble: Vec<String>,
    /// The host lines and what follows each.
    pub exchanges: Vec<Exchange>,
}

/// The prompt a recorded device line is, for the command in flight.
enum SeenPrompt {
    /// A whole-line prompt (`DOWNLOAD`, `CONNECT`).
    Line,
    /// A raw `>`/`@`, and what was glued after it on the same line.
    Raw(Option<String>),
}

fn prompt_in(line: &str, cmd: &Command) -> Option<SeenPrompt> {
    let text = line.trim_end();
    match cmd.prompt.as_ref().map(|p| &p.kind) {
        Some(PromptKind::Line(l)) => (text == l).then_some(SeenPrompt::Line),
        _ => {
            if text == ">" || text == "@" {
                Some(SeenPrompt::Raw(None))
            } else if cmd.prompt.is_some() {
                let rest = text.strip_prefix('>')?.trim_start();
                (!rest.is_empty()).then(|| SeenPrompt::Raw(Some(rest.to_string())))
            } else {
                None
            }
        }
    }
}

/// A host line that is a command, not a line of a payload (a PEM body line is 64 characters of
/// base64, which may start with `AT`).
fn looks_like_command(line: &str) -> bool {
    let base64_body = line.len() == 64
        && line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    line.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("AT")) && !base64_body
}

/// `<1204 bytes, secret, not shown>` or `<1204 filler bytes>`: how atprov records bytes it
/// does not show; the number of bytes.
fn hidden_len(line: &str) -> Option<usize> {
    let inner = line.strip_prefix('<')?.strip_suffix('>')?;
    let (n, rest) = inner.split_once(' ')?;
    (rest.starts_with("bytes, secret") || rest == "filler bytes")
        .then(|| n.parse().ok())
        .flatten()
}

/// Undoes [`crate::at::text::escape`] for `\r`, `\n`, `\t`, `\0` and `\xNN`.
fn unescape(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let esc = match b[i + 1] {
                b'r' => Some((b'\r', 2)),
                b'n' => Some((b'\n', 2)),
                b't' => Some((b'\t', 2)),
                b'0' => Some((0, 2)),
                b'x' => text
                    .get(i + 2..i + 4)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .map(|v| (v, 4)),
                _ => None,
            };
            if let Some((v, used)) = esc {
                out.push(v);
                i += used;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The bytes a recorded payload line stands for, `announced` long when the command says.
fn payload_bytes(line: &str, announced: Option<usize>) -> Vec<u8> {
    if let Some(n) = hidden_len(line) {
        return vec![b'0'; announced.unwrap_or(n)];
    }
    let plain = line.as_bytes().to_vec();
    let Some(n) = announced else {
        return plain;
    };
    if plain.len() == n {
        return plain;
    }
    let mut bytes = unescape(line);
    // A capture that shows the data differently from what was sent (a terminal adds or
    // drops line ends): send the announced count, which the device waits for.
    bytes.resize(n, b'0');
    bytes
}

impl Script {
    /// Builds the script of a transcript.
    pub fn from_transcript(t: &Transcript) -> Script {
        let mut script = Script::default();
        // The exchange being built, its command (None for payloads and raw writes), whether
        // its prompt came, and the announced payload length.
        let mut current: Option<(Exchange, Option<Command>, bool)> = None;
        // Lines glued to a prompt whose data the capture shows after them: the device sends
        // them after the data.
        let mut carry: Vec<String> = Vec::new();
        // A payload the capture shows as several host lines (a PEM file): its lines so far
        // and the length the command announced.
        let mut payload: Option<(Vec<String>, Option<usize>)> = None;
        let mut iter = t.entries.iter().peekable();
        while let Some(entry) = iter.next() {
            match entry {
                Entry::Device { line, .. } => match current.as_mut() {
                    None => script.preamble.push(line.clone()),
                    Some((ex, cmd, prompt_seen)) => {
                        // An empty line right after a prompt (`> ` then CRLF) means nothing.
                        if *prompt_seen
                            && line.trim().is_empty()
                            && ex.unrecorded_payload.is_none()
                            && cmd.is_some()
                        {
                            continue;
                        }
                        if let Some((_, after)) = ex.unrecorded_payload.as_mut() {
                            after.push(line.clone());
                            continue;
                        }
                        let seen = match cmd.as_ref() {
                            Some(c) if !*prompt_seen => prompt_in(line, c),
                            _ => None,
                        };
                        let Some(seen) = seen else {
                            ex.before_prompt.push(line.clone());
                            continue;
                        };
                        *prompt_seen = true;
                        let announced = cmd
                            .as_ref()
                            .and_then(|c| c.prompt.as_ref())
                            .and_then(|p| p.announced_len);
                        let glued = match seen {
                            SeenPrompt::Line => {
                                ex.before_prompt.push(line.clone());
                                // Quectel's `CONNECT` is a data phase inside the command (one
                                // row); `DOWNLOAD` and the like end the command's own row.
                                ex.line_prompt = line.trim_end() != "CONNECT";
                                None
                            }
                            SeenPrompt::Raw(glued) => {
                                ex.before_prompt.push(if line.trim_end() == "@" {
                                    "@".into()
                                } else {
                                    ">".into()
                                });
                                ex.raw_prompt = true;
                                glued
                            }
                        };
                        let next = next_host_past_empty(&iter);
                        let payload_recorded = match (&glued, next) {
                            (_, None) => false,
                            (None, Some(_)) => true,
                            // `>+MQTTPUB:OK` and then the data: a terminal shows the data it
                            // sent after what the module printed meanwhile.
                            (Some(_), Some(data)) => announced.is_none_or(|n| n == data.len()),
                        };
                        if payload_recorded {
                            carry.extend(glued);
                        } else {
                            let after: Vec<String> = glued.into_iter().collect();
                            ex.unrecorded_payload = Some((announced.unwrap_or(0), after));
                        }
                    }
                },
                Entry::Host { line, sentinel, .. } => {
                    // More lines of a payload shorter so far than announced.
                    if let Some((lines, Some(n))) = payload.as_mut() {
                        let so_far: usize = lines.iter().map(|l| l.len() + 1).sum();
                        if so_far < *n
                            && !looks_like_command(line)
                            && current.as_ref().is_some_and(|c| c.1.is_none())
                        {
                            lines.push(line.clone());
                            continue;
                        }
                    }
                    if let (Some((lines, announced)), Some((ex, _, _))) =
                        (payload.take(), current.as_mut())
                    {
                        ex.bytes = payload_bytes(&lines.join("\n"), announced);
                        ex.host = lines.join("\n");
                    }
                    let payload_of_previous = current.as_ref().is_some_and(|(ex, cmd, seen)| {
                        *seen && ex.unrecorded_payload.is_none() && cmd.is_some()
                    });
                    let announced = current
                        .as_ref()
                        .and_then(|(_, c, _)| c.as_ref())
                        .and_then(|c| c.prompt.as_ref())
                        .and_then(|p| p.announced_len);
                    if let Some((ex, _, _)) = current.take() {
                        script.exchanges.push(ex);
                    }
                    let (bytes, cmd) = if payload_of_previous {
                        payload = Some((vec![line.clone()], announced));
                        (payload_bytes(line, announced), None)
                    } else if *sentinel && let Some(n) = hidden_len(line) {
                        (vec![b'0'; n], None)
                    } else if *sentinel && line == "\\x1b" {
                        (vec![0x1b], None)
                    } else {
                        (Vec::new(), Some(Command::new(line.clone())))
                    };
                    let mut ex = Exchange::new(line.clone(), payload_of_previous, bytes, *sentinel);
                    ex.before_prompt.append(&mut carry);
                    current = Some((ex, cmd, false));
                }
            }
        }
        if let Some(mut ex) = current.map(|c| c.0) {
            if let Some((lines, announced)) = payload {
                ex.bytes = payload_bytes(&lines.join("\n"), announced);
                ex.host = lines.join("\n");
            }
            script.exchanges.push(ex);
        }
        script
    }
}

/// The next host line, past empty device lines (which mean nothing after a prompt).
fn next_host_past_empty<'a>(
    iter: &std::iter::Peekable<std::slice::Iter<'a, Entry>>,
) -> Option<&'a String> {
    iter.clone()
        .find(|e| !matches!(e, Entry::Device { line, .. } if line.trim().is_empty()))
        .and_then(|e| match e {
            Entry::Host { line, .. } => Some(line),
            _ => None,
        })
}

/// Opens a replay port on a transcript file.
pub fn open(path: &Path) -> Result<ReplayPort, ParseError> {
    let t = Transcript::load(path)?;
    Ok(open_script(Script::from_transcript(&t)))
}

/// Starts the fake device for a script and returns the host end.
pub fn open_script(script: Script) -> ReplayPort {
    let (host, device) = tokio::io::duplex(256 * 1024);
    // The preamble is readable before the caller can send anything.
    let mut preamble = Vec::new();
    for l in &script.preamble {
        preamble.extend_from_slice(l.as_bytes());
        preamble.extend_from_slice(b"\r\n");
    }
    tokio::spawn(async move {
        let _ = serve(script, device).await;
    });
    ReplayPort {
        preamble,
        pos: 0,
        inner: host,
    }
}

/// The host end of a replay: the preamble first, then the fake device.
pub struct ReplayPort {
    preamble: Vec<u8>,
    pos: usize,
    inner: DuplexStream,
}

impl tokio::io::AsyncRead for ReplayPort {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.pos < self.preamble.len() {
            let n = (self.preamble.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.preamble[start..start + n]);
            self.pos += n;
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ReplayPort {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn lines(ls: &[String], raw_last_prompt: bool) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, l) in ls.iter().enumerate() {
        v.extend_from_slice(l.as_bytes());
        if !(raw_last_prompt && i + 1 == ls.len()) {
            v.extend_from_slice(b"\r\n");
        }
    }
    v
}

async fn serve(script: Script, mut io: DuplexStream) -> std::io::Result<()> {
    let mut input: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    for ex in &script.exchanges {
        if !ex.bytes.is_empty() {
            fill(&mut io, &mut input, &mut buf, ex.bytes.len()).await?;
            input.drain(..ex.bytes.len());
        } else if ex.payload_of_previous {
            // An empty payload: nothing to read.
        } else {
            loop {
                let line = read_line(&mut io, &mut input, &mut buf).await?;
                if line == ex.host {
                    break;
                }
                if line.eq_ignore_ascii_case("AT") {
                    io.write_all(b"\r\nOK\r\n").await?;
                    continue;
                }
                tracing::warn!(
                    "replay: expected `{}`, got `{}`",
                    ex.host,
                    crate::at::text::escape(line.as_bytes())
                );
                io.write_all(b"\r\nERROR\r\n").await?;
            }
        }
        let prompt_last = ex.raw_prompt;
        io.write_all(&lines(&ex.before_prompt, prompt_last)).await?;
        if let Some((len, after)) = &ex.unrecorded_payload {
            fill(&mut io, &mut input, &mut buf, *len).await?;
            input.drain(..*len);
            io.write_all(&lines(after, false)).await?;
        }
    }
    // Answer sentinels until the host hangs up, so a trailing timeout can resync.
    loop {
        match read_line(&mut io, &mut input, &mut buf).await {
            Ok(l) if l.eq_ignore_ascii_case("AT") => io.write_all(b"\r\nOK\r\n").await?,
            Ok(_) => io.write_all(b"\r\nERROR\r\n").await?,
            Err(_) => return Ok(()),
        }
    }
}

async fn fill(
    io: &mut DuplexStream,
    input: &mut Vec<u8>,
    buf: &mut [u8],
    n: usize,
) -> std::io::Result<()> {
    while input.len() < n {
        let got = io.read(buf).await?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        input.extend_from_slice(&buf[..got]);
    }
    Ok(())
}

async fn read_line(
    io: &mut DuplexStream,
    input: &mut Vec<u8>,
    buf: &mut [u8],
) -> std::io::Result<String> {
    loop {
        while let Some(pos) = input.iter().position(|&b| b == b'\r' || b == b'\n') {
            let line: Vec<u8> = input.drain(..=pos).collect();
            if line.last() == Some(&b'\r') && input.first() == Some(&b'\n') {
                input.remove(0);
            }
            let line = &line[..line.len() - 1];
            if !line.is_empty() {
                return Ok(String::from_utf8_lossy(line).into_owned());
            }
        }
        let got = io.read(buf).await?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        input.extend_from_slice(&buf[..got]);
    }
}

/// One row of the replay report.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A command the host sent, and what belonged to it.
    Command {
        /// The command line (as shown).
        command: String,
        /// The module echoed it.
        echo: bool,
        /// Its final line.
        final_line: Option<String>,
        /// Its prompt.
        prompt: Option<String>,
        /// The payload sent after the prompt, as shown (secret payloads as their length).
        payload: Option<String>,
        /// Its information lines.
        info: Vec<String>,
        /// URCs that arrived meanwhile.
        urcs: Vec<String>,
        /// How it ended: `ok`, `error`, `timeout`, `reset`, `busy`, `wants_data`.
        status: &'static str,
        /// It got no answer in time.
        timeout: bool,
        /// The engine sent it on its own (a resync sentinel), not the caller.
        sentinel: bool,
    },
    /// A line that belonged to no command.
    Unsolicited(String),
}

impl Row {
    fn command(command: String, sentinel: bool) -> Row {
        Row::Command {
            command,
            echo: false,
            final_line: None,
            prompt: None,
            payload: None,
            info: Vec::new(),
            urcs: Vec::new(),
            status: "timeout",
            timeout: false,
            sentinel,
        }
    }

    /// The row as a JSON object (the replay schema).
    pub fn json(&self) -> Value {
        match self {
            Row::Command {
                command,
                echo,
                final_line,
                prompt,
                payload,
                info,
                urcs,
                status,
                timeout,
                sentinel,
            } => json!({
                "command": command, "echo": echo, "final": final_line, "prompt": prompt,
                "payload": payload, "info": info, "urcs": urcs, "status": status,
                "timeout": timeout, "sentinel": sentinel,
            }),
            Row::Unsolicited(l) => json!({ "unsolicited": l }),
        }
    }
}

/// A replay's result: the rows in wire order, and the commands whose outcome differs from
/// the recording.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// One row per recorded host command, and the unsolicited lines, in wire order.
    pub rows: Vec<Row>,
    /// Commands with a final result in the recording and none in the replay, as
    /// `#N COMMAND` (1-based among the commands).
    pub differed: Vec<String>,
}

impl Replayed {
    /// The failure to report when the replay differs from the recording.
    pub fn failure(&self) -> Option<Failure> {
        let first = self.differed.first()?;
        Some(Failure::new(
            Code::VerifyMismatch,
            format!(
                "the replay differs from the recording at {} command(s), first {first}: the recording shows a final result for it, the replay none",
                self.differed.len()
            ),
        ))
    }
}

/// Replays a transcript through the real engine and returns the classification in wire order,
/// one row per recorded command whatever happens. Runs on a virtual clock in a thread of its
/// own, so a timeout costs no real time.
pub async fn replay(transcript: &Transcript, timeout: Duration) -> Result<Vec<Row>, Failure> {
    Ok(replay_report(transcript, timeout).await?.rows)
}

/// [`replay`], with the commands whose outcome differs from the recording.
pub async fn replay_report(
    transcript: &Transcript,
    timeout: Duration,
) -> Result<Replayed, Failure> {
    let script = Script::from_transcript(transcript);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("atprov-replay".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build();
            let result = match runtime {
                Ok(rt) => Ok(rt.block_on(replay_script(script, timeout))),
                Err(e) => Err(Failure::new(
                    Code::Internal,
                    format!("cannot start the replay's runtime: {e}"),
                )),
            };
            let _ = tx.send(result);
        })
        .map_err(|e| Failure::new(Code::Internal, format!("cannot start the replay: {e}")))?;
    rx.await
        .map_err(|_| Failure::new(Code::Internal, "the replay stopped unexpectedly"))?
}

async fn replay_script(script: Script, timeout: Duration) -> Replayed {
    let port = open_script(script.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = EngineConfig {
        resync: false,
        boot_window: Duration::ZERO,
        ..EngineConfig::default()
    };
    let (engine, task) = Engine::start(Box::new(port), config, Some(tx));
    // Per caller command (in order): whether its recorded payload gets a row of its own,
    // and whether the engine sent it on its own.
    let mut plan = Vec::new();
    let mut broken: Option<String> = None;
    let mut i = 0;
    while i < script.exchanges.len() {
        let ex = &script.exchanges[i];
        i += 1;
        if broken.is_some() {
            if !ex.payload_of_previous && !ex.is_raw_write() {
                plan.push((ex.host.clone(), false, ex.sentinel, false));
            }
            continue;
        }
        if ex.is_raw_write() {
            if let Err(e) = engine.write_raw(ex.bytes.clone()).await {
                broken = Some(e.to_string());
            }
            continue;
        }
        // A capture that left the data out: the device waits for the announced bytes.
        let mut cmd = Command::new(ex.host.clone())
            .timeout(timeout)
            .no_busy_retry()
            .filler_payload();
        let recorded = script
            .exchanges
            .get(i)
            .filter(|next| next.payload_of_previous);
        if let Some(p) = recorded {
            cmd = cmd.payload(p.bytes.clone());
            i += 1;
        }
        plan.push((
            ex.host.clone(),
            recorded.is_some() && ex.line_prompt,
            ex.sentinel,
            true,
        ));
        if let Err(e) = engine.run(cmd).await {
            broken = Some(e.to_string());
        }
    }
    drop(engine);
    let _ = task.await;
    let mut events = Vec::new();
    while let Some(ev) = rx.recv().await {
        events.push(ev);
    }
    let splits: Vec<(bool, bool)> = plan.iter().map(|p| (p.1, p.2)).collect();
    let mut rows = rows_from_trace(&events, &splits);
    // Commands that never reached the wire (the link broke) still get their row.
    let sent = plan.iter().filter(|p| p.3).count();
    let on_wire = rows
        .iter()
        .filter(|r| matches!(r, Row::Command { .. }))
        .count()
        .saturating_sub(splits.iter().filter(|s| s.0).count());
    for (host, _, sentinel, _) in plan.iter().skip(on_wire.min(sent)) {
        let mut row = Row::command(host.clone(), *sentinel);
        if let Row::Command { timeout, .. } = &mut row {
            *timeout = true;
        }
        rows.push(row);
    }
    if let Some(e) = broken {
        tracing::warn!("replay: the link broke ({e}); later commands are shown unanswered");
    }
    let differed = differences(&script, &rows, &splits);
    Replayed { rows, differed }
}

/// Commands that timed out in the replay although the recording shows a final result after
/// them.
fn differences(script: &Script, rows: &[Row], splits: &[(bool, bool)]) -> Vec<String> {
    let answered: Vec<bool> = script
        .exchanges
        .iter()
        .filter(|e| !e.payload_of_previous && !e.is_raw_write())
        .map(|e| {
            let is_final = |l: &String| crate::at::classify::final_code(l.trim_end()).is_some();
            e.before_prompt.iter().any(is_final)
                || e.unrecorded_payload
                    .as_ref()
                    .is_some_and(|(_, after)| after.iter().any(is_final))
        })
        .collect();
    let mut out = Vec::new();
    let mut n = 0;
    let mut skip_payload_row = false;
    for r in rows {
        let Row::Command {
            command, timeout, ..
        } = r
        else {
            continue;
        };
        if std::mem::take(&mut skip_payload_row) {
            continue;
        }
        if *timeout && answered.get(n).copied().unwrap_or(false) {
            out.push(format!("#{} `{command}`", n + 1));
        }
        skip_payload_row = splits.get(n).is_some_and(|s| s.0);
        n += 1;
    }
    out
}

/// Builds report rows from a trace. `splits[i]` says of caller command `i` whether its payload
/// was recorded as its own host line after a line prompt (it then gets its own row, starting
/// at the payload) and whether the engine sent it on its own (a sentinel).
pub fn rows_from_trace(events: &[TraceEvent], splits: &[(bool, bool)]) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut open: Option<usize> = None;
    // The oldest command that timed out and may still be running in the module.
    let mut lingering: Option<usize> = None;
    let mut index = 0usize;
    for ev in events {
        match ev {
            TraceEvent::Tx {
                text,
                payload,
                sentinel,
                secret,
                len,
                ..
            } => {
                let shown = if *secret {
                    format!("<{len} bytes, secret, not shown>")
                } else {
                    text.clone()
                };
                if !*payload {
                    let recorded_sentinel = splits.get(index).is_some_and(|s| s.1);
                    rows.push(Row::command(text.clone(), *sentinel || recorded_sentinel));
                    open = Some(rows.len() - 1);
                    index += 1;
                } else if splits.get(index.wrapping_sub(1)).is_some_and(|s| s.0) {
                    rows.push(Row::command(shown, false));
                    if let Some(Row::Command { payload, .. }) = rows.last_mut() {
                        *payload = Some(text.clone());
                    }
                    open = Some(rows.len() - 1);
                } else if let Some(Row::Command { payload, .. }) =
                    open.and_then(|i| rows.get_mut(i))
                {
                    *payload = Some(shown);
                }
            }
            TraceEvent::Rx { text, class, .. }
                if matches!(class, RxClass::LateInfo | RxClass::LateFinal) =>
            {
                if let Some(Row::Command {
                    info,
                    final_line,
                    status,
                    timeout,
                    ..
                }) = lingering.and_then(|i| rows.get_mut(i))
                {
                    if *class == RxClass::LateFinal {
                        *final_line = Some(text.clone());
                        *timeout = false;
                        *status =
                            if crate::at::classify::final_code(text).is_some_and(|c| c.is_ok()) {
                                "ok"
                            } else {
                                "error"
                            };
                        lingering = None;
                    } else {
                        info.push(text.clone());
                    }
                }
            }
            TraceEvent::Rx { text, class, .. } => {
                if *class == RxClass::Unsolicited || open.is_none() {
                    rows.push(Row::Unsolicited(text.clone()));
                    continue;
                }
                let Some(Row::Command {
                    echo,
                    final_line,
                    prompt,
                    info,
                    urcs,
                    ..
                }) = open.and_then(|i| rows.get_mut(i))
                else {
                    continue;
                };
                match class {
                    RxClass::Echo => *echo = true,
                    RxClass::Info | RxClass::Completion => info.push(text.clone()),
                    RxClass::Prompt => *prompt = Some(text.clone()),
                    RxClass::Final | RxClass::Busy => *final_line = Some(text.clone()),
                    RxClass::Urc => urcs.push(text.clone()),
                    RxClass::Unsolicited | RxClass::LateInfo | RxClass::LateFinal => {}
                }
            }
            TraceEvent::Done { response, .. } => {
                if let Some(Row::Command {
                    timeout,
                    final_line,
                    status,
                    ..
                }) = open.and_then(|i| rows.get_mut(i))
                {
                    *timeout = matches!(response.status, Status::Timeout { .. });
                    *status = response.status.word();
                    // As the session keeps it: the oldest command that timed out waiting for
                    // its final, until a later command ends normally or the module restarts.
                    match response.status {
                        Status::Timeout {
                            phase: crate::at::Phase::Final | crate::at::Phase::Prompt,
                        } if lingering.is_none() => lingering = open,
                        Status::Timeout { .. } | Status::Busy | Status::WantsData => {}
                        _ => lingering = None,
                    }
                    if response.final_line.is_none() {
                        *final_line = None;
                    }
                }
                open = None;
            }
            TraceEvent::Note { .. } => {}
        }
    }
    rows
}
