//! `atprov pki`: encode, decode, inspect, check and generate credentials.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{Code, Failure};
use crate::pki::atpki::{self, ItemType};
use crate::pki::check::{Target, check};
use crate::pki::checksum::qfupl_hex;
use crate::pki::describe::{cert_info, key_info_of_private};
use crate::pki::generate::{self, KeyKind};
use crate::pki::load::{Encoding, LoadError, load, sha256_hex};

#[derive(Debug, clap::Args)]
pub struct PkiArgs {
    #[command(subcommand)]
    pub command: PkiCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum PkiCommand {
    /// Write an ESP-AT PKI bin, byte-identical to `AtPKI.py generate_bin -b OUT TYPE FILE ...`.
    Encode {
        /// The bin to write.
        #[arg(short, long)]
        out: PathBuf,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
        /// TYPE FILE pairs, TYPE one of ca, cert, key.
        #[arg(required = true, num_args = 2.., value_name = "TYPE FILE")]
        items: Vec<String>,
    },
    /// Extract the items of a PKI bin into files in DIR.
    Decode {
        /// The PKI bin (or a partition image read from the module).
        bin: PathBuf,
        /// Directory to write the items into (TYPE ID .pem; keys readable by their owner only).
        #[arg(short, long)]
        out: PathBuf,
        /// Replace files that exist.
        #[arg(long)]
        force: bool,
    },
    /// Describe a certificate, chain, key or PKI bin.
    Inspect {
        /// The file: PEM or DER certificates and keys, a PKI bin or a padded partition image
        /// (any other file gets its size, `+QFUPL` checksum and hashes).
        file: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Check that CA, certificate and key belong together and suit the module.
    Check {
        /// Server CA (PEM) the module will verify the broker with, e.g. AmazonRootCA1.pem.
        #[arg(long)]
        ca: PathBuf,
        /// Device certificate.
        #[arg(long)]
        cert: PathBuf,
        /// Device private key.
        #[arg(long)]
        key: PathBuf,
        /// CA that issued the device certificate; when given, the certificate must be signed
        /// by it (not needed for AWS IoT certificates).
        #[arg(long, value_name = "FILE")]
        device_ca: Option<PathBuf>,
        /// The module's limits: a profile (esp32-at, quectel, air780ep or a file), or
        /// esp32-at-v2 for ESP-AT 2.x's 8 KiB PKI partitions.
        #[arg(long)]
        profile: Option<String>,
        /// One JSON object on stdout (every problem found).
        #[arg(long)]
        json: bool,
    },
    /// Generate a throw-away CA (--ca) or a device certificate signed by a CA.
    Generate {
        /// Make a self-signed CA.
        #[arg(long, conflicts_with_all = ["ca_cert", "ca_key"])]
        ca: bool,
        /// The signing CA's certificate (PEM).
        #[arg(long, requires = "ca_key")]
        ca_cert: Option<PathBuf>,
        /// The signing CA's key (PEM).
        #[arg(long, requires = "ca_cert")]
        ca_key: Option<PathBuf>,
        /// Common name (the thing name for AWS).
        #[arg(long, default_value = "atprov-device")]
        cn: String,
        /// Days of validity from now (1 to 36500).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=i64::from(generate::MAX_DAYS)))]
        days: u32,
        /// Key type of a new device key.
        #[arg(long, value_enum, default_value_t = KeyArg::P256)]
        key: KeyArg,
        /// Use this existing key (PEM) instead of generating one.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Directory to write NAME.crt.pem and NAME.key.pem into.
        #[arg(short, long)]
        out: PathBuf,
        /// Replace an existing certificate and key of the same name (a CA key replaced orphans
        /// every certificate it issued).
        #[arg(long)]
        force: bool,
    },
}

/// Key types `pki generate` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyArg {
    /// ECDSA on NIST P-256.
    P256,
    /// RSA, 2048 bits.
    Rsa2048,
}

impl From<KeyArg> for KeyKind {
    fn from(k: KeyArg) -> KeyKind {
        match k {
            KeyArg::P256 => KeyKind::P256,
            KeyArg::Rsa2048 => KeyKind::Rsa2048,
        }
    }
}

fn cred(e: impl std::fmt::Display) -> Failure {
    Failure::new(Code::Credentials, e.to_string())
}

/// A file that is not what the command takes (not PEM, DER nor a PKI bin): a bad input, exit 2;
/// a missing or unreadable one: exit 16.
fn load_err(e: LoadError) -> Failure {
    match e {
        LoadError::Missing(_) | LoadError::Unreadable(..) => {
            Failure::new(Code::Unreadable, e.to_string())
        }
        LoadError::Empty(_) | LoadError::Unrecognised(_) | LoadError::BadPem(..) => {
            Failure::usage(e.to_string())
        }
    }
}

/// Why a certificate could not be made: an option this build does not offer is a usage
/// problem (exit 2); an unusable CA or key, exit 10.
fn generate_err(e: generate::GenerateError) -> Failure {
    match e {
        generate::GenerateError::KeyType(_) | generate::GenerateError::Days(_) => {
            Failure::usage(e.to_string())
        }
        _ => cred(e),
    }
}

pub fn run(args: PkiArgs) -> Result<(), Failure> {
    match args.command {
        PkiCommand::Encode { out, items, force } => encode(&out, &items, force),
        PkiCommand::Decode { bin, out, force } => decode(&bin, &out, force),
        PkiCommand::Inspect { file, json } => inspect(&file, json),
        PkiCommand::Check {
            ca,
            cert,
            key,
            device_ca,
            profile,
            json,
        } => {
            let target = match profile.as_deref() {
                None => None,
                Some("esp32-at-v2") => Some(Target::EspAtLegacy),
                Some(p) => Some(Target::of(
                    crate::profile::Profile::load(p)
                        .map_err(|e| Failure::usage(e.0))?
                        .family,
                )),
            };
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            match check(&ca, &cert, &key, device_ca.as_deref(), target, now) {
                Ok(c) => {
                    if json {
                        crate::render::json_line(
                            json!({"ok": true, "problems": [], "cert_sha256": c.cert_sha256()}),
                        );
                    } else {
                        println!(
                            "ok: {} / {} / {} belong together",
                            ca.display(),
                            cert.display(),
                            key.display()
                        );
                    }
                    Ok(())
                }
                Err(crate::pki::check::Problems(problems)) => {
                    if json {
                        crate::render::json_line(json!({"ok": false, "problems": problems}));
                    } else {
                        for p in &problems[..problems.len() - 1] {
                            eprintln!("atprov: {p}");
                        }
                    }
                    Err(cred(problems.last().expect("at least one problem")))
                }
            }
        }
        PkiCommand::Generate {
            ca,
            ca_cert,
            ca_key,
            cn,
            days,
            key,
            key_file,
            out,
            force,
        } => {
            crate::files::create_private_dir(&out)
                .map_err(|e| Failure::usage(format!("{}: cannot create it: {e}", out.display())))?;
            let g = if ca {
                generate::ca(&cn, days).map_err(generate_err)?
            } else {
                let (Some(cc), Some(ck)) = (ca_cert, ca_key) else {
                    return Err(Failure::usage(
                        "pki generate needs --ca (a new CA) or --ca-cert and --ca-key (a device certificate)",
                    ));
                };
                let read = |p: &Path| {
                    std::fs::read_to_string(p).map_err(|e| Failure::unreadable(p.display(), &e))
                };
                let key_pem = key_file.as_deref().map(read).transpose()?;
                generate::device(
                    &read(&cc)?,
                    &read(&ck)?,
                    &cn,
                    days,
                    key.into(),
                    key_pem.as_deref(),
                )
                .map_err(generate_err)?
            };
            let stem = if ca { "ca".to_string() } else { cn.clone() };
            crate::files::safe_component(&stem)
                .map_err(|e| Failure::usage(format!("--cn: {e}")))?;
            let cert_path = out.join(format!("{stem}.crt.pem"));
            let key_path = out.join(format!("{stem}.key.pem"));
            if !force {
                for p in [&key_path, &cert_path] {
                    if p.symlink_metadata().is_ok() {
                        return Err(Failure::usage(format!(
                            "{}: already exists; nothing was written (pass --force to replace it{})",
                            p.display(),
                            if ca {
                                ", which orphans every certificate the old CA issued"
                            } else {
                                ""
                            }
                        )));
                    }
                }
            }
            write_file(&key_path, g.key_pem.as_bytes(), true, force)?;
            write_file(&cert_path, g.cert_pem.as_bytes(), false, force)?;
            println!("{}", cert_path.display());
            println!("{}", key_path.display());
            Ok(())
        }
    }
}

/// Writes a file whole through [`crate::files::write`]; secrets are readable by their owner
/// only, and an existing file is replaced only when `replace`.
pub(super) fn write_file(
    path: &Path,
    bytes: &[u8],
    secret: bool,
    replace: bool,
) -> Result<(), Failure> {
    use crate::files::{Access, Existing};
    let access = if secret {
        Access::Private
    } else {
        Access::Public
    };
    let existing = if replace {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    crate::files::write(path, bytes, access, existing).map_err(|e| Failure::usage(e.to_string()))
}

fn encode(out: &Path, items: &[String], force: bool) -> Result<(), Failure> {
    if !items.len().is_multiple_of(2) {
        return Err(Failure::usage(
            "pki encode takes TYPE FILE pairs (TYPE: ca, cert or key)",
        ));
    }
    let mut inputs = Vec::new();
    for pair in items.chunks(2) {
        let t = ItemType::parse(&pair[0]).ok_or_else(|| {
            Failure::usage(format!(
                "`{}` is not an item type: use ca, cert or key",
                pair[0]
            ))
        })?;
        let bytes = std::fs::read(&pair[1]).map_err(|e| Failure::unreadable(&pair[1], &e))?;
        inputs.push((t, pair[1].clone(), bytes));
    }
    let bin = atpki::encode(&inputs).map_err(|e| Failure::usage(e.to_string()))?;
    write_file(out, &bin, items.chunks(2).any(|p| p[0] == "key"), force)?;
    println!(
        "{}: {} bytes, {} items",
        out.display(),
        bin.len(),
        inputs.len()
    );
    Ok(())
}

fn decode(bin: &Path, out: &Path, force: bool) -> Result<(), Failure> {
    let bytes = std::fs::read(bin).map_err(|e| Failure::unreadable(bin.display(), &e))?;
    let items =
        atpki::decode(&bytes).map_err(|e| Failure::usage(format!("{}: {e}", bin.display())))?;
    crate::files::create_private_dir(out)
        .map_err(|e| Failure::usage(format!("{}: {e}", out.display())))?;
    for it in &items {
        let p = out.join(format!("{}{}.pem", it.kind.name(), it.id));
        write_file(&p, &it.content, it.kind == ItemType::Key, force)?;
        println!("{}", p.display());
    }
    Ok(())
}

fn inspect(file: &Path, as_json: bool) -> Result<(), Failure> {
    let l = match load(file) {
        Ok(l) => l,
        // Empty or unknown bytes still have a size, a hash and a checksum.
        Err(LoadError::Empty(name)) | Err(LoadError::Unrecognised(name)) => {
            crate::pki::load::Loaded {
                bytes: std::fs::read(file).map_err(|e| Failure::unreadable(&name, &e))?,
                name,
                encoding: Encoding::Der,
                blocks: Vec::new(),
            }
        }
        Err(e) => return Err(load_err(e)),
    };
    let mut v = json!({
        "file": l.name,
        "size": l.bytes.len(),
        "sha256": l.sha256(),
        "qfupl_checksum": qfupl_hex(&l.bytes),
    });
    let certs: Vec<Value> = l
        .certificates()
        .filter_map(cert_info)
        .map(|c| serde_json::to_value(c).expect("plain data"))
        .collect();
    let kind = match l.encoding {
        Encoding::PkiBin => "pki_bin",
        _ if l.is_encrypted_key() => "encrypted_private_key",
        _ if l.private_key().is_some() => "private_key",
        _ if certs.len() > 1 => "chain",
        _ if certs.len() == 1 => "certificate",
        _ if l.bytes.is_empty() => "empty",
        _ => "unknown",
    };
    v["kind"] = json!(kind);
    if !certs.is_empty() {
        v["certificates"] = json!(certs);
    }
    if let Some((der, format)) = l.private_key() {
        v["key"] = match key_info_of_private(der, format) {
            Some((info, _)) => {
                json!({"algorithm": info.algorithm, "bits": info.bits, "format": format, "usable": true})
            }
            None => json!({"format": format, "usable": false}),
        };
    }
    if l.encoding == Encoding::PkiBin {
        let items = atpki::decode(&l.bytes).expect("recognised as a bin");
        v["items"] = json!(
            items
                .iter()
                .map(|it| json!({
                    "type": it.kind, "id": it.id, "size": it.content.len(),
                    "sha256": sha256_hex(&it.content),
                }))
                .collect::<Vec<_>>()
        );
    }
    if as_json {
        crate::render::json_pretty(&v);
        return Ok(());
    }
    println!("{}: {kind}, {} bytes", l.name, l.bytes.len());
    println!("  sha256          {}", v["sha256"].as_str().unwrap_or(""));
    println!(
        "  qfupl checksum  {}",
        v["qfupl_checksum"].as_str().unwrap_or("")
    );
    for c in l.certificates().filter_map(cert_info) {
        println!("  certificate     {}", c.subject);
        println!("    issuer        {}", c.issuer);
        println!("    valid         {} .. {}", c.not_before, c.not_after);
        println!(
            "    key           {}{}",
            c.key,
            if c.is_ca { " (CA)" } else { "" }
        );
        println!("    fingerprint   SHA256 {}", c.sha256_fingerprint);
    }
    if let Some(k) = v.get("key") {
        println!("  private key     {k}");
    }
    if let Some(items) = v.get("items").and_then(Value::as_array) {
        for it in items {
            println!(
                "  item            {} {} ({} bytes)",
                it["type"].as_str().unwrap_or(""),
                it["id"],
                it["size"]
            );
        }
    }
    Ok(())
}
