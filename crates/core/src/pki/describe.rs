//! Describing credentials: subject, issuer, validity, key algorithm and size, fingerprints;
//! what `pki inspect` prints and what `pki check` reasons about.

use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;
use x509_parser::public_key::PublicKey;

use super::load::{KeyFormat, hex, signing_key};

/// A public key's algorithm and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// `RSA`, `EC` or `Ed25519`.
    pub algorithm: String,
    /// The key size in bits.
    pub bits: usize,
}

impl std::fmt::Display for KeyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.algorithm.as_str() {
            "EC" => write!(f, "EC P-{}", self.bits),
            a => write!(f, "{a}-{}", self.bits),
        }
    }
}

/// What a certificate says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// The subject's distinguished name.
    pub subject: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    #[serde(skip)]
    /// Start of validity, Unix seconds.
    pub not_before_unix: i64,
    #[serde(skip)]
    /// End of validity, Unix seconds.
    pub not_after_unix: i64,
    /// Its public key.
    pub key: KeyInfo,
    /// basicConstraints says CA.
    pub is_ca: bool,
    /// SHA-256 of the DER, colon-separated upper-case hex.
    pub sha256_fingerprint: String,
    #[serde(skip)]
    /// The SubjectPublicKeyInfo, DER (to match a private key against).
    pub spki: Vec<u8>,
}

fn key_info(spki: &SubjectPublicKeyInfo) -> KeyInfo {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => KeyInfo {
            algorithm: "RSA".into(),
            bits: rsa.key_size(),
        },
        Ok(PublicKey::EC(ec)) => KeyInfo {
            algorithm: "EC".into(),
            bits: ec.key_size(),
        },
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => KeyInfo {
            algorithm: "Ed25519".into(),
            bits: 256,
        },
        _ => KeyInfo {
            algorithm: spki.algorithm.algorithm.to_id_string(),
            bits: 0,
        },
    }
}

fn rfc3339(t: &ASN1Time) -> String {
    t.to_datetime()
        .format(&::time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Describes a DER certificate; `None` if it does not parse.
pub fn cert_info(der: &[u8]) -> Option<CertInfo> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let v = cert.validity();
    Some(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: rfc3339(&v.not_before),
        not_after: rfc3339(&v.not_after),
        not_before_unix: v.not_before.timestamp(),
        not_after_unix: v.not_after.timestamp(),
        key: key_info(cert.public_key()),
        is_ca: cert.is_ca(),
        sha256_fingerprint: colon_hex(&Sha256::digest(der)),
        spki: cert.public_key().raw.to_vec(),
    })
}

/// Describes a private key: its public half and algorithm. `None` if unusable.
pub fn key_info_of_private(der: &[u8], format: KeyFormat) -> Option<(KeyInfo, Vec<u8>)> {
    let key = signing_key(der, format)?;
    let spki = key.public_key()?.as_ref().to_vec();
    let (_, parsed) = SubjectPublicKeyInfo::from_der(&spki).ok()?;
    Some((key_info(&parsed), spki))
}

/// Whether `cert` carries a valid signature by the key of `issuer` (both DER).
pub fn signed_by(cert: &[u8], issuer: &[u8]) -> bool {
    let (Ok((_, c)), Ok((_, i))) = (
        X509Certificate::from_der(cert),
        X509Certificate::from_der(issuer),
    ) else {
        return false;
    };
    c.verify_signature(Some(i.public_key())).is_ok()
}

/// `AB:CD:...` of `bytes`.
pub fn colon_hex(bytes: &[u8]) -> String {
    hex(bytes)
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap_or("").to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}
