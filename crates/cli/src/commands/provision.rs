//! `atprov identify | flash | connect | smoke | provision`: one module, one job. Loads the
//! profile and the job, checks credentials on the host before the module is touched, runs the
//! stages with a progress line each, and prints a summary or the `--json` report.

use crate::args::JobArgs;
use crate::error::Failure;
use crate::profile::Profile;
use crate::provision::job::Job;
use crate::provision::{self, Goal, Report};

use crate::args::PortArgs;
use crate::progress::Bars;

#[derive(Debug, clap::Args)]
pub struct DeviceArgs {
    #[command(flatten)]
    pub port: PortArgs,
    /// Device profile: a built-in name (see `atprov profiles`) or a TOML file. Without it the
    /// module is asked (`ATI`, `AT+GMR`) and the fitting built-in profile is used.
    #[arg(long, env = "ATPROV_PROFILE")]
    pub profile: Option<String>,
    #[command(flatten)]
    pub job: JobArgs,
    /// Rewrite credentials even when the module already holds the same bytes.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `atprov identify`: only what identify uses (the job file may name the unit: `unit_id`).
#[derive(Debug, clap::Args)]
pub struct IdentifyArgs {
    #[command(flatten)]
    pub port: PortArgs,
    /// Device profile: a built-in name (see `atprov profiles`) or a TOML file. Without it the
    /// module is asked (`ATI`, `AT+GMR`) and the fitting built-in profile is used.
    #[arg(long, env = "ATPROV_PROFILE")]
    pub profile: Option<String>,
    /// Job file (TOML): only its `unit_id` (how the unit is named) matters here.
    #[arg(long, env = "ATPROV_JOB", value_name = "FILE")]
    pub job: Option<std::path::PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl From<IdentifyArgs> for DeviceArgs {
    fn from(a: IdentifyArgs) -> DeviceArgs {
        DeviceArgs {
            port: a.port,
            profile: a.profile,
            job: JobArgs {
                job: a.job,
                ..JobArgs::default()
            },
            force: false,
            json: a.json,
        }
    }
}

pub async fn run(args: DeviceArgs, goal: Goal) -> Result<(), Failure> {
    let prepared = prepare(&args, goal).await;
    let (profile, job, credentials, link) = match prepared {
        Ok(p) => p,
        Err(failure) => {
            // A `--json` caller gets its report object even when no stage ran.
            if args.json {
                let profile = args.profile.as_deref().unwrap_or("");
                let report = Report::refused(profile, &args.port.port, &failure);
                print_report(&report, true);
            }
            return Err(failure);
        }
    };
    let mut bars = Bars::new();
    let (report, failure) = provision::run_until(
        link.engine.clone(),
        profile,
        provision::Plan {
            job: &job,
            credentials: credentials.as_ref(),
            goal,
            force: args.force,
            port: args.port.port.clone(),
            line: link.rate.clone(),
        },
        &mut bars,
        ctrl_c_stop(),
    )
    .await;
    link.close().await;
    print_report(&report, args.json);
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// Resolves at the first Ctrl-C (the job then stops cleanly); a second one ends atprov at once.
fn ctrl_c_stop() -> impl std::future::Future<Output = ()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!("atprov: stopping after the command under way (Ctrl-C again quits at once)");
        let _ = tx.send(());
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "atprov: quit at once; the unit may be mid-command (and during a --flash-baud transfer still at the faster rate until it restarts): run the same command again, after a power cycle if it does not answer"
            );
            std::process::exit(i32::from(crate::error::Code::Interrupted.number()));
        }
    });
    async move {
        // Without a signal handler there is nothing to wait for.
        if rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The profile named, or the one that fits the module on `port` (asked with `ATI`/`AT+GMR`,
/// and said on stderr).
pub async fn profile_for(name: Option<&str>, port: &PortArgs) -> Result<Profile, Failure> {
    let name = match name {
        Some(name) => name.to_string(),
        None => {
            let link = port.link().open(None).await?;
            let detected = provision::detect::profile_name(&link.engine).await;
            link.close().await;
            let (name, told) = detected?;
            eprintln!("profile: {name} (the module answered `{told}`; --profile NAME to choose)");
            name.to_string()
        }
    };
    Profile::load(&name).map_err(|e| Failure::usage(e.0))
}

/// Everything checked before the first byte: the profile, the job, the credentials, the port.
async fn prepare(
    args: &DeviceArgs,
    goal: Goal,
) -> Result<
    (
        Profile,
        Job,
        Option<atprov_core::pki::Credentials>,
        atprov_core::link::Link,
    ),
    Failure,
> {
    if args.profile.is_none() {
        // What needs no profile is refused before the module is asked which it is.
        let job = Job::build(&args.job.settings(), &Default::default())?;
        if goal.needs_credentials() {
            provision::check::credentials_for_any_family(&job)?;
        }
    }
    let profile = profile_for(args.profile.as_deref(), &args.port).await?;
    let job = Job::build(&args.job.settings(), &profile.defaults)?;
    let credentials = if goal.needs_credentials() {
        Some(provision::check::credentials(&job, &profile)?)
    } else {
        None
    };
    provision::check::job(&job, &profile, goal, &[])?;
    let link = open_for(&args.port, &profile).await?;
    Ok((profile, job, credentials, link))
}

/// Opens `port` at the profile's rate with its engine settings.
pub async fn open_for(
    port: &PortArgs,
    profile: &Profile,
) -> Result<atprov_core::link::Link, Failure> {
    port.link()
        .open_with(None, profile.serial.baud, profile.engine_config())
        .await
}

/// The JSON report, or a short human summary when the job passed.
pub fn print_report(report: &Report, json: bool) {
    if json {
        crate::render::json_pretty(report);
        return;
    }
    if report.result != crate::provision::Outcome::Pass {
        return;
    }
    let id = report.unit_id.as_deref().unwrap_or("?");
    println!("PASS  unit {id}  ({} on {})", report.profile, report.port);
    let ident: Vec<String> = ["chip", "firmware", "mac"]
        .iter()
        .filter_map(|k| report.identity.get(*k).map(|v| format!("{k} {v}")))
        .chain(
            report
                .store
                .iter()
                .map(|s| format!("store {}", s.generation)),
        )
        .collect();
    if !ident.is_empty() {
        println!("  {}", ident.join(", "));
    }
    if let Some(c) = &report.credentials {
        let items: Vec<String> = c
            .items
            .iter()
            .map(|i| format!("{} {}", i.slot, i.action))
            .collect();
        println!(
            "  credentials: {} (certificate sha256 {})",
            items.join(", "),
            &c.cert_sha256[..16]
        );
    }
    if let Some(ms) = report.smoke_round_trip_ms {
        println!("  smoke: the message came back in {ms} ms");
    }
    println!("  took {:.1} s", report.ms as f64 / 1000.0);
}
