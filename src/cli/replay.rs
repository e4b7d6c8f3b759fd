//! `atprov replay FILE`: replay a recorded transcript against a fake device answering as the
//! recording did, and show how the engine classifies every line.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::at::session::RxClass;
use crate::at::{Command, Engine, EngineConfig, Status, TraceEvent};
use crate::exit::Failure;
use crate::sim::replay::{Script, open_script};
use crate::transcript::Transcript;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The transcript file.
    pub file: PathBuf,
    /// One JSON object per host command, and `{"unsolicited": ...}` for lines outside any.
    #[arg(long)]
    pub json: bool,
    /// Time for each command's answer before it counts as a timeout.
    #[arg(long, default_value = "500ms", value_parser = crate::util::parse_timeout)]
    pub timeout: Duration,
}

/// One row of the replay report.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Command {
        command: String,
        echo: bool,
        final_line: Option<String>,
        prompt: Option<String>,
        info: Vec<String>,
        urcs: Vec<String>,
        timeout: bool,
    },
    Unsolicited(String),
}

impl Row {
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

pub async fn run(args: ReplayArgs) -> Result<(), Failure> {
    let transcript = Transcript::load(&args.file)?;
    let rows = replay(&transcript, args.timeout).await?;
    if args.json {
        for r in &rows {
            println!("{}", r.json());
        }
        return Ok(());
    }
    println!(
        "{:<4} {:<44} {:<5} {:<22} info / urcs",
        "#", "command", "echo", "final"
    );
    let mut n = 0;
    for r in &rows {
        match r {
            Row::Command {
                command,
                echo,
                final_line,
                prompt,
                info,
                urcs,
                timeout,
            } => {
                n += 1;
                let fin = match (final_line, prompt, timeout) {
                    (_, _, true) => "(timeout)".to_string(),
                    (Some(f), _, _) => f.clone(),
                    (None, Some(p), _) => format!("prompt {p}"),
                    (None, None, _) => "-".into(),
                };
                let shown: String = command.chars().take(44).collect();
                println!(
                    "{n:<4} {shown:<44} {:<5} {fin:<22} {}{}",
                    if *echo { "yes" } else { "no" },
                    info.join(" | "),
                    if urcs.is_empty() {
                        String::new()
                    } else {
                        format!("  urcs: {}", urcs.join(" | "))
                    }
                );
            }
            Row::Unsolicited(l) => println!("     ~~ {l}"),
        }
    }
    Ok(())
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
