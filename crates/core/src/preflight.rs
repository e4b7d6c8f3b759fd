//! `atprov preflight`: the module's connection, run from this PC with the same credentials and
//! settings, step by step (DNS, TCP, TLS, MQTT CONNECT, SUBSCRIBE, PUBLISH, the echo), each
//! timed, and a failure explained in one line with its cause: a server the CA does not verify,
//! a device certificate the broker refuses, a login refused, a policy that drops messages. The
//! same probe explains a module's connect failure after the fact, when this PC reaches the
//! broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Publish, Subscribe};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Code, Failure};

/// What to connect to and with what: the values a job gives the module.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// Broker host name.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Use TLS.
    pub tls: bool,
    /// The CA file the module will store (PEM): the only root the server is verified with.
    pub ca: Option<Vec<u8>>,
    /// The device certificate and key (PEM), when the module presents one.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
    /// TLS server name, when not the host.
    pub sni: Option<String>,
    /// ALPN protocols.
    pub alpn: Vec<String>,
    /// MQTT client id.
    pub client_id: String,
    /// MQTT user name (empty: none).
    pub username: String,
    /// MQTT password (empty: none).
    pub password: String,
    /// Keepalive, seconds.
    pub keepalive: u16,
    /// Topic for the echo (subscribe, publish, receive); `None`: stop after CONNECT.
    pub topic: Option<String>,
    /// Time for each step.
    pub timeout: Duration,
}

/// One step and how long it took.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepTime {
    /// `dns`, `tcp`, `tls`, `connect`, `subscribe`, `publish` or `echo`.
    pub step: &'static str,
    /// Milliseconds.
    pub ms: u64,
}

/// What the probe did; `failure` says why it stopped, when it did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Probe {
    /// The steps that completed, timed.
    pub steps: Vec<StepTime>,
    /// The TLS version and ALPN the server chose.
    pub negotiated: Option<String>,
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

const MAX_PACKET: usize = 256 * 1024;

/// Runs the probe. `Err` carries the exit code (12 network, 13 TLS or MQTT refused, 14 no echo)
/// and one line naming the cause.
pub async fn run(t: &Target) -> Result<Probe, (Probe, Failure)> {
    let mut probe = Probe::default();
    let mut at = Instant::now();
    let step = |probe: &mut Probe, name: &'static str, at: &mut Instant| {
        probe.steps.push(StepTime {
            step: name,
            ms: at.elapsed().as_millis() as u64,
        });
        *at = Instant::now();
    };
    let fail = |probe: &Probe, code: Code, message: String| {
        Err((probe.clone(), Failure::new(code, message)))
    };
    let wait = t.timeout;
    let addrs = match tokio::time::timeout(wait, tokio::net::lookup_host((t.host.as_str(), t.port)))
        .await
    {
        Ok(Ok(a)) => a.collect::<Vec<_>>(),
        Ok(Err(e)) => {
            return fail(
                &probe,
                Code::Network,
                format!("DNS: cannot resolve {}: {e}", t.host),
            );
        }
        Err(_) => {
            return fail(
                &probe,
                Code::Network,
                format!("DNS: no answer for {} within {wait:?}", t.host),
            );
        }
    };
    step(&mut probe, "dns", &mut at);
    let Some(addr) = addrs.first() else {
        return fail(
            &probe,
            Code::Network,
            format!("DNS: {} has no address", t.host),
        );
    };
    let tcp = match tokio::time::timeout(wait, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return fail(
                &probe,
                Code::Network,
                format!("TCP to {}:{} ({addr}): {e}", t.host, t.port),
            );
        }
        Err(_) => {
            return fail(
                &probe,
                Code::Network,
                format!("TCP to {}:{}: no answer within {wait:?}", t.host, t.port),
            );
        }
    };
    step(&mut probe, "tcp", &mut at);
    let mut stream: Box<dyn Stream> = if t.tls {
        let config =
            client_config(t).map_err(|m| (probe.clone(), Failure::new(Code::Credentials, m)))?;
        let name = t.sni.clone().unwrap_or_else(|| t.host.clone());
        let server = ServerName::try_from(name.clone()).map_err(|_| {
            (
                probe.clone(),
                Failure::usage(format!("`{name}` is not a host name")),
            )
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        match tokio::time::timeout(wait, connector.connect(server, tcp)).await {
            Ok(Ok(s)) => {
                let (_, conn) = s.get_ref();
                probe.negotiated = Some(format!(
                    "{:?}{}",
                    conn.protocol_version()
                        .unwrap_or(rustls::ProtocolVersion::Unknown(0)),
                    conn.alpn_protocol()
                        .map(|a| format!(", ALPN {}", String::from_utf8_lossy(a)))
                        .unwrap_or_default()
                ));
                Box::new(s)
            }
            Ok(Err(e)) => return fail(&probe, Code::Connect, tls_cause(&e.to_string())),
            Err(_) => {
                return fail(
                    &probe,
                    Code::Connect,
                    "TLS: the handshake did not finish".into(),
                );
            }
        }
    } else {
        Box::new(tcp)
    };
    step(&mut probe, "tls", &mut at);
    let mut connect = Connect::new(t.client_id.clone());
    connect.keep_alive = t.keepalive.max(30);
    if !t.username.is_empty() || !t.password.is_empty() {
        connect.set_login(t.username.clone(), t.password.clone());
    }
    let mut buf = BytesMut::new();
    let exchange = async {
        write(&mut stream, Packet::Connect(connect)).await?;
        read(&mut stream, &mut buf).await
    };
    match tokio::time::timeout(wait, exchange).await {
        Ok(Ok(Packet::ConnAck(a))) if a.code == ConnectReturnCode::Success => {}
        Ok(Ok(Packet::ConnAck(a))) => {
            let why = match a.code {
                ConnectReturnCode::BadUserNamePassword => "bad user name or password",
                ConnectReturnCode::NotAuthorized => "not authorised",
                ConnectReturnCode::BadClientId => "client id rejected",
                _ => "refused",
            };
            return fail(
                &probe,
                Code::Connect,
                format!(
                    "MQTT CONNECT as {}: the broker answered {why} (CONNACK {})",
                    t.client_id, a.code as u8
                ),
            );
        }
        Ok(Ok(other)) => {
            return fail(
                &probe,
                Code::Connect,
                format!("MQTT: {other:?} instead of CONNACK"),
            );
        }
        Ok(Err(e)) => return fail(&probe, Code::Connect, closed_cause(&e)),
        Err(_) => return fail(&probe, Code::Connect, "MQTT: no CONNACK".into()),
    }
    step(&mut probe, "connect", &mut at);
    let Some(topic) = &t.topic else {
        let _ = write(&mut stream, Packet::Disconnect).await;
        return Ok(probe);
    };
    let mut sub = Subscribe::new(topic.clone(), QoS::AtLeastOnce);
    sub.pkid = 1;
    let subscribed = async {
        write(&mut stream, Packet::Subscribe(sub)).await?;
        loop {
            if let Packet::SubAck(_) = read(&mut stream, &mut buf).await? {
                return Ok::<_, String>(());
            }
        }
    };
    match tokio::time::timeout(wait, subscribed).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return fail(
                &probe,
                Code::Smoke,
                format!("SUBSCRIBE {topic}: {}", closed_cause(&e)),
            );
        }
        Err(_) => {
            return fail(
                &probe,
                Code::Smoke,
                format!("SUBSCRIBE {topic}: no SUBACK (does the policy allow subscribing?)"),
            );
        }
    }
    step(&mut probe, "subscribe", &mut at);
    let payload = format!("atprov preflight {:?}", std::time::SystemTime::now());
    let mut publish = Publish::new(
        topic.clone(),
        QoS::AtLeastOnce,
        payload.clone().into_bytes(),
    );
    publish.pkid = 2;
    if let Err(e) = write(&mut stream, Packet::Publish(publish)).await {
        return fail(&probe, Code::Smoke, format!("PUBLISH {topic}: {e}"));
    }
    let echo = async {
        let mut acked = false;
        loop {
            match read(&mut stream, &mut buf).await? {
                Packet::PubAck(_) => acked = true,
                Packet::Publish(p) if p.payload.as_ref() == payload.as_bytes() => {
                    return Ok::<_, String>(acked);
                }
                _ => {}
            }
        }
    };
    match tokio::time::timeout(wait, echo).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return fail(
                &probe,
                Code::Smoke,
                format!("PUBLISH {topic}: {}", closed_cause(&e)),
            );
        }
        Err(_) => {
            return fail(
                &probe,
                Code::Smoke,
                format!(
                    "the message published to {topic} did not come back within {wait:?}: does the policy allow publishing and receiving on it?"
                ),
            );
        }
    }
    step(&mut probe, "echo", &mut at);
    let _ = write(&mut stream, Packet::Disconnect).await;
    Ok(probe)
}

fn client_config(t: &Target) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(t.ca.as_deref().unwrap_or_default())
            .filter_map(Result::ok)
            .collect();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("the CA file holds no usable certificate".into());
    }
    let builder = builder.with_root_certificates(roots);
    let mut config = match &t.client {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                .filter_map(Result::ok)
                .collect();
            let key =
                PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("the private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the certificate and key: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = t.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(config)
}

/// One line for a TLS failure, naming which side refused.
fn tls_cause(e: &str) -> String {
    if e.contains("invalid peer certificate") {
        format!("TLS: the server's certificate was not trusted by the CA the module stores ({e})")
    } else if e.contains("received fatal alert") {
        format!(
            "TLS: the broker refused the device certificate ({e}): is it registered and active, issued by a CA the broker trusts?"
        )
    } else {
        format!("TLS: {e}")
    }
}

/// A TLS 1.3 server refuses a client certificate after the handshake: the alert comes on the
/// first read.
fn closed_cause(e: &str) -> String {
    if e.contains("alert") || e.contains("Alert") {
        tls_cause(&format!("received fatal alert: {e}"))
    } else {
        format!("the broker closed the connection ({e})")
    }
}

async fn write(s: &mut Box<dyn Stream>, p: Packet) -> Result<(), String> {
    let mut out = BytesMut::new();
    p.write(&mut out, MAX_PACKET)
        .map_err(|e| format!("{e:?}"))?;
    s.write_all(&out).await.map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())
}

async fn read(s: &mut Box<dyn Stream>, buf: &mut BytesMut) -> Result<Packet, String> {
    loop {
        match Packet::read(buf, MAX_PACKET) {
            Ok(p) => return Ok(p),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(format!("bad packet: {e:?}")),
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("end of stream".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
