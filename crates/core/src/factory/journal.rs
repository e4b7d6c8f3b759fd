//! The factory journal: which credential went to which unit, every attempt and how it ended.
//! It is the factory's memory across crashes, so allocation is one transaction, committed to
//! disk (WAL, `synchronous=FULL`) before a single byte of the credential reaches a module.
//!
//! Stations see only the [`Journal`] trait; [`SqliteJournal`] is the one implementation today
//! (a local file shared by every station of one PC, and by several factory processes on it).
//! An attempt belongs to the process that opened it: a lease its owner renews with heartbeats.
//! At start a process recovers (marks interrupted) only attempts whose owner is gone: its
//! lease expired, or its process no longer exists on this machine. Schema changes are
//! versioned migrations (`PRAGMA user_version`). A database server for several PCs would be a
//! second implementation of the same trait. Nothing secret is stored: key *paths*, never key
//! bytes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

/// A journal failure: the factory cannot keep its promises without the journal, so every one
/// of these stops the station that met it.
#[derive(Debug, thiserror::Error)]
#[error("journal {path}: {message}")]
pub struct JournalError {
    /// The journal as named.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// A credential in the pool, as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRecord {
    /// The thing name (AWS) or device name the credential belongs to.
    pub thing_name: String,
    /// The certificate file.
    pub cert: PathBuf,
    /// The key file (its path only: no key bytes are stored).
    pub key: PathBuf,
    /// SHA-256 of the certificate file, lower-case hex.
    pub cert_sha256: String,
}

/// How a unit is known: `mac:...` or `imei:...`, plus what identify saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnitIdentity {
    /// `mac:...` or `imei:...`: what the journal knows the unit by.
    pub key: String,
    /// The job's unit id.
    pub unit_id: String,
    /// The MAC address, when identify captured one.
    pub mac: Option<String>,
    /// The IMEI, when identify captured one.
    pub imei: Option<String>,
    /// The SIM's ICCID, when identify captured one.
    pub iccid: Option<String>,
    /// The firmware version.
    pub firmware: Option<String>,
    /// The chip.
    pub chip: Option<String>,
}

/// A credential given to a unit.
#[derive(Debug, Clone)]
pub struct Allocation {
    /// The credential's row.
    pub credential: i64,
    /// What it is.
    pub record: PoolRecord,
    /// The unit held this credential before (it came back).
    pub again: bool,
}

/// Why no credential was given.
#[derive(Debug)]
pub enum AllocateError {
    /// Every credential is taken or rejected.
    Exhausted {
        /// Credentials held by units.
        assigned: u64,
        /// Credentials that failed their check.
        rejected: u64,
    },
    /// The unit holds a credential that was revoked: it must not be written again.
    Revoked {
        /// The credential's thing name.
        thing_name: String,
    },
    /// The journal failed.
    Journal(JournalError),
}

impl From<JournalError> for AllocateError {
    fn from(e: JournalError) -> Self {
        AllocateError::Journal(e)
    }
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Whether the unit passed.
    pub passed: bool,
    /// The exit code of its failure (0 for a pass).
    pub exit_code: u8,
    /// The one line saying why it failed.
    pub reason: Option<String>,
    /// Stage name and milliseconds, in order.
    pub stages: Vec<(String, u64)>,
    /// What becomes of the unit's credential.
    pub fate: Fate,
}

/// What becomes of the credential of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// It stays with the unit (a pass, or policy `keep`): no other unit ever gets it.
    Keep,
    /// Policy `release`, and the unit's store was erased and read back empty (or the
    /// credential never reached it): back to the pool.
    Release,
    /// Policy `release`, but the unit could not be wiped: it keeps the credential, marked
    /// burnt with the reason, so it never goes to a second unit.
    Burnt(String),
}

/// Pool counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    /// Credentials no unit holds.
    pub free: u64,
    /// Credentials held by units.
    pub assigned: u64,
    /// Credentials that failed their check.
    pub rejected: u64,
    /// Credentials revoked (leaked): never issued again; a unit holding one is flagged.
    pub revoked: u64,
}

/// One credential of the pool as the journal knows it (`atprov factory pool status`).
#[derive(Debug, Clone, Serialize)]
pub struct PoolEntry {
    /// The thing name.
    pub thing_name: String,
    /// `free`, `assigned` or `rejected`.
    pub state: String,
    /// The unit holding it, when assigned.
    pub unit: Option<String>,
    /// Why it was rejected or revoked.
    pub note: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// The certificate file.
    pub cert: String,
}

/// A change made to the pool by hand (`atprov factory pool add|release|revoke`): who, when,
/// what.
#[derive(Debug, Clone, Serialize)]
pub struct PoolChange {
    /// When (UTC).
    pub at: String,
    /// Who (user@host).
    pub who: String,
    /// `added`, `released` or `revoked`.
    pub action: String,
    /// The credential, or how many were added.
    pub what: String,
    /// Why.
    pub reason: String,
}

/// One attempt, joined with its unit and credential: a row of `atprov factory report`.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRow {
    /// The attempt's number.
    pub attempt: i64,
    /// The PC (host name) whose factory process ran it, when recorded.
    pub host: Option<String>,
    /// The station.
    pub station: String,
    /// The port the unit was on.
    pub port: String,
    /// The unit's identity key.
    pub unit: Option<String>,
    /// The unit id.
    pub unit_id: Option<String>,
    /// The MAC address.
    pub mac: Option<String>,
    /// The IMEI.
    pub imei: Option<String>,
    /// The ICCID.
    pub iccid: Option<String>,
    /// The firmware version.
    pub firmware: Option<String>,
    /// The credential's thing name.
    pub thing_name: Option<String>,
    /// SHA-256 of its certificate.
    pub cert_sha256: Option<String>,
    /// When the attempt began (UTC).
    pub started_at: String,
    /// When it ended (UTC).
    pub finished_at: Option<String>,
    /// `running`, `pass`, `fail` or `interrupted`.
    pub result: String,
    /// The exit code of a failure.
    pub exit_code: Option<u8>,
    /// Why it failed.
    pub reason: Option<String>,
    /// `stage=ms` pairs, e.g. `init=12 identify=40 flash=310`.
    pub stages: String,
    /// The atprov version that ran it.
    pub tool: String,
    /// The device profile.
    pub profile: String,
}

/// What stations need from a journal.
pub trait Journal: Send + Sync {
    /// Adds pool entries not yet known; an entry whose certificate changed since it was
    /// registered is an error (its history would no longer be true).
    fn register_pool(&self, entries: &[PoolRecord]) -> Result<PoolStatus, JournalError>;
    /// Marks attempts a crash left running as interrupted; returns how many.
    fn recover(&self) -> Result<u64, JournalError>;
    /// Renews the lease of this process's running attempts (call at least every
    /// [`LEASE`] / 3): attempts whose lease expired belong to a process that died, and only
    /// those are recovered by another process sharing the journal.
    fn heartbeat(&self) -> Result<(), JournalError>;
    /// An attempt begins on a station (the unit is not known yet).
    fn begin_attempt(&self, station: &str, port: &str, profile: &str) -> Result<i64, JournalError>;
    /// Names the unit of an attempt and gives it its credential: the one it already holds,
    /// else the first free one. Atomic: committed before it returns.
    fn allocate(&self, attempt: i64, unit: &UnitIdentity) -> Result<Allocation, AllocateError>;
    /// Adds a credential made for this unit and assigns it, atomically.
    fn add_assigned(
        &self,
        attempt: i64,
        unit: &UnitIdentity,
        record: &PoolRecord,
    ) -> Result<Allocation, JournalError>;
    /// Takes a credential out of the pool for good (it failed its check).
    fn reject(&self, credential: i64, reason: &str) -> Result<(), JournalError>;
    /// Ends an attempt.
    fn finish_attempt(&self, attempt: i64, outcome: &Outcome) -> Result<(), JournalError>;
    /// How many distinct units passed.
    fn units_passed(&self) -> Result<u64, JournalError>;
    /// Counts of free, assigned and rejected credentials.
    fn pool_status(&self) -> Result<PoolStatus, JournalError>;
    /// Every credential of the pool with its state.
    fn pool_entries(&self) -> Result<Vec<PoolEntry>, JournalError>;
    /// Puts a `rejected` credential back into the pool (its cause was fixed); recorded.
    fn release(&self, thing_name: &str, who: &str, reason: &str) -> Result<(), JournalError>;
    /// Revokes a credential (leaked): never issued again; recorded.
    fn revoke(&self, thing_name: &str, who: &str, reason: &str) -> Result<(), JournalError>;
    /// Records a change made to the pool by hand.
    fn record_change(
        &self,
        who: &str,
        action: &str,
        what: &str,
        reason: &str,
    ) -> Result<(), JournalError>;
    /// Every recorded change to the pool, oldest first.
    fn pool_changes(&self) -> Result<Vec<PoolChange>, JournalError>;
    /// Appends one factory event to the `events` table (for an MES reading the journal with
    /// SQL): when, which station, the event's name and its JSON.
    fn record_event(&self, station: &str, event: &str, json: &str) -> Result<(), JournalError>;
    /// Every attempt, oldest first.
    fn report(&self) -> Result<Vec<ReportRow>, JournalError>;
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS credentials (
    id          INTEGER PRIMARY KEY,
    thing_name  TEXT NOT NULL UNIQUE,
    cert_path   TEXT NOT NULL,
    key_path    TEXT NOT NULL,
    cert_sha256 TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL DEFAULT 'free' CHECK (state IN ('free', 'assigned', 'rejected')),
    unit        INTEGER UNIQUE REFERENCES units(id),
    note        TEXT,
    CHECK ((state = 'assigned') = (unit IS NOT NULL))
);
CREATE TABLE IF NOT EXISTS units (
    id         INTEGER PRIMARY KEY,
    identity   TEXT NOT NULL UNIQUE,
    unit_id    TEXT,
    mac        TEXT,
    imei       TEXT,
    iccid      TEXT,
    firmware   TEXT,
    chip       TEXT,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    id          INTEGER PRIMARY KEY,
    unit        INTEGER REFERENCES units(id),
    credential  INTEGER REFERENCES credentials(id),
    station     TEXT NOT NULL,
    port        TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    result      TEXT NOT NULL DEFAULT 'running'
                CHECK (result IN ('running', 'pass', 'fail', 'interrupted')),
    exit_code   INTEGER,
    reason      TEXT,
    stages      TEXT NOT NULL DEFAULT '',
    tool        TEXT NOT NULL,
    profile     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    credential INTEGER NOT NULL REFERENCES credentials(id),
    unit       INTEGER NOT NULL REFERENCES units(id),
    event      TEXT NOT NULL CHECK (event IN ('assigned', 'released')),
    at         TEXT NOT NULL
);
";

/// How long an attempt's owner may stay silent before the attempt counts as interrupted: a
/// factory process renews its attempts' leases every [`LEASE`] / 3.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(15);

/// Schema changes after the first version, in order; `PRAGMA user_version` says how many a
/// journal has. Each is applied once, in one transaction with the version bump.
const MIGRATIONS: &[&str] = &[
    // 1: attempts belong to the process that opened them (a lease renewed by heartbeats), so
    // several factory processes can share one journal.
    "ALTER TABLE attempts ADD COLUMN owner TEXT;
     ALTER TABLE attempts ADD COLUMN heartbeat TEXT;",
    // 2: revoked credentials, and who changed the pool by hand, when and why.
    "ALTER TABLE credentials ADD COLUMN revoked_at TEXT;
     CREATE TABLE pool_changes (
         id     INTEGER PRIMARY KEY,
         at     TEXT NOT NULL,
         who    TEXT NOT NULL,
         action TEXT NOT NULL,
         what   TEXT NOT NULL,
         reason TEXT NOT NULL
     );",
    // 3: the factory's events, for an MES that reads the journal with SQL.
    "CREATE TABLE events (
         id      INTEGER PRIMARY KEY,
         at      TEXT NOT NULL,
         station TEXT NOT NULL,
         event   TEXT NOT NULL,
         data    TEXT NOT NULL
     );",
];

/// The journal in a local SQLite file.
pub struct SqliteJournal {
    path: String,
    conn: Mutex<Connection>,
    /// This process, as attempts name their owner: host, process id and start time.
    owner: String,
}

use crate::factory::utc_millis as now;

impl SqliteJournal {
    /// Opens (creating if needed) the journal at `path`.
    pub fn open(path: &Path) -> Result<SqliteJournal, JournalError> {
        let shown = path.display().to_string();
        let err = |e: rusqlite::Error| JournalError {
            path: shown.clone(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| JournalError {
                path: shown.clone(),
                message: format!("cannot create its directory: {e}"),
            })?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(JournalError {
                path: shown,
                message: format!(
                    "cannot switch to WAL mode (got {mode}); put the journal on a local disk"
                ),
            });
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let mut conn = conn;
        migrate(&mut conn).map_err(err)?;
        let host = crate::factory::hostname();
        Ok(SqliteJournal {
            path: shown,
            conn: Mutex::new(conn),
            owner: format!("{host}:{}:{}", std::process::id(), now()),
        })
    }

    /// A credential's state and revocation time, or an error naming the unknown thing name.
    fn credential_state(&self, thing_name: &str) -> Result<(String, Option<String>), JournalError> {
        let found = self.with(|conn| {
            conn.query_row(
                "SELECT state, revoked_at FROM credentials WHERE thing_name = ?1",
                [thing_name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        found.ok_or_else(|| JournalError {
            path: self.path.clone(),
            message: format!(
                "no credential `{thing_name}` in the pool (atprov factory pool status lists them)"
            ),
        })
    }

    fn err(&self, e: rusqlite::Error) -> JournalError {
        JournalError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, JournalError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|e| self.err(e))
    }
}

/// Applies the migrations a journal lacks (see [`MIGRATIONS`]).
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(m)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    tx.commit()
}

/// Whether an attempt's owner (`host:pid:started`, not this journal) ran on this host and is
/// gone: its process no longer exists, or it is this process's earlier journal.
fn owner_gone(owner: &str, this_host: &str) -> bool {
    let mut parts = owner.splitn(3, ':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    if host != this_host || pid <= 0 {
        return false;
    }
    if pid as u32 == std::process::id() {
        return true;
    }
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    !alive
}

/// `utc_millis` of `ago` before now: timestamps compare as text.
/// Records a change made to the pool by hand (inside the caller's transaction, if any).
fn log_change(
    conn: &Connection,
    at: &str,
    who: &str,
    action: &str,
    what: &str,
    reason: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO pool_changes (at, who, action, what, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at, who, action, what, reason],
    )?;
    Ok(())
}

fn millis_ago(ago: std::time::Duration) -> String {
    crate::factory::utc_millis_of(time::OffsetDateTime::now_utc() - ago)
}

fn status(conn: &Connection) -> rusqlite::Result<PoolStatus> {
    let count = |state: &str| -> rusqlite::Result<u64> {
        conn.query_row(
            "SELECT COUNT(*) FROM credentials WHERE state = ?1",
            [state],
            |r| r.get::<_, i64>(0).map(|n| n as u64),
        )
    };
    let revoked = conn.query_row(
        "SELECT COUNT(*) FROM credentials WHERE revoked_at IS NOT NULL",
        [],
        |r| r.get::<_, i64>(0).map(|n| n as u64),
    )?;
    let free_revoked = conn.query_row(
        "SELECT COUNT(*) FROM credentials WHERE state = 'free' AND revoked_at IS NOT NULL",
        [],
        |r| r.get::<_, i64>(0).map(|n| n as u64),
    )?;
    Ok(PoolStatus {
        free: count("free")? - free_revoked,
        assigned: count("assigned")?,
        rejected: count("rejected")?,
        revoked,
    })
}

/// The unit's row id, inserted or refreshed.
fn upsert_unit(tx: &rusqlite::Transaction, unit: &UnitIdentity, at: &str) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO units (identity, unit_id, mac, imei, iccid, firmware, chip, first_seen, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT(identity) DO UPDATE SET unit_id = ?2, mac = ?3, imei = ?4, iccid = ?5,
             firmware = ?6, chip = ?7, last_seen = ?8",
        params![
            unit.key,
            unit.unit_id,
            unit.mac,
            unit.imei,
            unit.iccid,
            unit.firmware,
            unit.chip,
            at
        ],
    )?;
    tx.query_row(
        "SELECT id FROM units WHERE identity = ?1",
        [&unit.key],
        |r| r.get(0),
    )
}

fn record_of(r: &rusqlite::Row) -> rusqlite::Result<(i64, PoolRecord)> {
    Ok((
        r.get(0)?,
        PoolRecord {
            thing_name: r.get(1)?,
            cert: PathBuf::from(r.get::<_, String>(2)?),
            key: PathBuf::from(r.get::<_, String>(3)?),
            cert_sha256: r.get(4)?,
        },
    ))
}

const RECORD_COLUMNS: &str = "id, thing_name, cert_path, key_path, cert_sha256";

impl Journal for SqliteJournal {
    fn register_pool(&self, entries: &[PoolRecord]) -> Result<PoolStatus, JournalError> {
        let changed = self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut changed = None;
            for e in entries {
                let known: Option<String> = tx
                    .query_row(
                        "SELECT cert_sha256 FROM credentials WHERE thing_name = ?1",
                        [&e.thing_name],
                        |r| r.get(0),
                    )
                    .optional()?;
                match known {
                    Some(sha) if sha != e.cert_sha256 => {
                        changed = Some(e.thing_name.clone());
                        break;
                    }
                    Some(_) => {}
                    None => {
                        tx.execute(
                            "INSERT INTO credentials (thing_name, cert_path, key_path, cert_sha256)
                             VALUES (?1, ?2, ?3, ?4)",
                            params![
                                e.thing_name,
                                e.cert.to_string_lossy(),
                                e.key.to_string_lossy(),
                                e.cert_sha256
                            ],
                        )?;
                    }
                }
            }
            if changed.is_none() {
                tx.commit()?;
            }
            Ok(changed)
        });
        match changed {
            Err(e) if e.message.contains("UNIQUE constraint failed: credentials.cert_sha256") => {
                Err(JournalError {
                    path: self.path.clone(),
                    message: "the pool lists one certificate under two thing names (or a certificate the journal knows under another name); fix the manifest".into(),
                })
            }
            Err(e) => Err(e),
            Ok(Some(name)) => Err(JournalError {
                path: self.path.clone(),
                message: format!(
                    "pool entry `{name}`: its certificate differs from the one registered under that name; a registered credential must not change (give the new one a new thing name)"
                ),
            }),
            Ok(None) => self.pool_status(),
        }
    }

    fn recover(&self) -> Result<u64, JournalError> {
        // Only attempts whose owner is gone: its lease expired, or it ran on this machine and
        // its process no longer exists. Another live process's attempts are its own business.
        let expired = millis_ago(LEASE);
        let host = self.owner.split(':').next().unwrap_or_default().to_string();
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let running: Vec<(i64, Option<String>, Option<String>)> = {
                let mut q =
                    tx.prepare("SELECT id, owner, heartbeat FROM attempts WHERE result = 'running'")?;
                q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut n = 0;
            for (id, owner, heartbeat) in running {
                let lease_over = heartbeat.as_deref().is_none_or(|h| h < expired.as_str());
                let gone_here = owner
                    .as_deref()
                    .is_some_and(|o| o != self.owner && owner_gone(o, &host));
                if lease_over || gone_here {
                    n += tx.execute(
                        "UPDATE attempts SET result = 'interrupted', finished_at = ?1,
                             reason = 'atprov stopped during this attempt (crash, kill or power loss)'
                         WHERE id = ?2",
                        params![now(), id],
                    )?;
                }
            }
            tx.commit()?;
            Ok(n as u64)
        })
    }

    fn heartbeat(&self) -> Result<(), JournalError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE attempts SET heartbeat = ?1 WHERE owner = ?2 AND result = 'running'",
                params![now(), self.owner],
            )?;
            Ok(())
        })
    }

    fn begin_attempt(&self, station: &str, port: &str, profile: &str) -> Result<i64, JournalError> {
        self.with(|conn| {
            let at = now();
            conn.execute(
                "INSERT INTO attempts (station, port, started_at, tool, profile, owner, heartbeat)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?3)",
                params![
                    station,
                    port,
                    at,
                    format!("atprov {}", env!("CARGO_PKG_VERSION")),
                    profile,
                    self.owner
                ],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn allocate(&self, attempt: i64, unit: &UnitIdentity) -> Result<Allocation, AllocateError> {
        enum Got {
            Some(Allocation),
            Exhausted(PoolStatus),
            Revoked(String),
        }
        let got = self.with(|conn| {
            let at = now();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let unit_row = upsert_unit(&tx, unit, &at)?;
            let held = tx
                .query_row(
                    &format!("SELECT {RECORD_COLUMNS} FROM credentials WHERE unit = ?1"),
                    [unit_row],
                    record_of,
                )
                .optional()?;
            let revoked: Option<String> = tx
                .query_row(
                    "SELECT thing_name FROM credentials WHERE unit = ?1 AND revoked_at IS NOT NULL",
                    [unit_row],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(thing_name) = revoked {
                tx.execute(
                    "UPDATE attempts SET unit = ?1 WHERE id = ?2",
                    params![unit_row, attempt],
                )?;
                tx.commit()?;
                return Ok(Got::Revoked(thing_name));
            }
            let (credential, record, again) = match held {
                Some((id, record)) => (id, record, true),
                None => {
                    let free = tx
                        .query_row(
                            &format!(
                                "SELECT {RECORD_COLUMNS} FROM credentials WHERE state = 'free' AND revoked_at IS NULL ORDER BY id LIMIT 1"
                            ),
                            [],
                            record_of,
                        )
                        .optional()?;
                    let Some((id, record)) = free else {
                        let s = status(&tx)?;
                        tx.execute(
                            "UPDATE attempts SET unit = ?1 WHERE id = ?2",
                            params![unit_row, attempt],
                        )?;
                        tx.commit()?;
                        return Ok(Got::Exhausted(s));
                    };
                    let n = tx.execute(
                        "UPDATE credentials SET state = 'assigned', unit = ?1 WHERE id = ?2 AND state = 'free'",
                        params![unit_row, id],
                    )?;
                    debug_assert_eq!(n, 1);
                    tx.execute(
                        "INSERT INTO assignments (credential, unit, event, at) VALUES (?1, ?2, 'assigned', ?3)",
                        params![id, unit_row, at],
                    )?;
                    (id, record, false)
                }
            };
            tx.execute(
                "UPDATE attempts SET unit = ?1, credential = ?2 WHERE id = ?3",
                params![unit_row, credential, attempt],
            )?;
            tx.commit()?;
            Ok(Got::Some(Allocation {
                credential,
                record,
                again,
            }))
        })?;
        match got {
            Got::Some(a) => Ok(a),
            Got::Exhausted(s) => Err(AllocateError::Exhausted {
                assigned: s.assigned,
                rejected: s.rejected,
            }),
            Got::Revoked(thing_name) => Err(AllocateError::Revoked { thing_name }),
        }
    }

    fn add_assigned(
        &self,
        attempt: i64,
        unit: &UnitIdentity,
        record: &PoolRecord,
    ) -> Result<Allocation, JournalError> {
        self.with(|conn| {
            let at = now();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let unit_row = upsert_unit(&tx, unit, &at)?;
            tx.execute(
                "INSERT INTO credentials (thing_name, cert_path, key_path, cert_sha256, state, unit)
                 VALUES (?1, ?2, ?3, ?4, 'assigned', ?5)",
                params![
                    record.thing_name,
                    record.cert.to_string_lossy(),
                    record.key.to_string_lossy(),
                    record.cert_sha256,
                    unit_row
                ],
            )?;
            let credential = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO assignments (credential, unit, event, at) VALUES (?1, ?2, 'assigned', ?3)",
                params![credential, unit_row, at],
            )?;
            tx.execute(
                "UPDATE attempts SET unit = ?1, credential = ?2 WHERE id = ?3",
                params![unit_row, credential, attempt],
            )?;
            tx.commit()?;
            Ok(Allocation {
                credential,
                record: record.clone(),
                again: false,
            })
        })
    }

    fn reject(&self, credential: i64, reason: &str) -> Result<(), JournalError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE credentials SET state = 'rejected', unit = NULL, note = ?1 WHERE id = ?2",
                params![reason, credential],
            )?;
            Ok(())
        })
    }

    fn finish_attempt(&self, attempt: i64, outcome: &Outcome) -> Result<(), JournalError> {
        let stages = outcome
            .stages
            .iter()
            .map(|(s, ms)| format!("{s}={ms}"))
            .collect::<Vec<_>>()
            .join(" ");
        self.with(|conn| {
            let at = now();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE attempts SET result = ?1, exit_code = ?2, reason = ?3, stages = ?4, finished_at = ?5
                 WHERE id = ?6",
                params![
                    if outcome.passed { "pass" } else { "fail" },
                    outcome.exit_code,
                    outcome.reason,
                    stages,
                    at,
                    attempt
                ],
            )?;
            let held: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT c.id, c.unit FROM attempts a JOIN credentials c ON c.id = a.credential
                     WHERE a.id = ?1 AND c.unit = a.unit",
                    [attempt],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match (&outcome.fate, held) {
                (Fate::Release, Some((credential, unit))) if !outcome.passed => {
                    tx.execute(
                        "UPDATE credentials SET state = 'free', unit = NULL WHERE id = ?1",
                        [credential],
                    )?;
                    tx.execute(
                        "INSERT INTO assignments (credential, unit, event, at) VALUES (?1, ?2, 'released', ?3)",
                        params![credential, unit, at],
                    )?;
                }
                (Fate::Burnt(why), Some((credential, _))) => {
                    tx.execute(
                        "UPDATE credentials SET note = ?1 WHERE id = ?2",
                        params![format!("burnt: {why}"), credential],
                    )?;
                }
                _ => {}
            }
            tx.commit()
        })
    }

    fn units_passed(&self) -> Result<u64, JournalError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT COUNT(DISTINCT unit) FROM attempts WHERE result = 'pass'",
                [],
                |r| r.get::<_, i64>(0).map(|n| n as u64),
            )
        })
    }

    fn pool_status(&self) -> Result<PoolStatus, JournalError> {
        self.with(|conn| status(conn))
    }

    fn pool_entries(&self) -> Result<Vec<PoolEntry>, JournalError> {
        self.with(|conn| {
            let mut q = conn.prepare(
                "SELECT c.thing_name, c.state, u.identity, c.note, c.revoked_at, c.cert_path
                 FROM credentials c LEFT JOIN units u ON u.id = c.unit ORDER BY c.id",
            )?;
            q.query_map([], |r| {
                Ok(PoolEntry {
                    thing_name: r.get(0)?,
                    state: r.get(1)?,
                    unit: r.get(2)?,
                    note: r.get(3)?,
                    revoked_at: r.get(4)?,
                    cert: r.get(5)?,
                })
            })?
            .collect()
        })
    }

    fn release(&self, thing_name: &str, who: &str, reason: &str) -> Result<(), JournalError> {
        let state = self.credential_state(thing_name)?;
        if state.0 != "rejected" || state.1.is_some() {
            return Err(JournalError {
                path: self.path.clone(),
                message: format!(
                    "`{thing_name}` is {}: only a rejected credential goes back to the pool",
                    if state.1.is_some() {
                        "revoked".to_string()
                    } else {
                        state.0
                    }
                ),
            });
        }
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE credentials SET state = 'free', note = NULL WHERE thing_name = ?1 AND state = 'rejected'",
                [thing_name],
            )?;
            log_change(&tx, &now(), who, "released", thing_name, reason)?;
            tx.commit()
        })
    }

    fn revoke(&self, thing_name: &str, who: &str, reason: &str) -> Result<(), JournalError> {
        let state = self.credential_state(thing_name)?;
        if state.1.is_some() {
            return Err(JournalError {
                path: self.path.clone(),
                message: format!("`{thing_name}` is already revoked"),
            });
        }
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let at = now();
            tx.execute(
                "UPDATE credentials SET revoked_at = ?1, note = ?2 WHERE thing_name = ?3",
                params![at, format!("revoked: {reason}"), thing_name],
            )?;
            log_change(&tx, &at, who, "revoked", thing_name, reason)?;
            tx.commit()
        })
    }

    fn record_change(
        &self,
        who: &str,
        action: &str,
        what: &str,
        reason: &str,
    ) -> Result<(), JournalError> {
        self.with(|conn| log_change(conn, &now(), who, action, what, reason))
    }

    fn record_event(&self, station: &str, event: &str, json: &str) -> Result<(), JournalError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO events (at, station, event, data) VALUES (?1, ?2, ?3, ?4)",
                params![now(), station, event, json],
            )?;
            Ok(())
        })
    }

    fn pool_changes(&self) -> Result<Vec<PoolChange>, JournalError> {
        self.with(|conn| {
            let mut q =
                conn.prepare("SELECT at, who, action, what, reason FROM pool_changes ORDER BY id")?;
            q.query_map([], |r| {
                Ok(PoolChange {
                    at: r.get(0)?,
                    who: r.get(1)?,
                    action: r.get(2)?,
                    what: r.get(3)?,
                    reason: r.get(4)?,
                })
            })?
            .collect()
        })
    }

    fn report(&self) -> Result<Vec<ReportRow>, JournalError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT a.id, a.station, a.port, u.identity, u.unit_id, u.mac, u.imei, u.iccid,
                        u.firmware, c.thing_name, c.cert_sha256, a.started_at, a.finished_at,
                        a.result, a.exit_code, a.reason, a.stages, a.tool, a.profile, a.owner
                 FROM attempts a
                 LEFT JOIN units u ON u.id = a.unit
                 LEFT JOIN credentials c ON c.id = a.credential
                 ORDER BY a.id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ReportRow {
                    attempt: r.get(0)?,
                    station: r.get(1)?,
                    port: r.get(2)?,
                    unit: r.get(3)?,
                    unit_id: r.get(4)?,
                    mac: r.get(5)?,
                    imei: r.get(6)?,
                    iccid: r.get(7)?,
                    firmware: r.get(8)?,
                    thing_name: r.get(9)?,
                    cert_sha256: r.get(10)?,
                    started_at: r.get(11)?,
                    finished_at: r.get(12)?,
                    result: r.get(13)?,
                    exit_code: r.get(14)?,
                    reason: r.get(15)?,
                    stages: r.get(16)?,
                    tool: r.get(17)?,
                    profile: r.get(18)?,
                    // The owner is `host:pid:start`.
                    host: r
                        .get::<_, Option<String>>(19)?
                        .and_then(|o| o.split(':').next().map(str::to_string)),
                })
            })?;
            rows.collect()
        })
    }
}

/// Opens an existing journal for reading (`factory report`): a missing file is an error, not
/// a new empty journal.
pub fn open_existing(path: &Path) -> Result<SqliteJournal, JournalError> {
    if !path.exists() {
        return Err(JournalError {
            path: path.display().to_string(),
            message: "no such file (the factory creates it at its first run)".into(),
        });
    }
    SqliteJournal::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> PoolRecord {
        PoolRecord {
            thing_name: format!("thing-{i}"),
            cert: format!("/pool/{i}.crt").into(),
            key: format!("/pool/{i}.key").into(),
            cert_sha256: format!("{i:064x}"),
        }
    }

    fn unit(mac: &str) -> UnitIdentity {
        UnitIdentity {
            key: format!("mac:{mac}"),
            unit_id: mac.replace(':', ""),
            mac: Some(mac.into()),
            ..Default::default()
        }
    }

    fn journal(dir: &tempfile::TempDir) -> SqliteJournal {
        SqliteJournal::open(&dir.path().join("j.db")).unwrap()
    }

    #[test]
    fn each_unit_gets_its_own_credential_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(&dir);
        j.register_pool(&[record(1), record(2)]).unwrap();
        let a = j.begin_attempt("s1", "p", "esp32-at").unwrap();
        let first = j.allocate(a, &unit("aa:01")).unwrap();
        let b = j.begin_attempt("s2", "p", "esp32-at").unwrap();
        let second = j.allocate(b, &unit("aa:02")).unwrap();
        assert_ne!(first.credential, second.credential);
        assert!(!first.again && !second.again);
        // The first unit comes back: the same credential, marked as again.
        let c = j.begin_attempt("s1", "p", "esp32-at").unwrap();
        let back = j.allocate(c, &unit("aa:01")).unwrap();
        assert_eq!(back.credential, first.credential);
        assert!(back.again);
        // A third unit: the pool is exhausted.
        let d = j.begin_attempt("s1", "p", "esp32-at").unwrap();
        match j.allocate(d, &unit("aa:03")) {
            Err(AllocateError::Exhausted { assigned, rejected }) => {
                assert_eq!((assigned, rejected), (2, 0))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_units_credential_is_kept_unless_released() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(&dir);
        j.register_pool(&[record(1)]).unwrap();
        let fail = |release: bool| Outcome {
            passed: false,
            exit_code: 14,
            reason: Some("smoke".into()),
            stages: vec![("init".into(), 3)],
            fate: if release { Fate::Release } else { Fate::Keep },
        };
        let a = j.begin_attempt("s1", "p", "x").unwrap();
        j.allocate(a, &unit("aa:01")).unwrap();
        j.finish_attempt(a, &fail(false)).unwrap();
        let b = j.begin_attempt("s1", "p", "x").unwrap();
        assert!(matches!(
            j.allocate(b, &unit("aa:02")),
            Err(AllocateError::Exhausted { .. })
        ));
        let c = j.begin_attempt("s1", "p", "x").unwrap();
        j.allocate(c, &unit("aa:01")).unwrap();
        j.finish_attempt(c, &fail(true)).unwrap();
        let d = j.begin_attempt("s1", "p", "x").unwrap();
        let given = j.allocate(d, &unit("aa:02")).unwrap();
        assert!(!given.again);
        assert_eq!(j.pool_status().unwrap().assigned, 1);
    }

    #[test]
    fn another_live_process_keeps_its_attempts_until_its_lease_expires() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(&dir);
        let a = j.begin_attempt("s1", "p", "x").unwrap();
        // The attempt as another PC's process owns it, with a fresh lease.
        j.with(|c| {
            c.execute(
                "UPDATE attempts SET owner = 'other-pc:4242:t', heartbeat = ?1 WHERE id = ?2",
                params![now(), a],
            )
        })
        .unwrap();
        assert_eq!(j.recover().unwrap(), 0, "a live lease is left alone");
        j.with(|c| {
            c.execute(
                "UPDATE attempts SET heartbeat = '2000-01-01T00:00:00.000Z' WHERE id = ?1",
                [a],
            )
        })
        .unwrap();
        assert_eq!(j.recover().unwrap(), 1, "an expired lease is recovered");
        // A journal upgraded from before leases (no owner, no heartbeat) recovers as before.
        let b = j.begin_attempt("s1", "p", "x").unwrap();
        j.with(|c| {
            c.execute(
                "UPDATE attempts SET owner = NULL, heartbeat = NULL WHERE id = ?1",
                [b],
            )
        })
        .unwrap();
        assert_eq!(j.recover().unwrap(), 1);
        let version: i64 = j
            .with(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
    }

    #[test]
    fn state_survives_reopening_and_running_attempts_become_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = journal(&dir);
            j.register_pool(&[record(1), record(2)]).unwrap();
            let a = j.begin_attempt("s1", "p", "x").unwrap();
            j.allocate(a, &unit("aa:01")).unwrap();
        }
        let j = journal(&dir);
        assert_eq!(j.recover().unwrap(), 1);
        let rows = j.report().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].result, "interrupted");
        assert_eq!(rows[0].thing_name.as_deref(), Some("thing-1"));
        // Registering the same pool again changes nothing; a changed certificate is refused.
        assert_eq!(j.register_pool(&[record(1), record(2)]).unwrap().free, 1);
        let mut changed = record(2);
        changed.cert_sha256 = "f".repeat(64);
        let e = j.register_pool(&[changed]).unwrap_err();
        assert!(e.message.contains("pool entry `thing-2`"), "{e}");
    }

    #[test]
    fn the_schema_refuses_a_unit_holding_two_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(&dir);
        j.register_pool(&[record(1), record(2)]).unwrap();
        let a = j.begin_attempt("s1", "p", "x").unwrap();
        j.allocate(a, &unit("aa:01")).unwrap();
        let dup = j.with(|c| {
            c.execute(
                "UPDATE credentials SET state = 'assigned',
                     unit = (SELECT id FROM units WHERE identity = 'mac:aa:01')
                 WHERE thing_name = 'thing-2'",
                [],
            )
        });
        assert!(
            dup.is_err(),
            "a second credential for one unit was accepted"
        );
    }
}
