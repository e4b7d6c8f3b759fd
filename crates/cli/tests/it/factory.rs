//! `atprov factory` end to end: a line of emulated units (each `atprov sim` in its own process
//! on a PTY, reached through a station symlink), the factory binary reading its config, the
//! SQLite journal and the emulators' `--state` directories compared afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use atprov_core::pki::load::sha256_hex;
use std::time::Duration;

use crate::common::line::{
    Conveyor, Factory, make_pool, operate, react, report, share_pool, write_config,
};

/// The pool's certificate fingerprints by thing name.
fn pool_fingerprints(pool: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(pool)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name()?.to_str()?.strip_suffix(".crt")?.to_string();
            Some((name, sha256_hex(&std::fs::read(&p).unwrap())))
        })
        .collect()
}

/// Every unit plugged in holds exactly the certificate the journal gave it, no certificate
/// went to two units, and each passed.
fn assert_journal_matches_units(dir: &Path, conveyor: &Conveyor, pool: &Path) {
    let rows = report(dir.join("journal.db"));
    let fingerprints = pool_fingerprints(pool);
    let mut by_unit: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut passed = BTreeSet::new();
    for r in &rows {
        if let (Some(unit), Some(sha)) = (r["unit_id"].as_str(), r["cert_sha256"].as_str()) {
            by_unit.entry(unit.into()).or_default().insert(sha.into());
            assert_eq!(
                fingerprints.get(r["thing_name"].as_str().unwrap()),
                Some(&sha.to_string()),
                "the journal's fingerprint is the pool file's"
            );
        }
        if r["result"] == "pass" {
            passed.insert(r["unit_id"].as_str().unwrap().to_string());
        }
    }
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (unit, shas) in &by_unit {
        assert_eq!(shas.len(), 1, "unit {unit} was given {shas:?}");
        let sha = shas.iter().next().unwrap();
        if let Some(other) = owners.insert(sha.clone(), unit.clone()) {
            panic!("certificate {sha} went to {other} and {unit}");
        }
    }
    let plugged: BTreeSet<String> = conveyor.plugged.iter().map(|u| u.unit_id()).collect();
    assert_eq!(passed, plugged, "every unit passed");
    for unit in &conveyor.plugged {
        let held = unit.stored_cert().expect("the unit holds a certificate");
        let expected = by_unit[&unit.unit_id()].iter().next().unwrap();
        assert_eq!(
            &sha256_hex(&held),
            expected,
            "unit {} holds the journal's",
            unit.mac
        );
    }
}

#[test]
fn three_stations_provision_twelve_units_from_a_pool_of_twelve() {
    let dir = tempfile::tempdir().unwrap();
    let pool = make_pool(dir.path(), 12);
    let mut conveyor = Conveyor::new(dir.path(), 3, 4, &[]);
    let config = write_config(dir.path(), &conveyor, "");
    conveyor.fill();
    let mut factory = Factory::start(&config, &["--batch", "12"]);
    let events = operate(&mut factory, &mut conveyor);
    let (code, stderr) = factory.wait();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(conveyor.plugged.len(), 12);
    assert_journal_matches_units(dir.path(), &conveyor, &pool);
    // Each station did units, in parallel.
    let stations: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["event"] == "unit_passed")
        .map(|e| e["station"].as_str().unwrap())
        .collect();
    assert_eq!(stations.len(), 3);
    // No key material in the events, journal or transcripts.
    let key = std::fs::read_to_string(pool.join("thing-001.key")).unwrap();
    let key_line = key.lines().nth(1).unwrap();
    let all_events = events.iter().map(|e| e.to_string()).collect::<String>();
    assert!(!all_events.contains(key_line));
    let journal_bytes = std::fs::read(dir.path().join("journal.db")).unwrap();
    assert!(!String::from_utf8_lossy(&journal_bytes).contains(key_line));
    let logs: Vec<_> = walk(&dir.path().join("logs"));
    assert_eq!(logs.len(), 12, "one transcript per unit: {logs:?}");
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("AT+SYSMFG"), "{}", log.display());
        assert!(!text.contains(key_line), "{} shows the key", log.display());
        assert!(!text.contains("correct horse battery"));
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn killing_the_factory_at_random_moments_loses_nothing() {
    let mut rng = crate::common::Rng::seeded();
    let dir = tempfile::tempdir().unwrap();
    let pool = make_pool(dir.path(), 12);
    // A little firmware time per command so that kills land inside flashing, not only between
    // units.
    let mut conveyor = Conveyor::new(dir.path(), 3, 4, &["--latency", "3ms"]);
    let config = write_config(dir.path(), &conveyor, "answer_within = \"1s\"");
    conveyor.fill();
    let mut kills = 0;
    let code = loop {
        let mut factory = Factory::start(&config, &["--batch", "12"]);
        let kill_at = (kills < 6)
            .then(|| std::time::Instant::now() + Duration::from_millis(30 + rng.below(400)));
        let exited = loop {
            let wait = kill_at.map_or(Duration::from_secs(120), |t| {
                t.saturating_duration_since(std::time::Instant::now())
            });
            match factory.events.recv_timeout(wait) {
                Ok(ev) => react(&mut conveyor, &ev, true),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break true,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    assert!(kill_at.is_some(), "the factory went quiet for 120 s");
                    break false;
                }
            }
        };
        if exited {
            let (code, stderr) = factory.wait();
            assert_eq!(code, 0, "{stderr}");
            break code;
        }
        // SIGKILL: no chance to clean up.
        factory.child.kill().unwrap();
        let _ = factory.child.wait();
        kills += 1;
    };
    assert_eq!(code, 0);
    assert!(
        kills >= 3,
        "only {kills} kills happened before the batch was done"
    );
    assert_journal_matches_units(dir.path(), &conveyor, &pool);
    let rows = report(dir.path().join("journal.db"));
    let interrupted = rows.iter().filter(|r| r["result"] == "interrupted").count();
    eprintln!(
        "{kills} kills, {interrupted} interrupted attempts, {} attempts",
        rows.len()
    );
    // All twelve credentials went out, each to one unit.
    let given: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r["cert_sha256"].as_str())
        .collect();
    assert_eq!(given.len(), 12);
}

/// Runs one station through `units` in order: each verdict takes the unit out and puts the
/// next in; after the last verdict the factory is asked to stop. Returns the verdict events.
pub(crate) fn one_station(
    dir: &Path,
    pool_size: usize,
    units: Vec<crate::common::line::Unit>,
    on_event: impl FnMut(&serde_json::Value, &mut Conveyor),
) -> (Vec<serde_json::Value>, i32, String) {
    one_station_with(dir, pool_size, "", units, on_event)
}

/// [`one_station`] with more `[policy]` lines.
pub(crate) fn one_station_with(
    dir: &Path,
    pool_size: usize,
    policy: &str,
    units: Vec<crate::common::line::Unit>,
    mut on_event: impl FnMut(&serde_json::Value, &mut Conveyor),
) -> (Vec<serde_json::Value>, i32, String) {
    make_pool(dir, pool_size);
    let mut conveyor = Conveyor::new(dir, 1, 0, &[]);
    let config = write_config(dir, &conveyor, policy);
    let mut queue = units.into_iter();
    conveyor.plug("s1", queue.next().unwrap());
    let mut factory = Factory::start(&config, &[]);
    let mut verdicts = Vec::new();
    while let Some(ev) = factory.next(Duration::from_secs(60)) {
        on_event(&ev, &mut conveyor);
        if matches!(ev["event"].as_str(), Some("unit_passed" | "unit_failed")) {
            verdicts.push(ev.clone());
            conveyor.unplug("s1");
            match queue.next() {
                Some(u) => conveyor.plug("s1", u),
                None => factory.terminate(),
            }
        }
    }
    let (code, stderr) = factory.wait();
    (verdicts, code, stderr)
}

#[test]
fn an_exhausted_pool_and_a_returning_unit_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::common::line::Unit::new(dir.path(), "24:0a:c4:00:00:0a", &[]);
    let b = crate::common::line::Unit::new(dir.path(), "24:0a:c4:00:00:0b", &[]);
    let (v, code, stderr) = one_station(
        dir.path(),
        1,
        vec![a.clone(), b.clone(), a.clone()],
        |_, _| {},
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v.len(), 3);
    assert_eq!(v[0]["event"], "unit_passed");
    assert_eq!(v[0]["again"], false);
    // The second unit: no credential left, nothing written, one line saying what to do.
    assert_eq!(v[1]["event"], "unit_failed");
    assert_eq!(v[1]["exit_code"], 10);
    let reason = v[1]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("credential pool exhausted (1 assigned, 0 rejected)"),
        "{reason}"
    );
    assert!(reason.contains("nothing was written"), "{reason}");
    assert!(b.stored_cert().is_none());
    assert!(
        stderr.contains("FAIL  unit 240ac400000b: credential pool exhausted"),
        "{stderr}"
    );
    // The first unit comes back: its own credential again.
    assert_eq!(v[2]["event"], "unit_passed");
    assert_eq!(v[2]["again"], true);
    assert_eq!(v[2]["thing_name"], v[0]["thing_name"]);
    assert!(
        stderr.contains("seen before: its own credential again"),
        "{stderr}"
    );
}

#[test]
fn a_port_that_disappears_mid_unit_fails_it_and_the_unit_keeps_its_credential() {
    let dir = tempfile::tempdir().unwrap();
    // Slow firmware so that the flash stage is long enough to pull the plug in.
    let a = crate::common::line::Unit::new(dir.path(), "24:0a:c4:00:00:0a", &["--latency", "40ms"]);
    let b = crate::common::line::Unit::new(dir.path(), "24:0a:c4:00:00:0b", &[]);
    let mut pulled = false;
    let (v, code, stderr) = one_station(
        dir.path(),
        2,
        vec![a.clone(), a.clone(), b.clone()],
        |ev, conveyor| {
            if !pulled && ev["event"] == "stage_started" && ev["stage"] == "flash" {
                pulled = true;
                conveyor.unplug("s1");
            }
        },
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v[0]["event"], "unit_failed", "{v:?}");
    assert_eq!(v[0]["exit_code"], 8, "{v:?}");
    assert_eq!(v[1]["event"], "unit_passed");
    assert_eq!(v[1]["again"], true);
    assert_eq!(v[1]["thing_name"], v[0]["thing_name"]);
    assert_eq!(
        sha256_hex(&a.stored_cert().unwrap()),
        v[1]["cert_sha256"].as_str().unwrap()
    );
    // The next unit gets the next credential.
    assert_eq!(v[2]["event"], "unit_passed");
    assert_ne!(v[2]["thing_name"], v[0]["thing_name"]);
}

#[test]
fn a_unit_that_fails_smoke_is_reported_and_its_credential_is_never_reissued() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::common::line::Unit::new(dir.path(), "24:0a:c4:00:00:0a", &["--deny-receive"]);
    let b = crate::common::line::Unit::new(dir.path(), "24:0a:c4:00:00:0b", &[]);
    let (v, code, stderr) = one_station(dir.path(), 2, vec![a.clone(), b.clone()], |_, _| {});
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v[0]["event"], "unit_failed");
    assert_eq!(v[0]["exit_code"], 14);
    let reason = v[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("did not come back") && reason.contains("iot:Receive"),
        "{reason}"
    );
    // Its certificate reached its flash, so the next unit gets another one.
    assert!(a.stored_cert().is_some());
    assert_eq!(v[1]["event"], "unit_passed");
    assert_ne!(v[1]["thing_name"], v[0]["thing_name"]);
    let rows = report(dir.path().join("journal.db"));
    assert_eq!(rows[0]["result"], "fail");
    assert_eq!(rows[0]["exit_code"], 14);
    assert!(rows[0]["stages"].as_str().unwrap().contains("smoke="));
}

#[test]
fn released_credentials_go_back_only_from_a_wiped_unit_and_otherwise_are_burnt() {
    // Regression: `on_failure = "release"` gave a failed unit's certificate to the next unit
    // while the failed one still held it.
    let dir = tempfile::tempdir().unwrap();
    let unit = |mac: &str, extra: &[&str]| crate::common::line::Unit::new(dir.path(), mac, extra);
    let a = unit("24:0a:c4:00:00:0a", &["--deny-receive"]);
    let b = unit("24:0a:c4:00:00:0b", &[]);
    // c fails too, and then does not answer the erase: it cannot be wiped.
    let c = unit(
        "24:0a:c4:00:00:0c",
        &["--deny-receive", "--fault", "silent@AT+SYSMFG=0"],
    );
    let d = unit("24:0a:c4:00:00:0d", &[]);
    let (v, code, stderr) = one_station_with(
        dir.path(),
        3,
        "on_failure = \"release\"",
        vec![a.clone(), b.clone(), c.clone(), d.clone()],
        |_, _| {},
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v[0]["event"], "unit_failed", "{v:?}");
    assert!(a.stored_cert().is_none(), "a still holds its certificate");
    assert_eq!(v[1]["event"], "unit_passed");
    assert_eq!(
        v[1]["thing_name"], v[0]["thing_name"],
        "released to the next unit"
    );
    assert_eq!(v[2]["event"], "unit_failed");
    assert!(c.stored_cert().is_some());
    assert!(stderr.contains("marked burnt"), "{stderr}");
    assert_eq!(v[3]["event"], "unit_passed");
    assert_ne!(
        v[3]["thing_name"], v[2]["thing_name"],
        "a burnt certificate went out again"
    );
    assert_ne!(v[3]["thing_name"], v[1]["thing_name"]);
    assert_eq!(
        sha256_hex(&d.stored_cert().unwrap()),
        v[3]["cert_sha256"].as_str().unwrap()
    );
}

#[test]
fn a_station_whose_adapter_cannot_carry_the_fast_rate_stops_trying_it() {
    let dir = tempfile::tempdir().unwrap();
    // Both units sit behind an adapter that cannot receive above 460,800 baud.
    let slow = ["--module", "max-baud=460800"];
    let units = ["24:0a:c4:00:00:0a", "24:0a:c4:00:00:0b"]
        .map(|mac| crate::common::line::Unit::new(dir.path(), mac, &slow))
        .into();
    let (verdicts, code, stderr) =
        one_station_with(dir.path(), 2, "flash_baud = 921600\n", units, |_, _| {});
    assert_eq!(code, 0, "{stderr}");
    assert!(
        verdicts.iter().all(|v| v["event"] == "unit_passed"),
        "{verdicts:?}"
    );
    // The first unit paid the fallback; the second was not switched at all.
    assert_eq!(
        stderr.matches("fell back on this station").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn a_one_station_line_stops_when_its_batch_is_done() {
    // Regression: the stop signal was lost when no station was waiting at that moment.
    let dir = tempfile::tempdir().unwrap();
    make_pool(dir.path(), 2);
    let mut conveyor = Conveyor::new(dir.path(), 1, 1, &[]);
    let config = write_config(dir.path(), &conveyor, "");
    conveyor.fill();
    let mut factory = Factory::start(&config, &["--batch", "1"]);
    let events = operate(&mut factory, &mut conveyor);
    let (code, stderr) = factory.wait();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(events.last().unwrap()["event"], "factory_stopped");
    assert_eq!(events.last().unwrap()["units_passed"], 1);
    // Started again, the line sees the batch is complete and stops at once.
    let mut again = Factory::start(&config, &["--batch", "1"]);
    let events = operate(&mut again, &mut conveyor);
    let (code, stderr) = again.wait();
    assert_eq!(code, 0);
    assert!(stderr.contains("the batch is already complete"), "{stderr}");
    assert!(!events.iter().any(|e| e["event"] == "unit_detected"));
}

#[test]
fn a_generated_pool_makes_one_certificate_per_unit_from_the_manufacturer_ca() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // The manufacturer CA signs the device certificates; the emulated broker trusts it.
    let ca = atprov_core::pki::generate::ca("maker CA", 10).unwrap();
    std::fs::write(dir.path().join("mfg-ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(dir.path().join("mfg-ca.key"), &ca.key_pem).unwrap();
    let mut conveyor = Conveyor::new(dir.path(), 1, 2, &[]);
    write_config(dir.path(), &conveyor, "");
    let config = dir.path().join("factory.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[pool]\nmanifest = \"pool/manifest.csv\"\nca = \"pool/ca.pem\"\n",
        "[pool]\nca = \"mfg-ca.pem\"\n[pool.generate]\nca_cert = \"mfg-ca.pem\"\nca_key = \"mfg-ca.key\"\ndir = \"made\"\nthing_name = \"maker-{unit_id}\"\n",
    );
    assert!(text.contains("[pool.generate]"));
    std::fs::write(&config, text).unwrap();
    conveyor.fill();
    let mut factory = Factory::start(&config, &["--batch", "2"]);
    let events = operate(&mut factory, &mut conveyor);
    let (code, stderr) = factory.wait();
    assert_eq!(code, 0, "{stderr}");
    let passed: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "unit_passed")
        .collect();
    assert_eq!(passed.len(), 2);
    for (ev, unit) in passed.iter().zip(&conveyor.plugged) {
        let name = format!("maker-{}", unit.unit_id());
        assert_eq!(ev["thing_name"], name.as_str());
        let cert = std::fs::read(dir.path().join(format!("made/{name}.crt"))).unwrap();
        assert_eq!(unit.stored_cert().unwrap(), cert);
        let key = dir.path().join(format!("made/{name}.key"));
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

/// Two factory processes ("two PCs", three stations each) share one SQLite journal and one
/// pool: the second starts while the first has an attempt running and must leave it alone
/// (the first renews its lease); no credential goes to two units, every unit passes, and no
/// attempt is marked interrupted.
#[test]
fn two_factory_processes_share_one_journal_and_pool() {
    let dir = tempfile::tempdir().unwrap();
    let pool = make_pool(dir.path(), 12);
    let journal = format!("journal = \"{}\"", dir.path().join("journal.db").display());
    let shared = |config: std::path::PathBuf| {
        share_pool(&config, &journal, &pool);
        config
    };
    let pc = |n: usize| {
        let d = dir.path().join(format!("pc{n}"));
        std::fs::create_dir_all(&d).unwrap();
        let conveyor = Conveyor::numbered(&d, 1 + 3 * (n - 1), 3, 2, &[]);
        let config = shared(write_config(&d, &conveyor, ""));
        (conveyor, config)
    };
    let (mut c1, config1) = pc(1);
    let (mut c2, config2) = pc(2);
    c1.fill();
    c2.fill();
    let mut f1 = Factory::start(&config1, &[]);
    // Wait until the first PC has a unit's credential committed: an attempt is running.
    let mut early = Vec::new();
    loop {
        let ev = f1
            .next(Duration::from_secs(60))
            .expect("the first PC starts a unit");
        let allocated = ev["event"] == "credential_allocated";
        early.push(ev);
        if allocated {
            break;
        }
    }
    /// The operator of one PC: swaps units after each verdict and stops the line (as
    /// systemd would) once its own six units have their verdicts.
    fn run_pc(
        f: &mut Factory,
        c: &mut Conveyor,
        mut seen: Vec<serde_json::Value>,
    ) -> Vec<serde_json::Value> {
        let mut verdicts = 0;
        for ev in seen.clone() {
            react(c, &ev, false);
        }
        while let Some(ev) = f.next(Duration::from_secs(120)) {
            react(c, &ev, false);
            if matches!(ev["event"].as_str(), Some("unit_passed" | "unit_failed")) {
                verdicts += 1;
                if verdicts == 6 {
                    f.terminate();
                }
            }
            seen.push(ev);
        }
        seen
    }
    let mut f2 = Factory::start(&config2, &[]);
    let second = std::thread::spawn(move || {
        let events = run_pc(&mut f2, &mut c2, Vec::new());
        let (code, stderr) = f2.wait();
        (code, stderr, events, c2)
    });
    let events1 = run_pc(&mut f1, &mut c1, early);
    let (code1, stderr1) = f1.wait();
    let (code2, stderr2, events2, c2) = second.join().unwrap();
    assert_eq!(code1, 0, "{stderr1}");
    assert_eq!(code2, 0, "{stderr2}");
    for ev in events1.iter().chain(&events2) {
        assert_ne!(ev["event"], "unit_failed", "{ev}");
        if ev["event"] == "factory_started" {
            assert_eq!(ev["interrupted_attempts"], 0, "{ev}");
        }
    }
    let rows = report(dir.path().join("journal.db"));
    assert!(
        rows.iter().all(|r| r["result"] != "interrupted"),
        "{rows:?}"
    );
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut passed = BTreeSet::new();
    for r in &rows {
        if let (Some(unit), Some(sha)) = (r["unit_id"].as_str(), r["cert_sha256"].as_str())
            && let Some(other) = owners.insert(sha.to_string(), unit.to_string())
        {
            assert_eq!(other, unit, "certificate {sha} went to {other} and {unit}");
        }
        if r["result"] == "pass" {
            passed.insert(r["unit_id"].as_str().unwrap().to_string());
        }
    }
    let plugged: BTreeSet<String> = c1
        .plugged
        .iter()
        .chain(&c2.plugged)
        .map(|u| u.unit_id())
        .collect();
    assert_eq!(plugged.len(), 12);
    assert_eq!(passed, plugged, "every unit of both PCs passed");
}

/// A path to `p` relative to the test's working folder (another folder than the config's).
fn relative_from_cwd(p: &Path) -> std::path::PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let up = cwd.components().count() - 1;
    let mut rel = std::path::PathBuf::new();
    for _ in 0..up {
        rel.push("..");
    }
    rel.join(p.strip_prefix("/").unwrap())
}

/// A pool file that cannot be read stops the unit with one line and leaves the credential
/// alone (it is not rejected); fixed, the next run uses it. The config is given by a relative
/// path from another folder, and the journal's paths do not depend on that folder.
#[test]
fn an_unreadable_pool_file_is_a_station_error_not_a_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let pool = make_pool(dir.path(), 1);
    let mut conveyor = Conveyor::new(dir.path(), 1, 2, &[]);
    let config = write_config(dir.path(), &conveyor, "");
    let cert = pool.join("thing-001.crt");
    let kept = std::fs::read(&cert).unwrap();
    let relative = relative_from_cwd(&config);
    let mut factory = Factory::start(&relative, &["--batch", "1"]);
    // Registered at start; the file goes away before the first unit arrives.
    while let Some(ev) = factory.next(Duration::from_secs(60)) {
        if ev["event"] == "waiting" {
            break;
        }
    }
    std::fs::remove_file(&cert).unwrap();
    conveyor.fill();
    let mut failed = None;
    while let Some(ev) = factory.next(Duration::from_secs(60)) {
        if ev["event"] == "unit_failed" {
            failed = Some(ev.clone());
            factory.terminate();
        }
    }
    let (_, stderr) = factory.wait();
    let failed = failed.unwrap_or_else(|| panic!("no unit failed: {stderr}"));
    let why = failed.to_string();
    assert!(
        why.contains("thing-001.crt") && why.contains("not rejected"),
        "{why}\n{stderr}"
    );
    let journal = dir.path().join("journal.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args(["factory", "report", "--json", "--journal"])
        .arg(&journal)
        .output()
        .unwrap();
    assert!(out.status.success());
    // Fixed, the same credential goes out and the unit passes.
    std::fs::write(&cert, kept).unwrap();
    let mut factory = Factory::start(&relative, &["--batch", "1"]);
    let events = operate(&mut factory, &mut conveyor);
    let (code, stderr) = factory.wait();
    assert_eq!(code, 0, "{stderr}");
    let passed = events.iter().find(|e| e["event"] == "unit_passed");
    assert!(passed.is_some(), "{events:?}");
    let rows = report(&journal);
    assert!(
        rows.iter()
            .any(|r| r["result"] == "pass" && r["thing_name"] == "thing-001"),
        "{rows:?}"
    );
}

fn pool_cmd(journal: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["factory", "pool", "--journal", journal.to_str().unwrap()];
    all.extend_from_slice(args);
    crate::common::atprov(&all)
}

/// `factory pool status|add|release|revoke`: what the journal holds, changes recorded with
/// who and when; a revoked credential is never issued, and a unit holding one is stopped.
#[test]
fn the_pool_is_managed_by_hand_and_every_change_is_recorded() {
    use atprov_core::pki::generate::{self, KeyKind};
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let unit = crate::common::line::Unit::new(dir.path(), "24:0a:c4:00:01:01", &[]);
    let (verdicts, code, stderr) = one_station(dir.path(), 2, vec![unit.clone()], |_, _| {});
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(verdicts[0]["event"], "unit_passed");

    let status = |j: &Path| {
        let (code, out, err) = pool_cmd(j, &["status", "--json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let s = status(&journal);
    assert_eq!(
        (s["status"]["assigned"].clone(), s["status"]["free"].clone()),
        (1.into(), 1.into())
    );

    // A leaked credential is revoked: the pool has nothing left to give.
    let (code, _, err) = pool_cmd(
        &journal,
        &["revoke", "thing-002", "--reason", "key posted in a ticket"],
    );
    assert_eq!(code, 0, "{err}");
    let s = status(&journal);
    assert_eq!(s["status"]["free"], 0);
    assert_eq!(s["status"]["revoked"], 1);
    // Only a rejected credential goes back; a revoked one does not.
    let (code, _, err) = pool_cmd(&journal, &["release", "thing-002", "--reason", "oops"]);
    assert_eq!(code, 15, "{err}");
    assert!(err.contains("only a rejected credential"), "{err}");

    // More credentials from a new manifest.
    let more = dir.path().join("more");
    std::fs::create_dir_all(&more).unwrap();
    let ca = generate::ca("another CA", 10).unwrap();
    let dev = generate::device(
        &ca.cert_pem,
        &ca.key_pem,
        "thing-101",
        10,
        KeyKind::P256,
        None,
    )
    .unwrap();
    std::fs::write(more.join("thing-101.crt"), &dev.cert_pem).unwrap();
    std::fs::write(more.join("thing-101.key"), &dev.key_pem).unwrap();
    std::fs::write(
        more.join("manifest.csv"),
        "thing_name,certificate,key\nthing-101,thing-101.crt,thing-101.key\n",
    )
    .unwrap();
    let m = more.join("manifest.csv");
    let (code, out, err) = pool_cmd(&journal, &["add", "--manifest", m.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("added 1 credential"), "{out}");
    let s = status(&journal);
    assert_eq!(s["status"]["free"], 1);
    let changes: Vec<String> = s["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {}", c["action"], c["what"], c["who"]))
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes[0].contains("revoked") && changes[0].contains("thing-002"));
    assert!(changes[1].contains("added") && changes[0].contains('@'));

    // The unit's own credential is revoked: when it comes back, it is stopped, not rewritten.
    let (code, _, err) = pool_cmd(
        &journal,
        &["revoke", "thing-001", "--reason", "unit stolen"],
    );
    assert_eq!(code, 0, "{err}");
    let mut conveyor = Conveyor::new(dir.path(), 1, 0, &[]);
    let config = write_config(dir.path(), &conveyor, "");
    conveyor.plug("s1", unit);
    let mut factory = Factory::start(&config, &[]);
    let mut verdict = None;
    while let Some(ev) = factory.next(Duration::from_secs(60)) {
        if matches!(ev["event"].as_str(), Some("unit_passed" | "unit_failed")) {
            verdict = Some(ev);
            factory.terminate();
        }
    }
    let (_, stderr) = factory.wait();
    let verdict = verdict.unwrap_or_else(|| panic!("no verdict: {stderr}"));
    assert_eq!(verdict["event"], "unit_failed", "{stderr}");
    let why = verdict.to_string();
    assert!(
        why.contains("thing-001") && why.contains("revoked"),
        "{why}"
    );
}

/// `events_table = true`: an MES reads the line's events from the journal with SQL, the same
/// events the JSON-lines stream carries, with no secret in them.
#[test]
fn events_go_to_the_journal_for_an_mes() {
    let dir = tempfile::tempdir().unwrap();
    make_pool(dir.path(), 2);
    let mut conveyor = Conveyor::new(dir.path(), 1, 1, &[]);
    let config = write_config(dir.path(), &conveyor, "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("events_table = true\n{text}")).unwrap();
    conveyor.fill();
    let mut factory = Factory::start(&config, &["--batch", "1"]);
    let streamed = operate(&mut factory, &mut conveyor);
    let (code, stderr) = factory.wait();
    assert_eq!(code, 0, "{stderr}");
    let db = rusqlite::Connection::open(dir.path().join("journal.db")).unwrap();
    let mut q = db
        .prepare("SELECT station, event, data FROM events ORDER BY id")
        .unwrap();
    let rows: Vec<(String, String, String)> = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    let streamed_names: Vec<&str> = streamed
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(
        names, streamed_names,
        "the table holds the stream's events, in order"
    );
    let passed = rows
        .iter()
        .find(|r| r.1 == "unit_passed")
        .expect("a verdict");
    assert_eq!(passed.0, "s1");
    let data: serde_json::Value = serde_json::from_str(&passed.2).unwrap();
    assert_eq!(data["event"], "unit_passed");
    let all: String = rows.iter().map(|r| r.2.as_str()).collect();
    assert!(!all.contains("correct horse") && !all.contains("PRIVATE KEY"));
}

/// The README's factory config is a valid config (its field names and values parse).
#[test]
fn the_readme_factory_config_parses() {
    let block = crate::provision::readme_block("## A factory line", "toml");
    let parsed = atprov_core::factory::config::FactoryConfig::parse(
        &block,
        Path::new("/srv/line/factory.toml"),
    );
    let config = parsed.unwrap_or_else(|e| panic!("{e}"));
    assert!(config.events_table);
    assert!(
        matches!(&config.journal, atprov_core::factory::journal::Location::Sqlite(p) if p.is_absolute())
    );
}
