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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atprov_core::factory::journal::{
    self, AllocateError, Fate, Journal, Location, Outcome, PoolRecord, Process, UnitIdentity,
    postgres::Target,
};

use crate::common::line::{Conveyor, Factory, make_pool, react, report, share_pool, write_config};
use crate::common::postgres::{PASSWORD, Postgres};

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
    j.record_event("s1", "unit_passed", "{}").unwrap();
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
fn two_pcs_allocating_at_once_never_share_a_credential() {
    let pg = Postgres::start();
    let (a, b) = (open_pg(&pg, "PC1"), open_pg(&pg, "PC2"));
    a.register_pool(&(1..=100).map(record).collect::<Vec<_>>())
        .unwrap();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let j = if t % 2 == 0 { a.clone() } else { b.clone() };
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

/// A factory config on a PostgreSQL journal, the pool shared by both PCs.
fn pg_config(dir: &Path, conveyor: &Conveyor, pool: &Path, url: &str, line: &str) -> PathBuf {
    let config = write_config(dir, conveyor, "answer_within = \"2s\"");
    share_pool(
        &config,
        &format!("journal = \"{url}\"\nline = \"{line}\""),
        pool,
    );
    config
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

/// One PC of the line: its conveyor, its factory process, the units that passed.
struct Pc {
    name: String,
    config: PathBuf,
    conveyor: Conveyor,
    factory: Option<Factory>,
    passed: BTreeSet<String>,
    units: usize,
    stopping: bool,
    stderr: String,
    events: Vec<serde_json::Value>,
}

impl Pc {
    fn new(root: &Path, n: usize, pool: &Path, url: &str, stations: usize, each: usize) -> Pc {
        let d = root.join(format!("pc{n}"));
        std::fs::create_dir_all(&d).unwrap();
        let mut conveyor = Conveyor::numbered(
            &d,
            1 + stations * each * (n - 1),
            stations,
            each,
            &["--latency", "5ms"],
        );
        let config = pg_config(&d, &conveyor, pool, url, &format!("PC{n}"));
        conveyor.fill();
        Pc {
            name: format!("PC{n}"),
            config,
            conveyor,
            factory: None,
            passed: BTreeSet::new(),
            units: stations * each,
            stopping: false,
            stderr: String::new(),
            events: Vec::new(),
        }
    }

    fn start(&mut self) {
        self.factory = Some(Factory::start_with(
            &self.config,
            &[],
            &[("ATPROV_JOURNAL_PASSWORD", PASSWORD)],
        ));
    }

    /// Handles what the factory said within `within`; false once it has exited.
    fn pump(&mut self, within: Duration) -> bool {
        let Some(f) = self.factory.as_mut() else {
            return false;
        };
        match f.events.recv_timeout(within) {
            Ok(ev) => {
                react(&mut self.conveyor, &ev, true);
                if ev["event"] == "unit_passed" {
                    self.passed
                        .insert(ev["unit"].as_str().unwrap_or_default().to_string());
                    if self.passed.len() == self.units && !self.stopping {
                        f.terminate();
                        self.stopping = true;
                    }
                }
                self.events.push(ev);
                true
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => true,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let (code, stderr) = self.factory.take().unwrap().wait();
                assert_eq!(code, 0, "{} exited {code}: {stderr}", self.name);
                self.stderr.push_str(&stderr);
                false
            }
        }
    }

    fn kill(&mut self) {
        let mut f = self.factory.take().unwrap();
        f.child.kill().unwrap();
        let _ = f.child.wait();
    }
}

#[test]
fn two_pcs_on_one_postgres_pool_survive_random_sigkills() {
    let mut rng = crate::common::Rng::seeded();
    let pg = Postgres::start();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let pool = make_pool(dir.path(), 24);
    let mut pcs = [
        Pc::new(dir.path(), 1, &pool, &url, 3, 3),
        Pc::new(dir.path(), 2, &pool, &url, 3, 3),
    ];
    for pc in &mut pcs {
        pc.start();
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut kills = 0;
    let mut kill_at = Instant::now() + Duration::from_millis(50 + rng.below(500));
    loop {
        let mut running = 0;
        for pc in &mut pcs {
            if pc.pump(Duration::from_millis(10)) {
                running += 1;
            }
        }
        if running == 0 {
            break;
        }
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
    // A unit that failed (its station was killed under it) was plugged in again.
    let mut units: Vec<_> = pcs
        .iter()
        .flat_map(|pc| pc.conveyor.plugged.clone())
        .collect();
    units.sort_by(|a, b| a.mac.cmp(&b.mac));
    units.dedup_by(|a, b| a.mac == b.mac);
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
    let pool = make_pool(dir.path(), 8);
    let mut pc = Pc::new(dir.path(), 1, &pool, &url, 2, 3);
    pc.start();
    // Take the server away once a credential is committed and its unit is being written.
    loop {
        assert!(pc.pump(Duration::from_secs(60)), "the line stopped early");
        if pc
            .events
            .last()
            .is_some_and(|e| e["event"] == "credential_allocated")
        {
            break;
        }
    }
    pg.stop();
    // The line says it waits, once.
    loop {
        assert!(pc.pump(Duration::from_secs(60)), "the line stopped");
        if pc
            .events
            .last()
            .is_some_and(|e| e["event"] == "journal_unreachable")
        {
            break;
        }
    }
    let said = pc.events.last().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        said.starts_with("journal unreachable, retrying: postgresql://"),
        "{said}"
    );
    assert!(!said.contains(PASSWORD));
    pg.start_again();
    while pc.pump(Duration::from_secs(60)) {}
    let names: Vec<&str> = pc
        .events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "journal_unreachable")
            .count(),
        1,
        "said once per outage: {names:?}"
    );
    assert!(names.contains(&"journal_reachable"), "{names:?}");
    assert!(names.iter().all(|n| *n != "unit_failed"), "{names:?}");
    assert_units_hold_the_journals_credentials(&url, &pc.conveyor.plugged);
    let rows = report(&url);
    assert_eq!(
        rows.len(),
        6,
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
    // New rows continue after the copied ids.
    let j = open_pg(&pg, "L2");
    let next = j.begin_attempt("s9", "p", "x").unwrap();
    assert_eq!(next, 10);
    // A second migration into the same database is refused; so is a URL with a password.
    let again = migrate(&url);
    assert_eq!(again.status.code(), Some(15), "{again:?}");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("not empty"), "{err}");
    let with_pw = migrate(&url.replace("atprov@", &format!("atprov:{PASSWORD}@")));
    let err = String::from_utf8_lossy(&with_pw.stderr);
    assert_eq!(with_pw.status.code(), Some(2), "{err}");
    assert!(err.contains("must not hold the password"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
}
