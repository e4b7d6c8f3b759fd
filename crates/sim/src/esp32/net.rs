//! The emulated ESP32's network side: Wi-Fi networks it can join (`AT+CWJAP` with the real
//! error codes), an SNTP clock that reads 1970 until it syncs (`AT+CIPSNTPCFG`,
//! `AT+CIPSNTPTIME?`, `+TIME_UPDATED` on 3.x), and DNS (`AT+CIPDOMAIN`; names under
//! `.invalid` do not resolve).

use std::time::{Duration, Instant};

use super::super::runner::{Script, Step};

/// A Wi-Fi network the emulator can join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The network's name.
    pub ssid: String,
    /// Its WPA2 password.
    pub password: String,
}

impl Network {
    /// `SSID:PASSWORD` (the password may contain `:`).
    pub fn parse(s: &str) -> Result<Network, String> {
        let (ssid, password) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: write SSID:PASSWORD"))?;
        Ok(Network {
            ssid: ssid.to_string(),
            password: password.to_string(),
        })
    }
}

/// The network the emulator offers unless told otherwise (and that `atprov demo` joins).
pub fn default_networks() -> Vec<Network> {
    vec![Network {
        ssid: "atprov-lab".into(),
        password: "correct horse battery".into(),
    }]
}

/// When SNTP gets the time after it is enabled and Wi-Fi is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sntp {
    /// The clock syncs this long after SNTP is configured.
    After(Duration),
    /// The clock never syncs (no NTP server reachable).
    Never,
}

#[derive(Debug)]
pub struct Net {
    pub networks: Vec<Network>,
    pub sntp: Sntp,
    pub join_time: Duration,
    pub joined: Option<String>,
    sntp_enabled: bool,
    sync_due: Option<Instant>,
    /// Offset of the emulated clock from the host's UTC, once synced (kept over a soft reset
    /// like the ESP32's RTC).
    synced: bool,
    timezone: i32,
    booted: Instant,
    announce: bool,
    /// A sync wait scheduled since last asked (for the device-time account).
    new_wait: Option<(Instant, Duration)>,
}

impl Net {
    pub fn new(networks: Vec<Network>, sntp: Sntp, join_time: Duration, announce: bool) -> Net {
        Net {
            networks,
            sntp,
            join_time,
            joined: None,
            sntp_enabled: false,
            sync_due: None,
            synced: false,
            timezone: 0,
            booted: Instant::now(),
            announce,
            new_wait: None,
        }
    }

    /// A reboot: Wi-Fi drops, SNTP must be configured again, the RTC keeps the time.
    pub fn reboot(&mut self) {
        self.joined = None;
        self.sntp_enabled = false;
        self.sync_due = None;
        self.booted = Instant::now();
    }

    pub fn synced(&self) -> bool {
        self.synced
    }

    /// `AT+CWJAP="ssid","pwd"[,...]`.
    pub fn join(&mut self, ssid: &str, password: &str) -> Script {
        let mut steps = Vec::new();
        if self.joined.take().is_some() {
            steps.push(Step::Send(b"WIFI DISCONNECT\r\n".to_vec()));
        }
        steps.push(Step::Delay(self.join_time));
        match self.networks.iter().find(|n| n.ssid == ssid) {
            None => {
                steps.push(Step::Send(b"+CWJAP:3\r\n".to_vec()));
                steps.push(Step::Final(b"\r\nERROR\r\n".to_vec()));
            }
            Some(n) if n.password != password => {
                steps.push(Step::Send(b"+CWJAP:2\r\n".to_vec()));
                steps.push(Step::Final(b"\r\nERROR\r\n".to_vec()));
            }
            Some(_) => {
                self.joined = Some(ssid.to_string());
                self.schedule_sync();
                steps.push(Step::Send(b"WIFI CONNECTED\r\n".to_vec()));
                steps.push(Step::Send(b"WIFI GOT IP\r\n".to_vec()));
                steps.push(Step::Final(b"\r\nOK\r\n".to_vec()));
            }
        }
        steps
    }

    /// `AT+CWJAP?`.
    pub fn query(&self) -> Script {
        let info = match &self.joined {
            Some(ssid) => format!("+CWJAP:\"{ssid}\",\"a0:b1:c2:d3:e4:f5\",6,-52,0,1,3,0,1\r\n"),
            None => "No AP\r\n".to_string(),
        };
        vec![
            Step::Send(info.into_bytes()),
            Step::Final(b"\r\nOK\r\n".to_vec()),
        ]
    }

    /// `AT+CIPSNTPCFG=<enable>[,<tz>][,"server"...]`.
    pub fn configure_sntp(&mut self, enable: bool, timezone: i32) {
        self.sntp_enabled = enable;
        self.timezone = timezone;
        self.sync_due = None;
        self.schedule_sync();
    }

    fn schedule_sync(&mut self) {
        if let (true, Some(_), Sntp::After(d)) = (self.sntp_enabled, &self.joined, self.sntp)
            && self.sync_due.is_none()
            && !self.synced
        {
            let now = Instant::now();
            self.sync_due = Some(now + d);
            self.new_wait = Some((now, d));
        }
    }

    /// The sync wait scheduled since last asked.
    pub fn take_wait(&mut self) -> Option<(Instant, Duration)> {
        self.new_wait.take()
    }

    /// When the clock will sync, if it is about to.
    pub fn sync_due(&self) -> Option<Instant> {
        if self.synced { None } else { self.sync_due }
    }

    /// Advances time; returns `+TIME_UPDATED` when the clock synced just now (3.x only).
    pub fn poll(&mut self) -> Vec<u8> {
        match self.sync_due {
            Some(due) if !self.synced && Instant::now() >= due => {
                self.synced = true;
                self.sync_due = None;
                if self.announce {
                    return b"\r\n+TIME_UPDATED\r\n".to_vec();
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// `AT+CIPSNTPTIME?`: asctime with the `\n` turned into nothing (no blank line before OK).
    pub fn time(&mut self) -> Script {
        self.poll();
        let t = if self.synced {
            time::OffsetDateTime::now_utc() + time::Duration::hours(i64::from(self.timezone))
        } else {
            time::OffsetDateTime::UNIX_EPOCH
                + time::Duration::seconds(self.booted.elapsed().as_secs() as i64)
        };
        let format = time::macros::format_description!(
            "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
        );
        let text = t.format(format).unwrap_or_default();
        vec![
            Step::Send(format!("+CIPSNTPTIME:{text}\r\n").into_bytes()),
            Step::Final(b"OK\r\n".to_vec()),
        ]
    }

    /// `AT+CIPDOMAIN="name"`.
    pub fn resolve(&self, name: &str) -> Script {
        if self.joined.is_none() || name.is_empty() || name.ends_with(".invalid") {
            return vec![Step::Final(b"\r\nERROR\r\n".to_vec())];
        }
        vec![
            Step::Send(b"+CIPDOMAIN:\"192.0.2.10\"\r\n".to_vec()),
            Step::Final(b"\r\nOK\r\n".to_vec()),
        ]
    }
}
