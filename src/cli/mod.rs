//! The command line: clap types and one handler per subcommand. Handlers turn library results
//! into human or JSON output and into a [`Failure`] with its exit code; they hold no protocol
//! logic of their own.

mod console;
mod demo;
mod factory;
mod link;
mod pki;
mod ports;
mod profiles;
mod progress;
mod provision;
pub mod replay;
mod report;
mod send;
mod sign;
mod sim;

use clap::{Parser, Subcommand};

use crate::exit::Failure;
pub use link::{Link, PortArgs};

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
    Demo(demo::DemoArgs),
    /// Identify the module: firmware, chip, MAC, credential store.
    Identify(provision::DeviceArgs),
    /// Check the credentials, write them to the module's store and verify them.
    Flash(provision::DeviceArgs),
    /// Join the network, sync the clock and connect MQTT over TLS.
    Connect(provision::DeviceArgs),
    /// Connect, then publish a unique message and wait for it to come back.
    Smoke(provision::DeviceArgs),
    /// Identify, flash, connect and smoke: the whole job.
    Provision(provision::DeviceArgs),
    /// Run a factory line: stations in parallel, a credential pool and a crash-safe journal.
    Factory(factory::FactoryArgs),
    /// List the built-in device profiles.
    Profiles,
    /// Show a device profile.
    Profile(profiles::ProfileArgs),
    /// Send AT commands and print each result, info lines and URCs.
    Send(send::SendArgs),
    /// Interactive terminal: typed lines are sent, device output is shown with timestamps.
    Console(console::ConsoleArgs),
    /// Replay a recorded transcript against a fake device and show how atprov classifies it.
    Replay(replay::ReplayArgs),
    /// List serial ports with their USB ids.
    Ports(ports::PortsArgs),
    /// Cloud sign-in computed on the host: `sign aliyun` (MQTT client id, username, password;
    /// dynamic registration).
    Sign(sign::SignArgs),
    /// Run a built-in emulated module (e.g. on a pseudo-terminal).
    Sim(sim::SimArgs),
    /// Credentials: encode/decode ESP-AT PKI bins, inspect, check and generate.
    Pki(pki::PkiArgs),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    use crate::provision::Goal;
    match cli.command {
        Command::Demo(a) => demo::run(a).await,
        Command::Identify(a) => provision::run(a, Goal::Identify).await,
        Command::Flash(a) => provision::run(a, Goal::Flash).await,
        Command::Connect(a) => provision::run(a, Goal::Connect).await,
        Command::Smoke(a) => provision::run(a, Goal::Smoke).await,
        Command::Provision(a) => provision::run(a, Goal::Provision).await,
        Command::Factory(a) => factory::run(a).await,
        Command::Profiles => profiles::list(),
        Command::Profile(a) => profiles::run(a),
        Command::Send(a) => send::run(a).await,
        Command::Console(a) => console::run(a).await,
        Command::Replay(a) => replay::run(a).await,
        Command::Ports(a) => ports::run(a),
        Command::Sim(a) => sim::run(a).await,
        Command::Sign(a) => sign::run(a),
        Command::Pki(a) => pki::run(a),
    }
}
