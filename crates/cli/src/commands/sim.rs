//! `atprov sim NAME --pty`: serve a built-in emulator on a pseudo-terminal until stopped.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Code, Failure};
use crate::sim::{self, RunnerOptions, SimControl, SimOptions};

#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// The emulator: esp32-at (ESP-AT 3.2, NVS credentials), esp32-at-v2 (ESP-AT 2.2, PKI
    /// partitions), quectel (EC200U, standard AT firmware) or air780ep (Luat AT firmware).
    pub name: String,
    /// Serve on a new pseudo-terminal and print its path on the first line of stdout.
    #[arg(long)]
    pub pty: bool,
    /// Pace output at this baud rate, like a real UART.
    #[arg(long, value_parser = crate::units::parse_baud)]
    pub baud: Option<u32>,
    /// Firmware time per command (e.g. 2ms).
    #[arg(long, default_value = "0ms", value_parser = crate::units::parse_duration)]
    pub latency: Duration,
    /// How long a reboot takes (`AT+RST`, `AT+CFUN=1,1`, a fault): the module hears nothing,
    /// then sends its boot banner.
    #[arg(long, default_value = "0ms", value_parser = crate::units::parse_duration)]
    pub boot_time: Duration,
    /// Keep the module's partitions, NVS entries and files as plain files in DIR (loaded
    /// again at the next start, like flash).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// CA certificate (PEM) the emulated broker trusts for client certificates (its own issuing
    /// CA, like AWS IoT's; never what the module stores). Without it the broker takes any
    /// client certificate whose key the module holds.
    #[arg(long, value_name = "FILE")]
    pub trust: Option<PathBuf>,
    /// The emulated broker's certificate chain (PEM, leaf first), which the module verifies
    /// with its stored CA. Without it the broker presents a throw-away certificate and only
    /// checks that the stored CA is a usable CA certificate.
    #[arg(long, value_name = "FILE", requires = "server_key")]
    pub server_cert: Option<PathBuf>,
    /// The key of --server-cert.
    #[arg(long, value_name = "FILE", requires = "server_cert")]
    pub server_key: Option<PathBuf>,
    /// A real MQTT broker on this machine (IP:PORT, loopback only): the module connects to it
    /// over TCP with a real TLS client built from what it stores, and speaks MQTT 3.1.1; the
    /// broker judges the credentials. Without it the emulated broker answers offline.
    #[arg(long, value_name = "IP:PORT")]
    pub broker: Option<String>,
    /// A Wi-Fi network the module can join, SSID:PASSWORD (repeat; default
    /// "atprov-lab:correct horse battery").
    #[arg(long, value_name = "SSID:PASSWORD")]
    pub wifi: Vec<String>,
    /// SNTP never syncs (the clock stays at 1970).
    #[arg(long)]
    pub no_sntp: bool,
    /// Realistic device latencies (Wi-Fi join 1.5 s, TLS 1.2 s, flash erase 45 ms a sector...).
    #[arg(long)]
    pub realistic: bool,
    /// Inject a fault on the first command starting with PREFIX, written KIND@PREFIX (repeat):
    /// reset_mid (restart mid-answer), reboot_after (answer, then restart), garble (noise
    /// instead of the answer), silent (no answer), busy:N (N `busy p...` first), truncate:N
    /// (only N bytes of the answer), drop_prompt (the `>`/`CONNECT` is lost but the module
    /// still waits for the data).
    #[arg(long, value_name = "KIND@PREFIX")]
    pub fault: Vec<String>,
    /// The broker's policy lacks Receive: publishes are acknowledged but never come back.
    #[arg(long)]
    pub deny_receive: bool,
    /// A module setting, KEY or KEY=VALUE (repeat). Every emulator: max-baud=N (the adapter
    /// cannot receive faster: above N what the module sends arrives garbled). Quectel:
    /// imei=TEXT, no-sim, registration=home|roaming|denied, urcport=usbat|uart1, clock-set,
    /// open-result=N, corrupt-upload, quecpython, aliyun=PK:DN:SECRET,
    /// product=PK:PRODUCT_SECRET, register-silent. Air780EP: imei=TEXT, no-sim,
    /// registration=home|roaming|denied, clock-unset, idle-kick=MS, aliyun=PK:DN:SECRET,
    /// product=PK:PRODUCT_SECRET, register-silent.
    #[arg(long, value_name = "KEY[=VALUE]")]
    pub module: Vec<String>,
    /// The module's MAC address (its identity), e.g. 24:0a:c4:00:00:01.
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// Also make PATH a symbolic link to the pseudo-terminal (a stable name, like a udev
    /// rule's); removed when the emulator stops.
    #[arg(long, value_name = "PATH", requires = "pty")]
    pub link: Option<PathBuf>,
}

pub async fn run(args: SimArgs) -> Result<(), Failure> {
    let read = |flag: &str, p: &Option<PathBuf>| -> Result<Option<Vec<u8>>, Failure> {
        p.as_ref()
            .map(|p| {
                std::fs::read(p).map_err(|e| {
                    Failure::usage(format!("--{flag} {}: cannot read it: {e}", p.display()))
                })
            })
            .transpose()
    };
    let identity = match (
        read("server-cert", &args.server_cert)?,
        read("server-key", &args.server_key)?,
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(Failure::usage(
                "--server-cert and --server-key go together: the emulated broker's certificate chain and its key",
            ));
        }
    };
    let broker = sim::BrokerTls {
        identity,
        trust: read("trust", &args.trust)?,
    };
    let networks = args
        .wifi
        .iter()
        .map(|w| sim::esp32::Network::parse(w).map_err(|e| Failure::usage(format!("--wifi {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let triggers = args
        .fault
        .iter()
        .map(|f| sim::runner::Trigger::parse(f).map_err(Failure::usage))
        .collect::<Result<Vec<_>, _>>()?;
    let mac = match &args.mac {
        Some(m) => Some(sim::parse_mac(m).map_err(|e| Failure::usage(format!("--mac {e}")))?),
        None => None,
    };
    let mut module = args.module.clone();
    let max_baud = sim::take_link_settings(&mut module).map_err(Failure::usage)?;
    let options = SimOptions {
        mac,
        baud: args.baud,
        latency: args.latency,
        state_dir: args.state.clone(),
        broker,
        network: match &args.broker {
            None => None,
            Some(b) => Some(
                sim::net::Broker::parse(b).map_err(|e| Failure::usage(format!("--broker {e}")))?,
            ),
        },
        networks,
        sntp_never: args.no_sntp,
        realistic: args.realistic,
        deny_receive: args.deny_receive,
        module,
    };
    let model = sim::model_with(&args.name, &options).map_err(Failure::usage)?;
    if !args.pty {
        return Err(Failure::usage(
            "atprov sim needs --pty (serve on a pseudo-terminal); in-process use is --port sim:NAME",
        ));
    }
    let pty = sim::pty::open().map_err(|e| {
        Failure::new(
            Code::Internal,
            format!("cannot open a pseudo-terminal: {e}"),
        )
    })?;
    if let Some(link) = &args.link {
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&pty.path, link).map_err(|e| {
            Failure::usage(format!("--link {}: cannot create it: {e}", link.display()))
        })?;
    }
    let _unlink = Unlink(args.link.clone());
    println!("{}", pty.path);
    let host_rate = pty.master.host_rate().map_err(|e| {
        Failure::new(
            Code::Internal,
            format!("cannot read the pseudo-terminal's settings: {e}"),
        )
    })?;
    let options = RunnerOptions {
        baud: args.baud,
        latency: args.latency,
        boot_banner: false,
        boot_time: args.boot_time,
        host_rate: Some(host_rate),
        max_baud,
    };
    let control = SimControl::default();
    control.faults(|f| f.triggers = triggers);
    let task = model.into_run(Box::new(pty.master), options, control);
    tokio::select! {
        r = task => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::new(Code::Internal, format!("emulator stopped: {e}"))),
            Err(e) => Err(Failure::new(Code::Internal, format!("emulator crashed: {e}"))),
        },
        _ = shutdown() => Ok(()),
    }
}

/// Removes the `--link` symlink when the emulator stops (not after SIGKILL).
struct Unlink(Option<PathBuf>);

impl Drop for Unlink {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Makes `sim:NAME` ports open the built-in emulators in this process.
pub fn register_ports() {
    crate::port::register_opener(|name| {
        let port = crate::sim::open_in_process(name, &crate::sim::SimOptions::default())
            .map_err(crate::port::PortError::BadSelector)?;
        Ok(Box::new(port))
    });
}
