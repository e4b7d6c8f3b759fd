//! The journal's promises on both backends, and PostgreSQL under a line of several PCs: a
//! real server (Debian's PostgreSQL 15) started per test on a free loopback port.
//!
//! - the same contract, run on a SQLite file and on PostgreSQL;
//! - two journals ("two PCs") allocating from one pool on 16 threads: no credential twice;
//! - two factory processes of three stations each on one PostgreSQL pool, SIGKILLed at random
//!   moments (seed printed): every unit holds exactly the journal's credential, none twice;
//! - the server stopped and started mid-batch: the stations wait ("journal unreachable,
//!   retrying") and resume, nothing lost or doubled;
//! - `atprov factory journal migrate` from SQLite keeps every attempt and assignment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use std::sync::Arc;
use std::time::{Duration, Instant};

use atprov_core::factory::journal::{
    self, AllocateError, Fate, Journal, Location, Outcome, PoolRecord, Process, UnitIdentity,
    postgres::Target,
};

use crate::common::line::{Pc, make_pool, pump_all, report};
use crate::common::postgres::{CuttingProxy, PASSWORD, Postgres};

/// The emulated units: a little firmware time per command, so that kills and the server's
/// stop land inside units, not only between them.
const SIM: &[&str] = &["--latency", "5ms"];

fn record(i: usize) -> PoolRecord {
    PoolRecord {
        thing_name: format!("thing-{i}"),
        cert: format!("/pool/{i}.crt").into(),
        key: format!("/pool/{i}.key").into(),
        cert_sha256: format!("{i:064x}"),
    }
}

fn unit(n: usize) -> UnitIdentity {
    let mac = format!("aa:bb:cc:00:{:02x}:{:02x}", n / 256, n % 256);
    UnitIdentity {
        key: format!("mac:{mac}"),
        unit_id: mac.replace(':', ""),
        mac: Some(mac),
        ..Default::default()
    }
}

/// The test server's journal, opened in this process (the password given to the library:
/// a test must not set process-wide variables that other tests' children inherit).
fn open_pg(pg: &Postgres, line: &str) -> Arc<dyn Journal> {
    let target = Target::parse(&pg.url()).unwrap().with_password(PASSWORD);
    journal::open(
        &Location::Postgres(Box::new(target)),
        Process::this(Some(line)),
    )
    .unwrap()
}

fn failed(release: bool) -> Outcome {
    Outcome {
        passed: false,
        exit_code: 14,
        reason: Some("smoke".into()),
        stages: vec![("init".into(), 3)],
        fate: if release { Fate::Release } else { Fate::Keep },
    }
}

/// What every journal promises, whatever keeps it.
fn contract(j: &dyn Journal) {
    j.register_pool(&[record(1), record(2)]).unwrap();
    let a = j.begin_attempt("s1", "p", "esp32-at").unwrap();
    let first = j.allocate(a, &unit(1)).unwrap();
    let b = j.begin_attempt("s2", "p", "esp32-at").unwrap();
    let second = j.allocate(b, &unit(2)).unwrap();
    assert_ne!(first.credential, second.credential);
    assert!(!first.again && !second.again);
    // A unit that comes back gets its own credential again.
    let c = j.begin_attempt("s1", "p", "esp32-at").unwrap();
    let back = j.allocate(c, &unit(1)).unwrap();
    assert_eq!(back.credential, first.credential);
    assert!(back.again);
    // A third unit finds the pool exhausted.
    let d = j.begin_attempt("s1", "p", "esp32-at").unwrap();
    match j.allocate(d, &unit(3)) {
        Err(AllocateError::Exhausted { assigned, rejected }) => {
            assert_eq!((assigned, rejected), (2, 0))
        }
        other => panic!("{other:?}"),
    }
    // A failed unit keeps its credential unless it is released (wiped).
    j.finish_attempt(c, &failed(false)).unwrap();
    let e = j.begin_attempt("s1", "p", "esp32-at").unwrap();
    assert!(matches!(
        j.allocate(e, &unit(3)),
        Err(AllocateError::Exhausted { .. })
    ));
    let f = j.begin_attempt("s1", "p", "esp32-at").unwrap();
    j.allocate(f, &unit(1)).unwrap();
    j.finish_attempt(f, &failed(true)).unwrap();
    let g = j.begin_attempt("s1", "p", "esp32-at").unwrap();
    let given = j.allocate(g, &unit(3)).unwrap();
    assert_eq!(given.credential, first.credential, "the released one");
    assert!(!given.again);
    // A changed certificate under a registered name is refused.
    let mut changed = record(2);
    changed.cert_sha256 = "f".repeat(64);
    let err = j.register_pool(&[changed]).unwrap_err();
    assert!(err.message.contains("pool entry `thing-2`"), "{err}");
    // Rejected, released by hand, revoked: recorded with who and why.
    j.register_pool(&[record(4)]).unwrap();
    let h = j.begin_attempt("s1", "p", "esp32-at").unwrap();
    let fourth = j.allocate(h, &unit(4)).unwrap();
    j.reject(fourth.credential, "the certificate is expired")
        .unwrap();
    j.release("thing-4", "qa@pc", "re-issued").unwrap();
    j.revoke("thing-2", "qa@pc", "leaked").unwrap();
    let i = j.begin_attempt("s1", "p", "esp32-at").unwrap();
    assert!(matches!(
        j.allocate(i, &unit(2)),
        Err(AllocateError::Revoked { .. })
    ));
    let status = j.pool_status().unwrap();
    assert_eq!((status.free, status.revoked), (1, 1), "{status:?}");
    let changes = j.pool_changes().unwrap();
    let actions: Vec<&str> = changes.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(actions, ["released", "revoked"]);
    j.record_event("2026-12-03T10:00:00.000Z", "s1", "unit_passed", "{}")
        .unwrap();
    // The report tells every attempt in order, with the line that ran it.
    let rows = j.report().unwrap();
    assert_eq!(rows.len(), 9);
    assert!(rows.windows(2).all(|w| w[0].attempt < w[1].attempt));
    assert_eq!(rows[0].thing_name.as_deref(), Some("thing-1"));
    assert_eq!(rows[2].result, "fail");
    assert_eq!(rows[2].exit_code, Some(14));
    assert!(rows.iter().all(|r| r.line.as_deref() == Some("L1")));
    assert_eq!(j.units_passed().unwrap(), 0);
}

#[test]
fn both_backends_keep_the_same_promises() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = journal::open(
        &Location::Sqlite(dir.path().join("j.db")),
        Process::this(Some("L1")),
    )
    .unwrap();
    contract(sqlite.as_ref());
    let pg = Postgres::start();
    let j = open_pg(&pg, "L1");
    contract(j.as_ref());
}

#[test]
fn eight_journals_allocating_at_once_never_share_a_credential() {
    let pg = Postgres::start();
    // Eight journals (eight processes, up to four connections each), two stations on each.
    let journals: Vec<_> = (1..=8).map(|n| open_pg(&pg, &format!("PC{n}"))).collect();
    let a = journals[0].clone();
    a.register_pool(&(1..=100).map(record).collect::<Vec<_>>())
        .unwrap();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let j = journals[t % 8].clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for n in 0..6 {
                    let u = unit(t * 100 + n);
                    let attempt = j.begin_attempt(&format!("s{t}"), "p", "x").unwrap();
                    got.push((u.key.clone(), j.allocate(attempt, &u).unwrap().credential));
                }
                got
            })
        })
        .collect();
    let mut owner = BTreeMap::new();
    for t in threads {
        for (unit, credential) in t.join().unwrap() {
            if let Some(other) = owner.insert(credential, unit.clone()) {
                panic!("credential {credential} went to {other} and {unit}");
            }
        }
    }
    assert_eq!(owner.len(), 96);
    let status = a.pool_status().unwrap();
    assert_eq!((status.assigned, status.free), (96, 4));
    // Checked by the server too: no unit row holds two credentials.
    let doubled = pg.psql(
        "journal",
        &["SELECT COUNT(*) FROM (SELECT unit FROM credentials WHERE unit IS NOT NULL GROUP BY unit HAVING COUNT(*) > 1) d"],
    );
    assert_eq!(doubled.trim(), "0");
}

/// Every unit plugged in holds exactly the certificate the journal gave it, no certificate
/// went to two units, and each passed.
fn assert_units_hold_the_journals_credentials(url: &str, units: &[crate::common::line::Unit]) {
    let rows = report(url);
    let mut by_unit: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut passed = BTreeSet::new();
    for r in &rows {
        if let (Some(unit), Some(sha)) = (r["unit_id"].as_str(), r["cert_sha256"].as_str()) {
            by_unit.entry(unit.into()).or_default().insert(sha.into());
        }
        if r["result"] == "pass" {
            passed.insert(r["unit_id"].as_str().unwrap().to_string());
        }
    }
    let mut owners = BTreeMap::new();
    for (unit, shas) in &by_unit {
        assert_eq!(shas.len(), 1, "unit {unit} was given {shas:?}");
        let sha = shas.iter().next().unwrap();
        if let Some(other) = owners.insert(sha.clone(), unit.clone()) {
            panic!("certificate {sha} went to {other} and {unit}");
        }
    }
    let plugged: BTreeSet<String> = units.iter().map(|u| u.unit_id()).collect();
    assert_eq!(passed, plugged, "every unit passed");
    for u in units {
        let held = u.stored_cert().expect("the unit holds a certificate");
        assert_eq!(
            &atprov_core::pki::load::sha256_hex(&held),
            by_unit[&u.unit_id()].iter().next().unwrap(),
            "unit {} holds the journal's certificate",
            u.mac
        );
    }
}

/// Every unit the PCs' operators plugged in, once each (a unit that failed, its station
/// killed under it, was plugged in again).
fn distinct_units(pcs: &[Pc]) -> Vec<crate::common::line::Unit> {
    let mut units: Vec<_> = pcs
        .iter()
        .flat_map(|pc| pc.conveyor.plugged.clone())
        .collect();
    units.sort_by(|a, b| a.mac.cmp(&b.mac));
    units.dedup_by(|a, b| a.mac == b.mac);
    units
}

/// The line of the issue: two PCs of three stations, three units each (18), sharing a pool
/// of 24 on the journal `url`; both factories started.
fn two_pcs_started(dir: &std::path::Path, url: &str) -> [Pc; 2] {
    let pool = make_pool(dir, 24);
    let mut pcs = [
        Pc::new(dir, 1, &pool, url, 3, 3, SIM),
        Pc::new(dir, 2, &pool, url, 3, 3, SIM),
    ];
    for pc in &mut pcs {
        pc.start();
    }
    pcs
}

#[test]
fn two_pcs_on_one_postgres_pool_survive_random_sigkills() {
    let mut rng = crate::common::Rng::seeded();
    let pg = Postgres::start();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let mut pcs = two_pcs_started(dir.path(), &url);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut kills = 0;
    let mut kill_at = Instant::now() + Duration::from_millis(50 + rng.below(500));
    while pump_all(&mut pcs) > 0 {
        assert!(Instant::now() < deadline, "the batch did not finish");
        if kills < 6 && Instant::now() >= kill_at {
            let victim = rng.below(2) as usize;
            if pcs[victim].factory.is_some() && !pcs[victim].stopping {
                pcs[victim].kill();
                pcs[victim].start();
                kills += 1;
            }
            kill_at = Instant::now() + Duration::from_millis(50 + rng.below(500));
        }
    }
    assert!(
        kills >= 2,
        "only {kills} kills happened before the batch was done"
    );
    let units = distinct_units(&pcs);
    assert_eq!(units.len(), 18);
    assert_units_hold_the_journals_credentials(&url, &units);
    let rows = report(&url);
    let lines: BTreeSet<&str> = rows.iter().filter_map(|r| r["line"].as_str()).collect();
    assert_eq!(lines, BTreeSet::from(["PC1", "PC2"]));
    let interrupted = rows.iter().filter(|r| r["result"] == "interrupted").count();
    eprintln!(
        "{kills} kills, {interrupted} interrupted attempts, {} attempts",
        rows.len()
    );
    // The dashboard reads the shared journal: both lines' stations, every unit.
    let dashboard = crate::dashboard::Dashboard::start(&url, &[]);
    let (status, body) = dashboard.get("/api/summary");
    assert_eq!(status, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["units_passed"], 18, "{summary}");
    let stations: BTreeSet<(String, String)> = summary["stations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["line"].to_string(), s["name"].to_string()))
        .collect();
    assert_eq!(stations.len(), 6, "{summary}");
    assert_eq!(summary["pool"]["free"], 6, "{summary}");
    // And in a browser: both lines' stations on the page (the README's screenshot).
    let page = format!("{}/?limit=1", dashboard.base);
    let dom = crate::dashboard::chromium(&["--dump-dom"], &page);
    for line in ["PC1", "PC2"] {
        assert!(dom.contains(&format!("data-line=\"{line}\"")), "{dom}");
    }
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-two-lines.png");
    let _ = std::fs::remove_file(&shot);
    crate::dashboard::chromium(
        &[
            "--window-size=1000,900",
            &format!("--screenshot={}", shot.display()),
        ],
        &page,
    );
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"));
    // 18 of the 24 credentials went out; six are left.
    let free = pg.psql(
        "journal",
        &["SELECT COUNT(*) FROM credentials WHERE state = 'free'"],
    );
    assert_eq!(free.trim(), "6");
    // The journal password shows nowhere.
    for pc in &pcs {
        assert!(!pc.stderr.contains(PASSWORD));
        for ev in &pc.events {
            assert!(!ev.to_string().contains(PASSWORD));
        }
    }
}

#[test]
fn a_database_restart_mid_batch_pauses_the_stations_and_loses_nothing() {
    let mut pg = Postgres::start();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let mut pcs = two_pcs_started(dir.path(), &url);
    let said = |pcs: &[Pc], event: &str| -> Vec<String> {
        pcs.iter()
            .flat_map(|pc| &pc.events)
            .filter(|e| e["event"] == event)
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    // Take the server away once a credential is committed and its unit is being written.
    let deadline = Instant::now() + Duration::from_secs(300);
    while pcs
        .iter()
        .flat_map(|pc| &pc.events)
        .all(|e| e["event"] != "credential_allocated")
    {
        assert!(Instant::now() < deadline, "no credential was allocated");
        for pc in &mut pcs {
            assert!(
                pc.pump(Duration::from_millis(10)),
                "{} stopped early",
                pc.name
            );
        }
    }
    pg.stop();
    // The line says it waits.
    while said(&pcs, "journal_unreachable").is_empty() {
        assert!(
            Instant::now() < deadline,
            "nobody noticed the server went away"
        );
        for pc in &mut pcs {
            assert!(pc.pump(Duration::from_millis(10)), "{} stopped", pc.name);
        }
    }
    let line = &said(&pcs, "journal_unreachable")[0];
    assert!(
        line.starts_with("journal unreachable, retrying: postgresql://"),
        "{line}"
    );
    assert!(!line.contains(PASSWORD));
    pg.start_again();
    while pump_all(&mut pcs) > 0 {
        assert!(Instant::now() < deadline, "the line did not finish");
    }
    for pc in &pcs {
        let names: Vec<&str> = pc
            .events
            .iter()
            .filter_map(|e| e["event"].as_str())
            .collect();
        let lost = names
            .iter()
            .filter(|n| **n == "journal_unreachable")
            .count();
        let back = names.iter().filter(|n| **n == "journal_reachable").count();
        assert!(lost <= 1, "{}: said once per outage: {names:?}", pc.name);
        assert_eq!(lost, back, "{}: {names:?}", pc.name);
        assert!(
            names.iter().all(|n| *n != "unit_failed"),
            "{}: {names:?}",
            pc.name
        );
    }
    let units = distinct_units(&pcs);
    assert_eq!(units.len(), 18);
    assert_units_hold_the_journals_credentials(&url, &units);
    let rows = report(&url);
    assert_eq!(
        rows.len(),
        18,
        "one attempt per unit, none doubled: {rows:?}"
    );
}

#[test]
fn a_sqlite_journal_migrates_to_postgres_with_every_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("line.db");
    {
        let j = journal::open(&Location::Sqlite(db.clone()), Process::this(Some("L1"))).unwrap();
        contract(j.as_ref());
        // The line stopped cleanly: no attempt is left running under a live lease (a copy
        // of a journal in use is refused).
        for row in j.report().unwrap() {
            if row.result == "running" {
                let pass = Outcome {
                    passed: true,
                    exit_code: 0,
                    reason: None,
                    stages: vec![("flash".into(), 300)],
                    fate: Fate::Keep,
                };
                j.finish_attempt(row.attempt, &pass).unwrap();
            }
        }
    }
    let pg = Postgres::start();
    let url = pg.url();
    let migrate = |to: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
            .env("ATPROV_JOURNAL_PASSWORD", PASSWORD)
            .args(["factory", "journal", "migrate", "--from"])
            .arg(&db)
            .args(["--to", to])
            .output()
            .unwrap()
    };
    // Before the migration the database holds no journal: a report says so and creates
    // nothing.
    let empty = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .env("ATPROV_JOURNAL_PASSWORD", PASSWORD)
        .args(["factory", "report", "--journal", &url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&empty.stderr);
    assert_eq!(empty.status.code(), Some(15), "{err}");
    assert!(err.contains("no atprov journal in this database"), "{err}");
    let out = migrate(&url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("9 attempts"), "{stdout}");
    // The reports are the same row for row, attempt numbers included.
    assert_eq!(report(&db), report(&url));
    let assignments = |sql: &str| pg.psql("journal", &[sql]);
    assert_eq!(
        assignments("SELECT COUNT(*) FROM assignments").trim(),
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM assignments", [], |r| r
                .get::<_, i64>(0))
            .unwrap()
            .to_string()
    );
    // A role that may only read can report on the journal (nothing is written to it).
    pg.psql(
        "journal",
        &[
            &format!("CREATE ROLE reader LOGIN PASSWORD '{PASSWORD}'"),
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader",
        ],
    );
    assert_eq!(report(url.replace("atprov@", "reader@")), report(&db));
    // New rows continue after the copied ids.
    let j = open_pg(&pg, "L2");
    let next = j.begin_attempt("s9", "p", "x").unwrap();
    assert_eq!(next, 10);
    // A second migration into the same database is refused; so is a URL with a password.
    let again = migrate(&url);
    assert_eq!(again.status.code(), Some(15), "{again:?}");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("not empty"), "{err}");
    // Nor does any command repeat a password typed into --journal.
    for command in [
        &["factory", "report", "--journal"][..],
        &["factory", "pool", "status", "--journal"][..],
        &["factory", "dashboard", "--journal"][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
            .args(command)
            .arg(url.replace("atprov@", &format!("atprov:{PASSWORD}@")))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {err}");
        assert!(err.contains("must not hold the password"), "{err}");
        assert!(!err.contains(PASSWORD), "{command:?}: {err}");
    }
    let with_pw = migrate(&url.replace("atprov@", &format!("atprov:{PASSWORD}@")));
    let err = String::from_utf8_lossy(&with_pw.stderr);
    assert_eq!(with_pw.status.code(), Some(2), "{err}");
    assert!(err.contains("must not hold the password"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
}

#[test]
fn the_journal_speaks_tls_to_a_server_it_can_verify_and_to_no_other() {
    let pki = tempfile::tempdir().unwrap();
    crate::common::openssl::aws_shaped(pki.path(), crate::common::openssl::Keys::P256);
    let pg = Postgres::start_tls(pki.path());
    let open = |root: &str| {
        let url = format!(
            "{}?sslmode=require&sslrootcert={}",
            pg.url(),
            pki.path().join(root).display()
        );
        let target = Target::parse(&url).unwrap().with_password(PASSWORD);
        journal::open(
            &Location::Postgres(Box::new(target)),
            Process::this(Some("L1")),
        )
    };
    let j = open("ca.pem").unwrap_or_else(|e| panic!("{e}"));
    j.register_pool(&[record(1)]).unwrap();
    // The server says the journal's connection is encrypted.
    let encrypted = pg.psql(
        "journal",
        &["SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.application_name = 'atprov'"],
    );
    assert_eq!(encrypted.trim(), "1");
    // A root that did not sign the server's certificate: refused, in one line.
    let Err(e) = open("other-root.pem") else {
        panic!("a server this root did not sign was trusted")
    };
    let line = e.to_string();
    assert!(line.contains("cannot reach it"), "{line}");
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    assert!(line.contains("sslrootcert= must name the CA"), "{line}");
    assert!(!line.contains('\n'), "{line}");
    assert!(!line.contains(PASSWORD), "{line}");
    // A wrong password and none at all: each says what to check.
    let with = |password: Option<&str>| {
        let mut target = Target::parse(&pg.url()).unwrap();
        if let Some(p) = password {
            target = target.with_password(p);
        }
        match journal::open(&Location::Postgres(Box::new(target)), Process::this(None)) {
            Ok(_) => panic!("opened with password {password:?}"),
            Err(e) => e.to_string(),
        }
    };
    let wrong = with(Some("not-the-password"));
    assert!(wrong.contains("password authentication failed"), "{wrong}");
    assert!(wrong.contains("ATPROV_JOURNAL_PASSWORD"), "{wrong}");
    assert!(!wrong.contains("not-the-password"), "{wrong}");
    if std::env::var_os("ATPROV_JOURNAL_PASSWORD").is_none()
        && std::env::var_os("ATPROV_JOURNAL_PASSWORD_FILE").is_none()
    {
        let none = with(None);
        assert!(none.contains("ATPROV_JOURNAL_PASSWORD"), "{none}");
    }
}

/// Each operation whose answer is lost after the server did the work (the connection cut
/// just after `COMMIT` or `INSERT 0 1`) is run again and gives the same result: one attempt,
/// one credential not marked "again", one release, one event, one revocation.
#[test]
fn an_answer_lost_with_its_connection_is_not_done_twice() {
    let pg = Postgres::start();
    let proxy = CuttingProxy::start(pg.port);
    let target = Target::parse(&format!(
        "postgresql://atprov@127.0.0.1:{}/journal",
        proxy.port
    ))
    .unwrap()
    .with_password(PASSWORD);
    let j = journal::open(
        &Location::Postgres(Box::new(target)),
        Process::this(Some("L1")),
    )
    .unwrap();
    j.register_pool(&[record(1), record(2), record(3)]).unwrap();
    let mut cuts = 0;
    let mut cut = |tag: &'static [u8]| {
        proxy.arm(tag);
        cuts += 1;
        cuts
    };
    const COMMIT: &[u8] = b"COMMIT\0";
    const INSERTED: &[u8] = b"INSERT 0 1\0";

    let n = cut(INSERTED);
    let a = j.begin_attempt("s1", "p", "x").unwrap();
    assert_eq!(proxy.cuts(), n);
    let n = cut(COMMIT);
    let first = j.allocate(a, &unit(1)).unwrap();
    assert_eq!(proxy.cuts(), n);
    assert!(
        !first.again,
        "the same attempt's allocation, run again, is not \"again\""
    );
    let n = cut(COMMIT);
    j.finish_attempt(a, &failed(true)).unwrap();
    assert_eq!(proxy.cuts(), n);
    let n = cut(INSERTED);
    j.record_event("2026-12-03T10:00:01.000Z", "s1", "unit_failed", "{}")
        .unwrap();
    assert_eq!(proxy.cuts(), n);
    let n = cut(COMMIT);
    j.revoke("thing-3", "qa@pc", "leaked").unwrap();
    assert_eq!(proxy.cuts(), n);
    let b = j.begin_attempt("s1", "p", "x").unwrap();
    let n = cut(COMMIT);
    j.add_assigned(b, &unit(9), &record(9)).unwrap();
    assert_eq!(proxy.cuts(), n);

    // A unit that comes back for its credential, the answer lost: still "again".
    let c = j.begin_attempt("s1", "p", "x").unwrap();
    let n = cut(COMMIT);
    let back = j.allocate(c, &unit(9)).unwrap();
    assert_eq!(proxy.cuts(), n);
    assert!(
        back.again,
        "a unit's own credential from an earlier attempt is \"again\""
    );

    let count = |sql: &str| pg.psql("journal", &[sql]).trim().to_string();
    assert_eq!(count("SELECT COUNT(*) FROM attempts"), "3");
    assert_eq!(
        count("SELECT string_agg(event, ',' ORDER BY id) FROM assignments"),
        "assigned,released,assigned"
    );
    assert_eq!(count("SELECT COUNT(*) FROM events"), "1");
    assert_eq!(count("SELECT COUNT(*) FROM pool_changes"), "1");
    assert_eq!(
        count(
            "SELECT state || ' ' || (revoked_at IS NOT NULL) FROM credentials WHERE thing_name = 'thing-3'"
        ),
        "free true"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM credentials WHERE thing_name = 'thing-9'"),
        "1"
    );
    let rows = j.report().unwrap();
    assert_eq!(rows[0].result, "fail");
    assert_eq!(rows[1].thing_name.as_deref(), Some("thing-9"));
}

/// Attempts are recovered by their lease as the server's clock tells it: another PC's live
/// attempt is left alone, one whose lease expired is marked interrupted.
#[test]
fn another_pcs_attempt_is_recovered_only_when_its_lease_expired() {
    let pg = Postgres::start();
    let j = open_pg(&pg, "L1");
    let a = j.begin_attempt("s1", "p", "x").unwrap();
    // The attempt as a process on another PC owns it (a pid that may well exist here).
    pg.psql(
        "journal",
        &[&format!(
            "UPDATE attempts SET owner = 'other-pc@0123456789ab:1:t', heartbeat = now() WHERE id = {a}"
        )],
    );
    assert_eq!(j.recover().unwrap(), 0, "a live lease is left alone");
    pg.psql(
        "journal",
        &[&format!(
            "UPDATE attempts SET heartbeat = now() - interval '16 seconds' WHERE id = {a}"
        )],
    );
    assert_eq!(j.recover().unwrap(), 1, "an expired lease is recovered");
    assert_eq!(j.report().unwrap()[0].result, "interrupted");
    // A PC cloned from the same image (same host name, another machine id) is another PC.
    let b = j.begin_attempt("s1", "p", "x").unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    pg.psql(
        "journal",
        &[&format!(
            "UPDATE attempts SET owner = '{}@ffffffffffff:1:t', heartbeat = now() WHERE id = {b}",
            host.trim()
        )],
    );
    assert_eq!(
        j.recover().unwrap(),
        0,
        "its pid means nothing on this machine"
    );
}

/// `journal_password_file` (or `ATPROV_JOURNAL_PASSWORD_FILE`): the password's first line,
/// from a file only its owner may read.
#[test]
fn a_password_file_is_read_only_when_it_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("journal.pass");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let open = || {
        let target = Target::parse(&pg.url())
            .unwrap()
            .with_password_file(file.clone());
        journal::open(&Location::Postgres(Box::new(target)), Process::this(None))
    };
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let Err(e) = open() else {
        panic!("a password file others may read was used")
    };
    let line = e.to_string();
    assert!(line.contains("chmod 600"), "{line}");
    assert!(!line.contains(PASSWORD), "{line}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let j = open().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(j.pool_status().unwrap().free, 0);
}

/// A PC that dies while another runs: the running one marks the dead one's attempt
/// interrupted within a heartbeat (here its process is gone from this machine; another PC's
/// is found by its expired lease, tested above), and the unit keeps its credential.
#[test]
fn a_running_line_marks_a_dead_lines_attempts_interrupted() {
    let pg = Postgres::start();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let pool = make_pool(dir.path(), 2);
    // PC1 has a station and no unit: it only keeps the line's leases.
    let mut idle = Pc::new(dir.path(), 1, &pool, &url, 1, 0, SIM);
    // PC2's unit is slow (300 ms a command) and frozen once its credential is given, so
    // the kill lands inside its attempt however far behind the test reads the events.
    let mut dying = Pc::new(dir.path(), 2, &pool, &url, 1, 1, &["--latency", "300ms"]);
    idle.start();
    dying.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    while dying
        .events
        .iter()
        .all(|e| e["event"] != "credential_allocated")
    {
        assert!(Instant::now() < deadline, "PC2 allocated nothing");
        assert!(dying.pump(Duration::from_millis(10)), "PC2 stopped");
        idle.pump(Duration::from_millis(1));
    }
    dying.conveyor.freeze("s2", true);
    dying.kill();
    while idle
        .events
        .iter()
        .all(|e| e["event"] != "attempts_interrupted")
    {
        assert!(Instant::now() < deadline, "PC1 never noticed PC2 died");
        assert!(idle.pump(Duration::from_millis(50)), "PC1 stopped");
    }
    idle.factory.as_ref().unwrap().terminate();
    while idle.pump(Duration::from_millis(50)) {}
    let rows = report(&url);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["result"], "interrupted");
    assert_eq!(rows[0]["line"], "PC2");
    // The unit keeps its credential: the pool has one assigned.
    let assigned = pg.psql(
        "journal",
        &["SELECT COUNT(*) FROM credentials WHERE state = 'assigned'"],
    );
    assert_eq!(assigned.trim(), "1");
}
