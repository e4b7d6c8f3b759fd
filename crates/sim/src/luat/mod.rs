//! The emulated Hezhou/Luat Air780EP on its AT firmware, faithful to reference `cellular.md`
//! §2: identity (`ATI`, `AT+CGMR`, `AT+CGSN`, `AT+CCID` without prefixes), SIM, registration
//! and attach, the clock (NITZ, or `80/01/06` until `AT+CNTP` over a SAPBR bearer), the file
//! system (`AT+FSWRITE` with a bare `>` and at most 10,240 bytes a call), SSL context 88 and the
//! single MQTT link ([`mqtt`]), and HTTP(S) ([`http`]) to an emulated Aliyun registration server. With `--state DIR` the files are `DIR/fs/<name>`.

mod http;
mod mqtt;

/// What the MQTT side sees of the rest of the module (a macro so that the borrows stay
/// disjoint from `self.mqtt`).
macro_rules! mqtt_context {
    ($m:expr) => {
        mqtt::Context {
            files: &$m.files,
            attached: $m.config.sim
                && matches!($m.config.registration, 1 | 5)
                && $m.radio.registered(),
            clock_synced: $m.clock_synced,
            config: &$m.config,
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

/// How to build an emulated Air780EP.
#[derive(Debug, Clone)]
pub struct LuatConfig {
    /// What `AT+CGSN` answers (any text: a faulty module may report garbage).
    pub imei: String,
    /// What `AT+CCID` answers.
    pub iccid: String,
    /// A SIM is inserted.
    pub sim: bool,
    /// `+CEREG` stat once searching is over (1 home, 5 roaming, 3 denied).
    pub registration: u8,
    /// The clock reads 1980 until NTP (no NITZ from the network).
    pub clock_unset: bool,
    /// NTP answers `AT+CNTP`.
    pub ntp: bool,
    /// The server closes a TCP connection that sends no MQTT CONNECT for this long.
    pub idle_kick: Duration,
    /// The broker's TLS side (its certificate, the CA it trusts for clients).
    pub broker: crate::tls::BrokerTls,
    /// The Aliyun device the broker knows: product key, device name, device secret.
    pub aliyun: Option<(String, String, String)>,
    /// The broker acknowledges publishes but never delivers them.
    pub deny_receive: bool,
    /// Keep the file system as plain files here.
    pub state_dir: Option<PathBuf>,
    /// From `AT+SSLMIPSTART` to `CONNECT OK`.
    pub open_time: Duration,
    /// The product (key, secret) the emulated registration server knows.
    pub product: Option<(String, String)>,
    /// The registration server never answers.
    pub register_silent: bool,
    /// How long registration takes once the radio is on (power-on, `AT+CFUN=1`).
    pub register_time: Duration,
    /// The module starts with its radio off (`AT+CFUN=0`).
    pub radio_off: bool,
    /// What HTTPS auth issued: (client id, iotId, iotToken), accepted by the broker.
    pub tokens: Option<(String, String, String)>,
    /// A real broker (loopback) that `AT+SSLMIPSTART` connects to; `None`: the offline one.
    pub network: Option<crate::net::Broker>,
}

impl Default for LuatConfig {
    fn default() -> Self {
        LuatConfig {
            imei: "868488076506128".into(),
            iccid: "89860117831003134201".into(),
            sim: true,
            registration: 1,
            clock_unset: false,
            ntp: true,
            idle_kick: Duration::from_secs(5),
            broker: Default::default(),
            aliyun: None,
            deny_receive: false,
            state_dir: None,
            open_time: Duration::from_millis(20),
            product: None,
            register_silent: false,
            register_time: Duration::ZERO,
            radio_off: false,
            tokens: None,
            network: None,
        }
    }
}

/// The emulated module.
#[derive(Debug)]
pub struct Luat {
    config: LuatConfig,
    /// The AT UART's rate (`AT+IPR`, saved by `AT&W`).
    pub uart: crate::uart::Uart,
    echo: bool,
    files: BTreeMap<String, Vec<u8>>,
    clock_synced: bool,
    radio: crate::cellular::Radio,
    bearer: bool,
    /// A file write waiting for its bytes: (name, append).
    writing: Option<(String, bool)>,
    http: http::Http,
    mqtt: mqtt::Mqtt,
}

impl Luat {
    /// A module with this configuration (loading its file system from the state directory).
    pub fn with_config(config: LuatConfig) -> std::io::Result<Luat> {
        let mut files = BTreeMap::new();
        if let Some(dir) = &config.state_dir {
            let fs = dir.join("fs");
            std::fs::create_dir_all(&fs)?;
            for e in std::fs::read_dir(&fs)? {
                let e = e?;
                files.insert(
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path())?,
                );
            }
        }
        Ok(Luat {
            radio: crate::cellular::Radio::new(config.register_time, config.radio_off),
            clock_synced: !config.clock_unset,
            uart: crate::uart::Uart::luat(115_200),
            config,
            echo: true,
            files,
            bearer: false,
            writing: None,
            http: http::Http::default(),
            mqtt: mqtt::Mqtt::default(),
        })
    }

    fn persist(&self, name: &str) {
        let Some(dir) = &self.config.state_dir else {
            return;
        };
        let path = dir.join("fs").join(name);
        let result = match self.files.get(name) {
            Some(b) => std::fs::write(&path, b),
            None => std::fs::remove_file(&path),
        };
        if let Err(e) = result {
            tracing::warn!("emulated Air780EP: {}: {e}", path.display());
        }
    }

    fn registered(&self) -> bool {
        mqtt_context!(self).attached
    }

    fn clock(&self) -> String {
        if !self.clock_synced {
            return "80/01/06,00:00:15+32".into();
        }
        let f = time::macros::format_description!(
            "[year repr:last_two]/[month]/[day],[hour]:[minute]:[second]+32"
        );
        (time::OffsetDateTime::now_utc() + time::Duration::hours(8))
            .format(&f)
            .unwrap_or_default()
    }

    fn fs_command(&mut self, name: &str, p: &[&str]) -> Option<Script> {
        let file = p.first().map(|s| unquote(s)).unwrap_or_default();
        Some(match name {
            "AT+FSDEL" => {
                if self.files.remove(&file).is_none() {
                    return Some(error());
                }
                self.persist(&file);
                ok()
            }
            "AT+FSCREATE" => {
                if file.is_empty() || file.len() > 64 {
                    return Some(error());
                }
                self.files.entry(file.clone()).or_default();
                self.persist(&file);
                ok()
            }
            "AT+FSWRITE" if p.len() >= 3 => {
                if !self.files.contains_key(&file) {
                    return Some(cme(62));
                }
                let append = p[1].trim() == "1";
                match p[2].trim().parse::<usize>() {
                    Ok(len) if (1..=10_240).contains(&len) => {
                        self.writing = Some((file, append));
                        vec![Step::Prompt {
                            bytes: b"\r\n>".to_vec(),
                            len,
                        }]
                    }
                    _ => cme(63),
                }
            }
            // Read: the raw bytes from an offset, then OK.
            "AT+FSREAD" if p.len() >= 3 => match self.files.get(&file) {
                Some(b) => {
                    let from = p[1].trim().parse::<usize>().unwrap_or(0).min(b.len());
                    let len = p[2].trim().parse::<usize>().unwrap_or(0);
                    let to = from.saturating_add(len).min(b.len());
                    let mut bytes = b"\r\n".to_vec();
                    bytes.extend_from_slice(&b[from..to]);
                    vec![Step::Send(bytes), Step::Final(OK.to_vec())]
                }
                None => cme(62),
            },
            "AT+FSFLSIZE" => match self.files.get(&file) {
                Some(b) => info(&[format!("+FSFLSIZE: {}", b.len())]),
                None => cme(62),
            },
            _ => return None,
        })
    }
}

impl Model for Luat {
    fn reboot(&mut self) -> Vec<u8> {
        self.echo = true;
        self.radio.power_on();
        self.uart.reboot();
        self.bearer = false;
        self.writing = None;
        self.mqtt = mqtt::Mqtt::default();
        b"\r\nRDY\r\n\r\n^MODE: 17,17\r\n\r\n+E_UTRAN Service\r\n\r\n+CGEV: ME PDN ACT 1\r\n"
            .to_vec()
    }

    fn echo(&self) -> bool {
        self.echo
    }

    fn busy_reply(&self) -> Vec<u8> {
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
                self.bearer = false;
            }
            return script;
        }
        let name = upper.split(['=', '?']).next().unwrap_or("").to_string();
        let p = params(line);
        match upper.as_str() {
            "AT" | "AT+CMEE=1" => return ok(),
            // A full restart: OK, then the module goes away and boots.
            "AT+CFUN=1,1" | "AT+RESET" => return crate::runner::ok_then_reboot(),
            "ATE0" => {
                self.echo = false;
                return ok();
            }
            "ATI" => return info(&["AirM2M_780EP_V1007_LTE_AT".into()]),
            "AT+CGMR" => return info(&["+CGMR: \"AirM2M_780EP_V1007_LTE_AT\"".into()]),
            "AT+CGSN" => return info(std::slice::from_ref(&self.config.imei)),
            "AT+CCID" | "AT+CPIN?" if !self.config.sim => return cme(10),
            "AT+CCID" => return info(std::slice::from_ref(&self.config.iccid)),
            "AT+CPIN?" => return info(&["+CPIN: READY".into()]),
            "AT+CSQ" => return info(&["+CSQ: 15,0".into()]),
            "AT+CEREG?" | "AT+CREG?" | "AT+CGREG?" => {
                let stat = match self.config.sim {
                    false => 0,
                    true if !self.radio.is_on() => 0,
                    true if self.radio.searching() => 2,
                    true => self.config.registration,
                };
                return info(&[format!("{}: 0,{stat}", &name[2..])]);
            }
            "AT+CGATT?" => {
                let n = u8::from(self.registered());
                return info(&[format!("+CGATT: {n}")]);
            }
            "AT+CCLK?" => return info(&[format!("+CCLK: \"{}\"", self.clock())]),
            "AT+SAPBR=1,1" => {
                if !self.registered() {
                    return error();
                }
                self.bearer = true;
                return ok();
            }
            "AT+CNTP" => {
                if !self.bearer {
                    return cme(901);
                }
                let urc = if self.config.ntp {
                    self.clock_synced = true;
                    "+CNTP: 1"
                } else {
                    "+CNTP: 65"
                };
                return vec![
                    Step::Final(OK.to_vec()),
                    Step::Delay(Duration::from_millis(30)),
                    Step::Send(format!("\r\n{urc}\r\n").into_bytes()),
                ];
            }
            _ => {}
        }
        if let Some(s) = self.fs_command(&name, &p) {
            return s;
        }
        if name.starts_with("AT+HTTP") {
            let registered = self.registered();
            return self.http.command(&name, &p, registered, &mut self.config);
        }
        match name.as_str() {
            "AT+SAPBR" | "AT+CNTPCID" | "AT+CNTP" | "AT+MQTTMSGSET" => ok(),
            n if n == "AT+SSLCFG" || n.starts_with("AT+M") || n == "AT+SSLMIPSTART" => {
                self.mqtt.command(n, &p, &mqtt_context!(self))
            }
            _ => error(),
        }
    }

    fn poll(&mut self) -> Vec<u8> {
        self.mqtt.poll()
    }

    fn payload(&mut self, data: Vec<u8>) -> Script {
        if let Some((name, append)) = self.writing.take() {
            let file = self.files.entry(name.clone()).or_default();
            if !append {
                file.clear();
            }
            file.extend_from_slice(&data);
            self.persist(&name);
            return ok();
        }
        if self.http.awaiting_body() {
            return self.http.body(data);
        }
        self.mqtt.payload(data, &mqtt_context!(self))
    }
}
