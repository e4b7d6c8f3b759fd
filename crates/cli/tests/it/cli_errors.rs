//! Bad input ends in one clear line on stderr and the documented exit code, never a panic.

use crate::common::{SimProcess, atprov};
use atprov_core::port::{self, Selector, SerialOptions};

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
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    for c in atprov_core::error::Code::ALL {
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

/// Runs atprov with `args`; when it is still running after `within` (a server, or a command
/// that accepted the value and got on with its work) it is stopped. Returns (exit code or
/// None when stopped, stderr).
fn run_bounded(args: &[String], within: std::time::Duration) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + within;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (code, err)
}

/// Every flag that takes a number or a duration, with the command around it.
const NUMERIC_FLAGS: &[(&[&str], &str)] = &[
    (&["send", "--port", "sim:esp32-at", "AT"], "--timeout"),
    (&["send", "--port", "sim:esp32-at", "AT"], "--baud"),
    (&["console", "--port", "sim:esp32-at"], "--timeout"),
    (&["identify", "--port", "sim:esp32-at"], "--baud"),
    (&["connect", "--port", "sim:esp32-at"], "--mqtt-port"),
    (&["connect", "--port", "sim:esp32-at"], "--keepalive"),
    (
        &["connect", "--port", "sim:esp32-at", "--set"],
        "smoke.timeout=",
    ),
    (
        &["connect", "--port", "sim:esp32-at", "--set"],
        "time.within=",
    ),
    (
        &["connect", "--port", "sim:esp32-at", "--set"],
        "mqtt.port=",
    ),
    (&["replay", "/nonexistent.txt"], "--timeout"),
    (
        &["pki", "generate", "--ca", "-o", "/nonexistent/x"],
        "--days",
    ),
    (&["factory", "--config", "/nonexistent.toml"], "--batch"),
    (&["sim", "esp32-at", "--pty"], "--baud"),
    (&["sim", "esp32-at", "--pty"], "--latency"),
    (&["sim", "air780ep", "--pty", "--module"], "idle-kick="),
    (&["sim", "quectel", "--pty", "--module"], "open-result="),
    (&["sim", "esp32-at", "--pty", "--fault"], "busy:"),
    (
        &[
            "sign",
            "aliyun",
            "--product-key",
            "pk",
            "--device-name",
            "dn",
        ],
        "--securemode",
    ),
];

fn arbitrary_value() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("4294967296".to_string()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e309".to_string()),
        Just("NaN".to_string()),
        Just("99999999999999999999h".to_string()),
        Just("0ms".to_string()),
        any::<u32>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| format!("{n}ms")),
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    #[test]
    fn no_value_of_any_numeric_flag_makes_atprov_panic(
        which in 0..NUMERIC_FLAGS.len(),
        value in arbitrary_value(),
    ) {
        let (command, flag) = NUMERIC_FLAGS[which];
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        let (flag, sep) = match flag.strip_suffix('=').or_else(|| flag.strip_suffix(':')) {
            Some(f) => (f.to_string(), &flag[f.len()..]),
            None => (flag.to_string(), ""),
        };
        if sep.is_empty() {
            args.push(flag);
            args.push(value.clone());
        } else if sep == ":" {
            args.push(format!("{flag}:{value}@AT"));
        } else {
            args.push(format!("{flag}={value}"));
        }
        let (code, err) = run_bounded(&args, std::time::Duration::from_secs(2));
        proptest::prop_assert!(!err.contains("panicked"), "{args:?}: {err}");
        proptest::prop_assert_ne!(code, Some(101), "{:?}: {}", args, err);
        if let Some(c) = code.filter(|c| *c != 0) {
            // A refusal is one line (clap's own usage errors are several, but exit 2).
            proptest::prop_assert!(c == 2 || err.lines().count() == 1, "{args:?} exit {c}: {err}");
        }
    }
}

#[test]
fn zero_and_absurd_numbers_are_refused_at_parse_time() {
    for args in [
        &["sim", "esp32-at", "--pty", "--baud", "0"][..],
        &["send", "--port", "sim:esp32-at", "--timeout", "0", "AT"],
        &["send", "--port", "sim:esp32-at", "--baud", "0", "AT"],
        &["pki", "generate", "--ca", "--days", "3000000", "-o", "/tmp"],
        &["factory", "--config", "x.toml", "--batch", "0"],
    ] {
        let (code, _, err) = atprov(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `atprov send AT` against the in-process emulator with these flags and environment.
fn send_at(flags: &[&str], env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args(flags)
        .args(["send", "--port", "sim:esp32-at", "AT"])
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_log_follows_v_q_and_rust_log_and_has_no_colour_when_piped() {
    assert!(!send_at(&[], &[]).contains(">> AT"));
    let verbose = send_at(&["-v"], &[]);
    assert!(
        verbose.contains(">> AT") && verbose.contains("<< OK"),
        "{verbose}"
    );
    // stderr is a pipe here: no ANSI escapes.
    assert!(!verbose.contains('\u{1b}'), "{verbose:?}");
    let from_env = send_at(&[], &[("RUST_LOG", "atprov::traffic=info")]);
    assert!(from_env.contains(">> AT"), "{from_env}");
    let silenced = send_at(&["-v"], &[("RUST_LOG", "atprov::traffic=off")]);
    assert!(!silenced.contains(">> AT"), "{silenced}");
    assert!(send_at(&["-q"], &[]).is_empty());
}

#[test]
fn json_callers_get_one_report_object_even_when_nothing_ran() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml").display().to_string();
    for args in [
        vec![
            "provision",
            "--port",
            "/dev/atprov-none",
            "--job",
            &missing,
            "--json",
        ],
        vec!["identify", "--port", "/dev/atprov-none", "--json"],
        vec!["preflight", "--job", &missing, "--json"],
        vec!["send", "--port", "/dev/atprov-none", "--json", "AT"],
        vec!["replay", &missing, "--json"],
        vec!["pki", "inspect", &missing, "--json"],
    ] {
        let (code, out, err) = crate::common::atprov(&args);
        assert_ne!(code, 0, "{args:?}");
        let report: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON document ({e}): {out}"));
        assert_eq!(report["result"], "fail", "{args:?}: {out}");
        assert_eq!(report["exit_code"], code, "{args:?}: {out}");
        let reason = report["error"].as_str().unwrap();
        assert!(err.contains(reason), "{args:?}: {err} / {reason}");
    }
}

#[test]
fn completions_and_the_man_page_cover_every_command_and_sim_help_names_every_emulator() {
    let (code, script, err) = crate::common::atprov(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("atprov.bash");
    std::fs::write(&file, &script).unwrap();
    // bash itself says whether the script parses.
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let (code, man, _) = crate::common::atprov(&["man"]);
    assert_eq!(code, 0);
    assert!(man.contains(".TH atprov 1"), "{man}");
    for command in [
        "provision",
        "preflight",
        "factory",
        "sim",
        "pki",
        "completions",
    ] {
        assert!(script.contains(command), "completions lack {command}");
        assert!(man.contains(command), "the man page lacks {command}");
    }
    let (_, help, _) = crate::common::atprov(&["sim", "--help"]);
    for word in [
        "esp32-at",
        "esp32-at-v2",
        "quectel",
        "air780ep",
        "reset_mid",
        "reboot_after",
        "garble",
        "silent",
        "busy:N",
        "truncate:N",
    ] {
        assert!(help.contains(word), "sim --help lacks {word}");
    }
}

#[test]
fn provision_help_lists_every_variable_set_takes() {
    let (_, help, _) = crate::common::atprov(&["provision", "--help"]);
    for v in atprov_core::profile::VARIABLES {
        if v.ends_with("password") {
            continue;
        }
        assert!(help.contains(v), "provision --help does not list `{v}`");
    }
}

/// `atprov ARGS` run in `dir`, with `env` set and no user config folder.
fn atprov_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args(args)
        .current_dir(dir)
        .env_remove("ATPROV_PORT")
        .env_remove("ATPROV_PROFILE")
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn atprov_toml_gives_defaults_that_the_environment_and_flags_override() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("atprov.toml"),
        "port = \"sim:quectel\"\nprofile = \"quectel\"\n",
    )
    .unwrap();
    let profile = |out: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        v["profile"].as_str().unwrap().to_string()
    };
    let (code, out, err) = atprov_in(dir.path(), &["identify", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(profile(&out), "quectel");
    assert!(
        out.contains("866834041644845"),
        "the Quectel emulator answered: {out}"
    );
    // The environment beats the file, a flag beats both.
    let (code, out, err) = atprov_in(
        dir.path(),
        &["identify", "--json", "--port", "sim:air780ep"],
        &[("ATPROV_PROFILE", "air780ep")],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(profile(&out), "air780ep");
    // A mistake in the file: one line naming it, exit 2.
    std::fs::write(
        dir.path().join("atprov.toml"),
        "port = \"sim:quectel\"\nspeed = 9600\n",
    )
    .unwrap();
    let (code, _, err) = atprov_in(dir.path(), &["identify"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("atprov: atprov.toml:2:1: unknown field `speed`"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_prompt_the_catalog_does_not_know_says_the_module_wants_data() {
    // AT+HTTPCPOST is not in atprov's catalog: `OK`, then `>`.
    let sim = crate::common::SimProcess::start("esp32-at", &[]);
    let (code, _, err) = crate::common::atprov(&[
        "send",
        "--port",
        &sim.path,
        r#"AT+HTTPCPOST="http://h/p",5"#,
        "AT",
    ]);
    // Its `OK` came first; the `>` after it is named, the module is brought back (the next
    // command is answered) and nothing was sent as data.
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the module wants data") && err.contains("AT+HTTPCPOST"),
        "{err}"
    );
    let (code, out, err) = crate::common::atprov(&[
        "send",
        "--port",
        &sim.path,
        r#"AT+HTTPCPOST="http://h/p",5"#,
        "--data",
        "hello",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("SEND OK"), "{out}");
}

/// Lines of a child's stream, read on a thread of their own.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (generously: a shared 2-core machine) for a line containing `needle`.
fn wait_for(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no line with `{needle}`"));
        if line.contains(needle) {
            return line;
        }
    }
}

#[test]
fn the_console_reconnects_when_the_port_comes_back() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyMODULE");
    let l = link.to_str().unwrap();
    let sim = SimProcess::start("esp32-at", &["--link", l]);
    let mut console = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args(["console", "--port", l, "--timestamps", "iso"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines_of(console.stdout.take().unwrap());
    let err = lines_of(console.stderr.take().unwrap());
    let mut stdin = console.stdin.take().unwrap();
    stdin.write_all(b"AT\n").unwrap();
    let ok = wait_for(&out, "<< final OK");
    // ISO 8601 UTC stamps: 2026-12-03T09:58:01.123Z
    let stamp = ok.split_whitespace().next().unwrap();
    assert!(
        stamp.len() == 24 && stamp.as_bytes()[10] == b'T' && stamp.ends_with('Z'),
        "{ok}"
    );
    // The module goes away (its PTY closes) and comes back under the same name.
    drop(sim);
    wait_for(&err, "went away");
    let _back = SimProcess::start("esp32-at", &["--link", l]);
    wait_for(&err, "reconnected");
    stdin.write_all(b"AT+GMR\n").unwrap();
    wait_for(&out, "<< final OK");
    drop(stdin);
    assert!(console.wait().unwrap().success());
}

#[test]
fn a_known_prompt_without_data_says_so_and_the_module_is_brought_back() {
    // AT+SYSMFG=2 of a binary item answers `OK`, then `>`, and waits for 5 bytes.
    let sim = crate::common::SimProcess::start("esp32-at", &[]);
    let (code, out, err) = crate::common::atprov(&[
        "send",
        "--keep-going",
        "--port",
        &sim.path,
        r#"AT+SYSMFG=2,"mqtt_ca","mqtt_ca",8,5"#,
        "AT+GMR",
    ]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("the module wants data"), "{err}");
    // The data phase was left (ESC, then sentinels as filler) and the module answers again.
    assert!(out.contains("AT version:"), "{out}");
}

#[test]
fn without_a_port_atprov_looks_for_the_module_and_says_how_to_choose() {
    // This machine has no USB serial port that looks like a module.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .arg("identify")
        .current_dir(dir.path())
        .env_remove("ATPROV_PORT")
        .env("XDG_CONFIG_HOME", dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("no serial port looks like a module") && err.contains("--port"),
        "{err}"
    );
}

#[test]
fn identify_help_shows_only_what_identify_uses() {
    let (code, out, _) = crate::common::atprov(&["identify", "--help"]);
    assert_eq!(code, 0);
    for unused in [
        "--ca",
        "--cert",
        "--wifi-ssid",
        "--mqtt-host",
        "--force",
        "--set",
    ] {
        assert!(
            !out.contains(unused),
            "identify --help offers {unused}:\n{out}"
        );
    }
    for used in ["--port", "--profile", "--baud", "--json"] {
        assert!(out.contains(used), "{used} missing:\n{out}");
    }
}
