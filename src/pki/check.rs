//! `pki check`: everything that can be wrong with a CA / certificate / key bundle, found on the
//! host before a module is touched. Every problem is one line.

use std::path::Path;

use super::Credentials;
use super::describe::{cert_info, key_info_of_private, signed_by};
use super::load::{LoadError, Loaded, load, recognise};

/// Module-family limits a bundle must fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// ESP-AT 3.x: PEM blobs in mfg_nvs.
    EspAt,
    /// ESP-AT 2.x: one AtPKI bin per 8 KiB partition.
    EspAtLegacy,
    /// Luat Air780EP: RSA keys only (its TLS stack's cipher list is RSA key exchange).
    Luat,
    /// Quectel: any key mbedTLS takes.
    Quectel,
}

impl Target {
    /// The target a profile name implies.
    pub fn from_profile(name: &str) -> Option<Target> {
        match name {
            "esp32-at" => Some(Target::EspAt),
            "esp32-at-v2" => Some(Target::EspAtLegacy),
            "air780ep" | "luat" => Some(Target::Luat),
            "quectel" => Some(Target::Quectel),
            _ => None,
        }
    }
}

/// Size of a legacy PKI partition, bin header included.
pub const LEGACY_PARTITION: usize = 8192;

/// The outcome: the usable credentials, or every problem found.
pub fn check(
    ca: &Path,
    cert: &Path,
    key: &Path,
    target: Option<Target>,
    now_unix: i64,
) -> Result<Credentials, Vec<String>> {
    check_loaded([load(ca), load(cert), load(key)], target, now_unix)
}

/// [`check`] on bytes already in memory (`name` is how problems refer to each file).
pub fn check_bytes(
    ca: (&str, &[u8]),
    cert: (&str, &[u8]),
    key: (&str, &[u8]),
    target: Option<Target>,
    now_unix: i64,
) -> Result<Credentials, Vec<String>> {
    let get = |(name, bytes): (&str, &[u8])| recognise(name, bytes.to_vec());
    check_loaded([get(ca), get(cert), get(key)], target, now_unix)
}

fn check_loaded(
    loaded: [Result<Loaded, LoadError>; 3],
    target: Option<Target>,
    now_unix: i64,
) -> Result<Credentials, Vec<String>> {
    let mut problems = Vec::new();
    let [ca, cert, key] = loaded.map(|l| match l {
        Ok(l) => Some(l),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    });

    let ca_ders: Vec<Vec<u8>> = ca
        .as_ref()
        .map(|l| l.certificates().map(<[u8]>::to_vec).collect())
        .unwrap_or_default();
    if let Some(l) = &ca {
        if ca_ders.is_empty() {
            problems.push(format!("{}: {}", l.name, wrong_kind(l, "a CA certificate")));
        }
    }
    let cert_der = cert
        .as_ref()
        .and_then(|l| l.certificates().next().map(<[u8]>::to_vec));
    if let (Some(l), None) = (&cert, &cert_der) {
        problems.push(format!("{}: {}", l.name, wrong_kind(l, "a certificate")));
    }
    let key_der = key
        .as_ref()
        .and_then(|l| l.private_key().map(|(d, f)| (d.to_vec(), f)));
    if let (Some(l), None) = (&key, &key_der) {
        if l.is_encrypted_key() {
            problems.push(format!(
                "{}: the private key is encrypted and modules take no passphrase; decrypt it: openssl pkey -in {} -out key.plain.pem",
                l.name, l.name
            ));
        } else {
            problems.push(format!("{}: {}", l.name, wrong_kind(l, "a private key")));
        }
    }

    let cert_info = cert_der.as_deref().and_then(cert_info);
    if let (Some(l), Some(_), None) = (&cert, &cert_der, &cert_info) {
        problems.push(format!(
            "{}: the certificate does not parse as X.509",
            l.name
        ));
    }
    if let (Some(info), Some((kd, kf))) = (&cert_info, &key_der) {
        match key_info_of_private(kd, *kf) {
            None => problems.push(format!(
                "{}: the private key is not usable (unsupported algorithm or damaged)",
                key.as_ref().map(|l| l.name.as_str()).unwrap_or("key")
            )),
            Some((_, spki)) if spki != info.spki => problems.push(format!(
                "{}: the private key does not belong to the certificate {} (subject {})",
                key.as_ref().map(|l| l.name.as_str()).unwrap_or("key"),
                cert.as_ref().map(|l| l.name.as_str()).unwrap_or("cert"),
                info.subject
            )),
            Some(_) => {}
        }
        if let Some(target) = target {
            if target == Target::Luat && info.key.algorithm != "RSA" {
                problems.push(format!(
                    "{}: the Air780EP TLS stack takes RSA keys only, this one is {}",
                    key.as_ref().map(|l| l.name.as_str()).unwrap_or("key"),
                    info.key
                ));
            }
        }
    }
    if let (Some(info), Some(der), false) = (&cert_info, &cert_der, ca_ders.is_empty()) {
        if !ca_ders.iter().any(|ca| signed_by(der, ca)) {
            problems.push(format!(
                "{}: not signed by the CA in {} (certificate issuer: {})",
                cert.as_ref().map(|l| l.name.as_str()).unwrap_or("cert"),
                ca.as_ref().map(|l| l.name.as_str()).unwrap_or("ca"),
                info.issuer
            ));
        }
    }
    for (label, loaded, info) in [("certificate", &cert, cert_info.clone())]
        .into_iter()
        .chain(
            ca_ders
                .first()
                .map(|d| ("CA certificate", &ca, super::describe::cert_info(d))),
        )
    {
        let (Some(info), Some(l)) = (info, loaded) else {
            continue;
        };
        if now_unix > info.not_after_unix {
            problems.push(format!(
                "{}: the {label} expired on {}; get a new one",
                l.name, info.not_after
            ));
        } else if now_unix < info.not_before_unix {
            problems.push(format!(
                "{}: the {label} is not valid before {} (is this PC's clock right? a module with a wrong clock fails the same way)",
                l.name, info.not_before
            ));
        }
    }
    if target == Some(Target::EspAtLegacy) {
        for l in [&ca, &cert, &key].into_iter().flatten() {
            let bin = 8 + l.bytes.len() + (4 - l.bytes.len() % 4) % 4 + 4;
            if bin > LEGACY_PARTITION {
                problems.push(format!(
                    "{}: as a PKI bin it takes {bin} bytes, over the {LEGACY_PARTITION} of a legacy ESP-AT partition; use a smaller CA (e.g. Amazon Root CA 1 alone)",
                    l.name
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let (ca, cert, key) = (
        ca.expect("no problems"),
        cert.expect("no problems"),
        key.expect("no problems"),
    );
    Ok(Credentials::new(ca.bytes, cert.bytes, key.bytes))
}

fn wrong_kind(l: &Loaded, wanted: &str) -> String {
    let found = if l.private_key().is_some() || l.is_encrypted_key() {
        "a private key"
    } else if l.certificates().next().is_some() {
        "a certificate"
    } else if l.encoding == super::load::Encoding::PkiBin {
        "a PKI bin"
    } else {
        "nothing usable"
    };
    format!("holds {found} where {wanted} is expected")
}
