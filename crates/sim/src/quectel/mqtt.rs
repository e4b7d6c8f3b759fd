//! The emulated Quectel's SSL contexts (`AT+QSSLCFG`) and MQTT client (`AT+QMT*`), with a
//! broker behind it: `AT+QMTOPEN` does DNS, TCP and the TLS handshake (checking the uploaded
//! CA, certificate and key when `seclevel` is 2), `AT+QMTCONN` checks Aliyun sign-in when the
//! emulator knows a device triple, and a publish comes back as `+QMTRECV` (length form) to a
//! matching subscription. Results are URCs after `OK`, which reach the host only when the URC
//! port is `uart1`.

use std::collections::BTreeMap;

use super::QuectelConfig;
use crate::cellular::{self, OK};
use crate::runner::{Script, Step, awaiting};
use crate::unquote;

/// What MQTT sees of the rest of the module.
pub struct Context<'a> {
    pub files: &'a BTreeMap<String, Vec<u8>>,
    pub pdp_active: bool,
    pub clock_synced: bool,
    pub config: &'a QuectelConfig,
    pub urcport: &'a str,
}

impl Context<'_> {
    fn urc(&self, line: &str) -> Vec<u8> {
        if self.urcport == "uart1" {
            format!("\r\n{line}\r\n").into_bytes()
        } else {
            tracing::info!(
                "emulated Quectel: URC `{line}` went to the {} port",
                self.urcport
            );
            Vec::new()
        }
    }
}

#[derive(Debug, Default)]
pub struct Mqtt {
    /// SSL context settings: (ctx, key) → value.
    ssl: BTreeMap<(u8, String), String>,
    /// MQTT settings of client 0: key → raw parameters.
    cfg: BTreeMap<String, Vec<String>>,
    open: bool,
    connected: bool,
    subscriptions: Vec<String>,
    /// A publish waiting for its payload: (msgid, topic).
    publishing: Option<(String, String)>,
    /// A device registered over MQTT in this session: (product key, name, issued secret).
    registered: Option<(String, String, String)>,
    /// With a real broker: the open connection (after `AT+QMTOPEN`), then the session.
    transport: std::sync::Arc<std::sync::Mutex<Option<crate::net::Transport>>>,
    session: std::sync::Arc<std::sync::Mutex<Option<crate::net::Session>>>,
}

impl std::fmt::Debug for crate::net::Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

fn err() -> Script {
    cellular::error()
}

/// A URC as a step, when URCs reach this port.
fn urc_step(uart1: bool, line: &str) -> Script {
    if uart1 {
        vec![Step::Send(format!("\r\n{line}\r\n").into_bytes())]
    } else {
        Vec::new()
    }
}

fn ok_then(cx: &Context, delay: std::time::Duration, urc: &str) -> Script {
    cellular::ok_then(delay, cx.urc(urc))
}

impl Mqtt {
    pub fn command(&mut self, name: &str, p: &[&str], cx: &Context) -> Script {
        match name {
            "AT+QSSLCFG" if p.len() >= 2 => {
                let key = unquote(p[0]).to_ascii_lowercase();
                let Ok(ctx) = p[1].trim().parse::<u8>() else {
                    return err();
                };
                if p.len() == 2 {
                    let v = self
                        .ssl
                        .get(&(ctx, key.clone()))
                        .cloned()
                        .unwrap_or_default();
                    return vec![
                        Step::Send(format!("\r\n+QSSLCFG: \"{key}\",{ctx},{v}\r\n").into_bytes()),
                        Step::Final(OK.to_vec()),
                    ];
                }
                if key == "alpn" {
                    // This EC200U build has no ALPN.
                    return err();
                }
                self.ssl.insert((ctx, key), p[2..].join(","));
                vec![Step::Final(OK.to_vec())]
            }
            "AT+QMTCFG" if p.len() == 1 && p[0].trim() == "?" => vec![
                Step::Send(b"\r\n+QMTCFG: \"version\",(0-5),(3,4)\r\n".to_vec()),
                Step::Final(OK.to_vec()),
            ],
            "AT+QMTCFG" if p.len() >= 2 => {
                let key = unquote(p[0]).to_ascii_lowercase();
                self.cfg
                    .insert(key, p[2..].iter().map(|s| unquote(s)).collect());
                vec![Step::Final(OK.to_vec())]
            }
            "AT+QMTOPEN" if p.len() >= 3 => {
                if self.open {
                    return ok_then(cx, cx.config.open_time, "+QMTOPEN: 0,2");
                }
                let host = unquote(p[1]);
                if let (Some(broker), None) = (cx.config.network, cx.config.open_result) {
                    if !cx.pdp_active {
                        return ok_then(cx, cx.config.open_time, "+QMTOPEN: 0,3");
                    }
                    let tls = match self.module_tls(cx, &host) {
                        Ok(t) => t,
                        Err(why) => {
                            tracing::info!("emulated Quectel: TLS to {host} cannot start: {why}");
                            return ok_then(cx, cx.config.open_time, "+QMTOPEN: 0,5");
                        }
                    };
                    let slot = self.transport.clone();
                    let uart1 = cx.urcport == "uart1";
                    let mut script = vec![Step::Final(OK.to_vec())];
                    script.extend(awaiting(async move {
                        let result = match crate::net::open(broker, tls.as_ref(), true).await {
                            Ok(t) => {
                                *slot.lock().expect("transport lock") = Some(t);
                                0
                            }
                            Err(why) => {
                                tracing::info!("emulated Quectel: open {host}: {why}");
                                match why {
                                    crate::net::Failure::Tcp(_) => -1,
                                    _ => 5,
                                }
                            }
                        };
                        urc_step(uart1, &format!("+QMTOPEN: 0,{result}"))
                    }));
                    self.open = true;
                    return script;
                }
                let result = match cx.config.open_result {
                    Some(r) => r,
                    None if !cx.pdp_active => 3,
                    None if host.ends_with(".invalid") => 4,
                    None => match self.handshake(cx, &host) {
                        Ok(()) => 0,
                        Err(why) => {
                            tracing::info!("emulated Quectel: TLS to {host} failed: {why}");
                            5
                        }
                    },
                };
                self.open = result == 0;
                ok_then(cx, cx.config.open_time, &format!("+QMTOPEN: 0,{result}"))
            }
            "AT+QMTCONN" if p.len() >= 2 => {
                if !self.open {
                    return ok_then(cx, std::time::Duration::from_millis(1), "+QMTCONN: 0,2");
                }
                let client = unquote(p[1]);
                let user = p.get(2).map(|s| unquote(s)).unwrap_or_default();
                let pass = p.get(3).map(|s| unquote(s)).unwrap_or_default();
                let (_, block) = crate::aliyun::client_id_block(&client);
                if let Some(transport) = self.transport.lock().expect("transport lock").take() {
                    let login = crate::net::Login {
                        client_id: client,
                        username: user,
                        password: pass,
                        keepalive: self
                            .cfg
                            .get("keepalive")
                            .and_then(|v| v.first())
                            .and_then(|k| k.parse().ok())
                            .unwrap_or(120),
                    };
                    let slot = self.session.clone();
                    let uart1 = cx.urcport == "uart1";
                    self.connected = true;
                    let mut script = vec![Step::Final(OK.to_vec())];
                    script.extend(awaiting(async move {
                        let line = match crate::net::connect(transport, &login).await {
                            Ok(session) => {
                                *slot.lock().expect("session lock") = Some(session);
                                "+QMTCONN: 0,0,0".to_string()
                            }
                            Err(crate::net::Failure::Refused(rc)) => format!("+QMTCONN: 0,0,{rc}"),
                            Err(why) => {
                                tracing::info!("emulated Quectel: CONNECT failed: {why}");
                                "+QMTCONN: 0,2".to_string()
                            }
                        };
                        urc_step(uart1, &line)
                    }));
                    return script;
                }
                if block.contains(&("authType", "register")) {
                    return self.register(cx, &client, &user, &pass);
                }
                let triple = self.registered.as_ref().or(cx.config.aliyun.as_ref());
                let ret = match triple {
                    Some(triple) if !crate::aliyun::login_ok(triple, &client, &user, &pass) => 4,
                    _ => 0,
                };
                self.connected = ret == 0;
                ok_then(
                    cx,
                    std::time::Duration::from_millis(5),
                    &format!("+QMTCONN: 0,0,{ret}"),
                )
            }
            "AT+QMTSUB" if p.len() >= 4 => {
                if !self.connected {
                    return err();
                }
                let msgid = p[1].trim().to_string();
                self.subscriptions.push(unquote(p[2]));
                if let Some(session) = self.session.lock().expect("session lock").as_ref() {
                    let qos = p[3].trim().parse().unwrap_or(1);
                    let acked = session.subscribe(&unquote(p[2]), qos);
                    let uart1 = cx.urcport == "uart1";
                    let mut script = vec![Step::Final(OK.to_vec())];
                    script.extend(awaiting(async move {
                        let line = match acked.await {
                            Ok(Ok(())) => format!("+QMTSUB: 0,{msgid},0,{qos}"),
                            _ => format!("+QMTSUB: 0,{msgid},2"),
                        };
                        urc_step(uart1, &line)
                    }));
                    return script;
                }
                ok_then(
                    cx,
                    std::time::Duration::from_millis(2),
                    &format!("+QMTSUB: 0,{msgid},0,1"),
                )
            }
            "AT+QMTPUBEX" if p.len() >= 6 => {
                if !self.connected {
                    return err();
                }
                let Ok(len) = p[5].trim().parse::<usize>() else {
                    return err();
                };
                self.publishing = Some((p[1].trim().to_string(), unquote(p[4])));
                vec![Step::Prompt {
                    bytes: b"> ".to_vec(),
                    len,
                }]
            }
            "AT+QMTDISC" => {
                if let Some(s) = self.session.lock().expect("session lock").take() {
                    s.disconnect();
                }
                let was = self.connected;
                self.connected = false;
                self.open = false;
                self.subscriptions.clear();
                ok_then(
                    cx,
                    std::time::Duration::from_millis(1),
                    if was {
                        "+QMTDISC: 0,0"
                    } else {
                        "+QMTDISC: 0,-1"
                    },
                )
            }
            "AT+QMTCLOSE" => {
                if let Some(s) = self.session.lock().expect("session lock").take() {
                    s.disconnect();
                }
                self.transport.lock().expect("transport lock").take();
                self.open = false;
                self.connected = false;
                ok_then(cx, std::time::Duration::from_millis(1), "+QMTCLOSE: 0,0")
            }
            _ => err(),
        }
    }

    pub fn payload(&mut self, data: Vec<u8>, cx: &Context) -> Script {
        let Some((msgid, topic)) = self.publishing.take() else {
            return err();
        };
        if let Some(session) = self.session.lock().expect("session lock").as_ref() {
            let acked = session.publish(&topic, data, 1);
            let uart1 = cx.urcport == "uart1";
            let mut script = vec![Step::Final(OK.to_vec())];
            script.extend(awaiting(async move {
                let line = match acked.await {
                    Ok(Ok(())) => format!("+QMTPUBEX: 0,{msgid},0"),
                    _ => format!("+QMTPUBEX: 0,{msgid},2"),
                };
                urc_step(uart1, &line)
            }));
            return script;
        }
        let mut script = ok_then(
            cx,
            std::time::Duration::from_millis(2),
            &format!("+QMTPUBEX: 0,{msgid},0"),
        );
        if self.subscriptions.contains(&topic) && !cx.config.deny_receive {
            // recv/mode 0,1: the length before the quoted payload.
            let mut urc = format!("+QMTRECV: 0,0,\"{topic}\",{},\"", data.len()).into_bytes();
            urc.extend_from_slice(&data);
            urc.push(b'"');
            let mut line = b"\r\n".to_vec();
            line.extend(urc);
            line.extend_from_slice(b"\r\n");
            if cx.urcport == "uart1" {
                script.push(Step::Delay(std::time::Duration::from_millis(3)));
                script.push(Step::Send(line));
            }
        }
        script
    }

    /// MQTT dynamic registration (reference §4.5): the platform checks the signature made with
    /// the product secret, accepts, and publishes the device secret on `/ext/register`.
    fn register(&mut self, cx: &Context, client: &str, user: &str, pass: &str) -> Script {
        let fast = std::time::Duration::from_millis(5);
        let accepted =
            cx.config.product.as_ref().and_then(|product| {
                crate::aliyun::mqtt_registration_ok(product, client, user, pass)
            });
        let ok = accepted.is_some();
        let (pk, dn) = accepted.unwrap_or_default();
        if !ok {
            return ok_then(cx, fast, "+QMTCONN: 0,0,4");
        }
        self.connected = true;
        let mut script = ok_then(cx, fast, "+QMTCONN: 0,0,0");
        if cx.config.register_silent {
            return script;
        }
        let product_secret = &cx.config.product.as_ref().expect("checked").1;
        let secret = crate::aliyun::issued_secret(product_secret, &dn);
        let body = serde_json::json!({"productKey": pk, "deviceName": dn, "deviceSecret": secret})
            .to_string();
        self.registered = Some((pk, dn, secret));
        let line = format!("+QMTRECV: 0,0,\"/ext/register\",{},\"{body}\"", body.len());
        script.push(Step::Delay(fast));
        script.push(Step::Send(cx.urc(&line)));
        script
    }

    /// What a real broker sent since the last poll, as URCs (`+QMTRECV`, `+QMTSTAT`).
    pub fn poll(&mut self, uart1: bool) -> Vec<u8> {
        let mut guard = self.session.lock().expect("session lock");
        let Some(session) = guard.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for event in session.events() {
            match event {
                crate::net::Event::Message { topic, payload } => {
                    let mut line =
                        format!("\r\n+QMTRECV: 0,0,\"{topic}\",{},\"", payload.len()).into_bytes();
                    line.extend_from_slice(&payload);
                    line.extend_from_slice(b"\"\r\n");
                    if uart1 {
                        out.extend(line);
                    }
                }
                crate::net::Event::Closed(why) => {
                    tracing::info!("emulated Quectel: MQTT connection closed: {why}");
                    *guard = None;
                    self.connected = false;
                    self.open = false;
                    if uart1 {
                        out.extend_from_slice(b"\r\n+QMTSTAT: 0,1\r\n");
                    }
                    break;
                }
            }
        }
        out
    }

    /// The SSL context client 0 uses, as the module's TLS stack reads it for a connection to
    /// `host`; `None` when SSL is off for client 0.
    fn tls_settings<'a>(&self, cx: &'a Context, host: &str) -> Option<cellular::Tls<'a>> {
        let enabled = self.cfg.get("ssl")?;
        if enabled.first().map(String::as_str) != Some("1") {
            return None;
        }
        let ctx: u8 = enabled.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let get = |k: &str| self.ssl.get(&(ctx, k.to_string())).map(|v| unquote(v));
        let file = |k: &str| -> Result<Vec<u8>, String> {
            let name = get(k).ok_or(format!("SSL context {ctx} has no {k}"))?;
            cx.files
                .get(&name)
                .cloned()
                .ok_or(format!("{k} file {name} does not exist"))
        };
        Some(cellular::Tls {
            seclevel: get("seclevel").and_then(|s| s.parse().ok()).unwrap_or(0),
            // Quectel's default is 1: dates ignored (§3.5).
            ignore_local_time: get("ignorelocaltime").is_none_or(|v| v == "1"),
            clock_synced: cx.clock_synced,
            ca: file("cacert"),
            cert: file("clientcert"),
            key: file("clientkey"),
            server_name: get("sni")
                .filter(|s| s != "0" && s != "1")
                .unwrap_or_else(|| host.to_string()),
            alpn: get("alpn").map(|a| vec![a]).unwrap_or_default(),
            rsa_only: false,
            broker: &cx.config.broker,
        })
    }

    /// The module's TLS for a connection to a real broker, `None` when SSL is off.
    fn module_tls(
        &self,
        cx: &Context,
        host: &str,
    ) -> Result<Option<crate::tls::ModuleTls>, String> {
        self.tls_settings(cx, host)
            .map(cellular::module_tls)
            .transpose()
    }

    /// The TLS handshake as the offline broker sees it (none when SSL is off).
    fn handshake(&self, cx: &Context, host: &str) -> Result<(), String> {
        self.tls_settings(cx, host)
            .map_or(Ok(()), cellular::handshake)
    }
}
