//! The real network: `atprov provision` over a PTY against `atprov sim ... --broker`, whose
//! module connects to Debian's mosquitto with a real TLS client built from what it stores.
//! mosquitto and rustls judge: the server chain against the stored root, the device
//! certificate against the broker's own device CA, the password, the ACL.

use std::path::Path;

use crate::common::mosquitto::{Mosquitto, Setup};
use crate::common::{SimProcess, atprov, openssl};

fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    openssl::aws_shaped(dir.path(), openssl::Keys::P256);
    dir
}

fn job(dir: &Path, port: u16, extra: &str) -> String {
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[credentials]\nca = \"ca.pem\"\ncert = \"dev.pem\"\nkey = \"dev.key\"\n\
             [wifi]\nssid = \"atprov-lab\"\npassword = \"correct horse battery\"\n\
             [mqtt]\nhost = \"localhost\"\nport = {port}\nclient_id = \"thing-1\"\n[smoke]\ntimeout = \"5s\"\n{extra}"
        ),
    )
    .unwrap();
    job.display().to_string()
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or("")
}

#[test]
fn esp32_provisions_against_mosquitto_and_a_host_subscriber_sees_the_smoke_message() {
    let d = pki();
    let broker = Mosquitto::mutual_tls(d.path());
    let sim = SimProcess::start("esp32-at", &["--broker", &broker.addr()]);
    let sub = broker.subscriber("atprov/+/smoke", d.path());
    let (code, out, err) = atprov(&[
        "provision",
        "--port",
        &sim.path,
        "--job",
        &job(d.path(), broker.port, ""),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}\n{}", broker.log());
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let seen = sub.wait();
    let unit = report["unit_id"].as_str().unwrap();
    assert!(
        seen.contains(&format!("atprov/{unit}/smoke {{\"atprov\":\"smoke\"")),
        "mosquitto_sub saw: {seen}"
    );
    // mosquitto took the device certificate's CN as the user name.
    assert!(broker.log().contains("thing-1"), "{}", broker.log());
}

#[test]
fn a_stored_ca_that_did_not_sign_the_broker_is_refused_by_the_module() {
    let d = pki();
    let broker = Mosquitto::mutual_tls(d.path());
    let sim = SimProcess::start("esp32-at", &["--broker", &broker.addr()]);
    let (code, _, err) = atprov(&[
        "provision",
        "--port",
        &sim.path,
        "--job",
        &job(d.path(), broker.port, ""),
        "--ca",
        d.path().join("other-root.pem").to_str().unwrap(),
    ]);
    assert_eq!(code, 13, "{err}");
    assert!(last_line(&err).contains("not trusted"), "{err}");
}

#[test]
fn a_device_certificate_from_a_ca_the_broker_does_not_trust_is_refused() {
    let d = pki();
    let broker = Mosquitto::mutual_tls(d.path());
    let sim = SimProcess::start("esp32-at", &["--broker", &broker.addr()]);
    let (code, _, err) = atprov(&[
        "provision",
        "--port",
        &sim.path,
        "--job",
        &job(d.path(), broker.port, ""),
        "--cert",
        d.path().join("rogue.pem").to_str().unwrap(),
        "--key",
        d.path().join("rogue.key").to_str().unwrap(),
    ]);
    assert_eq!(code, 13, "{err}");
    assert!(
        broker.log().contains("certificate verify failed"),
        "{}",
        broker.log()
    );
}

#[test]
fn an_acl_that_denies_the_smoke_topic_fails_the_smoke_test() {
    let d = pki();
    let broker = Mosquitto::start(Setup {
        pki: d.path(),
        acl: Some("user thing-1\ntopic read atprov/#\n"),
        passwords: &[],
    });
    let sim = SimProcess::start("esp32-at", &["--broker", &broker.addr()]);
    let (code, _, err) = atprov(&[
        "provision",
        "--port",
        &sim.path,
        "--job",
        &job(d.path(), broker.port, ""),
    ]);
    assert_eq!(code, 14, "{err}");
    assert!(last_line(&err).contains("did not come back"), "{err}");
    assert!(broker.log().contains("Denied PUBLISH"), "{}", broker.log());
}

/// `atprov preflight --json` with the job and extra flags.
fn preflight(job: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["preflight", "--job", job, "--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = atprov(&args);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\n{err}"));
    (code, v, err)
}

#[test]
fn preflight_passes_with_good_credentials_and_names_each_failure() {
    let d = pki();
    let broker = Mosquitto::mutual_tls(d.path());
    let job = job(d.path(), broker.port, "");
    let (code, v, err) = preflight(&job, &[]);
    assert_eq!(code, 0, "{err}\n{}", broker.log());
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["dns", "tcp", "tls", "connect", "subscribe", "echo"]);
    // A device certificate the broker does not trust.
    let (code, v, _) = preflight(
        &job,
        &[
            "--cert",
            d.path().join("rogue.pem").to_str().unwrap(),
            "--key",
            d.path().join("rogue.key").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 13, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("refused the device certificate"),
        "{v}"
    );
    // A server the CA does not verify.
    let (code, v, _) = preflight(
        &job,
        &["--ca", d.path().join("other-root.pem").to_str().unwrap()],
    );
    assert_eq!(code, 13, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not trusted"), "{v}");
    // A closed port.
    drop(broker);
    let (code, v, _) = preflight(&job, &[]);
    assert_eq!(code, 12, "{v}");
    assert!(
        v["error"].as_str().unwrap().starts_with("TCP to localhost"),
        "{v}"
    );
}

/// `atprov provision --profile PROFILE` against `atprov sim EMULATOR --broker`, with device
/// keys the family's TLS stack takes; the smoke message must reach a host `mosquitto_sub`.
fn provisions_against_mosquitto(emulator: &str, profile: &str, keys: openssl::Keys) {
    let d = tempfile::tempdir().unwrap();
    openssl::aws_shaped(d.path(), keys);
    let broker = Mosquitto::mutual_tls(d.path());
    let sim = SimProcess::start(emulator, &["--broker", &broker.addr()]);
    let sub = broker.subscriber("atprov/+/smoke", d.path());
    let (code, out, err) = atprov(&[
        "provision",
        "--profile",
        profile,
        "--port",
        &sim.path,
        "--job",
        &job(d.path(), broker.port, ""),
        "--json",
    ]);
    assert_eq!(code, 0, "{emulator}: {err}\n{}", broker.log());
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let unit = report["unit_id"].as_str().unwrap();
    let seen = sub.wait();
    assert!(
        seen.contains(&format!("atprov/{unit}/smoke {{\"atprov\":\"smoke\"")),
        "{emulator}: mosquitto_sub saw: {seen}"
    );
}

#[test]
fn quectel_provisions_against_mosquitto_and_a_host_subscriber_sees_the_smoke_message() {
    provisions_against_mosquitto("quectel", "quectel", openssl::Keys::P256);
}

#[test]
fn air780ep_provisions_against_mosquitto_and_a_host_subscriber_sees_the_smoke_message() {
    // The Air780EP's TLS stack takes RSA keys only.
    provisions_against_mosquitto("air780ep", "air780ep", openssl::Keys::Rsa2048);
}

#[test]
fn esp32_at_v2_provisions_against_mosquitto_and_a_host_subscriber_sees_the_smoke_message() {
    provisions_against_mosquitto("esp32-at-v2", "esp32-at", openssl::Keys::P256);
}

/// The first one-device-one-secret vector of `shared/vectors/cloud/aliyun.json`.
fn aliyun_vector() -> serde_json::Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/cloud/aliyun.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["mqtt_direct"][0].clone()
}

#[test]
fn an_aliyun_signed_login_is_accepted_by_mosquittos_password_file_and_a_wrong_one_refused() {
    // RSA device keys: the Air780EP's TLS stack takes no others.
    let d = tempfile::tempdir().unwrap();
    openssl::aws_shaped(d.path(), openssl::Keys::Rsa2048);
    let v = aliyun_vector();
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    // The broker's password file holds the published user name and password, not ours.
    let broker = Mosquitto::start(Setup {
        pki: d.path(),
        acl: None,
        passwords: &[(&s("mqttUsername"), &s("mqttPassword"))],
    });
    let port = broker.password_port.unwrap();
    for (family, secret, code) in [
        ("quectel", s("deviceSecret"), 0),
        ("quectel", "0000000000000000000000000000000".to_string(), 13),
        ("air780ep", s("deviceSecret"), 0),
        (
            "air780ep",
            "0000000000000000000000000000000".to_string(),
            13,
        ),
    ] {
        let aliyun = format!(
            "[aliyun]\nproduct_key = \"{}\"\ndevice_name = \"{{imei}}\"\ndevice_secret = \"{secret}\"\n",
            s("productKey")
        );
        let sim = SimProcess::start(
            family,
            &[
                "--broker",
                &format!("127.0.0.1:{port}"),
                "--module",
                &format!("imei={}", s("deviceName")),
            ],
        );
        let (got, _, err) = atprov(&[
            "provision",
            "--profile",
            family,
            "--port",
            &sim.path,
            "--job",
            &job(d.path(), port, &aliyun),
            "--set",
            "tls.seclevel=1",
        ]);
        assert_eq!(
            got,
            code,
            "{family} with secret {secret}: {err}\n{}",
            broker.log()
        );
    }
}

/// What a module offered in its TLS ClientHello, read by rustls on the wire.
#[derive(Debug, Default)]
struct Hello {
    server_name: Option<String>,
    alpn: Vec<String>,
}

/// A TCP proxy in front of mosquitto (which cannot check ALPN) that parses the first
/// ClientHello with rustls, records its SNI and ALPN, then passes every byte through untouched,
/// so mosquitto still terminates TLS. Returns its port and where the hello is reported.
fn hello_recorder(upstream: u16) -> (u16, std::sync::mpsc::Receiver<Hello>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut module, _)) = listener.accept() else {
            return;
        };
        let mut acceptor = rustls::server::Acceptor::default();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let hello = loop {
            let n = match module.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            seen.extend_from_slice(&buf[..n]);
            acceptor.read_tls(&mut &buf[..n]).unwrap();
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    let ch = accepted.client_hello();
                    break Hello {
                        server_name: ch.server_name().map(str::to_string),
                        alpn: ch
                            .alpn()
                            .into_iter()
                            .flatten()
                            .map(|p| String::from_utf8_lossy(p).into_owned())
                            .collect(),
                    };
                }
                Ok(None) => continue,
                Err((e, _)) => panic!("not a TLS ClientHello: {e}"),
            }
        };
        tx.send(hello).unwrap();
        let mut broker = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
        broker.write_all(&seen).unwrap();
        let (mut m2, mut b2) = (module.try_clone().unwrap(), broker.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut b2, &mut m2);
            let _ = m2.shutdown(std::net::Shutdown::Both);
        });
        let _ = std::io::copy(&mut module, &mut broker);
        let _ = broker.shutdown(std::net::Shutdown::Both);
    });
    (port, rx)
}

#[test]
fn the_module_sends_the_configured_sni_and_alpn_on_the_wire() {
    let d = pki();
    let broker = Mosquitto::mutual_tls(d.path());
    let (port, hello) = hello_recorder(broker.port);
    let sim = SimProcess::start("esp32-at", &["--broker", &format!("127.0.0.1:{port}")]);
    let (code, _, err) = atprov(&[
        "provision",
        "--port",
        &sim.path,
        "--job",
        &job(d.path(), port, ""),
        "--set",
        "mqtt.sni=broker.test",
        "--set",
        "mqtt.alpn=mqtt",
    ]);
    assert_eq!(code, 0, "{err}\n{}", broker.log());
    let hello = hello
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    assert_eq!(hello.server_name.as_deref(), Some("broker.test"));
    assert_eq!(hello.alpn, ["mqtt"]);
}

#[test]
fn the_demo_uses_mosquitto_when_installed_and_says_which_broker_it_used() {
    let (code, out, err) = atprov(&["demo"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("PASS"), "{out}");
    assert!(err.contains("broker: mosquitto on 127.0.0.1:"), "{err}");
    // Without mosquitto on the PATH the demo still runs, offline, and says so.
    let empty = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .arg("demo")
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(
        err.contains("broker: the emulator's offline broker"),
        "{err}"
    );
}
