#![deny(missing_docs)]
//! Emulated modules, used by tests, benchmarks and anyone without hardware
//! (`--port sim:esp32-at`, `atprov sim NAME --pty`).
//!
//! An emulator is a [`runner::Model`] (what the firmware does) played by the [`runner`] (echo,
//! busy, prompts, faults, timing) on a byte stream: an in-process pipe ([`open_in_process`]) or
//! a pseudo-terminal ([`pty`]) so that tests exercise the real serial path.
//!
//! This crate knows nothing of the host (`atprov-core`): it parses commands, stores files and
//! judges credentials and sign-ins with its own code or real libraries (rustls for TLS, the
//! RustCrypto HMACs for Aliyun), so a host bug makes an emulator refuse instead of agreeing.

pub mod aliyun;
pub mod cellular;
pub mod esp32;
pub mod luat;
pub mod net;
pub mod pty;
pub mod quectel;
pub mod runner;
pub mod tls;
pub mod uart;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};

pub use runner::{Faults, HostRate, Model, RunnerOptions, SimControl, UartLog};
pub use tls::BrokerTls;

/// A byte stream an emulator can be played on.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The parameters of a set command (`AT+X=a,"b,c",d` → `a`, `"b,c"`, `d`), split on commas
/// outside quotes, quotes kept: how the firmware reads them.
pub(crate) fn params(line: &str) -> Vec<&str> {
    let Some((_, args)) = line.split_once('=') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in args.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(args[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(args[start..].trim());
    out
}

/// A quoted AT parameter as the firmware reads it: quotes removed, `\"`, `\,`, `\\` and
/// `\<c>` unescaped. An unquoted parameter is only unescaped.
pub(crate) fn unquote(s: &str) -> String {
    let inner = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The built-in emulators: name and what it is.
pub const EMULATORS: &[(&str, &str)] = &[
    (
        "esp32-at",
        "ESP32 with ESP-AT 3.2 (certificates in mfg_nvs, AT+SYSMFG)",
    ),
    (
        "esp32-at-v2",
        "ESP32 with ESP-AT 2.2 (legacy PKI partitions, AT+SYSFLASH)",
    ),
    (
        "air780ep",
        "Hezhou/Luat Air780EP, Luat AT firmware (FS files, SSL context 88, AT+M* MQTT)",
    ),
    (
        "quectel",
        "Quectel EC200U, standard AT firmware (UFS files, AT+QSSLCFG, AT+QMT*)",
    ),
];

/// Parses `24:0a:c4:00:00:01` (or with dashes, or bare hex).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let hex: String = s.chars().filter(|c| !matches!(c, ':' | '-')).collect();
    let bad = || format!("`{s}` is not a MAC address: write six hex bytes, e.g. 24:0a:c4:00:00:01");
    if hex.len() != 12 {
        return Err(bad());
    }
    let mut out = [0u8; 6];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// How to run an emulator.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// The module's MAC address (default: a fixed one per model).
    pub mac: Option<[u8; 6]>,
    /// Pace both directions at this baud rate.
    pub baud: Option<u32>,
    /// Firmware time per command.
    pub latency: Duration,
    /// Keep flash, NVS and files as plain files in this directory.
    pub state_dir: Option<std::path::PathBuf>,
    /// The emulated broker's TLS side: its certificate and the CA it trusts for clients.
    pub broker: BrokerTls,
    /// A real broker (on this machine) to connect to instead of the emulated one.
    pub network: Option<net::Broker>,
    /// Wi-Fi networks offered (default: `atprov-lab` / `correct horse battery`).
    pub networks: Vec<esp32::Network>,
    /// SNTP never syncs.
    pub sntp_never: bool,
    /// Realistic device latencies (Wi-Fi join, TLS, flash erase) instead of fast ones.
    pub realistic: bool,
    /// The broker acknowledges publishes but never delivers them.
    pub deny_receive: bool,
    /// Family-specific settings, `KEY` or `KEY=VALUE` (`atprov sim --help` lists them).
    pub module: Vec<String>,
}

/// Takes the settings every emulator understands out of `--module` ones: `max-baud=N` (the
/// adapter cannot receive faster). Returns that limit.
pub fn take_link_settings(module: &mut Vec<String>) -> Result<Option<u32>, String> {
    let mut max = None;
    let mut rest = Vec::new();
    for setting in module.drain(..) {
        match setting.strip_prefix("max-baud=") {
            Some(n) => match n.parse::<u32>() {
                Ok(n) if n > 0 => max = Some(n),
                _ => {
                    return Err(format!(
                        "--module {setting}: write max-baud=N, N a rate in baud"
                    ));
                }
            },
            None => rest.push(setting),
        }
    }
    *module = rest;
    Ok(max)
}

/// Makes the model a built-in emulator name stands for.
pub fn model(name: &str) -> Result<Box<dyn ModelBox>, String> {
    model_with(name, &SimOptions::default())
}

/// Makes the model a built-in emulator name stands for, configured.
pub fn model_with(name: &str, options: &SimOptions) -> Result<Box<dyn ModelBox>, String> {
    if name == "quectel" {
        return quectel_model(options);
    }
    if name == "air780ep" {
        return luat_model(options);
    }
    let generation = match name {
        "esp32-at" => esp32::Generation::V3,
        "esp32-at-v2" => esp32::Generation::V2,
        _ => return Err(unknown(name)),
    };
    if let Some(setting) = options.module.first() {
        return Err(format!(
            "--module {setting}: the ESP-AT emulators take only max-baud=N (their identity is --mac)"
        ));
    }
    let mut config = esp32::Esp32Config::new(generation);
    if options.realistic {
        config.timing = esp32::Timing::realistic();
    }
    config.sntp = if options.sntp_never {
        esp32::Sntp::Never
    } else {
        esp32::Sntp::After(config.timing.sntp_sync)
    };
    if !options.networks.is_empty() {
        config.networks = options.networks.clone();
    }
    config.broker = options.broker.clone();
    config.network = options.network;
    if let Some(mac) = options.mac {
        config.mac = mac;
    }
    config.deny_receive = options.deny_receive;
    config.state_dir = options.state_dir.clone();
    let mut model = esp32::Esp32::with_config(config).map_err(|e| {
        format!(
            "emulator state directory {}: {e}",
            options
                .state_dir
                .as_deref()
                .unwrap_or(std::path::Path::new("?"))
                .display()
        )
    })?;
    model.uart = uart::Uart::esp_at(options.baud.unwrap_or(115_200));
    Ok(Box::new(model))
}

/// Settings `--module` takes for the Quectel emulator.
pub const QUECTEL_SETTINGS: &str = "max-baud=N (the adapter cannot receive faster), imei=TEXT (what AT+GSN answers), no-sim, registration=home|roaming|denied, urcport=usbat|uart1, clock-set, open-result=N, corrupt-upload, quecpython, aliyun=PK:DN:SECRET, product=PK:PRODUCT_SECRET, register-silent, radio-off (starts with AT+CFUN=0), register-time=MS (registration takes MS once the radio is on)";

fn quectel_model(options: &SimOptions) -> Result<Box<dyn ModelBox>, String> {
    use quectel::{QuectelConfig, Registration, Sim};
    let mut c = QuectelConfig {
        broker: options.broker.clone(),
        network: options.network,
        state_dir: options.state_dir.clone(),
        deny_receive: options.deny_receive,
        ntp: !options.sntp_never,
        ..QuectelConfig::default()
    };
    if options.realistic {
        // LTE registration, PDP activation and NTP take seconds on a live network.
        c.open_time = Duration::from_millis(1500);
        c.register_time = Duration::from_secs(3);
        c.attach_time = Duration::from_millis(800);
        c.ntp_time = Duration::from_millis(1000);
    }
    for setting in &options.module {
        let (k, v) = setting.split_once('=').unwrap_or((setting, ""));
        let bad = || format!("--module {setting}: the Quectel emulator takes {QUECTEL_SETTINGS}");
        match (k, v) {
            // Any text: a faulty module may report garbage, and atprov must refuse it.
            ("imei", v) if !v.is_empty() && !v.contains(['\r', '\n']) => c.imei = v.into(),
            ("no-sim", "") => c.sim = Sim::Missing,
            ("registration", "home") => c.registration = Registration::Home { searching: 1 },
            ("registration", "roaming") => c.registration = Registration::Roaming,
            ("registration", "denied") => c.registration = Registration::Denied,
            ("urcport", p @ ("usbat" | "uart1")) => c.urcport = p.into(),
            ("clock-set", "") => c.clock_unset = false,
            ("open-result", n) => c.open_result = Some(n.parse().map_err(|_| bad())?),
            ("corrupt-upload", "") => c.corrupt_upload = true,
            ("quecpython", "") => c.quecpython = true,
            ("aliyun", t) => c.aliyun = Some(parse_triple(t).ok_or_else(bad)?),
            ("product", t) => c.product = Some(parse_product(t).ok_or_else(bad)?),
            ("register-silent", "") => c.register_silent = true,
            ("radio-off", "") => c.radio_off = true,
            ("register-time", ms) => {
                c.register_time = Duration::from_millis(ms.parse().map_err(|_| bad())?)
            }
            _ => return Err(bad()),
        }
    }
    let mut model = quectel::Quectel::with_config(c).map_err(|e| state_error(options, e))?;
    model.uart = uart::Uart::quectel(options.baud.unwrap_or(115_200));
    Ok(Box::new(model))
}

/// Settings `--module` takes for the Air780EP emulator.
pub const LUAT_SETTINGS: &str = "max-baud=N (the adapter cannot receive faster), imei=TEXT (what AT+GSN answers), no-sim, registration=home|roaming|denied, clock-unset, idle-kick=MS, aliyun=PK:DN:SECRET, product=PK:PRODUCT_SECRET, register-silent, radio-off (starts with AT+CFUN=0), register-time=MS (registration takes MS once the radio is on)";

fn luat_model(options: &SimOptions) -> Result<Box<dyn ModelBox>, String> {
    let mut c = luat::LuatConfig {
        broker: options.broker.clone(),
        state_dir: options.state_dir.clone(),
        deny_receive: options.deny_receive,
        ntp: !options.sntp_never,
        network: options.network,
        ..luat::LuatConfig::default()
    };
    if options.realistic {
        c.open_time = Duration::from_millis(1800);
        c.register_time = Duration::from_secs(3);
    }
    for setting in &options.module {
        let (k, v) = setting.split_once('=').unwrap_or((setting, ""));
        let bad = || format!("--module {setting}: the Air780EP emulator takes {LUAT_SETTINGS}");
        match (k, v) {
            // Any text: a faulty module may report garbage, and atprov must refuse it.
            ("imei", v) if !v.is_empty() && !v.contains(['\r', '\n']) => c.imei = v.into(),
            ("no-sim", "") => c.sim = false,
            ("registration", "home") => c.registration = 1,
            ("registration", "roaming") => c.registration = 5,
            ("registration", "denied") => c.registration = 3,
            ("clock-unset", "") => c.clock_unset = true,
            ("idle-kick", ms) => {
                let ms: u64 = ms.parse().map_err(|_| bad())?;
                if !(1..=86_400_000).contains(&ms) {
                    return Err(bad());
                }
                c.idle_kick = Duration::from_millis(ms)
            }
            ("aliyun", t) => c.aliyun = Some(parse_triple(t).ok_or_else(bad)?),
            ("product", t) => c.product = Some(parse_product(t).ok_or_else(bad)?),
            ("register-silent", "") => c.register_silent = true,
            ("radio-off", "") => c.radio_off = true,
            ("register-time", ms) => {
                c.register_time = Duration::from_millis(ms.parse().map_err(|_| bad())?)
            }
            _ => return Err(bad()),
        }
    }
    let mut model = luat::Luat::with_config(c).map_err(|e| state_error(options, e))?;
    model.uart = uart::Uart::luat(options.baud.unwrap_or(115_200));
    Ok(Box::new(model))
}

fn parse_triple(t: &str) -> Option<(String, String, String)> {
    let mut parts = t.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(pk), Some(dn), Some(s)) if !pk.is_empty() && !dn.is_empty() => {
            Some((pk.into(), dn.into(), s.into()))
        }
        _ => None,
    }
}

fn parse_product(t: &str) -> Option<(String, String)> {
    match t.split_once(':') {
        Some((pk, s)) if !pk.is_empty() && !s.is_empty() => Some((pk.into(), s.into())),
        _ => None,
    }
}

fn state_error(options: &SimOptions, e: std::io::Error) -> String {
    format!(
        "emulator state directory {}: {e}",
        options
            .state_dir
            .as_deref()
            .unwrap_or(std::path::Path::new("?"))
            .display()
    )
}

fn unknown(name: &str) -> String {
    format!(
        "unknown emulator `{name}`: built-in emulators are {}",
        EMULATORS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A boxed model that can be played.
pub trait ModelBox: Send {
    /// Plays the model on `io` in a task of its own.
    fn into_run(
        self: Box<Self>,
        io: Box<dyn Io>,
        options: RunnerOptions,
        control: SimControl,
    ) -> tokio::task::JoinHandle<std::io::Result<()>>;
}

impl<M: Model> ModelBox for M {
    fn into_run(
        self: Box<Self>,
        io: Box<dyn Io>,
        options: RunnerOptions,
        control: SimControl,
    ) -> tokio::task::JoinHandle<std::io::Result<()>> {
        tokio::spawn(runner::run(*self, io, options, control))
    }
}

/// Starts a built-in emulator in this process and returns the host end of its pipe.
pub fn open_in_process(name: &str, options: &SimOptions) -> Result<DuplexStream, String> {
    let (port, _control) = open_in_process_with_control(name, options)?;
    Ok(port)
}

/// Like [`open_in_process`], with a handle to inject faults and URCs.
pub fn open_in_process_with_control(
    name: &str,
    options: &SimOptions,
) -> Result<(DuplexStream, SimControl), String> {
    let model = model_with(name, options)?;
    let (host, device) = tokio::io::duplex(64 * 1024);
    let control = SimControl::default();
    let runner_options = RunnerOptions {
        baud: options.baud,
        latency: options.latency,
        ..RunnerOptions::default()
    };
    model.into_run(Box::new(device), runner_options, control.clone());
    Ok((host, control))
}
