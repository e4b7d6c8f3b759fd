//! `atprov preflight`: the job's connection made from this PC instead of the module (DNS, TCP,
//! TLS with the CA the module will store, MQTT CONNECT with the same login, subscribe, publish,
//! the echo), each step timed; a failure is one line with its cause and exit code 12, 13 or 14.

use crate::args::JobArgs;
use crate::error::Failure;
use crate::profile::{Profile, Vars};
use crate::provision::job::Job;

#[derive(Debug, clap::Args)]
pub struct PreflightArgs {
    /// Device profile whose defaults the job uses (built-in name or file).
    #[arg(long, default_value = "esp32-at")]
    pub profile: String,
    #[command(flatten)]
    pub job: JobArgs,
    /// The unit id values such as `{unit_id}` render with (the module would report it).
    #[arg(long, default_value = "preflight")]
    pub unit_id: String,
    /// Print the steps and the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: PreflightArgs) -> Result<(), Failure> {
    let profile = Profile::load(&args.profile).map_err(|e| Failure::usage(e.0))?;
    let job = Job::build(&args.job.settings(), &profile.defaults)?;
    let mut vars = Vars::default();
    for k in ["mac", "imei", "unit_id"] {
        vars.set_text(k, args.unit_id.clone());
    }
    job.apply(&mut vars);
    let topic = vars.text("smoke.topic");
    let target = crate::provision::preflight_target(&job, &vars, Some(topic));
    let result = crate::preflight::run(&target).await;
    let (probe, failure) = match result {
        Ok(p) => (p, None),
        Err((p, f)) => (p, Some(f)),
    };
    if args.json {
        let v = serde_json::json!({
            "host": target.host,
            "port": target.port,
            "result": if failure.is_none() { "pass" } else { "fail" },
            "exit_code": failure.as_ref().map_or(0, |f| f.code.number()),
            "error": failure.as_ref().map(|f| f.message.clone()),
            "steps": probe.steps,
            "negotiated": probe.negotiated,
        });
        crate::render::json_pretty(&v);
    } else {
        for s in &probe.steps {
            eprintln!("ok   {:<9} {} ms", s.step, s.ms);
        }
        if failure.is_none() {
            println!(
                "PASS  {}:{} {}",
                target.host,
                target.port,
                probe.negotiated.as_deref().unwrap_or("")
            );
        }
    }
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}
