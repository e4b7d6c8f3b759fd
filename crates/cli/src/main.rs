//! The atprov binary: clap types and one handler per subcommand. Handlers turn library results
//! into human or JSON output and into a failure with its exit code; they hold no protocol logic
//! of their own. With the `sim` feature (the default) the built-in emulators are wired in:
//! `sim:NAME` ports, `atprov sim` and `atprov demo`.

mod args;
mod commands;
mod config;
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
    /// More log output on stderr: -v the AT traffic (secrets hidden) and what the emulators
    /// and the network do, -vv debug. RUST_LOG (e.g. `atprov=debug`) overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr (no warnings).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also write the log (with the AT traffic, secrets hidden, ISO-8601 UTC timestamps) to
    /// FILE, readable by its owner only; replaced if it exists.
    #[arg(long, value_name = "FILE", global = true)]
    pub log_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Try atprov without hardware: provision an emulated ESP32 with throw-away credentials.
    #[cfg(feature = "sim")]
    Demo(commands::demo::DemoArgs),
    /// Identify the module: firmware, chip, MAC, credential store.
    Identify(commands::provision::IdentifyArgs),
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
    /// Credentials on a module: `creds erase`.
    Creds(commands::creds::CredsArgs),
    /// Print a shell completion script: `atprov completions bash > /etc/bash_completion.d/atprov`
    /// (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `atprov man > atprov.1 && man ./atprov.1`.
    Man,
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

impl Command {
    /// The port settings of a command that opens one module's port.
    fn port_args_mut(&mut self) -> Option<&mut args::PortArgs> {
        match self {
            Command::Identify(a) => Some(&mut a.port),
            Command::Flash(a) | Command::Connect(a) | Command::Smoke(a) | Command::Provision(a) => {
                Some(&mut a.port)
            }
            Command::Send(a) => Some(&mut a.port),
            Command::Console(a) => Some(&mut a.port),
            Command::Creds(a) => match &mut a.command {
                commands::creds::CredsCommand::List(l) => Some(&mut l.port),
                commands::creds::CredsCommand::Erase(e) => Some(&mut e.port),
            },
            _ => None,
        }
    }
}

/// Runs the parsed command line.
async fn run(mut cli: Cli) -> Result<(), Failure> {
    use atprov_core::provision::Goal;
    if let Some(port) = cli.command.port_args_mut() {
        port.resolve_auto()?;
    }
    match cli.command {
        #[cfg(feature = "sim")]
        Command::Demo(a) => commands::demo::run(a).await,
        Command::Identify(a) => commands::provision::run(a.into(), Goal::Identify).await,
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
        Command::Creds(a) => commands::creds::run(a).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "atprov", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| Failure::new(error::Code::Internal, format!("man page: {e}")))
        }
    }
}

/// Logs on stderr at the level `-q`/`-v` ask for (RUST_LOG overrides), coloured only on a
/// terminal without `NO_COLOR`; with `--log-file`, the traffic and everything at info or above
/// to that file too.
fn logging(cli: &Cli) -> Result<(), String> {
    use std::io::IsTerminal;
    use tracing_subscriber::{
        EnvFilter, Layer, fmt, layer::SubscriberExt, util::SubscriberInitExt,
    };
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = |default: &str| {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
    };
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour)
        .with_filter(filter(level));
    let file = match &cli.log_file {
        Some(path) => {
            let f = atprov_core::files::create_private(path)
                .map_err(|e| format!("--log-file {}: cannot create it: {e}", path.display()))?;
            let wanted = if cli.verbose >= 2 { "debug" } else { "info" };
            Some(
                fmt::layer()
                    .with_writer(std::sync::Mutex::new(f))
                    .with_target(false)
                    .with_ansi(false)
                    .with_filter(filter(wanted)),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init()
        .map_err(|e| format!("logging: {e}"))
}

fn main() -> ExitCode {
    // Output piped into `head` that stops reading ends atprov quietly, as it does any Unix
    // tool, instead of a panic on the next print.
    // SAFETY: setting a signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if let Err(f) = config::apply() {
        eprintln!("atprov: {}", f.message);
        return ExitCode::from(f.code.number());
    }
    let cli = Cli::parse();
    // clap accepted the command line, so a `--json` in it is that command's flag.
    let json_requested = std::env::args_os().any(|a| a == "--json");
    #[cfg(feature = "sim")]
    commands::sim::register_ports();
    if let Err(e) = logging(&cli) {
        eprintln!("atprov: {e}");
        return ExitCode::from(error::Code::Usage.number());
    }
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
            // `--json` promises an object on stdout, even for a failure before any report.
            if json_requested && !render::json_printed() {
                render::json_line(serde_json::json!({
                    "result": "fail",
                    "exit_code": f.code.number(),
                    "error": f.message,
                }));
            }
            eprintln!("atprov: {}", f.message);
            ExitCode::from(f.code.number())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand says what it does and every option what it is for: `--help` is
    /// the manual people read first.
    #[test]
    fn every_command_and_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let name = format!("{path} {}", cmd.get_name()).trim().to_string();
            if cmd.get_about().is_none() && cmd.get_long_about().is_none() {
                missing.push(format!("`{name}` has no description"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("`{name}`: `{id}` has no help text"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &name, missing);
                }
            }
        }
        let mut missing = Vec::new();
        let root = super::Cli::command();
        for sub in root.get_subcommands() {
            walk(sub, "atprov", &mut missing);
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
