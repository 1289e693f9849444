//! The thread that owns one PostgreSQL connection.
//!
//! The store's traits are blocking and are called from Tokio worker threads (a `Mutex<Store>`
//! held in async code), where blocking on a runtime would panic. So each connection lives on
//! a thread of its own with a current-thread runtime that holds the `Client` and drives its
//! `Connection`; callers send a [`Request`] and block on a standard channel for the reply.
//! One request is served at a time, in order, as on one connection.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, NoTls, Socket, Statement};

use super::types::{db_error, row, Param};
use super::url::Settings;
use crate::sql::{DbError, Row};

/// Prepared statements kept per connection. The store's statements are a fixed set; queries
/// built from filters vary, so the cache is emptied when full rather than grown.
const MAX_STATEMENTS: usize = 512;

/// How long a cancel request for an abandoned stream may take before we stop waiting for it.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// What a stream sends its reader: batches of rows, then exactly one `Done` or `Failed`.
#[derive(Debug)]
pub(super) enum Chunk {
    Rows(Vec<Row>),
    Done,
    Failed(DbError),
}

/// One call, with the channel its answer goes back on.
#[derive(Debug)]
pub(super) enum Request {
    Execute {
        sql: String,
        args: Vec<Param>,
        reply: SyncSender<Result<u64, DbError>>,
    },
    Query {
        sql: String,
        args: Vec<Param>,
        reply: SyncSender<Result<Vec<Row>, DbError>>,
    },
    Batch {
        sql: String,
        reply: SyncSender<Result<(), DbError>>,
    },
    /// `rows` holds one batch of at most `chunk_rows` while the next is read.
    Stream {
        sql: String,
        args: Vec<Param>,
        chunk_rows: usize,
        rows: SyncSender<Chunk>,
    },
}

/// The caller's side of a connection thread.
#[derive(Debug)]
pub(super) struct Worker {
    pub(super) requests: UnboundedSender<Request>,
    /// Set when the connection ends (server gone, network cut, fatal error).
    closed: Arc<AtomicBool>,
}

impl Worker {
    /// Starts the thread and waits until it is connected (or failed to).
    pub(super) fn start(settings: &Arc<Settings>) -> Result<Worker, DbError> {
        let (requests, inbox) = unbounded_channel();
        let (ready, connected) = std::sync::mpsc::sync_channel(1);
        let closed = Arc::new(AtomicBool::new(false));
        let (settings, flag) = (Arc::clone(settings), Arc::clone(&closed));
        std::thread::Builder::new()
            .name("custos-pg".to_owned())
            .spawn(move || run(&settings, inbox, &ready, flag))
            .map_err(|e| DbError::new(format!("cannot start a postgres connection thread: {e}")))?;
        match connected.recv() {
            Ok(Ok(())) => Ok(Worker { requests, closed }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(DbError::new("the postgres connection thread stopped while connecting")),
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.requests.is_closed()
    }
}

fn run(
    settings: &Settings,
    inbox: UnboundedReceiver<Request>,
    ready: &SyncSender<Result<(), DbError>>,
    closed: Arc<AtomicBool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(DbError::new(format!("cannot start a runtime for postgres: {e}"))));
            return;
        }
    };
    runtime.block_on(async move {
        let client = match connect(settings, Arc::clone(&closed)).await {
            Ok(client) => client,
            Err(e) => {
                closed.store(true, Ordering::Release);
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        Session { client, statements: HashMap::new(), settings }.serve(inbox).await;
    });
}

async fn connect(settings: &Settings, closed: Arc<AtomicBool>) -> Result<Client, DbError> {
    let connected = match &settings.tls {
        None => tokio::time::timeout(settings.connect_timeout, open(settings, NoTls, closed)).await,
        Some(tls) => tokio::time::timeout(settings.connect_timeout, open(settings, tls.clone(), closed)).await,
    };
    let failed = |reason: String| DbError::new(format!("cannot connect to {}: {reason}", settings.redacted));
    match connected {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(failed(db_error(&e).message)),
        Err(_) => Err(failed(format!("no answer within {:?}", settings.connect_timeout))),
    }
}

/// Connects and spawns the task that drives the connection, which flags `closed` when it ends.
async fn open<T>(settings: &Settings, tls: T, closed: Arc<AtomicBool>) -> Result<Client, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, connection) = settings.config.connect(tls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
        closed.store(true, Ordering::Release);
    });
    Ok(client)
}

/// The connection and what is cached on it.
struct Session<'s> {
    client: Client,
    /// Prepared statements by their (already `$N`-numbered) text.
    statements: HashMap<String, Statement>,
    settings: &'s Settings,
}

impl Session<'_> {
    async fn serve(mut self, mut inbox: UnboundedReceiver<Request>) {
        while let Some(request) = inbox.recv().await {
            match request {
                Request::Execute { sql, args, reply } => {
                    let _ = reply.send(self.execute(&sql, &args).await);
                }
                Request::Query { sql, args, reply } => {
                    let _ = reply.send(self.query(&sql, &args).await);
                }
                Request::Batch { sql, reply } => {
                    let _ = reply.send(self.client.batch_execute(&sql).await.map_err(|e| db_error(&e)));
                }
                Request::Stream { sql, args, chunk_rows, rows } => self.stream(&sql, &args, chunk_rows, &rows).await,
            }
        }
    }

    async fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await.map_err(|e| db_error(&e))?;
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    async fn execute(&mut self, sql: &str, args: &[Param]) -> Result<u64, DbError> {
        let statement = self.statement(sql).await?;
        self.client.execute_raw(&statement, args.iter()).await.map_err(|e| db_error(&e))
    }

    async fn query(&mut self, sql: &str, args: &[Param]) -> Result<Vec<Row>, DbError> {
        let statement = self.statement(sql).await?;
        let rows = self.client.query_raw(&statement, args.iter()).await.map_err(|e| db_error(&e))?;
        let mut rows = pin!(rows);
        let mut out = Vec::new();
        while let Some(next) = rows.next().await {
            out.push(row(&next.map_err(|e| db_error(&e))?)?);
        }
        Ok(out)
    }

    /// Sends rows in batches as the server delivers them; the bounded channel holds the server
    /// back (the driver reads no further while its own one-message buffer is full), so memory
    /// stays bounded however large the result: a batch being read, one waiting, one being
    /// filled. Batches rather than rows, because a hand-over per row costs more than the row.
    /// A reader that goes away cancels the query.
    async fn stream(&mut self, sql: &str, args: &[Param], chunk_rows: usize, out: &SyncSender<Chunk>) {
        let statement = match self.statement(sql).await {
            Ok(statement) => statement,
            Err(e) => {
                let _ = out.send(Chunk::Failed(e));
                return;
            }
        };
        let rows = match self.client.query_raw(&statement, args.iter()).await {
            Ok(rows) => rows,
            Err(e) => {
                let _ = out.send(Chunk::Failed(db_error(&e)));
                return;
            }
        };
        let mut rows = pin!(rows);
        let mut batch = Vec::with_capacity(chunk_rows);
        while let Some(next) = rows.next().await {
            match next.map_err(|e| db_error(&e)).and_then(|r| row(&r)) {
                Ok(r) => batch.push(r),
                Err(e) => {
                    // The rows before the failure first, then the failure.
                    if !batch.is_empty() {
                        let _ = out.send(Chunk::Rows(std::mem::take(&mut batch)));
                    }
                    let _ = out.send(Chunk::Failed(e));
                    return;
                }
            }
            if batch.len() < chunk_rows {
                continue;
            }
            let full = std::mem::replace(&mut batch, Vec::with_capacity(chunk_rows));
            // Blocks this thread while the reader is behind: nothing else runs on this
            // connection meanwhile, and the driver reads nothing more from the socket.
            if out.send(Chunk::Rows(full)).is_err() {
                self.cancel().await;
                // Drain to the end (the cancel makes that short) so that the next request
                // starts on an idle connection and the cancel cannot hit it.
                while rows.next().await.is_some() {}
                return;
            }
        }
        if !batch.is_empty() && out.send(Chunk::Rows(batch)).is_err() {
            return;
        }
        let _ = out.send(Chunk::Done);
    }

    /// Asks the server to cancel the running query (best effort).
    async fn cancel(&self) {
        let token = self.client.cancel_token();
        let sent = match &self.settings.tls {
            None => tokio::time::timeout(CANCEL_TIMEOUT, token.cancel_query(NoTls)).await,
            Some(tls) => tokio::time::timeout(CANCEL_TIMEOUT, token.cancel_query(tls.clone())).await,
        };
        drop(sent);
    }
}
