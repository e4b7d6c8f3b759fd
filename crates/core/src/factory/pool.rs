//! The credential pool: per-unit certificates and keys listed in a manifest, or made per unit
//! from a manufacturer CA. Every credential is checked (`pki check`) before it goes to a unit;
//! one that fails is rejected in the journal and the next one is taken.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::journal::PoolRecord;
use crate::pki::Credentials;
use crate::pki::check::{Bundle, Target, check_bundle};
use crate::pki::load::sha256_hex;

/// One manifest entry as written in JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    thing_name: String,
    certificate: PathBuf,
    key: PathBuf,
}

/// Why the pool cannot give a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The manifest cannot be read or has a bad line (the message names file and line).
    #[error("pool manifest {0}")]
    Manifest(String),
    /// A credential of the pool fails its check or cannot be read.
    #[error("{0}")]
    Credential(String),
    /// A certificate could not be generated or written.
    #[error("generating a certificate: {0}")]
    Generate(String),
}

/// Reads a manifest: CSV with the header `thing_name,certificate,key`, or a JSON array of
/// `{"thing_name", "certificate", "key"}`. Paths are relative to the manifest. Each
/// certificate is read to fingerprint it; keys are only checked to exist.
pub fn load_manifest(path: &Path) -> Result<Vec<PoolRecord>, PoolError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| PoolError::Manifest(format!("{shown}: cannot read it: {e}")))?;
    // Absolute: the journal stores these paths, which must not depend on the working folder.
    let manifest = crate::files::absolute(path);
    let base = manifest.parent().unwrap_or(Path::new("."));
    let entries: Vec<(usize, String, PathBuf, PathBuf)> = if text.trim_start().starts_with('[') {
        let list: Vec<JsonEntry> = serde_json::from_str(&text)
            .map_err(|e| PoolError::Manifest(format!("{shown}: {e}")))?;
        list.into_iter()
            .enumerate()
            .map(|(i, e)| (i + 1, e.thing_name, e.certificate, e.key))
            .collect()
    } else {
        parse_csv(&text).map_err(|e| PoolError::Manifest(format!("{shown}:{e}")))?
    };
    let mut out = Vec::with_capacity(entries.len());
    let mut names = std::collections::HashSet::new();
    for (line, name, cert, key) in entries {
        let at = |what: String| PoolError::Manifest(format!("{shown}:{line}: {what}"));
        if name.is_empty() {
            return Err(at("empty thing_name".into()));
        }
        if !names.insert(name.clone()) {
            return Err(at(format!("thing_name `{name}` is listed twice")));
        }
        let cert = base.join(cert);
        let key = base.join(key);
        let bytes = std::fs::read(&cert).map_err(|e| {
            at(format!(
                "certificate {}: cannot read it: {e}",
                cert.display()
            ))
        })?;
        if !key.is_file() {
            return Err(at(format!("key {}: no such file", key.display())));
        }
        out.push(PoolRecord {
            thing_name: name,
            cert_sha256: sha256_hex(&bytes),
            cert,
            key,
        });
    }
    if out.is_empty() {
        return Err(PoolError::Manifest(format!(
            "{shown}: no credentials listed"
        )));
    }
    Ok(out)
}

/// `thing_name,certificate,key` lines after a header; `#` starts a comment line.
fn parse_csv(text: &str) -> Result<Vec<(usize, String, PathBuf, PathBuf)>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let Some((n, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    if columns != ["thing_name", "certificate", "key"] {
        return Err(format!(
            "{n}: the header must be `thing_name,certificate,key` (found `{header}`)"
        ));
    }
    let mut out = Vec::new();
    for (n, line) in lines {
        if line.contains('"') {
            return Err(format!(
                "{n}: quoted fields are not supported; use the JSON manifest for names with commas"
            ));
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let [name, cert, key] = f.as_slice() else {
            return Err(format!("{n}: expected 3 fields, found {}", f.len()));
        };
        out.push((n, name.to_string(), cert.into(), key.into()));
    }
    Ok(out)
}

/// Reads and checks one credential for a unit of `target`: the pool's server CA written with
/// it, and the CA that issued it when the pool names one.
pub fn load_credentials(
    record: &PoolRecord,
    ca: &(String, Vec<u8>),
    device_ca: Option<&(String, Vec<u8>)>,
    target: Option<Target>,
) -> Result<Credentials, PoolError> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| PoolError::Credential(format!("{}: cannot read it: {e}", p.display())))
    };
    let cert = read(&record.cert)?;
    if sha256_hex(&cert) != record.cert_sha256 {
        return Err(PoolError::Credential(format!(
            "{}: the certificate changed since it was registered",
            record.cert.display()
        )));
    }
    let key = read(&record.key)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let bundle = Bundle::from_bytes(
        (&ca.0, &ca.1),
        (&record.cert.display().to_string(), &cert),
        (&record.key.display().to_string(), &key),
        device_ca.map(|(n, b)| (n.as_str(), b.as_slice())),
    );
    check_bundle(bundle, target, now)
        .map_err(|problems| PoolError::Credential(problems.to_string()))
}

/// Makes a certificate for `thing_name` signed by the manufacturer CA and writes it to `dir`
/// (`NAME.crt`, and `NAME.key` readable by its owner only), each file synced.
pub fn generate(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    dir: &Path,
    thing_name: &str,
    days: u32,
) -> Result<PoolRecord, PoolError> {
    let failed = PoolError::Generate;
    crate::files::safe_component(thing_name).map_err(|e| failed(format!("thing name {e}")))?;
    if thing_name.starts_with('.') {
        return Err(failed(format!(
            "thing name `{thing_name}` cannot name a file (it starts with a dot)"
        )));
    }
    let made = crate::pki::generate::device(
        ca_cert_pem,
        ca_key_pem,
        thing_name,
        days,
        crate::pki::generate::KeyKind::P256,
        None,
    )
    .map_err(|e| failed(e.to_string()))?;
    crate::files::create_private_dir(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    let cert = dir.join(format!("{thing_name}.crt"));
    let key = dir.join(format!("{thing_name}.key"));
    // The journal, not the folder, says which names are taken: files under a name it never
    // recorded are left over from a crash before the record, and are replaced.
    use crate::files::{Access, Existing, write};
    write(
        &key,
        made.key_pem.as_bytes(),
        Access::Private,
        Existing::Replace,
    )
    .map_err(|e| failed(e.to_string()))?;
    write(
        &cert,
        made.cert_pem.as_bytes(),
        Access::Public,
        Existing::Replace,
    )
    .map_err(|e| failed(e.to_string()))?;
    Ok(PoolRecord {
        thing_name: thing_name.to_string(),
        cert_sha256: sha256_hex(made.cert_pem.as_bytes()),
        cert,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_manifest_errors_name_the_line() {
        assert!(parse_csv("thing_name,certificate,key\na,b.crt,b.key\n").is_ok());
        let e = parse_csv("name,cert,key\n").unwrap_err().to_string();
        assert!(e.starts_with("1: the header"), "{e}");
        let e = parse_csv("thing_name,certificate,key\n# c\na,b.crt\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("3: expected 3 fields"), "{e}");
    }

    #[test]
    fn manifests_fingerprint_certificates_and_refuse_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.crt"), "A").unwrap();
        std::fs::write(dir.path().join("a.key"), "K").unwrap();
        let m = dir.path().join("m.csv");
        std::fs::write(&m, "thing_name,certificate,key\nt1,a.crt,a.key\n").unwrap();
        let r = load_manifest(&m).unwrap();
        assert_eq!(r[0].cert_sha256, sha256_hex(b"A"));
        assert_eq!(r[0].cert, dir.path().join("a.crt"));
        std::fs::write(
            &m,
            "thing_name,certificate,key\nt1,a.crt,a.key\nt1,a.crt,a.key\n",
        )
        .unwrap();
        let e = load_manifest(&m).unwrap_err().to_string();
        assert!(e.contains(":3: thing_name `t1` is listed twice"), "{e}");
        std::fs::write(
            &m,
            r#"[{"thing_name":"t1","certificate":"a.crt","key":"gone.key"}]"#,
        )
        .unwrap();
        let e = load_manifest(&m).unwrap_err().to_string();
        assert!(e.contains(":1: key") && e.contains("no such file"), "{e}");
    }
}
