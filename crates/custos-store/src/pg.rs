//! [`Sql`] on one PostgreSQL connection: the store's second database, for deployments where
//! several gateway replicas share approvals, rate limits, replay state and the audit log.
//!
//! The driver is `tokio-postgres`; each [`PgConn`] owns a thread that runs the connection (see
//! `worker.rs` for why), statements are prepared once per connection, and the store's `?N`
//! placeholders become `$N`. The URL is libpq's `postgres://user:password@host:port/db?…`,
//! with `sslmode` (`disable`, `prefer` — the default —, `require`, `verify-ca`, `verify-full`)
//! and `sslrootcert=PATH`; its password never appears in an error.
//!
//! # Failure
//!
//! When the connection dies (the server restarts, the network drops), every call fails with a
//! [`DbError`]: the store fails closed. Nothing reconnects behind the caller's back, because a
//! call after a silent reconnect would run outside the transaction its caller opened; the
//! owner calls [`PgConn::reconnect`] (or [`PgConn::ensure_open`] before it begins a unit of
//! work) and the gateway serves again without a restart.
//!
//! # Layout
//!
//! - `pg/url.rs`: the URL, its TLS settings, [`redacted`].
//! - `pg/tls.rs`: rustls under `tokio-postgres`, per `sslmode`.
//! - `pg/worker.rs`: the connection's thread, requests, the statement cache, streaming.
//! - `pg/types.rs`: binding [`Arg`]s to inferred parameter types, reading cells as [`Value`]s,
//!   errors.
//! - `pg/schema.rs`: the schema and its versioned migrations.

mod schema;
mod tls;
mod types;
mod url;
mod worker;

use std::marker::PhantomData;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
pub(crate) use schema::LATEST_VERSION;
pub(crate) use schema::{migrate, MigrateError};
#[cfg(test)]
pub(crate) use url::redacted;

use crate::sql::{numbered_placeholders, Arg, DbError, Row, Sql};
use types::Param;
use url::Settings;
use worker::{Chunk, Request, Worker};

/// One connection to PostgreSQL.
#[derive(Debug)]
pub(crate) struct PgConn {
    /// Kept to reconnect with the same URL, TLS and timeout.
    settings: Arc<Settings>,
    worker: Worker,
}

impl PgConn {
    /// Connects to `url`, giving up after `connect_timeout` (TCP, TLS and authentication;
    /// the URL's own `connect_timeout`, in seconds, wins). Safe to call, like every method
    /// here, from a Tokio worker thread: it blocks that thread, never a runtime.
    pub(crate) fn connect(url: &str, connect_timeout: Duration) -> Result<PgConn, DbError> {
        let settings = Arc::new(Settings::parse(url, connect_timeout)?);
        let worker = Worker::start(&settings)?;
        Ok(PgConn { settings, worker })
    }

    /// The URL without its password, for errors and logs: `postgres://user@host:port/db`.
    #[cfg(test)]
    pub(crate) fn redacted_url(&self) -> &str {
        &self.settings.redacted
    }

    /// Whether the connection has ended; every call fails until [`PgConn::reconnect`].
    pub(crate) fn is_closed(&self) -> bool {
        self.worker.is_closed()
    }

    /// Opens a fresh connection in place of this one (whose transaction, if any, is lost).
    /// On failure the old, closed connection stays and calls keep failing.
    pub(crate) fn reconnect(&mut self) -> Result<(), DbError> {
        self.worker = Worker::start(&self.settings)?;
        Ok(())
    }

    /// Reconnects if the connection has ended; for the start of a unit of work.
    pub(crate) fn ensure_open(&mut self) -> Result<(), DbError> {
        if self.is_closed() {
            self.reconnect()?;
        }
        Ok(())
    }

    /// Runs a query and reads its rows as the server sends them, in batches of `chunk_rows`, at
    /// most about three batches ahead of the reader: a log of millions of events is never held
    /// in memory. The iterator ends after
    /// the last row, or after yielding the error that ended the query early. Dropping it early
    /// cancels the query, which, inside a transaction, aborts the transaction.
    pub(crate) fn stream(&mut self, sql: &str, args: &[Arg<'_>], chunk_rows: usize) -> Result<PgRows<'_>, DbError> {
        let (rows, inbox) = sync_channel(1);
        let chunk_rows = chunk_rows.max(1);
        let request = Request::Stream { sql: numbered_placeholders(sql), args: params(args), chunk_rows, rows };
        self.send(request)?;
        Ok(PgRows { inbox, batch: Vec::new().into_iter(), finished: false, conn: PhantomData })
    }

    fn send(&self, request: Request) -> Result<(), DbError> {
        self.worker.requests.send(request).map_err(|_| self.closed())
    }

    /// Sends a request and blocks until its reply.
    fn call<T>(&self, make: impl FnOnce(SyncSender<Result<T, DbError>>) -> Request) -> Result<T, DbError> {
        let (reply, answer) = sync_channel(1);
        self.send(make(reply))?;
        answer.recv().map_err(|_| self.closed())?
    }

    fn closed(&self) -> DbError {
        DbError::new(format!("the connection to {} is closed", self.settings.redacted))
    }
}

fn params(args: &[Arg<'_>]) -> Vec<Param> {
    args.iter().map(Param::from).collect()
}

impl Sql for PgConn {
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, DbError> {
        let (sql, args) = (numbered_placeholders(sql), params(args));
        self.call(|reply| Request::Execute { sql, args, reply })
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, DbError> {
        let (sql, args) = (numbered_placeholders(sql), params(args));
        self.call(|reply| Request::Query { sql, args, reply })
    }

    /// The simple query protocol: several statements, no arguments, no statement cache.
    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        let sql = sql.to_owned();
        self.call(|reply| Request::Batch { sql, reply })
    }

    /// Looks in the connection's current schema only, as unqualified statements do.
    fn table_exists(&mut self, name: &str) -> Result<bool, DbError> {
        let found = self.query(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = ?1",
            &[Arg::Text(name)],
        )?;
        Ok(!found.is_empty())
    }

    /// `signing_keys.added`, an identity column: the one table whose rows are ordered by it.
    fn insertion_order(&self) -> &'static str {
        "added"
    }
}

/// The rows of [`PgConn::stream`], borrowing the connection until dropped. Dropping it early
/// cancels the query.
#[derive(Debug)]
pub(crate) struct PgRows<'c> {
    inbox: Receiver<Chunk>,
    /// The batch being read.
    batch: std::vec::IntoIter<Row>,
    finished: bool,
    conn: PhantomData<&'c mut PgConn>,
}

impl Iterator for PgRows<'_> {
    type Item = Result<Row, DbError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(row) = self.batch.next() {
                return Some(Ok(row));
            }
            if self.finished {
                return None;
            }
            match self.inbox.recv() {
                Ok(Chunk::Rows(rows)) => self.batch = rows.into_iter(),
                Ok(Chunk::Done) => self.finished = true,
                Ok(Chunk::Failed(e)) => {
                    self.finished = true;
                    return Some(Err(e));
                }
                // The thread went away without saying the result was complete: never a silent end.
                Err(_) => {
                    self.finished = true;
                    return Some(Err(DbError::new("the postgres connection ended in the middle of a result")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
