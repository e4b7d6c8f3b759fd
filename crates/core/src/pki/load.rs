//! Loading credential files and saying what they are: PEM (one or many certificates; keys in
//! PKCS#1, PKCS#8 or SEC1; CRLF or LF; with or without a final newline), DER, or a PKI bin.

use std::path::Path;

use rustls_pki_types::pem::SectionKind;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

/// The encoding of a private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyFormat {
    /// `BEGIN RSA PRIVATE KEY`.
    Pkcs1,
    /// `BEGIN PRIVATE KEY`.
    Pkcs8,
    /// `BEGIN EC PRIVATE KEY`.
    Sec1,
}

/// One object found in a file.
#[derive(Clone, PartialEq, Eq)]
pub enum Block {
    /// A certificate, DER.
    Certificate(Vec<u8>),
    /// A private key.
    PrivateKey {
        /// The key, DER.
        der: Vec<u8>,
        /// Its encoding.
        format: KeyFormat,
    },
    /// A passphrase-protected key (modules take none).
    EncryptedKey,
    /// Some other PEM block, by its label.
    Other(String),
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Block::Certificate(d) => write!(f, "Certificate({} bytes)", d.len()),
            Block::PrivateKey { der, format } => {
                write!(f, "PrivateKey({format:?}, {} bytes, not shown)", der.len())
            }
            Block::EncryptedKey => write!(f, "EncryptedKey"),
            Block::Other(k) => write!(f, "Other({k})"),
        }
    }
}

/// How the file is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// PEM text.
    Pem,
    /// Binary DER.
    Der,
    /// An ESP-AT PKI bin.
    PkiBin,
}

/// A credential file, read and recognised.
#[derive(Clone)]
pub struct Loaded {
    /// How problems name it (its path).
    pub name: String,
    /// Its bytes, as read.
    pub bytes: Vec<u8>,
    /// How it is encoded.
    pub encoding: Encoding,
    /// What it holds.
    pub blocks: Vec<Block>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("name", &self.name)
            .field("size", &self.bytes.len())
            .field("encoding", &self.encoding)
            .field("blocks", &self.blocks)
            .finish()
    }
}

impl Loaded {
    /// The certificates it holds, DER, in order.
    pub fn certificates(&self) -> impl Iterator<Item = &[u8]> {
        self.blocks.iter().filter_map(|b| match b {
            Block::Certificate(d) => Some(d.as_slice()),
            _ => None,
        })
    }

    /// The first private key it holds.
    pub fn private_key(&self) -> Option<(&[u8], KeyFormat)> {
        self.blocks.iter().find_map(|b| match b {
            Block::PrivateKey { der, format } => Some((der.as_slice(), *format)),
            _ => None,
        })
    }

    /// Whether it holds an encrypted key.
    pub fn is_encrypted_key(&self) -> bool {
        self.blocks.contains(&Block::EncryptedKey)
    }

    /// SHA-256 of its bytes, lower-case hex.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.bytes)
    }
}

/// Why a file cannot be used at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("{0}: no such file")]
    /// No such file.
    Missing(String),
    #[error("{0}: cannot read it: {1}")]
    /// The file cannot be read (and why).
    Unreadable(String, String),
    #[error("{0}: the file is empty")]
    /// The file is empty.
    Empty(String),
    #[error("{0}: neither a PEM file, a DER certificate or key, nor a PKI bin")]
    /// Neither PEM, DER nor a PKI bin.
    Unrecognised(String),
    #[error("{0}: broken PEM: {1}")]
    /// PEM that does not decode (and why).
    BadPem(String, String),
}

/// SHA-256 of `bytes`, lower-case hex: how atprov names file contents.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads and recognises a file.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::Missing(name.clone()),
        _ => LoadError::Unreadable(name.clone(), e.to_string()),
    })?;
    recognise(&name, bytes)
}

/// Recognises the bytes of a file called `name`.
pub fn recognise(name: &str, bytes: Vec<u8>) -> Result<Loaded, LoadError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(LoadError::Empty(name.to_string()));
    }
    if bytes.starts_with(&super::atpki::MAGIC) && super::atpki::decode(&bytes).is_ok() {
        return Ok(Loaded {
            name: name.into(),
            bytes,
            encoding: Encoding::PkiBin,
            blocks: Vec::new(),
        });
    }
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let blocks = pem_blocks(name, &bytes)?;
        return Ok(Loaded {
            name: name.into(),
            bytes,
            encoding: Encoding::Pem,
            blocks,
        });
    }
    if let Some(block) = der_block(&bytes) {
        return Ok(Loaded {
            name: name.into(),
            bytes,
            encoding: Encoding::Der,
            blocks: vec![block],
        });
    }
    Err(LoadError::Unrecognised(name.to_string()))
}

fn pem_blocks(name: &str, bytes: &[u8]) -> Result<Vec<Block>, LoadError> {
    let text = String::from_utf8_lossy(bytes);
    let mut blocks = Vec::new();
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        blocks.push(Block::EncryptedKey);
        // The encrypted section cannot be parsed further; certificates beside it still can.
        let kept: String = strip_encrypted(&text);
        return Ok(blocks
            .into_iter()
            .chain(parse_sections(name, kept.as_bytes())?)
            .collect());
    }
    blocks.extend(parse_sections(name, bytes)?);
    if blocks.is_empty() {
        return Err(LoadError::BadPem(
            name.into(),
            "no PEM section atprov knows".into(),
        ));
    }
    Ok(blocks)
}

fn strip_encrypted(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with("-----BEGIN ")
            && (line.contains("ENCRYPTED") || line.contains("PRIVATE KEY"))
        {
            skipping = true;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
        if skipping && line.starts_with("-----END ") {
            skipping = false;
        }
    }
    out
}

fn parse_sections(name: &str, bytes: &[u8]) -> Result<Vec<Block>, LoadError> {
    let mut reader = std::io::BufReader::new(bytes);
    let mut blocks = Vec::new();
    loop {
        match rustls_pki_types::pem::from_buf(&mut reader) {
            Ok(None) => break,
            Ok(Some((kind, der))) => blocks.push(match kind {
                SectionKind::Certificate => Block::Certificate(der),
                SectionKind::RsaPrivateKey => Block::PrivateKey {
                    der,
                    format: KeyFormat::Pkcs1,
                },
                SectionKind::PrivateKey => Block::PrivateKey {
                    der,
                    format: KeyFormat::Pkcs8,
                },
                SectionKind::EcPrivateKey => Block::PrivateKey {
                    der,
                    format: KeyFormat::Sec1,
                },
                other => Block::Other(format!("{other:?}")),
            }),
            Err(e) => return Err(LoadError::BadPem(name.into(), pem_problem(&e))),
        }
    }
    Ok(blocks)
}

/// A PEM decoding error as a sentence (the crate's own forms dump bytes).
fn pem_problem(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "a section has no `-----END {}-----` line (is the file cut short?)",
            text(end_marker)
        ),
        Error::IllegalSectionStart { line } => {
            format!("`{}` does not start a PEM section properly", text(line))
        }
        Error::Base64Decode(why) => format!("a section's base64 does not decode ({why})"),
        Error::Io(e) => format!("cannot read it ({e})"),
        Error::NoItemsFound => "no PEM section in it".into(),
        Error::SectionTooLarge => "a section is larger than 256 MB".into(),
        _ => "it does not decode as PEM".into(),
    }
}

fn der_block(bytes: &[u8]) -> Option<Block> {
    if let Ok((rest, _)) = X509Certificate::from_der(bytes)
        && rest.is_empty()
    {
        return Some(Block::Certificate(bytes.to_vec()));
    }
    for format in [KeyFormat::Pkcs8, KeyFormat::Pkcs1, KeyFormat::Sec1] {
        if signing_key(bytes, format).is_some() {
            return Some(Block::PrivateKey {
                der: bytes.to_vec(),
                format,
            });
        }
    }
    None
}

/// A private key as rustls can use it (RSA, ECDSA P-256/P-384, Ed25519).
pub fn signing_key(
    der: &[u8],
    format: KeyFormat,
) -> Option<std::sync::Arc<dyn rustls::sign::SigningKey>> {
    let key: PrivateKeyDer<'_> = match format {
        KeyFormat::Pkcs1 => PrivatePkcs1KeyDer::from(der.to_vec()).into(),
        KeyFormat::Pkcs8 => PrivatePkcs8KeyDer::from(der.to_vec()).into(),
        KeyFormat::Sec1 => PrivateSec1KeyDer::from(der.to_vec()).into(),
    };
    rustls::crypto::ring::sign::any_supported_type(&key).ok()
}
