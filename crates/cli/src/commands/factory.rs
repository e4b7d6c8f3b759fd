//! `atprov factory --config factory.toml`, `atprov factory report --journal F`,
//! `atprov factory pool status|add|release|revoke --journal F`,
//! `atprov factory journal migrate --from FILE --to URL` and
//! `atprov factory dashboard --journal F` (in `dashboard.rs`). `F` is a SQLite file or a
//! `postgresql://` URL.

use std::path::PathBuf;

use crate::error::{Code, Failure};
use crate::factory::config::FactoryConfig;
use crate::factory::events::JsonLines;
use crate::factory::journal::{Location, open_existing};
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
    /// The credential pool in a journal: status, add a manifest, release a rejected
    /// credential, revoke a leaked one (every change recorded with who and when).
    Pool(PoolArgs),
    /// A live page of the line for a supervisor (stations, units per hour, first-pass yield,
    /// failure causes, the last units with their certificate fingerprint, pool left) and
    /// `GET /api/summary` as JSON for an MES; read-only.
    Dashboard(super::dashboard::DashboardArgs),
    /// The journal itself: move a single PC's SQLite journal into PostgreSQL.
    Journal(JournalArgs),
}

#[derive(Debug, clap::Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    pub action: JournalAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum JournalAction {
    /// Copy every attempt, unit, credential, assignment, pool change and event of a SQLite
    /// journal into an empty PostgreSQL one (ids kept), then compare the two. The password
    /// comes from ATPROV_JOURNAL_PASSWORD, ATPROV_JOURNAL_PASSWORD_FILE or ~/.pgpass.
    Migrate {
        /// The SQLite journal.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The PostgreSQL journal: postgresql://USER@HOST:PORT/DB.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct PoolArgs {
    /// The journal: a SQLite file or postgresql://USER@HOST:PORT/DB.
    #[arg(long, value_name = "FILE|URL", global = true)]
    pub journal: Option<String>,
    #[command(subcommand)]
    pub action: PoolAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum PoolAction {
    /// Counts, every credential with its state and unit, and the changes made by hand.
    Status {
        /// JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Add the credentials of a manifest (`thing_name,certificate,key`; paths relative to it).
    Add {
        /// The manifest (CSV).
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
    },
    /// Put a rejected credential back into the pool once the cause is fixed.
    Release {
        /// The credential's thing name.
        thing_name: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
    /// Revoke a credential (leaked): it is never issued again, and a unit holding it is
    /// stopped at the station.
    Revoke {
        /// The credential's thing name.
        thing_name: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The journal: a SQLite file or postgresql://USER@HOST:PORT/DB.
    #[arg(long, value_name = "FILE|URL")]
    pub journal: String,
    /// CSV on stdout.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: FactoryArgs) -> Result<(), Failure> {
    match args.command {
        Some(FactoryCommand::Report(r)) => return print_report(r),
        Some(FactoryCommand::Pool(p)) => return pool(p),
        Some(FactoryCommand::Dashboard(d)) => return super::dashboard::run(d).await,
        Some(FactoryCommand::Journal(j)) => return journal(j),
        None => {}
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

fn journal(args: JournalArgs) -> Result<(), Failure> {
    let JournalAction::Migrate { from, to } = args.action;
    let target = crate::factory::journal::postgres::Target::parse(&to)
        .map_err(|e| Failure::usage(format!("--to: {e}")))?;
    let copied = crate::factory::journal::copy::sqlite_to_postgres(&from, &target)
        .map_err(|e| Failure::new(Code::Journal, e.to_string()))?;
    let rows = copied
        .tables
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "migrated {} into {}: {rows}; both read back the same",
        from.display(),
        target.shown()
    );
    Ok(())
}

/// Reads `--journal`: a file or a `postgresql://` URL. Parsed here rather than by clap,
/// whose errors would repeat the value as typed, password and all.
pub(crate) fn journal_location(text: &str) -> Result<Location, Failure> {
    Location::parse(text, None).map_err(|e| Failure::usage(format!("--journal: {e}")))
}

fn print_report(args: ReportArgs) -> Result<(), Failure> {
    let journal = open_existing(&journal_location(&args.journal)?)
        .map_err(|e| Failure::new(Code::Journal, e.to_string()))?;
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

/// Who changes the pool by hand: `user@host`.
fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", crate::factory::hostname())
}

fn pool(args: PoolArgs) -> Result<(), Failure> {
    let journal_failure =
        |e: crate::factory::journal::JournalError| Failure::new(Code::Journal, e.to_string());
    let Some(path) = args.journal else {
        return Err(Failure::usage(
            "atprov factory pool needs --journal FILE|URL (the factory's journal)",
        ));
    };
    let journal = open_existing(&journal_location(&path)?).map_err(journal_failure)?;
    match args.action {
        PoolAction::Status { json } => {
            let status = journal.pool_status().map_err(journal_failure)?;
            let entries = journal.pool_entries().map_err(journal_failure)?;
            let changes = journal.pool_changes().map_err(journal_failure)?;
            if json {
                crate::render::json_pretty(&serde_json::json!({
                    "status": status, "credentials": entries, "changes": changes,
                }));
                return Ok(());
            }
            println!(
                "{} free, {} assigned, {} rejected, {} revoked",
                status.free, status.assigned, status.rejected, status.revoked
            );
            for e in &entries {
                let state = if e.revoked_at.is_some() {
                    format!("{} (revoked)", e.state)
                } else {
                    e.state.clone()
                };
                println!(
                    "  {:<24} {:<20} {:<20} {}",
                    e.thing_name,
                    state,
                    e.unit.as_deref().unwrap_or("-"),
                    e.note.as_deref().unwrap_or("")
                );
            }
            for c in &changes {
                println!("  {} {} {} {}: {}", c.at, c.who, c.action, c.what, c.reason);
            }
            Ok(())
        }
        PoolAction::Add { manifest } => {
            let records = crate::factory::pool::load_manifest(&manifest)?;
            // Counted from the manifest, not from the pool's size: other PCs may be adding
            // or using credentials at the same time.
            let known: std::collections::HashSet<String> = journal
                .pool_entries()
                .map_err(journal_failure)?
                .into_iter()
                .map(|e| e.thing_name)
                .collect();
            let added = records
                .iter()
                .filter(|r| !known.contains(&r.thing_name))
                .count();
            let after = journal.register_pool(&records).map_err(journal_failure)?;
            journal
                .record_change(
                    &who(),
                    "added",
                    &format!("{added} credential(s)"),
                    &manifest.display().to_string(),
                )
                .map_err(journal_failure)?;
            println!("added {added} credential(s); {} free now", after.free);
            Ok(())
        }
        PoolAction::Release { thing_name, reason } => {
            journal
                .release(&thing_name, &who(), &reason)
                .map_err(journal_failure)?;
            println!("{thing_name} is back in the pool");
            Ok(())
        }
        PoolAction::Revoke { thing_name, reason } => {
            journal
                .revoke(&thing_name, &who(), &reason)
                .map_err(journal_failure)?;
            println!("{thing_name} is revoked: it is never issued again");
            Ok(())
        }
    }
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
