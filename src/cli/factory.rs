//! `atprov factory --config factory.toml` and `atprov factory report --journal F`.

use std::path::PathBuf;

use crate::exit::{Code, Failure};
use crate::factory::config::FactoryConfig;
use crate::factory::events::Events;
use crate::factory::journal::{Journal, open_existing};
use crate::factory::{self, RunOptions, report};

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
    #[arg(long, value_name = "N")]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
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
    let config = FactoryConfig::load(&path).map_err(Failure::usage)?;
    let events = match &args.events {
        Some(target) => Events::open(target).map_err(Failure::usage)?,
        None => Events::none(),
    };
    let summary = factory::run(
        config,
        RunOptions {
            batch: args.batch,
            events,
        },
    )
    .await?;
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
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| Failure::new(Code::Internal, e.to_string()))?;
        println!("{text}");
    } else if args.csv {
        print!("{}", report::csv(&rows));
    } else {
        print!("{}", report::table(&rows));
    }
    Ok(())
}
