//! `--flash-baud`: the credential transfer at a higher line rate, over a real PTY against
//! emulators in other processes. The emulator judges the host: it reads the rate the host set
//! on its side of the PTY, and once either side has switched, bytes cross only while both
//! agree. So a host that forgets to follow, switches too early or never switches back fails
//! here; what the module holds afterwards is asked of the module itself (`AT+UART_CUR?`,
//! `AT+UART_DEF?`, `AT+IPR?`, after a restart).

use crate::common::{SimProcess, atprov};

struct Run {
    code: i32,
    report: serde_json::Value,
    err: String,
    transcript: String,
}

/// Provisions with `--flash-baud RATE` and keeps the report and the transcript.
fn provision(sim: &SimProcess, profile: &str, rate: &str, dir: &std::path::Path) -> Run {
    let transcript = dir.join(format!("session-{rate}.txt"));
    let job = dir.join("job.toml");
    let (code, out, err) = atprov(&[
        "provision",
        "--profile",
        profile,
        "--port",
        &sim.path,
        "--job",
        job.to_str().unwrap(),
        "--flash-baud",
        rate,
        "--force",
        "--json",
        "--transcript",
        transcript.to_str().unwrap(),
    ]);
    let report = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    Run {
        code,
        report,
        err,
        transcript: std::fs::read_to_string(&transcript).unwrap_or_default(),
    }
}

fn bundle(cellular: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    crate::common::write_credentials(dir.path());
    let d = dir.path().display();
    let network = if cellular {
        String::new()
    } else {
        "[wifi]\nssid = \"atprov-lab\"\npassword = \"correct horse battery\"\n".to_string()
    };
    std::fs::write(
        dir.path().join("job.toml"),
        format!(
            "[credentials]\nca = \"{d}/ca.pem\"\ncert = \"{d}/dev.pem\"\nkey = \"{d}/dev.key\"\n\
             {network}[mqtt]\nhost = \"abc-ats.iot.eu-west-1.amazonaws.com\"\n[smoke]\ntimeout = \"2s\"\n"
        ),
    )
    .unwrap();
    dir
}

/// Starts `family`'s emulator with `sim_args`, provisions with `--flash-baud rate` and checks
/// the unit passed; the emulator stays up to be asked afterwards.
fn passing(family: &str, sim_args: &[&str], rate: &str) -> (SimProcess, Run, Vec<Step>) {
    let dir = bundle(family != "esp32-at");
    let sim = SimProcess::start(family, sim_args);
    let run = provision(&sim, family, rate, dir.path());
    assert_eq!(run.code, 0, "{}", run.err);
    let steps = flash_steps(&run.report);
    (sim, run, steps)
}

/// A step of the report: name, result, detail.
type Step = (String, String, String);

/// The flash stage's steps: (name, result, detail).
fn flash_steps(report: &serde_json::Value) -> Vec<Step> {
    let stages = report["stages"].as_array().unwrap();
    let flash = stages.iter().find(|s| s["stage"] == "flash").unwrap();
    flash["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["result"].as_str().unwrap().to_string(),
                s["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Sends commands at 115,200 baud; returns the exit code and what was printed.
fn ask(sim: &SimProcess, commands: &[&str]) -> (i32, String) {
    let mut args = vec!["send", "--port", &sim.path, "--baud", "115200"];
    args.extend_from_slice(commands);
    let (code, out, err) = atprov(&args);
    (code, format!("{out}{err}"))
}

#[test]
fn esp_at_writes_at_921600_then_is_back_at_115200_with_nothing_saved() {
    let (sim, run, steps) = passing("esp32-at", &[], "921600");
    let names: Vec<&str> = steps.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names.first(), Some(&"line rate"), "{steps:?}");
    assert_eq!(names.last(), Some(&"line rate back"), "{steps:?}");
    assert_eq!(steps[0].2, "115200 → 921600 baud");
    // The switch keeps the module's frame (read with AT+UART_CUR?) and is never saved.
    assert!(
        run.transcript.contains(">> AT+UART_CUR=921600,8,1,0,1"),
        "{}",
        run.transcript
    );
    assert!(run.transcript.contains(">> AT+UART_CUR=115200,8,1,0,1"));
    assert!(!run.transcript.contains("AT+UART_DEF") && !run.transcript.contains("AT+UART="));
    // The module answers at the original rate, and its saved rate is the factory one.
    let (code, out) = ask(&sim, &["AT+UART_CUR?", "AT+UART_DEF?"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("+UART_CUR:115201,"), "{out}");
    assert!(out.contains("+UART_DEF:115200,"), "{out}");
}

#[test]
fn a_rate_the_adapter_cannot_carry_falls_back_and_the_unit_still_passes() {
    // What the module sends above 460,800 baud reaches the host garbled.
    let (sim, run, steps) = passing("esp32-at", &["--module", "max-baud=460800"], "921600");
    assert_eq!(steps[0].0, "line rate");
    assert_eq!(steps[0].1, "warning", "{steps:?}");
    assert!(steps[0].2.contains("no answer at 921600 baud"), "{steps:?}");
    assert!(steps.iter().all(|s| s.0 != "line rate back"), "{steps:?}");
    assert!(run.err.contains("back at 115200"), "{}", run.err);
    // Every slot was written and verified at the old rate.
    let written = steps.iter().filter(|s| s.2.ends_with("written")).count();
    assert_eq!(written, 3, "{steps:?}");
    let (code, out) = ask(&sim, &["AT+UART_CUR?"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("+UART_CUR:115201,"), "{out}");
}

#[test]
fn quectel_switches_with_ipr_never_at_w_and_restarts_at_its_old_rate() {
    let (sim, run, steps) = passing("quectel", &[], "921600");
    assert_eq!(steps[0].2, "115200 → 921600 baud", "{steps:?}");
    assert!(run.transcript.contains(">> AT+IPR=921600"));
    assert!(run.transcript.contains(">> AT+IPR=115200"));
    assert!(!run.transcript.contains("AT&W"), "{}", run.transcript);
    let (code, out) = ask(&sim, &["AT+IPR?", "AT+CFUN=1,1", "AT+IPR?"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("+IPR: 115200").count(), 2, "{out}");
}

#[test]
fn a_rate_the_module_does_not_list_is_not_tried() {
    let (_sim, run, steps) = passing("quectel", &[], "1000000");
    assert_eq!(steps[0].1, "warning", "{steps:?}");
    assert!(steps[0].2.contains("does not offer 1000000"), "{steps:?}");
    assert!(run.transcript.contains(">> AT+IPR=?"));
    assert!(!run.transcript.contains(">> AT+IPR=1000000"));
}

#[test]
fn auto_switches_where_it_pays_and_not_where_the_settle_time_eats_the_gain() {
    let (_esp, _, steps) = passing("esp32-at", &[], "auto");
    // A P-256 bundle (~1.6 KB) gains more at 921600 than ESP-AT's switch costs (two 10 ms
    // settles and a few commands).
    assert_eq!(steps[0].2, "115200 → 921600 baud", "{steps:?}");

    let (_quectel, run, steps) = passing("quectel", &[], "auto");
    // Quectel's 500 ms settle, twice, is more than the same bundle gains.
    assert_eq!(steps[0].1, "skipped", "{steps:?}");
    assert!(steps[0].2.contains("the switch costs"), "{steps:?}");
    assert!(!run.transcript.contains(">> AT+IPR=9"));
}

#[test]
fn a_switch_whose_ok_is_lost_is_taken_as_made() {
    // The module switches but its `OK` arrives garbled: it is at 921600 all the same, and
    // only treating the switch as made (and confirming there) reaches it.
    let (sim, _, steps) = passing(
        "esp32-at",
        &["--fault", "garble@AT+UART_CUR=921600"],
        "921600",
    );
    assert_eq!(steps[0].2, "115200 → 921600 baud", "{steps:?}");
    assert_eq!(steps.last().unwrap().0, "line rate back", "{steps:?}");
    let (code, out) = ask(&sim, &["AT+UART_CUR?"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_restart_during_the_fast_transfer_fails_the_unit_and_leaves_it_reachable() {
    let dir = bundle(false);
    // The module restarts halfway through writing the certificate: it comes back at its
    // power-on rate while the port is at 921600.
    let sim = SimProcess::start(
        "esp32-at",
        &["--fault", "reset_mid@AT+SYSMFG=2,\"mqtt_cert\""],
    );
    let run = provision(&sim, "esp32-at", "921600", dir.path());
    assert!(run.code == 6 || run.code == 9, "{}: {}", run.code, run.err);
    let steps = flash_steps(&run.report);
    let back = steps.iter().find(|s| s.0 == "line rate back");
    assert!(back.is_some_and(|s| s.1 == "ok"), "{steps:?}");
    // The transfer's failure is what the unit reports.
    assert!(
        run.report["error"].as_str().unwrap().contains("mqtt_cert"),
        "{}",
        run.report
    );
    let (code, out) = ask(&sim, &["AT+UART_CUR?"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("+UART_CUR:115201,"), "{out}");
}

#[test]
fn a_host_that_does_not_follow_the_switch_loses_the_module() {
    // The emulator's judgement itself: switched with a plain `send`, the module no longer
    // answers at 115,200 but does at 921,600.
    let sim = SimProcess::start("esp32-at", &[]);
    let (code, out) = ask(&sim, &["AT+UART_CUR=921600,8,1,0,0"]);
    assert_eq!(code, 0, "{out}");
    let (code, _) = ask(&sim, &["--timeout", "1s", "AT"]);
    assert_eq!(code, 6, "the module answered at the wrong rate");
    let (code, out, err) = atprov(&["send", "--port", &sim.path, "--baud", "921600", "AT"]);
    assert_eq!(code, 0, "{out}{err}");
}
