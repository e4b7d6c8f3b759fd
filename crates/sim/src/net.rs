//! The real network under an emulated module (`atprov sim NAME --broker HOST:PORT`): a TCP
//! connection to a broker on this machine, a rustls client built from exactly what the module
//! stores and was configured with, and an MQTT 3.1.1 session whose packets are rumqttc's codec.
//! The broker (mosquitto in the tests) judges the credentials, the password and the policy; the
//! family models turn what happens here into their own URCs and error codes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, Publish, Subscribe};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::tls::ModuleTls;

/// Longest MQTT packet accepted.
const MAX_PACKET: usize = 256 * 1024;
/// Time for TCP, TLS and each acknowledgement.
const WAIT: Duration = Duration::from_secs(10);

/// Where the real broker is: loopback only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broker(pub SocketAddr);

impl Broker {
    /// Parses `HOST:PORT`, refusing anything but this machine.
    pub fn parse(s: &str) -> Result<Broker, String> {
        let addr: SocketAddr = s
            .parse()
            .map_err(|_| format!("`{s}`: give the broker as IP:PORT, e.g. 127.0.0.1:8883"))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "`{s}`: the emulated modules only reach brokers on this machine (loopback)"
            ));
        }
        Ok(Broker(addr))
    }
}

/// Why a connection did not come up, as the module would learn it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// TCP: refused, unreachable, or too slow.
    Tcp(String),
    /// The TLS handshake failed (either side refused; the text says which and why).
    Tls(String),
    /// The broker answered CONNECT with this return code (1 to 5).
    Refused(u8),
    /// The connection closed or broke.
    Closed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Tcp(e) => write!(f, "TCP: {e}"),
            Failure::Tls(e) => write!(f, "TLS: {e}"),
            Failure::Refused(rc) => write!(f, "CONNACK return code {rc}"),
            Failure::Closed(e) => write!(f, "connection closed: {e}"),
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// An open connection (TCP, with TLS when the module uses it), before MQTT.
pub struct Transport(Box<dyn Stream>);

/// Opens TCP and, when `tls` is given, runs the module's TLS client over it.
pub async fn open(
    broker: Broker,
    tls: Option<&ModuleTls>,
    server_identity_known: bool,
) -> Result<Transport, Failure> {
    let tcp = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(broker.0))
        .await
        .map_err(|_| Failure::Tcp("no answer".into()))?
        .map_err(|e| Failure::Tcp(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let Some(module) = tls else {
        return Ok(Transport(Box::new(tcp)));
    };
    let config = crate::tls::client_config(module, server_identity_known).map_err(Failure::Tls)?;
    let name = ServerName::try_from(module.server_name.clone())
        .map_err(|_| Failure::Tls(format!("`{}` is not a host name", module.server_name)))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let started = std::time::Instant::now();
    let stream = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .map_err(|_| Failure::Tls("the handshake did not finish".into()))?
        .map_err(|e| Failure::Tls(e.to_string()))?;
    let (_, session) = stream.get_ref();
    tracing::info!(
        "TLS with {} done in {:.1} ms ({:?}, {:?})",
        broker.0,
        started.elapsed().as_secs_f64() * 1000.0,
        session.protocol_version(),
        session.negotiated_cipher_suite().map(|c| c.suite()),
    );
    Ok(Transport(Box::new(stream)))
}

/// The CONNECT a module sends.
#[derive(Debug, Clone, Default)]
pub struct Login {
    /// The client id.
    pub client_id: String,
    /// User name (empty: none).
    pub username: String,
    /// Password (empty: none).
    pub password: String,
    /// Keepalive, seconds.
    pub keepalive: u16,
}

/// Something the broker sent after the connection came up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message on a subscribed topic.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// The connection ended.
    Closed(String),
}

#[derive(Debug)]
enum Request {
    Subscribe(String, QoS, oneshot::Sender<Result<(), Failure>>),
    Publish(String, Vec<u8>, QoS, oneshot::Sender<Result<(), Failure>>),
    Disconnect,
}

/// An MQTT session with the broker, driven by a task of its own.
#[derive(Debug)]
pub struct Session {
    requests: mpsc::UnboundedSender<Request>,
    events: mpsc::UnboundedReceiver<Event>,
}

/// Sends CONNECT over `transport` and waits for CONNACK.
pub async fn connect(mut transport: Transport, login: &Login) -> Result<Session, Failure> {
    let mut connect = rumqttc::mqttbytes::v4::Connect::new(login.client_id.clone());
    connect.keep_alive = login.keepalive;
    if !login.username.is_empty() || !login.password.is_empty() {
        connect.set_login(login.username.clone(), login.password.clone());
    }
    write(&mut transport, Packet::Connect(connect)).await?;
    let mut buf = BytesMut::new();
    let ack = tokio::time::timeout(WAIT, read(&mut transport, &mut buf))
        .await
        .map_err(|_| Failure::Closed("no CONNACK".into()))??;
    match ack {
        Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => {}
        Packet::ConnAck(a) => return Err(Failure::Refused(a.code as u8)),
        other => return Err(Failure::Closed(format!("{other:?} instead of CONNACK"))),
    }
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    tokio::spawn(drive(transport, buf, req_rx, ev_tx, login.keepalive));
    Ok(Session {
        requests: req_tx,
        events: ev_rx,
    })
}

impl Session {
    /// Subscribes; `Ok` once the broker's SUBACK came.
    pub fn subscribe(&self, topic: &str, qos: u8) -> oneshot::Receiver<Result<(), Failure>> {
        let (tx, rx) = oneshot::channel();
        let _ = self
            .requests
            .send(Request::Subscribe(topic.to_string(), qos_of(qos), tx));
        rx
    }

    /// Publishes; `Ok` once sent (QoS 0) or acknowledged (QoS 1).
    pub fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: u8,
    ) -> oneshot::Receiver<Result<(), Failure>> {
        let (tx, rx) = oneshot::channel();
        let _ = self.requests.send(Request::Publish(
            topic.to_string(),
            payload,
            qos_of(qos),
            tx,
        ));
        rx
    }

    /// Sends DISCONNECT and closes.
    pub fn disconnect(&self) {
        let _ = self.requests.send(Request::Disconnect);
    }

    /// Whatever the broker sent since the last call.
    pub fn events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }
}

fn qos_of(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}

async fn write(t: &mut Transport, p: Packet) -> Result<(), Failure> {
    let mut out = BytesMut::new();
    p.write(&mut out, MAX_PACKET)
        .map_err(|e| Failure::Closed(format!("cannot encode: {e:?}")))?;
    t.0.write_all(&out)
        .await
        .map_err(|e| Failure::Closed(e.to_string()))?;
    t.0.flush()
        .await
        .map_err(|e| Failure::Closed(e.to_string()))
}

async fn read(t: &mut Transport, buf: &mut BytesMut) -> Result<Packet, Failure> {
    loop {
        match Packet::read(buf, MAX_PACKET) {
            Ok(p) => return Ok(p),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(Failure::Closed(format!("bad packet: {e:?}"))),
        }
        let mut chunk = [0u8; 4096];
        let n = t.0.read(&mut chunk).await.map_err(|e| {
            // A TLS 1.3 server refuses a client certificate after the handshake: the alert
            // arrives on the first read.
            if e.kind() == std::io::ErrorKind::InvalidData {
                Failure::Tls(e.to_string())
            } else {
                Failure::Closed(e.to_string())
            }
        })?;
        if n == 0 {
            return Err(Failure::Closed("the broker closed the connection".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The session task: requests out, packets in, pings when idle.
async fn drive(
    mut t: Transport,
    mut buf: BytesMut,
    mut requests: mpsc::UnboundedReceiver<Request>,
    events: mpsc::UnboundedSender<Event>,
    keepalive: u16,
) {
    let mut next_id: u16 = 0;
    let mut pending: Vec<(u16, oneshot::Sender<Result<(), Failure>>)> = Vec::new();
    let ping_every = Duration::from_secs(u64::from(keepalive.max(1))) / 2;
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    let end = loop {
        tokio::select! {
            packet = read(&mut t, &mut buf) => match packet {
                Ok(Packet::Publish(p)) => {
                    if p.qos == QoS::AtLeastOnce {
                        let ack = rumqttc::mqttbytes::v4::PubAck::new(p.pkid);
                        if let Err(e) = write(&mut t, Packet::PubAck(ack)).await {
                            break e.to_string();
                        }
                    }
                    let _ = events.send(Event::Message {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                    });
                }
                Ok(Packet::SubAck(a)) => settle(&mut pending, a.pkid),
                Ok(Packet::PubAck(a)) => settle(&mut pending, a.pkid),
                Ok(_) => {}
                Err(e) => break e.to_string(),
            },
            request = requests.recv() => match request {
                None | Some(Request::Disconnect) => {
                    let _ = write(&mut t, Packet::Disconnect).await;
                    break "disconnected".to_string();
                }
                Some(Request::Subscribe(topic, qos, reply)) => {
                    next_id = next_id.wrapping_add(1).max(1);
                    let mut s = Subscribe::new(topic, qos);
                    s.pkid = next_id;
                    match write(&mut t, Packet::Subscribe(s)).await {
                        Ok(()) => pending.push((next_id, reply)),
                        Err(e) => {
                            let _ = reply.send(Err(e.clone()));
                            break e.to_string();
                        }
                    }
                }
                Some(Request::Publish(topic, payload, qos, reply)) => {
                    let mut p = Publish::new(topic, qos, payload);
                    if qos != QoS::AtMostOnce {
                        next_id = next_id.wrapping_add(1).max(1);
                        p.pkid = next_id;
                    }
                    match write(&mut t, Packet::Publish(p)).await {
                        Ok(()) if qos == QoS::AtMostOnce => {
                            let _ = reply.send(Ok(()));
                        }
                        Ok(()) => pending.push((next_id, reply)),
                        Err(e) => {
                            let _ = reply.send(Err(e.clone()));
                            break e.to_string();
                        }
                    }
                }
            },
            _ = ping.tick() => {
                if let Err(e) = write(&mut t, Packet::PingReq).await {
                    break e.to_string();
                }
            }
        }
    };
    for (_, reply) in pending {
        let _ = reply.send(Err(Failure::Closed(end.clone())));
    }
    let _ = events.send(Event::Closed(end));
}

fn settle(pending: &mut Vec<(u16, oneshot::Sender<Result<(), Failure>>)>, id: u16) {
    if let Some(i) = pending.iter().position(|(p, _)| *p == id) {
        let (_, reply) = pending.swap_remove(i);
        let _ = reply.send(Ok(()));
    }
}
