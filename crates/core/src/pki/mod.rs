//! Credentials: loading and validating certificates and keys, the ESP-AT PKI bin codec, the
//! Quectel upload checksum, and generating throw-away CAs and device certificates. Nothing here
//! touches a port; everything is checked on the host before a module is.

pub mod atpki;
pub mod check;
pub mod checksum;
pub mod describe;
pub mod generate;
pub mod load;

/// A checked bundle: the exact bytes to write to a module. Its `Debug` never shows key
/// material, and nothing in atprov logs the key.
#[derive(Clone)]
pub struct Credentials {
    /// The server CA file, as written to the module.
    pub ca: Vec<u8>,
    /// The device certificate file, as written to the module.
    pub cert: Vec<u8>,
    key: Vec<u8>,
}

impl Credentials {
    /// A bundle of checked bytes.
    pub fn new(ca: Vec<u8>, cert: Vec<u8>, key: Vec<u8>) -> Credentials {
        Credentials { ca, cert, key }
    }

    /// The private key's bytes, for the store that writes them.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// SHA-256 of the certificate file, lower-case hex: how journals name a credential.
    pub fn cert_sha256(&self) -> String {
        load::sha256_hex(&self.cert)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("ca", &format_args!("{} bytes", self.ca.len()))
            .field("cert", &format_args!("{} bytes", self.cert.len()))
            .field("key", &format_args!("{} bytes, not shown", self.key.len()))
            .finish()
    }
}
