//! Where a journal lives, as `factory.toml`'s `journal =` or a command's `--journal` names it:
//! a SQLite file, or a `postgresql://` URL. Opening picks the backend.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::postgres::{PostgresJournal, Target};
use super::sqlite::SqliteJournal;
use super::{Journal, JournalError, Process};

/// Where a journal lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite file (absolute, or as given on the command line).
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(Box<Target>),
}

impl Location {
    /// Reads `text`: a `postgresql://` URL, else a file path (relative to `base` when given).
    pub fn parse(text: &str, base: Option<&Path>) -> Result<Location, String> {
        if Target::is_url(text) {
            return Target::parse(text).map(|t| Location::Postgres(Box::new(t)));
        }
        if text.contains("://") {
            return Err(format!(
                "`{}`: a journal is a SQLite file or a postgresql:// URL",
                super::postgres::redact_url(text)
            ));
        }
        let path = Path::new(text);
        Ok(Location::Sqlite(match base {
            Some(b) if path.is_relative() => b.join(path),
            _ => path.to_path_buf(),
        }))
    }

    /// How errors and reports name it (never with a password).
    pub fn shown(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(t) => t.shown().to_string(),
        }
    }
}

impl std::str::FromStr for Location {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Location::parse(s, None)
    }
}

/// Opens (creating if needed) the journal for `process`.
pub fn open(location: &Location, process: Process) -> Result<Arc<dyn Journal>, JournalError> {
    Ok(match location {
        Location::Sqlite(path) => Arc::new(SqliteJournal::open_as(path, process)?),
        Location::Postgres(target) => Arc::new(PostgresJournal::open(target, process)?),
    })
}

/// Opens an existing journal for reading and for pool changes (`factory report`, `pool`,
/// `dashboard`): a missing file is an error, not a new empty journal.
pub fn open_existing(location: &Location) -> Result<Arc<dyn Journal>, JournalError> {
    match location {
        Location::Sqlite(path) if !path.exists() => Err(JournalError {
            path: path.display().to_string(),
            message: "no such file (the factory creates it at its first run)".into(),
        }),
        Location::Sqlite(_) => open(location, Process::this(None)),
        Location::Postgres(target) => Ok(Arc::new(PostgresJournal::open_existing(target)?)),
    }
}
