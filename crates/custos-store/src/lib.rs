//! The Custos audit store: the tamper-evident audit log and the tool inventory, behind a trait.
//!
//! Every tool call is recorded here before it is forwarded; if it cannot be recorded, the call is
//! refused. Events are numbered and hash-chained (each event's digest covers its number and its
//! predecessor's digest), so `custos audit verify` can tell whether any event was modified,
//! deleted, inserted or reordered, and which one first. The same database holds the inventory
//! of tool descriptors seen in `tools/list` results and the pin of each, so a changed
//! descriptor is noticed, logged and quarantined, and the state kept beside the log: approval requests, registered agents and their
//! keys, and the credential broker's sealed secrets, signing keys and revoked tokens.
//!
//! One store type, [`SqlStore`], serves two databases: the embedded SQLite file (the default) and
//! a PostgreSQL database that several replicas share ([`DbLocation`] names which). Every
//! projection is written once against the statement layer (`sql.rs`); nothing outside this crate
//! sees a database driver.
//!
//! # Layout
//!
//! - `store.rs`: the [`Store`] trait and the values that cross it ([`StoredEvent`],
//!   [`EventQuery`], [`ToolSighting`], [`ToolRecord`], [`Write`]).
//! - `chain.rs`: how an event becomes a canonical body and digest, and the streaming walk that
//!   verifies a log and classifies its first problem ([`VerifyReport`], [`Tamper`]). Independent
//!   of the database, so every store encodes and verifies identically.
//! - `sql.rs`: the statement layer, `Sql`: arguments, rows, errors, in SQL both databases accept.
//! - `sqlite.rs`: [`SqlStore`] on either connection (write transactions: SQLite's `BEGIN
//!   IMMEDIATE`, or PostgreSQL's under one advisory lock, so replicas append to one chain), the
//!   SQLite file's schema, WAL and locking, the chain's appends and the inventory. The
//!   projections' SQL and the tests sit in `sqlite/` (`lite.rs`: `Sql` on a rusqlite connection).
//! - `location.rs`: [`DbLocation`], the file or a PostgreSQL target ([`PgTarget`]).
//! - `copy.rs`: [`SqlStore::copy_into`], a whole store into an empty one, checked
//!   (`custos store migrate`).
//! - `conformance.rs` (tests only): `on_both_stores!`, each contract test on both databases.
//! - `approvals.rs`: approval requests as the store keeps them ([`ApprovalRecord`],
//!   [`ApprovalWrite`]): a projection of the `approval.*` events, each change atomic with its
//!   event; the SQL is in `sqlite/approvals.rs`.
//! - `credentials.rs`: the credential broker's state ([`StoredSecret`], [`SigningKeyRecord`],
//!   revoked tokens) behind [`CredentialStore`], each change atomic with its event, and the use
//!   of each credential ([`CredentialUse`]), projected from every appended event that names
//!   credentials; the SQL is in `sqlite/credentials.rs`.
//! - `pins.rs`: tool pins, the rug-pull defence ([`ToolPin`], [`PinSource`]) behind
//!   [`ToolPins`]: the descriptor each tool must keep, checked by every tool listing, a changed
//!   tool quarantined with a `rug_pull` finding until an operator accepts it, and a new tool
//!   that resembles a pinned one (renamed, or a look-alike name) likewise; the SQL is in
//!   `sqlite/pins.rs`.
//! - `pg.rs`: `PgConn`, one PostgreSQL connection behind the statement layer (`sql.rs`), its
//!   URL, TLS, types and versioned schema in `pg/`.
//! - `log.rs`: [`AuditLog`], the async handle the request path uses: a writer thread that group
//!   commits many callers' writes in one transaction.
//! - `error.rs`: [`StoreError`].

mod approvals;
mod chain;
#[cfg(test)]
mod conformance;
mod copy;
mod credentials;
mod error;
mod location;
mod log;
mod pg;
mod pins;
mod shared;
mod sql;
mod sqlite;
mod store;

pub use approvals::{ApprovalOutcome, ApprovalQuery, ApprovalRecord, ApprovalRefusal, ApprovalStatus, ApprovalWrite};
pub use chain::{shallow, Tamper, VerifyReport, MAX_DETAIL_DEPTH};
pub use copy::CopyReport;
pub use credentials::{CredentialUse, SigningKeyRecord, StoredSecret};
pub use error::StoreError;
pub use location::{DbLocation, PgTarget};
pub use log::{AuditLog, AuditLogConfig, AuditLogStats};
pub use pins::{PinSource, ToolPin};
pub use shared::SharedValue;
pub use sqlite::{SqlStore, DATABASE_FILE};
pub use store::{
    known_tools, run_summary, AgentKeyRecord, AgentRecord, AgentRegistry, ApprovalStore, CredentialStore, EventQuery,
    RunSummary, Store, StoredEvent, ToolPins, ToolRecord, ToolSighting, Write, WriteOutcome, WriteResult,
};
