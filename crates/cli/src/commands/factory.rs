//! `atprov factory --config factory.toml` and `atprov factory report --journal F`.

use std::path::PathBuf;

use crate::error::{Code, Failure};
use crate::factory::config::FactoryConfig;
use crate::factory::events::JsonLines;
use crate::factory::journal::{Journal, open_existing};
use crate::factory::{self, RunOptions, report};
use crate::progress::Board;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FactoryArgs {
    /// The line's configuration (stations, profile, job, pool, journal, policy).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write JSON-lines events to FILE (appended), or `-` for stdout.
    #[arg(long, value_name = "FILE")]
    pub events: Option<String>,
    /// Stop once this many distinct units have passed (counted in the journal, so a restart
    /// continues the same batch).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: Option<u64>,
    #[command(subcommand)]
    pub command: Option<FactoryCommand>,
}

#[derive(Debug, clap::Subcommand)]
pub enum FactoryCommand {
    /// Every attempt in a journal: unit, thing name, certificate fingerprint, station, times,
    /// stage durations, result and reason.
    Report(ReportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The journal (SQLite file).
    #[arg(long, value_name = "FILE")]
    pub journal: PathBuf,
    /// CSV on stdout.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: FactoryArgs) -> Result<(), Failure> {
    if let Some(FactoryCommand::Report(r)) = args.command {
        return print_report(r);
    }
    let Some(path) = args.config else {
        return Err(Failure::usage(
            "atprov factory needs --config factory.toml (or `atprov factory report --journal F`)",
        ));
    };
    let config = FactoryConfig::load(&path)?;
    let events = match args.events.as_deref() {
        None => None,
        Some("-") => Some(JsonLines::new(Box::new(std::io::stdout()))),
        Some(target) => Some(JsonLines::new(Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(target)
                .map_err(|e| Failure::usage(format!("--events {target}: cannot open it: {e}")))?,
        ))),
    };
    let board = std::sync::Arc::new(Board::new(events));
    // Ctrl-C or SIGTERM: stop after the units in progress; a second one: now.
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let stopper = {
        let board = board.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            use crate::factory::events::Observer;
            board.say(
                "",
                "stopping after the units in progress (Ctrl-C again stops at once)",
            );
            stop.send_replace(true);
            shutdown_signal().await;
            std::process::exit(130);
        })
    };
    let result = factory::run(
        config,
        RunOptions {
            batch: args.batch,
            observer: board,
            stop: stop_rx,
        },
    )
    .await;
    stopper.abort();
    let summary = result?;
    eprintln!(
        "factory stopped: {} unit(s) finished in this run; {} unit(s) passed in the journal",
        summary.units, summary.passed
    );
    Ok(())
}

fn print_report(args: ReportArgs) -> Result<(), Failure> {
    let journal =
        open_existing(&args.journal).map_err(|e| Failure::new(Code::Journal, e.to_string()))?;
    let rows = journal
        .report()
        .map_err(|e| Failure::new(Code::Journal, e.to_string()))?;
    if args.json {
        crate::render::json_pretty(&rows);
    } else if args.csv {
        print!("{}", report::csv(&rows));
    } else {
        print!("{}", report::table(&rows));
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
