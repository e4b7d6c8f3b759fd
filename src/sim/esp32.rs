//! The emulated ESP32 running ESP-AT, faithful to `reference/esp-at.md`: echo on after boot,
//! `ATE0/1`, `AT+GMR` text of the real firmware, `AT+RST` then `ready`, `AT+SYSLOG` error codes,
//! the STA MAC, and both certificate-storage generations: `v3` (mfg_nvs written with
//! `AT+SYSMFG`, `OK` then `>`) and `v2` (raw partitions written with `AT+SYSFLASH`, a bare `>`),
//! with read-back as counted payloads. Flash and NVS survive `AT+RST`; echo and SYSLOG do not.

use std::collections::BTreeMap;

use super::runner::{Model, Script, Step};

/// Which ESP-AT generation to emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// ESP-AT 2.x: legacy PKI partitions, `AT+SYSFLASH`, no `AT+SYSMFG`.
    V2,
    /// ESP-AT 3.2+: `mfg_nvs` namespaces written with `AT+SYSMFG`.
    V3,
}

/// A partition of the emulated flash.
#[derive(Debug, Clone)]
pub struct Partition {
    pub name: &'static str,
    pub kind: u8,
    pub subtype: u8,
    pub addr: u32,
    pub data: Vec<u8>,
}

/// The persistent part of the module: flash and NVS.
#[derive(Debug, Clone)]
pub struct Flash {
    pub partitions: Vec<Partition>,
    /// mfg_nvs: (namespace, key) → (type, value).
    pub nvs: BTreeMap<(String, String), (u8, Vec<u8>)>,
}

/// The emulated ESP32.
#[derive(Debug)]
pub struct Esp32 {
    pub generation: Generation,
    pub flash: Flash,
    pub mac: [u8; 6],
    echo: bool,
    syslog: bool,
    cwmode: u8,
    /// A write waiting for its payload: (partition or key, offset).
    pending: Option<PendingWrite>,
}

#[derive(Debug)]
enum PendingWrite {
    Flash { partition: String, offset: usize },
    Nvs { ns: String, key: String, kind: u8 },
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
    pub fn new(generation: Generation) -> Esp32 {
        let partitions = match generation {
            Generation::V2 => legacy_partitions(),
            Generation::V3 => nvs_partitions(),
        };
        Esp32 {
            generation,
            flash: Flash {
                partitions,
                nvs: BTreeMap::new(),
            },
            mac: [0x24, 0x0a, 0xc4, 0x12, 0x34, 0x56],
            echo: true,
            syslog: false,
            cwmode: 1,
            pending: None,
        }
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

    /// `ERROR`, preceded by `ERR CODE:` when SYSLOG is on.
    fn error(&self, code: u32) -> Script {
        let mut v = Vec::new();
        if self.syslog {
            v.push(Step::Send(
                format!("ERR CODE:0x{code:08x}\r\n").into_bytes(),
            ));
        }
        v.push(Step::Final(b"\r\nERROR\r\n".to_vec()));
        v
    }

    fn ok() -> Script {
        vec![Step::Final(OK.to_vec())]
    }

    fn partition_mut(&mut self, name: &str) -> Option<&mut Partition> {
        self.flash.partitions.iter_mut().find(|p| p.name == name)
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
        let params = crate::at::command::params(line);
        let op: Option<u32> = params.first().and_then(|s| s.parse().ok());
        let name = params.get(1).map(|s| s.trim_matches('"').to_string());
        let num = |i: usize| params.get(i).and_then(|s| parse_num(s));
        let (Some(op), Some(name)) = (op, name) else {
            return self.error(0x0107_0000);
        };
        let syslog = self.syslog;
        let Some(part) = self.partition_mut(&name) else {
            return self.error(EXEC_FAILED);
        };
        let size = part.data.len();
        match (op, params.len()) {
            (0, 2) => {
                part.data.fill(0xFF);
                Self::ok()
            }
            (0, 4) => {
                let (Some(off), Some(len)) = (num(2), num(3)) else {
                    return self.error(0x0107_0000);
                };
                if off % 4096 != 0 || len % 4096 != 0 || off + len > size {
                    return self.error(EXEC_FAILED);
                }
                part.data[off..off + len].fill(0xFF);
                Self::ok()
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
                v.extend_from_slice(&part.data[off..off + len]);
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
        let params = crate::at::command::params(line);
        let unq = |i: usize| params.get(i).map(|s| s.trim_matches('"').to_string());
        let op: Option<u32> = params.first().and_then(|s| s.parse().ok());
        match (op, params.len()) {
            (Some(0), 2) => {
                let ns = unq(1).unwrap_or_default();
                self.flash.nvs.retain(|(n, _), _| *n != ns);
                Self::ok()
            }
            (Some(0), 3) => {
                let (ns, key) = (unq(1).unwrap_or_default(), unq(2).unwrap_or_default());
                self.flash.nvs.remove(&(ns, key));
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
                    vec![
                        Step::Send(OK.to_vec()),
                        Step::Prompt {
                            bytes: b"\r\n>".to_vec(),
                            len: value,
                        },
                    ]
                } else {
                    self.flash
                        .nvs
                        .insert((ns, key), (kind, value.to_string().into_bytes()));
                    Self::ok()
                }
            }
            _ => self.error(0x0106_0000),
        }
    }
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
        b"\r\nready\r\n".to_vec()
    }

    fn echo(&self) -> bool {
        self.echo
    }

    fn command(&mut self, line: &str) -> Script {
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
            "AT+RST" => {
                return vec![
                    Step::Final(OK.to_vec()),
                    Step::Delay(std::time::Duration::from_millis(20)),
                    Step::Reboot,
                ];
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
        self.error(0x0109_0000)
    }

    fn payload(&mut self, data: Vec<u8>) -> Script {
        match self.pending.take() {
            Some(PendingWrite::Flash { partition, offset }) => {
                let Some(p) = self.partition_mut(&partition) else {
                    return self.error(0x010a_0003);
                };
                // NOR flash only clears bits: writing over unerased bytes corrupts them.
                for (dst, src) in p.data[offset..offset + data.len()].iter_mut().zip(&data) {
                    *dst &= *src;
                }
                Self::ok()
            }
            Some(PendingWrite::Nvs { ns, key, kind }) => {
                self.flash.nvs.insert((ns, key), (kind, data));
                Self::ok()
            }
            None => self.error(0x010a_0001),
        }
    }
}
