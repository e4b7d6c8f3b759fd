//! The emulated Air780EP's SSL context 88 (`AT+SSLCFG`) and its single MQTT link
//! (`AT+MCONFIG`, `AT+SSLMIPSTART`/`AT+MIPSTART` → `CONNECT OK`, `AT+MCONNECT` → `CONNACK OK`,
//! `AT+MSUB` → `SUBACK`, `AT+MPUBEX` → `>` → `PUBACK`, `+MSUB: "t",N byte,<data>`), with a
//! broker that checks the files named in context 88 during the handshake, checks an Aliyun
//! signature at CONNECT, and closes a TCP connection that waits too long for its CONNECT
//! (reference §7 Luat 1).

use std::collections::BTreeMap;
use std::time::Instant;

use super::LuatConfig;
use crate::cellular::{self, ERROR, OK};
use crate::net::{Session, Transport};
use crate::runner::{Script, Step, awaiting};
use crate::unquote;

pub struct Context<'a> {
    pub files: &'a BTreeMap<String, Vec<u8>>,
    pub attached: bool,
    pub clock_synced: bool,
    pub config: &'a LuatConfig,
}

/// A slot a network task fills and the firmware later takes.
type Shared<T> = std::sync::Arc<std::sync::Mutex<Option<T>>>;

fn take<T>(slot: &Shared<T>) -> Option<T> {
    slot.lock().expect("network slot lock").take()
}

#[derive(Debug, Default)]
pub struct Mqtt {
    /// With a real broker: the open connection (after `CONNECT OK`), then the MQTT session.
    transport: Shared<Transport>,
    session: Shared<Session>,
    ssl: BTreeMap<String, String>,
    client: Option<(String, String, String)>,
    /// When `CONNECT OK` was sent.
    tcp_up: Option<Instant>,
    connected: bool,
    subscriptions: Vec<String>,
    publishing: Option<(String, u8)>,
}

fn urc(line: &str) -> Vec<u8> {
    format!("\r\n{line}\r\n").into_bytes()
}

fn ok_then(delay: std::time::Duration, line: &str) -> Script {
    vec![
        Step::Final(OK.to_vec()),
        Step::Delay(delay),
        Step::Send(urc(line)),
    ]
}

impl Mqtt {
    pub fn command(&mut self, name: &str, p: &[&str], cx: &Context) -> Script {
        let fast = std::time::Duration::from_millis(2);
        match name {
            "AT+SSLCFG" if p.len() >= 3 => {
                if p[1].trim() != "88" {
                    // Other contexts exist (HTTP 153...) but MQTT reads 88 only.
                    return vec![Step::Final(OK.to_vec())];
                }
                if unquote(p[0]).eq_ignore_ascii_case("alpn") {
                    return vec![Step::Final(ERROR.to_vec())];
                }
                self.ssl
                    .insert(unquote(p[0]).to_ascii_lowercase(), unquote(p[2]));
                vec![Step::Final(OK.to_vec())]
            }
            "AT+MCONFIG" if !p.is_empty() => {
                let get = |i: usize| p.get(i).map(|s| unquote(s)).unwrap_or_default();
                if [get(0), get(1), get(2)].iter().any(|v| v.len() > 256) {
                    return vec![Step::Final(ERROR.to_vec())];
                }
                self.client = Some((get(0), get(1), get(2)));
                vec![Step::Final(OK.to_vec())]
            }
            "AT+SSLMIPSTART" | "AT+MIPSTART" if p.len() >= 2 => {
                if self.tcp_up.is_some() {
                    return ok_then(fast, "ALREADY CONNECT");
                }
                let host = unquote(p[0]);
                if let (Some(broker), true) = (cx.config.network, cx.attached) {
                    return self.open(broker, name == "AT+SSLMIPSTART", &host, cx);
                }
                let failed = if !cx.attached {
                    Some("no PDP (not attached)".to_string())
                } else if host.ends_with(".invalid") {
                    Some(format!("DNS lookup of {host} failed"))
                } else if name == "AT+SSLMIPSTART" {
                    self.handshake(cx, &host).err()
                } else {
                    None
                };
                match failed {
                    Some(why) => {
                        tracing::info!("emulated Air780EP: connect to {host} failed: {why}");
                        vec![
                            Step::Final(OK.to_vec()),
                            Step::Delay(cx.config.open_time),
                            Step::Send(urc("STATE: TCP CLOSED")),
                            Step::Send(urc("CONNECT FAIL")),
                        ]
                    }
                    None => {
                        self.tcp_up = Some(Instant::now() + cx.config.open_time);
                        ok_then(cx.config.open_time, "CONNECT OK")
                    }
                }
            }
            "AT+MCONNECT" => {
                let Some(up) = self.tcp_up else {
                    return vec![Step::Final(ERROR.to_vec())];
                };
                if let Some(transport) = take(&self.transport) {
                    return self.connect(transport, p);
                }
                if up.elapsed() > cx.config.idle_kick {
                    tracing::info!("emulated Air780EP: the server closed an idle TCP connection");
                    self.tcp_up = None;
                    return ok_then(fast, "CLOSED");
                }
                let accepted = match (&cx.config.aliyun, &self.client) {
                    (Some(triple), Some((cid, user, pass))) => {
                        crate::aliyun::login_ok(triple, cid, user, pass)
                            || cx.config.tokens.as_ref().is_some_and(|(c, id, token)| {
                                c == cid && id == user && token == pass
                            })
                    }
                    _ => true,
                };
                if !accepted {
                    self.tcp_up = None;
                    return ok_then(fast, "CLOSED");
                }
                self.connected = true;
                ok_then(fast, "CONNACK OK")
            }
            "AT+MSUB" if p.len() >= 2 => {
                if !self.connected {
                    return vec![Step::Final(ERROR.to_vec())];
                }
                self.subscriptions.push(unquote(p[0]));
                if let Some(session) = self.session.lock().expect("session lock").as_ref() {
                    let qos = p[1].trim().parse().unwrap_or(0);
                    let acked = session.subscribe(&unquote(p[0]), qos);
                    let mut script = vec![Step::Final(OK.to_vec())];
                    script.extend(awaiting(async move {
                        match acked.await {
                            Ok(Ok(())) => vec![Step::Send(urc("SUBACK"))],
                            // The module reports a refused subscription as no SUBACK at all.
                            _ => Vec::new(),
                        }
                    }));
                    return script;
                }
                ok_then(fast, "SUBACK")
            }
            "AT+MPUBEX" if p.len() >= 4 => {
                if !self.connected {
                    return vec![Step::Final(ERROR.to_vec())];
                }
                let Ok(len) = p[3].trim().parse::<usize>() else {
                    return vec![Step::Final(ERROR.to_vec())];
                };
                let qos = p[1].trim().parse().unwrap_or(0);
                self.publishing = Some((unquote(p[0]), qos));
                vec![Step::Prompt {
                    bytes: b"\r\n>".to_vec(),
                    len,
                }]
            }
            "AT+MQTTSTATU" => {
                let n = match (self.connected, self.tcp_up.is_some()) {
                    (true, _) => 1,
                    (false, true) => 2,
                    _ => 0,
                };
                vec![
                    Step::Send(urc(&format!("+MQTTSTATU :{n}"))),
                    Step::Final(OK.to_vec()),
                ]
            }
            "AT+MDISCONNECT" => {
                if let Some(s) = take(&self.session) {
                    s.disconnect();
                }
                self.connected = false;
                self.subscriptions.clear();
                vec![Step::Final(OK.to_vec())]
            }
            "AT+MIPCLOSE" => {
                if let Some(s) = take(&self.session) {
                    s.disconnect();
                }
                take(&self.transport);
                let was = self.tcp_up.take().is_some();
                self.connected = false;
                if was {
                    vec![Step::Final(OK.to_vec())]
                } else {
                    vec![Step::Final(b"\r\n+CME ERROR: 767\r\n".to_vec())]
                }
            }
            _ => vec![Step::Final(ERROR.to_vec())],
        }
    }

    pub fn payload(&mut self, data: Vec<u8>, cx: &Context) -> Script {
        let Some((topic, qos)) = self.publishing.take() else {
            return vec![Step::Final(ERROR.to_vec())];
        };
        if let Some(session) = self.session.lock().expect("session lock").as_ref() {
            let acked = session.publish(&topic, data, qos);
            let mut script = vec![Step::Final(OK.to_vec())];
            if qos > 0 {
                script.extend(awaiting(async move {
                    match acked.await {
                        Ok(Ok(())) => vec![Step::Send(urc("PUBACK"))],
                        _ => Vec::new(),
                    }
                }));
            }
            return script;
        }
        let mut script = vec![Step::Final(OK.to_vec())];
        if qos > 0 {
            script.push(Step::Delay(std::time::Duration::from_millis(2)));
            script.push(Step::Send(urc("PUBACK")));
        }
        if self.subscriptions.contains(&topic) && !cx.config.deny_receive {
            let mut line = format!("\r\n+MSUB: \"{topic}\",{} byte,", data.len()).into_bytes();
            line.extend_from_slice(&data);
            line.extend_from_slice(b"\r\n");
            script.push(Step::Delay(std::time::Duration::from_millis(3)));
            script.push(Step::Send(line));
        }
        script
    }

    /// `AT+SSLMIPSTART`/`AT+MIPSTART` with a real broker: TCP, then the module's TLS from
    /// context 88, reported as `CONNECT OK` or `STATE: TCP CLOSED` + `CONNECT FAIL`.
    fn open(&mut self, broker: crate::net::Broker, ssl: bool, host: &str, cx: &Context) -> Script {
        let tls = if ssl {
            match self.module_tls(cx, host) {
                Ok(t) => Some(t),
                Err(why) => {
                    tracing::info!("emulated Air780EP: TLS to {host} cannot start: {why}");
                    return connect_failed();
                }
            }
        } else {
            None
        };
        let slot = self.transport.clone();
        let host = host.to_string();
        self.tcp_up = Some(Instant::now());
        let mut script = vec![Step::Final(OK.to_vec())];
        script.extend(awaiting(async move {
            match crate::net::open(broker, tls.as_ref(), true).await {
                Ok(t) => {
                    *slot.lock().expect("transport lock") = Some(t);
                    vec![Step::Send(urc("CONNECT OK"))]
                }
                Err(why) => {
                    tracing::info!("emulated Air780EP: connect to {host} failed: {why}");
                    connect_failed()[1..].to_vec()
                }
            }
        }));
        script
    }

    /// `AT+MCONNECT=<clean>,<keepalive>` with a real broker: CONNECT with what `AT+MCONFIG`
    /// set; `CONNACK OK`, or `CLOSED` when the broker refuses or drops the connection.
    fn connect(&mut self, transport: Transport, p: &[&str]) -> Script {
        let (client_id, username, password) = self.client.clone().unwrap_or_default();
        let login = crate::net::Login {
            client_id,
            username,
            password,
            keepalive: p.get(1).and_then(|k| k.trim().parse().ok()).unwrap_or(120),
        };
        let slot = self.session.clone();
        self.connected = true;
        let mut script = vec![Step::Final(OK.to_vec())];
        script.extend(awaiting(async move {
            match crate::net::connect(transport, &login).await {
                Ok(session) => {
                    *slot.lock().expect("session lock") = Some(session);
                    vec![Step::Send(urc("CONNACK OK"))]
                }
                Err(why) => {
                    tracing::info!("emulated Air780EP: CONNECT failed: {why}");
                    vec![Step::Send(urc("CLOSED"))]
                }
            }
        }));
        script
    }

    /// What a real broker sent since the last poll: `+MSUB` lines, `CLOSED` when it hung up.
    pub fn poll(&mut self) -> Vec<u8> {
        let mut guard = self.session.lock().expect("session lock");
        let Some(session) = guard.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for event in session.events() {
            match event {
                crate::net::Event::Message { topic, payload } => {
                    out.extend(format!("\r\n+MSUB: \"{topic}\",{} byte,", payload.len()).bytes());
                    out.extend_from_slice(&payload);
                    out.extend_from_slice(b"\r\n");
                }
                crate::net::Event::Closed(why) => {
                    tracing::info!("emulated Air780EP: MQTT connection closed: {why}");
                    *guard = None;
                    self.connected = false;
                    self.tcp_up = None;
                    out.extend(urc("CLOSED"));
                    break;
                }
            }
        }
        out
    }

    /// Context 88 as the module's TLS stack reads it for a connection to `host`.
    fn tls_settings<'a>(&self, cx: &'a Context, host: &str) -> cellular::Tls<'a> {
        let file = |k: &str| -> Result<Vec<u8>, String> {
            let name = self.ssl.get(k).ok_or(format!("context 88 has no {k}"))?;
            cx.files
                .get(name)
                .cloned()
                .ok_or(format!("{k} file {name} does not exist"))
        };
        cellular::Tls {
            seclevel: self
                .ssl
                .get("seclevel")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            ignore_local_time: self.ssl.get("ignorelocaltime").is_some_and(|v| v == "1"),
            clock_synced: cx.clock_synced,
            ca: file("cacert"),
            cert: file("clientcert"),
            key: file("clientkey"),
            server_name: host.to_string(),
            alpn: Vec::new(),
            // The module's TLS stack takes RSA keys only (§7 Luat 11).
            rsa_only: true,
            broker: &cx.config.broker,
        }
    }

    /// The module's TLS client for a real broker.
    fn module_tls(&self, cx: &Context, host: &str) -> Result<crate::tls::ModuleTls, String> {
        cellular::module_tls(self.tls_settings(cx, host))
    }

    /// The TLS handshake as the offline broker sees it.
    fn handshake(&self, cx: &Context, host: &str) -> Result<(), String> {
        cellular::handshake(self.tls_settings(cx, host))
    }
}

/// What the module prints when TCP or TLS fails: `OK`, then the state and `CONNECT FAIL`.
fn connect_failed() -> Script {
    vec![
        Step::Final(OK.to_vec()),
        Step::Send(urc("STATE: TCP CLOSED")),
        Step::Send(urc("CONNECT FAIL")),
    ]
}
