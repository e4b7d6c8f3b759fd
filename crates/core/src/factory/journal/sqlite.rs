//! The journal in a local SQLite file (WAL, `synchronous=FULL`): every station of one PC, and
//! several factory processes on that PC, share it. Allocation is an `IMMEDIATE` transaction
//! (SQLite's one writer at a time is the lock). Schema versions are `PRAGMA user_version`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    AllocateError, Allocation, Cell, Columns, Fate, Got, Journal, JournalError, LEASE, Outcome,
    POOL_CHANGES_QUERY, POOL_ENTRIES_QUERY, PoolChange, PoolEntry, PoolRecord, PoolStatus, Process,
    REPORT_QUERY, ReportRow, UnitIdentity, already_revoked, cells, column_list, owner_gone,
    pool_change, pool_entry, refuse_release, report_row, unknown_credential,
};

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
    // 4: the line (factory process) that ran an attempt, as it names itself.
    "ALTER TABLE attempts ADD COLUMN line TEXT;",
];

/// The journal in a local SQLite file.
pub struct SqliteJournal {
    path: String,
    conn: Mutex<Connection>,
    /// This process, as attempts name their owner and line.
    process: Process,
}

use crate::factory::utc_millis as now;

impl SqliteJournal {
    /// Opens (creating if needed) the journal at `path`, for this process under its host name.
    pub fn open(path: &Path) -> Result<SqliteJournal, JournalError> {
        Self::open_as(path, Process::this(None))
    }

    /// Opens (creating if needed) the journal at `path` for `process`.
    pub fn open_as(path: &Path, process: Process) -> Result<SqliteJournal, JournalError> {
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
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if version as usize > MIGRATIONS.len() {
            return Err(JournalError {
                path: shown,
                message: format!(
                    "its schema is version {version}, newer than this atprov knows ({}); upgrade atprov",
                    MIGRATIONS.len()
                ),
            });
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        let mut conn = conn;
        migrate(&mut conn).map_err(err)?;
        Ok(SqliteJournal {
            path: shown,
            conn: Mutex::new(conn),
            process,
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
            message: unknown_credential(thing_name),
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
        let host = self.process.host().to_string();
        let this_owner = self.process.owner.as_str();
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
                    .is_some_and(|o| o != this_owner && owner_gone(o, &host));
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
                params![now(), self.process.owner],
            )?;
            Ok(())
        })
    }

    fn begin_attempt(&self, station: &str, port: &str, profile: &str) -> Result<i64, JournalError> {
        self.with(|conn| {
            let at = now();
            conn.execute(
                "INSERT INTO attempts (station, port, started_at, tool, profile, owner, heartbeat, line)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?3, ?7)",
                params![
                    station,
                    port,
                    at,
                    format!("atprov {}", env!("CARGO_PKG_VERSION")),
                    profile,
                    self.process.owner,
                    self.process.line
                ],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn allocate(&self, attempt: i64, unit: &UnitIdentity) -> Result<Allocation, AllocateError> {
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
        got.into_result()
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
        let stages = outcome.stages_text();
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
            conn.prepare(POOL_ENTRIES_QUERY)?
                .query_map([], |r| pool_entry(r))?
                .collect()
        })
    }

    fn release(&self, thing_name: &str, who: &str, reason: &str) -> Result<(), JournalError> {
        let (state, revoked_at) = self.credential_state(thing_name)?;
        if let Some(message) = refuse_release(thing_name, &state, revoked_at.is_some()) {
            return Err(JournalError {
                path: self.path.clone(),
                message,
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
        if self.credential_state(thing_name)?.1.is_some() {
            return Err(JournalError {
                path: self.path.clone(),
                message: already_revoked(thing_name),
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

    fn record_event(
        &self,
        at: &str,
        station: &str,
        event: &str,
        json: &str,
    ) -> Result<(), JournalError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO events (at, station, event, data) VALUES (?1, ?2, ?3, ?4)",
                params![at, station, event, json],
            )?;
            Ok(())
        })
    }

    fn pool_changes(&self) -> Result<Vec<PoolChange>, JournalError> {
        self.with(|conn| {
            conn.prepare(POOL_CHANGES_QUERY)?
                .query_map([], |r| pool_change(r))?
                .collect()
        })
    }

    fn report(&self) -> Result<Vec<ReportRow>, JournalError> {
        self.with(|conn| {
            conn.prepare(REPORT_QUERY)?
                .query_map([], |r| report_row(r))?
                .collect()
        })
    }
}

impl Columns for rusqlite::Row<'_> {
    type Error = rusqlite::Error;

    fn text(&self, i: usize) -> rusqlite::Result<Option<String>> {
        self.get(i)
    }

    fn int(&self, i: usize) -> rusqlite::Result<Option<i64>> {
        self.get(i)
    }
}

impl SqliteJournal {
    /// Every row of `table`, `columns` as [`super::copy`] names them, in id order.
    pub(super) fn rows(
        &self,
        table: &str,
        columns: &[&str],
    ) -> Result<Vec<Vec<Cell>>, JournalError> {
        self.with(|conn| {
            conn.prepare(&format!(
                "SELECT {} FROM {table} ORDER BY rowid",
                column_list(columns, "rowid")
            ))?
            .query_map([], |r| cells(r, columns))?
            .collect()
        })
    }

    /// An attempt still running under a lease that has not expired, whose owner is not
    /// known to be gone (a factory is using the journal), if any.
    pub(super) fn live_attempt(&self) -> Result<Option<i64>, JournalError> {
        let fresh = millis_ago(LEASE);
        let running: Vec<(i64, Option<String>)> = self.with(|conn| {
            let mut q = conn.prepare(
                "SELECT id, owner FROM attempts WHERE result = 'running' AND heartbeat >= ?1",
            )?;
            q.query_map([fresh], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?;
        let host = self.process.host();
        Ok(running
            .into_iter()
            .find(|(_, owner)| !owner.as_deref().is_some_and(|o| owner_gone(o, host)))
            .map(|(id, _)| id))
    }
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
