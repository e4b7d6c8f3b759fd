//! `atprov sign aliyun --json` against every vector in `shared/vectors/cloud/aliyun.json`: each
//! field the vector states is reproduced exactly (hex compared without regard to case, as the
//! platform does).

use std::path::Path;

use crate::common::atprov;
use serde_json::Value;

fn vectors() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/cloud/aliyun.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn run(args: &[String]) -> Value {
    run_with_stdin(args, "")
}

/// Runs atprov with `stdin` on its standard input (how secrets are passed with `FILE = -`).
fn run_with_stdin(args: &[String], stdin: &str) -> Value {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (code, out, err) = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(code, 0, "atprov {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn same(field: &str, expected: &Value, got: &Value, vector: &Value) {
    let (e, g) = (expected.as_str(), got.as_str());
    let equal = match (e, g) {
        (Some(e), Some(g)) if field == "mqttPassword" || field == "sign" => {
            e.eq_ignore_ascii_case(g)
        }
        _ => expected == got,
    };
    assert!(
        equal,
        "{field}: expected {expected}, got {got} for {vector}"
    );
}

#[test]
fn every_mqtt_direct_vector_is_reproduced() {
    let v = vectors();
    let list = v["mqtt_direct"].as_array().unwrap();
    assert!(!list.is_empty());
    for vector in list {
        let s = |k: &str| vector[k].as_str().unwrap().to_string();
        // securemode is not signed; take it from the vector's client id.
        let client = s("mqttClientId");
        let securemode = client
            .split("securemode=")
            .nth(1)
            .and_then(|r| r.split([',', '|']).next())
            .unwrap()
            .to_string();
        let mut args = vec![
            "sign".into(),
            "aliyun".into(),
            "--json".into(),
            "--product-key".into(),
            s("productKey"),
            "--device-name".into(),
            s("deviceName"),
            "--device-secret-file".into(),
            "-".into(),
            "--client-id".into(),
            s("clientId"),
            "--method".into(),
            s("signmethod").to_ascii_lowercase(),
            "--securemode".into(),
            securemode,
        ];
        if let Some(t) = vector["timestamp"].as_str() {
            args.push("--timestamp".into());
            args.push(t.into());
        }
        let got = run_with_stdin(&args, &format!("{}\n", s("deviceSecret")));
        for field in [
            "mqttClientId",
            "mqttUsername",
            "mqttPassword",
            "signContent",
        ] {
            same(field, &vector[field], &got[field], vector);
        }
    }
}

#[test]
fn every_https_registration_vector_is_reproduced() {
    let v = vectors();
    let list = v["dynreg_http"].as_array().unwrap();
    assert!(!list.is_empty());
    for vector in list {
        let s = |k: &str| vector[k].as_str().unwrap().to_string();
        // The body names the product and device.
        let body = s("body");
        let param = |name: &str| {
            body.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap()
                .to_string()
        };
        let url = s("url");
        let region = url
            .strip_prefix("https://iot-auth.")
            .and_then(|r| r.split(".aliyuncs.com").next())
            .unwrap()
            .to_string();
        let args = vec![
            "sign".into(),
            "aliyun".into(),
            "--json".into(),
            "--register".into(),
            "https".into(),
            "--product-key".into(),
            param("productKey"),
            "--device-name".into(),
            param("deviceName"),
            "--product-secret-file".into(),
            "-".into(),
            "--random".into(),
            s("random"),
            "--method".into(),
            s("signMethodParam").to_ascii_lowercase(),
            "--region".into(),
            region,
        ];
        let got = run_with_stdin(&args, &s("productSecret"));
        for (field, ours) in [
            ("url", "url"),
            ("signContent", "signContent"),
            ("sign", "sign"),
            ("body", "body"),
            ("bodyLength", "bodyLength"),
            ("signMethodParam", "signMethod"),
        ] {
            same(field, &vector[field], &got[ours], vector);
        }
    }
}

#[test]
fn a_missing_secret_is_one_line_naming_the_flag() {
    let (code, out, err) = atprov(&[
        "sign",
        "aliyun",
        "--product-key",
        "pk",
        "--device-name",
        "dn",
    ]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--device-secret-file"), "{err}");
}

#[test]
fn a_secret_on_the_command_line_is_refused_and_files_and_env_work() {
    // Regression: `--device-secret S` showed the secret to every `ps` on the machine.
    let (code, out, err) = atprov(&[
        "sign",
        "aliyun",
        "--product-key",
        "pk",
        "--device-name",
        "dn",
        "--device-secret",
        "s3cr3t",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("every `ps`") && err.contains("--device-secret-file"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "s3cr3t\n").unwrap();
    let by_file = run(&[
        "sign".into(),
        "aliyun".into(),
        "--json".into(),
        "--product-key".into(),
        "pk".into(),
        "--device-name".into(),
        "dn".into(),
        "--device-secret-file".into(),
        file.display().to_string(),
    ]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args([
            "sign",
            "aliyun",
            "--json",
            "--product-key",
            "pk",
            "--device-name",
            "dn",
        ])
        .env("ATPROV_DEVICE_SECRET", "s3cr3t")
        .output()
        .unwrap();
    let by_env: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by_file["mqttPassword"], by_env["mqttPassword"]);
}

#[test]
fn an_aws_authorizer_username_carries_the_openssl_signature() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let key = fixtures.join("authorizer-signing-key.pem");
    // Made with: printf tok-123 | openssl dgst -sha256 -sign KEY | openssl base64 -A
    let expected =
        std::fs::read_to_string(fixtures.join("authorizer-signature-tok-123.b64")).unwrap();
    let got = run_with_stdin(
        &[
            "sign".into(),
            "aws-authorizer".into(),
            "--json".into(),
            "--name".into(),
            "dev1".into(),
            "--authorizer".into(),
            "MyAuth".into(),
            "--token-key-name".into(),
            "tok".into(),
            "--token-file".into(),
            "-".into(),
            "--signing-key".into(),
            key.display().to_string(),
        ],
        "tok-123\n",
    );
    assert_eq!(got["signature"], expected.trim());
    let encoded = expected
        .trim()
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    assert_eq!(
        got["username"],
        format!(
            "dev1?x-amz-customauthorizer-name=MyAuth&x-amz-customauthorizer-signature={encoded}&tok=tok-123"
        )
    );
    assert_eq!(got["alpn"], "mqtt");
}

#[test]
fn an_ec_key_cannot_sign_for_an_authorizer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = atprov_core::pki::generate::ca("x", 1).unwrap();
    let key = dir.path().join("ec.key");
    std::fs::write(&key, ca.key_pem).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "v\n").unwrap();
    let (code, _, err) = atprov(&[
        "sign",
        "aws-authorizer",
        "--name",
        "d",
        "--authorizer",
        "A",
        "--token-key-name",
        "t",
        "--token-file",
        token.to_str().unwrap(),
        "--signing-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not an RSA key"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
