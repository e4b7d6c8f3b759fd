//! The clap types shared by several commands, and their conversions into the library's plain
//! settings (the library knows nothing of clap).

use std::path::PathBuf;

use atprov_core::port::{Flow, Lines};
use atprov_core::provision::job::JobSettings;

/// Where the module is and how to talk to it.
#[derive(Debug, Clone, clap::Args)]
pub struct PortArgs {
    /// Port selector: /dev/ttyUSB0, COM7, usb:VID:PID[:SERIAL], tcp://HOST:PORT, sim:NAME,
    /// replay:FILE, or `auto`: the one serial port whose USB ids look like a module or an
    /// ESP32 board (asked on a terminal when there are several, like espflash).
    #[arg(short, long, env = "ATPROV_PORT", default_value = "auto")]
    pub port: String,
    /// Baud rate (default: the profile's, else 115200).
    #[arg(long, env = "ATPROV_BAUD", value_parser = crate::units::parse_baud)]
    pub baud: Option<u32>,
    /// Flow control.
    #[arg(long, value_enum, default_value_t = FlowArg::None)]
    pub flow: FlowArg,
    /// DTR/RTS after opening (deassert keeps ESP32 dev boards from resetting).
    #[arg(long, value_enum, default_value_t = LinesArg::Deassert)]
    pub lines: LinesArg,
    /// Write the session to FILE in the transcript format (secrets redacted; FILE is replaced,
    /// readable by its owner only).
    #[arg(long, value_name = "FILE")]
    pub transcript: Option<PathBuf>,
}

impl PortArgs {
    /// Resolves `--port auto` to the port that looks like the module (see [`choose_port`]).
    pub fn resolve_auto(&mut self) -> Result<(), atprov_core::error::Failure> {
        if self.port != "auto" {
            return Ok(());
        }
        let ports = atprov_core::port::list_ports()?;
        let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
        self.port = choose_port(&ports, interactive, &mut || {
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            answer
        })?;
        Ok(())
    }

    /// The library's port settings.
    pub fn link(&self) -> atprov_core::link::PortArgs {
        atprov_core::link::PortArgs {
            port: self.port.clone(),
            baud: self.baud,
            flow: self.flow.into(),
            lines: self.lines.into(),
            transcript: self.transcript.clone(),
        }
    }
}

/// Flow control on the serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FlowArg {
    /// No flow control (most USB-UART adapters wire no RTS/CTS to the module).
    None,
    /// RTS/CTS.
    Hw,
    /// XON/XOFF.
    Sw,
}

impl From<FlowArg> for Flow {
    fn from(f: FlowArg) -> Flow {
        match f {
            FlowArg::None => Flow::None,
            FlowArg::Hw => Flow::Hw,
            FlowArg::Sw => Flow::Sw,
        }
    }
}

/// DTR and RTS after opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LinesArg {
    /// Deassert both (on ESP32 dev boards DTR/RTS drive EN and IO0).
    Deassert,
    /// Assert both (some modems want DTR to answer).
    Assert,
    /// Leave them as the driver set them.
    Leave,
}

impl From<LinesArg> for Lines {
    fn from(l: LinesArg) -> Lines {
        match l {
            LinesArg::Deassert => Lines::Deassert,
            LinesArg::Assert => Lines::Assert,
            LinesArg::Leave => Lines::Leave,
        }
    }
}

/// Job settings given as flags; they override the job file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JobArgs {
    /// Job file (TOML): credentials, Wi-Fi, MQTT endpoint, smoke topic.
    #[arg(long, env = "ATPROV_JOB", value_name = "FILE")]
    pub job: Option<PathBuf>,
    /// Server CA certificate (PEM) the module verifies the broker with, e.g. AmazonRootCA1.pem.
    #[arg(long, visible_alias = "cafile", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// CA that issued the device certificate (PEM); when given, the certificate must be
    /// signed by it. Not needed for AWS IoT certificates.
    #[arg(long, value_name = "FILE")]
    pub device_ca: Option<PathBuf>,
    /// Device certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Device private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Wi-Fi network name.
    #[arg(long)]
    pub wifi_ssid: Option<String>,
    /// Environment variable holding the Wi-Fi password (default ATPROV_WIFI_PASSWORD).
    #[arg(long, value_name = "VAR")]
    pub wifi_password_env: Option<String>,
    /// File holding the Wi-Fi password (first line).
    #[arg(long, value_name = "FILE")]
    pub wifi_password_file: Option<PathBuf>,
    /// MQTT broker host name (e.g. abc123-ats.iot.eu-west-1.amazonaws.com).
    #[arg(long, visible_alias = "host")]
    pub mqtt_host: Option<String>,
    /// MQTT broker port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub mqtt_port: Option<u16>,
    /// MQTT client id (AWS: the thing name); may use {unit_id}, {mac}.
    #[arg(long, visible_alias = "id")]
    pub client_id: Option<String>,
    /// ALPN protocol (repeat for several), e.g. x-amzn-mqtt-ca on port 443.
    #[arg(long)]
    pub alpn: Vec<String>,
    /// TLS server name indication, when it differs from the host.
    #[arg(long)]
    pub sni: Option<String>,
    /// MQTT keepalive in seconds.
    #[arg(long)]
    pub keepalive: Option<u16>,
    /// Topic the smoke test publishes to and subscribes to.
    #[arg(long, visible_alias = "topic")]
    pub smoke_topic: Option<String>,
    /// Any job variable: NAME=VALUE (e.g. --set time.server=ntp.example.com).
    ///
    /// The variables: unit_id, wifi.ssid, mqtt.host, mqtt.port, mqtt.client_id,
    /// mqtt.username, mqtt.scheme, mqtt.alpn (a list: a,b), mqtt.sni, mqtt.keepalive,
    /// smoke.topic, smoke.payload, smoke.timeout, time.server, time.min_year, time.within,
    /// aliyun.auth_url, aliyun.auth_body, aliyun.register_url, aliyun.register_body,
    /// aliyun.register_client_id, aliyun.register_username, aliyun.secret_file (where a
    /// registered device secret is kept), and the profile's own (e.g.
    /// tls.seclevel; `atprov profile show NAME` lists its [defaults]). Passwords are never
    /// set here: they come from --wifi-password-env/-file, the job file or the environment.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
    /// Line rate for writing and reading back the credentials: a rate (e.g. 921600), `auto`
    /// (switch only where it saves time) or `off`. The module is switched with AT+UART_CUR
    /// (ESP-AT) or AT+IPR (Quectel, Luat), never saved, and switched back afterwards; a USB AT
    /// port is never switched. Default: the job's [serial] flash_baud, else the profile's.
    #[arg(long, value_name = "RATE|auto|off", value_parser = parse_flash_baud)]
    pub flash_baud: Option<atprov_core::units::FlashBaud>,
}

fn parse_flash_baud(s: &str) -> Result<atprov_core::units::FlashBaud, String> {
    atprov_core::units::FlashBaud::parse(s).map_err(|e| e.to_string())
}

impl JobArgs {
    /// The library's job settings.
    pub fn settings(&self) -> JobSettings {
        JobSettings {
            job: self.job.clone(),
            ca: self.ca.clone(),
            device_ca: self.device_ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            wifi_ssid: self.wifi_ssid.clone(),
            wifi_password_env: self.wifi_password_env.clone(),
            wifi_password_file: self.wifi_password_file.clone(),
            mqtt_host: self.mqtt_host.clone(),
            mqtt_port: self.mqtt_port,
            client_id: self.client_id.clone(),
            alpn: self.alpn.clone(),
            sni: self.sni.clone(),
            keepalive: self.keepalive,
            smoke_topic: self.smoke_topic.clone(),
            sets: self.sets.clone(),
            flash_baud: self.flash_baud,
        }
    }
}

/// Picks the port for `--port auto`: the one whose USB ids look like a module or an ESP32
/// board (said on stderr); with several, asks on a terminal (`ask` reads the answer) and
/// otherwise names them; with none, says how to find it.
pub fn choose_port(
    ports: &[atprov_core::port::PortInfo],
    interactive: bool,
    ask: &mut dyn FnMut() -> String,
) -> Result<String, atprov_core::error::Failure> {
    use atprov_core::error::{Code, Failure};
    let candidates: Vec<&atprov_core::port::PortInfo> =
        ports.iter().filter(|p| p.likely.is_some()).collect();
    let shown =
        |p: &atprov_core::port::PortInfo| format!("{} ({})", p.path, p.likely.unwrap_or("unknown"));
    match candidates.as_slice() {
        [] => Err(Failure::new(
            Code::PortNotFound,
            format!(
                "no serial port looks like a module ({} port(s) found; `atprov ports` lists them): give --port",
                ports.len()
            ),
        )),
        [one] => {
            eprintln!("atprov: using {}; --port to choose another", shown(one));
            Ok(one.path.clone())
        }
        several if interactive => {
            eprintln!("atprov: several ports could be the module:");
            for (i, p) in several.iter().enumerate() {
                eprintln!("  {}. {}", i + 1, shown(p));
            }
            eprint!("which one? [1-{}] ", several.len());
            let answer = ask();
            match answer.trim().parse::<usize>() {
                Ok(n) if (1..=several.len()).contains(&n) => Ok(several[n - 1].path.clone()),
                _ => Err(Failure::usage(format!(
                    "`{}` is not one of 1-{}: nothing was opened; give --port",
                    answer.trim(),
                    several.len()
                ))),
            }
        }
        several => Err(Failure::usage(format!(
            "several ports could be the module: {}; choose one with --port",
            several
                .iter()
                .map(|p| shown(p))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::choose_port;
    use atprov_core::port::PortInfo;

    fn port(path: &str, likely: Option<&'static str>) -> PortInfo {
        PortInfo {
            path: path.into(),
            kind: "usb",
            vid: None,
            pid: None,
            serial_number: None,
            manufacturer: None,
            product: None,
            likely,
        }
    }

    #[test]
    fn auto_picks_the_one_module_asks_among_several_and_names_them_otherwise() {
        let never = &mut || -> String { panic!("asked") };
        let one = [
            port("/dev/ttyS0", None),
            port("/dev/ttyUSB0", Some("Quectel module")),
        ];
        assert_eq!(choose_port(&one, false, never).unwrap(), "/dev/ttyUSB0");
        let none = [port("/dev/ttyS0", None)];
        let e = choose_port(&none, true, never).unwrap_err();
        assert_eq!(e.code.number(), 3);
        assert!(e.message.contains("atprov ports"), "{}", e.message);
        let two = [
            port("/dev/ttyACM0", Some("Quectel module")),
            port("/dev/ttyUSB0", Some("CP210x USB-UART (ESP32 dev board?)")),
        ];
        let e = choose_port(&two, false, never).unwrap_err();
        assert!(
            e.message.contains("/dev/ttyACM0") && e.message.contains("/dev/ttyUSB0"),
            "{}",
            e.message
        );
        assert_eq!(
            choose_port(&two, true, &mut || "2\n".into()).unwrap(),
            "/dev/ttyUSB0"
        );
        assert!(choose_port(&two, true, &mut || "7\n".into()).is_err());
    }
}
