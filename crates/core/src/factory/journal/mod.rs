//! The factory journal: which credential went to which unit, every attempt and how it ended.
//! It is the factory's memory across crashes, so allocation is one transaction, committed
//! before a single byte of the credential reaches a module.
//!
//! Stations see only the [`Journal`] trait. Two backends keep the same schema and the same
//! promises (a unit never holds two credentials, a credential never goes to two units, an
//! allocation is committed before it is returned, a verdict before the operator hears it):
//! - [`sqlite::SqliteJournal`]: a local file (WAL, `synchronous=FULL`) shared by every
//!   station of one PC, and by several factory processes on it;
//! - [`postgres::PostgresJournal`]: a PostgreSQL database shared by the factory processes of
//!   several PCs; allocation takes a free credential with `FOR UPDATE SKIP LOCKED`, and a lost
//!   connection pauses the caller ("journal unreachable, retrying") until the server is back.
//!
//! An attempt belongs to the process that opened it: a lease its owner renews with heartbeats.
//! At start a process recovers (marks interrupted) only attempts whose owner is gone: its
//! lease expired, or its process no longer exists on this machine. Schema changes are
//! versioned migrations in each backend. [`copy`] moves a SQLite journal into PostgreSQL.
//! Nothing secret is stored: key *paths*, never key bytes; a database password is never
//! part of a journal's name.

pub mod copy;
mod location;
pub mod postgres;
pub mod sqlite;

pub use location::{Location, open, open_existing};
pub use postgres::PostgresJournal;
pub use sqlite::SqliteJournal;

use serde::Serialize;
use std::path::PathBuf;

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
    /// The line (the factory process, named by `line =` or its PC's host name) that ran it,
    /// when recorded.
    pub line: Option<String>,
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

/// Hears what a journal has to tell the line while it works: whether its database is
/// reachable now, and the line to show ("journal unreachable, retrying: ...").
pub type Notice = std::sync::Arc<dyn Fn(bool, &str) + Send + Sync>;

/// What stations need from a journal.
pub trait Journal: Send + Sync {
    /// Where to tell what the journal has to say while it works (a lost database server).
    /// A local file has nothing to say.
    fn on_notice(&self, _notice: Notice) {}
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
    /// SQL): when it happened (`utc_millis`), which station, the event's name and its JSON.
    fn record_event(
        &self,
        at: &str,
        station: &str,
        event: &str,
        json: &str,
    ) -> Result<(), JournalError>;
    /// Every attempt, oldest first.
    fn report(&self) -> Result<Vec<ReportRow>, JournalError>;
}

/// How long an attempt's owner may stay silent before the attempt counts as interrupted: a
/// factory process renews its attempts' leases every [`LEASE`] / 3.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(15);

/// Whether an attempt's owner (`host:pid:started`, not this journal) ran on this host and is
/// gone: its process no longer exists, or it is this process's earlier journal.
pub(crate) fn owner_gone(owner: &str, this_host: &str) -> bool {
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

/// A factory process as the journal records it: the owner of its attempts' leases and the
/// line it says it is.
#[derive(Debug, Clone)]
pub struct Process {
    /// `host@boot:pid:started`: unique per process, and enough to tell on this machine
    /// whether it is still alive. The boot (the kernel's random `boot_id`) tells apart PCs
    /// cloned from one image, which share a host name and often a machine id too; after a
    /// reboot, the old attempts' leases have long expired anyway.
    pub owner: String,
    /// The line's name (`line = "L2"` in `factory.toml`), else the host name.
    pub line: String,
}

impl Process {
    /// This process, on the line `line` (default: the host name).
    pub fn this(line: Option<&str>) -> Process {
        let host = crate::factory::hostname();
        let machine = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| {
                id.trim()
                    .replace('-', "")
                    .chars()
                    .take(12)
                    .collect::<String>()
            })
            .unwrap_or_default();
        let here = if machine.is_empty() {
            host.clone()
        } else {
            format!("{host}@{machine}")
        };
        Process {
            owner: format!(
                "{here}:{}:{}",
                std::process::id(),
                crate::factory::utc_millis()
            ),
            line: line.map_or_else(|| host.clone(), str::to_string),
        }
    }

    /// The machine part of the owner (`host@boot`).
    pub fn host(&self) -> &str {
        self.owner.split(':').next().unwrap_or_default()
    }
}

/// The line of an attempt: as recorded, else the host of its owner (`host[@machine]:pid:start`),
/// for attempts recorded before lines had names.
fn line_of(line: Option<String>, owner: Option<String>) -> Option<String> {
    line.or_else(|| {
        owner.and_then(|o| {
            let here = o.split(':').next()?;
            Some(here.split('@').next().unwrap_or(here).to_string())
        })
    })
}

impl Outcome {
    /// The stages as the journal stores them: `init=12 identify=40 flash=310`.
    pub fn stages_text(&self) -> String {
        self.stages
            .iter()
            .map(|(s, ms)| format!("{s}={ms}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Why a credential cannot go back to the pool (only a rejected one that is not revoked
/// can), if it cannot.
pub(crate) fn refuse_release(thing_name: &str, state: &str, revoked: bool) -> Option<String> {
    (state != "rejected" || revoked).then(|| {
        format!(
            "`{thing_name}` is {}: only a rejected credential goes back to the pool",
            if revoked { "revoked" } else { state }
        )
    })
}

/// The refusal to revoke a credential twice.
pub(crate) fn already_revoked(thing_name: &str) -> String {
    format!("`{thing_name}` is already revoked")
}

/// The error for a thing name the pool does not have.
pub(crate) fn unknown_credential(thing_name: &str) -> String {
    format!("no credential `{thing_name}` in the pool (atprov factory pool status lists them)")
}

/// What an allocation transaction found, before it becomes the caller's result.
pub(crate) enum Got {
    /// A credential for the unit.
    Some(Allocation),
    /// None left; the pool's counts.
    Exhausted(PoolStatus),
    /// The unit holds this revoked credential.
    Revoked(String),
}

impl Got {
    pub(crate) fn into_result(self) -> Result<Allocation, AllocateError> {
        match self {
            Got::Some(a) => Ok(a),
            Got::Exhausted(s) => Err(AllocateError::Exhausted {
                assigned: s.assigned,
                rejected: s.rejected,
            }),
            Got::Revoked(thing_name) => Err(AllocateError::Revoked { thing_name }),
        }
    }
}

/// One value of a row, as both backends store it (for moving a journal between them).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Int(Option<i64>),
    Text(Option<String>),
}

/// A table's name, its columns (`#` marking an integer column) and its rows.
pub(crate) type Table<'a> = (&'a str, &'a [&'a str], Vec<Vec<Cell>>);

/// The reads both backends answer with the same SQL, mapped to the journal's types by
/// [`report_row`], [`pool_entry`] and [`pool_change`].
pub(crate) const REPORT_QUERY: &str =
    "SELECT a.id, a.station, a.port, u.identity, u.unit_id, u.mac, u.imei, u.iccid,
            u.firmware, c.thing_name, c.cert_sha256, a.started_at, a.finished_at,
            a.result, a.exit_code, a.reason, a.stages, a.tool, a.profile, a.owner, a.line
     FROM attempts a
     LEFT JOIN units u ON u.id = a.unit
     LEFT JOIN credentials c ON c.id = a.credential
     ORDER BY a.id";

/// See [`REPORT_QUERY`].
pub(crate) const POOL_ENTRIES_QUERY: &str =
    "SELECT c.thing_name, c.state, u.identity, c.note, c.revoked_at, c.cert_path
     FROM credentials c LEFT JOIN units u ON u.id = c.unit ORDER BY c.id";

/// See [`REPORT_QUERY`].
pub(crate) const POOL_CHANGES_QUERY: &str =
    "SELECT at, who, action, what, reason FROM pool_changes ORDER BY id";

/// A result row of either backend, read by column number: one mapping from a query's
/// columns to the journal's types serves both.
pub(crate) trait Columns {
    type Error;
    /// A text column (NULL as `None`).
    fn text(&self, i: usize) -> Result<Option<String>, Self::Error>;
    /// An integer column (NULL as `None`).
    fn int(&self, i: usize) -> Result<Option<i64>, Self::Error>;
    /// A `NOT NULL` text column.
    fn required(&self, i: usize) -> Result<String, Self::Error> {
        Ok(self.text(i)?.unwrap_or_default())
    }
}

/// A row of [`REPORT_QUERY`].
pub(crate) fn report_row<R: Columns>(r: &R) -> Result<ReportRow, R::Error> {
    Ok(ReportRow {
        attempt: r.int(0)?.unwrap_or_default(),
        station: r.required(1)?,
        port: r.required(2)?,
        unit: r.text(3)?,
        unit_id: r.text(4)?,
        mac: r.text(5)?,
        imei: r.text(6)?,
        iccid: r.text(7)?,
        firmware: r.text(8)?,
        thing_name: r.text(9)?,
        cert_sha256: r.text(10)?,
        started_at: r.required(11)?,
        finished_at: r.text(12)?,
        result: r.required(13)?,
        exit_code: r.int(14)?.map(|c| u8::try_from(c).unwrap_or(u8::MAX)),
        reason: r.text(15)?,
        stages: r.required(16)?,
        tool: r.required(17)?,
        profile: r.required(18)?,
        line: line_of(r.text(20)?, r.text(19)?),
    })
}

/// A row of [`POOL_ENTRIES_QUERY`].
pub(crate) fn pool_entry<R: Columns>(r: &R) -> Result<PoolEntry, R::Error> {
    Ok(PoolEntry {
        thing_name: r.required(0)?,
        state: r.required(1)?,
        unit: r.text(2)?,
        note: r.text(3)?,
        revoked_at: r.text(4)?,
        cert: r.required(5)?,
    })
}

/// A row of [`POOL_CHANGES_QUERY`].
pub(crate) fn pool_change<R: Columns>(r: &R) -> Result<PoolChange, R::Error> {
    Ok(PoolChange {
        at: r.required(0)?,
        who: r.required(1)?,
        action: r.required(2)?,
        what: r.required(3)?,
        reason: r.required(4)?,
    })
}

/// The column list of a [`Table`]'s columns for SQL, `id` named as the backend names it.
pub(crate) fn column_list(columns: &[&str], id: &str) -> String {
    columns
        .iter()
        .map(|c| match c.trim_end_matches('#') {
            "id" => id,
            name => name,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A row read with [`column_list`]: an integer where the column is marked `#`.
pub(crate) fn cells<R: Columns>(r: &R, columns: &[&str]) -> Result<Vec<Cell>, R::Error> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(if c.ends_with('#') {
                Cell::Int(r.int(i)?)
            } else {
                Cell::Text(r.text(i)?)
            })
        })
        .collect()
}
