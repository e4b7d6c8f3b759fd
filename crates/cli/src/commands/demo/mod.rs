//! `atprov demo`: the newcomer's first command. Makes a throw-away server root, server and
//! device certificates, writes a job file, and runs `provision` against the built-in emulated
//! ESP32, with progress and a summary. The module connects to a real `mosquitto` started on a
//! loopback port when one is installed, else to the emulator's offline broker; the demo says
//! which. Nothing leaves this machine.

mod mosquitto;

use std::path::{Path, PathBuf};

use crate::at::Engine;
use crate::error::{Code, Failure};
use crate::pki::generate::{self, KeyKind};
use crate::profile::Profile;
use crate::provision::job::Job;
use crate::provision::{self, Goal};
use crate::sim::{self, SimOptions};

use super::pki::write_file;
use crate::progress::Bars;

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
    /// Use the emulator's offline broker even when mosquitto is installed.
    #[arg(long)]
    pub offline: bool,
}

pub async fn run(args: DemoArgs) -> Result<(), Failure> {
    // A temporary folder is private and unpredictable; a kept one must not hold earlier files.
    let (dir, _temporary) = match &args.keep {
        Some(d) => {
            crate::files::create_private_dir(d)
                .map_err(|e| Failure::usage(format!("{}: cannot create it: {e}", d.display())))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("atprov-demo-")
                .tempdir()
                .map_err(|e| Failure::new(Code::Internal, format!("a temporary folder: {e}")))?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let result = demo(&dir, &args).await;
    if args.keep.is_some() && result.is_ok() {
        eprintln!(
            "demo files kept in {}: ca.pem (the server root the module stores), server.pem and server.key (the broker), device.pem and device.key (from the device CA device-ca.pem), job.toml, and the module's flash in module/",
            dir.display()
        );
        eprintln!(
            "on a real module: atprov provision --port /dev/ttyUSB0 --job {}",
            dir.join("job.toml").display()
        );
    }
    result
}

async fn demo(dir: &Path, args: &DemoArgs) -> Result<(), Failure> {
    let internal =
        |e: crate::pki::generate::GenerateError| Failure::new(Code::Internal, e.to_string());
    // The AWS shape: the module stores the root of the broker's certificate; the device
    // certificate comes from a separate issuing CA that only the broker trusts.
    let server_root = generate::ca("atprov demo server root", 30).map_err(internal)?;
    let server = generate::server(
        &server_root.cert_pem,
        &server_root.key_pem,
        &["mqtt.emulated.atprov"],
        30,
    )
    .map_err(internal)?;
    let device_ca = generate::ca("atprov demo device CA", 30).map_err(internal)?;
    let device = generate::device(
        &device_ca.cert_pem,
        &device_ca.key_pem,
        "atprov-demo-thing",
        30,
        KeyKind::P256,
        None,
    )
    .map_err(internal)?;
    let network = &sim::esp32::default_networks()[0];
    let job_text = format!(
        r#"# What to provision: made by `atprov demo`. Paths are relative to this file.
[credentials]
ca = "ca.pem"
cert = "device.pem"
key = "device.key"

[wifi]
ssid = "{ssid}"
password = "{password}"

[mqtt]
host = "mqtt.emulated.atprov"
port = {port}
client_id = "demo-{{unit_id}}"
"#,
        ssid = network.ssid,
        password = network.password,
        port = 8883,
    );
    let files: [(&str, &[u8], bool); 8] = [
        ("server.pem", server.cert_pem.as_bytes(), false),
        ("server.key", server.key_pem.as_bytes(), true),
        ("ca.pem", server_root.cert_pem.as_bytes(), false),
        ("device-ca.pem", device_ca.cert_pem.as_bytes(), false),
        ("device-ca.key", device_ca.key_pem.as_bytes(), true),
        ("device.pem", device.cert_pem.as_bytes(), false),
        ("device.key", device.key_pem.as_bytes(), true),
        ("job.toml", job_text.as_bytes(), true),
    ];
    if let Some((name, ..)) = files
        .iter()
        .find(|(n, ..)| dir.join(n).symlink_metadata().is_ok())
    {
        return Err(Failure::usage(format!(
            "{}: already exists; the demo does not replace files: give --keep an empty or new folder",
            dir.join(name).display()
        )));
    }
    for (name, bytes, secret) in files {
        write_file(&dir.join(name), bytes, secret, false)?;
    }
    let job_path = dir.join("job.toml");
    // The module reaches the broker through the emulator's network, whatever port it dials.
    let broker = if !args.offline && mosquitto::installed() {
        match mosquitto::start(dir) {
            Ok(b) => {
                eprintln!(
                    "broker: mosquitto on 127.0.0.1:{} (real TLS and MQTT; it checks the device certificate against device-ca.pem)",
                    b.port
                );
                Some(b)
            }
            Err(why) => {
                eprintln!("broker: the emulator's offline broker ({why})");
                None
            }
        }
    } else {
        eprintln!(
            "broker: the emulator's offline broker (TLS judged in memory by rustls; {})",
            if args.offline {
                "--offline given"
            } else {
                "install mosquitto for a real one"
            }
        );
        None
    };

    let profile = Profile::load("esp32-at").map_err(|e| Failure::new(Code::Internal, e.0))?;
    let job_args = crate::provision::job::JobSettings {
        job: Some(job_path),
        ..Default::default()
    };
    let job = Job::build(&job_args, &profile.defaults)?;
    let credentials = provision::check::credentials(&job, &profile)?;
    let name = if args.legacy {
        "esp32-at-v2"
    } else {
        "esp32-at"
    };
    let options = SimOptions {
        state_dir: Some(dir.join("module")),
        broker: crate::sim::BrokerTls {
            identity: Some((server.cert_pem.into_bytes(), server.key_pem.into_bytes())),
            trust: Some(device_ca.cert_pem.into_bytes()),
        },
        network: broker
            .as_ref()
            .map(|b| sim::net::Broker::parse(&format!("127.0.0.1:{}", b.port)))
            .transpose()
            .map_err(|e| Failure::new(Code::Internal, e))?,
        ..SimOptions::default()
    };
    let (port, _control) =
        sim::open_in_process_with_control(name, &options).map_err(Failure::usage)?;
    let config = profile.engine_config();
    let (engine, task) = Engine::start(Box::new(port), config, None);
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
            line: crate::port::LineRate::Fixed("an in-process emulator".into()),
        },
        &mut bars,
    )
    .await;
    task.abort();
    drop(broker);
    super::provision::print_report(&report, args.json);
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}
