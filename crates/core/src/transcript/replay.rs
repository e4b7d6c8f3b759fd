//! The transcript replayer: a fake device that answers as a recorded session did.
//!
//! It waits for each recorded host line and then sends the device lines recorded after it. A
//! command whose prompt was recorded (`DOWNLOAD`, `CONNECT`, `>`) sends the lines up to the
//! prompt, takes the payload (the next recorded host line when its length is the announced
//! one; otherwise the announced number of bytes, which captures leave out), then sends the
//! rest. Device lines before the first host line are sent at once. An unscripted `AT` (the
//! engine's resync sentinel) is answered `OK`; any other unexpected line gets `ERROR` and a
//! warning. When the script is done the device hangs up.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::at::command::{Command, PromptKind};
use crate::at::session::RxClass;
use crate::at::{Engine, EngineConfig, Status, TraceEvent};
use crate::error::Failure;
use crate::transcript::{Entry, ParseError, Transcript};

/// What the fake device expects from the host next, and what it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The recorded host line (a command, or a payload when `payload_of_previous`).
    pub host: String,
    /// Whether `host` is the payload after the previous command's prompt.
    pub payload_of_previous: bool,
    /// Device lines sent after the host line (up to and including a prompt).
    pub before_prompt: Vec<String>,
    /// For a prompt whose payload was not recorded: its length and the lines after it.
    pub unrecorded_payload: Option<(usize, Vec<String>)>,
    /// The prompt is raw (`>`): send it without a line ending.
    pub raw_prompt: bool,
}

/// A transcript turned into what the fake device does.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Device lines before the first host line.
    pub preamble: Vec<String>,
    /// The host lines and what follows each.
    pub exchanges: Vec<Exchange>,
}

impl Script {
    /// Builds the script of a transcript.
    pub fn from_transcript(t: &Transcript) -> Script {
        let mut script = Script::default();
        let mut current: Option<(Exchange, Option<Command>, bool)> = None;
        let mut iter = t.entries.iter().peekable();
        while let Some(entry) = iter.next() {
            match entry {
                Entry::Device { line, .. } => match current.as_mut() {
                    None => script.preamble.push(line.clone()),
                    Some((ex, cmd, prompt_seen)) => {
                        let prompt = cmd.as_ref().and_then(|c| c.prompt.as_ref());
                        let is_prompt = !*prompt_seen
                            && prompt.is_some_and(|p| p.kind.text() == line.trim_end());
                        if let Some((_, after)) = ex.unrecorded_payload.as_mut() {
                            after.push(line.clone());
                        } else {
                            ex.before_prompt.push(line.clone());
                        }
                        if is_prompt {
                            *prompt_seen = true;
                            let p = prompt.expect("checked");
                            ex.raw_prompt = p.kind == PromptKind::Raw;
                            let len = p.announced_len.unwrap_or(0);
                            let next_is_payload = next_host(&mut iter)
                                .is_some_and(|h| h.len() == len || p.announced_len.is_none());
                            if !next_is_payload {
                                ex.unrecorded_payload = Some((len, Vec::new()));
                            }
                        }
                    }
                },
                Entry::Host { line, .. } => {
                    let payload_of_previous = current.as_ref().is_some_and(|(ex, _, seen)| {
                        *seen && ex.unrecorded_payload.is_none() && !ex.payload_of_previous
                    });
                    if let Some((ex, _, _)) = current.take() {
                        script.exchanges.push(ex);
                    }
                    let cmd = (!payload_of_previous).then(|| Command::new(line.clone()));
                    current = Some((
                        Exchange {
                            host: line.clone(),
                            payload_of_previous,
                            before_prompt: Vec::new(),
                            unrecorded_payload: None,
                            raw_prompt: false,
                        },
                        cmd,
                        false,
                    ));
                }
            }
        }
        if let Some((ex, _, _)) = current {
            script.exchanges.push(ex);
        }
        script
    }
}

fn next_host<'a>(
    iter: &mut std::iter::Peekable<std::slice::Iter<'a, Entry>>,
) -> Option<&'a String> {
    match iter.peek() {
        Some(Entry::Host { line, .. }) => Some(line),
        _ => None,
    }
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
        if ex.payload_of_previous {
            fill(&mut io, &mut input, &mut buf, ex.host.len()).await?;
            input.drain(..ex.host.len());
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
        /// Its information lines.
        info: Vec<String>,
        /// URCs that arrived meanwhile.
        urcs: Vec<String>,
        /// It got no answer in time.
        timeout: bool,
    },
    /// A line that belonged to no command.
    Unsolicited(String),
}

impl Row {
    /// The row as a JSON object (the replay schema).
    pub fn json(&self) -> Value {
        match self {
            Row::Command {
                command,
                echo,
                final_line,
                prompt,
                info,
                urcs,
                timeout,
            } => json!({
                "command": command, "echo": echo, "final": final_line, "prompt": prompt,
                "info": info, "urcs": urcs, "timeout": timeout,
            }),
            Row::Unsolicited(l) => json!({ "unsolicited": l }),
        }
    }
}

/// Replays a transcript through the real engine and returns the classification in wire order.
pub async fn replay(transcript: &Transcript, timeout: Duration) -> Result<Vec<Row>, Failure> {
    let script = Script::from_transcript(transcript);
    let port = open_script(script.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (engine, task) = Engine::start(Box::new(port), EngineConfig::default(), Some(tx));
    let mut splits = Vec::new();
    let mut i = 0;
    while i < script.exchanges.len() {
        let ex = &script.exchanges[i];
        let mut cmd = Command::new(ex.host.clone())
            .timeout(timeout)
            .no_busy_retry();
        let recorded_payload = script
            .exchanges
            .get(i + 1)
            .filter(|next| next.payload_of_previous);
        if let Some(p) = recorded_payload {
            cmd = cmd.payload(p.host.clone().into_bytes());
            i += 1;
        }
        splits.push(recorded_payload.is_some());
        engine.run(cmd).await?;
        i += 1;
    }
    drop(engine);
    let _ = task.await;
    let mut events = Vec::new();
    while let Some(ev) = rx.recv().await {
        events.push(ev);
    }
    Ok(rows_from_trace(&events, &splits))
}

/// Builds report rows from a trace. `splits[i]` says whether caller command `i` had its payload
/// recorded as its own host line (it then gets its own row, starting at the payload).
pub fn rows_from_trace(events: &[TraceEvent], splits: &[bool]) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut open: Option<usize> = None;
    let mut in_sentinel = false;
    let mut index = 0usize;
    let new_row = |command: String| Row::Command {
        command,
        echo: false,
        final_line: None,
        prompt: None,
        info: Vec::new(),
        urcs: Vec::new(),
        timeout: false,
    };
    for ev in events {
        match ev {
            TraceEvent::Tx {
                text,
                payload,
                sentinel,
                ..
            } => {
                if *sentinel {
                    in_sentinel = true;
                    continue;
                }
                in_sentinel = false;
                if !*payload {
                    rows.push(new_row(text.clone()));
                    open = Some(rows.len() - 1);
                    index += 1;
                } else if splits.get(index.wrapping_sub(1)).copied().unwrap_or(false) {
                    rows.push(new_row(text.clone()));
                    open = Some(rows.len() - 1);
                }
            }
            TraceEvent::Rx { text, class, .. } => {
                if *class == RxClass::Unsolicited || open.is_none() {
                    if !in_sentinel || *class == RxClass::Unsolicited {
                        rows.push(Row::Unsolicited(text.clone()));
                    }
                    continue;
                }
                if in_sentinel {
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
                    RxClass::Unsolicited => {}
                }
            }
            TraceEvent::Done { response, .. } => {
                if let Some(Row::Command {
                    timeout,
                    final_line,
                    ..
                }) = open.and_then(|i| rows.get_mut(i))
                {
                    *timeout = matches!(response.status, Status::Timeout { .. });
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
