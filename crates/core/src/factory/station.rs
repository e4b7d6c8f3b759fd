//! One station of the line: wait for a unit, provision it, record it, wait for it to go, and
//! again, until the line stops. Every decision about a credential goes through the journal;
//! the station holds nothing that a crash could lose. Where a unit comes from and when it has
//! gone is [`super::presence`]; which credential it gets is [`super::allocation`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::config::{FactoryConfig, Station};
use super::events::{Event, Observer, UnitProgress, Verdict as VerdictEvent};
use super::journal::{Allocation, Fate, Journal, Outcome, UnitIdentity};
use crate::at::{Command, Status};
use crate::error::{Code, Failure};
use crate::link::{Link, PortArgs};
use crate::pki::check::Target;
use crate::port::{Flow, Lines, Selector};
use crate::profile::{Profile, Template};
use crate::provision::job::Job;
use crate::provision::{Provisioning, Stage};

use super::allocation::{credential_for, unit_identity};
use super::presence::{device_fingerprint, find_port, wait_for_removal};

/// Where credentials come from, loaded once.
pub enum Source {
    Manifest,
    Generate {
        ca_cert_pem: String,
        ca_key_pem: String,
        dir: PathBuf,
        thing_name: Template,
        days: u32,
    },
}

/// What every station shares.
pub struct Line {
    pub config: FactoryConfig,
    pub profile: Profile,
    pub job: Job,
    pub journal: Arc<dyn Journal>,
    /// The CA written to every unit: (file name, bytes).
    pub ca: (String, Vec<u8>),
    /// The CA that issued the pool's device certificates, when known: (file name, bytes).
    pub device_ca: Option<(String, Vec<u8>)>,
    pub source: Source,
    pub target: Option<Target>,
    /// Hears events and the operator's lines.
    pub observer: Arc<dyn Observer>,
    /// Set when the line should stop once each station's current unit is done.
    pub stop: watch::Sender<bool>,
    /// Stop once this many distinct units passed.
    pub batch: Option<u64>,
    /// Ports that `usb:` stations hold.
    pub claimed: Mutex<HashSet<String>>,
    /// Stations whose adapter did not carry a faster line rate: their units stay at the
    /// session's rate instead of paying the fallback again.
    pub slow_links: Mutex<HashSet<String>>,
}

impl Line {
    pub(super) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Waits `d`, or less when the line stops.
    pub(super) async fn pause(&self, d: Duration) {
        let mut rx = self.stop.subscribe();
        if *rx.borrow() {
            return;
        }
        let _ = tokio::time::timeout(d, rx.changed()).await;
    }

    /// Runs a journal call off the async workers (it waits for the disk).
    pub(super) async fn journal<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Journal) -> T + Send + 'static,
    ) -> T {
        let j = self.journal.clone();
        tokio::task::spawn_blocking(move || f(j.as_ref()))
            .await
            .expect("journal task")
    }
}

/// How one unit went.
struct UnitEnd {
    identity: Option<UnitIdentity>,
    failure: Option<Failure>,
}

/// Runs a station until the line stops. Returns how many units it finished; an error only when
/// the journal failed (the station cannot go on without it).
pub async fn run(line: Arc<Line>, station: Station) -> Result<u64, Failure> {
    let ui = StationUi {
        name: &station.name,
        observer: line.observer.as_ref(),
    };
    let selector = Selector::parse(&station.port)?;
    let mut finished = 0;
    let mut said_waiting = false;
    while !line.stopping() {
        if !said_waiting {
            ui.status(&format!("waiting for a unit on {}", station.port));
            ui.event(&Event::Waiting {
                port: station.port.clone(),
            });
            said_waiting = true;
        }
        let Some(port) = find_port(&line, &selector).await else {
            continue;
        };
        said_waiting = false;
        let device = device_fingerprint(&port);
        let mut end = unit(&line, &station, &port, ui).await?;
        let mut tries = 0;
        while let Some(f) = &end.failure {
            if tries >= line.config.policy.retries || !worth_retrying(f.code) {
                break;
            }
            tries += 1;
            ui.say(&format!("retry {tries}: {}", f.message));
            end = unit(&line, &station, &port, ui).await?;
        }
        finished += 1;
        if let Some(batch) = line.batch {
            let passed = line
                .journal(|j| j.units_passed())
                .await
                .map_err(journal_failure)?;
            if passed >= batch {
                ui.say(&format!("batch of {batch} units passed: stopping"));
                line.stop.send_replace(true);
            }
        }
        if matches!(selector, Selector::Sim(_) | Selector::Replay(_)) {
            // An in-process emulator never goes away: one unit, then the station is done.
            break;
        }
        ui.status(&format!("remove the unit from {}", station.port));
        wait_for_removal(&line, &selector, &port, device, end.identity.as_ref()).await;
        line.claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&port);
    }
    ui.finish("stopped");
    tracing::debug!("station {}: stopped after {finished} unit(s)", station.name);
    Ok(finished)
}

/// A station's view of the observer.
#[derive(Clone, Copy)]
struct StationUi<'a> {
    name: &'a str,
    observer: &'a dyn Observer,
}

impl StationUi<'_> {
    fn event(&self, e: &Event) {
        self.observer.event(self.name, e);
    }
    fn status(&self, text: &str) {
        self.observer.status(self.name, text);
    }
    fn say(&self, text: &str) {
        self.observer.say(self.name, text);
    }
    fn finish(&self, text: &str) {
        self.observer.finish(self.name, text);
    }
}

fn worth_retrying(code: Code) -> bool {
    !matches!(
        code,
        Code::Credentials
            | Code::Unreadable
            | Code::PortLost
            | Code::PortNotFound
            | Code::Usage
            | Code::Internal
            | Code::Interrupted
    )
}

pub(super) fn journal_failure(e: super::journal::JournalError) -> Failure {
    Failure::new(Code::Journal, e.to_string())
}

pub(super) async fn open(
    line: &Line,
    port: &str,
    transcript: Option<PathBuf>,
) -> Result<Link, Failure> {
    let args = PortArgs {
        port: port.to_string(),
        baud: None,
        flow: Flow::None,
        lines: Lines::Deassert,
        transcript,
    };
    args.open_with(None, line.profile.serial.baud, line.profile.engine_config())
        .await
}

/// Sends `AT` until the module answers `OK` or `within` has passed.
pub(super) async fn answers(engine: &crate::at::Engine, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let r = engine
            .run(
                Command::new("AT")
                    .timeout(Duration::from_millis(300))
                    .no_busy_retry(),
            )
            .await;
        match r {
            Ok(r) if r.status == Status::Ok => return true,
            Err(_) => return false,
            Ok(_) if Instant::now() >= deadline => return false,
            Ok(_) => {}
        }
    }
}

/// One unit, from the port appearing to the verdict in the journal.
async fn unit(
    line: &Line,
    station: &Station,
    port: &str,
    ui: StationUi<'_>,
) -> Result<UnitEnd, Failure> {
    let (name, port_owned, profile) = (
        station.name.clone(),
        port.to_string(),
        line.profile.name.clone(),
    );
    let attempt = line
        .journal(move |j| j.begin_attempt(&name, &port_owned, &profile))
        .await
        .map_err(journal_failure)?;
    let transcript = line.config.log_dir.as_ref().map(|dir| {
        let dir = dir.join(&station.name);
        let _ = crate::files::create_private_dir(&dir);
        dir.join(format!("{attempt:06}.txt"))
    });
    ui.event(&Event::UnitDetected {
        attempt,
        port: port.to_string(),
    });
    let started = Instant::now();
    let mut progress = UnitProgress {
        station: &station.name,
        observer: line.observer.as_ref(),
        unit: "?".into(),
        started,
    };
    let link = match open(line, port, transcript.clone()).await {
        Ok(link) => link,
        Err(f) => {
            let verdict = Verdict {
                attempt,
                identity: None,
                allocation: None,
                failure: Some(f),
                fate: Fate::Keep,
                stages: Vec::new(),
                started,
                transcript: None,
            };
            return finish(line, ui, verdict).await;
        }
    };
    let mut job = Provisioning::new(
        link.engine.clone(),
        line.profile.clone(),
        &line.job,
        port.to_string(),
        false,
    );
    let slow = line
        .slow_links
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&station.name);
    job.set_line_rate(if slow {
        crate::port::LineRate::Fixed(
            "this station's adapter did not carry the faster rate for an earlier unit".into(),
        )
    } else {
        link.rate.clone()
    });
    if !answers(&link.engine, line.config.policy.answer_within).await {
        job.fail(Failure::new(
            Code::NoAnswer,
            format!(
                "the unit on {port} did not answer AT within {:?}; check its power and the baud rate (a unit left waiting for data by a crashed host needs a power cycle)",
                line.config.policy.answer_within
            ),
        ));
    }
    let identified = job.stage(Stage::Init, None, &mut progress).await
        && job.stage(Stage::Identify, None, &mut progress).await;
    let mut identity = None;
    let mut allocation = None;
    if identified {
        match unit_identity(&job.identity()) {
            Err(e) => job.fail(Failure::usage(e)),
            Ok(id) => {
                progress.unit = if id.unit_id.is_empty() {
                    id.key.clone()
                } else {
                    id.unit_id.clone()
                };
                ui.event(&Event::UnitIdentified {
                    attempt,
                    unit: progress.unit.clone(),
                    identity: id.clone(),
                });
                match credential_for(line, attempt, &id).await {
                    Ok((a, creds, waited)) => {
                        ui.event(&Event::CredentialAllocated {
                            attempt,
                            unit: progress.unit.clone(),
                            thing_name: a.record.thing_name.clone(),
                            cert_sha256: a.record.cert_sha256.clone(),
                            again: a.again,
                            allocate_us: waited.as_micros() as u64,
                        });
                        job.set_var("thing_name", &a.record.thing_name);
                        for &stage in line.config.policy.steps.after_identify() {
                            job.stage(stage, Some(&creds), &mut progress).await;
                        }
                        allocation = Some(a);
                    }
                    Err(f) if f.code == Code::Journal => {
                        // Without the journal nothing may be written: stop this station.
                        drop(job);
                        link.close().await;
                        return Err(f);
                    }
                    Err(f) => job.fail(f),
                }
                identity = Some(id);
            }
        }
    }
    let fate = fate_of_failed(line, &mut job, allocation.is_some(), ui).await;
    let (report, failure) = job.finish();
    if report.rate_fell_back() {
        ui.say("the faster line rate fell back on this station: later units stay at the session's rate");
        line.slow_links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(station.name.clone());
    }
    link.close().await;
    let verdict = Verdict {
        attempt,
        identity,
        allocation,
        failure,
        fate,
        stages: report
            .stages
            .iter()
            .map(|s| (s.stage.name().to_string(), s.ms))
            .collect(),
        started,
        transcript,
    };
    finish(line, ui, verdict).await
}

/// What becomes of a failed unit's credential: with policy `release` it goes back to the pool
/// only when it never reached the module, or the module's store was erased and read back
/// empty; a unit that cannot be wiped keeps it, burnt, so no second unit ever holds it.
async fn fate_of_failed(
    line: &Line,
    job: &mut Provisioning<'_>,
    allocated: bool,
    ui: StationUi<'_>,
) -> Fate {
    let release = line.config.policy.on_failure == super::config::OnFailure::Release;
    if !job.failed() || !release || !allocated {
        return Fate::Keep;
    }
    if !job.flash_started() {
        return Fate::Release;
    }
    match job.erase_credentials().await {
        Ok(()) => Fate::Release,
        Err(f) => {
            ui.say(&format!(
                "the unit could not be wiped ({}): it keeps its credential, marked burnt",
                f.message
            ));
            Fate::Burnt(f.message)
        }
    }
}

/// How an attempt ended, before it is recorded.
struct Verdict {
    attempt: i64,
    identity: Option<UnitIdentity>,
    allocation: Option<Allocation>,
    failure: Option<Failure>,
    fate: Fate,
    /// Stage name and milliseconds.
    stages: Vec<(String, u64)>,
    started: Instant,
    transcript: Option<PathBuf>,
}

/// Records the verdict, tells the operator and the MES, names the transcript.
async fn finish(line: &Line, ui: StationUi<'_>, verdict: Verdict) -> Result<UnitEnd, Failure> {
    let Verdict {
        attempt,
        identity,
        allocation,
        failure,
        fate,
        stages,
        started,
        transcript,
    } = verdict;
    let outcome = Outcome {
        passed: failure.is_none(),
        exit_code: failure.as_ref().map_or(0, |f| f.code.number()),
        reason: failure.as_ref().map(|f| f.message.clone()),
        stages,
        fate,
    };
    let recorded = outcome.clone();
    line.journal(move |j| j.finish_attempt(attempt, &recorded))
        .await
        .map_err(journal_failure)?;
    let unit = identity
        .as_ref()
        .map(|i| {
            if i.unit_id.is_empty() {
                i.key.clone()
            } else {
                i.unit_id.clone()
            }
        })
        .unwrap_or_else(|| "?".into());
    let secs = started.elapsed().as_secs_f64();
    let thing = allocation.as_ref().map(|a| a.record.thing_name.clone());
    let fields = VerdictEvent {
        attempt,
        unit: unit.clone(),
        identity: identity.clone(),
        thing_name: thing.clone(),
        cert_sha256: allocation.as_ref().map(|a| a.record.cert_sha256.clone()),
        again: allocation.as_ref().map(|a| a.again),
        exit_code: outcome.exit_code,
        reason: outcome.reason.clone(),
        ms: (secs * 1000.0) as u64,
    };
    let verdict = if outcome.passed { "pass" } else { "fail" };
    if outcome.passed {
        ui.event(&Event::UnitPassed(fields));
        let again = if allocation.as_ref().is_some_and(|a| a.again) {
            " (seen before: its own credential again)"
        } else {
            ""
        };
        ui.say(&format!(
            "PASS  unit {unit}  {}  {secs:.1} s{again}",
            thing.as_deref().unwrap_or("")
        ));
    } else {
        ui.event(&Event::UnitFailed(fields));
        ui.say(&format!(
            "FAIL  unit {unit}: {} (exit {})",
            outcome.reason.as_deref().unwrap_or("?"),
            outcome.exit_code
        ));
    }
    if let Some(t) = transcript {
        let shown = unit.replace(':', "");
        let unit_part = crate::files::safe_component(&shown).unwrap_or("unknown");
        let name = format!("{attempt:06}-{unit_part}-{verdict}.txt");
        let _ = std::fs::rename(&t, t.with_file_name(name));
    }
    Ok(UnitEnd { identity, failure })
}
