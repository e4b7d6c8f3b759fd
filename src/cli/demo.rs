//! `atprov demo`: the newcomer's first command. Makes a throw-away CA and device certificate,
//! writes a job file, and runs `provision` against the built-in emulated ESP32, with progress
//! and a summary. Nothing leaves this machine.

use std::path::{Path, PathBuf};

use crate::at::Engine;
use crate::exit::{Code, Failure};
use crate::job::{Job, JobArgs};
use crate::pki::generate::{self, KeyKind};
use crate::profile::Profile;
use crate::provision::{self, Goal};
use crate::sim::{self, SimOptions};

use super::pki::write_file;
use super::progress::Bars;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the demo's files in DIR: CA, device certificate and key, job file, and the
    /// emulated module's flash (`module/`). Default: a temporary directory, removed after.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Emulate ESP-AT 2.x (legacy PKI partitions) instead of 3.x.
    #[arg(long)]
    pub legacy: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: DemoArgs) -> Result<(), Failure> {
    let (dir, temporary) = match &args.keep {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("atprov-demo-{}", std::process::id())),
            true,
        ),
    };
    let result = demo(&dir, &args).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    } else if result.is_ok() {
        eprintln!(
            "demo files kept in {} (the module's flash is in module/)",
            dir.display()
        );
    }
    result
}

async fn demo(dir: &Path, args: &DemoArgs) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::usage(format!("{}: cannot create it: {e}", dir.display())))?;
    let internal = |e: String| Failure::new(Code::Internal, e);
    let ca = generate::ca("atprov demo CA", 30).map_err(internal)?;
    let device = generate::device(
        &ca.cert_pem,
        &ca.key_pem,
        "atprov-demo-thing",
        30,
        KeyKind::P256,
        None,
    )
    .map_err(internal)?;
    write_file(&dir.join("ca.pem"), ca.cert_pem.as_bytes(), false)?;
    write_file(&dir.join("ca.key"), ca.key_pem.as_bytes(), true)?;
    write_file(&dir.join("device.pem"), device.cert_pem.as_bytes(), false)?;
    write_file(&dir.join("device.key"), device.key_pem.as_bytes(), true)?;
    let network = &sim::esp32::default_networks()[0];
    let job_text = format!(
        r#"# What to provision: made by `atprov demo`.
[credentials]
ca = "{ca}"
cert = "{cert}"
key = "{key}"

[wifi]
ssid = "{ssid}"
password = "{password}"

[mqtt]
host = "mqtt.emulated.atprov"
client_id = "demo-{{unit_id}}"
"#,
        ca = dir.join("ca.pem").display(),
        cert = dir.join("device.pem").display(),
        key = dir.join("device.key").display(),
        ssid = network.ssid,
        password = network.password,
    );
    let job_path = dir.join("job.toml");
    write_file(&job_path, job_text.as_bytes(), true)?;

    let profile = Profile::load("esp32-at").map_err(|e| Failure::new(Code::Internal, e.0))?;
    let job_args = JobArgs {
        job: Some(job_path),
        ..JobArgs::default()
    };
    let job = Job::build(&job_args, &profile.defaults).map_err(Failure::usage)?;
    let credentials = provision::check_credentials(&job, &profile)?;
    let name = if args.legacy {
        "esp32-at-v2"
    } else {
        "esp32-at"
    };
    let options = SimOptions {
        state_dir: Some(dir.join("module")),
        ..SimOptions::default()
    };
    let (port, _control) =
        sim::open_in_process_with_control(name, &options).map_err(Failure::usage)?;
    let config = profile.engine_config();
    let (engine, task) = Engine::start(port, config, None);
    let mut bars = Bars::new();
    let (report, failure) = provision::run(
        engine,
        profile,
        provision::Plan {
            job: &job,
            credentials: Some(&credentials),
            goal: Goal::Provision,
            force: false,
            port: format!("sim:{name}"),
        },
        &mut bars,
    )
    .await;
    task.abort();
    super::provision::print_report(&report, args.json);
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}
