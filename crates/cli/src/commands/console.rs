//! `atprov console`: an interactive terminal. Typed lines are sent as commands; everything the
//! device says is shown with a timestamp, URCs marked, payloads escaped. Ctrl-D or a line `~.`
//! exits.

use std::time::Duration;

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
}

pub async fn run(args: ConsoleArgs) -> Result<(), Failure> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let link = args.port.link().open(Some(tx)).await?;
    eprintln!(
        "atprov console on {}: type AT commands; Ctrl-D or `~.` exits",
        args.port.port
    );
    let printer = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if let Some(line) = render(&ev) {
                println!("{line}");
            }
        }
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut result = Ok(());
    loop {
        let line = match lines.next_line().await {
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
        if let Err(e) = link
            .engine
            .run(Command::new(line).timeout(args.timeout))
            .await
        {
            result = Err(e.into());
            break;
        }
    }
    link.close().await;
    let _ = printer.await;
    result
}

fn render(ev: &TraceEvent) -> Option<String> {
    let stamp = |at: &Duration| format!("{:>10.3}", at.as_secs_f64());
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
