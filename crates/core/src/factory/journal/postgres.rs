//! The journal in a PostgreSQL database, shared by the factory processes of several PCs.
//!
//! The schema is the SQLite one (same tables, columns and constraints), versioned in
//! `atprov_schema` and migrated under an advisory lock, so two processes starting together
//! never both migrate. Allocation is one transaction that takes the first free credential with
//! `FOR UPDATE SKIP LOCKED`: stations of many PCs allocate at once without waiting for each
//! other, and the `UNIQUE` unit column makes a second credential for one unit impossible.
//!
//! The [`Journal`] trait is blocking (stations call it from `spawn_blocking`), so the journal
//! runs `tokio-postgres` on a small runtime of its own, with a few connections per process
//! (each used by one caller at a time). When a connection is lost (server restart, network,
//! no answer within a minute), the call waits and retries: the line hears "journal
//! unreachable, retrying" once, then "journal reachable again". A call whose commit was sent
//! but whose answer was lost is run again, so every operation is written to give the same
//! result twice: the unit finds the credential it was just given, an attempt, a pool change
//! or an event is found by its token.
//!
//! The password never appears in the journal's name: a URL with one is refused, and it comes
//! from `ATPROV_JOURNAL_PASSWORD`, a file, or `~/.pgpass`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row};

use super::{
    AllocateError, Allocation, Cell, Columns, Fate, Got, Journal, JournalError, LEASE, Notice,
    Outcome, POOL_CHANGES_QUERY, POOL_ENTRIES_QUERY, PoolChange, PoolEntry, PoolRecord, PoolStatus,
    Process, REPORT_QUERY, ReportRow, UnitIdentity, already_revoked, cells, column_list,
    owner_gone, pool_change, pool_entry, refuse_release, report_row, unknown_credential,
};

/// Schema changes in order; `atprov_schema.version` says how many a database has. Each is
/// applied once, in one transaction with the version bump. The first is the whole schema as
/// SQLite has it after its own migrations (plus the attempt token that makes
/// `begin_attempt` safe to repeat).
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE units (
    id         BIGSERIAL PRIMARY KEY,
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
CREATE TABLE credentials (
    id          BIGSERIAL PRIMARY KEY,
    thing_name  TEXT NOT NULL UNIQUE,
    cert_path   TEXT NOT NULL,
    key_path    TEXT NOT NULL,
    cert_sha256 TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL DEFAULT 'free' CHECK (state IN ('free', 'assigned', 'rejected')),
    unit        BIGINT UNIQUE REFERENCES units(id),
    note        TEXT,
    revoked_at  TEXT,
    CHECK ((state = 'assigned') = (unit IS NOT NULL))
);
CREATE TABLE attempts (
    id          BIGSERIAL PRIMARY KEY,
    unit        BIGINT REFERENCES units(id),
    credential  BIGINT REFERENCES credentials(id),
    station     TEXT NOT NULL,
    port        TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    result      TEXT NOT NULL DEFAULT 'running'
                CHECK (result IN ('running', 'pass', 'fail', 'interrupted')),
    exit_code   BIGINT,
    reason      TEXT,
    stages      TEXT NOT NULL DEFAULT '',
    tool        TEXT NOT NULL,
    profile     TEXT NOT NULL,
    owner       TEXT,
    heartbeat   TIMESTAMPTZ,
    line        TEXT,
    token       TEXT UNIQUE
);
CREATE INDEX attempts_running ON attempts (owner) WHERE result = 'running';
CREATE INDEX credentials_free ON credentials (id) WHERE state = 'free' AND revoked_at IS NULL;
CREATE TABLE assignments (
    id         BIGSERIAL PRIMARY KEY,
    credential BIGINT NOT NULL REFERENCES credentials(id),
    unit       BIGINT NOT NULL REFERENCES units(id),
    event      TEXT NOT NULL CHECK (event IN ('assigned', 'released')),
    at         TEXT NOT NULL
);
CREATE TABLE pool_changes (
    id     BIGSERIAL PRIMARY KEY,
    at     TEXT NOT NULL,
    who    TEXT NOT NULL,
    action TEXT NOT NULL,
    what   TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE events (
    id      BIGSERIAL PRIMARY KEY,
    at      TEXT NOT NULL,
    station TEXT NOT NULL,
    event   TEXT NOT NULL,
    data    TEXT NOT NULL
);
",
    // 2: a pool change or an event written again after its answer was lost is found by its
    // token instead of being recorded twice.
    "
ALTER TABLE pool_changes ADD COLUMN token TEXT UNIQUE;
ALTER TABLE events ADD COLUMN token TEXT UNIQUE;
",
];

/// The advisory lock key under which a process migrates the schema.
const MIGRATION_LOCK: i64 = 0x6174_7072_6f76; // "atprov"

/// The advisory lock key under which a process registers pool entries.
const REGISTER_LOCK: i64 = MIGRATION_LOCK + 1;

/// Connections per process (per factory, per dashboard).
const CONNECTIONS: usize = 4;

/// The longest pause between two tries while the server is unreachable.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// How long one journal operation may go unanswered before its connection counts as lost
/// (a server that froze; a cable pulled mid-answer is found sooner by the TCP settings).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a read of a whole table (a report, the pool, a copy) may take: its size, not a
/// dead server, sets its time.
const READ_ALL_TIMEOUT: Duration = Duration::from_secs(600);

/// The server's time as the journal stamps it (`2026-11-22T23:17:31.565Z`, like
/// [`crate::factory::utc_millis`]): every PC of a line stamps by one clock.
const SERVER_NOW: &str =
    "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

/// A PostgreSQL journal as `factory.toml` or `--journal` names it, checked but not connected.
#[derive(Debug, Clone)]
pub struct Target {
    config: Config,
    /// The URL without anything secret: how errors name the journal.
    shown: String,
    /// The CA that signed the server's certificate (`sslrootcert=`), for `sslmode=require`.
    root: Option<PathBuf>,
    /// A file holding the password (`journal_password_file` in `factory.toml`).
    password_file: Option<PathBuf>,
}

impl Target {
    /// Whether `text` names a PostgreSQL journal rather than a file.
    pub fn is_url(text: &str) -> bool {
        text.starts_with("postgresql://") || text.starts_with("postgres://")
    }

    /// Parses `postgresql://USER@HOST:PORT/DB[?sslmode=require&sslrootcert=FILE]`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut root = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslrootcert", file)) => root = Some(PathBuf::from(file)),
                Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                    return Err(no_password_here());
                }
                _ => kept.push(pair),
            }
        }
        let without_root = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config = Config::from_str(&without_root)
            .map_err(|e| format!("`{}`: not a PostgreSQL URL: {e}", redact_url(url)))?;
        if config.get_password().is_some() {
            return Err(no_password_here());
        }
        if config.get_user().is_none() {
            return Err(format!(
                "`{}`: name the database user (postgresql://USER@HOST:PORT/DB)",
                redact_url(url)
            ));
        }
        if config.get_ssl_mode() == SslMode::Require && root.is_none() {
            return Err(format!(
                "`{url}`: sslmode=require needs sslrootcert=FILE (the CA that signed the server's certificate)"
            ));
        }
        if root.is_some() && config.get_ssl_mode() == SslMode::Disable {
            return Err(format!(
                "`{url}`: sslrootcert= is given but sslmode=disable; use sslmode=require"
            ));
        }
        if root.is_some() {
            config.ssl_mode(SslMode::Require);
        }
        config.connect_timeout(Duration::from_secs(5));
        // A peer that stopped answering is found within about 10 s (unacknowledged data) or
        // 25 s (an idle connection), not the system's default of minutes.
        config.tcp_user_timeout(Duration::from_secs(10));
        config.keepalives_idle(Duration::from_secs(10));
        config.keepalives_interval(Duration::from_secs(5));
        config.keepalives_retries(3);
        config.application_name("atprov");
        // On the server's side: a PC that dies mid-transaction must not hold its locks (a
        // credential row, the registration lock) for the hours a dead TCP peer can take.
        config.options(
            "-c idle_in_transaction_session_timeout=30s -c tcp_keepalives_idle=10 \
             -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3",
        );
        Ok(Target {
            config,
            shown: url.to_string(),
            root,
            password_file: None,
        })
    }

    /// The same journal with its password read from `file` (only its owner may read it),
    /// after `ATPROV_JOURNAL_PASSWORD` and `ATPROV_JOURNAL_PASSWORD_FILE`.
    pub fn with_password_file(mut self, file: PathBuf) -> Target {
        self.password_file = Some(file);
        self
    }

    /// The same journal with its password given here (a library caller that has it), ahead
    /// of the environment and `~/.pgpass`.
    pub fn with_password(mut self, password: &str) -> Target {
        self.config.password(password);
        self
    }

    /// The URL as given (it holds no password).
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

fn no_password_here() -> String {
    "a journal URL must not hold the password (it would end up in logs): put it in ATPROV_JOURNAL_PASSWORD, a file named by ATPROV_JOURNAL_PASSWORD_FILE, or ~/.pgpass".into()
}

/// `url` with anything that may be a password masked: the password of its user part, and
/// the value of every query option whose name mentions one. Errors about a URL that was
/// refused show it this way.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.find("://") {
        Some(s) => {
            let rest = &base[s + 3..];
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let authority = &rest[..authority_end];
            match authority.rfind('@') {
                Some(at) => {
                    let user = &authority[..at];
                    let user = match user.split_once(':') {
                        Some((name, _)) => format!("{name}:***"),
                        None => user.to_string(),
                    };
                    format!(
                        "{}{user}{}{}",
                        &base[..s + 3],
                        &authority[at..],
                        &rest[authority_end..]
                    )
                }
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    if let Some(q) = query {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("pass") => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{out}?{}", pairs.join("&"));
    }
    out
}

/// The password for `target`: the one given with [`Target::with_password`], else
/// `ATPROV_JOURNAL_PASSWORD`, else the file named by `ATPROV_JOURNAL_PASSWORD_FILE`, else
/// the config's `journal_password_file`, else the matching line of `PGPASSFILE` or
/// `~/.pgpass`.
fn password(target: &Target) -> Result<Option<String>, String> {
    if let Some(p) = target.config.get_password() {
        return Ok(Some(String::from_utf8_lossy(p).into_owned()));
    }
    if let Ok(p) = std::env::var("ATPROV_JOURNAL_PASSWORD") {
        return Ok(Some(p));
    }
    if let Ok(file) = std::env::var("ATPROV_JOURNAL_PASSWORD_FILE") {
        return read_password_file("ATPROV_JOURNAL_PASSWORD_FILE", Path::new(&file)).map(Some);
    }
    if let Some(file) = &target.password_file {
        return read_password_file("journal_password_file", file).map(Some);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")));
    let Some(text) = file.and_then(|f| std::fs::read_to_string(f).ok()) else {
        return Ok(None);
    };
    let host = match target.config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".into(),
    };
    let port = target
        .config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = target.config.get_user().unwrap_or_default();
    let db = target.config.get_dbname().unwrap_or(user);
    Ok(pgpass_lookup(&text, [&host, &port, db, user]))
}

/// The first line of a password file that only its owner may read.
fn read_password_file(named_by: &str, file: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = file.display();
    let mode = std::fs::metadata(file)
        .map_err(|e| format!("{named_by}: {shown}: cannot read it: {e}"))?
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{named_by}: {shown}: others may read it (mode {:o}): chmod 600 it",
            mode & 0o777
        ));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{named_by}: {shown}: cannot read it: {e}"))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// The password of the first `~/.pgpass` line matching `host:port:db:user` (`*` matches
/// anything; `\:` and `\\` are escapes), as libpq reads it.
fn pgpass_lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => field.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
                _ => field.push(c),
            }
        }
        fields.push(field);
        if fields.len() == 5
            && fields[..4]
                .iter()
                .zip(wanted)
                .all(|(f, w)| f == "*" || f == w)
        {
            return fields.pop();
        }
    }
    None
}

/// Whether a failure means the server is out of reach (retry once it is back), rather than
/// a statement the journal refused.
fn lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // Connection exceptions, shutdown in progress, too many connections, and the
        // conflicts PostgreSQL asks a client to retry.
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300");
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Whether PostgreSQL rolled the transaction back and asks for it to be run again
/// (serialization failure, deadlock): the connection is fine.
fn conflict(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| matches!(db.code().code(), "40001" | "40P01"))
}

/// The journal in a PostgreSQL database.
pub struct PostgresJournal {
    shown: String,
    config: Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    runtime: OwnRuntime,
    /// A few connections, each used by one caller at a time and opened when first needed:
    /// the stations of one PC allocate side by side, not one after another.
    clients: Vec<tokio::sync::Mutex<Option<Client>>>,
    /// Where a caller that finds every connection busy queues next.
    next: std::sync::atomic::AtomicUsize,
    process: Process,
    /// Numbers this process's attempts, pool changes and events, for their tokens.
    tokens: AtomicU64,
    /// Whether the server is out of reach (said once per outage).
    unreachable: std::sync::atomic::AtomicBool,
    notice: std::sync::Mutex<Option<Notice>>,
}

/// Runs a journal operation on a connection, reconnecting and running it again while the
/// server is out of reach. `$body` is an expression using `$client: &mut Client` that returns
/// a future of `Result<T, tokio_postgres::Error>`.
macro_rules! retrying {
    ($journal:expr, |$client:ident| $body:expr) => {
        retrying!($journal, OPERATION_TIMEOUT, |$client| $body)
    };
    ($journal:expr, $timeout:expr, |$client:ident| $body:expr) => {{
        let journal: &PostgresJournal = $journal;
        journal.block(async {
            let mut pause = Duration::from_millis(100);
            loop {
                let mut slot = journal.slot().await;
                let timeout: Duration = $timeout;
                let tried = tokio::time::timeout(timeout, async {
                    if slot.is_none() {
                        *slot = Some(journal.connect().await?);
                    }
                    let $client: &mut Client = slot.as_mut().expect("connected above");
                    $body.await
                })
                .await;
                let why = match tried {
                    Ok(Ok(v)) => {
                        drop(slot);
                        journal.reachable();
                        break Ok(v);
                    }
                    // Rolled back by the server: run it again at once.
                    Ok(Err(e)) if conflict(&e) => continue,
                    Ok(Err(e)) if lost(&e) => describe(&e),
                    Ok(Err(e)) => break Err(journal.err(e)),
                    Err(_) => format!("no answer within {} s", timeout.as_secs()),
                };
                // The connection is dropped with whatever it was doing (the server rolls back
                // an open transaction); the operation is run again on a new one.
                *slot = None;
                drop(slot);
                journal.out_of_reach(&why);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        })
    }};
}

impl PostgresJournal {
    /// Connects to the journal (once: a server that is not there is an error here, not a
    /// wait), migrates its schema, and opens it for `process`.
    pub fn open(target: &Target, process: Process) -> Result<PostgresJournal, JournalError> {
        Self::open_with(target, process, true)
    }

    /// Opens a journal the factory already made (`report`, `pool`, `dashboard`): a database
    /// without the journal's schema is an error, not a new empty journal.
    pub fn open_existing(target: &Target) -> Result<PostgresJournal, JournalError> {
        Self::open_with(target, Process::this(None), false)
    }

    fn open_with(
        target: &Target,
        process: Process,
        create: bool,
    ) -> Result<PostgresJournal, JournalError> {
        let fail = |message: String| JournalError {
            path: target.shown.clone(),
            message,
        };
        let mut config = target.config.clone();
        if let Some(p) = password(target).map_err(fail)? {
            config.password(p);
        }
        let tls = match &target.root {
            None => None,
            Some(root) => Some(tls_to(root).map_err(fail)?),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("journal")
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start its runtime: {e}")))?;
        let journal = PostgresJournal {
            shown: target.shown.clone(),
            config,
            tls,
            runtime: OwnRuntime(Some(runtime)),
            clients: (0..CONNECTIONS)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: Default::default(),
            process,
            tokens: AtomicU64::new(0),
            unreachable: Default::default(),
            notice: Default::default(),
        };
        journal.block(async {
            let mut client = journal.connect().await.map_err(|e| {
                let why = describe(&e);
                fail(format!(
                    "cannot reach it: {why} ({})",
                    first_contact_hint(&e, &why)
                ))
            })?;
            if !create {
                let made: bool = client
                    .query_one("SELECT to_regclass('atprov_schema') IS NOT NULL", &[])
                    .await
                    .map_err(|e| journal.err(e))?
                    .get(0);
                if !made {
                    return Err(fail(
                        "no atprov journal in this database (the factory creates it at its first run)"
                            .into(),
                    ));
                }
            }
            migrate(&mut client).await.map_err(|e| match e {
                Migrate::Newer(v) => fail(format!(
                    "its schema is version {v}, newer than this atprov knows ({}); upgrade atprov",
                    MIGRATIONS.len()
                )),
                Migrate::Sql(e) => journal.err(e),
            })?;
            *journal.clients[0].lock().await = Some(client);
            Ok(())
        })?;
        Ok(journal)
    }

    /// Runs `f` to completion on the journal's runtime, from any thread: a caller inside
    /// another runtime (a task, or `spawn_blocking`) gets a scoped thread to wait on, since a
    /// runtime cannot block inside another one.
    fn block<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        let runtime = self.runtime.0.as_ref().expect("taken only when dropped");
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(|| runtime.block_on(f))
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
        } else {
            runtime.block_on(f)
        }
    }

    async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let client = match &self.tls {
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(connection);
                client
            }
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                tokio::spawn(connection);
                client
            }
        };
        Ok(client)
    }

    fn out_of_reach(&self, why: &str) {
        if !self.unreachable.swap(true, Ordering::SeqCst) {
            let line = format!("journal unreachable, retrying: {}: {why}", self.shown);
            tracing::warn!("{line}");
            self.tell(false, &line);
        }
    }

    fn reachable(&self) {
        if self.unreachable.swap(false, Ordering::SeqCst) {
            let line = format!("journal reachable again: {}", self.shown);
            tracing::info!("{line}");
            self.tell(true, &line);
        }
    }

    fn tell(&self, reachable: bool, line: &str) {
        let notice = self
            .notice
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(n) = notice {
            n(reachable, line);
        }
    }

    /// A connection of this process to use: a free one, else the next in turn (waiting for
    /// it). It may be closed (`None`): the caller connects it.
    async fn slot(&self) -> tokio::sync::MutexGuard<'_, Option<Client>> {
        for c in &self.clients {
            if let Ok(free) = c.try_lock() {
                return free;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[i].lock().await
    }

    /// A token unique to this call (this process's owner and a counter): an insert run again
    /// after its answer was lost finds its row by it.
    fn token(&self) -> String {
        format!(
            "{}#{}",
            self.process.owner,
            self.tokens.fetch_add(1, Ordering::SeqCst)
        )
    }

    fn err(&self, e: tokio_postgres::Error) -> JournalError {
        JournalError {
            path: self.shown.clone(),
            message: describe(&e),
        }
    }

    fn refused(&self, message: String) -> JournalError {
        JournalError {
            path: self.shown.clone(),
            message,
        }
    }

    /// Inserts `tables` (name, columns as [`super::copy`] names them, rows) into this
    /// journal in one transaction, ids kept and sequences moved past them; refused (the
    /// inner error) unless the journal is empty. No retry: a copy is started again by hand.
    pub(super) fn load(
        &self,
        tables: &[super::Table<'_>],
    ) -> Result<Result<Vec<(String, u64)>, String>, JournalError> {
        self.block(async {
            let mut slot = self.slot().await;
            let client = match slot.as_mut() {
                Some(c) => c,
                None => slot.insert(self.connect().await.map_err(|e| self.err(e))?),
            };
            load_in(client, tables).await.map_err(|e| self.err(e))
        })
    }
}

async fn load_in(
    client: &mut Client,
    tables: &[super::Table<'_>],
) -> Result<Result<Vec<(String, u64)>, String>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // No factory may start writing while the copy runs, and the copy goes only into an
    // empty journal.
    let names: Vec<&str> = tables.iter().map(|(t, _, _)| *t).collect();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        names.join(", ")
    ))
    .await?;
    for table in &names {
        let n: i64 = tx
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await?
            .get(0);
        if n > 0 {
            return Ok(Err(format!(
                "not empty ({n} rows in {table}): migrate into a new database"
            )));
        }
    }
    let mut counts = Vec::new();
    for (table, columns, rows) in tables {
        let marks: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let insert = tx
            .prepare(&format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                column_list(columns, "id"),
                marks.join(", ")
            ))
            .await?;
        for row in rows {
            let params: Vec<&(dyn ToSql + Sync)> = row
                .iter()
                .map(|c| match c {
                    Cell::Int(v) => v as &(dyn ToSql + Sync),
                    Cell::Text(v) => v as &(dyn ToSql + Sync),
                })
                .collect();
            tx.execute(&insert, &params).await?;
        }
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table}"
            ),
            &[],
        )
        .await?;
        // Read back in the same transaction: a copy that differs is never committed.
        let back = rows_in(&tx, table, columns).await?;
        if &back != rows {
            return Ok(Err(format!(
                "table {table} read back differently after the copy; nothing was committed"
            )));
        }
        counts.push((table.to_string(), rows.len() as u64));
    }
    tx.commit().await?;
    Ok(Ok(counts))
}

/// Every row of `table`, `columns` as [`super::copy`] names them, in id order.
async fn rows_in(
    c: &impl tokio_postgres::GenericClient,
    table: &str,
    columns: &[&str],
) -> Result<Vec<Vec<Cell>>, tokio_postgres::Error> {
    let query = format!(
        "SELECT {} FROM {table} ORDER BY id",
        column_list(columns, "id")
    );
    c.query(&query, &[])
        .await?
        .iter()
        .map(|r| cells(r, columns))
        .collect()
}

/// The journal's own runtime, shut down without waiting when the journal is dropped (which
/// may happen inside another runtime, where a blocking shutdown is not allowed).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// One line for a PostgreSQL failure: the server's message (with its detail), or the
/// client's.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        },
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

/// What to check when the first connection fails, by what failed.
fn first_contact_hint(e: &tokio_postgres::Error, why: &str) -> &'static str {
    let code = e.as_db_error().map(|d| d.code().code().to_string());
    match code.as_deref() {
        Some("28P01" | "28000") => {
            "check the user and its password: ATPROV_JOURNAL_PASSWORD, ATPROV_JOURNAL_PASSWORD_FILE or ~/.pgpass"
        }
        Some("3D000") => "create the database first, owned by the journal's user",
        Some(_) => "the server refused the connection",
        None if why.contains("TLS") || why.contains("certificate") => {
            "sslrootcert= must name the CA that signed the server's certificate, issued for the host in the URL"
        }
        None if why.contains("password") => {
            "the server asks for a password: set ATPROV_JOURNAL_PASSWORD, ATPROV_JOURNAL_PASSWORD_FILE or ~/.pgpass"
        }
        None => "is the server running and listening at that host and port?",
    }
}

/// A TLS connector that trusts only `root` (the CA that signed the server's certificate).
fn tls_to(root: &Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let shown = root.display();
    let pem =
        std::fs::read(root).map_err(|e| format!("sslrootcert={shown}: cannot read it: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("sslrootcert={shown}: not PEM certificates: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert={shown}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert={shown}: no certificate in it"));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

enum Migrate {
    Newer(i32),
    Sql(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Migrate {
    fn from(e: tokio_postgres::Error) -> Self {
        Migrate::Sql(e)
    }
}

/// Applies the migrations the database lacks, under an advisory lock.
async fn migrate(client: &mut Client) -> Result<(), Migrate> {
    // Up to date: nothing is written (a read-only role may read the journal).
    let made: bool = client
        .query_one("SELECT to_regclass('atprov_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if made {
        let current: Option<i32> = client
            .query_one("SELECT MAX(version) FROM atprov_schema", &[])
            .await?
            .get(0);
        match current {
            Some(v) if v as usize == MIGRATIONS.len() => return Ok(()),
            Some(v) if v as usize > MIGRATIONS.len() => return Err(Migrate::Newer(v)),
            _ => {}
        }
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS atprov_schema (version INTEGER NOT NULL);
         INSERT INTO atprov_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM atprov_schema);",
    )
    .await?;
    let version: i32 = tx
        .query_one("SELECT version FROM atprov_schema", &[])
        .await?
        .get(0);
    if version as usize > MIGRATIONS.len() {
        return Err(Migrate::Newer(version));
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.batch_execute(m).await?;
        tx.execute("UPDATE atprov_schema SET version = $1", &[&(i as i32 + 1)])
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

const RECORD_COLUMNS: &str = "id, thing_name, cert_path, key_path, cert_sha256";

fn record_of(r: &Row) -> (i64, PoolRecord) {
    (
        r.get(0),
        PoolRecord {
            thing_name: r.get(1),
            cert: PathBuf::from(r.get::<_, String>(2)),
            key: PathBuf::from(r.get::<_, String>(3)),
            cert_sha256: r.get(4),
        },
    )
}

/// The server's time, for the stamps of one transaction.
async fn server_now(
    c: &impl tokio_postgres::GenericClient,
) -> Result<String, tokio_postgres::Error> {
    Ok(c.query_one(&format!("SELECT {SERVER_NOW}"), &[])
        .await?
        .get(0))
}

async fn upsert_unit(
    tx: &tokio_postgres::Transaction<'_>,
    unit: &UnitIdentity,
    at: &str,
) -> Result<i64, tokio_postgres::Error> {
    let row = tx
        .query_one(
            "INSERT INTO units (identity, unit_id, mac, imei, iccid, firmware, chip, first_seen, last_seen)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
             ON CONFLICT (identity) DO UPDATE SET unit_id = $2, mac = $3, imei = $4, iccid = $5,
                 firmware = $6, chip = $7, last_seen = $8
             RETURNING id",
            &[
                &unit.key,
                &unit.unit_id,
                &unit.mac,
                &unit.imei,
                &unit.iccid,
                &unit.firmware,
                &unit.chip,
                &at,
            ],
        )
        .await?;
    Ok(row.get(0))
}

async fn status_of(
    c: &impl tokio_postgres::GenericClient,
) -> Result<PoolStatus, tokio_postgres::Error> {
    let r = c
        .query_one(
            "SELECT
                 COUNT(*) FILTER (WHERE state = 'free' AND revoked_at IS NULL),
                 COUNT(*) FILTER (WHERE state = 'assigned'),
                 COUNT(*) FILTER (WHERE state = 'rejected'),
                 COUNT(*) FILTER (WHERE revoked_at IS NOT NULL)
             FROM credentials",
            &[],
        )
        .await?;
    let n = |i: usize| r.get::<_, i64>(i) as u64;
    Ok(PoolStatus {
        free: n(0),
        assigned: n(1),
        rejected: n(2),
        revoked: n(3),
    })
}

async fn allocate_in(
    client: &mut Client,
    attempt: i64,
    unit: &UnitIdentity,
) -> Result<Got, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let at = server_now(&tx).await?;
    let unit_row = upsert_unit(&tx, unit, &at).await?;
    // The unit's own credential, if it holds one (locked: a release cannot race us).
    let held = tx
        .query_opt(
            &format!(
                "SELECT {RECORD_COLUMNS}, revoked_at FROM credentials WHERE unit = $1 FOR UPDATE"
            ),
            &[&unit_row],
        )
        .await?;
    if let Some(row) = &held
        && row.get::<_, Option<String>>(5).is_some()
    {
        tx.execute(
            "UPDATE attempts SET unit = $1 WHERE id = $2",
            &[&unit_row, &attempt],
        )
        .await?;
        tx.commit().await?;
        return Ok(Got::Revoked(row.get(1)));
    }
    let (credential, record, again) = match held {
        Some(row) => {
            let (id, record) = record_of(&row);
            // "Again" when an earlier attempt gave it to this unit: not when this attempt,
            // run again after a lost answer, finds what it took itself.
            let earlier: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM attempts
                                    WHERE credential = $1 AND unit = $2 AND id <> $3)",
                    &[&id, &unit_row, &attempt],
                )
                .await?
                .get(0);
            (id, record, earlier)
        }
        None => {
            // The first free credential no other transaction holds: PCs do not queue here.
            // When every free one is locked (another transaction may yet roll back, or a
            // release is under way), wait for the first instead of calling the pool empty.
            let pick = |lock: &str| {
                format!(
                    "SELECT {RECORD_COLUMNS} FROM credentials
                     WHERE state = 'free' AND revoked_at IS NULL
                     ORDER BY id LIMIT 1 FOR UPDATE {lock}"
                )
            };
            let mut free = tx.query_opt(&pick("SKIP LOCKED"), &[]).await?;
            if free.is_none() && status_of(&tx).await?.free > 0 {
                free = tx.query_opt(&pick(""), &[]).await?;
            }
            let Some(row) = free else {
                let s = status_of(&tx).await?;
                tx.execute(
                    "UPDATE attempts SET unit = $1 WHERE id = $2",
                    &[&unit_row, &attempt],
                )
                .await?;
                tx.commit().await?;
                return Ok(Got::Exhausted(s));
            };
            let (id, record) = record_of(&row);
            let taken = tx
                .execute(
                    "UPDATE credentials SET state = 'assigned', unit = $1 WHERE id = $2 AND state = 'free'",
                    &[&unit_row, &id],
                )
                .await?;
            debug_assert_eq!(taken, 1, "a locked free credential is ours to take");
            tx.execute(
                "INSERT INTO assignments (credential, unit, event, at) VALUES ($1, $2, 'assigned', $3)",
                &[&id, &unit_row, &at],
            )
            .await?;
            (id, record, false)
        }
    };
    tx.execute(
        "UPDATE attempts SET unit = $1, credential = $2 WHERE id = $3",
        &[&unit_row, &credential, &attempt],
    )
    .await?;
    tx.commit().await?;
    Ok(Got::Some(Allocation {
        credential,
        record,
        again,
    }))
}

async fn register_in(
    client: &mut Client,
    entries: &[PoolRecord],
) -> Result<Result<(), String>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // PCs starting together register the same manifest: one at a time, so the second sees
    // the first's rows (READ COMMITTED: each statement after the lock sees them).
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REGISTER_LOCK])
        .await?;
    // The whole manifest in two statements, however long it is.
    let names: Vec<&str> = entries.iter().map(|e| e.thing_name.as_str()).collect();
    let shas: Vec<&str> = entries.iter().map(|e| e.cert_sha256.as_str()).collect();
    let certs: Vec<String> = entries
        .iter()
        .map(|e| e.cert.to_string_lossy().into_owned())
        .collect();
    let keys: Vec<String> = entries
        .iter()
        .map(|e| e.key.to_string_lossy().into_owned())
        .collect();
    if let Some(changed) = tx
        .query_opt(
            "SELECT n.thing_name FROM unnest($1::text[], $2::text[]) AS n(thing_name, sha)
             JOIN credentials c USING (thing_name) WHERE c.cert_sha256 <> n.sha LIMIT 1",
            &[&names, &shas],
        )
        .await?
    {
        return Ok(Err(format!(
            "pool entry `{}`: its certificate differs from the one registered under that name; a registered credential must not change (give the new one a new thing name)",
            changed.get::<_, String>(0)
        )));
    }
    let inserted = tx
        .execute(
            "INSERT INTO credentials (thing_name, cert_path, key_path, cert_sha256)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
             ON CONFLICT (thing_name) DO NOTHING",
            &[&names, &certs, &keys, &shas],
        )
        .await;
    match inserted {
        Err(e)
            if e.as_db_error().is_some_and(|d| {
                d.code().code() == "23505" && d.constraint() == Some("credentials_cert_sha256_key")
            }) =>
        {
            return Ok(Err("the pool lists one certificate under two thing names (or a certificate the journal knows under another name); fix the manifest".into()));
        }
        other => {
            other?;
        }
    }
    tx.commit().await?;
    Ok(Ok(()))
}

async fn recover_in(client: &mut Client, process: &Process) -> Result<u64, tokio_postgres::Error> {
    // No lock on the running attempts (every PC runs this every few seconds): each update
    // checks again that the attempt is still running and, for an expired lease, that its
    // owner did not renew it meanwhile.
    let running = client
        .query(
            "SELECT id, owner, heartbeat IS NULL OR heartbeat < now() - make_interval(secs => $1)
             FROM attempts WHERE result = 'running'",
            &[&LEASE.as_secs_f64()],
        )
        .await?;
    let mut n = 0;
    for r in running {
        let (id, owner, lease_over): (i64, Option<String>, bool) = (r.get(0), r.get(1), r.get(2));
        let gone_here = owner
            .as_deref()
            .is_some_and(|o| o != process.owner && owner_gone(o, process.host()));
        if lease_over || gone_here {
            n += client
                .execute(
                    &format!(
                        "UPDATE attempts SET result = 'interrupted', finished_at = {SERVER_NOW},
                             reason = 'atprov stopped during this attempt (crash, kill or power loss)'
                         WHERE id = $1 AND result = 'running'
                           AND ($2 OR heartbeat IS NULL
                                OR heartbeat < now() - make_interval(secs => $3))"
                    ),
                    &[&id, &gone_here, &LEASE.as_secs_f64()],
                )
                .await?;
        }
    }
    Ok(n)
}

async fn finish_in(
    client: &mut Client,
    attempt: i64,
    outcome: &Outcome,
    stages: &str,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let at = server_now(&tx).await?;
    tx.execute(
        "UPDATE attempts SET result = $1, exit_code = $2, reason = $3, stages = $4, finished_at = $5
         WHERE id = $6",
        &[
            &if outcome.passed { "pass" } else { "fail" },
            &i64::from(outcome.exit_code),
            &outcome.reason,
            &stages,
            &at,
            &attempt,
        ],
    )
    .await?;
    let held = tx
        .query_opt(
            "SELECT c.id, c.unit FROM attempts a JOIN credentials c ON c.id = a.credential
             WHERE a.id = $1 AND c.unit = a.unit FOR UPDATE OF c",
            &[&attempt],
        )
        .await?
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
    match (&outcome.fate, held) {
        (Fate::Release, Some((credential, unit))) if !outcome.passed => {
            tx.execute(
                "UPDATE credentials SET state = 'free', unit = NULL WHERE id = $1",
                &[&credential],
            )
            .await?;
            tx.execute(
                "INSERT INTO assignments (credential, unit, event, at) VALUES ($1, $2, 'released', $3)",
                &[&credential, &unit, &at],
            )
            .await?;
        }
        (Fate::Burnt(why), Some((credential, _))) => {
            tx.execute(
                "UPDATE credentials SET note = $1 WHERE id = $2",
                &[&format!("burnt: {why}"), &credential],
            )
            .await?;
        }
        _ => {}
    }
    tx.commit().await
}

async fn add_assigned_in(
    client: &mut Client,
    attempt: i64,
    unit: &UnitIdentity,
    record: &PoolRecord,
) -> Result<i64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let at = server_now(&tx).await?;
    let unit_row = upsert_unit(&tx, unit, &at).await?;
    // Run again after a lost answer: the credential is already there, held by this unit.
    let credential = match tx
        .query_opt(
            "SELECT id FROM credentials WHERE thing_name = $1 AND unit = $2 AND cert_sha256 = $3",
            &[&record.thing_name, &unit_row, &record.cert_sha256],
        )
        .await?
    {
        Some(row) => row.get(0),
        None => {
            let id: i64 = tx
                .query_one(
                    "INSERT INTO credentials (thing_name, cert_path, key_path, cert_sha256, state, unit)
                     VALUES ($1, $2, $3, $4, 'assigned', $5) RETURNING id",
                    &[
                        &record.thing_name,
                        &record.cert.to_string_lossy(),
                        &record.key.to_string_lossy(),
                        &record.cert_sha256,
                        &unit_row,
                    ],
                )
                .await?
                .get(0);
            tx.execute(
                "INSERT INTO assignments (credential, unit, event, at) VALUES ($1, $2, 'assigned', $3)",
                &[&id, &unit_row, &at],
            )
            .await?;
            id
        }
    };
    tx.execute(
        "UPDATE attempts SET unit = $1, credential = $2 WHERE id = $3",
        &[&unit_row, &credential, &attempt],
    )
    .await?;
    tx.commit().await?;
    Ok(credential)
}

/// A change made to the pool by hand.
#[derive(Clone, Copy)]
enum ByHand {
    Release,
    Revoke,
}

/// Releases or revokes `thing_name` and records who did it, in one transaction: the state is
/// checked under a row lock, and a change run again after its answer was lost finds its
/// record by `token` instead of being refused or recorded twice. The inner error is the
/// refusal.
async fn change_in(
    client: &mut Client,
    change: ByHand,
    thing_name: &str,
    who: &str,
    reason: &str,
    token: &str,
) -> Result<Result<(), String>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let at = server_now(&tx).await?;
    let Some(row) = tx
        .query_opt(
            "SELECT state, revoked_at FROM credentials WHERE thing_name = $1 FOR UPDATE",
            &[&thing_name],
        )
        .await?
    else {
        return Ok(Err(unknown_credential(thing_name)));
    };
    // Under the row lock: a first try whose answer was lost has committed by now, and its
    // record is what says the change is done.
    if tx
        .query_opt("SELECT 1 FROM pool_changes WHERE token = $1", &[&token])
        .await?
        .is_some()
    {
        return Ok(Ok(()));
    }
    let (state, revoked): (String, bool) = (row.get(0), row.get::<_, Option<String>>(1).is_some());
    let action = match change {
        ByHand::Release => {
            if let Some(refused) = refuse_release(thing_name, &state, revoked) {
                return Ok(Err(refused));
            }
            tx.execute(
                "UPDATE credentials SET state = 'free', note = NULL WHERE thing_name = $1",
                &[&thing_name],
            )
            .await?;
            "released"
        }
        ByHand::Revoke => {
            if revoked {
                return Ok(Err(already_revoked(thing_name)));
            }
            tx.execute(
                "UPDATE credentials SET revoked_at = $1, note = $2 WHERE thing_name = $3",
                &[&at, &format!("revoked: {reason}"), &thing_name],
            )
            .await?;
            "revoked"
        }
    };
    tx.execute(
        "INSERT INTO pool_changes (at, who, action, what, reason, token) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&at, &who, &action, &thing_name, &reason, &token],
    )
    .await?;
    tx.commit().await?;
    Ok(Ok(()))
}

impl Columns for Row {
    type Error = tokio_postgres::Error;

    fn text(&self, i: usize) -> Result<Option<String>, tokio_postgres::Error> {
        self.try_get(i)
    }

    fn int(&self, i: usize) -> Result<Option<i64>, tokio_postgres::Error> {
        self.try_get(i)
    }
}

impl Journal for PostgresJournal {
    fn on_notice(&self, notice: Notice) {
        *self.notice.lock().unwrap_or_else(|p| p.into_inner()) = Some(notice);
    }

    fn register_pool(&self, entries: &[PoolRecord]) -> Result<PoolStatus, JournalError> {
        retrying!(self, |c| register_in(c, entries))?.map_err(|m| self.refused(m))?;
        self.pool_status()
    }

    fn recover(&self) -> Result<u64, JournalError> {
        retrying!(self, |c| recover_in(c, &self.process))
    }

    fn heartbeat(&self) -> Result<(), JournalError> {
        retrying!(self, |c| c.execute(
            "UPDATE attempts SET heartbeat = now() WHERE owner = $1 AND result = 'running'",
            &[&self.process.owner],
        ))
        .map(drop)
    }

    fn begin_attempt(&self, station: &str, port: &str, profile: &str) -> Result<i64, JournalError> {
        // The token makes a repeat (after an answer lost with the connection) find the row
        // the first try inserted instead of opening a second attempt.
        let token = self.token();
        let tool = format!("atprov {}", env!("CARGO_PKG_VERSION"));
        let insert = format!(
            "INSERT INTO attempts (station, port, started_at, tool, profile, owner, heartbeat, line, token)
             VALUES ($1, $2, {SERVER_NOW}, $3, $4, $5, now(), $6, $7) ON CONFLICT (token) DO NOTHING"
        );
        retrying!(self, |c| async {
            c.execute(
                &insert,
                &[
                    &station,
                    &port,
                    &tool,
                    &profile,
                    &self.process.owner,
                    &self.process.line,
                    &token,
                ],
            )
            .await?;
            let row = c
                .query_one("SELECT id FROM attempts WHERE token = $1", &[&token])
                .await?;
            Ok(row.get::<_, i64>(0))
        })
    }

    fn allocate(&self, attempt: i64, unit: &UnitIdentity) -> Result<Allocation, AllocateError> {
        retrying!(self, |c| allocate_in(c, attempt, unit))?.into_result()
    }

    fn add_assigned(
        &self,
        attempt: i64,
        unit: &UnitIdentity,
        record: &PoolRecord,
    ) -> Result<Allocation, JournalError> {
        let credential = retrying!(self, |c| add_assigned_in(c, attempt, unit, record))?;
        Ok(Allocation {
            credential,
            record: record.clone(),
            again: false,
        })
    }

    fn reject(&self, credential: i64, reason: &str) -> Result<(), JournalError> {
        retrying!(self, |c| c.execute(
            "UPDATE credentials SET state = 'rejected', unit = NULL, note = $1 WHERE id = $2",
            &[&reason, &credential],
        ))
        .map(drop)
    }

    fn finish_attempt(&self, attempt: i64, outcome: &Outcome) -> Result<(), JournalError> {
        let stages = outcome.stages_text();
        retrying!(self, |c| finish_in(c, attempt, outcome, &stages))
    }

    fn units_passed(&self) -> Result<u64, JournalError> {
        retrying!(self, |c| c.query_one(
            "SELECT COUNT(DISTINCT unit) FROM attempts WHERE result = 'pass'",
            &[],
        ))
        .map(|r| r.get::<_, i64>(0) as u64)
    }

    fn pool_status(&self) -> Result<PoolStatus, JournalError> {
        retrying!(self, |c| status_of(&*c))
    }

    fn pool_entries(&self) -> Result<Vec<PoolEntry>, JournalError> {
        self.read_all(POOL_ENTRIES_QUERY, pool_entry)
    }

    fn release(&self, thing_name: &str, who: &str, reason: &str) -> Result<(), JournalError> {
        self.by_hand(ByHand::Release, thing_name, who, reason)
    }

    fn revoke(&self, thing_name: &str, who: &str, reason: &str) -> Result<(), JournalError> {
        self.by_hand(ByHand::Revoke, thing_name, who, reason)
    }

    fn record_change(
        &self,
        who: &str,
        action: &str,
        what: &str,
        reason: &str,
    ) -> Result<(), JournalError> {
        let token = self.token();
        let insert = format!(
            "INSERT INTO pool_changes (at, who, action, what, reason, token)
             VALUES ({SERVER_NOW}, $1, $2, $3, $4, $5) ON CONFLICT (token) DO NOTHING"
        );
        retrying!(self, |c| c
            .execute(&insert, &[&who, &action, &what, &reason, &token]))
        .map(drop)
    }

    fn pool_changes(&self) -> Result<Vec<PoolChange>, JournalError> {
        self.read_all(POOL_CHANGES_QUERY, pool_change)
    }

    fn record_event(
        &self,
        at: &str,
        station: &str,
        event: &str,
        json: &str,
    ) -> Result<(), JournalError> {
        // Stamped when it happened (by the PC that saw it), not when the writer got to it.
        let token = self.token();
        retrying!(self, |c| c.execute(
            "INSERT INTO events (at, station, event, data, token)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token) DO NOTHING",
            &[&at, &station, &event, &json, &token]
        ))
        .map(drop)
    }

    fn report(&self) -> Result<Vec<ReportRow>, JournalError> {
        self.read_all(REPORT_QUERY, report_row)
    }
}

impl PostgresJournal {
    /// Every row `query` gives, each mapped by `row`.
    fn read_all<T>(
        &self,
        query: &str,
        row: fn(&Row) -> Result<T, tokio_postgres::Error>,
    ) -> Result<Vec<T>, JournalError> {
        retrying!(self, READ_ALL_TIMEOUT, |c| c.query(query, &[]))?
            .iter()
            .map(row)
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// A release or revocation, recorded with who and why (see [`change_in`]).
    fn by_hand(
        &self,
        change: ByHand,
        thing_name: &str,
        who: &str,
        reason: &str,
    ) -> Result<(), JournalError> {
        let token = self.token();
        retrying!(self, |c| change_in(
            c, change, thing_name, who, reason, &token
        ))?
        .map_err(|m| self.refused(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_never_carries_the_password() {
        for url in [
            "postgresql://atprov:s3cret@127.0.0.1:5432/journal",
            "postgresql://atprov@127.0.0.1:5432/journal?password=s3cret",
        ] {
            let e = Target::parse(url).unwrap_err();
            assert!(e.contains("ATPROV_JOURNAL_PASSWORD"), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        let t = Target::parse("postgresql://atprov@127.0.0.1:5499/journal").unwrap();
        assert_eq!(t.config.get_ports(), &[5499]);
        assert_eq!(t.config.get_dbname(), Some("journal"));
        let e = Target::parse("postgresql://127.0.0.1/journal").unwrap_err();
        assert!(e.contains("name the database user"), "{e}");
        let e = Target::parse("postgresql://u@h/j?sslmode=require").unwrap_err();
        assert!(e.contains("sslrootcert=FILE"), "{e}");
        let t = Target::parse("postgresql://u@h/j?sslrootcert=/ca.pem").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.root.as_deref(), Some(Path::new("/ca.pem")));
    }

    #[test]
    fn a_refused_url_never_shows_a_password() {
        assert_eq!(
            redact_url("pg://u:hunter2@h:5432/db?sslmode=require&Password=x&passfile=y"),
            "pg://u:***@h:5432/db?sslmode=require&Password=***&passfile=***"
        );
        assert_eq!(redact_url("postgresql://u@h/db"), "postgresql://u@h/db");
        let e = Target::parse("postgresql://u@h/db?Password=hunter2").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let e = crate::factory::journal::Location::parse("pg://u:hunter2@h/db", None).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("postgresql://"), "{e}");
    }

    #[test]
    fn pgpass_lines_match_as_libpq_reads_them() {
        let text = "# comment\nother:5432:*:atprov:nope\n127.0.0.1:5499:journal:atprov:pa\\:ss\n*:*:*:*:fallback\n";
        assert_eq!(
            pgpass_lookup(text, ["127.0.0.1", "5499", "journal", "atprov"]).as_deref(),
            Some("pa:ss")
        );
        assert_eq!(
            pgpass_lookup(text, ["db", "1", "x", "y"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_lookup("h:1:d:u:p\n", ["h", "2", "d", "u"]), None);
    }
}
