//! The emulated ESP32 running ESP-AT, faithful to `reference/esp-at.md`: echo on after boot,
//! `ATE0/1`, `AT+GMR` text of the real firmware, `AT+RST` then `ready`, `AT+SYSLOG` error codes,
//! the STA MAC, and both certificate-storage generations: `v3` (mfg_nvs written with
//! `AT+SYSMFG`, `OK` then `>`) and `v2` (raw partitions written with `AT+SYSFLASH`, a bare `>`),
//! with read-back as counted payloads. Flash and NVS survive `AT+RST`; echo and SYSLOG do not.

mod mqtt;
mod net;
mod storage;

/// What the MQTT side sees of the rest of the module (a macro so that the borrows stay
/// field by field).
macro_rules! mqtt_context {
    ($s:expr, $host:expr) => {
        mqtt::Context {
            flash: &$s.flash,
            wifi_up: $s.net.joined.is_some(),
            clock_synced: $s.net.synced(),
            resolves: !$host.ends_with(".invalid"),
            broker: &$s.broker,
            network: $s.network,
            connect_time: $s.timing.mqtt_connect,
            loopback: $s.timing.mqtt_loopback,
            syslog: $s.syslog,
        }
    };
}

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::runner::{Model, Script, Step};
pub use net::{Network, Sntp, default_networks};
pub use storage::{Flash, Partition};

/// Which ESP-AT generation to emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// ESP-AT 2.x: legacy PKI partitions, `AT+SYSFLASH`, no `AT+SYSMFG`.
    V2,
    /// ESP-AT 3.2+: `mfg_nvs` namespaces written with `AT+SYSMFG`.
    V3,
}

/// How long the emulated firmware takes for the slow things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Joining an access point.
    pub wifi_join: Duration,
    /// From SNTP configuration to a synced clock.
    pub sntp_sync: Duration,
    /// TCP, TLS and MQTT CONNECT.
    pub mqtt_connect: Duration,
    /// From a publish to its delivery back.
    pub mqtt_loopback: Duration,
    /// Erasing one 4 KiB flash sector.
    pub sector_erase: Duration,
    /// Writing one NVS entry or one flash chunk.
    pub write: Duration,
}

impl Timing {
    /// Quick enough for tests, slow enough that ordering matters.
    pub fn fast() -> Timing {
        Timing {
            wifi_join: Duration::from_millis(20),
            sntp_sync: Duration::from_millis(100),
            mqtt_connect: Duration::from_millis(20),
            mqtt_loopback: Duration::from_millis(5),
            sector_erase: Duration::ZERO,
            write: Duration::ZERO,
        }
    }

    /// What a real ESP32-WROOM on a home router takes (order of magnitude).
    pub fn realistic() -> Timing {
        Timing {
            wifi_join: Duration::from_millis(1500),
            sntp_sync: Duration::from_millis(800),
            mqtt_connect: Duration::from_millis(1200),
            mqtt_loopback: Duration::from_millis(80),
            sector_erase: Duration::from_millis(45),
            write: Duration::from_millis(15),
        }
    }
}

/// How to build an emulated ESP32.
#[derive(Debug, Clone)]
pub struct Esp32Config {
    /// ESP-AT 3.x (mfg_nvs) or 2.x (PKI partitions).
    pub generation: Generation,
    /// Access points in range.
    pub networks: Vec<Network>,
    /// When SNTP syncs the clock.
    pub sntp: Sntp,
    /// The broker's TLS side (its certificate, the CA it trusts for clients).
    pub broker: crate::tls::BrokerTls,
    /// A real broker to connect to instead of the emulated one.
    pub network: Option<crate::net::Broker>,
    /// Keep flash and NVS as plain files here.
    pub state_dir: Option<PathBuf>,
    /// How long things take.
    pub timing: Timing,
    /// The station MAC (the unit's identity).
    pub mac: [u8; 6],
    /// The broker acknowledges publishes but never delivers them (a policy without Receive).
    pub deny_receive: bool,
}

impl Esp32Config {
    /// The defaults of a generation: one lab network, fast timings, a fixed MAC.
    pub fn new(generation: Generation) -> Esp32Config {
        Esp32Config {
            generation,
            networks: default_networks(),
            sntp: Sntp::After(Timing::fast().sntp_sync),
            broker: Default::default(),
            network: None,
            state_dir: None,
            timing: Timing::fast(),
            mac: [0x24, 0x0a, 0xc4, 0x12, 0x34, 0x56],
            deny_receive: false,
        }
    }
}

/// The emulated ESP32.
#[derive(Debug)]
pub struct Esp32 {
    /// ESP-AT 3.x or 2.x.
    pub generation: Generation,
    /// Partitions and NVS.
    pub flash: Flash,
    /// The station MAC.
    pub mac: [u8; 6],
    echo: bool,
    syslog: bool,
    cwmode: u8,
    /// A write waiting for its payload.
    pending: Option<PendingWrite>,
    net: net::Net,
    mqtt: mqtt::Mqtt,
    broker: crate::tls::BrokerTls,
    network: Option<crate::net::Broker>,
    timing: Timing,
    /// The AT UART's rate (`AT+UART_CUR`, `AT+UART_DEF`).
    pub uart: crate::uart::Uart,
}

#[derive(Debug)]
enum PendingWrite {
    Flash {
        partition: String,
        offset: usize,
    },
    Nvs {
        ns: String,
        key: String,
        kind: u8,
    },
    /// An HTTP body (`AT+HTTPCPOST`): taken, answered `SEND OK`, dropped.
    Discard,
}

const OK: &[u8] = b"\r\nOK\r\n";

fn legacy_partitions() -> Vec<Partition> {
    let p = |name, subtype, addr, size: usize| Partition {
        name,
        kind: 64,
        subtype,
        addr,
        data: vec![0xFF; size],
    };
    vec![
        p("ble_data", 1, 0x21000, 0x3000),
        p("server_cert", 2, 0x24000, 0x2000),
        p("server_key", 3, 0x26000, 0x2000),
        p("server_ca", 4, 0x28000, 0x2000),
        p("client_cert", 5, 0x2a000, 0x2000),
        p("client_key", 6, 0x2c000, 0x2000),
        p("client_ca", 7, 0x2e000, 0x2000),
        p("factory_param", 8, 0x30000, 0x1000),
        p("wpa2_cert", 9, 0x31000, 0x2000),
        p("wpa2_key", 10, 0x33000, 0x2000),
        p("wpa2_ca", 11, 0x35000, 0x2000),
        p("mqtt_cert", 12, 0x37000, 0x2000),
        p("mqtt_key", 13, 0x39000, 0x2000),
        p("mqtt_ca", 14, 0x3b000, 0x2000),
    ]
}

fn nvs_partitions() -> Vec<Partition> {
    vec![Partition {
        name: "mfg_nvs",
        kind: 1,
        subtype: 2,
        addr: 0x21000,
        data: vec![0xFF; 0x1c000],
    }]
}

/// Namespaces of the v3 mfg_nvs partition (`AT+SYSMFG?`).
const NAMESPACES: &[&str] = &[
    "factory_param",
    "client_cert",
    "client_key",
    "client_ca",
    "mqtt_cert",
    "mqtt_key",
    "mqtt_ca",
    "server_cert",
    "server_key",
    "server_ca",
];

impl Esp32 {
    /// A module of `generation` with the default configuration.
    pub fn new(generation: Generation) -> Esp32 {
        Esp32::with_config(Esp32Config::new(generation)).expect("no state directory to fail")
    }

    /// An emulator as configured; fails only when the state directory cannot be used.
    pub fn with_config(config: Esp32Config) -> std::io::Result<Esp32> {
        let partitions = match config.generation {
            Generation::V2 => legacy_partitions(),
            Generation::V3 => nvs_partitions(),
        };
        let mut flash = Flash::new(partitions);
        if let Some(dir) = &config.state_dir {
            flash = flash.with_state_dir(dir)?;
        }
        let announce_time = config.generation == Generation::V3;
        Ok(Esp32 {
            generation: config.generation,
            flash,
            mac: config.mac,
            echo: true,
            syslog: false,
            cwmode: 1,
            uart: crate::uart::Uart::esp_at(115_200),
            pending: None,
            net: net::Net::new(
                config.networks,
                config.sntp,
                config.timing.wifi_join,
                announce_time,
            ),
            mqtt: mqtt::Mqtt::with_policy(config.deny_receive),
            broker: config.broker,
            network: config.network,
            timing: config.timing,
        })
    }

    fn gmr(&self) -> &'static str {
        match self.generation {
            Generation::V3 => concat!(
                "AT version:3.2.0.0(s-ec2dec2 - ESP32 - Jul 28 2023 07:05:28)\r\n",
                "SDK version:v5.0.2-376-g24b9d38a24-dirty\r\n",
                "compile time(6118fc22):Jul 28 2023 09:47:28\r\n",
                "Bin version:v3.2.0.0(WROOM-32)\r\n",
            ),
            Generation::V2 => concat!(
                "AT version:2.2.0.0(c6fa6bf - ESP32 - Jul  2 2021 06:44:05)\r\n",
                "SDK version:v4.2.2-76-gefa6eca\r\n",
                "compile time(3a696ba):Jul  2 2021 11:54:43\r\n",
                "Bin version:2.2.0(WROOM-32)\r\n",
            ),
        }
    }

    fn error(&self, code: u32) -> Script {
        error_reply(self.syslog, code)
    }

    fn ok() -> Script {
        vec![Step::Final(OK.to_vec())]
    }

    fn sysflash(&mut self, line: &str) -> Script {
        const EXEC_FAILED: u32 = 0x010a_0000;
        if line == "AT+SYSFLASH?" {
            let mut s = String::new();
            for p in &self.flash.partitions {
                s.push_str(&format!(
                    "+SYSFLASH:\"{}\",{},{},0x{:x},0x{:x}\r\n",
                    p.name,
                    p.kind,
                    p.subtype,
                    p.addr,
                    p.data.len()
                ));
            }
            return vec![Step::Send(s.into_bytes()), Step::Final(OK.to_vec())];
        }
        let params = crate::params(line);
        let op: Option<u32> = params.first().and_then(|s| s.parse().ok());
        let name = params.get(1).map(|s| s.trim_matches('"').to_string());
        let num = |i: usize| params.get(i).and_then(|s| parse_num(s));
        let (Some(op), Some(name)) = (op, name) else {
            return self.error(0x0107_0000);
        };
        let syslog = self.syslog;
        let Some(index) = self.flash.partition_index(&name) else {
            return self.error(EXEC_FAILED);
        };
        let size = self.flash.partitions[index].data.len();
        let sectors = |len: usize| self.timing.sector_erase * len.div_ceil(4096) as u32;
        match (op, params.len()) {
            (0, 2) => {
                let wait = sectors(size);
                self.flash.erase(index, 0, size);
                vec![Step::Delay(wait), Step::Final(OK.to_vec())]
            }
            (0, 4) => {
                let (Some(off), Some(len)) = (num(2), num(3)) else {
                    return self.error(0x0107_0000);
                };
                if off % 4096 != 0 || len % 4096 != 0 || off + len > size {
                    return self.error(EXEC_FAILED);
                }
                let wait = sectors(len);
                self.flash.erase(index, off, len);
                vec![Step::Delay(wait), Step::Final(OK.to_vec())]
            }
            (1, 4) => {
                let (Some(off), Some(len)) = (num(2), num(3)) else {
                    return self.error(0x0107_0000);
                };
                if off + len > size {
                    // The real firmware complains, still takes the data, then fails.
                    let mut v = Vec::new();
                    if syslog {
                        v.push(Step::Send(b"ERR CODE:0x010a0001\r\n".to_vec()));
                    }
                    self.pending = None;
                    v.push(Step::Prompt {
                        bytes: b">".to_vec(),
                        len,
                    });
                    return v;
                }
                self.pending = Some(PendingWrite::Flash {
                    partition: name,
                    offset: off,
                });
                vec![Step::Prompt {
                    bytes: b">".to_vec(),
                    len,
                }]
            }
            (2, 4) => {
                let (Some(off), Some(len)) = (num(2), num(3)) else {
                    return self.error(0x0107_0000);
                };
                if off + len > size {
                    return self.error(EXEC_FAILED);
                }
                let mut v = format!("+SYSFLASH:{len},").into_bytes();
                v.extend_from_slice(&self.flash.partitions[index].data[off..off + len]);
                vec![Step::Send(v), Step::Final(OK.to_vec())]
            }
            _ => self.error(0x0106_0000),
        }
    }

    fn sysmfg(&mut self, line: &str) -> Script {
        if self.generation == Generation::V2 {
            return self.error(0x0109_0000);
        }
        if line == "AT+SYSMFG?" || line == "AT+SYSMFG=1" {
            let mut s = String::new();
            for ns in NAMESPACES {
                s.push_str(&format!("+SYSMFG:\"{ns}\"\r\n"));
            }
            return vec![Step::Send(s.into_bytes()), Step::Final(OK.to_vec())];
        }
        let params = crate::params(line);
        let unq = |i: usize| params.get(i).map(|s| s.trim_matches('"').to_string());
        let op: Option<u32> = params.first().and_then(|s| s.parse().ok());
        match (op, params.len()) {
            (Some(0), 2) => {
                let ns = unq(1).unwrap_or_default();
                self.flash.nvs_erase_namespace(&ns);
                Self::ok()
            }
            (Some(0), 3) => {
                let (ns, key) = (unq(1).unwrap_or_default(), unq(2).unwrap_or_default());
                self.flash.nvs_erase_key(&ns, &key);
                Self::ok()
            }
            (Some(1), 2) => {
                let ns = unq(1).unwrap_or_default();
                let mut s = String::new();
                for ((n, k), (t, _)) in &self.flash.nvs {
                    if *n == ns {
                        s.push_str(&format!("+SYSMFG:\"{n}\",\"{k}\",{t}\r\n"));
                    }
                }
                vec![Step::Send(s.into_bytes()), Step::Final(OK.to_vec())]
            }
            (Some(1), 3) | (Some(1), 5) => {
                let (ns, key) = (unq(1).unwrap_or_default(), unq(2).unwrap_or_default());
                let Some((t, value)) = self.flash.nvs.get(&(ns.clone(), key.clone())) else {
                    return self.error(0x010a_0000);
                };
                let (off, len) = if params.len() == 5 {
                    let off = unq(3).and_then(|s| s.parse().ok()).unwrap_or(0usize);
                    let len = unq(4).and_then(|s| s.parse().ok()).unwrap_or(0usize);
                    (off.min(value.len()), len)
                } else {
                    (0, value.len())
                };
                let end = (off + len).min(value.len());
                let chunk = &value[off..end];
                let mut v = format!("+SYSMFG:\"{ns}\",\"{key}\",{t},{},", chunk.len()).into_bytes();
                v.extend_from_slice(chunk);
                v.extend_from_slice(b"\r\n");
                vec![Step::Send(v), Step::Final(OK.to_vec())]
            }
            (Some(2), 5) => {
                let (ns, key) = (unq(1).unwrap_or_default(), unq(2).unwrap_or_default());
                let kind: Option<u8> = unq(3).and_then(|s| s.parse().ok());
                let value: Option<usize> = unq(4).and_then(|s| s.parse().ok());
                let (Some(kind), Some(value)) = (kind, value) else {
                    return self.error(0x0107_0000);
                };
                if ns.len() > 15 || key.len() > 15 || !(1..=8).contains(&kind) {
                    return self.error(0x0107_0000);
                }
                if kind >= 7 {
                    self.pending = Some(PendingWrite::Nvs { ns, key, kind });
                    ok_then_prompt(value)
                } else {
                    self.flash
                        .nvs_set(ns, key, kind, value.to_string().into_bytes());
                    Self::ok()
                }
            }
            _ => self.error(0x0106_0000),
        }
    }
}

/// `ERROR`, preceded by `ERR CODE:0x<code>` when SYSLOG is on.
fn error_reply(syslog: bool, code: u32) -> Script {
    let mut v = Vec::new();
    if syslog {
        v.push(Step::Send(
            format!("ERR CODE:0x{code:08x}\r\n").into_bytes(),
        ));
    }
    v.push(Step::Final(b"\r\nERROR\r\n".to_vec()));
    v
}

/// `OK`, then the `>` prompt for `len` bytes (OK_AND_INPUT_PROMPT: no trailing space).
fn ok_then_prompt(len: usize) -> Script {
    vec![
        Step::Send(OK.to_vec()),
        Step::Prompt {
            bytes: b"\r\n>".to_vec(),
            len,
        },
    ]
}

fn parse_num(s: &str) -> Option<usize> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => usize::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl Model for Esp32 {
    fn reboot(&mut self) -> Vec<u8> {
        self.echo = true;
        self.syslog = false;
        self.pending = None;
        self.net.reboot();
        self.mqtt.reboot();
        self.uart.reboot();
        b"\r\nready\r\n".to_vec()
    }

    fn echo(&self) -> bool {
        self.echo
    }

    fn command(&mut self, line: &str) -> Script {
        if let Some(script) = self.uart.command(line) {
            return script;
        }
        let upper = line.to_ascii_uppercase();
        match upper.as_str() {
            "AT" => return Self::ok(),
            "ATE0" => {
                self.echo = false;
                return Self::ok();
            }
            "ATE1" => {
                self.echo = true;
                return Self::ok();
            }
            "AT+GMR" => {
                return vec![
                    Step::Send(self.gmr().as_bytes().to_vec()),
                    Step::Final(OK.to_vec()),
                ];
            }
            "AT+RST" => return crate::runner::ok_then_reboot(),
            _ if upper.starts_with("AT+HTTPCPOST=") => {
                // OK, `>`, the body, then SEND OK (the emulator has no HTTP server to post to:
                // the body is taken and dropped).
                let len = crate::params(line)
                    .get(1)
                    .and_then(|p| p.parse::<usize>().ok());
                return match len {
                    Some(len) => {
                        self.pending = Some(PendingWrite::Discard);
                        ok_then_prompt(len)
                    }
                    None => self.error(0x0108_0000),
                };
            }
            "AT+SYSLOG?" => {
                return vec![
                    Step::Send(format!("+SYSLOG:{}\r\n", u8::from(self.syslog)).into_bytes()),
                    Step::Final(OK.to_vec()),
                ];
            }
            "AT+SYSLOG=0" | "AT+SYSLOG=1" => {
                self.syslog = upper.ends_with('1');
                return Self::ok();
            }
            "AT+CWMODE?" => {
                return vec![
                    Step::Send(format!("+CWMODE:{}\r\n", self.cwmode).into_bytes()),
                    Step::Final(OK.to_vec()),
                ];
            }
            "AT+CIPSTAMAC?" => {
                let m = self.mac;
                return vec![
                    Step::Send(
                        format!(
                            "+CIPSTAMAC:\"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"\r\n",
                            m[0], m[1], m[2], m[3], m[4], m[5]
                        )
                        .into_bytes(),
                    ),
                    Step::Final(OK.to_vec()),
                ];
            }
            _ => {}
        }
        if let Some(mode) = upper.strip_prefix("AT+CWMODE=") {
            return match mode.split(',').next().and_then(|m| m.parse().ok()) {
                Some(m @ 0..=3) => {
                    self.cwmode = m;
                    Self::ok()
                }
                _ => self.error(0x0107_0000),
            };
        }
        if upper.starts_with("AT+SYSFLASH") {
            return self.sysflash(line);
        }
        if upper.starts_with("AT+SYSMFG") {
            return self.sysmfg(line);
        }
        if upper == "AT+CWJAP?" {
            return self.net.query();
        }
        if upper.starts_with("AT+CWJAP=") {
            let p = crate::params(line);
            if p.len() < 2 {
                return self.error(0x0106_0000);
            }
            return self.net.join(&crate::unquote(p[0]), &crate::unquote(p[1]));
        }
        if upper.starts_with("AT+CIPSNTPCFG=") {
            let p = crate::params(line);
            let enable = p.first().is_some_and(|e| *e == "1");
            let tz = p.get(1).and_then(|t| t.parse().ok()).unwrap_or(0);
            self.net.configure_sntp(enable, tz);
            return Self::ok();
        }
        if upper == "AT+CIPSNTPTIME?" {
            return self.net.time();
        }
        if upper.starts_with("AT+CIPDOMAIN=") {
            let p = crate::params(line);
            return self
                .net
                .resolve(&p.first().map(|s| crate::unquote(s)).unwrap_or_default());
        }
        if upper.starts_with("AT+MQTT") {
            let host = crate::params(line)
                .get(1)
                .map(|h| crate::unquote(h))
                .unwrap_or_default();
            let cx = mqtt_context!(self, host);
            return self.mqtt.command(line, &cx);
        }
        self.error(0x0109_0000)
    }

    fn payload(&mut self, data: Vec<u8>) -> Script {
        match self.pending.take() {
            Some(PendingWrite::Flash { partition, offset }) => {
                let Some(index) = self.flash.partition_index(&partition) else {
                    return self.error(0x010a_0003);
                };
                // NOR flash only clears bits: writing over unerased bytes corrupts them.
                self.flash.program(index, offset, &data);
                vec![Step::Delay(self.timing.write), Step::Final(OK.to_vec())]
            }
            Some(PendingWrite::Nvs { ns, key, kind }) => {
                self.flash.nvs_set(ns, key, kind, data);
                vec![Step::Delay(self.timing.write), Step::Final(OK.to_vec())]
            }
            Some(PendingWrite::Discard) => vec![Step::Final(b"\r\nSEND OK\r\n".to_vec())],
            None => {
                let cx = mqtt_context!(self, "");
                match self.mqtt.payload(data, &cx) {
                    Some(script) => script,
                    None => self.error(0x010a_0001),
                }
            }
        }
    }

    fn poll(&mut self) -> Vec<u8> {
        let mut out = self.net.poll();
        out.extend(self.mqtt.poll());
        out
    }

    fn next_event(&self) -> Option<Instant> {
        self.net.sync_due()
    }

    fn take_waits(&mut self) -> Vec<(Instant, Duration)> {
        self.net.take_wait().into_iter().collect()
    }
}
