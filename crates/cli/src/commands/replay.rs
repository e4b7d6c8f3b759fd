//! `atprov replay FILE`: replay a recorded transcript against a fake device answering as the
//! recording did, and show how the engine classifies every line.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Failure;
use crate::transcript::Transcript;
use crate::transcript::replay::{Row, replay_report};

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The transcript file.
    pub file: PathBuf,
    /// One JSON object per host command, and `{"unsolicited": ...}` for lines outside any.
    #[arg(long)]
    pub json: bool,
    /// Time for each command's answer before it counts as a timeout. The replay runs on a
    /// virtual clock: waiting costs no real time.
    #[arg(long, default_value = "5s", value_parser = crate::units::parse_timeout)]
    pub timeout: Duration,
}

pub async fn run(args: ReplayArgs) -> Result<(), Failure> {
    let transcript = Transcript::load(&args.file)?;
    let replayed = replay_report(&transcript, args.timeout).await?;
    let rows = &replayed.rows;
    if args.json {
        for r in rows {
            crate::render::json_line(r.json());
        }
        return replayed.failure().map_or(Ok(()), Err);
    }
    println!(
        "{:<4} {:<44} {:<5} {:<22} info / urcs",
        "#", "command", "echo", "final"
    );
    let mut n = 0;
    for r in rows {
        match r {
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
            } => {
                n += 1;
                let fin = match (final_line, prompt, timeout) {
                    (_, _, true) => "(timeout)".to_string(),
                    (Some(f), _, _) => f.clone(),
                    (None, Some(p), _) => format!("prompt {p}"),
                    (None, None, _) => format!("({status})"),
                };
                let mut shown = command.clone();
                if *sentinel {
                    shown = format!("{shown} (atprov's own)");
                }
                let shown: String = shown.chars().take(44).collect();
                let data = payload
                    .as_ref()
                    .map(|p| format!("data {} ", p.chars().take(30).collect::<String>()))
                    .unwrap_or_default();
                println!(
                    "{n:<4} {shown:<44} {:<5} {fin:<22} {data}{}{}",
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
    replayed.failure().map_or(Ok(()), Err)
}
