//! `atprov console`: an interactive terminal. Typed lines are sent as commands; everything the
//! device says is shown with a timestamp (seconds since the console started, or ISO 8601 wall
//! clock), URCs marked, payloads escaped. When the port goes away (a USB adapter unplugged, a
//! module's USB port re-enumerating after a restart) it waits for it to come back and
//! reconnects, saying so, like tio. Ctrl-D or a line `~.` exits.

use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::at::session::RxClass;
use crate::at::{Command, TraceEvent};
use crate::error::Failure;

use crate::args::PortArgs;

#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub port: PortArgs,
    /// Time for each command's final result.
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_timeout)]
    pub timeout: Duration,
    /// How lines are stamped: seconds since the console started, or the wall-clock time
    /// (ISO 8601, UTC, milliseconds).
    #[arg(long, value_enum, default_value = "relative")]
    pub timestamps: Timestamps,
}

/// How console lines are stamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Timestamps {
    /// Seconds since the console started.
    Relative,
    /// Wall-clock time, ISO 8601 UTC.
    Iso,
}

/// One connection to the port: its engine, the task printing its traffic, and the
/// transcript's task. The engine's own task is kept apart: it ends when the port goes away.
struct Connection {
    engine: crate::at::Engine,
    trace_task: Option<tokio::task::JoinHandle<()>>,
    printer: tokio::task::JoinHandle<()>,
}

/// How often a port that went away is looked for again.
const RECONNECT_EVERY: Duration = Duration::from_millis(300);

async fn connect(
    args: &ConsoleArgs,
    started: Instant,
) -> Result<(Connection, tokio::task::JoinHandle<()>), Failure> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let link = args.port.link().open(Some(tx)).await?;
    // Trace times count from this engine's start: shift them to the console's.
    let offset = started.elapsed();
    let wall = time::OffsetDateTime::now_utc();
    let stamps = args.timestamps;
    let printer = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let stamp = |at: &Duration| match stamps {
                Timestamps::Relative => format!("{:>10.3}", (offset + *at).as_secs_f64()),
                Timestamps::Iso => atprov_core::factory::utc_millis_of(wall + *at),
            };
            if let Some(line) = render(&ev, &stamp) {
                println!("{line}");
            }
        }
    });
    let connection = Connection {
        engine: link.engine,
        trace_task: link.trace_task,
        printer,
    };
    Ok((connection, link.engine_task))
}

async fn disconnect(c: Connection, engine_task: Option<tokio::task::JoinHandle<()>>) {
    drop(c.engine);
    if let Some(t) = engine_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    if let Some(t) = c.trace_task {
        let _ = t.await;
    }
    let _ = c.printer.await;
}

pub async fn run(args: ConsoleArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let (first, task) = connect(&args, started).await?;
    let mut conn = Some(first);
    let mut engine_task = Some(task);
    let port = &args.port.port;
    eprintln!("atprov console on {port}: type AT commands; Ctrl-D or `~.` exits");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut result = Ok(());
    loop {
        let engine_gone = async {
            match engine_task.as_mut() {
                Some(t) => {
                    let _ = t.await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = engine_gone => {
                // The port closed under the engine (unplugged, re-enumerated).
                engine_task = None;
                if let Some(c) = conn.take() {
                    disconnect(c, None).await;
                }
                eprintln!("atprov: {port} went away; waiting for it to come back (Ctrl-D or `~.` quits)");
            }
            () = tokio::time::sleep(RECONNECT_EVERY), if conn.is_none() => {
                if let Ok((c, t)) = connect(&args, started).await {
                    eprintln!("atprov: {port} is back: reconnected");
                    conn = Some(c);
                    engine_task = Some(t);
                }
            }
            line = lines.next_line() => {
                let line = match line {
                    Ok(Some(l)) => l,
                    Ok(None) => break,
                    Err(e) => {
                        result = Err(Failure::usage(format!("cannot read the terminal: {e}")));
                        break;
                    }
                };
                let line = line.trim_end_matches(['\r', '\n']).to_string();
                if line == "~." {
                    break;
                }
                if line.is_empty() {
                    continue;
                }
                let Some(c) = conn.as_ref() else {
                    eprintln!("atprov: {port} is not there; `{line}` was not sent");
                    continue;
                };
                let sent = c.engine.run(Command::new(line).timeout(args.timeout)).await;
                if let Err(e) = sent {
                    let f: Failure = e.into();
                    eprintln!("atprov: {}", f.message);
                }
            }
        }
    }
    if let Some(c) = conn {
        disconnect(c, engine_task).await;
    }
    result
}

fn render(ev: &TraceEvent, stamp: &dyn Fn(&Duration) -> String) -> Option<String> {
    Some(match ev {
        TraceEvent::Tx {
            at,
            text,
            secret,
            len,
            ..
        } => {
            if *secret {
                format!("{} >> <{len} bytes, secret>", stamp(at))
            } else {
                format!("{} >> {text}", stamp(at))
            }
        }
        TraceEvent::Rx {
            at, text, class, ..
        } => {
            let mark = match class {
                RxClass::Urc | RxClass::Unsolicited => "~~ urc",
                RxClass::Echo => "<< echo",
                RxClass::Prompt => "<< prompt",
                RxClass::Final => "<< final",
                RxClass::LateInfo => "<< late",
                RxClass::LateFinal => "<< late final",
                _ => "<<",
            };
            format!("{} {mark} {text}", stamp(at))
        }
        TraceEvent::Note { at, text } => format!("{} -- {text}", stamp(at)),
        TraceEvent::Done { .. } => return None,
    })
}
