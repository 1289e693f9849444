//! The embedded store: one SQLite file, shared safely by several processes.
//!
//! Several `custos run` proxies may share a data directory and so append to the same file at
//! once. The file is in WAL mode (readers never block the writer), every commit is synced
//! (`synchronous=FULL`), and every write transaction starts with `BEGIN IMMEDIATE`, which takes
//! the file's write lock before reading anything: the chain's head is read inside that lock,
//! never from a cache, so two processes can never chain two events to the same predecessor.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use custos_core::finding::kinds;
use custos_core::{Agent, AgentId, Digest, EventKind, Finding, NewEvent, Severity, ToolDescriptor, ToolRef};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, Row, TransactionBehavior};
use serde_json::json;

use crate::approvals::{ApprovalOutcome, ApprovalQuery, ApprovalRecord, ApprovalWrite};
use crate::chain::{self, Batch, Cell, CellRef, RowRef, VerifyReport};
use crate::credentials::{CredentialUse, SigningKeyRecord, StoredSecret};
use crate::error::StoreError;
use crate::location::{DbLocation, PgTarget};
use crate::pg::{self, PgConn};
use crate::pins::{borrowed_from, change_summary, Resemblance, ToolPin};
use crate::sql::{args, Arg, DbError, Sql, Value};
use crate::store::{
    AgentKeyRecord, AgentRecord, AgentRegistry, ApprovalStore, CredentialStore, EventQuery, Store, StoredEvent,
    ToolPins, ToolRecord, ToolSighting, Write, WriteOutcome, WriteResult,
};
use lite::Lite;

/// The file name of the embedded store inside a data directory.
pub const DATABASE_FILE: &str = "custos.db";

/// The schema this code writes. A file with a newer version is refused, not misread.
///
/// Tables added since (agents, approvals, the credential tables, tool pins) are only ever added, with
/// `CREATE TABLE IF NOT EXISTS` on every read-write open, so an older file gains them and an
/// older custos still reads a newer file: neither needs a new version.
const SCHEMA_VERSION: i64 = 1;

/// How long to wait for another process's write transaction before failing a write. Commits are
/// short, so reaching this means a writer is stuck; failing lets the caller deny the call.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq      INTEGER PRIMARY KEY,
    hash     TEXT NOT NULL,
    body     TEXT NOT NULL,
    kind     TEXT,
    time_ms  INTEGER,
    agent    TEXT,
    run      TEXT,
    step     INTEGER,
    tool     TEXT,
    decision TEXT
);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind);
CREATE INDEX IF NOT EXISTS events_time ON events (time_ms);
CREATE INDEX IF NOT EXISTS events_agent ON events (agent);
CREATE INDEX IF NOT EXISTS events_run ON events (run);
CREATE INDEX IF NOT EXISTS events_tool ON events (tool);
CREATE INDEX IF NOT EXISTS events_decision ON events (decision);
CREATE TABLE IF NOT EXISTS agents (
    id         TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    groups     TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS agent_keys (
    key_id     TEXT PRIMARY KEY,
    agent      TEXT NOT NULL,
    hash       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE INDEX IF NOT EXISTS agent_keys_agent ON agent_keys (agent);
CREATE TABLE IF NOT EXISTS tools (
    tool          TEXT PRIMARY KEY,
    digest        TEXT NOT NULL,
    descriptor    TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    id         TEXT PRIMARY KEY,
    digest     TEXT NOT NULL,
    status     TEXT NOT NULL,
    agent      TEXT NOT NULL,
    run        TEXT NOT NULL,
    step       INTEGER NOT NULL,
    tool       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    request    TEXT NOT NULL,
    decided_by TEXT,
    decided_ms INTEGER,
    reason     TEXT,
    used_ms    INTEGER
);
CREATE INDEX IF NOT EXISTS approvals_digest ON approvals (digest);
CREATE INDEX IF NOT EXISTS approvals_created ON approvals (created_ms);
CREATE TABLE IF NOT EXISTS secrets (
    name        TEXT PRIMARY KEY,
    sealed      BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS signing_keys (
    kid              TEXT PRIMARY KEY,
    algorithm        TEXT NOT NULL,
    sealed_private   BLOB NOT NULL,
    public_jwk       TEXT NOT NULL,
    created_ms       INTEGER NOT NULL,
    retired_ms       INTEGER,
    publish_until_ms INTEGER
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti        TEXT PRIMARY KEY,
    revoked_ms INTEGER NOT NULL,
    expires_ms INTEGER
);
CREATE INDEX IF NOT EXISTS revoked_tokens_expires ON revoked_tokens (expires_ms);
CREATE TABLE IF NOT EXISTS tool_pins (
    tool           TEXT PRIMARY KEY,
    digest         TEXT NOT NULL,
    descriptor     TEXT NOT NULL,
    pinned_ms      INTEGER NOT NULL,
    source         TEXT NOT NULL,
    pinned_by      TEXT NOT NULL,
    flagged_digest TEXT
);
CREATE TABLE IF NOT EXISTS shared_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS shared_state_expires ON shared_state (expires_ms);
CREATE TABLE IF NOT EXISTS credential_uses (
    credential  TEXT NOT NULL,
    server      TEXT NOT NULL,
    agent       TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    uses        INTEGER NOT NULL,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL,
    PRIMARY KEY (credential, server, agent)
);
";

/// Columns read for verification, in [`RawRow`] order (derived ones in
/// [`chain::DERIVED_COLUMNS`] order).
const VERIFY_SELECT: &str =
    "SELECT seq, hash, body, kind, time_ms, agent, run, step, tool, decision FROM events ORDER BY seq";

/// The audit log, the tool inventory and the state beside them, in one SQLite file or one
/// PostgreSQL database.
#[derive(Debug)]
pub struct SqlStore {
    conn: Conn,
    /// Named in every error, so an operator knows which file (or database URL) is at fault.
    path: PathBuf,
}

/// The connection behind a store.
#[derive(Debug)]
enum Conn {
    Sqlite(Connection),
    /// Behind a mutex: reads take `&self`, and the connection's calls take `&mut`. Never
    /// contended, since a store is used by one thread at a time.
    Postgres(Mutex<PgConn>),
}

/// The advisory lock every PostgreSQL write transaction takes first: one writer at a time,
/// across every replica, reads the chain's head and appends after it, as `BEGIN IMMEDIATE`
/// serializes the writers of one SQLite file. ("CHAIN" in ASCII; the migrations take another.)
const CHAIN_LOCK: i64 = 0x0043_4841_494e;

/// The statement that takes [`CHAIN_LOCK`].
fn chain_lock() -> String {
    format!("SELECT pg_advisory_xact_lock({CHAIN_LOCK})")
}

impl SqlStore {
    /// Opens the database at `at` for reading and writing: the file (created if needed; its
    /// directory must exist), or the PostgreSQL database (its schema migrated).
    ///
    /// Refuses a file or database that is not a Custos audit database or was written by a
    /// newer Custos.
    pub fn open(at: impl Into<DbLocation>) -> Result<Self, StoreError> {
        match at.into() {
            DbLocation::File(path) => Self::open_file(&path),
            DbLocation::Postgres(pg) => Self::connect(&pg, false),
        }
    }

    /// Opens an existing database for reading only (`audit query`, `audit verify`); writes fail.
    pub fn open_read_only(at: impl Into<DbLocation>) -> Result<Self, StoreError> {
        match at.into() {
            DbLocation::File(path) => Self::open_file_read_only(&path),
            DbLocation::Postgres(pg) => Self::connect(&pg, true),
        }
    }

    /// Connects to a PostgreSQL database; read-write migrates its schema first, read-only
    /// makes every transaction of the session read-only and only checks the schema version.
    fn connect(target: &PgTarget, read_only: bool) -> Result<Self, StoreError> {
        let label = PathBuf::from(&target.url);
        let open = |reason: String| StoreError::Open { path: label.clone(), reason };
        let url = with_password(&target.url, target.password.as_deref());
        let mut pg = PgConn::connect(&url, target.connect_timeout).map_err(|e| open(e.to_string()))?;
        if read_only {
            pg.batch("SET default_transaction_read_only = on").map_err(|e| open(e.to_string()))?;
        } else {
            pg::migrate(&mut pg).map_err(|e| match e {
                pg::MigrateError::Newer { found, known } => {
                    StoreError::SchemaTooNew { path: label.clone(), found, supported: known }
                }
                pg::MigrateError::Db(e) => open(format!("cannot migrate the schema: {e}")),
            })?;
        }
        let store = Self { conn: Conn::Postgres(Mutex::new(pg)), path: label };
        match store.schema_version()? {
            Some(found) => store.check_version(found)?,
            None => return Err(store.corrupt("no schema version: not a custos audit database")),
        }
        Ok(store)
    }

    fn open_file(path: &Path) -> Result<Self, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| open_error(path, e))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(|e| open_error(path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path: path.to_owned(),
                reason: format!("cannot use write-ahead logging (journal mode stays `{mode}`)"),
            });
        }
        // In WAL mode, FULL syncs the log on every commit: a committed event survives power loss.
        conn.pragma_update(None, "synchronous", "FULL").map_err(|e| open_error(path, e))?;
        let mut store = Self { conn: Conn::Sqlite(conn), path: path.to_owned() };
        store.migrate()?;
        Ok(store)
    }

    fn open_file_read_only(path: &Path) -> Result<Self, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| open_error(path, e))?;
        let store = Self { conn: Conn::Sqlite(conn), path: path.to_owned() };
        match store.schema_version()? {
            Some(found) => store.check_version(found)?,
            None => return Err(store.corrupt("no schema version: not a custos audit database")),
        }
        Ok(store)
    }

    /// The file this store reads and writes, or for PostgreSQL its URL (without a password), as
    /// errors name it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the schema in a new file, or checks the version of an existing one.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = &self.path;
        let Conn::Sqlite(conn) = &mut self.conn else { return Ok(()) };
        // IMMEDIATE: two processes opening a new file at once must not both create it.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| open_error(path, e))?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            .map_err(|e| open_error(path, e))?;
        let found = read_version(&mut Lite(&tx), path)?;
        if let Some(found) = found {
            check_version(path, found)?;
        }
        tx.execute_batch(SCHEMA).map_err(|e| open_error(path, e))?;
        if found.is_none() {
            tx.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?1)", [SCHEMA_VERSION.to_string()])
                .map_err(|e| open_error(path, e))?;
        }
        tx.commit().map_err(|e| open_error(path, e))
    }

    /// The schema version recorded in the database; `None` when there is no `meta` table or
    /// row.
    fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        if let Conn::Sqlite(conn) = &self.conn {
            // Asked of rusqlite itself: a file that is not a database must read as damaged.
            let has_meta = conn
                .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'")
                .and_then(|mut stmt| stmt.exists([]))
                .map_err(|e| open_error(&self.path, e))?;
            if !has_meta {
                return Ok(None);
            }
        }
        self.reading(|db, path| {
            let open = |e: DbError| StoreError::Open { path: path.to_owned(), reason: e.to_string() };
            if !db.table_exists("meta").map_err(open)? {
                return Ok(None);
            }
            read_version(db, path)
        })
    }

    fn check_version(&self, found: i64) -> Result<(), StoreError> {
        check_version(&self.path, found)
    }

    fn corrupt(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt { path: self.path.clone(), reason: reason.into() }
    }

    /// Runs `f` in one write transaction and commits it durably (synced to disk; on
    /// PostgreSQL, flushed by the server): SQLite's `BEGIN IMMEDIATE`, or PostgreSQL's
    /// transaction under [`CHAIN_LOCK`]. Rolled back when `f` fails.
    pub(crate) fn in_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Sql, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.in_transaction_under(&chain_lock(), f)
    }

    /// [`in_transaction`](Self::in_transaction) under `locks` (see
    /// [`transaction_under`](Self::transaction_under)) in place of [`CHAIN_LOCK`].
    pub(crate) fn in_transaction_under<T>(
        &mut self,
        locks: &str,
        f: impl FnOnce(&mut dyn Sql, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction_under(locks, |db, path| f(db, path).map(Some)).and_then(|value| {
            value.ok_or_else(|| StoreError::Internal { reason: "a transaction was rolled back unasked".into() })
        })
    }

    /// Runs `f` in one write transaction, committed when it returns `Some`, rolled back when it
    /// returns `None` or fails.
    fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Sql, &Path) -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.transaction_under(&chain_lock(), f)
    }

    /// [`transaction`](Self::transaction), with `locks` (statements taking PostgreSQL advisory
    /// locks, run in one round trip after `BEGIN`) in place of [`CHAIN_LOCK`]. SQLite has one
    /// writer at a time whatever the locks.
    pub(crate) fn transaction_under<T>(
        &mut self,
        locks: &str,
        f: impl FnOnce(&mut dyn Sql, &Path) -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let path = &self.path;
        match &mut self.conn {
            Conn::Sqlite(conn) => {
                let tx =
                    conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| write_error(path, e))?;
                // Dropping `tx` on an error rolls it back.
                let value = f(&mut Lite(&tx), path)?;
                match value {
                    Some(_) => tx.commit().map_err(|e| write_error(path, e))?,
                    None => tx.rollback().map_err(|e| write_error(path, e))?,
                }
                Ok(value)
            }
            Conn::Postgres(pg) => {
                let pg = pg.get_mut().unwrap_or_else(PoisonError::into_inner);
                // A connection that died (a server restart) is replaced here, never inside a
                // transaction: the store fails closed while the server is away and serves
                // again once it is back.
                pg.ensure_open().map_err(|e| write_error(path, e))?;
                pg.batch(&format!("BEGIN; {locks}")).map_err(|e| write_error(path, e))?;
                let value = f(pg, path);
                let end = if matches!(value, Ok(Some(_))) { "COMMIT" } else { "ROLLBACK" };
                let ended = pg.batch(end);
                let value = value?;
                ended.map_err(|e| write_error(path, e))?;
                Ok(value)
            }
        }
    }

    /// Runs `f` on the connection, outside any transaction this store opened.
    pub(crate) fn reading<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.conn {
            Conn::Sqlite(conn) => f(&mut Lite(conn), &self.path),
            Conn::Postgres(pg) => {
                let mut pg = pg.lock().unwrap_or_else(PoisonError::into_inner);
                pg.ensure_open().map_err(|e| read_error(&self.path, e))?;
                f(&mut *pg, &self.path)
            }
        }
    }
}

impl Store for SqlStore {
    fn append(&mut self, events: &[NewEvent]) -> Result<Vec<StoredEvent>, StoreError> {
        self.in_transaction(|db, path| append_in(db, path, events))
    }

    fn observe_tools(
        &mut self,
        tools: &[ToolDescriptor],
        template: &NewEvent,
    ) -> Result<Vec<ToolSighting>, StoreError> {
        self.in_transaction(|db, path| observe_in(db, path, tools, template))
    }

    fn write_batch(&mut self, writes: &[Write]) -> Result<Vec<WriteResult>, StoreError> {
        // Nearly every batch has no failing write: apply them all in one transaction without
        // savepoints, whose statement journal costs as much as the writes themselves. If one
        // write fails, that transaction is rolled back whole (nothing of it was committed) and
        // the batch is replayed with a savepoint per write, so the failure stays its own.
        let whole = self.transaction(|db, path| {
            let applied: Result<Vec<WriteOutcome>, StoreError> = writes.iter().map(|w| apply(db, path, w)).collect();
            Ok(applied.ok())
        })?;
        if let Some(outcomes) = whole {
            return Ok(outcomes.into_iter().map(Ok).collect());
        }
        self.in_transaction(|db, path| {
            let mut results = Vec::with_capacity(writes.len());
            for write in writes {
                // A savepoint per write: one write's failure rolls back only that write, and
                // the other callers in the batch still get their events recorded.
                db.batch("SAVEPOINT custos_write").map_err(|e| write_error(path, e))?;
                let result = apply(db, path, write);
                let end = if result.is_ok() {
                    "RELEASE custos_write"
                } else {
                    "ROLLBACK TO custos_write; RELEASE custos_write"
                };
                db.batch(end).map_err(|e| write_error(path, e))?;
                // SQLite rolls a whole transaction back on some errors (disk full, I/O); going
                // on would run the rest outside any transaction.
                if db.transaction_lost() {
                    return Err(write_error_msg(path, "the transaction was rolled back"));
                }
                results.push(result);
            }
            Ok(results)
        })
    }

    fn query(&self, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.select_events(q, false)
    }

    fn last(&self, q: &EventQuery) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self.select_events(&EventQuery { limit: Some(1), ..q.clone() }, true)?.pop())
    }

    fn tools(&self) -> Result<Vec<ToolRecord>, StoreError> {
        self.reading(|db, path| tools_in(db, path, None, read_error))
    }

    fn verify(&self) -> Result<VerifyReport, StoreError> {
        // One statement is one read transaction: the walk sees a consistent snapshot while other
        // processes keep appending, and rows are read a few at a time, never all at once.
        match &self.conn {
            Conn::Sqlite(conn) => {
                let mut stmt = conn.prepare(VERIFY_SELECT).map_err(|e| read_error(&self.path, e))?;
                let rows = stmt.query([]).map_err(|e| read_error(&self.path, e))?;
                chain::verify_rows(VerifyRows(rows)).map_err(|e| read_error(&self.path, e))
            }
            Conn::Postgres(pg) => {
                let mut pg = pg.lock().unwrap_or_else(PoisonError::into_inner);
                pg.ensure_open().map_err(|e| read_error(&self.path, e))?;
                let rows = pg.stream(VERIFY_SELECT, &[], VERIFY_ROWS_AHEAD).map_err(|e| read_error(&self.path, e))?;
                chain::verify_rows(rows.map(|row| row.and_then(raw_row))).map_err(|e| read_error(&self.path, e))
            }
        }
    }

    fn head(&self) -> Result<Option<(u64, Digest)>, StoreError> {
        self.reading(|db, path| head_in(db, path, read_error))
    }
}

impl AgentRegistry for SqlStore {
    fn issue_key(&mut self, agent: &Agent, key: &AgentKeyRecord, event: &NewEvent) -> Result<(), StoreError> {
        self.in_transaction(|db, path| {
            agents::issue_key_in(db, path, agent, key)?;
            append_in(db, path, std::slice::from_ref(event)).map(|_| ())
        })
    }

    fn revoke(&mut self, agent: &AgentId, key_id: Option<&str>, event: &NewEvent) -> Result<Vec<String>, StoreError> {
        self.in_transaction(|db, path| {
            let revoked = agents::revoke_in(db, path, agent, key_id, event.time_ms)?;
            if !revoked.is_empty() {
                let mut event = event.clone();
                if let Some(detail) = event.detail.as_object_mut() {
                    detail.insert("key_ids".into(), json!(revoked));
                }
                append_in(db, path, std::slice::from_ref(&event))?;
            }
            Ok(revoked)
        })
    }

    fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.reading(|db, path| agents::agents_in(db, path, None))
    }

    fn find_agent(&self, id: &AgentId) -> Result<Option<AgentRecord>, StoreError> {
        Ok(self.reading(|db, path| agents::agents_in(db, path, Some(&id.0)))?.into_iter().next())
    }

    fn agent_keys(&self) -> Result<Vec<AgentKeyRecord>, StoreError> {
        self.reading(|db, path| agents::keys_in(db, path, None))
    }

    fn find_key(&self, key_id: &str) -> Result<Option<AgentKeyRecord>, StoreError> {
        Ok(self.reading(|db, path| agents::keys_in(db, path, Some(key_id)))?.into_iter().next())
    }
}

impl ApprovalStore for SqlStore {
    fn write_approval(&mut self, write: &ApprovalWrite) -> Result<ApprovalOutcome, StoreError> {
        self.in_transaction(|db, path| approvals::write_in(db, path, write))
    }

    fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        self.reading(|db, path| approvals::get_in(db, path, id, read_error))
    }

    fn approvals(&self, q: &ApprovalQuery) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.reading(|db, path| approvals::query_in(db, path, q, read_error))
    }
}

impl CredentialStore for SqlStore {
    fn put_secret(&mut self, secret: &StoredSecret, event: &NewEvent) -> Result<(), StoreError> {
        self.in_transaction(|db, path| credentials::put_secret_in(db, path, secret, event))
    }

    fn remove_secret(&mut self, name: &str, event: &NewEvent) -> Result<bool, StoreError> {
        self.in_transaction(|db, path| credentials::remove_secret_in(db, path, name, event))
    }

    fn secret(&self, name: &str) -> Result<Option<StoredSecret>, StoreError> {
        Ok(self.reading(|db, path| credentials::secrets_in(db, path, Some(name), read_error))?.into_iter().next())
    }

    fn secrets(&self) -> Result<Vec<StoredSecret>, StoreError> {
        self.reading(|db, path| credentials::secrets_in(db, path, None, read_error))
    }

    fn add_signing_key(
        &mut self,
        key: &SigningKeyRecord,
        publish_overlap_ms: i64,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        self.in_transaction(|db, path| credentials::add_signing_key_in(db, path, key, publish_overlap_ms, events))
    }

    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        self.reading(|db, path| credentials::signing_keys_in(db, path, read_error))
    }

    fn revoke_token(&mut self, jti: &str, expires_ms: Option<i64>, event: &NewEvent) -> Result<bool, StoreError> {
        self.in_transaction(|db, path| credentials::revoke_token_in(db, path, jti, expires_ms, event))
    }

    fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        self.reading(|db, path| credentials::is_token_revoked_in(db, path, jti, read_error))
    }

    fn credential_uses(&self) -> Result<Vec<CredentialUse>, StoreError> {
        self.reading(|db, path| credentials::credential_uses_in(db, path, read_error))
    }
}

impl ToolPins for SqlStore {
    fn pin_tool(
        &mut self,
        tool: &ToolRef,
        descriptor: &serde_json::Value,
        digest: &Digest,
        by: &str,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        self.in_transaction(|db, path| pins::pin_tool_in(db, path, tool, descriptor, digest, by, event))
    }

    fn accept_tool(&mut self, tool: &ToolRef, by: &str, event: &NewEvent) -> Result<ToolRecord, StoreError> {
        self.in_transaction(|db, path| pins::accept_tool_in(db, path, tool, by, event))
    }

    fn pinned_digest(&self, tool: &ToolRef) -> Result<Option<Digest>, StoreError> {
        self.reading(|db, path| pins::pinned_digest_in(db, path, tool))
    }

    fn pin(&self, tool: &ToolRef) -> Result<Option<ToolPin>, StoreError> {
        Ok(self.reading(|db, path| pins::pins_in(db, path, Some(&tool.to_string())))?.pop())
    }

    fn pins(&self) -> Result<Vec<ToolPin>, StoreError> {
        self.reading(|db, path| pins::pins_in(db, path, None))
    }
}

impl SqlStore {
    /// The events matching `q` in `seq` order, or from the newest back.
    fn select_events(&self, q: &EventQuery, newest_first: bool) -> Result<Vec<StoredEvent>, StoreError> {
        let (server_from, server_to) = match q.tool.as_deref().and_then(|t| t.strip_suffix('/')) {
            Some(server) => (format!("{server}/"), format!("{server}0")),
            None => (String::new(), String::new()),
        };
        let text = Arg::Text;
        let mut filters: Vec<(&str, Arg<'_>)> = Vec::new();
        if let Some(agent) = &q.agent {
            filters.push(("agent = ?", text(agent)));
        }
        if let Some(run) = &q.run {
            filters.push(("run = ?", text(run)));
        }
        if let Some(decision) = &q.decision {
            filters.push(("decision = ?", text(decision)));
        }
        if let Some(kind) = q.kind {
            filters.push(("kind = ?", text(kind.as_str())));
        }
        if let Some(tool) = &q.tool {
            if tool.ends_with('/') {
                // A range rather than LIKE: it uses the index and needs no escaping of `%` or
                // `_` in server names. '0' is the character after '/'.
                filters.push(("tool >= ?", text(&server_from)));
                filters.push(("tool < ?", text(&server_to)));
            } else {
                filters.push(("tool = ?", text(tool)));
            }
        }
        if let Some(since) = q.since_ms {
            filters.push(("time_ms >= ?", Arg::Int(since)));
        }
        if let Some(after) = q.after_seq {
            // Past i64::MAX nothing can match; saturating keeps that true.
            let after = i64::try_from(after).unwrap_or(i64::MAX);
            filters.push(("seq > ?", Arg::Int(after)));
        }
        let mut sql = String::from("SELECT seq, hash, body FROM events");
        let (clauses, mut args): (Vec<&str>, Vec<Arg<'_>>) = filters.into_iter().unzip();
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(if newest_first { " ORDER BY seq DESC" } else { " ORDER BY seq" });
        if let Some(limit) = q.limit {
            sql.push_str(" LIMIT ?");
            args.push(Arg::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
        }

        let rows = self.reading(|db, path| db.query(&sql, &args).map_err(|e| read_error(path, e)))?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let (seq, hash, body) = (|| Ok::<_, DbError>((row.int(0)?, row.text(1)?, row.text(2)?)))()
                .map_err(|e| read_error(&self.path, e))?;
            events.push(self.stored_event(seq, &hash, &body)?);
        }
        Ok(events)
    }

    /// Rebuilds a stored event from its row, trusting the body (not the derived columns).
    fn stored_event(&self, seq: i64, hash: &str, body: &str) -> Result<StoredEvent, StoreError> {
        let unreadable =
            |why: String| self.corrupt(format!("event {seq} is unreadable ({why}); run `custos audit verify`"));
        let decoded = chain::decode(body).map_err(|e| unreadable(e.to_string()))?;
        Ok(StoredEvent {
            seq: u64::try_from(seq).map_err(|_| unreadable("negative sequence number".into()))?,
            prev: decoded.prev,
            hash: hash.parse().map_err(|_| unreadable("malformed digest".into()))?,
            event: decoded.event,
        })
    }
}

/// One write of a batch, inside the caller's write transaction.
fn apply(db: &mut dyn Sql, path: &Path, write: &Write) -> Result<WriteOutcome, StoreError> {
    match write {
        Write::Append(events) => append_in(db, path, events).map(WriteOutcome::Appended),
        Write::ObserveTools { tools, template } => observe_in(db, path, tools, template).map(WriteOutcome::Observed),
        Write::Approval(write) => approvals::write_in(db, path, write).map(|o| WriteOutcome::Approval(Box::new(o))),
    }
}

/// Reads the chain's head on `conn`: inside a write transaction when appending.
fn head_in(
    db: &mut dyn Sql,
    path: &Path,
    error: fn(&Path, DbError) -> StoreError,
) -> Result<Option<(u64, Digest)>, StoreError> {
    // Cached: every append reads the head, and preparing costs more than the read.
    let head = db
        .query_opt("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", &[])
        .and_then(|row| row.map(|r| Ok((r.int(0)?, r.text(1)?))).transpose())
        .map_err(|e| error(path, e))?;
    let Some((seq, hash)) = head else { return Ok(None) };
    let corrupt = |what: &str| StoreError::Corrupt {
        path: path.to_owned(),
        reason: format!("the last event ({seq}) has {what}; run `custos audit verify`"),
    };
    let seq = u64::try_from(seq).map_err(|_| corrupt("a negative sequence number"))?;
    let hash = hash.parse().map_err(|_| corrupt("a malformed digest"))?;
    Ok(Some((seq, hash)))
}

/// Appends `events` after the head, inside the caller's write transaction.
///
/// The one place events enter the chain: every write path (appends, tool sightings, approvals,
/// the registry, credentials) comes through here, so the projections fed from the events
/// themselves (the credential use counts) are kept here, in the same transaction.
fn append_in(db: &mut dyn Sql, path: &Path, events: &[NewEvent]) -> Result<Vec<StoredEvent>, StoreError> {
    // INVARIANT: the caller holds the write lock (BEGIN IMMEDIATE), so no other process can
    // append between reading the head and inserting after it.
    let (mut seq, mut prev) = head_in(db, path, write_error)?.unwrap_or((0, Digest::ZERO));
    let mut stored = Vec::with_capacity(events.len());
    for event in events {
        seq = seq.checked_add(1).ok_or_else(|| write_error_msg(path, "the log is full"))?;
        let enc = chain::encode(seq, &prev, event)?;
        let [kind, time_ms, agent, run, step, tool, decision] = enc.columns.each_ref().map(to_arg);
        let row_seq = i64::try_from(seq).map_err(|_| write_error_msg(path, "the log is full"))?;
        db.execute(
            "INSERT INTO events (seq, hash, body, kind, time_ms, agent, run, step, tool, decision)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            &[
                Arg::Int(row_seq),
                Arg::Text(&enc.hash.to_hex()),
                Arg::Text(&enc.body),
                kind,
                time_ms,
                agent,
                run,
                step,
                tool,
                decision,
            ],
        )
        .map_err(|e| write_error(path, e))?;
        credentials::project_uses(db, path, event)?;
        stored.push(StoredEvent { seq, prev, hash: enc.hash, event: event.clone() });
        prev = enc.hash;
    }
    Ok(stored)
}

/// Records one `tools/list` result in the inventory and appends events for new and changed
/// tools, and checks each tool against its pin, inside the caller's write transaction.
fn observe_in(
    db: &mut dyn Sql,
    path: &Path,
    tools: &[ToolDescriptor],
    template: &NewEvent,
) -> Result<Vec<ToolSighting>, StoreError> {
    let now = template.time_ms;
    let mut sightings = Vec::with_capacity(tools.len());
    let mut events = Vec::new();
    // The pins of each server listed, read when one of its tools has none of its own.
    let mut server_pins: std::collections::HashMap<&str, pins::ServerPins> = std::collections::HashMap::new();
    for tool in tools {
        let name = tool.tool.to_string();
        let descriptor = serde_json::to_string(&tool.raw).map_err(|e| StoreError::InvalidEvent {
            reason: format!("descriptor of `{name}` cannot be stored: {e}"),
        })?;
        let recorded = db
            .query_opt("SELECT digest FROM tools WHERE tool = ?1", &args![&name])
            .and_then(|row| row.map(|r| r.text(0)).transpose())
            .map_err(|e| write_error(path, e))?;
        let event = |kind: EventKind, detail: serde_json::Value| NewEvent {
            kind,
            tool: Some(tool.tool.clone()),
            decision: None,
            detail,
            ..template.clone()
        };
        let (sighting, mut logged): (ToolSighting, Option<NewEvent>) = match recorded {
            None => {
                db.execute(
                    "INSERT INTO tools (tool, digest, descriptor, first_seen_ms, last_seen_ms)
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                    &args![&name, &tool.digest.to_hex(), &descriptor, now],
                )
                .map_err(|e| write_error(path, e))?;
                let seen = event(EventKind::ToolSeen, json!({"digest": tool.digest.to_hex(), "descriptor": tool.raw}));
                (ToolSighting::New, Some(seen))
            }
            Some(recorded) if recorded == tool.digest.to_hex() => {
                // The later time: another process may have recorded a later sighting already.
                db.execute(
                    "UPDATE tools SET last_seen_ms = CASE WHEN last_seen_ms > ?2 THEN last_seen_ms ELSE ?2 END
                     WHERE tool = ?1",
                    &args![&name, now],
                )
                .map_err(|e| write_error(path, e))?;
                (ToolSighting::Unchanged, None)
            }
            Some(recorded) => {
                let previous: Digest = recorded.parse().map_err(|_| StoreError::Corrupt {
                    path: path.to_owned(),
                    reason: format!("inventory entry `{name}` has a malformed digest"),
                })?;
                db.execute(
                    "UPDATE tools SET digest = ?2, descriptor = ?3,
                         last_seen_ms = CASE WHEN last_seen_ms > ?4 THEN last_seen_ms ELSE ?4 END
                     WHERE tool = ?1",
                    &args![&name, &tool.digest.to_hex(), &descriptor, now],
                )
                .map_err(|e| write_error(path, e))?;
                let changed = event(
                    EventKind::ToolChanged,
                    json!({
                        "previous_digest": previous.to_hex(),
                        "digest": tool.digest.to_hex(),
                        "descriptor": tool.raw,
                    }),
                );
                (ToolSighting::Changed { previous }, Some(changed))
            }
        };
        // A second event for this tool: its first-sight pin, or a rug pull finding.
        let mut extra = None;
        let sighting = match pins::pin_state_in(db, path, &name)? {
            None => {
                let server = tool.tool.server();
                let known = match server_pins.entry(server) {
                    std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(pins::server_pins_in(db, path, server)?)
                    }
                };
                if let Some((resembled, how)) = known.resembled(tool.tool.name(), &tool.raw) {
                    // A possible rename: held to the pin of the tool it resembles, which it
                    // cannot match, until an operator accepts it.
                    pins::pin_borrowed_in(db, path, &name, resembled, &tool.digest, now)?;
                    let other = ToolRef::new(server, &resembled.name)
                        .map_err(|e| StoreError::InvalidEvent { reason: e.to_string() })?;
                    let finding = resemblance_finding(how, tool, &other, &resembled.descriptor, &resembled.digest);
                    let (pinned, text, pinned_descriptor) =
                        (resembled.digest, resembled.text.clone(), resembled.descriptor.clone());
                    known.add(tool.tool.name(), pinned, &text, &pinned_descriptor);
                    events.extend(logged);
                    events.push(event(EventKind::FindingRecorded, finding));
                    sightings.push(ToolSighting::Quarantined { pinned });
                    continue;
                }
                known.add(tool.tool.name(), tool.digest, &descriptor, &tool.raw);
                // Nothing to compare with: this listing becomes the pin, and the event that
                // records the listing says so rather than a second event.
                pins::pin_first_sight_in(db, path, &name, &tool.digest, &descriptor, now)?;
                match logged.as_mut().and_then(|e| e.detail.as_object_mut()) {
                    Some(detail) => {
                        detail.insert("pinned".into(), json!(true));
                    }
                    // Inventoried before pins existed, and unchanged since: no event to mark.
                    None => {
                        let detail = json!({"digest": tool.digest.to_hex(), "source": "first_sight", "by": ""});
                        extra = Some(event(EventKind::ToolPinned, detail));
                    }
                }
                sighting
            }
            Some(pin) if pin.digest == tool.digest => {
                if pin.flagged.is_some() {
                    // Back to the pin: a later change to the same digest is a new rug pull.
                    pins::set_flagged_in(db, path, &name, None)?;
                }
                sighting
            }
            Some(pin) => {
                // INVARIANT: one finding per digest that departs from the pin, however often a
                // server lists it; `flagged_digest` remembers the last one reported.
                if pin.flagged != Some(tool.digest) {
                    pins::set_flagged_in(db, path, &name, Some(&tool.digest))?;
                    let detail = match borrowed_from(&tool.tool, &pin.descriptor) {
                        // Still held to the pin of the tool it resembles, and listed otherwise.
                        Some(other) => {
                            let how = Resemblance::between(tool.tool.name(), &tool.raw, other.name(), &pin.descriptor)
                                .unwrap_or(Resemblance::Renamed);
                            resemblance_finding(how, tool, &other, &pin.descriptor, &pin.digest)
                        }
                        None => {
                            let evidence = format!("{name}: {}", change_summary(&pin.descriptor, &tool.raw));
                            let finding =
                                Finding::new(kinds::RUG_PULL, Severity::High, "descriptor_changed", &evidence);
                            with_digests(finding.detail("quarantined"), &pin.digest, &tool.digest)
                        }
                    };
                    extra = Some(event(EventKind::FindingRecorded, detail));
                }
                ToolSighting::Quarantined { pinned: pin.digest }
            }
        };
        events.extend(logged);
        events.extend(extra);
        sightings.push(sighting);
    }
    append_in(db, path, &events)?;
    Ok(sightings)
}

/// A `rug_pull` finding's detail: `tool` quarantined for resembling `other`, whose pinned
/// descriptor it is held to.
fn resemblance_finding(
    how: Resemblance,
    tool: &ToolDescriptor,
    other: &ToolRef,
    pinned: &serde_json::Value,
    pinned_digest: &Digest,
) -> serde_json::Value {
    let evidence = how.evidence(&tool.tool, other, pinned, &tool.raw);
    let finding = Finding::new(kinds::RUG_PULL, Severity::High, how.rule(), &evidence);
    let mut detail = with_digests(finding.detail("quarantined"), pinned_digest, &tool.digest);
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("resembles".into(), json!(other));
    }
    detail
}

/// A finding's detail with the pinned and the listed digest.
fn with_digests(mut detail: serde_json::Value, pinned: &Digest, listed: &Digest) -> serde_json::Value {
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("pinned_digest".into(), json!(pinned.to_hex()));
        obj.insert("digest".into(), json!(listed.to_hex()));
    }
    detail
}

/// The inventory joined with the pins, ordered by tool; only `tool` when given.
fn tools_in(
    db: &mut dyn Sql,
    path: &Path,
    only: Option<&str>,
    error: fn(&Path, DbError) -> StoreError,
) -> Result<Vec<ToolRecord>, StoreError> {
    // A database opened read-only may predate the pins table, and opening it read-only does not
    // add it: its tools are then simply unpinned.
    let pins = if pins::has_pins_table(db, path, error)? {
        "p.digest, p.descriptor FROM tools t LEFT JOIN tool_pins p ON p.tool = t.tool"
    } else {
        "NULL, NULL FROM tools t"
    };
    let filter = if only.is_some() { "WHERE t.tool = ?1" } else { "ORDER BY t.tool" };
    let sql = format!("SELECT t.tool, t.digest, t.descriptor, t.first_seen_ms, t.last_seen_ms, {pins} {filter}");
    let rows = match only {
        Some(tool) => db.query(&sql, &args![tool]),
        None => db.query(&sql, &[]),
    }
    .map_err(|e| error(path, e))?;
    let columns = |row: &crate::sql::Row| -> Result<_, DbError> {
        Ok((row.text(0)?, row.text(1)?, row.text(2)?, row.int(3)?, row.int(4)?, row.opt_text(5)?, row.opt_text(6)?))
    };
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        let (tool, digest, descriptor, first_seen_ms, last_seen_ms, pinned_digest, pinned_descriptor) =
            columns(row).map_err(|e| error(path, e))?;
        let bad = |what: &str| StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("inventory entry `{tool}` has {what}"),
        };
        let json = |text: &str, what: &str| serde_json::from_str(text).map_err(|_| bad(what));
        records.push(ToolRecord {
            tool: tool.parse().map_err(|_| bad("a malformed tool name"))?,
            digest: digest.parse().map_err(|_| bad("a malformed digest"))?,
            descriptor: json(&descriptor, "a descriptor that is not json")?,
            first_seen_ms,
            last_seen_ms,
            pinned_digest: pinned_digest
                .map(|d| d.parse().map_err(|_| bad("a malformed pinned digest")))
                .transpose()?,
            pinned_descriptor: pinned_descriptor
                .map(|d| json(&d, "a pinned descriptor that is not json"))
                .transpose()?,
        });
    }
    Ok(records)
}

/// The rows of [`VERIFY_SELECT`] for [`chain::verify_rows`], each cell taken as it is stored
/// (a tampered row may hold any type in any column) and copied straight from SQLite's row into
/// the batch.
struct VerifyRows<'stmt>(rusqlite::Rows<'stmt>);

impl chain::ReadRows for VerifyRows<'_> {
    type Error = rusqlite::Error;

    fn read_into(&mut self, batch: &mut Batch) -> rusqlite::Result<bool> {
        let Some(row) = self.0.next()? else {
            return Ok(false);
        };
        let cell = |i: usize| cell_ref(row, i);
        batch.push(RowRef {
            seq: row.get(0)?,
            hash: cell(1)?,
            body: cell(2)?,
            columns: [cell(3)?, cell(4)?, cell(5)?, cell(6)?, cell(7)?, cell(8)?, cell(9)?],
        });
        Ok(true)
    }
}

/// Cell `i` of `row`, borrowed. Text that is not UTF-8 fails as `row.get::<String>` would.
fn cell_ref<'r>(row: &'r Row<'_>, i: usize) -> rusqlite::Result<CellRef<'r>> {
    Ok(match row.get_ref(i)? {
        ValueRef::Null => CellRef::Null,
        ValueRef::Integer(n) => CellRef::Int(n),
        ValueRef::Text(bytes) => {
            CellRef::Text(std::str::from_utf8(bytes).map_err(|e| rusqlite::Error::Utf8Error(i, e))?)
        }
        ValueRef::Real(_) | ValueRef::Blob(_) => CellRef::Other,
    })
}

/// Rows a PostgreSQL verification reads ahead of the walk.
const VERIFY_ROWS_AHEAD: usize = 1024;

/// A row of [`VERIFY_SELECT`] read from PostgreSQL, each cell as stored.
fn raw_row(row: crate::sql::Row) -> Result<chain::RawRow, DbError> {
    let seq = row.int(0)?;
    let mut cells = row.0.into_iter().skip(1).map(|value| match value {
        Value::Null => Cell::Null,
        Value::Int(n) => Cell::Int(n),
        Value::Text(s) => Cell::Text(s),
        Value::Blob(_) | Value::Other => Cell::Other,
    });
    let mut next = || cells.next().ok_or_else(|| DbError::new("a verification row is missing columns"));
    Ok(chain::RawRow {
        seq,
        hash: next()?,
        body: next()?,
        columns: [next()?, next()?, next()?, next()?, next()?, next()?, next()?],
    })
}

/// `url` with `password` as its user's password, percent-encoded.
fn with_password(url: &str, password: Option<&str>) -> String {
    let Some(password) = password else { return url.to_owned() };
    let Some(rest) = url.strip_prefix("postgres://") else { return url.to_owned() };
    let encoded: String = password
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest.get(..authority_end).and_then(|a| a.rfind('@')) {
        Some(at) => format!("postgres://{}:{encoded}{}", rest.get(..at).unwrap_or(""), rest.get(at..).unwrap_or("")),
        None => format!("postgres://:{encoded}@{rest}"),
    }
}

fn to_arg(cell: &Cell) -> Arg<'_> {
    match cell {
        Cell::Null | Cell::Other => Arg::Null,
        Cell::Int(i) => Arg::Int(*i),
        Cell::Text(s) => Arg::Text(s),
    }
}

fn read_version(db: &mut dyn Sql, path: &Path) -> Result<Option<i64>, StoreError> {
    let value = db
        .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .and_then(|row| row.map(|r| r.text(0)).transpose())
        .map_err(|e| StoreError::Open { path: path.to_owned(), reason: e.to_string() })?;
    value
        .map(|v| {
            v.parse::<i64>().map_err(|_| StoreError::Corrupt {
                path: path.to_owned(),
                reason: format!("schema version `{v}` is not a number"),
            })
        })
        .transpose()
}

fn check_version(path: &Path, found: i64) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { path: path.to_owned(), found, supported: SCHEMA_VERSION });
    }
    if found < SCHEMA_VERSION {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("schema version {found} was never written by custos"),
        });
    }
    Ok(())
}

/// Classifies a failure while opening: a file that is not a database is damaged; anything else
/// (missing directory, permissions, locks) is an open failure.
fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt { path: path.to_owned(), reason: e.to_string() }
        }
        _ => StoreError::Open { path: path.to_owned(), reason: e.to_string() },
    }
}

fn write_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    write_error_msg(path, &e.to_string())
}

fn write_error_msg(path: &Path, reason: &str) -> StoreError {
    StoreError::Write { path: path.to_owned(), reason: reason.to_owned() }
}

fn read_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Read { path: path.to_owned(), reason: e.to_string() }
}

mod agents;
mod approvals;
mod credentials;
mod lite;
mod pins;
#[cfg(test)]
mod pins_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod verify_tests;
