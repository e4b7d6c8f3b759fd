//! Bad input ends in one clear line on stderr and the documented exit code, never a panic.

mod common;

use atprov::port::{self, Selector, SerialOptions};
use common::{SimProcess, atprov};

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0]
}

#[test]
fn an_unknown_selector_is_a_usage_error() {
    let (code, _, err) = atprov(&["send", "--port", "serial:/dev/x", "AT"]);
    assert_eq!(code, 2);
    let line = one_line(&err);
    assert!(
        line.contains("unknown port selector `serial:/dev/x`"),
        "{line}"
    );
    assert!(line.contains("usb:VID:PID"), "{line}");
}

#[test]
fn a_missing_device_has_its_own_code() {
    let (code, _, err) = atprov(&["send", "--port", "/dev/ttyATPROV-NOPE", "AT"]);
    assert_eq!(code, 3);
    assert!(
        one_line(&err).contains("port /dev/ttyATPROV-NOPE not found"),
        "{err}"
    );
    let (code, _, err) = atprov(&["send", "--port", "usb:dead:beef", "AT"]);
    assert_eq!(code, 3, "{err}");
    one_line(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_device_names_the_cause() {
    let sim = SimProcess::start("esp32-at", &[]);
    let _held = port::open(
        &Selector::Path(sim.path.clone().into()),
        &SerialOptions::default(),
    )
    .await
    .expect("first open");
    let path = sim.path.clone();
    let (code, _, err) =
        tokio::task::spawn_blocking(move || atprov(&["send", "--port", &path, "AT"]))
            .await
            .unwrap();
    assert_eq!(code, 4, "{err}");
    let line = one_line(&err);
    assert!(line.contains("in use by another process"), "{line}");
    assert!(line.contains("ModemManager"), "{line}");
}

#[test]
fn a_transcript_syntax_error_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.txt");
    std::fs::write(&f, "# ok\n>> AT\n<< OK\nOK\n").unwrap();
    let (code, _, err) = atprov(&["replay", f.to_str().unwrap()]);
    assert_eq!(code, 2);
    let line = one_line(&err);
    assert!(line.contains(&format!("{}:4:", f.display())), "{line}");
    let (code, _, err) = atprov(&["replay", "/nonexistent/t.txt"]);
    assert_eq!(code, 2);
    one_line(&err);
}

#[test]
fn non_utf8_bytes_from_the_device_are_shown_escaped() {
    let sim = SimProcess::start("esp32-at", &[]);
    let (code, out, err) = atprov(&[
        "send",
        "--port",
        &sim.path,
        "ATE0",
        r#"AT+SIMFAULT="hex","0D0AFFFE41C30D0A""#,
        "AT",
    ]);
    assert_eq!(code, 0, "{err}");
    // Shown escaped, whether it lands as unsolicited or (when the next `AT` is already in
    // flight) as that command's line: the order is the emulator's and the OS's, not ours.
    assert!(out.contains(r"\xff\xfeA\xc3"), "{out}");
    assert!(
        !out.contains('\u{fffd}'),
        "replaced instead of escaped: {out}"
    );
}

#[test]
fn an_error_answer_exits_with_the_at_error_code() {
    let (code, out, err) = atprov(&["send", "--port", "sim:esp32-at", "AT", "AT+NOPE", "AT"]);
    assert_eq!(code, 7);
    assert!(one_line(&err).contains("AT+NOPE: ERROR"), "{err}");
    assert_eq!(
        out.matches("AT+NOPE").count(),
        1,
        "stops at the first failure: {out}"
    );
}

#[test]
fn the_readme_exit_code_table_matches_the_code() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for c in atprov::exit::Code::ALL {
        let row = format!("| {} | {} |", c.number(), c.meaning());
        assert!(readme.contains(&row), "README lacks the row `{row}`");
    }
}

#[test]
fn json_output_of_send_is_one_object_per_command() {
    let (code, out, _) = atprov(&[
        "send",
        "--json",
        "--port",
        "sim:esp32-at",
        "AT+GMR",
        "AT+CWMODE?",
    ]);
    assert_eq!(code, 0);
    let objs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 2);
    assert_eq!(objs[0]["final"], "OK");
    assert_eq!(objs[0]["info"].as_array().unwrap().len(), 4);
    assert_eq!(objs[1]["info"][0], "+CWMODE:1");
    assert_eq!(objs[1]["echo"], true);
}
