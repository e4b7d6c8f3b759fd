//! TLS as an emulated module does it, judged by rustls, not by the host's code.
//!
//! A module's TLS client is built from exactly what the module stores and was configured with:
//! the stored CA as its only trust root (when it verifies the server), the stored certificate
//! and key (when it presents one), the host name it was given as SNI and for verification, and
//! its ALPN list. The broker side is a rustls server with its own certificate chain and its own
//! trusted issuing CA for client certificates (`--trust`), never what the module stores.
//!
//! Offline (no real broker), the handshake runs in memory between the two. The broker's
//! certificate is the one given (`--server-cert`/`--server-key`); without one the broker makes
//! a throw-away certificate and the module cannot verify it, so only then the server side is
//! judged by whether the stored CA is a usable CA certificate at all. Without `--trust` the
//! broker still asks for a client certificate and checks that the module holds its key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName, RootCertStore,
};
use rustls::{ServerConfig, ServerConnection, SignatureScheme};

/// What the module stores and was configured with, for one connection.
#[derive(Debug, Clone, Default)]
pub struct ModuleTls {
    /// The stored CA file (PEM), if any.
    pub ca: Option<Vec<u8>>,
    /// The stored client certificate (PEM), if any.
    pub cert: Option<Vec<u8>>,
    /// The stored private key (PEM), if any.
    pub key: Option<Vec<u8>>,
    /// The module checks the server's certificate against `ca`.
    pub verify_server: bool,
    /// The module presents `cert` when the server asks for one.
    pub client_cert: bool,
    /// The name sent as SNI and verified against the server's certificate.
    pub server_name: String,
    /// Protocols offered with ALPN.
    pub alpn: Vec<String>,
    /// The module's TLS stack takes RSA client keys only (Luat).
    pub rsa_only: bool,
}

/// The broker's side of TLS.
#[derive(Clone, Default)]
pub struct BrokerTls {
    /// Its certificate chain (leaf first) and key, PEM; `None`: a throw-away one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The CA it trusts for client certificates (PEM); `None`: any certificate whose key the
    /// client proves to hold.
    pub trust: Option<Vec<u8>>,
}

impl std::fmt::Debug for BrokerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerTls")
            .field(
                "identity",
                &self.identity.as_ref().map(|_| "given (key not shown)"),
            )
            .field(
                "trust",
                &self.trust.as_ref().map(|t| format!("{} bytes", t.len())),
            )
            .finish()
    }
}

/// What went wrong, as the module's log would say it.
pub type Refusal = String;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

fn key(pem: &[u8]) -> Option<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).ok()
}

/// The module's TLS client configuration, or why the module cannot even start a handshake
/// (an unusable stored file: the module's TLS stack fails to parse it).
pub fn client_config(m: &ModuleTls, server_identity_known: bool) -> Result<ClientConfig, Refusal> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let builder = if m.verify_server {
        let ca = m.ca.as_deref().unwrap_or_default();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(certs(ca));
        if added == 0 {
            return Err(
                "the stored CA file holds no usable certificate (x509 parse failed)".into(),
            );
        }
        if server_identity_known {
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient(provider())))
        }
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Lenient(provider())))
    };
    let mut config = if m.client_cert {
        let chain = certs(m.cert.as_deref().unwrap_or_default());
        if chain.is_empty() {
            return Err("the stored client certificate does not parse".into());
        }
        let k = key(m.key.as_deref().unwrap_or_default())
            .ok_or("the stored private key does not parse")?;
        if m.rsa_only && !matches!(k, PrivateKeyDer::Pkcs1(_)) && !is_rsa_pkcs8(&k) {
            return Err("the TLS stack takes RSA client keys only".into());
        }
        builder
            .with_client_auth_cert(chain, k)
            .map_err(|e| format!("the stored certificate and key do not go together: {e}"))?
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = m.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(config)
}

/// rsaEncryption's OID inside a PKCS#8 key.
fn is_rsa_pkcs8(k: &PrivateKeyDer) -> bool {
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    matches!(k, PrivateKeyDer::Pkcs8(p) if p.secret_pkcs8_der().windows(RSA.len()).any(|w| w == RSA))
}

/// The broker's TLS server configuration.
fn server_config(b: &BrokerTls, name: &str) -> Result<ServerConfig, Refusal> {
    let (chain, key) = match &b.identity {
        Some((chain, key)) => (
            certs(chain),
            self::key(key).ok_or("the broker's key does not parse")?,
        ),
        None => {
            let made = rcgen::generate_simple_self_signed(vec![name.to_string()])
                .map_err(|e| e.to_string())?;
            (
                vec![made.cert.der().clone()],
                PrivateKeyDer::try_from(made.signing_key.serialize_der())
                    .map_err(|e| e.to_string())?,
            )
        }
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ClientCertVerifier> = match &b.trust {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(certs(pem));
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("the broker's trusted CA: {e}"))?
        }
        None => Arc::new(Lenient(provider())),
    };
    builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("the broker's certificate: {e}"))
}

/// Runs a whole handshake in memory between the module and the broker. `Ok` when both sides
/// completed it; otherwise which side refused and why.
pub fn handshake_in_memory(m: &ModuleTls, b: &BrokerTls) -> Result<(), Refusal> {
    let client_config = client_config(m, b.identity.is_some())?;
    let server_config = server_config(b, &m.server_name)?;
    let name = match ServerName::try_from(m.server_name.clone()) {
        Ok(n) => n,
        // A verifying module matches the name against the certificate and fails; one that
        // does not verify sends the bytes anyway, and this broker does not look at them.
        Err(_) if m.verify_server && b.identity.is_some() => {
            return Err(format!(
                "the server's certificate cannot match `{}`: not a host name",
                m.server_name
            ));
        }
        Err(_) => ServerName::try_from("sni.invalid").expect("a valid name"),
    };
    let mut client =
        ClientConnection::new(Arc::new(client_config), name).map_err(|e| e.to_string())?;
    let mut server = ServerConnection::new(Arc::new(server_config)).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    for _ in 0..16 {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).map_err(|e| e.to_string())?;
        }
        if !buf.is_empty() {
            server.read_tls(&mut &buf[..]).map_err(|e| e.to_string())?;
            if let Err(e) = server.process_new_packets() {
                return Err(format!("the broker refused the handshake: {e}"));
            }
        }
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).map_err(|e| e.to_string())?;
        }
        if !buf.is_empty() {
            client.read_tls(&mut &buf[..]).map_err(|e| e.to_string())?;
            if let Err(e) = client.process_new_packets() {
                return Err(format!("the module refused the server: {e}"));
            }
        }
        if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() {
            return Ok(());
        }
    }
    Err("the handshake did not finish".into())
}

/// The lenient side of a handshake, for both ends: as a module's verifier it accepts any
/// server certificate (a module that does not verify, or cannot: a throw-away server
/// certificate); as a broker's it asks for a client certificate and takes any chain. Either
/// way it checks the peer's signatures, so the peer must hold the key of the certificate it
/// sent.
#[derive(Debug)]
struct Lenient(Arc<rustls::crypto::CryptoProvider>);

impl Lenient {
    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for Lenient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
