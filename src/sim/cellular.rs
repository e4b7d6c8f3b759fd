//! What the cellular emulators (Quectel, Luat) share: 3GPP-style replies (`OK`, `ERROR`,
//! `+CME ERROR: n`, info lines) and the broker's view of a TLS handshake with the files an SSL
//! context names.

use super::runner::{Script, Step};
use crate::pki::check::Target;

pub const OK: &[u8] = b"\r\nOK\r\n";
pub const ERROR: &[u8] = b"\r\nERROR\r\n";

pub fn ok() -> Script {
    vec![Step::Final(OK.to_vec())]
}

pub fn error() -> Script {
    vec![Step::Final(ERROR.to_vec())]
}

pub fn cme(n: u32) -> Script {
    vec![Step::Final(format!("\r\n+CME ERROR: {n}\r\n").into_bytes())]
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
    /// 0 none, 1 verify the server, 2 and present a client certificate.
    pub seclevel: &'a str,
    pub ignore_local_time: bool,
    pub clock_synced: bool,
    /// The files the context names (`None` when unset or missing), with what names them.
    pub ca: Result<Vec<u8>, String>,
    pub cert: Result<Vec<u8>, String>,
    pub key: Result<Vec<u8>, String>,
    /// The CA the broker trusts for client certificates (default: the uploaded CA).
    pub trust: Option<&'a [u8]>,
    pub target: Option<Target>,
}

/// Whether the broker completes the handshake; the reason when not (for the emulator's log).
pub fn handshake(t: Tls) -> Result<(), String> {
    if t.seclevel == "0" {
        return Ok(());
    }
    let ca = t.ca?;
    if !t.ignore_local_time && !t.clock_synced {
        return Err("certificate not yet valid: the clock is at 1980".into());
    }
    if t.seclevel == "2" {
        let (cert, key) = (t.cert?, t.key?);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        crate::pki::check::check_bundle(
            crate::pki::check::Bundle::from_bytes(
                ("uploaded CA", &ca),
                ("client certificate", &cert),
                ("client key", &key),
                t.trust.map(|t| ("the broker's trusted CA", t)),
            ),
            t.target,
            now,
        )
        .map_err(|p| p.join("; "))?;
    }
    Ok(())
}
