//! `atprov provision` end to end: the atprov binary over a real PTY against `atprov sim ...`
//! in another process, with the emulator's `--state DIR` inspected afterwards. One test per
//! failure the issue names, each checking the exit code and the one line that explains it.

use std::path::{Path, PathBuf};

use crate::common::{SimProcess, atprov};
use atprov_core::pki::atpki::{self, ItemType};
use atprov_core::pki::generate;

/// A CA, a device certificate and key signed by it, a job file for the emulator's network.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        crate::common::write_credentials(dir.path());
        let w = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        let job = format!(
            "[credentials]\nca = \"{0}/ca.pem\"\ncert = \"{0}/dev.pem\"\nkey = \"{0}/dev.key\"\n\
             [wifi]\nssid = \"atprov-lab\"\npassword = \"correct horse battery\"\n\
             [mqtt]\nhost = \"broker.test\"\nclient_id = \"thing-{{unit_id}}\"\n",
            dir.path().display()
        );
        w("job.toml", &job);
        Bundle { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    fn job(&self) -> String {
        self.path("job.toml").display().to_string()
    }
}

fn provision(sim: &SimProcess, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["provision", "--port", &sim.path];
    args.extend_from_slice(extra);
    atprov(&args)
}

pub(crate) fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or("")
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn provisions_v3_as_pem_blobs_and_a_second_run_writes_nothing() {
    let b = Bundle::new();
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start(
        "esp32-at",
        &["--state", &state.path().display().to_string()],
    );
    let (code, out, err) = provision(&sim, &["--job", &b.job(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let report = json(&out);
    assert_eq!(report["result"], "pass");
    assert_eq!(report["store"]["generation"], "mfg_nvs");
    assert_eq!(report["identity"]["mac"], "24:0a:c4:12:34:56");
    assert!(report["smoke_round_trip_ms"].as_u64().is_some(), "{out}");
    let nvs = state.path().join("mfg_nvs");
    for (slot, file) in [
        ("mqtt_ca", "ca.pem"),
        ("mqtt_cert", "dev.pem"),
        ("mqtt_key", "dev.key"),
    ] {
        let stored = std::fs::read(nvs.join(slot).join(format!("{slot}.blob"))).unwrap();
        assert_eq!(stored, b.bytes(file), "{slot}");
    }
    // Exactly those three namespaces were written, nothing else.
    let mut written: Vec<_> = std::fs::read_dir(&nvs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    assert_eq!(written, ["mqtt_ca", "mqtt_cert", "mqtt_key"]);
    // The key never appears in the report.
    let key = String::from_utf8(b.bytes("dev.key")).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    assert!(!out.contains(key_body) && !err.contains(key_body));

    let before = mtime(&nvs.join("mqtt_key/mqtt_key.blob"));
    let transcript = b.path("second.atlog");
    let (code, out, err) = provision(
        &sim,
        &[
            "--job",
            &b.job(),
            "--json",
            "--transcript",
            &transcript.display().to_string(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let report = json(&out);
    for item in report["credentials"]["items"].as_array().unwrap() {
        assert_eq!(item["action"], "unchanged", "{item}");
    }
    assert_eq!(mtime(&nvs.join("mqtt_key/mqtt_key.blob")), before);
    let t = std::fs::read_to_string(&transcript).unwrap();
    assert!(!t.contains("AT+SYSMFG=2"), "a write was sent:\n{t}");
    assert!(!t.contains(key_body), "the key leaked into the transcript");
    assert!(!t.contains("correct horse"), "the Wi-Fi password leaked");
}

#[test]
fn provisions_v2_as_atpki_bins_and_a_second_run_writes_nothing() {
    let b = Bundle::new();
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start(
        "esp32-at-v2",
        &["--state", &state.path().display().to_string()],
    );
    let (code, out, err) = provision(&sim, &["--job", &b.job(), "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["store"]["generation"], "partitions");
    for (slot, file, kind) in [
        ("mqtt_ca", "ca.pem", ItemType::Ca),
        ("mqtt_cert", "dev.pem", ItemType::Cert),
        ("mqtt_key", "dev.key", ItemType::Key),
    ] {
        let image = std::fs::read(state.path().join(format!("partitions/{slot}.bin"))).unwrap();
        let bin = atpki::encode(&[(kind, file.into(), b.bytes(file))]).unwrap();
        assert_eq!(image.len(), 8192);
        assert_eq!(&image[..bin.len()], &bin[..], "{slot}");
        assert!(image[bin.len()..].iter().all(|&x| x == 0xFF), "{slot} tail");
    }
    // Other partitions untouched.
    let other = std::fs::read(state.path().join("partitions/client_cert.bin")).unwrap();
    assert!(other.iter().all(|&x| x == 0xFF));

    let (code, out, err) = provision(&sim, &["--job", &b.job(), "--json"]);
    assert_eq!(code, 0, "{err}");
    for item in json(&out)["credentials"]["items"].as_array().unwrap() {
        assert_eq!(item["action"], "unchanged", "{item}");
    }
}

#[test]
fn force_rewrites_identical_content() {
    let b = Bundle::new();
    let sim = SimProcess::start("esp32-at", &[]);
    assert_eq!(provision(&sim, &["--job", &b.job()]).0, 0);
    let (code, out, err) = atprov(&[
        "flash",
        "--port",
        &sim.path,
        "--job",
        &b.job(),
        "--force",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    for item in json(&out)["credentials"]["items"].as_array().unwrap() {
        assert_eq!(item["action"], "written");
    }
}

#[test]
fn key_of_another_certificate_is_refused_before_the_module_is_touched() {
    let b = Bundle::new();
    let other = generate::ca("other", 10).unwrap();
    std::fs::write(b.path("other.key"), &other.key_pem).unwrap();
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start(
        "esp32-at",
        &["--state", &state.path().display().to_string()],
    );
    let transcript = b.path("t.atlog");
    let (code, _, err) = provision(
        &sim,
        &[
            "--job",
            &b.job(),
            "--key",
            &b.path("other.key").display().to_string(),
            "--transcript",
            &transcript.display().to_string(),
        ],
    );
    assert_eq!(code, 10, "{err}");
    assert!(
        last_line(&err).contains("does not belong to the certificate"),
        "{err}"
    );
    assert!(last_line(&err).contains("nothing was written"), "{err}");
    assert!(!transcript.exists(), "the port was opened");
    assert!(!state.path().join("mfg_nvs").exists());
}

#[test]
fn wrong_wifi_password_is_named() {
    let b = Bundle::new();
    let sim = SimProcess::start("esp32-at", &["--wifi", "atprov-lab:another one"]);
    let (code, _, err) = provision(&sim, &["--job", &b.job()]);
    assert_eq!(code, 12, "{err}");
    assert!(
        last_line(&err).contains("wrong password for Wi-Fi network \"atprov-lab\""),
        "{err}"
    );
    assert!(!err.contains("correct horse"), "the password leaked: {err}");
}

#[test]
fn access_point_not_found_is_named() {
    let b = Bundle::new();
    let sim = SimProcess::start("esp32-at", &["--wifi", "elsewhere:x"]);
    let (code, _, err) = provision(&sim, &["--job", &b.job()]);
    assert_eq!(code, 12, "{err}");
    assert!(
        last_line(&err).contains("Wi-Fi network \"atprov-lab\" not found"),
        "{err}"
    );
}

#[test]
fn an_aws_shaped_bundle_provisions_and_a_wrong_device_ca_is_refused_before_the_module() {
    // The module stores the server root; the device certificate comes from another CA that
    // only the broker trusts (AWS IoT). Today's main refused this with exit 10.
    let b = Bundle::new();
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start(
        "esp32-at",
        &[
            "--state",
            state.path().to_str().unwrap(),
            "--trust",
            b.path("dev-ca.pem").to_str().unwrap(),
        ],
    );
    let (code, _, err) = provision(
        &sim,
        &[
            "--job",
            &b.job(),
            "--device-ca",
            b.path("dev-ca.pem").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");

    let fresh = tempfile::tempdir().unwrap();
    let sim = SimProcess::start("esp32-at", &["--state", fresh.path().to_str().unwrap()]);
    let (code, _, err) = provision(
        &sim,
        &[
            "--job",
            &b.job(),
            "--device-ca",
            b.path("rogue-ca.pem").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 10, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("dev.pem: not issued by the device CA in") && err.contains("rogue-ca.pem"),
        "{err}"
    );
    assert!(
        !fresh.path().join("mfg_nvs").exists()
            || std::fs::read_dir(fresh.path().join("mfg_nvs"))
                .unwrap()
                .next()
                .is_none(),
        "the module was written"
    );
}

#[test]
fn the_broker_refuses_a_device_certificate_from_a_ca_it_does_not_trust() {
    let b = Bundle::new();
    let sim = SimProcess::start(
        "esp32-at",
        &["--trust", b.path("dev-ca.pem").to_str().unwrap()],
    );
    let (code, _, err) = provision(
        &sim,
        &[
            "--job",
            &b.job(),
            "--cert",
            b.path("rogue.pem").to_str().unwrap(),
            "--key",
            b.path("rogue.key").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 13, "{err}");
}

#[test]
fn a_clock_that_never_syncs_stops_before_tls() {
    let b = Bundle::new();
    let sim = SimProcess::start("esp32-at", &["--no-sntp"]);
    let (code, _, err) = provision(&sim, &["--job", &b.job(), "--set", "time.within=1500ms"]);
    assert_eq!(code, 12, "{err}");
    let line = last_line(&err);
    assert!(
        line.contains("clock never synced") && line.contains("1970"),
        "{err}"
    );
}

#[test]
fn broker_rejecting_the_certificate_is_a_connect_failure() {
    let b = Bundle::new();
    let other = generate::ca("the broker's CA", 10).unwrap();
    std::fs::write(b.path("broker-ca.pem"), &other.cert_pem).unwrap();
    let sim = SimProcess::start(
        "esp32-at",
        &["--trust", &b.path("broker-ca.pem").display().to_string()],
    );
    let (code, out, err) = provision(&sim, &["--job", &b.job(), "--json"]);
    assert_eq!(code, 13, "{err}");
    let line = last_line(&err);
    assert!(
        line.contains("connect MQTT") && line.contains("does not accept this certificate"),
        "{err}"
    );
    // Flash went through before connect failed, and the report says where it stopped.
    let report = json(&out);
    assert_eq!(report["result"], "fail");
    assert_eq!(report["exit_code"], 13);
}

#[test]
fn a_credential_too_big_for_a_legacy_partition_is_refused_before_writing() {
    let b = Bundle::new();
    // A CA file holding a long chain: over 8 KiB as a PKI bin.
    let ca = String::from_utf8(b.bytes("ca.pem")).unwrap();
    let mut chain = ca.clone();
    while chain.len() < 9000 {
        chain.push_str(&generate::ca("filler", 10).unwrap().cert_pem);
    }
    std::fs::write(b.path("ca.pem"), chain).unwrap();
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start(
        "esp32-at-v2",
        &["--state", &state.path().display().to_string()],
    );
    let (code, _, err) = provision(&sim, &["--job", &b.job()]);
    assert_eq!(code, 10, "{err}");
    let line = last_line(&err);
    assert!(line.contains("over the 8192 of partition mqtt_ca"), "{err}");
    for slot in ["mqtt_ca", "mqtt_cert", "mqtt_key"] {
        let image = std::fs::read(state.path().join(format!("partitions/{slot}.bin"))).unwrap();
        assert!(image.iter().all(|&x| x == 0xFF), "{slot} was written");
    }
}

#[test]
fn a_reset_mid_flash_is_reported_and_a_rerun_repairs_it() {
    let b = Bundle::new();
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start(
        "esp32-at-v2",
        &[
            "--state",
            &state.path().display().to_string(),
            "--fault",
            "reset_mid@AT+SYSFLASH=1,\"mqtt_cert\"",
        ],
    );
    let (code, _, err) = provision(&sim, &["--job", &b.job()]);
    assert_eq!(code, 9, "{err}");
    let line = last_line(&err);
    assert!(
        line.contains("write mqtt_cert") && line.contains("reset"),
        "{err}"
    );
    assert!(line.contains("run flash again"), "{err}");
    // The fault fired once; the next run rewrites and verifies.
    let (code, _, err) = provision(&sim, &["--job", &b.job()]);
    assert_eq!(code, 0, "{err}");
    let image = std::fs::read(state.path().join("partitions/mqtt_cert.bin")).unwrap();
    let bin = atpki::encode(&[(ItemType::Cert, "c".into(), b.bytes("dev.pem"))]).unwrap();
    assert_eq!(&image[..bin.len()], &bin[..]);
}

#[test]
fn garbled_bytes_end_in_one_line_without_a_hang() {
    let b = Bundle::new();
    let sim = SimProcess::start("esp32-at", &["--fault", "garble@AT+GMR"]);
    let (code, _, err) = atprov(&[
        "identify",
        "--profile",
        "esp32-at",
        "--port",
        &sim.path,
        "--job",
        &b.job(),
    ]);
    assert_eq!(code, 6, "{err}");
    let line = last_line(&err);
    assert!(
        line.contains("firmware") && line.contains("AT+GMR"),
        "{err}"
    );
}

#[test]
fn no_answer_ends_in_one_line_without_a_hang() {
    let b = Bundle::new();
    let sim = SimProcess::start("esp32-at", &["--fault", "silent@AT+CWMODE=1"]);
    let (code, _, err) = provision(&sim, &["--job", &b.job()]);
    assert_eq!(code, 6, "{err}");
    let line = last_line(&err);
    assert!(
        line.contains("station mode") && line.contains("no answer"),
        "{err}"
    );
}

#[test]
fn a_user_written_profile_provisions_the_emulator() {
    let b = Bundle::new();
    let profile = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/profiles/my-esp32-c3.toml"
    );
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start(
        "esp32-at",
        &["--state", &state.path().display().to_string()],
    );
    let (code, out, err) = provision(&sim, &["--profile", profile, "--job", &b.job(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let report = json(&out);
    assert_eq!(report["profile"], "my-esp32-c3");
    // The variant's own identify step captured the module name.
    assert_eq!(report["result"], "pass");
    let stored = std::fs::read(state.path().join("mfg_nvs/mqtt_cert/mqtt_cert.blob")).unwrap();
    assert_eq!(stored, b.bytes("dev.pem"));
    let smoke = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "smoke")
        .unwrap();
    assert!(
        smoke["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "variant publish"),
        "{smoke}"
    );
}

#[test]
fn a_broken_profile_is_reported_with_file_line_column_and_field() {
    let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/profiles/broken.toml");
    let (code, _, err) = atprov(&["profile", "show", profile]);
    assert_eq!(code, 2, "{err}");
    let line = last_line(&err);
    assert!(line.contains("broken.toml:9:11:"), "{err}");
    assert!(line.contains("field `timeout`"), "{err}");
    let (code, out, _) = atprov(&["profiles"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("esp32-at "), "{out}");
}

#[test]
fn the_demo_runs_and_keeps_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = atprov(&["demo", "--keep", &dir.path().display().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("PASS"), "{out}");
    let stored = std::fs::read(dir.path().join("module/mfg_nvs/mqtt_cert/mqtt_cert.blob")).unwrap();
    assert_eq!(
        stored,
        std::fs::read(dir.path().join("device.pem")).unwrap()
    );
}

#[test]
fn long_client_ids_alpn_and_sni_use_their_own_commands() {
    let b = Bundle::new();
    let transcript = b.path("t.atlog");
    let long_id = format!("thing-{}", "x".repeat(300));
    let (code, _, err) = atprov(&[
        "provision",
        "--port",
        "sim:esp32-at",
        "--job",
        &b.job(),
        "--client-id",
        &long_id,
        "--alpn",
        "x-amzn-mqtt-ca",
        "--sni",
        "broker,sni.test",
        "--mqtt-port",
        "443",
        "--transcript",
        &transcript.display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    let t = std::fs::read_to_string(&transcript).unwrap();
    // The short form gets an empty id; the long form carries it after the prompt.
    assert!(t.contains(r#"AT+MQTTUSERCFG=0,5,"","","",0,0,"""#), "{t}");
    assert!(t.contains("AT+MQTTLONGCLIENTID=0,306"), "{t}");
    assert!(t.contains(r#"AT+MQTTALPN=0,1,"x-amzn-mqtt-ca""#), "{t}");
    assert!(t.contains(r#"AT+MQTTSNI=0,"broker\,sni.test""#), "{t}");
    assert!(t.contains(r#"AT+MQTTCONN=0,"broker.test",443,0"#), "{t}");
    assert!(!t.contains("AT+MQTTLONGUSERNAME"), "{t}");
}

#[test]
fn a_module_that_restarts_between_commands_is_reported() {
    let b = Bundle::new();
    let sim = SimProcess::start("esp32-at", &["--fault", "reboot_after@AT+CWJAP="]);
    let (code, _, err) = provision(&sim, &["--job", &b.job()]);
    assert_eq!(code, 9, "{err}");
    let line = last_line(&err);
    // Reported at the first step that looks after the banner arrived.
    assert!(
        line.contains("the module restarted") && line.contains("power supply"),
        "{err}"
    );
}

#[test]
fn quotes_backslashes_and_non_ascii_in_user_values_keep_the_json_valid() {
    let b = Bundle::new();
    // A unit id names files, so it takes no backslash; the other values do.
    let weird = r#"q"b's-é-{mac|nocolon}"#;
    let (code, out, err) = atprov(&[
        "provision",
        "--port",
        "sim:esp32-at",
        "--job",
        &b.job(),
        "--json",
        "--set",
        &format!("unit_id={weird}"),
        "--client-id",
        r#"thing "ü" \ {unit_id}"#,
        "--smoke-topic",
        r#"t/"ß"\x"#,
        "--transcript",
        b.path("t.txt").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let report = json(&out);
    assert_eq!(report["unit_id"], r#"q"b's-é-240ac4123456"#);
    assert_eq!(report["result"], "pass");
    // The smoke message the module published is JSON naming the unit.
    let t = std::fs::read_to_string(b.path("t.txt")).unwrap();
    let payload = t
        .lines()
        .find_map(|l| l.strip_prefix(">> {"))
        .map(|rest| format!("{{{rest}"))
        .expect("the smoke payload in the transcript");
    let smoke = json(&payload);
    assert_eq!(smoke["unit"], r#"q"b's-é-240ac4123456"#);
}

/// A job that lacks something, run against an emulator with a state directory: exit 2 (or
/// 10), one line, and not a byte written to the module.
fn refused_before_the_module(job_extra: &str, flags: &[&str], code: i32, needle: &str) {
    let b = Bundle::new();
    let job = b.path("partial.toml");
    let d = b.dir.path().display();
    std::fs::write(
        &job,
        format!(
            "[credentials]\nca = \"{d}/ca.pem\"\ncert = \"{d}/dev.pem\"\nkey = \"{d}/dev.key\"\n\
             [mqtt]\nhost = \"broker.test\"\n{job_extra}"
        ),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let sim = SimProcess::start("esp32-at", &["--state", state.path().to_str().unwrap()]);
    // The profile named: asking the module which it is would send bytes.
    let mut args = vec!["--profile", "esp32-at", "--job", job.to_str().unwrap()];
    args.extend_from_slice(flags);
    let (got, _, err) = provision(&sim, &args);
    assert_eq!(got, code, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(needle), "`{needle}` in {err}");
    let written = std::fs::read_dir(state.path())
        .unwrap()
        .flatten()
        .any(|e| e.file_name() == "mfg_nvs");
    assert!(
        !written,
        "credentials were written before the job was refused"
    );
}

#[test]
fn a_missing_wifi_password_is_refused_before_anything_is_written() {
    refused_before_the_module(
        "[wifi]\nssid = \"atprov-lab\"\n",
        &[],
        2,
        "needs `wifi.password`, which the job does not set",
    );
}

#[test]
fn a_bad_smoke_timeout_is_refused_before_anything_is_written() {
    refused_before_the_module(
        "[wifi]\nssid = \"atprov-lab\"\npassword = \"x\"\n[smoke]\ntimeout = \"soon\"\n",
        &[],
        2,
        "`soon` is not a duration",
    );
}

#[test]
fn an_unknown_variable_in_a_job_value_is_named() {
    refused_before_the_module(
        "[wifi]\nssid = \"atprov-lab\"\npassword = \"x\"\n",
        &["--client-id", "thing-{unitid}"],
        2,
        "job value mqtt.client_id = \"thing-{unitid}\": variable `unitid` is not set",
    );
}

#[test]
fn a_ten_megabyte_pem_is_refused_before_anything_is_written() {
    let b = Bundle::new();
    let big = b.path("big.pem");
    let one = std::fs::read(b.path("ca.pem")).unwrap();
    std::fs::write(&big, one.repeat(10 * 1024 * 1024 / one.len() + 1)).unwrap();
    refused_before_the_module(
        "[wifi]\nssid = \"atprov-lab\"\npassword = \"x\"\n",
        &["--ca", big.to_str().unwrap()],
        10,
        "more than 107935",
    );
}

/// `atprov provision` against an emulator with realistic latencies, stderr read line by line;
/// SIGINT is sent once the register stage (after flash) has reported (the connect stage is then
/// under way: a Wi-Fi join takes 1.5 s there), and again when `signals` is 2.
fn interrupted_during_connect(sim: &SimProcess, b: &Bundle, signals: usize) -> (i32, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args([
            "provision",
            "--profile",
            "esp32-at",
            "--port",
            &sim.path,
            "--job",
            &b.job(),
        ])
        // Two signals: the traffic shows when the Wi-Fi join (1.5 s here) is under way, so
        // the second lands while the command the first one waits for is still running.
        .args((signals > 1).then_some("-v"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        err.push_str(&line);
        err.push('\n');
        let under_way = if signals > 1 {
            line.contains(">> AT+CWJAP")
        } else {
            line.starts_with("ok   register")
        };
        if under_way {
            break;
        }
    }
    let interrupt = || {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    };
    interrupt();
    let mut sent = 1;
    for line in lines {
        let line = line.unwrap();
        // The second Ctrl-C once atprov said it is stopping (two at once may merge into one).
        if sent < signals && line.contains("stopping after the command under way") {
            interrupt();
            sent += 1;
        }
        err.push_str(&line);
        err.push('\n');
    }
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), err)
}

#[test]
fn ctrl_c_during_connect_stops_cleanly_and_says_what_the_unit_holds() {
    let b = Bundle::new();
    let sim = SimProcess::start("esp32-at", &["--realistic"]);
    let (code, err) = interrupted_during_connect(&sim, &b, 1);
    assert_eq!(code, 130, "{err}");
    let line = last_line(&err);
    assert!(
        line.contains("stopped by Ctrl-C during connect: the module holds the new credentials, read back and verified"),
        "{err}"
    );
    assert!(line.contains("its MQTT connection was closed"), "{err}");
    assert!(
        line.contains("running the same command again is safe"),
        "{err}"
    );
    // And it is: the same command on the same unit passes.
    let (code, _, err) = provision(&sim, &["--profile", "esp32-at", "--job", &b.job()]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_second_ctrl_c_quits_at_once() {
    let b = Bundle::new();
    let sim = SimProcess::start("esp32-at", &["--realistic"]);
    let (code, err) = interrupted_during_connect(&sim, &b, 2);
    assert_eq!(code, 130, "{err}");
    assert!(err.contains("atprov: quit at once"), "{err}");
}

#[test]
fn mosquitto_style_flag_names_work() {
    let b = Bundle::new();
    let sim = SimProcess::start("esp32-at", &[]);
    let (code, _, err) = provision(
        &sim,
        &[
            "--profile",
            "esp32-at",
            "--job",
            &b.job(),
            "--cafile",
            &b.path("ca.pem").display().to_string(),
            "--host",
            "broker.test",
            "--id",
            "thing-7",
            "--topic",
            "lab/{unit_id}/hello",
            "--transcript",
            &b.path("t.atlog").display().to_string(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let t = std::fs::read_to_string(b.path("t.atlog")).unwrap();
    assert!(t.contains(r#""thing-7""#), "{t}");
    assert!(t.contains("AT+MQTTCONN=0,\"broker.test\""), "{t}");
    assert!(t.contains("lab/240ac4123456/hello"), "{t}");
}

/// A `>` lost on the wire at a payload command: the module still waits for the announced
/// bytes. atprov notices within seconds, pays them with filler so that the module leaves its
/// data phase, checks that it answers `AT`, and says so; a rerun then rewrites and verifies.
/// `args`: what `provision` needs besides the port (the job, a profile).
pub(crate) fn lost_prompt_then_rerun(emulator: &str, prefix: &str, args: &[&str]) {
    let fault = format!("drop_prompt@{prefix}");
    let sim = SimProcess::start(emulator, &["--fault", &fault]);
    let (code, _, err) = provision(&sim, args);
    assert_eq!(code, 6, "{err}");
    let line = last_line(&err);
    assert!(
        line.contains("never asked for the data") && line.contains("it answers AT again"),
        "{err}"
    );
    let (code, _, err) = provision(&sim, args);
    assert_eq!(code, 0, "the rerun repairs the unit: {err}");
}

#[test]
fn a_lost_prompt_at_sysmfg_is_recovered_and_a_rerun_repairs_the_unit() {
    let b = Bundle::new();
    let prefix = "AT+SYSMFG=2,\"mqtt_cert\"";
    lost_prompt_then_rerun("esp32-at", prefix, &["--job", &b.job()]);
}

#[test]
fn a_lost_prompt_at_sysflash_is_recovered_and_a_rerun_repairs_the_unit() {
    let b = Bundle::new();
    let prefix = "AT+SYSFLASH=1,\"mqtt_key\"";
    lost_prompt_then_rerun("esp32-at-v2", prefix, &["--job", &b.job()]);
}

/// The distinct commands (up to `=`/`?`) a successful provision of `emulator` sends, from its
/// transcript: the places a module may restart.
pub(crate) fn commands_of_a_run(emulator: &str, args: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("run.txt");
    let sim = SimProcess::start(emulator, &[]);
    let mut all = vec!["provision", "--port", &sim.path, "--transcript"];
    let ts = t.display().to_string();
    all.push(&ts);
    all.extend_from_slice(args);
    let (code, _, err) = atprov(&all);
    assert_eq!(code, 0, "{err}");
    let mut out: Vec<String> = Vec::new();
    for l in std::fs::read_to_string(&t).unwrap().lines() {
        let Some(cmd) = l.strip_prefix(">> AT") else {
            continue;
        };
        let name = format!("AT{}", cmd.split(['=', '?']).next().unwrap());
        let prefix = if cmd.contains('=') {
            format!("{name}=")
        } else {
            name
        };
        if prefix != "AT" && !out.contains(&prefix) {
            out.push(prefix);
        }
    }
    out
}

/// A restart under any command of the flow is a module reset (exit 9), never a cloud or
/// network failure.
pub(crate) fn a_restart_at_every_step_is_a_module_reset(emulator: &str, args: &[&str]) {
    let commands = commands_of_a_run(emulator, args);
    assert!(commands.len() >= 8, "{commands:?}");
    let mut wrong = Vec::new();
    for prefix in &commands {
        let fault = format!("reset_mid@{prefix}");
        let sim = SimProcess::start(emulator, &["--fault", &fault]);
        let mut all = vec!["provision", "--port", &sim.path];
        all.extend_from_slice(args);
        let (code, _, err) = atprov(&all);
        if code != 9 {
            wrong.push(format!("{prefix}: exit {code}: {}", last_line(&err)));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_restart_at_every_step_of_the_esp32_flow_is_a_module_reset() {
    let b = Bundle::new();
    a_restart_at_every_step_is_a_module_reset("esp32-at", &["--job", &b.job()]);
}

#[test]
fn a_provision_transcript_replays_as_recorded_v3_and_v2() {
    for emulator in ["esp32-at", "esp32-at-v2"] {
        let b = Bundle::new();
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("run.txt");
        let sim = SimProcess::start(emulator, &[]);
        let ts = t.display().to_string();
        let (code, _, err) = provision(&sim, &["--job", &b.job(), "--transcript", &ts]);
        assert_eq!(code, 0, "{err}");
        crate::transcript_roundtrip::replays_as_recorded(&t);
    }
}

/// The README's code block after `heading`, with shell line continuations joined.
pub(crate) fn readme_block(heading: &str, lang: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let after = &readme[readme.find(heading).expect(heading)..];
    let fence = format!("```{lang}\n");
    let start = after.find(&fence).unwrap() + fence.len();
    let body = &after[start..];
    body[..body.find("```").unwrap()].replace("\\\n", " ")
}

/// The README's promises are the product's: its example command, against an emulated ESP32
/// with openssl-made credentials in place of the files it names.
#[test]
fn the_readme_provisioning_example_runs_against_an_emulator() {
    let b = Bundle::new();
    let sim = SimProcess::start("esp32-at", &[]);
    let block = readme_block("## Provisioning a real ESP32", "sh");
    let mut args: Vec<String> = block
        .split_whitespace()
        .map(|a| a.trim_matches('\'').to_string())
        .collect();
    assert_eq!(args.remove(0), "atprov");
    for a in args.iter_mut() {
        *a = match a.as_str() {
            "/dev/ttyUSB0" => sim.path.clone(),
            "AmazonRootCA1.pem" => b.path("ca.pem").display().to_string(),
            "device.pem.crt" => b.path("dev.pem").display().to_string(),
            "private.pem.key" => b.path("dev.key").display().to_string(),
            "lab" => "atprov-lab".into(),
            other => other.to_string(),
        };
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args(&args)
        .env("WIFI_PASSWORD", "correct horse battery")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}\n{err}");
}

/// The README's job file, as written there (credentials swapped for openssl-made ones).
#[test]
fn the_readme_job_file_is_a_valid_job() {
    let b = Bundle::new();
    let sim = SimProcess::start("esp32-at", &[]);
    let job = readme_block("or with the same settings in a job file", "toml")
        .replace("AmazonRootCA1.pem", &b.path("ca.pem").display().to_string())
        .replace("device.pem.crt", &b.path("dev.pem").display().to_string())
        .replace("private.pem.key", &b.path("dev.key").display().to_string())
        .replace("ssid = \"lab\"", "ssid = \"atprov-lab\"");
    let path = b.path("readme-job.toml");
    std::fs::write(&path, job).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args(["provision", "--port", &sim.path, "--job"])
        .arg(&path)
        .env("WIFI_PASSWORD", "correct horse battery")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
}
