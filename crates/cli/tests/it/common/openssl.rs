//! Test credentials made by `openssl`, not by atprov, in the shape real clouds use (AWS IoT):
//! the module stores the root that signed the broker's certificate (`ca.pem`), while the device
//! certificate comes from a different issuing CA (`dev-ca.pem`) that only the broker trusts.
//!
//! Files written into the directory:
//! - `ca.pem`: the server root (what `--ca` gives the module); `ca.key` its key;
//! - `srv-int.pem`, `server.pem`, `server.key`, `server-chain.pem` (leaf then intermediate):
//!   the broker's certificate chain, for `localhost`, `127.0.0.1` and the emulated host names;
//! - `dev-ca.pem`, `dev-ca.key`: the device-issuing CA;
//! - `dev.pem`, `dev.key`: a device certificate (CN `thing-1`, clientAuth) and its key;
//! - `rogue-ca.pem`, `rogue.pem`, `rogue.key`: a device certificate from a CA nobody trusts;
//! - `other-root.pem`: a root that signed nothing the broker presents.

use std::path::Path;
use std::process::Command;

/// The key algorithm of every key in the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    P256,
    Rsa2048,
}

const SCRIPT: &str = r#"
set -euo pipefail
cd "$1"
if [ "$2" = rsa ]; then
  key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key" 2>/dev/null; }
else
  key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"; }
fi
sign() { openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 30 -extfile "$3" -out "$1.pem" 2>/dev/null; }
root() { key "$1"; openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 30 -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.pem"; }
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' > ca.ext
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,DNS:broker.test,DNS:mqtt.emulated.atprov,DNS:abc-ats.iot.eu-west-1.amazonaws.com\n' > srv.ext
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > cli.ext
root ca "Test Server Root"
key srv-int; openssl req -new -key srv-int.key -subj "/CN=Test Server Int" -out srv-int.csr; sign srv-int ca ca.ext
key server;  openssl req -new -key server.key -subj "/CN=localhost" -out server.csr; sign server srv-int srv.ext
cat server.pem srv-int.pem > server-chain.pem
root dev-ca "Test Device CA"
key dev;     openssl req -new -key dev.key -subj "/CN=thing-1" -out dev.csr; sign dev dev-ca cli.ext
root rogue-ca "Rogue CA"
key rogue;   openssl req -new -key rogue.key -subj "/CN=thing-1" -out rogue.csr; sign rogue rogue-ca cli.ext
root other-root "Some Other Root"
rm -f ./*.csr ./*.ext ./*.srl
chmod 600 ./*.key
"#;

/// Writes the bundle described in the module docs into `dir`.
pub fn aws_shaped(dir: &Path, keys: Keys) {
    let out = Command::new("bash")
        .args(["-c", SCRIPT, "openssl-pki"])
        .arg(dir)
        .arg(match keys {
            Keys::P256 => "ec",
            Keys::Rsa2048 => "rsa",
        })
        .output()
        .expect("run openssl (is it installed?)");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
