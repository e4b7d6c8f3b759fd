//! What the cellular emulators (Quectel, Luat) share: 3GPP-style replies (`OK`, `ERROR`,
//! `+CME ERROR: n`, info lines), the radio (`AT+CFUN`) with the registration it starts, and the
//! broker's view of a TLS handshake with the files an SSL context names.

use super::runner::{Script, Step};
use crate::tls::{BrokerTls, ModuleTls};

/// A success final.
pub const OK: &[u8] = b"\r\nOK\r\n";
/// An error final.
pub const ERROR: &[u8] = b"\r\nERROR\r\n";

/// Just `OK`.
pub fn ok() -> Script {
    vec![Step::Final(OK.to_vec())]
}

/// Just `ERROR`.
pub fn error() -> Script {
    vec![Step::Final(ERROR.to_vec())]
}

/// `+CME ERROR: n`.
pub fn cme(n: u32) -> Script {
    vec![Step::Final(format!("\r\n+CME ERROR: {n}\r\n").into_bytes())]
}

/// The radio (`AT+CFUN`): off, or on since an instant; the network registers the module
/// `register_time` after the radio came on.
#[derive(Debug, Clone, Copy)]
pub struct Radio {
    on_since: Option<std::time::Instant>,
    register_time: std::time::Duration,
    off_at_power_on: bool,
}

impl Radio {
    /// A radio just powered up (on, unless the image keeps it off).
    pub fn new(register_time: std::time::Duration, off_at_power_on: bool) -> Radio {
        let mut r = Radio {
            on_since: None,
            register_time,
            off_at_power_on,
        };
        r.power_on();
        r
    }

    /// Power-on: the radio comes up (and registration starts) unless the image keeps it off.
    pub fn power_on(&mut self) {
        self.on_since = (!self.off_at_power_on).then(std::time::Instant::now);
    }

    /// Whether it is on.
    pub fn is_on(&self) -> bool {
        self.on_since.is_some()
    }

    /// On, and the network has not registered the module yet.
    pub fn searching(&self) -> bool {
        self.on_since
            .is_some_and(|t| t.elapsed() < self.register_time)
    }

    /// On long enough to be registered.
    pub fn registered(&self) -> bool {
        self.on_since
            .is_some_and(|t| t.elapsed() >= self.register_time)
    }

    /// `AT+CFUN?`, `AT+CFUN=0|4` (off) and `AT+CFUN=1` (on; registration starts if it was
    /// off); `None` for any other line (`AT+CFUN=1,1` restarts: the model's).
    pub fn command(&mut self, upper: &str) -> Option<Script> {
        match upper {
            "AT+CFUN?" => Some(info(&[format!("+CFUN: {}", u8::from(self.is_on()))])),
            "AT+CFUN=0" | "AT+CFUN=4" => {
                self.on_since = None;
                Some(ok())
            }
            "AT+CFUN=1" => {
                self.on_since.get_or_insert_with(std::time::Instant::now);
                Some(ok())
            }
            _ => None,
        }
    }
}

/// Information lines, then `OK`.
pub fn info(lines: &[String]) -> Script {
    let mut s: Vec<u8> = Vec::new();
    for l in lines {
        s.extend_from_slice(format!("\r\n{l}\r\n").as_bytes());
    }
    vec![Step::Send(s), Step::Final(OK.to_vec())]
}

/// `OK`, then after `delay` a URC (`bytes` already framed, or empty when it goes elsewhere).
pub fn ok_then(delay: std::time::Duration, bytes: Vec<u8>) -> Script {
    vec![
        Step::Final(OK.to_vec()),
        Step::Delay(delay),
        Step::Send(bytes),
    ]
}

/// An SSL context's settings as the handshake uses them.
pub struct Tls<'a> {
    /// 0 no authentication, 1 verify the server, 2 also present a client certificate.
    pub seclevel: u8,
    /// `ignorelocaltime`: certificate dates are not checked against the module's clock.
    pub ignore_local_time: bool,
    /// The module's clock was synced (it is at 1980 until then).
    pub clock_synced: bool,
    /// The files the context names (or why there are none).
    pub ca: Result<Vec<u8>, String>,
    /// The client certificate file the context names.
    pub cert: Result<Vec<u8>, String>,
    /// The private key file the context names.
    pub key: Result<Vec<u8>, String>,
    /// The host the module connects to: SNI, and the name its certificate must carry.
    pub server_name: String,
    /// Protocols offered with ALPN.
    pub alpn: Vec<String>,
    /// The module's TLS stack takes RSA client keys only (Luat).
    pub rsa_only: bool,
    /// The broker's side.
    pub broker: &'a BrokerTls,
}

/// Whether the handshake completes, judged by rustls on both sides; the reason when not (for
/// the emulator's log).
pub fn handshake(t: Tls) -> Result<(), String> {
    let broker = t.broker;
    crate::tls::handshake_in_memory(&module_tls(t)?, broker)
}

/// The module's side of TLS as the context configures it, or why it cannot even start.
pub fn module_tls(t: Tls) -> Result<ModuleTls, String> {
    let verify_server = matches!(t.seclevel, 1 | 2);
    let client_cert = t.seclevel == 2;
    if verify_server && !t.ignore_local_time && !t.clock_synced {
        return Err("certificate not yet valid: the clock is at 1980".into());
    }
    Ok(ModuleTls {
        ca: if verify_server { Some(t.ca?) } else { None },
        cert: if client_cert { Some(t.cert?) } else { None },
        key: if client_cert { Some(t.key?) } else { None },
        verify_server,
        client_cert,
        server_name: t.server_name,
        alpn: t.alpn,
        rsa_only: t.rsa_only,
    })
}
