//! Generating throw-away CAs and per-unit device certificates (demos, tests, just-in-time
//! registration), with explicit validity.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A generated certificate and its key, both PEM.
pub struct Generated {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (a secret).
    pub key_pem: String,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Generated {{ cert: {} bytes, key: not shown }}",
            self.cert_pem.len()
        )
    }
}

/// Why a certificate or key could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// A validity outside 1 day to [`MAX_DAYS`].
    #[error("{0} days of validity: give 1 to {MAX_DAYS}")]
    Days(u32),
    /// A key type this build cannot make.
    #[error(
        "this build cannot generate {0} keys; make one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dev.key` and pass --key-file dev.key"
    )]
    KeyType(&'static str),
    /// The signing CA's certificate or key is unusable.
    #[error("the CA {0}")]
    Ca(String),
    /// A key given to reuse is unusable.
    #[error("the device key: {0}")]
    Key(String),
    /// The certificate could not be made.
    #[error("{0}")]
    Certificate(String),
}

/// Key types atprov generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on NIST P-256.
    P256,
    /// RSA, 2048 bits.
    Rsa2048,
}

fn new_key(kind: KeyKind) -> Result<KeyPair, GenerateError> {
    match kind {
        KeyKind::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_error),
        KeyKind::Rsa2048 => Err(GenerateError::KeyType("RSA")),
    }
}

fn cert_error(e: rcgen::Error) -> GenerateError {
    GenerateError::Certificate(e.to_string())
}

/// The longest validity atprov issues: 100 years (X.509 times end in 9999, but no module,
/// CA or policy needs more, and a typo like `--days 3000000` should be caught, not obeyed).
pub const MAX_DAYS: u32 = 36_500;

fn validity(p: &mut CertificateParams, days: u32) -> Result<(), GenerateError> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(GenerateError::Days(days));
    }
    // A little slack before now for clocks that run behind.
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(5);
    p.not_after = now + Duration::days(i64::from(days));
    Ok(())
}

/// A self-signed CA.
pub fn ca(cn: &str, days: u32) -> Result<Generated, GenerateError> {
    let key = new_key(KeyKind::P256)?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "atprov test CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut p, days)?;
    let cert = p.self_signed(&key).map_err(cert_error)?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The CA that signs, from its certificate and key (PEM): its subject becomes the issuer.
fn signing_ca(
    ca_cert_pem: &str,
    ca_key_pem: &str,
) -> Result<rcgen::Issuer<'static, KeyPair>, GenerateError> {
    let ca_key =
        KeyPair::from_pem(ca_key_pem).map_err(|e| GenerateError::Ca(format!("key: {e}")))?;
    rcgen::Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)
        .map_err(|e| GenerateError::Ca(format!("certificate: {e}")))
}

/// A device certificate for `cn`, signed by the CA given as PEM. `key_pem` reuses a key.
pub fn device(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    cn: &str,
    days: u32,
    kind: KeyKind,
    key_pem: Option<&str>,
) -> Result<Generated, GenerateError> {
    let issuer = signing_ca(ca_cert_pem, ca_key_pem)?;
    let key = match key_pem {
        Some(pem) => KeyPair::from_pem(pem).map_err(|e| GenerateError::Key(e.to_string()))?,
        None => new_key(kind)?,
    };
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut p, days)?;
    let cert = p.signed_by(&key, &issuer).map_err(cert_error)?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A server (broker) certificate for `names` (host names or IP addresses), signed by the CA
/// given as PEM: what an emulated or test broker presents.
pub fn server(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    names: &[&str],
    days: u32,
) -> Result<Generated, GenerateError> {
    let issuer = signing_ca(ca_cert_pem, ca_key_pem)?;
    let key = new_key(KeyKind::P256)?;
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut p = CertificateParams::new(names.clone()).map_err(cert_error)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut p, days)?;
    let cert = p.signed_by(&key, &issuer).map_err(cert_error)?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
