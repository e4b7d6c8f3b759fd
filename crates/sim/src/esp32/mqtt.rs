//! The emulated ESP32's MQTT client and the broker behind it, in one: `AT+MQTTUSERCFG`,
//! `CONNCFG`, `LONG*`, `ALPN`, `SNI`, `CONN`, `SUB`, `UNSUB`, `PUB`, `PUBRAW`, `CLEAN`, with the
//! reference notes' answers (§7). The TLS handshake is a real one, judged by rustls (see
//! [`crate::tls`]): the module verifies the broker with its stored CA (schemes 3, 5), presents
//! its stored certificate and key (4, 5), and the broker checks them against its own trusted
//! issuing CA (`--trust`), never against what the module stores; it loops publishes
//! back to matching subscriptions as `+MQTTSUBRECV`, split like esp-mqtt's 1 KiB buffer.
//! Why a connection was refused goes to the emulator's log, as the real module's log UART.

use std::time::Duration;

use super::super::runner::{Script, Step, awaiting};
use super::storage::Flash;
use crate::params;
use crate::unquote;

#[derive(Debug, Default)]
pub struct Mqtt {
    pub scheme: u8,
    pub client_id: String,
    pub username: String,
    configured: bool,
    connected: bool,
    host: String,
    port: String,
    subscriptions: Vec<(String, u8)>,
    /// A `LONG*` or `PUBRAW` waiting for its payload.
    pending: Option<Pending>,
    pub alpn: Vec<String>,
    pub sni: Option<String>,
    /// The broker's policy lacks `iot:Receive`: publishes are acknowledged, never delivered.
    pub deny_receive: bool,
    /// The MQTT password (`AT+MQTTUSERCFG` or `AT+MQTTLONGPASSWORD`).
    password: String,
    /// Keepalive from `AT+MQTTCONNCFG`.
    keepalive: u16,
    /// The session with a real broker, once `AT+MQTTCONN` brought it up.
    session: std::sync::Arc<std::sync::Mutex<Option<crate::net::Session>>>,
}

#[derive(Debug)]
enum Pending {
    ClientId,
    Username,
    Password,
    Publish { topic: String },
}

/// What the broker side needs from the rest of the module.
pub struct Context<'a> {
    pub flash: &'a Flash,
    pub wifi_up: bool,
    pub clock_synced: bool,
    pub resolves: bool,
    /// The broker's TLS side.
    pub broker: &'a crate::tls::BrokerTls,
    pub connect_time: Duration,
    pub loopback: Duration,
    pub syslog: bool,
    /// A real broker to connect to, instead of the emulated one.
    pub network: Option<crate::net::Broker>,
}

const OK: &[u8] = b"\r\nOK\r\n";

/// An MQTT error: the firmware prints `0x010A0000 | code` (reference §7).
fn error(syslog: bool, code: u32) -> Script {
    super::error_reply(syslog, 0x010a_0000 | code)
}

impl Mqtt {
    pub fn with_policy(deny_receive: bool) -> Mqtt {
        Mqtt {
            deny_receive,
            ..Mqtt::default()
        }
    }

    pub fn reboot(&mut self) {
        let deny_receive = self.deny_receive;
        if let Some(s) = self.session.lock().expect("session lock").take() {
            s.disconnect();
        }
        *self = Mqtt::default();
        self.deny_receive = deny_receive;
    }

    fn is_connected(&self) -> bool {
        self.connected || self.session.lock().expect("session lock").is_some()
    }

    /// What a real broker sent since the last poll, as URCs.
    pub fn poll(&mut self) -> Vec<u8> {
        let mut guard = self.session.lock().expect("session lock");
        let Some(session) = guard.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for event in session.events() {
            match event {
                crate::net::Event::Message { topic, payload } => {
                    for step in self.chunks(&topic, &payload) {
                        if let Step::Send(b) = step {
                            out.extend(b);
                        }
                    }
                }
                crate::net::Event::Closed(why) => {
                    tracing::info!("emulated ESP32 log: MQTT connection closed: {why}");
                    *guard = None;
                    out.extend_from_slice(b"+MQTTDISCONNECTED:0\r\n");
                    break;
                }
            }
        }
        out
    }

    /// Handles an `AT+MQTT...` line.
    pub fn command(&mut self, line: &str, cx: &Context<'_>) -> Script {
        let upper = line.to_ascii_uppercase();
        let name = upper.split(['=', '?']).next().unwrap_or("");
        let p = params(line);
        let err = |code| error(cx.syslog, code);
        match name {
            "AT+MQTTUSERCFG" if p.len() == 8 => {
                if self.connected {
                    return err(0x6004);
                }
                self.scheme = p[1].parse().unwrap_or(0);
                if !(1..=10).contains(&self.scheme) {
                    return err(0x6002);
                }
                self.client_id = unquote(p[2]);
                self.username = unquote(p[3]);
                self.password = unquote(p[4]);
                self.configured = true;
                self.alpn.clear();
                self.sni = None;
                vec![Step::Final(OK.to_vec())]
            }
            "AT+MQTTLONGCLIENTID" | "AT+MQTTLONGUSERNAME" | "AT+MQTTLONGPASSWORD"
                if p.len() == 2 =>
            {
                let Ok(len) = p[1].parse::<usize>() else {
                    return err(0x6001);
                };
                if !(1..=1024).contains(&len) {
                    return err(0x6001);
                }
                self.pending = Some(match name {
                    "AT+MQTTLONGCLIENTID" => Pending::ClientId,
                    "AT+MQTTLONGUSERNAME" => Pending::Username,
                    _ => Pending::Password,
                });
                super::ok_then_prompt(len)
            }
            "AT+MQTTCONNCFG" if p.len() == 7 => {
                self.keepalive = p[1].parse().unwrap_or(120);
                vec![Step::Final(OK.to_vec())]
            }
            "AT+MQTTALPN" if !p.is_empty() => {
                self.alpn = p.iter().skip(2).map(|s| unquote(s)).collect();
                vec![Step::Final(OK.to_vec())]
            }
            "AT+MQTTSNI" if p.len() == 2 => {
                self.sni = Some(unquote(p[1]));
                vec![Step::Final(OK.to_vec())]
            }
            "AT+MQTTCONN" if upper.ends_with('?') => {
                let state = match (self.connected, self.configured) {
                    (true, _) if !self.subscriptions.is_empty() => 6,
                    (true, _) => 4,
                    (false, true) => 1,
                    (false, false) => 0,
                };
                vec![
                    Step::Send(
                        format!(
                            "+MQTTCONN:0,{state},{},\"{}\",\"{}\",\"\",0\r\n",
                            self.scheme, self.host, self.port
                        )
                        .into_bytes(),
                    ),
                    Step::Final(OK.to_vec()),
                ]
            }
            "AT+MQTTCONN" if p.len() >= 4 => self.connect(&p, cx),
            "AT+MQTTSUB" if p.len() >= 3 => {
                if !self.is_connected() {
                    return err(0x6051);
                }
                let topic = unquote(p[1]);
                if topic.is_empty() || topic.len() > 128 {
                    return err(0x6043);
                }
                let qos = p[2].parse().unwrap_or(0);
                if !self.subscriptions.iter().any(|(t, _)| *t == topic) {
                    self.subscriptions.push((topic.clone(), qos));
                }
                if let Some(session) = self.session.lock().expect("session lock").as_ref() {
                    let acked = session.subscribe(&topic, qos);
                    let syslog = cx.syslog;
                    return awaiting(async move {
                        match acked.await {
                            Ok(Ok(())) => vec![Step::Final(OK.to_vec())],
                            _ => error(syslog, 0x600D),
                        }
                    });
                }
                vec![Step::Final(OK.to_vec())]
            }
            "AT+MQTTUNSUB" if p.len() >= 2 => {
                let topic = unquote(p[1]);
                self.subscriptions.retain(|(t, _)| *t != topic);
                vec![Step::Final(OK.to_vec())]
            }
            "AT+MQTTPUB" if p.len() >= 5 => {
                if !self.is_connected() {
                    return err(0x6051);
                }
                let topic = unquote(p[1]);
                let data = unquote(p[2]).into_bytes();
                let qos = p[3].parse().unwrap_or(0);
                if let Some(script) =
                    self.publish_to_broker(&topic, data.clone(), qos, OK, b"\r\nERROR\r\n")
                {
                    return script;
                }
                let mut script = vec![Step::Final(OK.to_vec())];
                script.extend(self.deliver(&topic, &data, cx.loopback));
                script
            }
            "AT+MQTTPUBRAW" if p.len() >= 5 => {
                if !self.is_connected() {
                    return err(0x6051);
                }
                let Ok(len) = p[2].parse::<usize>() else {
                    return err(0x604c);
                };
                self.pending = Some(Pending::Publish {
                    topic: unquote(p[1]),
                });
                super::ok_then_prompt(len)
            }
            "AT+MQTTCLEAN" if p.len() == 1 => {
                let was = self.is_connected();
                self.reboot();
                let mut v = Vec::new();
                if was {
                    v.push(Step::Send(b"+MQTTDISCONNECTED:0\r\n".to_vec()));
                }
                v.push(Step::Final(OK.to_vec()));
                v
            }
            _ => err(0x6001),
        }
    }

    /// The payload of a `LONG*` or `PUBRAW` command.
    pub fn payload(&mut self, data: Vec<u8>, cx: &Context<'_>) -> Option<Script> {
        let text = || String::from_utf8_lossy(&data).into_owned();
        Some(match self.pending.take()? {
            Pending::ClientId => {
                self.client_id = text();
                vec![Step::Final(OK.to_vec())]
            }
            Pending::Username => {
                self.username = text();
                vec![Step::Final(OK.to_vec())]
            }
            Pending::Password => {
                self.password = text();
                vec![Step::Final(OK.to_vec())]
            }
            Pending::Publish { topic } => {
                if let Some(script) = self.publish_to_broker(
                    &topic,
                    data.clone(),
                    1,
                    b"+MQTTPUB:OK\r\n",
                    b"+MQTTPUB:FAIL\r\n",
                ) {
                    return Some(script);
                }
                let mut script = vec![Step::Final(b"+MQTTPUB:OK\r\n".to_vec())];
                script.extend(self.deliver(&topic, &data, cx.loopback));
                script
            }
        })
    }

    /// Publishes through the real broker's session, if there is one: `ok` once sent (QoS 0)
    /// or acknowledged (QoS 1), `failed` otherwise.
    fn publish_to_broker(
        &self,
        topic: &str,
        data: Vec<u8>,
        qos: u8,
        ok: &'static [u8],
        failed: &'static [u8],
    ) -> Option<Script> {
        let guard = self.session.lock().expect("session lock");
        let session = guard.as_ref()?;
        let acked = session.publish(topic, data, qos);
        Some(awaiting(async move {
            match acked.await {
                Ok(Ok(())) => vec![Step::Final(ok.to_vec())],
                _ => vec![Step::Final(failed.to_vec())],
            }
        }))
    }

    fn connect(&mut self, p: &[&str], cx: &Context<'_>) -> Script {
        if !self.configured {
            return error(cx.syslog, 0x6001);
        }
        if self.is_connected() {
            return error(cx.syslog, 0x6004);
        }
        let host = unquote(p[1]);
        let port = p[2].to_string();
        let refused = |why: String| {
            tracing::info!("emulated ESP32 log: MQTT connect to {host}:{port} failed: {why}");
            vec![
                Step::Delay(cx.connect_time),
                Step::Send(b"+MQTTDISCONNECTED:0\r\n".to_vec()),
                Step::Final(b"\r\nERROR\r\n".to_vec()),
            ]
        };
        if host.len() > 128 {
            return error(cx.syslog, 0x603c);
        }
        if !cx.wifi_up {
            return refused("no network (Wi-Fi not connected)".into());
        }
        if !cx.resolves {
            return refused(format!("DNS lookup of {host} failed"));
        }
        let verify_server = matches!(self.scheme, 3 | 5 | 8 | 10);
        let client_cert = matches!(self.scheme, 4 | 5 | 9 | 10);
        let ca = cx.flash.mqtt_item("mqtt_ca");
        let cert = cx.flash.mqtt_item("mqtt_cert");
        let key = cx.flash.mqtt_item("mqtt_key");
        if verify_server && ca.is_none() {
            return error(cx.syslog, 0x6021);
        }
        if client_cert && cert.is_none() {
            return error(cx.syslog, 0x6023);
        }
        if client_cert && key.is_none() {
            return error(cx.syslog, 0x6025);
        }
        if verify_server && !cx.clock_synced {
            return refused(
                "mbedtls_ssl_handshake returned -0x2700 (certificate not yet valid: clock at 1970)"
                    .into(),
            );
        }
        let module = crate::tls::ModuleTls {
            ca: if verify_server { ca } else { None },
            cert: if client_cert { cert } else { None },
            key: if client_cert { key } else { None },
            verify_server,
            client_cert,
            server_name: self
                .sni
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| host.clone()),
            alpn: self.alpn.clone(),
            rsa_only: false,
        };
        if let Some(broker) = cx.network {
            let tls = matches!(self.scheme, 2..=5).then_some(module);
            let login = crate::net::Login {
                client_id: self.client_id.clone(),
                username: self.username.clone(),
                password: self.password.clone(),
                keepalive: if self.keepalive == 0 {
                    120
                } else {
                    self.keepalive
                },
            };
            let slot = self.session.clone();
            let connected = format!(
                "+MQTTCONNECTED:0,{},\"{host}\",\"{port}\",\"\",{}\r\n",
                self.scheme,
                p[3].trim()
            );
            self.host = host.clone();
            self.port = port.clone();
            return awaiting(async move {
                let up = async {
                    let t = crate::net::open(broker, tls.as_ref(), true).await?;
                    crate::net::connect(t, &login).await
                };
                match up.await {
                    Ok(session) => {
                        *slot.lock().expect("session lock") = Some(session);
                        vec![Step::Send(connected.into_bytes()), Step::Final(OK.to_vec())]
                    }
                    Err(why) => {
                        tracing::info!(
                            "emulated ESP32 log: MQTT connect to {host}:{port} failed: {why}"
                        );
                        vec![
                            Step::Send(b"+MQTTDISCONNECTED:0\r\n".to_vec()),
                            Step::Final(b"\r\nERROR\r\n".to_vec()),
                        ]
                    }
                }
            });
        }
        if matches!(self.scheme, 2..=5)
            && let Err(why) = crate::tls::handshake_in_memory(&module, cx.broker)
        {
            // mbedTLS on the module logs the alert; AT answers as for any refusal.
            return refused(format!("TLS handshake failed: {why}"));
        }
        self.connected = true;
        self.host = host.clone();
        self.port = port.clone();
        vec![
            Step::Delay(cx.connect_time),
            Step::Send(
                format!(
                    "+MQTTCONNECTED:0,{},\"{host}\",\"{port}\",\"\",{}\r\n",
                    self.scheme,
                    p[3].trim()
                )
                .into_bytes(),
            ),
            Step::Final(OK.to_vec()),
        ]
    }

    /// The broker loops a publish back to every matching subscription, in chunks as esp-mqtt
    /// delivers messages larger than its 1 KiB buffer.
    fn deliver(&self, topic: &str, data: &[u8], loopback: Duration) -> Script {
        if self.deny_receive
            || !self
                .subscriptions
                .iter()
                .any(|(f, _)| topic_matches(f, topic))
        {
            return Vec::new();
        }
        let mut script = vec![Step::Delay(loopback)];
        script.extend(self.chunks(topic, data));
        script
    }

    /// A message as `+MQTTSUBRECV` URCs, split as esp-mqtt's 1 KiB buffer splits it.
    fn chunks(&self, topic: &str, data: &[u8]) -> Script {
        let mut script = Vec::new();
        const BUFFER: usize = 1024;
        // PUBLISH header: fixed header, topic length and topic, packet id (QoS 1).
        let remaining = 2 + topic.len() + 2 + data.len();
        let fixed = if remaining < 128 {
            2
        } else if remaining < 16_384 {
            3
        } else {
            4
        };
        let first = BUFFER.saturating_sub(fixed + 2 + topic.len() + 2).max(1);
        let mut rest = data;
        let mut size = first;
        loop {
            let n = size.min(rest.len());
            let mut urc = format!("+MQTTSUBRECV:0,\"{topic}\",{n},").into_bytes();
            urc.extend_from_slice(&rest[..n]);
            urc.extend_from_slice(b"\r\n");
            script.push(Step::Send(urc));
            rest = &rest[n..];
            if rest.is_empty() {
                break;
            }
            size = BUFFER;
        }
        script
    }
}

/// MQTT topic filter matching with `+` and `#`.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert!(topic_matches("a/b", "a/b"));
        assert!(topic_matches("a/+/c", "a/x/c"));
        assert!(topic_matches("a/#", "a/x/c"));
        assert!(!topic_matches("a/b", "a/c"));
        assert!(!topic_matches("a/+", "a/b/c"));
    }
}
