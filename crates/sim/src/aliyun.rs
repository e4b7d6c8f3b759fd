//! The emulated Aliyun IoT Platform's side of device authentication, written from the
//! platform's documentation (reference cellular.md §4) and checked against the published
//! vectors (`shared/vectors/cloud/aliyun.json`) by its own tests. It shares no code with the
//! host's signing (`cloud::aliyun`): a bug there must make the emulated platform refuse, not
//! agree.

use hmac::{Hmac, Mac};

/// Lower-case hex HMAC of `content` with `key`; `method` as a device names it (`hmacmd5`,
/// `HmacSHA1`, ...). `None` for a method the platform does not know.
pub fn hmac_hex(method: &str, key: &[u8], content: &[u8]) -> Option<String> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], content: &[u8]) -> Vec<u8> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
        m.update(content);
        m.finalize().into_bytes().to_vec()
    }
    let tag = match method.to_ascii_lowercase().as_str() {
        "hmacmd5" => run::<Hmac<md5::Md5>>(key, content),
        "hmacsha1" => run::<Hmac<sha1::Sha1>>(key, content),
        "hmacsha256" => run::<Hmac<sha2::Sha256>>(key, content),
        _ => return None,
    };
    Some(tag.iter().map(|b| format!("{b:02x}")).collect())
}

/// The `|k=v,...|` block of an MQTT client id as (client id, parameters).
pub fn client_id_block(mqtt_client_id: &str) -> (&str, Vec<(&str, &str)>) {
    let Some((id, rest)) = mqtt_client_id.split_once('|') else {
        return (mqtt_client_id, Vec::new());
    };
    let params = rest
        .trim_end_matches('|')
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    (id, params)
}

fn param<'a>(params: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// Whether the platform accepts a one-device-one-secret login (§4.3): the user name is
/// `deviceName&productKey`, the password the HMAC of `clientId..deviceName..productKey..
/// [timestamp..]` with the device secret.
pub fn login_ok(device: &(String, String, String), client: &str, user: &str, pass: &str) -> bool {
    let (pk, dn, secret) = device;
    let (cid, params) = client_id_block(client);
    if params.is_empty() || user != format!("{dn}&{pk}") {
        return false;
    }
    let method = param(&params, "signmethod").unwrap_or("hmacmd5");
    let mut content = format!("clientId{cid}deviceName{dn}productKey{pk}");
    if let Some(ts) = param(&params, "timestamp") {
        content.push_str(&format!("timestamp{ts}"));
    }
    hmac_hex(method, secret.as_bytes(), content.as_bytes())
        .is_some_and(|want| want.eq_ignore_ascii_case(pass))
}

/// The device named by an MQTT dynamic registration (§4.5) the platform accepts with
/// `product` (product key, product secret): `Some((product key, device name))`.
pub fn mqtt_registration_ok(
    product: &(String, String),
    client: &str,
    user: &str,
    pass: &str,
) -> Option<(String, String)> {
    let (known_pk, product_secret) = product;
    let (dn, params) = client_id_block(client);
    if param(&params, "authType") != Some("register") {
        return None;
    }
    let (user_dn, pk) = user.split_once('&')?;
    if user_dn != dn || pk != known_pk {
        return None;
    }
    let random = param(&params, "random")?;
    let method = param(&params, "signmethod").unwrap_or("hmacmd5");
    let content = format!("deviceName{dn}productKey{pk}random{random}");
    let want = hmac_hex(method, product_secret.as_bytes(), content.as_bytes())?;
    want.eq_ignore_ascii_case(pass)
        .then(|| (pk.to_string(), dn.to_string()))
}

/// A form body (`application/x-www-form-urlencoded`), percent-decoded.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Whether an HTTPS registration form (§4.5) is signed with `product_secret`.
pub fn https_registration_ok(form: &[(String, String)], product_secret: &str) -> bool {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(pk), Some(dn), Some(random), Some(sign)) = (
        get("productKey"),
        get("deviceName"),
        get("random"),
        get("sign"),
    ) else {
        return false;
    };
    let method = get("signMethod").unwrap_or("hmacmd5");
    let content = format!("deviceName{dn}productKey{pk}random{random}");
    hmac_hex(method, product_secret.as_bytes(), content.as_bytes())
        .is_some_and(|want| want.eq_ignore_ascii_case(sign))
}

/// Whether an HTTPS sign-in form (§4.4) is signed with the device's secret.
pub fn https_auth_ok(form: &[(String, String)], device: &(String, String, String)) -> bool {
    let (pk, dn, secret) = device;
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("productKey") != Some(pk) || get("deviceName") != Some(dn) {
        return false;
    }
    let (Some(cid), Some(sign)) = (get("clientId"), get("sign")) else {
        return false;
    };
    let method = get("signmethod").unwrap_or("hmacmd5");
    let mut content = format!("clientId{cid}deviceName{dn}productKey{pk}");
    if let Some(ts) = get("timestamp") {
        content.push_str(&format!("timestamp{ts}"));
    }
    hmac_hex(method, secret.as_bytes(), content.as_bytes())
        .is_some_and(|want| want.eq_ignore_ascii_case(sign))
}

/// The secret the emulated platform issues to a registered device: stable per product and
/// name, so the emulated broker accepts it afterwards.
pub fn issued_secret(product_secret: &str, device_name: &str) -> String {
    hmac_hex(
        "hmacmd5",
        product_secret.as_bytes(),
        format!("secret{device_name}").as_bytes(),
    )
    .expect("a known method")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/vectors/cloud/aliyun.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_published_logins_are_accepted_and_a_wrong_one_refused() {
        let v = vectors();
        for t in v["mqtt_direct"].as_array().unwrap() {
            let s = |k: &str| t[k].as_str().unwrap().to_string();
            let device = (s("productKey"), s("deviceName"), s("deviceSecret"));
            let (client, user, pass) = (s("mqttClientId"), s("mqttUsername"), s("mqttPassword"));
            assert!(login_ok(&device, &client, &user, &pass), "{t}");
            assert!(login_ok(&device, &client, &user, &pass.to_uppercase()));
            let wrong = (device.0.clone(), device.1.clone(), "not-the-secret".into());
            assert!(!login_ok(&wrong, &client, &user, &pass));
        }
    }

    #[test]
    fn the_published_registration_is_accepted_after_percent_decoding() {
        let v = vectors();
        for t in v["dynreg_http"].as_array().unwrap() {
            let f = form(t["body"].as_str().unwrap().as_bytes());
            let secret = t["productSecret"].as_str().unwrap();
            assert!(https_registration_ok(&f, secret), "{t}");
            assert!(!https_registration_ok(&f, "wrong"));
        }
        // A device name Aliyun allows (`:` and `@`) arrives percent-encoded.
        let body = b"deviceName=dev%3A01%40lab&productKey=pk";
        let f = form(body);
        assert_eq!(f[0], ("deviceName".into(), "dev:01@lab".into()));
    }
}
