//! The factory line (`atprov factory`): several stations provisioning units in parallel, each
//! unit getting its own credential from a pool, every allocation and verdict recorded in a
//! crash-safe journal.
//!
//! - [`config`]: `factory.toml` (stations, profile, job, pool, journal, logs, policy).
//! - [`pool`]: the credential pool (manifest or generated per unit), checked before use.
//! - [`journal`]: the [`journal::Journal`] interface and its backends (a SQLite file for one
//!   PC, PostgreSQL for several); the only place that decides which credential a unit gets.
//! - [`station`]: one task per station: wait for a unit, provision, record, wait for removal.
//! - [`events`]: JSON-lines events for the MES and the operator's per-station lines.
//! - [`report`]: `atprov factory report` from a journal.

mod allocation;
pub mod config;
pub mod dashboard;
pub mod events;
pub mod journal;
pub mod pool;
mod presence;
pub mod report;
mod station;

use std::sync::Arc;

use crate::error::{Code, Failure};
use crate::pki::check::Target;
use crate::profile::{Profile, Template};
use crate::provision::job::{Job, JobSettings};
use config::{FactoryConfig, PoolSource};
use events::{Event, Observer};
use journal::Journal;
use station::{Line, Source};

/// How a run of the line is asked to behave beyond its config.
pub struct RunOptions {
    /// Stop once this many distinct units passed (counted in the journal, across restarts).
    pub batch: Option<u64>,
    /// Hears events and draws the operator's lines.
    pub observer: Arc<dyn Observer>,
    /// Becomes true when the line should stop after each station's current unit (Ctrl-C,
    /// SIGTERM: the application decides).
    pub stop: tokio::sync::watch::Receiver<bool>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Units finished in this run (passed or failed).
    pub units: u64,
    /// Distinct units that passed, over every run of the journal.
    pub passed: u64,
}

/// Runs the line until it is asked to stop (after each station's current unit) or the batch is
/// complete.
pub async fn run(config: FactoryConfig, options: RunOptions) -> Result<Summary, Failure> {
    let profile = Profile::load(&config.profile).map_err(|e| Failure::usage(e.0))?;
    let job_args = JobSettings {
        job: config.job.clone(),
        ..JobSettings::default()
    };
    let mut defaults = profile.defaults.clone();
    defaults
        .entry("mqtt.client_id".into())
        .or_insert_with(|| "{thing_name}".into());
    let mut job = Job::build(&job_args, &defaults)?;
    job.flash_baud.get_or_insert(config.policy.flash_baud);
    // Everything a unit will need is checked before the first unit is touched.
    let goal = match config.policy.steps {
        config::Steps::Flash => crate::provision::Goal::Flash,
        config::Steps::Connect | config::Steps::Provision => crate::provision::Goal::Provision,
    };
    crate::provision::check::job(&job, &profile, goal, &["thing_name"])?;
    let ca_bytes = std::fs::read(&config.pool.ca).map_err(|e| {
        Failure::usage(format!(
            "{}: field `pool.ca`: {}: cannot read it: {e}",
            config.path.display(),
            config.pool.ca.display()
        ))
    })?;
    let ca = (config.pool.ca.display().to_string(), ca_bytes);
    let mut device_ca = match &config.pool.device_ca {
        None => None,
        Some(p) => Some((
            p.display().to_string(),
            std::fs::read(p).map_err(|e| {
                Failure::usage(format!(
                    "{}: field `pool.device_ca`: {}: cannot read it: {e}",
                    config.path.display(),
                    p.display()
                ))
            })?,
        )),
    };
    let location = config.journal.clone();
    let process = journal::Process::this(config.line.as_deref());
    let journal: Arc<dyn Journal> =
        tokio::task::spawn_blocking(move || journal::open(&location, process))
            .await
            .map_err(|e| Failure::new(Code::Internal, format!("opening the journal: {e}")))?
            .map_err(|e| Failure::new(Code::Journal, e.to_string()))?;
    {
        // A shared database that goes away is waited for; the operator and the MES hear it
        // (not through the journal's own events table, which is what went away).
        let observer = options.observer.clone();
        journal.on_notice(Arc::new(move |reachable: bool, line: &str| {
            let message = line.to_string();
            observer.event(
                "",
                &if reachable {
                    Event::JournalReachable { message }
                } else {
                    Event::JournalUnreachable { message }
                },
            );
            observer.say("", line);
        }));
    }
    let interrupted = journal
        .recover()
        .map_err(|e| Failure::new(Code::Journal, e.to_string()))?;
    let source = match &config.pool.source {
        PoolSource::Manifest(manifest) => {
            let records = pool::load_manifest(manifest)?;
            journal
                .register_pool(&records)
                .map_err(|e| Failure::new(Code::Journal, e.to_string()))?;
            Source::Manifest
        }
        PoolSource::Generate {
            ca_cert,
            ca_key,
            dir,
            thing_name,
            days,
        } => {
            let read = |p: &std::path::Path, field: &str| {
                std::fs::read_to_string(p).map_err(|e| {
                    Failure::usage(format!(
                        "{}: field `{field}`: {}: cannot read it: {e}",
                        config.path.display(),
                        p.display()
                    ))
                })
            };
            let ca_cert_pem = read(ca_cert, "pool.generate.ca_cert")?;
            device_ca = Some((
                ca_cert.display().to_string(),
                ca_cert_pem.clone().into_bytes(),
            ));
            Source::Generate {
                ca_cert_pem,
                ca_key_pem: read(ca_key, "pool.generate.ca_key")?,
                dir: dir.clone(),
                thing_name: Template::parse(thing_name)
                    .map_err(|e| Failure::usage(format!("pool.generate.thing_name: {e}")))?,
                days: *days,
            }
        }
    };
    let status = journal
        .pool_status()
        .map_err(|e| Failure::new(Code::Journal, e.to_string()))?;
    let passed_before = journal
        .units_passed()
        .map_err(|e| Failure::new(Code::Journal, e.to_string()))?;
    // With `events_table`, every event also goes into the journal (the MES hand-off).
    let events_table = config.events_table.then(|| {
        Arc::new(events::JournalEvents::new(
            options.observer.clone(),
            journal.clone(),
        ))
    });
    let observer: Arc<dyn Observer> = match &events_table {
        Some(table) => table.clone(),
        None => options.observer.clone(),
    };
    observer.event(
        "",
        &Event::FactoryStarted {
            tool: format!("atprov {}", env!("CARGO_PKG_VERSION")),
            profile: profile.name.clone(),
            stations: config.stations.iter().map(|s| s.name.clone()).collect(),
            pool: status,
            units_passed: passed_before,
            interrupted_attempts: interrupted,
        },
    );
    if interrupted > 0 {
        observer.say(
            "",
            &format!(
                "journal: {interrupted} attempt(s) were interrupted by the last stop; their units keep their credentials"
            ),
        );
    }
    let (stop, _) = tokio::sync::watch::channel(false);
    let target = Some(Target::of(profile.family));
    let line = Arc::new(Line {
        config: config.clone(),
        profile,
        job,
        journal,
        ca,
        device_ca,
        source,
        target,
        observer: observer.clone(),
        stop,
        batch: options.batch,
        claimed: Default::default(),
        slow_links: Default::default(),
    });
    if options.batch.is_some_and(|b| passed_before >= b) {
        observer.say(
            "",
            &format!(
                "the batch is already complete: {passed_before} units passed (see atprov factory report)"
            ),
        );
        line.stop.send_replace(true);
    }
    // Renew this process's attempts' leases, so that another factory process sharing the
    // journal never takes them for interrupted.
    let heartbeat = {
        let journal = line.journal.clone();
        let observer = observer.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(journal::LEASE / 3);
            loop {
                every.tick().await;
                let j = journal.clone();
                let renewed = tokio::task::spawn_blocking(move || {
                    j.heartbeat()?;
                    j.recover()
                })
                .await;
                match renewed {
                    Ok(Ok(0)) | Err(_) => {}
                    Ok(Ok(n)) => {
                        observer.event("", &Event::AttemptsInterrupted { attempts: n });
                        observer.say(
                            "",
                            &format!(
                                "journal: {n} attempt(s) of a line that stopped renewing its lease marked interrupted; their units keep their credentials"
                            ),
                        );
                    }
                    Ok(Err(e)) => observer.say(
                        "",
                        &format!("journal: cannot renew the attempts' leases: {e}"),
                    ),
                }
            }
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for s in &config.stations {
        tasks.spawn(station::run(line.clone(), s.clone()));
    }
    let stopper = {
        let line = line.clone();
        let mut asked = options.stop;
        tokio::spawn(async move {
            while !*asked.borrow() {
                if asked.changed().await.is_err() {
                    return;
                }
            }
            line.stop.send_replace(true);
        })
    };
    let mut summary = Summary::default();
    let mut error = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(n)) => summary.units += n,
            Ok(Err(f)) => {
                line.stop.send_replace(true);
                error.get_or_insert(f);
            }
            Err(e) => {
                line.stop.send_replace(true);
                error.get_or_insert(Failure::new(
                    Code::Internal,
                    format!("a station crashed: {e}"),
                ));
            }
        }
    }
    stopper.abort();
    heartbeat.abort();
    tracing::debug!("every station stopped");
    let passed = line.journal.units_passed();
    if let Ok(n) = passed {
        summary.passed = n;
        let status = line.journal.pool_status().unwrap_or_default();
        observer.event(
            "",
            &Event::FactoryStopped {
                units_this_run: summary.units,
                units_passed: summary.passed,
                pool: status,
            },
        );
    }
    if let Some(table) = events_table {
        // The MES reads the table after the line stopped: every event is in it by then, or
        // the log says how many are not.
        let _ =
            tokio::task::spawn_blocking(move || table.flush(std::time::Duration::from_secs(30)))
                .await;
    }
    if let Err(e) = passed {
        error.get_or_insert(Failure::new(Code::Journal, e.to_string()));
    }
    match error {
        Some(f) => Err(f),
        None => Ok(summary),
    }
}

/// Now, UTC, as `2026-11-22T23:17:31.565Z`: how journals and events stamp what happened.
pub fn utc_millis() -> String {
    utc_millis_of(time::OffsetDateTime::now_utc())
}

/// A time in the form of [`utc_millis`] (UTC, milliseconds; such stamps compare as text).
pub fn utc_millis_of(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// This machine's name, as attempts' owners and the pool's change log name it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}
