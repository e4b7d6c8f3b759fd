//! The atprov binary: clap types and one handler per subcommand. Handlers turn library results
//! into human or JSON output and into a failure with its exit code; they hold no protocol logic
//! of their own. With the `sim` feature (the default) the built-in emulators are wired in:
//! `sim:NAME` ports, `atprov sim` and `atprov demo`.

mod args;
mod commands;
mod progress;
mod render;

use atprov_core::{
    at, cloud, error, factory, files, pki, port, preflight, profile, provision, transcript, units,
};
#[cfg(feature = "sim")]
use atprov_sim as sim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::Failure;

/// Provision IoT modules (ESP-AT, Air780EP, Quectel) over their AT-command serial port.
#[derive(Debug, Parser)]
#[command(name = "atprov", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Try atprov without hardware: provision an emulated ESP32 with throw-away credentials.
    #[cfg(feature = "sim")]
    Demo(commands::demo::DemoArgs),
    /// Identify the module: firmware, chip, MAC, credential store.
    Identify(commands::provision::DeviceArgs),
    /// Check the credentials, write them to the module's store and verify them.
    Flash(commands::provision::DeviceArgs),
    /// Join the network, sync the clock and connect MQTT over TLS.
    Connect(commands::provision::DeviceArgs),
    /// Connect, then publish a unique message and wait for it to come back.
    Smoke(commands::provision::DeviceArgs),
    /// Identify, flash, connect and smoke: the whole job.
    Provision(commands::provision::DeviceArgs),
    /// Make the job's connection from this PC: DNS, TCP, TLS with the module's CA, MQTT login,
    /// subscribe, publish and the echo, each timed; one line saying why when it fails.
    Preflight(commands::preflight::PreflightArgs),
    /// Run a factory line: stations in parallel, a credential pool and a crash-safe journal.
    Factory(commands::factory::FactoryArgs),
    /// List the built-in device profiles.
    Profiles,
    /// Show a device profile.
    Profile(commands::profiles::ProfileArgs),
    /// Send AT commands and print each result, info lines and URCs.
    Send(commands::send::SendArgs),
    /// Interactive terminal: typed lines are sent, device output is shown with timestamps.
    Console(commands::console::ConsoleArgs),
    /// Replay a recorded transcript against a fake device and show how atprov classifies it.
    Replay(commands::replay::ReplayArgs),
    /// List serial ports with their USB ids.
    Ports(commands::ports::PortsArgs),
    /// Cloud sign-in computed on the host: `sign aliyun` (MQTT client id, username, password;
    /// dynamic registration).
    Sign(commands::sign::SignArgs),
    /// Run a built-in emulated module (e.g. on a pseudo-terminal).
    #[cfg(feature = "sim")]
    Sim(commands::sim::SimArgs),
    /// Credentials: encode/decode ESP-AT PKI bins, inspect, check and generate.
    Pki(commands::pki::PkiArgs),
}

impl Command {
    /// Whether the command drives one port only (a single-threaded runtime then avoids
    /// cross-thread wake-ups on every round trip).
    fn one_port(&self) -> bool {
        match self {
            #[cfg(feature = "sim")]
            Command::Sim(_) => true,
            Command::Send(_) | Command::Console(_) => true,
            _ => false,
        }
    }
}

/// Runs the parsed command line.
async fn run(cli: Cli) -> Result<(), Failure> {
    use atprov_core::provision::Goal;
    match cli.command {
        #[cfg(feature = "sim")]
        Command::Demo(a) => commands::demo::run(a).await,
        Command::Identify(a) => commands::provision::run(a, Goal::Identify).await,
        Command::Flash(a) => commands::provision::run(a, Goal::Flash).await,
        Command::Connect(a) => commands::provision::run(a, Goal::Connect).await,
        Command::Smoke(a) => commands::provision::run(a, Goal::Smoke).await,
        Command::Provision(a) => commands::provision::run(a, Goal::Provision).await,
        Command::Factory(a) => commands::factory::run(a).await,
        Command::Preflight(a) => commands::preflight::run(a).await,
        Command::Profiles => commands::profiles::list(),
        Command::Profile(a) => commands::profiles::run(a),
        Command::Send(a) => commands::send::run(a).await,
        Command::Console(a) => commands::console::run(a).await,
        Command::Replay(a) => commands::replay::run(a).await,
        Command::Ports(a) => commands::ports::run(a),
        #[cfg(feature = "sim")]
        Command::Sim(a) => commands::sim::run(a).await,
        Command::Sign(a) => commands::sign::run(a),
        Command::Pki(a) => commands::pki::run(a),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "sim")]
    commands::sim::register_ports();
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let single = cli.command.one_port();
    let built = if single {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atprov: cannot start the async runtime: {e}");
            return ExitCode::from(error::Code::Internal.number());
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("atprov: {}", f.message);
            ExitCode::from(f.code.number())
        }
    }
}
