//! `atprov send`: run commands one after another and show what each produced.

use std::time::Duration;

use crate::at::Command;
use crate::error::{Failure, code_for_status};

use crate::args::PortArgs;
use crate::render;

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub port: PortArgs,
    /// Time for each command's final result (500ms, 2s, ...).
    #[arg(long, default_value = "5s", value_parser = crate::units::parse_timeout)]
    pub timeout: Duration,
    /// One JSON object per command on stdout.
    #[arg(long)]
    pub json: bool,
    /// Keep going after a command fails (the exit code is still that of the first failure).
    #[arg(long)]
    pub keep_going: bool,
    /// Data the last command sends after its prompt (`>`, `DOWNLOAD`, `CONNECT`), e.g.
    /// `send 'AT+CMGS="+123"' --data $'hi\x1a'`. Without it, a command that gets a prompt
    /// ends saying the module wants data.
    #[arg(long, value_name = "TEXT", conflicts_with = "payload")]
    pub data: Option<String>,
    /// Like --data, the bytes of FILE.
    #[arg(long, value_name = "FILE")]
    pub payload: Option<std::path::PathBuf>,
    /// The commands, e.g. AT AT+GMR 'AT+CWMODE?'.
    #[arg(required = true, value_name = "CMD")]
    pub commands: Vec<String>,
}

pub async fn run(args: SendArgs) -> Result<(), Failure> {
    for c in &args.commands {
        if c.contains(['\r', '\n']) {
            return Err(Failure::usage(format!(
                "command `{}` contains a line break: pass each command as its own argument",
                crate::at::text::escape(c.as_bytes())
            )));
        }
    }
    let data = match (&args.data, &args.payload) {
        (Some(d), _) => Some(d.as_bytes().to_vec()),
        (None, Some(p)) => {
            Some(std::fs::read(p).map_err(|e| Failure::unreadable(p.display(), &e))?)
        }
        (None, None) => None,
    };
    let link = args.port.link().open(None).await?;
    let mut unsolicited = link.engine.subscribe();
    let mut first_failure: Option<Failure> = None;
    let mut scrubber = crate::at::redact::Scrubber::new();
    let last = args.commands.len() - 1;
    for (i, line) in args.commands.iter().enumerate() {
        let mut cmd = Command::new(line.clone()).timeout(args.timeout);
        if let Some(d) = data.as_ref().filter(|_| i == last) {
            cmd = cmd.payload(d.clone());
        }
        let resp = match link.engine.run(cmd).await {
            Ok(r) => r,
            Err(e) => {
                first_failure.get_or_insert(e.into());
                break;
            }
        };
        if args.json {
            render::json_line(render::response_json(&resp));
        } else {
            print!("{}", render::response_text(&resp));
        }
        // Lines that belonged to no command (in-window URCs are part of the response).
        while let Ok(u) = unsolicited.try_recv() {
            if u.during.is_none() {
                let line = scrubber.scrub(&u.line);
                if args.json {
                    render::json_line(serde_json::json!({ "unsolicited": line }));
                } else {
                    println!("~ unsolicited {line}");
                }
            }
        }
        if !resp.is_ok() {
            first_failure
                .get_or_insert(Failure::new(code_for_status(&resp.status), resp.summary()));
            if !args.keep_going {
                break;
            }
        }
    }
    link.close().await;
    match first_failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}
