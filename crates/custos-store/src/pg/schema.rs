//! The store's schema on PostgreSQL, and the versioned migrations that build it.
//!
//! The tables are those of the SQLite schema (`sqlite.rs`) in PostgreSQL's types: integers are
//! `BIGINT`, blobs `BYTEA`, and every text column `COLLATE "C"`, ordering by bytes as SQLite's
//! `BINARY` does (the store's prefix ranges, `tool >= 'srv/' AND tool < 'srv0'`, rely on it).
//!
//! Each version is applied once, in its own transaction, under a transaction-level advisory
//! lock, so replicas starting together neither race nor apply a version twice. A database that
//! a newer Custos migrated is refused rather than misread.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use super::PgConn;
use crate::sql::{Arg, DbError, Sql};

/// The advisory lock key that serializes migrations ("custos" in ASCII).
const MIGRATION_LOCK: i64 = 0x0000_6375_7374_6f73;

/// Version 1: the schema of `sqlite.rs`'s `SCHEMA_VERSION` 1.
const V1: &str = r#"
CREATE TABLE events (
    seq      BIGINT PRIMARY KEY,
    hash     TEXT COLLATE "C" NOT NULL,
    body     TEXT COLLATE "C" NOT NULL,
    kind     TEXT COLLATE "C",
    time_ms  BIGINT,
    agent    TEXT COLLATE "C",
    run      TEXT COLLATE "C",
    step     BIGINT,
    tool     TEXT COLLATE "C",
    decision TEXT COLLATE "C"
);
CREATE INDEX events_kind ON events (kind);
CREATE INDEX events_time ON events (time_ms);
CREATE INDEX events_agent ON events (agent);
CREATE INDEX events_run ON events (run);
CREATE INDEX events_tool ON events (tool);
CREATE INDEX events_decision ON events (decision);
CREATE TABLE agents (
    id         TEXT COLLATE "C" PRIMARY KEY,
    owner      TEXT COLLATE "C" NOT NULL,
    purpose    TEXT COLLATE "C" NOT NULL,
    groups     TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
CREATE TABLE agent_keys (
    key_id     TEXT COLLATE "C" PRIMARY KEY,
    agent      TEXT COLLATE "C" NOT NULL,
    hash       TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
CREATE INDEX agent_keys_agent ON agent_keys (agent);
CREATE TABLE tools (
    tool          TEXT COLLATE "C" PRIMARY KEY,
    digest        TEXT COLLATE "C" NOT NULL,
    descriptor    TEXT COLLATE "C" NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL
);
CREATE TABLE approvals (
    id         TEXT COLLATE "C" PRIMARY KEY,
    digest     TEXT COLLATE "C" NOT NULL,
    status     TEXT COLLATE "C" NOT NULL,
    agent      TEXT COLLATE "C" NOT NULL,
    run        TEXT COLLATE "C" NOT NULL,
    step       BIGINT NOT NULL,
    tool       TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    request    TEXT COLLATE "C" NOT NULL,
    decided_by TEXT COLLATE "C",
    decided_ms BIGINT,
    reason     TEXT COLLATE "C",
    used_ms    BIGINT
);
CREATE INDEX approvals_digest ON approvals (digest);
CREATE INDEX approvals_created ON approvals (created_ms);
CREATE TABLE secrets (
    name        TEXT COLLATE "C" PRIMARY KEY,
    sealed      BYTEA NOT NULL,
    fingerprint TEXT COLLATE "C" NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
CREATE TABLE signing_keys (
    kid              TEXT COLLATE "C" PRIMARY KEY,
    algorithm        TEXT COLLATE "C" NOT NULL,
    sealed_private   BYTEA NOT NULL,
    public_jwk       TEXT COLLATE "C" NOT NULL,
    created_ms       BIGINT NOT NULL,
    retired_ms       BIGINT,
    publish_until_ms BIGINT,
    -- The order keys were added in, which SQLite keeps as rowid: it breaks ties of created_ms.
    added            BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE TABLE revoked_tokens (
    jti        TEXT COLLATE "C" PRIMARY KEY,
    revoked_ms BIGINT NOT NULL,
    expires_ms BIGINT
);
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_ms);
CREATE TABLE tool_pins (
    tool           TEXT COLLATE "C" PRIMARY KEY,
    digest         TEXT COLLATE "C" NOT NULL,
    descriptor     TEXT COLLATE "C" NOT NULL,
    pinned_ms      BIGINT NOT NULL,
    source         TEXT COLLATE "C" NOT NULL,
    pinned_by      TEXT COLLATE "C" NOT NULL,
    flagged_digest TEXT COLLATE "C"
);
CREATE TABLE credential_uses (
    credential  TEXT COLLATE "C" NOT NULL,
    server      TEXT COLLATE "C" NOT NULL,
    agent       TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT COLLATE "C" NOT NULL,
    uses        BIGINT NOT NULL,
    first_ms    BIGINT NOT NULL,
    last_ms     BIGINT NOT NULL,
    PRIMARY KEY (credential, server, agent)
);
CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL
);
-- The store reads its schema version here, as it does in SQLite.
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
"#;

/// Version 2: the detectors' state that replicas share (`shared.rs`).
const V2: &str = r#"
CREATE TABLE shared_state (
    key        TEXT COLLATE "C" PRIMARY KEY,
    value      TEXT COLLATE "C" NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX shared_state_expires ON shared_state (expires_ms);
"#;

/// Every migration, in order: (version, statements). Append only; never edit a shipped one.
const MIGRATIONS: &[(i64, &str)] = &[(1, V1), (2, V2)];

/// The highest version this code knows.
pub(crate) const LATEST_VERSION: i64 = 2;

/// Why the schema could not be brought up to date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MigrateError {
    /// A newer Custos migrated this database; this one could misread it.
    Newer {
        found: i64,
        known: i64,
    },
    Db(DbError),
}

impl From<DbError> for MigrateError {
    fn from(e: DbError) -> Self {
        MigrateError::Db(e)
    }
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Newer { found, known } => write!(
                f,
                "the database has schema version {found}, newer than {known} which this custos understands: upgrade custos"
            ),
            MigrateError::Db(e) => write!(f, "cannot migrate the database: {e}"),
        }
    }
}

/// Applies every migration the database lacks, each in its own transaction.
pub(crate) fn migrate(conn: &mut PgConn) -> Result<(), MigrateError> {
    for &(version, statements) in MIGRATIONS {
        conn.batch("BEGIN")?;
        match apply(conn, version, statements) {
            Ok(()) => conn.batch("COMMIT")?,
            Err(e) => {
                // The connection may be gone; the server rolls back a dead session's work.
                let _ = conn.batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Inside a transaction: waits for the lock, then applies `version` unless already there.
fn apply(conn: &mut PgConn, version: i64, statements: &str) -> Result<(), MigrateError> {
    // Held until the transaction ends; the second replica waits here, then finds it applied.
    conn.execute("SELECT pg_advisory_xact_lock(?1)", &[Arg::Int(MIGRATION_LOCK)])?;
    conn.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    )?;
    let highest = conn
        .query_opt("SELECT MAX(version) FROM schema_migrations", &[])?
        .map(|row| row.opt_int(0))
        .transpose()?
        .flatten()
        .unwrap_or(0);
    if highest > LATEST_VERSION {
        return Err(MigrateError::Newer { found: highest, known: LATEST_VERSION });
    }
    if highest >= version {
        return Ok(());
    }
    conn.batch(statements)?;
    conn.execute(
        "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)",
        &[Arg::Int(version), Arg::Int(now_ms())],
    )?;
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
