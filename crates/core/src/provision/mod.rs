//! The provisioning jobs: identify, flash, connect, smoke and all of them in a row. Each is a
//! sequence of stages (init, identify, flash, connect, smoke, cleanup) run on one [`Device`];
//! the result is a [`Report`] that says what happened, for humans and as JSON. Stages report
//! progress through [`Progress`] so that the command line can draw bars and a factory can log.

use std::collections::BTreeMap;
use std::time::Instant;

pub mod check;
pub mod detect;
pub mod flow;
pub mod job;
mod rate;

use crate::at::Engine;
use crate::error::{Code, Failure};
use crate::pki::Credentials;
use crate::profile::{Profile, Value};
use crate::provision::flow::{Device, StepReport, StepResult};
use crate::provision::job::Job;
use crate::store::{self, ItemReport, StoreInfo};

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Firmware, chip, identity and store.
    Identify,
    /// And write the credentials, verified.
    Flash,
    /// Identify, register when asked, connect MQTT.
    Connect,
    /// Connect, then a message round trip.
    Smoke,
    /// Everything: identify, flash, connect, smoke.
    Provision,
}

impl Goal {
    /// The stages the goal runs, in order.
    pub fn stages(self) -> &'static [Stage] {
        use Stage::*;
        match self {
            Goal::Identify => &[Init, Identify],
            Goal::Flash => &[Init, Identify, Flash],
            Goal::Connect => &[Init, Identify, Register, Connect],
            Goal::Smoke => &[Init, Identify, Register, Connect, Smoke, Cleanup],
            Goal::Provision => &[Init, Identify, Flash, Register, Connect, Smoke, Cleanup],
        }
    }

    /// Whether the goal writes credentials.
    pub fn needs_credentials(self) -> bool {
        matches!(self, Goal::Flash | Goal::Provision)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
/// A part of a job on one module.
pub enum Stage {
    /// Echo off, error codes on.
    Init,
    /// Firmware, chip, identity; the credential store.
    Identify,
    /// Write the credentials and read them back.
    Flash,
    /// One-type-one-secret registration (only when the job asks and no secret is kept yet).
    Register,
    /// Network and MQTT bring-up.
    Connect,
    /// Publish a unique message and wait for it to come back.
    Smoke,
    /// Disconnect.
    Cleanup,
}

impl Stage {
    /// Its name in reports and events.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Init => "init",
            Stage::Identify => "identify",
            Stage::Flash => "flash",
            Stage::Register => "register",
            Stage::Connect => "connect",
            Stage::Smoke => "smoke",
            Stage::Cleanup => "cleanup",
        }
    }
}

/// Hears what a job is doing.
pub trait Progress: Send {
    /// A stage begins.
    fn stage(&mut self, stage: Stage);
    /// A step within the current stage begins.
    fn step(&mut self, text: &str);
    /// The current stage ended; `summary` is one short line.
    fn done(&mut self, stage: Stage, ok: bool, summary: &str);
}

/// Progress nobody watches.
pub struct Silent;

impl Progress for Silent {
    fn stage(&mut self, _: Stage) {}
    fn step(&mut self, _: &str) {}
    fn done(&mut self, _: Stage, _: bool, _: &str) {}
}

/// How a stage went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageReport {
    /// Which stage.
    pub stage: Stage,
    /// Whether it succeeded.
    pub ok: bool,
    /// When it began, in milliseconds since the job began: with `ms`, the timeline that shows
    /// what the module did meanwhile (a network that came up during the flash is found ready
    /// by connect).
    pub started_ms: u64,
    /// How long it took.
    pub ms: u64,
    /// Its steps.
    pub steps: Vec<StepReport>,
}

/// The credentials as written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CredentialReport {
    /// SHA-256 of the certificate file.
    pub cert_sha256: String,
    /// Each credential.
    pub items: Vec<ItemReport>,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every stage succeeded.
    Pass,
    /// A stage failed (the report says which, and why).
    Fail,
}

/// Everything a job did; serialised as the `--json` report. Holds no secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// `atprov <version>`.
    pub tool: String,
    /// The device profile.
    pub profile: String,
    /// The port as named.
    pub port: String,
    /// Pass or fail.
    pub result: Outcome,
    /// The exit code (0 for a pass).
    pub exit_code: u8,
    /// The one line saying what failed.
    pub error: Option<String>,
    /// The unit id.
    pub unit_id: Option<String>,
    /// What identify found and the job's public variables.
    pub identity: BTreeMap<String, String>,
    /// What the store probe found.
    pub store: Option<StoreInfo>,
    /// What was written.
    pub credentials: Option<CredentialReport>,
    /// The smoke message's round trip.
    pub smoke_round_trip_ms: Option<u64>,
    /// Every stage that ran.
    pub stages: Vec<StageReport>,
    /// How long the whole job took.
    pub ms: u64,
}

/// Variables that identify a unit, shown in reports.
const IDENTITY: &[&str] = &[
    "firmware",
    "chip",
    "bin_version",
    "mac",
    "imei",
    "iccid",
    "broker_ip",
];

/// What to run on one module.
pub struct Plan<'a> {
    /// The job.
    pub job: &'a Job,
    /// Checked credentials (needed by flash and provision).
    pub credentials: Option<&'a Credentials>,
    /// How far to go.
    pub goal: Goal,
    /// Rewrite credentials even when identical.
    pub force: bool,
    /// How the port is named in the report.
    pub port: String,
    /// What can be done with the port's line rate (`Link::rate`).
    pub line: crate::port::LineRate,
}

/// Runs the plan on the module behind `engine`. Never panics; a failure is in the report and
/// returned alongside it.
pub async fn run(
    engine: Engine,
    profile: Profile,
    plan: Plan<'_>,
    progress: &mut dyn Progress,
) -> (Report, Option<Failure>) {
    let mut job = Provisioning::new(engine, profile, plan.job, plan.port, plan.force);
    job.set_line_rate(plan.line);
    for &stage in plan.goal.stages() {
        job.stage(stage, plan.credentials, progress).await;
    }
    job.finish()
}

/// [`run`], stopped cleanly when `stop` resolves (Ctrl-C): the stage under way is abandoned
/// between commands, except flash, which finishes so the store is never left half-written and
/// unverified; cleanup still runs after a tried connect; the failure says what the unit holds.
pub async fn run_until(
    engine: Engine,
    profile: Profile,
    plan: Plan<'_>,
    progress: &mut dyn Progress,
    stop: impl std::future::Future<Output = ()>,
) -> (Report, Option<Failure>) {
    let mut stop = std::pin::pin!(stop);
    let mut job = Provisioning::new(engine, profile, plan.job, plan.port, plan.force);
    job.set_line_rate(plan.line);
    let mut stopped: Option<Stage> = None;
    for &stage in plan.goal.stages() {
        if stopped.is_none() && stage != Stage::Flash && stage != Stage::Cleanup {
            let interrupted = tokio::select! {
                _ = job.stage(stage, plan.credentials, progress) => false,
                () = &mut stop => true,
            };
            if interrupted {
                progress.done(stage, false, "stopped by Ctrl-C");
                // Recorded as tried, so cleanup closes what it may have opened (its commands
                // queue behind the one under way, which the engine still finishes).
                let started_ms = job.started.elapsed().as_millis() as u64;
                job.report.stages.push(StageReport {
                    stage,
                    ok: false,
                    started_ms,
                    ms: 0,
                    steps: Vec::new(),
                });
                stopped = Some(stage);
                // Later stages are skipped; cleanup runs if a connect was tried.
                job.failure = Some(Failure::new(Code::Interrupted, String::new()));
            }
            continue;
        }
        job.stage(stage, plan.credentials, progress).await;
        if stopped.is_none() && stop_requested(&mut stop) {
            stopped = Some(stage);
            job.failure = Some(Failure::new(Code::Interrupted, String::new()));
        }
    }
    if let Some(stage) = stopped {
        let line = job.interrupted_line(stage);
        job.failure = Some(Failure::new(Code::Interrupted, line));
    }
    job.finish()
}

/// Whether `stop` has already resolved (polled once, without waiting).
fn stop_requested(stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    stop.as_mut().poll(&mut cx).is_ready()
}

/// One job on one module, stage by stage: what [`run`] does in a row, for callers that act
/// between stages (the factory allocates a credential once identify has named the unit).
pub struct Provisioning<'a> {
    device: Device,
    job: &'a Job,
    force: bool,
    report: Report,
    failure: Option<Failure>,
    started: Instant,
    /// What can be done with the port's line rate (`--flash-baud`).
    line: crate::port::LineRate,
}

impl Report {
    /// Whether the flash stage tried a faster line rate and had to come back without it (the
    /// adapter did not carry it).
    pub fn rate_fell_back(&self) -> bool {
        rate::fell_back(self)
    }

    /// The report of a job that failed before the module was touched (bad job, credentials,
    /// port): no stage ran.
    pub fn refused(profile: &str, port: &str, failure: &crate::error::Failure) -> Report {
        Report {
            result: Outcome::Fail,
            exit_code: failure.code.number(),
            error: Some(failure.message.clone()),
            ..Report::started(profile, port)
        }
    }

    /// A job just started: passing, nothing done yet.
    fn started(profile: &str, port: &str) -> Report {
        Report {
            tool: format!("atprov {}", env!("CARGO_PKG_VERSION")),
            profile: profile.to_string(),
            port: port.to_string(),
            result: Outcome::Pass,
            exit_code: 0,
            error: None,
            unit_id: None,
            identity: BTreeMap::new(),
            store: None,
            credentials: None,
            smoke_round_trip_ms: None,
            stages: Vec::new(),
            ms: 0,
        }
    }
}

impl<'a> Provisioning<'a> {
    /// A job on the module behind `engine`; nothing is sent yet.
    pub fn new(engine: Engine, profile: Profile, job: &'a Job, port: String, force: bool) -> Self {
        let report = Report::started(&profile.name, &port);
        Provisioning {
            device: Device::new(engine, profile),
            job,
            force,
            report,
            failure: None,
            started: Instant::now(),
            line: crate::port::LineRate::Fixed("the port's rate was not handed to the job".into()),
        }
    }

    /// Lets the flash stage change the port's rate (`--flash-baud`, `serial.flash_baud`).
    pub fn set_line_rate(&mut self, line: crate::port::LineRate) {
        self.line = line;
    }

    /// Runs one stage unless an earlier one failed (cleanup still runs after a tried
    /// connect). Returns whether the job is still passing.
    pub async fn stage(
        &mut self,
        stage: Stage,
        credentials: Option<&Credentials>,
        progress: &mut dyn Progress,
    ) -> bool {
        let connect_tried = self.report.stages.iter().any(|s| s.stage == Stage::Connect);
        if self.failure.is_some() && !(stage == Stage::Cleanup && connect_tried) {
            return false;
        }
        progress.stage(stage);
        let t = Instant::now();
        let inputs = Inputs {
            job: self.job,
            credentials,
            force: self.force,
            line: &self.line,
        };
        let outcome = run_stage(stage, &mut self.device, inputs, &mut self.report, progress).await;
        let (ok, steps, summary) = match outcome {
            Ok((steps, summary)) => (true, steps, summary),
            Err((f, steps)) => {
                let line = f.message.clone();
                // Cleanup is best effort, but a restart anywhere is news (a power problem).
                if stage == Stage::Cleanup && f.code != Code::ModuleReset {
                    tracing::warn!("cleanup: {line}");
                } else if self.failure.is_none() {
                    self.failure = Some(f);
                }
                (false, steps, line)
            }
        };
        progress.done(stage, ok, &summary);
        self.report.stages.push(StageReport {
            stage,
            ok,
            started_ms: t.duration_since(self.started).as_millis() as u64,
            ms: t.elapsed().as_millis() as u64,
            steps,
        });
        self.failure.is_none()
    }

    /// What identify found so far (public values only) and the unit id.
    pub fn identity(&self) -> BTreeMap<String, String> {
        let mut out = public_identity(&self.device);
        if let Some(v) = self.device.vars.get("unit_id") {
            out.insert("unit_id".into(), v.as_text());
        }
        out
    }

    /// Sets a variable (e.g. `thing_name`) and renders the job again so that values using it
    /// see it.
    pub fn set_var(&mut self, name: &str, value: &str) {
        self.device.vars.set_text(name, value.to_string());
        self.job.apply_changed(&mut self.device.vars, name);
    }

    /// The line for a job stopped by Ctrl-C during `stage`: what the unit holds now, and that
    /// running the job again is safe.
    fn interrupted_line(&self, stage: Stage) -> String {
        let done = |s: Stage| self.report.stages.iter().any(|r| r.stage == s && r.ok);
        let tried = |s: Stage| self.report.stages.iter().any(|r| r.stage == s);
        let holds = if done(Stage::Flash) {
            "the module holds the new credentials, read back and verified"
        } else if tried(Stage::Flash) {
            "the credential write did not complete: the module's store may hold part of them"
        } else {
            "nothing was written to the module"
        };
        let link = if tried(Stage::Connect) {
            if done(Stage::Cleanup) {
                "; its MQTT connection was closed"
            } else {
                "; its MQTT connection may still be open"
            }
        } else {
            ""
        };
        format!(
            "stopped by Ctrl-C during {}: {holds}{link}; running the same command again is safe",
            stage.name()
        )
    }

    /// Whether a stage failed (or a failure was recorded).
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Whether the flash stage began: from then on the module may hold (part of) the
    /// credential.
    pub fn flash_started(&self) -> bool {
        self.report.stages.iter().any(|s| s.stage == Stage::Flash)
    }

    /// Erases the credentials from the module's store and checks they read back gone.
    pub async fn erase_credentials(&mut self) -> Result<(), Failure> {
        let Some(info) = self.report.store.clone() else {
            return Err(Failure::new(
                Code::AtError,
                "the module's store was never probed".to_string(),
            ));
        };
        store::erase(&self.device.engine, &self.device.profile.store, &info).await
    }

    /// Reads back what the module's credential slots hold (after identify), for `creds list`.
    pub async fn read_credentials(&mut self) -> Result<Vec<store::Held>, Failure> {
        let Some(info) = self.report.store.clone() else {
            return Err(Failure::new(
                Code::AtError,
                "the module's store was never probed".to_string(),
            ));
        };
        store::read(&self.device.engine, &self.device.profile.store, &info).await
    }

    /// Ends the job with a failure found outside the module (e.g. no credential left).
    pub fn fail(&mut self, failure: Failure) {
        if self.failure.is_none() {
            self.failure = Some(failure);
        }
    }

    /// The report, and the failure if there was one.
    pub fn finish(self) -> (Report, Option<Failure>) {
        let Provisioning {
            device,
            mut report,
            failure,
            started,
            ..
        } = self;
        report.identity = public_identity(&device);
        report.unit_id = device.vars.get("unit_id").map(Value::as_text);
        report.smoke_round_trip_ms = device
            .vars
            .get("smoke.round_trip_ms")
            .and_then(|v| v.as_text().parse().ok());
        if let Some(f) = &failure {
            report.result = Outcome::Fail;
            report.exit_code = f.code.number();
            report.error = Some(f.message.clone());
        }
        report.ms = started.elapsed().as_millis() as u64;
        (report, failure)
    }
}

/// The identity variables the device holds, secrets left out.
fn public_identity(device: &Device) -> BTreeMap<String, String> {
    IDENTITY
        .iter()
        .filter_map(|k| {
            let v = device.vars.get(k)?;
            (!v.secret).then(|| (k.to_string(), v.as_text()))
        })
        .collect()
}

type StageResult = Result<(Vec<StepReport>, String), (Failure, Vec<StepReport>)>;

/// What a stage works from besides the device.
struct Inputs<'a> {
    job: &'a Job,
    credentials: Option<&'a Credentials>,
    /// Rewrite credentials even when identical.
    force: bool,
    /// What can be done with the port's line rate.
    line: &'a crate::port::LineRate,
}

async fn run_stage(
    stage: Stage,
    device: &mut Device,
    inputs: Inputs<'_>,
    report: &mut Report,
    progress: &mut dyn Progress,
) -> StageResult {
    let Inputs {
        job,
        credentials,
        force,
        line,
    } = inputs;
    let profile = device.profile.clone();
    let mut on_step = |s: &str| progress.step(s);
    match stage {
        Stage::Init => {
            device.forget_restarts();
            let steps = device.run_flow(&profile.init, &mut on_step).await?;
            device.forget_restarts();
            Ok((steps, "module answers".into()))
        }
        Stage::Identify => {
            let mut steps = device.run_flow(&profile.identify, &mut on_step).await?;
            on_step("credential store");
            let t = Instant::now();
            let info = store::probe(&device.engine, &profile.store)
                .await
                .map_err(|f| (f, steps.clone()))?;
            steps.push(StepReport {
                name: "credential store".into(),
                result: StepResult::Ok,
                ms: t.elapsed().as_millis() as u64,
                detail: Some(info.generation.to_string()),
            });
            device.vars.set_text("store", info.generation.name());
            job.apply(&mut device.vars);
            check::identity(&device.vars).map_err(|f| (f, steps.clone()))?;
            let summary = [
                device.vars.text("chip"),
                device.vars.text("firmware"),
                device.vars.text("mac"),
                info.generation.to_string(),
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
            report.store = Some(info);
            Ok((steps, summary))
        }
        Stage::Flash => {
            let Some(creds) = credentials else {
                return Err((
                    Failure::usage("flash needs credentials: --ca, --cert and --key"),
                    Vec::new(),
                ));
            };
            let info = report.store.clone().expect("identify ran first");
            let mut steps = Vec::new();
            let want = job.flash_baud.unwrap_or(profile.serial.flash_baud);
            // Written once; the read-back is counted nowhere (some stores compare checksums),
            // so `auto` underestimates the gain rather than switching at a loss.
            let bytes = creds.ca.len() + creds.cert.len() + creds.key().len();
            if want != crate::units::FlashBaud::Off {
                on_step("line rate");
            }
            let (switched, said) = rate::up(&device.engine, &profile, want, line, bytes)
                .await
                .map_err(|f| (f, Vec::new()))?;
            steps.extend(said);
            let t = Instant::now();
            let written = store::write(
                &device.engine,
                &profile.store,
                &info,
                creds,
                force,
                &mut |slot| on_step(slot),
            )
            .await;
            // Back to the session's rate whatever the transfer did: the stages that follow,
            // and whoever touches the unit next, expect it.
            if let Some(s) = switched {
                on_step("line rate back");
                match (
                    rate::down(&device.engine, s, written.is_ok()).await,
                    &written,
                ) {
                    (Ok(step), _) => steps.push(step),
                    (Err(f), Ok(_)) => return Err((f, steps)),
                    // The transfer's own failure says what happened; that the rate could not
                    // be restored is what to do next.
                    (Err(rate), Err(f)) => {
                        let f = Failure::new(
                            f.code,
                            format!("{}; and the line rate: {}", f.message, rate.message),
                        );
                        return Err((f, steps));
                    }
                }
            }
            let items = written.map_err(|f| (f, steps.clone()))?;
            let written = items
                .iter()
                .filter(|i| i.action == store::Action::Written)
                .count();
            let summary = if written == 0 {
                "already on the module, nothing written".to_string()
            } else {
                format!(
                    "{written} of {} written and verified ({})",
                    items.len(),
                    info.generation
                )
            };
            let written_steps = items.iter().map(|i| StepReport {
                name: i.slot.clone(),
                result: StepResult::Ok,
                ms: t.elapsed().as_millis() as u64,
                detail: Some(format!("{} bytes {}", i.bytes, i.action)),
            });
            // The switch first, the slots, then the switch back.
            let back = steps.pop_if(|s| s.name == "line rate back");
            steps.extend(written_steps);
            steps.extend(back);
            report.credentials = Some(CredentialReport {
                cert_sha256: creds.cert_sha256(),
                items,
            });
            Ok((steps, summary))
        }
        Stage::Register => {
            let mut steps = Vec::new();
            let mut said = Vec::new();
            if job::SignIn::of(&device.vars).register {
                steps.extend(register(device, &profile, job, &mut on_step).await?);
                said.push(format!(
                    "registered; device secret kept in {}",
                    device.vars.text("aliyun.secret_file")
                ));
            }
            if job::SignIn::of(&device.vars).https_auth {
                steps.extend(https_auth(device, &profile, &mut on_step).await?);
                said.push("signed in over HTTPS (iotId, iotToken)".into());
            }
            let summary = if said.is_empty() {
                "not needed".to_string()
            } else {
                said.join("; ")
            };
            Ok((steps, summary))
        }
        Stage::Connect => {
            let steps = match device.run_flow(&profile.connect, &mut on_step).await {
                Ok(steps) => steps,
                Err((f, steps)) if f.code == Code::Connect => {
                    return Err((diagnose(f, job, &device.vars).await, steps));
                }
                Err(e) => return Err(e),
            };
            let summary = format!(
                "connected to {}:{}",
                device.vars.text("mqtt.host"),
                device.vars.text("mqtt.port")
            );
            Ok((steps, summary))
        }
        Stage::Smoke => {
            device
                .vars
                .set_text("smoke.payload", smoke_payload(&device.vars.text("unit_id")));
            device.clear_backlog();
            let steps = device.run_flow(&profile.smoke, &mut on_step).await?;
            let summary = format!(
                "message came back in {} ms",
                device.vars.text("smoke.round_trip_ms")
            );
            Ok((steps, summary))
        }
        Stage::Cleanup => {
            let steps = device.run_flow(&profile.cleanup, &mut on_step).await?;
            Ok((steps, "disconnected".into()))
        }
    }
}

/// The module's connection as this PC would make it: the job's broker, credentials and MQTT
/// login, for `atprov preflight` and for explaining a module's connect failure.
pub fn preflight_target(
    job: &Job,
    vars: &crate::profile::Vars,
    topic: Option<String>,
) -> crate::preflight::Target {
    let read = |p: &Option<std::path::PathBuf>| p.as_ref().and_then(|p| std::fs::read(p).ok());
    let scheme = vars.text("mqtt.scheme");
    let client = match (read(&job.credentials.cert), read(&job.credentials.key)) {
        (Some(c), Some(k)) if !matches!(scheme.as_str(), "1" | "2" | "3") => Some((c, k)),
        _ => None,
    };
    let sni = vars.text("mqtt.sni");
    crate::preflight::Target {
        host: vars.text("mqtt.host"),
        port: vars.text("mqtt.port").parse().unwrap_or(8883),
        tls: scheme != "1",
        ca: read(&job.credentials.ca),
        client,
        sni: (!sni.is_empty()).then_some(sni),
        alpn: vars
            .get("mqtt.alpn")
            .map(|v| v.items.clone())
            .unwrap_or_default(),
        client_id: vars.text("mqtt.client_id"),
        username: vars.text("mqtt.username"),
        password: vars
            .get("mqtt.password")
            .map(Value::as_text)
            .unwrap_or_default(),
        keepalive: vars.text("mqtt.keepalive").parse().unwrap_or(60),
        topic,
        timeout: std::time::Duration::from_secs(5),
    }
}

/// A module reports only that its connection failed; when this PC reaches the same broker,
/// the same connection made from here says why (a server the CA does not verify, a refused
/// device certificate, a refused login).
async fn diagnose(f: Failure, job: &Job, vars: &crate::profile::Vars) -> Failure {
    let target = preflight_target(job, vars, None);
    match crate::preflight::run(&target).await {
        Err((_, probe)) if probe.code == Code::Connect => Failure::new(
            f.code,
            format!(
                "{}; from this PC the same connection fails: {}",
                f.message, probe.message
            ),
        ),
        Ok(_) => Failure::new(
            f.code,
            format!(
                "{}; from this PC the same credentials connect, so look at the module's side (its clock, its TLS limits, what it stores)",
                f.message
            ),
        ),
        // This PC cannot reach the broker either: nothing more to say.
        Err(_) => f,
    }
}

/// Runs the profile's `[[register]]` flow and keeps the device secret it captured.
async fn register(
    device: &mut Device,
    profile: &Profile,
    job: &Job,
    on_step: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<StepReport>, (Failure, Vec<StepReport>)> {
    if profile.register.is_empty() {
        return Err((
            Failure::usage(format!(
                "the job asks for a registration but profile {} has no [[register]] steps",
                profile.name
            )),
            Vec::new(),
        ));
    }
    let steps = device.run_flow(&profile.register, on_step).await?;
    let secret = device
        .vars
        .get("aliyun.device_secret")
        .map(Value::as_text)
        .unwrap_or_default();
    let file = device.vars.text("aliyun.secret_file");
    if secret.is_empty() {
        let f = Failure::new(
            Code::Network,
            "registration: the platform's reply carried no deviceSecret".to_string(),
        );
        return Err((f, steps));
    }
    if let Err(e) = keep_secret(std::path::Path::new(&file), &secret) {
        let f = Failure::new(
            Code::Internal,
            format!(
                "registration succeeded but the device secret could not be kept in {file}: {e}; the device must be reset on the platform (ResetThing) before it can register again"
            ),
        );
        return Err((f, steps));
    }
    job.refresh_sign_in(&mut device.vars);
    Ok(steps)
}

/// Runs the profile's `[[auth]]` flow; MQTT then signs in with the iotId and iotToken.
async fn https_auth(
    device: &mut Device,
    profile: &Profile,
    on_step: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<StepReport>, (Failure, Vec<StepReport>)> {
    if profile.auth.is_empty() {
        return Err((
            Failure::usage(format!(
                "the job asks for an HTTPS sign-in but profile {} has no [[auth]] steps",
                profile.name
            )),
            Vec::new(),
        ));
    }
    let steps = device.run_flow(&profile.auth, on_step).await?;
    let id = device.vars.text("aliyun.iot_id");
    let token = device.vars.get("aliyun.iot_token").map(Value::as_text);
    match token.filter(|t| !t.is_empty() && !id.is_empty()) {
        Some(token) => {
            device.vars.set_text("mqtt.username", id);
            device.vars.set("mqtt.password", Value::secret(token));
            Ok(steps)
        }
        None => Err((
            Failure::new(
                Code::Network,
                "HTTPS sign-in: the reply carried no iotId and iotToken".to_string(),
            ),
            steps,
        )),
    }
}

/// Writes a device secret to `path`, readable by its owner only, synced before it counts; an
/// existing file is never replaced.
fn keep_secret(path: &std::path::Path, secret: &str) -> Result<(), String> {
    use crate::files::{Access, Existing};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::create_private_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    crate::files::write(
        path,
        format!("{secret}\n").as_bytes(),
        Access::Private,
        Existing::Refuse,
    )
    .map_err(|e| e.to_string())
}

/// A payload no earlier run sent: the unit and the current time in nanoseconds.
fn smoke_payload(unit: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    serde_json::json!({"atprov": "smoke", "unit": unit, "nonce": format!("{nanos:x}")}).to_string()
}
