//! Aliyun IoT Platform device authentication (reference `cellular.md` §4):
//!
//! ```text
//! mqttClientId = clientId + "|securemode=<2|3>,signmethod=<m>[,timestamp=<t>]|"
//! mqttUsername = deviceName + "&" + productKey
//! content      = "clientId"+clientId + "deviceName"+deviceName + "productKey"+productKey [+ "timestamp"+t]
//! mqttPassword = hex(HMAC_m(deviceSecret, content))
//! ```
//!
//! and for dynamic registration `sign = hex(HMAC_m(productSecret, "deviceName"+dn+"productKey"+pk+"random"+r))`.
//! Only these parameters are signed; `securemode`, `signmethod` and the rest of the `|...|` block
//! are not. `timestamp` is signed if and only if it is in the client id.

use hmac::{Hmac, Mac};

/// The HMAC a signature uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// HMAC-MD5 (the platform's default).
    Hmacmd5,
    /// HMAC-SHA1.
    Hmacsha1,
    /// HMAC-SHA256.
    Hmacsha256,
}

impl Method {
    /// As written in a client id (`signmethod=hmacmd5`).
    pub fn name(self) -> &'static str {
        match self {
            Method::Hmacmd5 => "hmacmd5",
            Method::Hmacsha1 => "hmacsha1",
            Method::Hmacsha256 => "hmacsha256",
        }
    }

    /// As the HTTPS registration endpoint's `signMethod` parameter spells it.
    pub fn http_name(self) -> &'static str {
        match self {
            Method::Hmacmd5 => "HmacMD5",
            Method::Hmacsha1 => "HmacSHA1",
            Method::Hmacsha256 => "HmacSHA256",
        }
    }

    /// Parses either spelling, any case.
    pub fn parse(s: &str) -> Option<Method> {
        match s.to_ascii_lowercase().as_str() {
            "hmacmd5" => Some(Method::Hmacmd5),
            "hmacsha1" => Some(Method::Hmacsha1),
            "hmacsha256" => Some(Method::Hmacsha256),
            _ => None,
        }
    }

    /// Lower-case hex HMAC of `message` under `key`.
    pub fn sign(self, key: &[u8], message: &[u8]) -> String {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        let bytes = match self {
            Method::Hmacmd5 => run::<Hmac<md5::Md5>>(key, message),
            Method::Hmacsha1 => run::<Hmac<sha1::Sha1>>(key, message),
            Method::Hmacsha256 => run::<Hmac<sha2::Sha256>>(key, message),
        };
        crate::pki::load::hex(&bytes)
    }
}

/// A device's identity on the platform.
#[derive(Debug, Clone)]
pub struct Device<'a> {
    /// The product key.
    pub product_key: &'a str,
    /// The device name.
    pub device_name: &'a str,
}

/// What a module presents to the MQTT broker. The password is a credential: print it only when
/// asked to, never log it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MqttSignIn {
    #[serde(rename = "mqttClientId")]
    /// The MQTT client id, with its `|securemode=...|` block.
    pub client_id: String,
    #[serde(rename = "mqttUsername")]
    /// `deviceName&productKey`.
    pub username: String,
    #[serde(rename = "mqttPassword")]
    /// The signature, lower-case hex (a secret).
    pub password: String,
}

/// Problems with sign-in parameters, each naming the parameter.
pub fn check_parameters(device: &Device, client_id: &str) -> Result<(), super::CloudError> {
    let bad = |c: char| matches!(c, '|' | ',' | '&' | '"') || c.is_control();
    for (name, v) in [
        ("--product-key", device.product_key),
        ("--device-name", device.device_name),
        ("--client-id", client_id),
    ] {
        if v.is_empty() {
            return Err(super::CloudError::Parameter(format!("{name} is empty")));
        }
        if v.chars().any(bad) {
            return Err(super::CloudError::Parameter(format!(
                "{name} `{v}` contains | , & \" or a control character, which the platform's client id and username syntax cannot carry"
            )));
        }
    }
    if client_id.len() > 64 {
        return Err(super::CloudError::Parameter(format!(
            "--client-id is {} characters; the platform allows at most 64",
            client_id.len()
        )));
    }
    Ok(())
}

/// The content signed for a connect or HTTPS auth.
pub fn sign_content(device: &Device, client_id: &str, timestamp: Option<&str>) -> String {
    let mut s = format!(
        "clientId{client_id}deviceName{}productKey{}",
        device.device_name, device.product_key
    );
    if let Some(t) = timestamp {
        s.push_str("timestamp");
        s.push_str(t);
    }
    s
}

/// One-device-one-secret MQTT sign-in (`securemode` 2 over TLS, 3 over TCP).
pub fn mqtt_direct(
    device: &Device,
    device_secret: &str,
    client_id: &str,
    method: Method,
    timestamp: Option<&str>,
    securemode: u8,
) -> MqttSignIn {
    let mut block = format!("securemode={securemode},signmethod={}", method.name());
    if let Some(t) = timestamp {
        block.push_str(",timestamp=");
        block.push_str(t);
    }
    MqttSignIn {
        client_id: format!("{client_id}|{block}|"),
        username: format!("{}&{}", device.device_name, device.product_key),
        password: method.sign(
            device_secret.as_bytes(),
            sign_content(device, client_id, timestamp).as_bytes(),
        ),
    }
}

/// The content a dynamic registration signs with the product secret.
pub fn register_content(device: &Device, random: &str) -> String {
    format!(
        "deviceName{}productKey{}random{random}",
        device.device_name, device.product_key
    )
}

/// The HTTPS dynamic-registration request (`POST /auth/register/device`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Registration {
    /// The signature, lower-case hex.
    pub sign: String,
    #[serde(rename = "signMethod")]
    /// The signMethod parameter as sent.
    pub sign_method: String,
    /// `application/x-www-form-urlencoded` body.
    pub body: String,
    #[serde(rename = "bodyLength")]
    /// Bytes in the body (the module's AT+HTTPDATA length).
    pub body_length: usize,
}

/// The HTTPS dynamic-registration request of a device, signed with the product secret.
pub fn register_https(
    device: &Device,
    product_secret: &str,
    random: &str,
    method: Method,
) -> Registration {
    let sign = method.sign(
        product_secret.as_bytes(),
        register_content(device, random).as_bytes(),
    );
    let body = format!(
        "productKey={}&deviceName={}&random={random}&sign={sign}&signMethod={}",
        url_encode(device.product_key),
        url_encode(device.device_name),
        method.http_name()
    );
    Registration {
        sign,
        sign_method: method.http_name().into(),
        body_length: body.len(),
        body,
    }
}

/// MQTT dynamic registration: `register` (pre-registered device, securemode 2) or `regnwl`
/// (no pre-registration, securemode -2, optional instance id).
pub fn register_mqtt(
    device: &Device,
    product_secret: &str,
    random: &str,
    method: Method,
    whitelist_free: bool,
    instance_id: Option<&str>,
) -> MqttSignIn {
    let mut block = if whitelist_free {
        format!(
            "securemode=-2,authType=regnwl,random={random},signmethod={}",
            method.name()
        )
    } else {
        format!(
            "securemode=2,authType=register,random={random},signmethod={}",
            method.name()
        )
    };
    if let Some(i) = instance_id.filter(|_| whitelist_free) {
        block.push_str(",instanceId=");
        block.push_str(i);
    }
    MqttSignIn {
        client_id: format!("{}|{block}|", device.device_name),
        username: format!("{}&{}", device.device_name, device.product_key),
        password: method.sign(
            product_secret.as_bytes(),
            register_content(device, random).as_bytes(),
        ),
    }
}

/// Percent-encoding of form values (RFC 3986 unreserved characters pass).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_vector() {
        let d = Device {
            product_key: "k1hipglLdjU",
            device_name: "868488076506128",
        };
        let s = mqtt_direct(
            &d,
            "fef32adf6dad46c2c7cbf335d3a7b021",
            "868488076506128",
            Method::Hmacmd5,
            None,
            3,
        );
        assert_eq!(s.password, "0f655b12adf519b9a7a2b0a990f398b6");
        assert_eq!(
            s.client_id,
            "868488076506128|securemode=3,signmethod=hmacmd5|"
        );
    }

    #[test]
    fn parameters_that_break_the_syntax_are_refused() {
        let d = Device {
            product_key: "pk",
            device_name: "a|b",
        };
        assert!(
            check_parameters(&d, "c")
                .unwrap_err()
                .to_string()
                .contains("--device-name")
        );
        let d = Device {
            product_key: "pk",
            device_name: "dn",
        };
        assert!(
            check_parameters(&d, &"x".repeat(65))
                .unwrap_err()
                .to_string()
                .contains("64")
        );
        assert!(check_parameters(&d, "ok").is_ok());
    }

    #[test]
    fn methods_parse_both_spellings() {
        assert_eq!(Method::parse("HmacMD5"), Some(Method::Hmacmd5));
        assert_eq!(Method::parse("hmacsha256"), Some(Method::Hmacsha256));
        assert_eq!(Method::parse("sha1"), None);
        assert_eq!(url_encode("a b&c"), "a%20b%26c");
    }
}
