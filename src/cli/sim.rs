//! `atprov sim NAME --pty`: serve a built-in emulator on a pseudo-terminal until stopped.

use std::time::Duration;

use crate::exit::{Code, Failure};
use crate::sim::{self, RunnerOptions, SimControl};

#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// The emulator: esp32-at or esp32-at-v2.
    pub name: String,
    /// Serve on a new pseudo-terminal and print its path on the first line of stdout.
    #[arg(long)]
    pub pty: bool,
    /// Pace output at this baud rate, like a real UART.
    #[arg(long)]
    pub baud: Option<u32>,
    /// Firmware time per command (e.g. 2ms).
    #[arg(long, default_value = "0ms", value_parser = crate::util::parse_duration)]
    pub latency: Duration,
}

pub async fn run(args: SimArgs) -> Result<(), Failure> {
    let model = sim::model(&args.name).map_err(Failure::usage)?;
    if !args.pty {
        return Err(Failure::usage(
            "atprov sim needs --pty (serve on a pseudo-terminal); in-process use is --port sim:NAME",
        ));
    }
    let pty = sim::pty::open().map_err(|e| {
        Failure::new(
            Code::Internal,
            format!("cannot open a pseudo-terminal: {e}"),
        )
    })?;
    println!("{}", pty.path);
    let options = RunnerOptions {
        baud: args.baud,
        latency: args.latency,
        boot_banner: false,
    };
    let task = model.into_run(Box::new(pty.master), options, SimControl::default());
    tokio::select! {
        r = task => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::new(Code::Internal, format!("emulator stopped: {e}"))),
            Err(e) => Err(Failure::new(Code::Internal, format!("emulator crashed: {e}"))),
        },
        _ = shutdown() => Ok(()),
    }
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
