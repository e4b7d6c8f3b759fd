//! `pki check`: everything that can be wrong with a credential bundle, found on the host before
//! a module is touched. Every problem is one line.
//!
//! A bundle has two trust roles, kept apart (`DESIGN.md`, principle 10):
//! - the **server CA** is what the module stores to verify the broker (AWS: Amazon Root CA 1).
//!   It must hold CA certificates that are valid now; it says nothing about the device
//!   certificate, which AWS IoT issues from a CA of its own that only the broker trusts.
//! - the **device CA** (optional: `--device-ca`, a job's `credentials.device_ca`, the factory's
//!   manufacturer CA) issued the device certificate. Only when it is given is the device
//!   certificate's issuer checked.

use std::path::Path;

use super::Credentials;
use super::describe::{CertInfo, cert_info, key_info_of_private, signed_by};
use super::load::{LoadError, Loaded, load, recognise};
use crate::profile::Family;

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
    /// The limits of a module family (the store generation of an ESP-AT module is only known
    /// once it is probed; the legacy partition size is checked again before writing).
    pub fn of(family: Family) -> Target {
        match family {
            Family::EspAt => Target::EspAt,
            Family::Quectel => Target::Quectel,
            Family::Luat => Target::Luat,
        }
    }

    /// The most bytes one credential file may have on this family, and why.
    fn max_item(self) -> (usize, &'static str) {
        match self {
            // NVS: a blob takes at most 97.6 % of the partition minus 4000 bytes; ESP-AT's
            // mfg_nvs partition is 0x1C000 bytes.
            Target::EspAt => (
                107_935,
                "the largest blob ESP-AT's 112 KiB mfg_nvs partition holds",
            ),
            Target::EspAtLegacy => (LEGACY_PARTITION - 12, "a legacy ESP-AT PKI partition"),
            Target::Quectel => (131_072, "what atprov uploads to a Quectel UFS file"),
            Target::Luat => (65_536, "what atprov writes to a Luat file system file"),
        }
    }
}

/// Size of a legacy PKI partition, bin header included.
pub const LEGACY_PARTITION: usize = 8192;

/// One input of a check: how problems name it, and its bytes (or why there are none).
pub type Input = Result<Loaded, LoadError>;

/// The four files of a bundle, loaded.
pub struct Bundle {
    /// What the module verifies the broker with.
    pub server_ca: Input,
    /// The device certificate.
    pub cert: Input,
    /// The device's private key.
    pub key: Input,
    /// What issued the device certificate, when known.
    pub device_ca: Option<Input>,
}

impl Bundle {
    /// Loads the files of a bundle.
    pub fn load(ca: &Path, cert: &Path, key: &Path, device_ca: Option<&Path>) -> Bundle {
        Bundle {
            server_ca: load(ca),
            cert: load(cert),
            key: load(key),
            device_ca: device_ca.map(load),
        }
    }

    /// A bundle already in memory: `(name, bytes)` each.
    pub fn from_bytes(
        ca: (&str, &[u8]),
        cert: (&str, &[u8]),
        key: (&str, &[u8]),
        device_ca: Option<(&str, &[u8])>,
    ) -> Bundle {
        let get = |(name, bytes): (&str, &[u8])| recognise(name, bytes.to_vec());
        Bundle {
            server_ca: get(ca),
            cert: get(cert),
            key: get(key),
            device_ca: device_ca.map(get),
        }
    }
}

/// Every problem a bundle has, one line each, in the order found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

impl std::error::Error for Problems {}

/// The outcome: the usable credentials, or every problem found.
pub fn check(
    ca: &Path,
    cert: &Path,
    key: &Path,
    device_ca: Option<&Path>,
    target: Option<Target>,
    now_unix: i64,
) -> Result<Credentials, Problems> {
    check_bundle(Bundle::load(ca, cert, key, device_ca), target, now_unix)
}

/// Server-only TLS: the server CA alone (a CA certificate, valid now, within the module's
/// limits). The credentials then hold no device certificate or key, and stores skip them.
pub fn check_server_ca(
    ca: &Path,
    target: Option<Target>,
    now_unix: i64,
) -> Result<Credentials, Problems> {
    let mut problems = Vec::new();
    let loaded = match load(ca) {
        Ok(l) => l,
        Err(e) => return Err(Problems(vec![e.to_string()])),
    };
    check_ca_file(
        &loaded,
        "server CA",
        "the module verifies the broker with it: give the root CA that signed the broker's certificate",
        now_unix,
        &mut problems,
    );
    if let Some(target) = target {
        let (max, what) = target.max_item();
        if loaded.bytes.len() > max {
            problems.push(format!(
                "{}: {} bytes, more than {max} ({what})",
                loaded.name,
                loaded.bytes.len()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Ok(Credentials::new(loaded.bytes, Vec::new(), Vec::new()))
}

/// Checks a loaded bundle.
pub fn check_bundle(
    bundle: Bundle,
    target: Option<Target>,
    now_unix: i64,
) -> Result<Credentials, Problems> {
    let mut problems = Vec::new();
    let mut take = |l: Input| match l {
        Ok(l) => Some(l),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let ca = take(bundle.server_ca);
    let cert = take(bundle.cert);
    let key = take(bundle.key);
    let device_ca = bundle.device_ca.and_then(&mut take);

    if let Some(l) = &ca {
        check_ca_file(
            l,
            "server CA",
            "the module verifies the broker with it: give the root CA that signed the broker's certificate (AWS: AmazonRootCA1.pem)",
            now_unix,
            &mut problems,
        );
    }
    if let Some(l) = &device_ca {
        check_ca_file(
            l,
            "device CA",
            "give the CA that issued the device certificate",
            now_unix,
            &mut problems,
        );
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
    let cert_name = cert.as_ref().map_or("cert", |l| l.name.as_str());
    let key_name = key.as_ref().map_or("key", |l| l.name.as_str());

    let info = cert_der.as_deref().and_then(cert_info);
    if let (Some(_), None) = (&cert_der, &info) {
        problems.push(format!(
            "{cert_name}: the certificate does not parse as X.509"
        ));
    }
    if let (Some(info), Some((kd, kf))) = (&info, &key_der) {
        match key_info_of_private(kd, *kf) {
            None => problems.push(format!(
                "{key_name}: the private key is not usable (unsupported algorithm or damaged)"
            )),
            Some((_, spki)) if spki != info.spki => problems.push(format!(
                "{key_name}: the private key does not belong to the certificate {cert_name} (subject {})",
                info.subject
            )),
            Some(_) => {}
        }
        if target == Some(Target::Luat) && info.key.algorithm != "RSA" {
            problems.push(format!(
                "{key_name}: the Air780EP TLS stack takes RSA keys only, this one is {}",
                info.key
            ));
        }
    }
    if let (Some(info), Some(der)) = (&info, &cert_der) {
        if info.is_ca {
            problems.push(format!(
                "{cert_name}: is a CA certificate (basicConstraints CA:TRUE), not a device certificate; give the device's own certificate"
            ));
        }
        if let Some(dca) = &device_ca {
            let issuers: Vec<&[u8]> = dca.certificates().collect();
            if !issuers.is_empty() && !issuers.iter().any(|i| signed_by(der, i)) {
                problems.push(format!(
                    "{cert_name}: not issued by the device CA in {} (certificate issuer: {})",
                    dca.name, info.issuer
                ));
            }
        }
        validity(info, cert_name, "device", now_unix, &mut problems);
    }
    if let Some(target) = target {
        let (max, what) = target.max_item();
        for l in [&ca, &cert, &key].into_iter().flatten() {
            let stored = if target == Target::EspAtLegacy {
                // The AtPKI bin: header, item header, content padded to 4 bytes.
                8 + 4 + l.bytes.len() + (4 - l.bytes.len() % 4) % 4
            } else {
                l.bytes.len()
            };
            if stored > max {
                problems.push(if target == Target::EspAtLegacy {
                    format!(
                        "{}: as a PKI bin it takes {stored} bytes, over the {LEGACY_PARTITION} of a legacy ESP-AT partition; use a smaller CA (e.g. Amazon Root CA 1 alone)",
                        l.name
                    )
                } else {
                    format!(
                        "{}: {} bytes, more than {max} ({what}); nothing this large is a credential a module takes",
                        l.name,
                        l.bytes.len()
                    )
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    let (Some(ca), Some(cert), Some(key)) = (ca, cert, key) else {
        unreachable!("a missing file is a problem");
    };
    Ok(Credentials::new(ca.bytes, cert.bytes, key.bytes))
}

/// A file of CA certificates: it holds at least one, each is a CA and valid now.
fn check_ca_file(l: &Loaded, role: &str, advice: &str, now_unix: i64, problems: &mut Vec<String>) {
    let ders: Vec<&[u8]> = l.certificates().collect();
    if ders.is_empty() {
        problems.push(format!(
            "{}: {} ({role}: {advice})",
            l.name,
            wrong_kind(l, "a CA certificate")
        ));
        return;
    }
    for der in ders {
        let Some(info) = cert_info(der) else {
            problems.push(format!("{}: a certificate does not parse as X.509", l.name));
            continue;
        };
        // Old self-signed v1 roots carry no basicConstraints and are still roots.
        let self_signed = info.subject == info.issuer && signed_by(der, der);
        if !info.is_ca && !self_signed {
            problems.push(format!(
                "{}: the certificate of {} is not a CA (no basicConstraints CA:TRUE); {advice}",
                l.name, info.subject
            ));
        }
        validity(&info, &l.name, role, now_unix, problems);
    }
}

fn validity(info: &CertInfo, name: &str, label: &str, now_unix: i64, problems: &mut Vec<String>) {
    if now_unix > info.not_after_unix {
        problems.push(format!(
            "{name}: the {label} certificate expired on {}; get a new one",
            info.not_after
        ));
    } else if now_unix < info.not_before_unix {
        problems.push(format!(
            "{name}: the {label} certificate is not valid before {} (is this PC's clock right? a module with a wrong clock fails the same way)",
            info.not_before
        ));
    }
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
