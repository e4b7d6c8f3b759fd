//! AWS IoT Core custom authorizers over MQTT (reference `cellular.md` §5.4): TLS to the
//! endpoint on 443 with ALPN `mqtt`, and a username that carries the authorizer's name, the
//! token and its signature:
//!
//! ```text
//! NAME?x-amz-customauthorizer-name=A&x-amz-customauthorizer-signature=URLENC(base64(RSA-SHA256(token)))&KEY=URLENC(token)
//! ```

use base64::Engine as _;

use super::CloudError;
use super::aliyun::url_encode;
use crate::pki::load::KeyFormat;

/// Signs `token` with an RSA private key (PKCS#1 or PKCS#8 DER): base64 of the RSA-SHA256
/// (PKCS#1 v1.5) signature, as `openssl dgst -sha256 -sign key | openssl base64` makes it.
pub fn sign_token(key_der: &[u8], format: KeyFormat, token: &str) -> Result<String, CloudError> {
    use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    let pair = match format {
        KeyFormat::Pkcs8 => RsaKeyPair::from_pkcs8(key_der),
        KeyFormat::Pkcs1 => RsaKeyPair::from_der(key_der),
        KeyFormat::Sec1 => {
            return Err(CloudError::Key(
                "an EC key cannot sign for a custom authorizer: AWS wants RSA (2048 bits or more)"
                    .into(),
            ));
        }
    }
    .map_err(|e| {
        CloudError::Key(if e.to_string().contains("WrongAlgorithm") {
            "this is not an RSA key (an EC key?): AWS custom authorizers verify RSA signatures (2048 bits or more)".to_string()
        } else {
            format!("not a usable RSA private key ({e}); AWS wants RSA, 2048 bits or more")
        })
    })?;
    if pair.public().modulus_len() < 256 {
        return Err(CloudError::Key(format!(
            "the RSA key has {} bits; AWS wants 2048 or more",
            pair.public().modulus_len() * 8
        )));
    }
    let mut sig = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        token.as_bytes(),
        &mut sig,
    )
    .map_err(|_| CloudError::Key("RSA signing failed".to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sig))
}

/// The MQTT username of a custom-authorizer connect.
pub fn authorizer_username(
    name: &str,
    authorizer: &str,
    signature_b64: &str,
    token_key: &str,
    token: &str,
) -> String {
    format!(
        "{name}?x-amz-customauthorizer-name={}&x-amz-customauthorizer-signature={}&{}={}",
        url_encode(authorizer),
        url_encode(signature_b64),
        url_encode(token_key),
        url_encode(token)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_username_url_encodes_the_signature_and_token() {
        let u = authorizer_username("dev", "MyAuth", "ab+/c=", "token", "x y");
        assert_eq!(
            u,
            "dev?x-amz-customauthorizer-name=MyAuth&x-amz-customauthorizer-signature=ab%2B%2Fc%3D&token=x%20y"
        );
    }
}
