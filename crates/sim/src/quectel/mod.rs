//! The emulated Quectel module (EC200U on standard AT firmware), faithful to reference
//! `cellular.md` §3: identity (`ATI`, `AT+QGMR`, `AT+GSN`, `AT+QCCID`), SIM, signal and
//! registration, the URC port (EC200U routes URCs to the USB AT port by default, so until
//! `AT+QURCCFG="urcport","uart1"` no URC reaches this port), PDP context, clock and NTP, UFS
//! files (`AT+QFUPL` with `CONNECT` and the XOR-16 checksum), SSL contexts and MQTT
//! ([`mqtt`]). With `--state DIR` the UFS files are `DIR/ufs/<name>` and the NVRAM settings
//! `DIR/nvram/<key>`.

mod mqtt;

/// What the MQTT side sees of the rest of the module (a macro so that the borrows stay
/// disjoint from `self.mqtt`).
macro_rules! mqtt_context {
    ($m:expr) => {
        mqtt::Context {
            files: &$m.files,
            pdp_active: $m.pdp_active,
            clock_synced: $m.clock_synced,
            config: &$m.config,
            urcport: &$m.urcport,
        }
    };
}

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::cellular::{OK, cme, error, info, ok};
use super::runner::{Model, Script, Step};
use super::unquote;
use crate::params;

/// The checksum a Quectel module prints after `AT+QFUPL` (reference §3.4): the XOR of the
/// bytes taken as big-endian 16-bit words, an odd last byte as the high byte of a last word;
/// lower-case hex. The emulator's own, checked against the published vectors.
pub fn qfupl_hex(data: &[u8]) -> String {
    let sum = data.chunks(2).fold(0u16, |acc, pair| {
        acc ^ u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)])
    });
    format!("{sum:x}")
}

/// A URC as framed bytes, or nothing when URCs are routed to another port than this (main
/// UART) one.
fn urc_on(urcport: &str, line: &str) -> Vec<u8> {
    if urcport == "uart1" {
        format!("\r\n{line}\r\n").into_bytes()
    } else {
        tracing::info!("emulated Quectel: URC `{line}` went to the {urcport} port");
        Vec::new()
    }
}

/// How the SIM answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sim {
    /// A SIM is inserted and ready.
    Ready,
    /// No SIM (`+CPIN` answers `+CME ERROR: 10`).
    Missing,
}

/// What `AT+CEREG?` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Searching for this many queries, then registered at home.
    Home {
        /// Queries answered "searching" before registration.
        searching: u32,
    },
    /// Registered, roaming (stat 5).
    Roaming,
    /// Registration denied (stat 3).
    Denied,
}

/// How to build an emulated Quectel module.
#[derive(Debug, Clone)]
pub struct QuectelConfig {
    /// What `AT+GSN` answers (any text: a faulty module may report garbage).
    pub imei: String,
    /// What `AT+QCCID` answers.
    pub iccid: String,
    /// The SIM.
    pub sim: Sim,
    /// Network registration.
    pub registration: Registration,
    /// The URC port at first boot (EC200U default `usbat`).
    pub urcport: String,
    /// The clock reads 1980 until NTP syncs it.
    pub clock_unset: bool,
    /// NTP answers.
    pub ntp: bool,
    /// Force this `+QMTOPEN` result (e.g. -1, 3, 4, 5).
    pub open_result: Option<i32>,
    /// Report a wrong checksum for uploads (a line that loses bytes).
    pub corrupt_upload: bool,
    /// A QuecPython build: `AT+QMT*` answer `ERROR`.
    pub quecpython: bool,
    /// The broker's TLS side (its certificate, the CA it trusts for clients).
    pub broker: crate::tls::BrokerTls,
    /// A real broker to connect to instead of the emulated one.
    pub network: Option<crate::net::Broker>,
    /// Aliyun device triple the broker accepts (product key, device name, secret).
    pub aliyun: Option<(String, String, String)>,
    /// The broker acknowledges publishes but never delivers them.
    pub deny_receive: bool,
    /// Keep UFS files and NVRAM settings as plain files here.
    pub state_dir: Option<PathBuf>,
    /// Network open (DNS + TCP + TLS) time.
    pub open_time: Duration,
    /// The product (key, secret) the emulated platform knows, for MQTT dynamic registration.
    pub product: Option<(String, String)>,
    /// The platform never sends the `/ext/register` message.
    pub register_silent: bool,
    /// How long registration takes once the radio is on (power-on, `AT+CFUN=1`): `AT+CEREG?`
    /// says searching until then. Zero: registration is counted in queries only.
    pub register_time: Duration,
    /// `AT+QIACT=1` (PDP activation) takes this long, the AT channel blocked meanwhile.
    pub attach_time: Duration,
    /// From `AT+QNTP` to its `+QNTP:` result.
    pub ntp_time: Duration,
    /// The module starts with its radio off (`AT+CFUN=0`, as some factory images leave it).
    pub radio_off: bool,
}

impl Default for QuectelConfig {
    fn default() -> Self {
        QuectelConfig {
            imei: "866834041644845".into(),
            iccid: "89860117831003134201".into(),
            sim: Sim::Ready,
            registration: Registration::Home { searching: 1 },
            urcport: "usbat".into(),
            clock_unset: true,
            ntp: true,
            open_result: None,
            corrupt_upload: false,
            quecpython: false,
            broker: Default::default(),
            network: None,
            aliyun: None,
            deny_receive: false,
            state_dir: None,
            open_time: Duration::from_millis(20),
            product: None,
            register_silent: false,
            register_time: Duration::ZERO,
            attach_time: Duration::from_millis(5),
            ntp_time: Duration::from_millis(30),
            radio_off: false,
        }
    }
}

/// The emulated module.
#[derive(Debug)]
pub struct Quectel {
    config: QuectelConfig,
    /// The AT UART's rate (`AT+IPR`, saved by `AT&W`).
    pub uart: crate::uart::Uart,
    echo: bool,
    files: BTreeMap<String, Vec<u8>>,
    urcport: String,
    reg_queries: u32,
    radio: crate::cellular::Radio,
    pdp_active: bool,
    apn_set: bool,
    clock_synced: bool,
    /// An upload waiting for its bytes: the file name.
    uploading: Option<String>,
    mqtt: mqtt::Mqtt,
}

impl Quectel {
    /// A module with this configuration (loading UFS from the state directory).
    pub fn with_config(config: QuectelConfig) -> std::io::Result<Quectel> {
        let mut files = BTreeMap::new();
        let mut urcport = config.urcport.clone();
        if let Some(dir) = &config.state_dir {
            let ufs = dir.join("ufs");
            std::fs::create_dir_all(&ufs)?;
            for e in std::fs::read_dir(&ufs)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                files.insert(format!("UFS:{name}"), std::fs::read(e.path())?);
            }
            let nvram = dir.join("nvram");
            std::fs::create_dir_all(&nvram)?;
            if let Ok(p) = std::fs::read_to_string(nvram.join("urcport")) {
                urcport = p.trim().to_string();
            }
        }
        Ok(Quectel {
            radio: crate::cellular::Radio::new(config.register_time, config.radio_off),
            clock_synced: !config.clock_unset,
            uart: crate::uart::Uart::quectel(115_200),
            mqtt: mqtt::Mqtt::default(),
            config,
            echo: true,
            files,
            urcport,
            reg_queries: 0,
            pdp_active: false,
            apn_set: false,
            uploading: None,
        })
    }

    /// A URC, sent only when URCs are routed to this (main UART) port.
    fn urc(&self, line: &str) -> Vec<u8> {
        urc_on(&self.urcport, line)
    }

    fn ufs_name(p: &str) -> String {
        let n = unquote(p);
        if n.contains(':') {
            n
        } else {
            format!("UFS:{n}")
        }
    }

    fn persist_file(&self, name: &str) {
        let Some(dir) = &self.config.state_dir else {
            return;
        };
        let path = dir.join("ufs").join(name.trim_start_matches("UFS:"));
        let result = match self.files.get(name) {
            Some(bytes) => std::fs::write(&path, bytes),
            None => std::fs::remove_file(&path),
        };
        if let Err(e) = result {
            tracing::warn!("emulated Quectel: {}: {e}", path.display());
        }
    }

    fn clock(&self) -> String {
        if self.clock_synced {
            let now = time::OffsetDateTime::now_utc();
            let f = time::macros::format_description!(
                "[year repr:last_two]/[month]/[day],[hour]:[minute]:[second]+00"
            );
            now.format(&f).unwrap_or_default()
        } else {
            "80/01/06,00:00:15+00".into()
        }
    }

    fn files_command(&mut self, name: &str, p: &[&str]) -> Option<Script> {
        Some(match name {
            "AT+QFLST" => {
                let which = p.first().map(|s| unquote(s)).unwrap_or_else(|| "*".into());
                let lines: Vec<String> = self
                    .files
                    .iter()
                    .filter(|(n, _)| which == "*" || **n == Self::ufs_name(&which))
                    .map(|(n, b)| format!("+QFLST: \"{n}\",{}", b.len()))
                    .collect();
                if which != "*" && lines.is_empty() {
                    return Some(cme(405));
                }
                info(&lines)
            }
            // Download: CONNECT, the file's bytes, then its size and checksum (FILE AT manual).
            "AT+QFDWL" if !p.is_empty() => {
                let n = Self::ufs_name(p[0]);
                let Some(data) = self.files.get(&n) else {
                    return Some(cme(405));
                };
                let mut bytes = b"\r\nCONNECT\r\n".to_vec();
                bytes.extend_from_slice(data);
                bytes.extend_from_slice(
                    format!("\r\n+QFDWL: {},{}\r\n", data.len(), qfupl_hex(data)).as_bytes(),
                );
                vec![Step::Send(bytes), Step::Final(OK.to_vec())]
            }
            "AT+QFDEL" if !p.is_empty() => {
                let n = Self::ufs_name(p[0]);
                if n == "UFS:*" {
                    let names: Vec<String> = self.files.keys().cloned().collect();
                    self.files.clear();
                    for n in names {
                        self.persist_file(&n);
                    }
                    return Some(ok());
                }
                if self.files.remove(&n).is_none() {
                    return Some(cme(405));
                }
                self.persist_file(&n);
                ok()
            }
            "AT+QFUPL" if p.len() >= 2 => {
                let n = Self::ufs_name(p[0]);
                if self.files.contains_key(&n) {
                    return Some(cme(407));
                }
                let Ok(len) = p[1].trim().parse::<usize>() else {
                    return Some(cme(400));
                };
                self.uploading = Some(n);
                vec![Step::Prompt {
                    bytes: b"\r\nCONNECT\r\n".to_vec(),
                    len,
                }]
            }
            _ => return None,
        })
    }
}

impl Model for Quectel {
    fn reboot(&mut self) -> Vec<u8> {
        self.echo = true;
        self.uart.reboot();
        self.pdp_active = false;
        self.radio.power_on();
        self.uploading = None;
        self.mqtt = mqtt::Mqtt::default();
        let mut banner = b"\r\nRDY\r\n".to_vec();
        banner.extend(self.urc("+CPIN: READY"));
        banner
    }

    fn echo(&self) -> bool {
        self.echo
    }

    fn busy_reply(&self) -> Vec<u8> {
        // Quectel firmware has no busy message: a line sent too early is simply lost.
        Vec::new()
    }

    fn command(&mut self, line: &str) -> Script {
        if let Some(script) = self.uart.command(line) {
            return script;
        }
        let upper = line.to_ascii_uppercase();
        if let Some(script) = self.radio.command(&upper) {
            if !self.radio.is_on() {
                // The data connection goes with the radio.
                self.pdp_active = false;
            }
            return script;
        }
        let name = upper.split(['=', '?']).next().unwrap_or("").to_string();
        let p = params(line);
        match upper.as_str() {
            "AT" | "AT+CMEE=1" => return ok(),
            // A full restart: OK, then the module goes away and boots.
            "AT+CFUN=1,1" => return crate::runner::ok_then_reboot(),
            "ATE0" => {
                self.echo = false;
                return ok();
            }
            "ATI" => {
                return info(&[
                    "Quectel".into(),
                    "EC200U".into(),
                    "Revision: EC200UCNAAR03A09M08".into(),
                ]);
            }
            "AT+QGMR" => {
                let build = if self.config.quecpython {
                    "EC200UCNAAR03A09M08_PY_V0001"
                } else {
                    "EC200UCNAAR03A09M08_BETA1213"
                };
                return info(&[build.into()]);
            }
            "AT+GSN" | "AT+CGSN" => return info(std::slice::from_ref(&self.config.imei)),
            "AT+QCCID" if self.config.sim == Sim::Ready => {
                return info(&[format!("+QCCID: {}", self.config.iccid)]);
            }
            "AT+QCCID" | "AT+CPIN?" if self.config.sim == Sim::Missing => return cme(10),
            "AT+CPIN?" => return info(&["+CPIN: READY".into()]),
            "AT+CSQ" => return info(&["+CSQ: 20,99".into()]),
            "AT+CEREG?" | "AT+CREG?" => {
                self.reg_queries += 1;
                let stat = match self.config.registration {
                    _ if self.config.sim == Sim::Missing || !self.radio.is_on() => 0,
                    _ if self.radio.searching() => 2,
                    Registration::Home { searching } if self.reg_queries <= searching => 2,
                    Registration::Home { .. } => 1,
                    Registration::Roaming => 5,
                    Registration::Denied => 3,
                };
                return info(&[format!("{}: 0,{stat}", &name[2..])]);
            }
            "AT+QIACT?" => {
                let lines: Vec<String> = if self.pdp_active {
                    vec!["+QIACT: 1,1,1,\"10.12.34.56\"".into()]
                } else {
                    Vec::new()
                };
                return info(&lines);
            }
            "AT+QIACT=1" => {
                if self.pdp_active || !self.registered() {
                    return error();
                }
                self.pdp_active = true;
                return vec![
                    Step::Delay(self.config.attach_time),
                    Step::Final(OK.to_vec()),
                ];
            }
            "AT+CCLK?" => return info(&[format!("+CCLK: \"{}\"", self.clock())]),
            _ => {}
        }
        if let Some(s) = self.files_command(&name, &p) {
            return s;
        }
        match name.as_str() {
            "AT+QICSGP" if p.len() >= 3 => {
                self.apn_set = true;
                ok()
            }
            "AT+QLTS" if self.clock_synced => info(&[format!("+QLTS: \"20{},0\"", self.clock())]),
            "AT+QLTS" => info(&["+QLTS: \"\"".into()]),
            "AT+QNTP" if p.len() >= 2 => {
                if !self.pdp_active {
                    return cme(561);
                }
                let urc = if self.config.ntp {
                    self.clock_synced = true;
                    format!("+QNTP: 0,\"20{}\"", self.clock())
                } else {
                    "+QNTP: 569".into()
                };
                let mut s = ok();
                s.push(Step::Delay(self.config.ntp_time));
                s.push(Step::Send(self.urc(&urc)));
                s
            }
            "AT+QURCCFG" if !p.is_empty() && unquote(p[0]) == "urcport" => {
                if p.len() == 1 {
                    return info(&[format!("+QURCCFG: \"urcport\",\"{}\"", self.urcport)]);
                }
                let port = unquote(p[1]);
                if !["usbat", "usbmodem", "uart1"].contains(&port.as_str()) {
                    return error();
                }
                self.urcport = port;
                if let Some(dir) = &self.config.state_dir {
                    let _ = std::fs::write(dir.join("nvram/urcport"), &self.urcport);
                }
                ok()
            }
            n if n.starts_with("AT+QSSLCFG") || n.starts_with("AT+QMT") => {
                if self.config.quecpython && n.starts_with("AT+QMT") {
                    return error();
                }
                self.mqtt.command(n, &p, &mqtt_context!(self))
            }
            _ => error(),
        }
    }

    fn poll(&mut self) -> Vec<u8> {
        let uart1 = self.urcport == "uart1";
        self.mqtt.poll(uart1)
    }

    fn payload(&mut self, data: Vec<u8>) -> Script {
        if let Some(name) = self.uploading.take() {
            let mut sum = qfupl_hex(&data);
            if self.config.corrupt_upload {
                sum = format!("{:x}", u16::from_str_radix(&sum, 16).unwrap_or(0) ^ 0x0100);
            }
            let len = data.len();
            self.files.insert(name.clone(), data);
            self.persist_file(&name);
            return info(&[format!("+QFUPL: {len},{sum}")]);
        }
        self.mqtt.payload(data, &mqtt_context!(self))
    }
}

impl Quectel {
    fn registered(&self) -> bool {
        self.config.sim == Sim::Ready
            && self.radio.registered()
            && matches!(
                self.config.registration,
                Registration::Home { .. } | Registration::Roaming
            )
    }
}

#[cfg(test)]
mod checksum_tests {
    #[test]
    fn every_published_qfupl_checksum_is_reproduced() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/cloud");
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("quectel_qfupl_checksum.json")).unwrap(),
        )
        .unwrap();
        let inputs: Vec<Vec<u8>> = vec![
            std::fs::read(dir.join("AmazonRootCA1.pem")).unwrap(),
            b"A".to_vec(),
            b"AB".to_vec(),
            b"ABC".to_vec(),
            Vec::new(),
        ];
        let mut seen = 0;
        for vector in v["vectors"].as_array().unwrap() {
            let size = vector["size"].as_u64().unwrap() as usize;
            let Some(input) = inputs.iter().find(|i| i.len() == size) else {
                continue;
            };
            let ours = u64::from_str_radix(&super::qfupl_hex(input), 16).unwrap();
            assert_eq!(
                ours,
                vector["checksum_int"].as_u64().unwrap(),
                "{}",
                vector["label"]
            );
            seen += 1;
        }
        assert!(seen >= 4, "{seen}");
    }
}
