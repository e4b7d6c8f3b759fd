//! The command line: clap types and one handler per subcommand. Handlers turn library results
//! into human or JSON output and into a [`Failure`] with its exit code; they hold no protocol
//! logic of their own.

mod console;
mod link;
mod pki;
mod ports;
pub mod replay;
mod report;
mod send;
mod sim;

use clap::{Parser, Subcommand};

use crate::exit::Failure;
pub use link::PortArgs;

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
    /// Send AT commands and print each result, info lines and URCs.
    Send(send::SendArgs),
    /// Interactive terminal: typed lines are sent, device output is shown with timestamps.
    Console(console::ConsoleArgs),
    /// Replay a recorded transcript against a fake device and show how atprov classifies it.
    Replay(replay::ReplayArgs),
    /// List serial ports with their USB ids.
    Ports(ports::PortsArgs),
    /// Run a built-in emulated module (e.g. on a pseudo-terminal).
    Sim(sim::SimArgs),
    /// Credentials: encode/decode ESP-AT PKI bins, inspect, check and generate.
    Pki(pki::PkiArgs),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Send(a) => send::run(a).await,
        Command::Console(a) => console::run(a).await,
        Command::Replay(a) => replay::run(a).await,
        Command::Ports(a) => ports::run(a),
        Command::Sim(a) => sim::run(a).await,
        Command::Pki(a) => pki::run(a),
    }
}
