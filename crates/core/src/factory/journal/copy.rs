//! `atprov factory journal migrate`: moves a SQLite journal into an empty PostgreSQL one,
//! every row with its id, in one transaction, then reads both back and compares them.
//!
//! Both backends have the same tables and columns, so the copy is a list of tables in the
//! order their references need. Row ids are kept (a report's attempt numbers do not change)
//! and each sequence is moved past them. Leases are not copied: an attempt left running by a
//! crash is recovered as interrupted by the first factory run on the new journal.

use std::path::Path;

use super::postgres::{PostgresJournal, Target};
use super::sqlite::SqliteJournal;
use super::{Journal, JournalError, Process};

/// The tables in the order their references need, each with its columns; `#` marks an
/// integer column. `id` is SQLite's `rowid` (the same as `id` where a table has one).
const TABLES: &[(&str, &[&str])] = &[
    (
        "units",
        &[
            "id#",
            "identity",
            "unit_id",
            "mac",
            "imei",
            "iccid",
            "firmware",
            "chip",
            "first_seen",
            "last_seen",
        ],
    ),
    (
        "credentials",
        &[
            "id#",
            "thing_name",
            "cert_path",
            "key_path",
            "cert_sha256",
            "state",
            "unit#",
            "note",
            "revoked_at",
        ],
    ),
    (
        "attempts",
        &[
            "id#",
            "unit#",
            "credential#",
            "station",
            "port",
            "started_at",
            "finished_at",
            "result",
            "exit_code#",
            "reason",
            "stages",
            "tool",
            "profile",
            "owner",
            "line",
        ],
    ),
    (
        "assignments",
        &["id#", "credential#", "unit#", "event", "at"],
    ),
    (
        "pool_changes",
        &["id#", "at", "who", "action", "what", "reason"],
    ),
    ("events", &["id#", "at", "station", "event", "data"]),
];

/// What a copy moved: rows per table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Copied {
    /// Table name and rows copied, in copy order.
    pub tables: Vec<(String, u64)>,
}

/// Copies the SQLite journal `from` into the empty PostgreSQL journal `to`, then checks that
/// both tell the same: every attempt, assignment, credential and pool change.
pub fn sqlite_to_postgres(from: &Path, to: &Target) -> Result<Copied, JournalError> {
    if !from.exists() {
        return Err(JournalError {
            path: from.display().to_string(),
            message: "no such file".into(),
        });
    }
    let source = SqliteJournal::open(from)?;
    if let Some(attempt) = source.live_attempt()? {
        return Err(JournalError {
            path: from.display().to_string(),
            message: format!(
                "attempt {attempt} is running under a live lease: stop the factory using this journal first"
            ),
        });
    }
    let target = PostgresJournal::open(to, Process::this(None))?;
    let mut tables = Vec::new();
    for (table, columns) in TABLES {
        tables.push((*table, *columns, source.rows(table, columns)?));
    }
    let counts = target.load(&tables)?;
    let counts = counts.map_err(|message| JournalError {
        path: to.shown().to_string(),
        message,
    })?;
    // Read both back through the journal interface: what a report, the pool and its
    // history say must be the same.
    let same = |what: &str, a: String, b: String| {
        if a == b {
            Ok(())
        } else {
            Err(JournalError {
                path: to.shown().to_string(),
                message: format!("after the copy its {what} differ from {}", from.display()),
            })
        }
    };
    same("attempts", json(&source.report()?), json(&target.report()?))?;
    same(
        "credentials",
        json(&source.pool_entries()?),
        json(&target.pool_entries()?),
    )?;
    same(
        "pool changes",
        json(&source.pool_changes()?),
        json(&target.pool_changes()?),
    )?;
    Ok(Copied { tables: counts })
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
