//! Cellular families end to end: the atprov binary over a real PTY against `atprov sim quectel`
//! in another process, with the emulator's `--state DIR` inspected afterwards, and one test per
//! gotcha of the reference notes (§7), each checking the exit code and the one line.

use std::path::PathBuf;

use crate::common::{SimProcess, atprov};

/// A CA, a device certificate and key signed by it, and job files.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        crate::common::write_credentials(dir.path());
        let w = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        let d = dir.path().display();
        w(
            "aws.toml",
            &format!(
                "[credentials]\nca = \"{d}/ca.pem\"\ncert = \"{d}/dev.pem\"\nkey = \"{d}/dev.key\"\n\
                 [mqtt]\nhost = \"abc-ats.iot.eu-west-1.amazonaws.com\"\n[smoke]\ntimeout = \"2s\"\n"
            ),
        );
        w(
            "aliyun.toml",
            &format!(
                "[credentials]\nca = \"{d}/ca.pem\"\ncert = \"{d}/dev.pem\"\nkey = \"{d}/dev.key\"\n\
                 [mqtt]\nhost = \"k1hipglLdjU.iot-as-mqtt.cn-shanghai.aliyuncs.com\"\nport = 1883\n\
                 [aliyun]\nproduct_key = \"k1hipglLdjU\"\ndevice_name = \"{{imei}}\"\n\
                 device_secret = \"fef32adf6dad46c2c7cbf335d3a7b021\"\n[smoke]\ntimeout = \"2s\"\n"
            ),
        );
        Bundle { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// `atprov provision --profile PROFILE --port SIM --job JOB EXTRA...`.
fn provision_with(
    profile: &str,
    sim: &SimProcess,
    job: &str,
    extra: &[&str],
) -> (i32, String, String) {
    let mut args = vec![
        "provision",
        "--profile",
        profile,
        "--port",
        &sim.path,
        "--job",
        job,
    ];
    args.extend_from_slice(extra);
    atprov(&args)
}

fn provision(sim: &SimProcess, job: &str, extra: &[&str]) -> (i32, String, String) {
    provision_with("quectel", sim, job, extra)
}

/// The Quectel UFS files and the credentials they must hold.
fn quectel_files(b: &Bundle) -> [(&'static str, PathBuf); 3] {
    [
        ("atprov_ca.pem", b.path("ca.pem")),
        ("atprov_cert.pem", b.path("dev.pem")),
        ("atprov_key.pem", b.path("dev.key")),
    ]
}

/// The Air780EP files and the RSA fixture credentials they must hold.
fn luat_files() -> [(&'static str, PathBuf); 3] {
    let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsa");
    [
        ("atprov_ca.crt", f.join("ca.pem")),
        ("atprov_dev.crt", f.join("dev.pem")),
        ("atprov_dev.key", f.join("dev.key")),
    ]
}

/// Asserts that each (file in the module's store, credential file) pair is byte-identical.
fn assert_uploaded(store: &std::path::Path, pairs: &[(&str, PathBuf)]) {
    for (file, original) in pairs {
        let stored = std::fs::read(store.join(file)).unwrap();
        assert_eq!(stored, std::fs::read(original).unwrap(), "{file}");
    }
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or("")
}

#[test]
fn a_quectel_whose_radio_starts_off_registers_while_the_files_go_up() {
    let b = Bundle::new();
    // Registration takes 400 ms once the radio is on.
    let sim = SimProcess::start(
        "quectel",
        &["--module", "radio-off", "--module", "register-time=400"],
    );
    let transcript = b.path("session.txt");
    let (code, out, err) = provision(
        &sim,
        &b.arg("aws.toml"),
        &["--json", "--transcript", transcript.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}\n{out}");
    let t = std::fs::read_to_string(&transcript).unwrap();
    // The radio goes on before identify and the upload; registration is polled after them.
    let on = t.find(">> AT+CFUN=1").expect("the radio was switched on");
    let upload = t.find(">> AT+QFUPL=").unwrap();
    let poll = t.find(">> AT+CEREG?").unwrap();
    assert!(on < upload && upload < poll, "{t}");
    // The report's stage timeline: each stage starts where the one before it ended.
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stages = report["stages"].as_array().unwrap();
    for pair in stages.windows(2) {
        let end = pair[0]["started_ms"].as_u64().unwrap() + pair[0]["ms"].as_u64().unwrap();
        assert!(
            pair[1]["started_ms"].as_u64().unwrap() + 1 >= end,
            "{pair:?}"
        );
    }
    // A module whose radio is on is not told to switch it on.
    let on_sim = SimProcess::start("quectel", &[]);
    let (code, _, err) = provision(
        &on_sim,
        &b.arg("aws.toml"),
        &["--transcript", transcript.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let t = std::fs::read_to_string(&transcript).unwrap();
    assert!(t.contains("+CFUN: 1") && !t.contains(">> AT+CFUN=1"), "{t}");
}

#[test]
fn quectel_provisions_aws_mutual_tls_with_byte_identical_files() {
    let b = Bundle::new();
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start("quectel", &["--state", state.path().to_str().unwrap()]);
    let transcript = b.path("session.txt");
    let (code, out, err) = provision(
        &sim,
        &b.arg("aws.toml"),
        &["--json", "--transcript", transcript.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}\n{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["identity"]["imei"], "866834041644845");
    assert_eq!(report["store"]["generation"], "ufs");
    assert!(report["smoke_round_trip_ms"].is_number());
    assert_uploaded(&state.path().join("ufs"), &quectel_files(&b));
    // The wrong URC port was found and fixed (kept in NVRAM).
    let nvram = std::fs::read_to_string(state.path().join("nvram/urcport")).unwrap();
    assert_eq!(nvram, "uart1");
    let t = std::fs::read_to_string(&transcript).unwrap();
    assert!(t.contains(r#"AT+QURCCFG="urcport","uart1""#), "{t}");
    let key = std::fs::read_to_string(b.path("dev.key")).unwrap();
    assert!(
        !t.contains(key.lines().nth(1).unwrap()),
        "the key is in the transcript"
    );
}

#[test]
fn quectel_provisions_with_aliyun_signing() {
    let b = Bundle::new();
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start(
        "quectel",
        &[
            "--state",
            state.path().to_str().unwrap(),
            "--module",
            "imei=868488076506128",
            "--module",
            "aliyun=k1hipglLdjU:868488076506128:fef32adf6dad46c2c7cbf335d3a7b021",
        ],
    );
    let transcript = b.path("session.txt");
    let (code, out, err) = provision(
        &sim,
        &b.arg("aliyun.toml"),
        &[
            "--set",
            "tls.seclevel=1",
            "--transcript",
            transcript.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(out.contains("smoke: the message came back"), "{out}");
    assert_uploaded(&state.path().join("ufs"), &quectel_files(&b));
    let t = std::fs::read_to_string(&transcript).unwrap();
    assert!(
        t.contains(r#"AT+QMTCONN=0,"868488076506128|securemode=2,signmethod=hmacmd5|","868488076506128&k1hipglLdjU",***"#),
        "{t}"
    );
    assert!(
        !t.contains("fef32adf"),
        "the device secret is in the transcript"
    );
}

/// Provisions against an emulator with `--module` settings; returns exit code and last line.
fn fails_with(settings: &[&str], extra: &[&str]) -> (i32, String) {
    let b = Bundle::new();
    let mut args = Vec::new();
    for s in settings {
        args.push("--module");
        args.push(s);
    }
    args.extend_from_slice(extra);
    let sim = SimProcess::start("quectel", &args);
    let (code, _out, err) = provision(&sim, &b.arg("aws.toml"), &[]);
    (code, last_line(&err).to_string())
}

#[test]
fn every_qmtopen_failure_is_explained() {
    for (result, code, words) in [
        ("-1", 12, "could not open a network connection"),
        ("3", 12, "PDP context could not be activated"),
        (
            "4",
            12,
            "cannot resolve abc-ats.iot.eu-west-1.amazonaws.com",
        ),
        ("5", 13, "refused the certificate"),
    ] {
        let (got, line) = fails_with(&[&format!("open-result={result}")], &[]);
        assert_eq!(got, code, "+QMTOPEN: 0,{result}: {line}");
        assert!(line.starts_with("atprov: open network: "), "{line}");
        assert!(line.contains(words), "+QMTOPEN: 0,{result}: {line}");
        assert!(line.contains(&format!("`+QMTOPEN: 0,{result}`")), "{line}");
    }
}

#[test]
fn a_wrong_upload_checksum_is_detected() {
    let (code, line) = fails_with(&["corrupt-upload"], &[]);
    assert_eq!(code, 11, "{line}");
    assert!(
        line.contains("UFS:atprov_ca.pem") && line.contains("checksum"),
        "{line}"
    );
}

#[test]
fn no_sim_is_named() {
    let (code, line) = fails_with(&["no-sim"], &[]);
    assert_eq!(code, 12, "{line}");
    assert!(line.contains("SIM: no SIM card"), "{line}");
}

#[test]
fn denied_registration_fails_at_once() {
    let started = std::time::Instant::now();
    let (code, line) = fails_with(&["registration=denied"], &[]);
    assert_eq!(code, 12, "{line}");
    assert!(line.contains("registration: registration denied"), "{line}");
    // Not the 120 s the registration may otherwise take.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn a_quecpython_build_is_refused_before_anything_is_written() {
    let b = Bundle::new();
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start(
        "quectel",
        &[
            "--module",
            "quecpython",
            "--state",
            state.path().to_str().unwrap(),
        ],
    );
    let (code, _out, err) = provision(&sim, &b.arg("aws.toml"), &[]);
    assert_eq!(code, 7, "{err}");
    assert!(last_line(&err).contains("QuecPython"), "{err}");
    assert_eq!(
        std::fs::read_dir(state.path().join("ufs")).unwrap().count(),
        0
    );
}

#[test]
fn a_clock_at_1980_is_synced_or_certificate_dates_are_ignored() {
    // NTP works: the clock is set and certificate dates are checked.
    let b = Bundle::new();
    let sim = SimProcess::start("quectel", &[]);
    let t = b.path("synced.txt");
    let (code, _, err) = provision(
        &sim,
        &b.arg("aws.toml"),
        &["--transcript", t.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&t).unwrap();
    assert!(
        text.contains(r#"AT+QSSLCFG="ignorelocaltime",2,0"#),
        "{text}"
    );
    // NTP never answers: the clock stays at 1980 and TLS goes on without date checks, said so.
    let sim = SimProcess::start("quectel", &["--no-sntp"]);
    let t = b.path("unsynced.txt");
    let (code, _, err) = provision(
        &sim,
        &b.arg("aws.toml"),
        &["--transcript", t.to_str().unwrap(), "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&t).unwrap();
    assert!(text.contains(r#"+CCLK: "80/01/06"#), "{text}");
    assert!(
        text.contains(r#"AT+QSSLCFG="ignorelocaltime",2,1"#),
        "{text}"
    );
    assert!(
        err.contains("sync clock: NTP server pool.ntp.org did not answer"),
        "{err}"
    );
}

/// RSA credentials (Luat's TLS stack takes RSA keys only), committed as test fixtures.
fn rsa_job(dir: &std::path::Path, extra: &str) -> String {
    let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsa");
    let d = f.display();
    let job = dir.join("luat.toml");
    std::fs::write(
        &job,
        format!(
            "[credentials]\nca = \"{d}/ca.pem\"\ncert = \"{d}/dev.pem\"\nkey = \"{d}/dev.key\"\n\
             [smoke]\ntimeout = \"2s\"\n{extra}"
        ),
    )
    .unwrap();
    job.display().to_string()
}

fn luat(sim: &SimProcess, job: &str, extra: &[&str]) -> (i32, String, String) {
    provision_with("air780ep", sim, job, extra)
}

#[test]
fn air780ep_provisions_aws_mutual_tls_and_logs_in_at_once_after_connect_ok() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let job = rsa_job(
        dir.path(),
        "[mqtt]\nhost = \"abc-ats.iot.eu-west-1.amazonaws.com\"\n",
    );
    let sim = SimProcess::start("air780ep", &["--state", state.path().to_str().unwrap()]);
    let t = dir.path().join("session.txt");
    let (code, out, err) = luat(&sim, &job, &["--json", "--transcript", t.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}\n{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["identity"]["imei"], "868488076506128");
    assert!(report["smoke_round_trip_ms"].is_number());
    let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsa");
    assert_uploaded(&state.path().join("fs"), &luat_files());
    // The login follows CONNECT OK with no other command in between (§7 Luat 1).
    let text = std::fs::read_to_string(&t).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let ok = lines
        .iter()
        .position(|l| l.contains("CONNECT OK"))
        .expect("CONNECT OK");
    let next_host_line = lines[ok + 1..]
        .iter()
        .find(|l| l.starts_with(">>"))
        .unwrap();
    assert!(
        next_host_line.starts_with(">> AT+MCONNECT="),
        "{next_host_line}"
    );
    let key = std::fs::read_to_string(f.join("dev.key")).unwrap();
    assert!(
        !text.contains(key.lines().nth(1).unwrap()),
        "the key is in the transcript"
    );
}

#[test]
fn an_air780ep_whose_radio_starts_off_registers_while_the_files_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let job = rsa_job(
        dir.path(),
        "[mqtt]\nhost = \"abc-ats.iot.eu-west-1.amazonaws.com\"\n",
    );
    let sim = SimProcess::start(
        "air780ep",
        &["--module", "radio-off", "--module", "register-time=400"],
    );
    let t = dir.path().join("session.txt");
    let (code, out, err) = luat(&sim, &job, &["--transcript", t.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}\n{out}");
    let text = std::fs::read_to_string(&t).unwrap();
    let on = text
        .find(">> AT+CFUN=1")
        .expect("the radio was switched on");
    let write = text.find(">> AT+FSWRITE=").unwrap();
    let poll = text.find(">> AT+CEREG?").unwrap();
    assert!(on < write && write < poll, "{text}");
}

#[test]
fn air780ep_provisions_with_aliyun_signing() {
    let dir = tempfile::tempdir().unwrap();
    let job = rsa_job(
        dir.path(),
        "[mqtt]\nhost = \"k1hipglLdjU.iot-as-mqtt.cn-shanghai.aliyuncs.com\"\nport = 1883\n\
         [aliyun]\nproduct_key = \"k1hipglLdjU\"\ndevice_name = \"{imei}\"\n\
         device_secret = \"fef32adf6dad46c2c7cbf335d3a7b021\"\n",
    );
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start(
        "air780ep",
        &[
            "--state",
            state.path().to_str().unwrap(),
            "--module",
            "aliyun=k1hipglLdjU:868488076506128:fef32adf6dad46c2c7cbf335d3a7b021",
        ],
    );
    let (code, out, err) = luat(&sim, &job, &["--set", "tls.seclevel=1"]);
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(out.contains("smoke: the message came back"), "{out}");
    assert_uploaded(&state.path().join("fs"), &luat_files());
    // A wrong secret: the broker closes the connection, explained.
    let bad = rsa_job(
        dir.path(),
        "[mqtt]\nhost = \"k1hipglLdjU.iot-as-mqtt.cn-shanghai.aliyuncs.com\"\nport = 1883\n\
         [aliyun]\nproduct_key = \"k1hipglLdjU\"\ndevice_name = \"{imei}\"\ndevice_secret = \"wrong\"\n",
    );
    let (code, _, err) = luat(&sim, &bad, &["--set", "tls.seclevel=1"]);
    assert_eq!(code, 13, "{err}");
    assert!(
        last_line(&err).contains("connect MQTT: the broker closed the connection"),
        "{err}"
    );
}

#[test]
fn air780ep_refuses_an_ec_key_before_uploading() {
    let b = Bundle::new(); // P-256 credentials
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start("air780ep", &["--state", state.path().to_str().unwrap()]);
    let (code, _, err) = luat(&sim, &b.arg("aws.toml"), &[]);
    assert_eq!(code, 10, "{err}");
    assert!(last_line(&err).contains("RSA"), "{err}");
    assert_eq!(
        std::fs::read_dir(state.path().join("fs")).unwrap().count(),
        0
    );
}

#[test]
fn air780ep_says_it_has_no_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let job = rsa_job(
        dir.path(),
        "[mqtt]\nhost = \"abc-ats.iot.eu-west-1.amazonaws.com\"\nport = 443\nalpn = [\"x-amzn-mqtt-ca\"]\n",
    );
    let sim = SimProcess::start("air780ep", &[]);
    let (code, _, err) = luat(&sim, &job, &[]);
    assert_eq!(code, 13, "{err}");
    assert!(last_line(&err).contains("has no ALPN"), "{err}");
}

#[test]
fn air780ep_with_a_clock_at_1980_and_no_ntp_ignores_certificate_dates() {
    let dir = tempfile::tempdir().unwrap();
    let job = rsa_job(
        dir.path(),
        "[mqtt]\nhost = \"abc-ats.iot.eu-west-1.amazonaws.com\"\n",
    );
    let sim = SimProcess::start("air780ep", &["--module", "clock-unset", "--no-sntp"]);
    let t = dir.path().join("session.txt");
    let (code, _, err) = luat(&sim, &job, &["--transcript", t.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&t).unwrap();
    assert!(text.contains(r#"+CCLK: "80/01/06"#), "{text}");
    assert!(
        text.contains(r#"AT+SSLCFG="ignorelocaltime",88,1"#),
        "{text}"
    );
    assert!(
        err.contains("sync clock: NTP server ntp.aliyun.com did not answer"),
        "{err}"
    );
}

/// An Air780EP job that registers over HTTPS and keeps the secret in `secret_file`.
fn https_register_job(dir: &std::path::Path, secret_file: &std::path::Path) -> String {
    rsa_job(
        dir,
        &format!(
            "[mqtt]\nhost = \"k1hipglLdjU.iot-as-mqtt.cn-shanghai.aliyuncs.com\"\nport = 1883\n\
             [aliyun]\nproduct_key = \"k1hipglLdjU\"\ndevice_name = \"{{imei}}\"\nregister = \"https\"\n\
             product_secret = \"8LQwOYSZMwp3DFBd\"\nsecret_file = \"{}\"\n",
            secret_file.display()
        ),
    )
}

#[test]
fn air780ep_registers_over_https_and_keeps_the_secret_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secrets/unit.secret");
    let job = https_register_job(dir.path(), &secret_file);
    let sim = SimProcess::start(
        "air780ep",
        &["--module", "product=k1hipglLdjU:8LQwOYSZMwp3DFBd"],
    );
    let t = dir.path().join("session.txt");
    let (code, out, err) = luat(
        &sim,
        &job,
        &[
            "--set",
            "tls.seclevel=1",
            "--json",
            "--transcript",
            t.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}\n{out}");
    let kept = std::fs::read_to_string(&secret_file).unwrap();
    let secret = kept.trim();
    assert_eq!(secret.len(), 32, "{kept:?}");
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Never printed: not in the report, the progress lines or the transcript.
    let text = std::fs::read_to_string(&t).unwrap();
    for (what, s) in [("report", &out), ("stderr", &err), ("transcript", &text)] {
        assert!(!s.contains(secret), "the device secret is in the {what}");
        assert!(
            !s.contains("8LQwOYSZMwp3DFBd"),
            "the product secret is in the {what}"
        );
    }
    assert!(text.contains("AT+HTTPACTION=1"), "{text}");
    // A second run uses the kept secret and does not register again.
    let t2 = dir.path().join("again.txt");
    let (code, _, err) = luat(
        &sim,
        &job,
        &[
            "--set",
            "tls.seclevel=1",
            "--transcript",
            t2.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        !std::fs::read_to_string(&t2)
            .unwrap()
            .contains("AT+HTTPACTION")
    );
}

#[test]
fn a_registration_reply_that_never_comes_is_one_line_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("unit.secret");
    let job = https_register_job(dir.path(), &secret_file);
    let sim = SimProcess::start(
        "air780ep",
        &[
            "--module",
            "product=k1hipglLdjU:8LQwOYSZMwp3DFBd",
            "--module",
            "register-silent",
        ],
    );
    let (code, _, err) = luat(
        &sim,
        &job,
        &[
            "--set",
            "tls.seclevel=1",
            "--set",
            "aliyun.register_within=2s",
        ],
    );
    assert_eq!(code, 12, "{err}");
    let line = last_line(&err);
    assert!(
        line.contains("registration request: the registration server did not answer"),
        "{line}"
    );
    assert!(!secret_file.exists());
}

fn mqtt_register_job(dir: &std::path::Path, secret_file: &std::path::Path) -> String {
    let job = dir.join("register.toml");
    std::fs::write(
        &job,
        format!(
            "[credentials]\nca = \"{d}/ca.pem\"\ncert = \"{d}/dev.pem\"\nkey = \"{d}/dev.key\"\n\
             [mqtt]\nhost = \"k1hipglLdjU.iot-as-mqtt.cn-shanghai.aliyuncs.com\"\nport = 1883\n\
             [smoke]\ntimeout = \"2s\"\n\
             [aliyun]\nproduct_key = \"k1hipglLdjU\"\ndevice_name = \"{{imei}}\"\nregister = \"mqtt\"\n\
             product_secret_env = \"TEST_PRODUCT_SECRET\"\nsecret_file = \"{}\"\n",
            secret_file.display(),
            d = dir.display()
        ),
    )
    .unwrap();
    job.display().to_string()
}

#[test]
fn quectel_registers_over_mqtt_and_connects_with_the_issued_secret() {
    let b = Bundle::new();
    let secret_file = b.path("unit.secret");
    let job = mqtt_register_job(b.dir.path(), &secret_file);
    let sim = SimProcess::start(
        "quectel",
        &["--module", "product=k1hipglLdjU:8LQwOYSZMwp3DFBd"],
    );
    let t = b.path("session.txt");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args([
            "provision",
            "--profile",
            "quectel",
            "--port",
            &sim.path,
            "--job",
            &job,
        ])
        .args([
            "--set",
            "tls.seclevel=1",
            "--transcript",
            t.to_str().unwrap(),
        ])
        .env("TEST_PRODUCT_SECRET", "8LQwOYSZMwp3DFBd")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    let text = std::fs::read_to_string(&t).unwrap();
    assert!(text.contains("authType=register"), "{text}");
    assert!(
        !text.contains(secret.trim()),
        "the device secret is in the transcript"
    );
    assert!(!err.contains(secret.trim()));
}

#[test]
fn an_mqtt_registration_message_that_never_comes_is_one_line() {
    let b = Bundle::new();
    let secret_file = b.path("unit.secret");
    let job = mqtt_register_job(b.dir.path(), &secret_file);
    let sim = SimProcess::start(
        "quectel",
        &[
            "--module",
            "product=k1hipglLdjU:8LQwOYSZMwp3DFBd",
            "--module",
            "register-silent",
        ],
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args([
            "provision",
            "--profile",
            "quectel",
            "--port",
            &sim.path,
            "--job",
            &job,
        ])
        .args([
            "--set",
            "tls.seclevel=1",
            "--set",
            "aliyun.register_within=1s",
        ])
        .env("TEST_PRODUCT_SECRET", "8LQwOYSZMwp3DFBd")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{err}");
    assert!(
        last_line(&err)
            .contains("device secret: the platform sent no /ext/register message within 1s"),
        "{err}"
    );
    assert!(!secret_file.exists());
}

#[test]
fn air780ep_signs_in_over_https_then_logs_in_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let job = rsa_job(
        dir.path(),
        "[mqtt]\nhost = \"k1hipglLdjU.iot-as-mqtt.cn-shanghai.aliyuncs.com\"\nport = 1883\n\
         [aliyun]\nproduct_key = \"k1hipglLdjU\"\ndevice_name = \"{imei}\"\nauth = \"https\"\n\
         device_secret = \"fef32adf6dad46c2c7cbf335d3a7b021\"\n",
    );
    let sim = SimProcess::start(
        "air780ep",
        &[
            "--module",
            "aliyun=k1hipglLdjU:868488076506128:fef32adf6dad46c2c7cbf335d3a7b021",
        ],
    );
    let t = dir.path().join("session.txt");
    let (code, out, err) = luat(
        &sim,
        &job,
        &[
            "--set",
            "tls.seclevel=1",
            "--transcript",
            t.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}\n{out}");
    let text = std::fs::read_to_string(&t).unwrap();
    // The plain client id and the iotId as user name; the token never shown.
    assert!(
        text.contains(r#"AT+MCONFIG="868488076506128","868488076506128k1hipglLdjU00","#),
        "{text}"
    );
    assert!(
        !text.contains("fef32adf"),
        "the device secret is in the transcript"
    );
    assert!(
        !text.contains("iotToken\":\""),
        "the token is in the transcript"
    );
}

#[test]
fn an_imei_that_is_a_path_is_refused_before_it_names_a_file() {
    // Seen: a module answering `../../../../PWNED` to AT+CGSN made atprov write
    // `secrets/../../../../PWNED.secret`.
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c/d");
    std::fs::create_dir_all(&nested).unwrap();
    let secret_template = nested.join("secrets/{imei}.secret");
    let job = https_register_job(&nested, &secret_template);
    let sim = SimProcess::start(
        "air780ep",
        &[
            "--module",
            "product=k1hipglLdjU:8LQwOYSZMwp3DFBd",
            "--module",
            "imei=../../../../PWNED",
        ],
    );
    let (code, _, err) = luat(&sim, &job, &["--set", "tls.seclevel=1"]);
    assert_eq!(code, 7, "{err}");
    let line = last_line(&err);
    assert!(
        line.contains("IMEI `../../../../PWNED`, which is not 15 digits"),
        "{line}"
    );
    let found: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("PWNED"))
        .collect();
    assert!(found.is_empty(), "{found:?}");
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn a_device_name_with_url_reserved_characters_registers_over_https() {
    // `dev:01@lab` is a valid Aliyun device name; the form carries it percent-encoded and the
    // emulated platform must decode it to check the signature.
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("unit.secret");
    let job = https_register_job(dir.path(), &secret_file);
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace("device_name = \"{imei}\"", "device_name = \"dev:01@lab\""),
    )
    .unwrap();
    let sim = SimProcess::start(
        "air780ep",
        &["--module", "product=k1hipglLdjU:8LQwOYSZMwp3DFBd"],
    );
    let (code, _, err) = luat(&sim, &job, &["--set", "tls.seclevel=1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&secret_file).unwrap().trim().len(),
        32
    );
}

#[test]
fn without_profile_the_family_is_asked_and_said() {
    for (emulator, profile) in [
        ("quectel", "quectel"),
        ("air780ep", "air780ep"),
        ("esp32-at", "esp32-at"),
        ("esp32-at-v2", "esp32-at"),
    ] {
        let sim = crate::common::SimProcess::start(emulator, &[]);
        let (code, out, err) = crate::common::atprov(&["identify", "--port", &sim.path, "--json"]);
        assert_eq!(code, 0, "{emulator}: {err}");
        assert!(
            err.starts_with(&format!("profile: {profile} (")),
            "{emulator}: {err}"
        );
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["profile"], profile, "{emulator}");
    }
}

#[test]
fn creds_erase_removes_what_provision_wrote_on_each_family_and_asks_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::common::openssl::aws_shaped(d, crate::common::openssl::Keys::Rsa2048);
    let job = d.join("job.toml");
    std::fs::write(
        &job,
        "[credentials]\nca = \"ca.pem\"\ncert = \"dev.pem\"\nkey = \"dev.key\"\n\
         [wifi]\nssid = \"atprov-lab\"\npassword = \"correct horse battery\"\n\
         [mqtt]\nhost = \"broker.test\"\n",
    )
    .unwrap();
    for (emulator, stored) in [
        ("esp32-at", "mfg_nvs"),
        ("quectel", "ufs"),
        ("air780ep", "fs"),
    ] {
        let state = tempfile::tempdir().unwrap();
        let sim = crate::common::SimProcess::start(
            emulator,
            &[
                "--state",
                state.path().to_str().unwrap(),
                "--trust",
                d.join("dev-ca.pem").to_str().unwrap(),
            ],
        );
        let (code, _, err) =
            crate::common::atprov(&["flash", "--port", &sim.path, "--job", job.to_str().unwrap()]);
        assert_eq!(code, 0, "{emulator}: {err}");
        let files = |root: &std::path::Path| -> usize {
            fn count(p: &std::path::Path) -> usize {
                std::fs::read_dir(p).map_or(0, |rd| {
                    rd.flatten()
                        .map(|e| {
                            if e.path().is_dir() {
                                count(&e.path())
                            } else {
                                1
                            }
                        })
                        .sum()
                })
            }
            count(&root.join(stored))
        };
        let stored_files = files(state.path());
        assert!(
            stored_files >= 3,
            "{emulator}: flash stored the credentials"
        );
        // Without --yes and without a terminal to ask on: refused, nothing erased.
        let (code, _, err) = crate::common::atprov(&["creds", "erase", "--port", &sim.path]);
        assert_eq!(code, 2, "{emulator}: {err}");
        assert!(files(state.path()) >= 3, "{emulator}");
        let (code, out, err) =
            crate::common::atprov(&["creds", "erase", "--port", &sim.path, "--yes"]);
        assert_eq!(code, 0, "{emulator}: {err}");
        assert!(out.starts_with("erased: unit "), "{emulator}: {out}");
        assert!(
            files(state.path()) <= stored_files - 3,
            "{emulator}: the three files are gone"
        );
        let (code, out, err) = crate::common::atprov(&[
            "flash",
            "--port",
            &sim.path,
            "--job",
            job.to_str().unwrap(),
            "--json",
        ]);
        // What erase removed, a new flash writes again (nothing was left "unchanged").
        assert_eq!(code, 0, "{emulator}: {err}");
        assert!(!out.contains("\"unchanged\""), "{emulator}: {out}");
    }
}

/// An AWS job the emulator takes: the Air780EP's TLS stack wants an RSA key.
fn aws_job_for(emulator: &str, b: &Bundle, dir: &std::path::Path) -> String {
    if emulator == "air780ep" {
        rsa_job(
            dir,
            "[mqtt]\nhost = \"abc-ats.iot.eu-west-1.amazonaws.com\"\n",
        )
    } else {
        b.arg("aws.toml")
    }
}

#[test]
fn a_restart_at_every_step_of_the_quectel_flow_is_a_module_reset() {
    let b = Bundle::new();
    let job = b.arg("aws.toml");
    crate::provision::a_restart_at_every_step_is_a_module_reset(
        "quectel",
        &["--profile", "quectel", "--job", &job],
    );
}

#[test]
fn a_restart_at_every_step_of_the_air780ep_flow_is_a_module_reset() {
    let dir = tempfile::tempdir().unwrap();
    let job = aws_job_for("air780ep", &Bundle::new(), dir.path());
    crate::provision::a_restart_at_every_step_is_a_module_reset(
        "air780ep",
        &["--profile", "air780ep", "--job", &job],
    );
}

/// A `CONNECT`/`>` lost at a file upload: noticed within seconds, paid with filler, the module
/// answers `AT` again, and a rerun rewrites and verifies.
fn lost_prompt_then_rerun(emulator: &str, prefix: &str) {
    let b = Bundle::new();
    let dir = tempfile::tempdir().unwrap();
    let job = aws_job_for(emulator, &b, dir.path());
    let args = ["--profile", emulator, "--job", &job];
    crate::provision::lost_prompt_then_rerun(emulator, prefix, &args);
}

#[test]
fn a_lost_prompt_at_qfupl_is_recovered_and_a_rerun_repairs_the_unit() {
    lost_prompt_then_rerun("quectel", "AT+QFUPL=");
}

#[test]
fn a_lost_prompt_at_fswrite_is_recovered_and_a_rerun_repairs_the_unit() {
    lost_prompt_then_rerun("air780ep", "AT+FSWRITE=");
}

#[test]
fn a_provision_transcript_replays_as_recorded_quectel_and_air780ep() {
    for emulator in ["quectel", "air780ep"] {
        let b = Bundle::new();
        let dir = tempfile::tempdir().unwrap();
        let job = aws_job_for(emulator, &b, dir.path());
        let t = dir.path().join("run.txt");
        let sim = SimProcess::start(emulator, &[]);
        let ts = t.display().to_string();
        let (code, _, err) = provision_with(emulator, &sim, &job, &["--transcript", &ts]);
        assert_eq!(code, 0, "{err}");
        crate::transcript_roundtrip::replays_as_recorded(&t);
    }
}

/// openssl's SHA-256 fingerprint of a PEM certificate (colon-separated upper-case hex).
fn openssl_fingerprint(pem: &std::path::Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim().rsplit('=').next().unwrap().to_string()
}

/// Provisions each emulator, then: a second run writes nothing (compared first, like
/// ESP-AT); `creds list` reads back what each slot holds (fingerprints as openssl computes
/// them, the key by its size only); `creds erase --yes` empties them, and `creds list` says so.
#[test]
fn creds_list_and_erase_and_a_second_run_that_writes_nothing_on_every_family() {
    let b = Bundle::new();
    let dir = tempfile::tempdir().unwrap();
    for emulator in ["esp32-at", "esp32-at-v2", "quectel", "air780ep"] {
        let sim = SimProcess::start(emulator, &[]);
        let (job, ca, cert) = match emulator {
            "air780ep" => {
                let rsa =
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsa");
                (
                    aws_job_for(emulator, &b, dir.path()),
                    rsa.join("ca.pem"),
                    rsa.join("dev.pem"),
                )
            }
            "quectel" => (b.arg("aws.toml"), b.path("ca.pem"), b.path("dev.pem")),
            _ => {
                let job = dir.path().join("esp.toml");
                std::fs::write(
                    &job,
                    format!(
                        "[credentials]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\
                         [wifi]\nssid = \"atprov-lab\"\npassword = \"correct horse battery\"\n\
                         [mqtt]\nhost = \"broker.test\"\n",
                        b.arg("ca.pem"),
                        b.arg("dev.pem"),
                        b.arg("dev.key")
                    ),
                )
                .unwrap();
                (
                    job.display().to_string(),
                    b.path("ca.pem"),
                    b.path("dev.pem"),
                )
            }
        };
        let run = || atprov(&["provision", "--port", &sim.path, "--job", &job, "--json"]);
        let (code, _, err) = run();
        assert_eq!(code, 0, "{emulator}: {err}");
        let (code, out, err) = run();
        assert_eq!(code, 0, "{emulator}: {err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        for item in report["credentials"]["items"].as_array().unwrap() {
            assert_eq!(item["action"], "unchanged", "{emulator}: {item}");
        }

        let (code, out, err) = atprov(&["creds", "list", "--port", &sim.path, "--json"]);
        assert_eq!(code, 0, "{emulator}: {err}");
        let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
        let slots = listed["slots"].as_array().unwrap();
        assert_eq!(slots.len(), 3, "{emulator}: {out}");
        let fp = |i: usize| slots[i]["certificates"][0]["sha256_fingerprint"].clone();
        assert_eq!(fp(0), openssl_fingerprint(&ca), "{emulator}: {out}");
        assert_eq!(fp(1), openssl_fingerprint(&cert), "{emulator}: {out}");
        assert_eq!(slots[2]["item"], "key");
        assert_eq!(slots[2]["present"], true, "{emulator}: {out}");
        assert!(
            !out.contains("PRIVATE KEY"),
            "{emulator}: the key was shown"
        );

        let (code, _, err) = atprov(&["creds", "erase", "--port", &sim.path, "--yes"]);
        assert_eq!(code, 0, "{emulator}: {err}");
        let (code, out, err) = atprov(&["creds", "list", "--port", &sim.path, "--json"]);
        assert_eq!(code, 0, "{emulator}: {err}");
        let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
        for slot in listed["slots"].as_array().unwrap() {
            assert_eq!(slot["present"], false, "{emulator}: {out}");
        }
    }
}

#[test]
fn aliyun_with_a_device_secret_over_server_only_tls_needs_the_ca_alone() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsa");
    let job = dir.path().join("aliyun.toml");
    std::fs::write(
        &job,
        format!(
            "[credentials]\nca = \"{}\"\n\
             [mqtt]\nhost = \"k1hipglLdjU.iot-as-mqtt.cn-shanghai.aliyuncs.com\"\nport = 1883\n\
             [aliyun]\nproduct_key = \"k1hipglLdjU\"\ndevice_name = \"{{imei}}\"\n\
             device_secret = \"fef32adf6dad46c2c7cbf335d3a7b021\"\n[smoke]\ntimeout = \"2s\"\n",
            rsa.join("ca.pem").display()
        ),
    )
    .unwrap();
    let job = job.display().to_string();
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start(
        "air780ep",
        &[
            "--state",
            state.path().to_str().unwrap(),
            "--module",
            "aliyun=k1hipglLdjU:868488076506128:fef32adf6dad46c2c7cbf335d3a7b021",
        ],
    );
    // Mutual TLS (the default) still asks for the device certificate and key, by name.
    let (code, _, err) = luat(&sim, &job, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(last_line(&err).contains("cert, key"), "{err}");
    // Server-only TLS (here from the job's [tls]): the CA is all it takes, and all that is
    // written.
    let job = {
        let text = std::fs::read_to_string(&job).unwrap() + "[tls]\nseclevel = 1\n";
        let path = dir.path().join("aliyun-tls1.toml");
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (code, out, err) = luat(&sim, &job, &[]);
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(out.contains("smoke: the message came back"), "{out}");
    let files: Vec<String> = std::fs::read_dir(state.path().join("fs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "only the CA: {files:?}");
}
