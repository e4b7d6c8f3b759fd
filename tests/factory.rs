//! `atprov factory` end to end: a line of emulated units (each `atprov sim` in its own process
//! on a PTY, reached through a station symlink), the factory binary reading its config, the
//! SQLite journal and the emulators' `--state` directories compared afterwards.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use atprov::pki::load::sha256_hex;
use common::line::{Conveyor, Factory, make_pool, operate, report, write_config};

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
    let rows = report(&dir.join("journal.db"));
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
