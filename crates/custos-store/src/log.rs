//! The async handle the request path writes through, with group commit.
//!
//! Every tool call must be durably logged before it is forwarded, and a durable commit costs
//! one disk sync. One dedicated thread owns the store: it blocks for one request, takes whatever
//! else is already queued (up to [`AuditLogConfig::max_batch`]), writes all of it in one
//! transaction and answers every waiter. Under load many calls share one sync; when idle a call
//! waits for its own sync only. No polling, no timers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use custos_core::{NewEvent, ToolDescriptor};
use tokio::sync::{mpsc, oneshot};

use crate::approvals::{ApprovalOutcome, ApprovalWrite};
use crate::error::StoreError;
use crate::store::{Store, StoredEvent, ToolSighting, Write, WriteOutcome, WriteResult};

/// Bounds of the writer's queue and batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditLogConfig {
    /// Requests waiting for the writer. When full, callers wait (backpressure) instead of the
    /// queue growing without bound while the disk is slow.
    pub queue: usize,
    /// Requests written in one transaction. Bounds how long the first caller of a batch waits
    /// behind the others and the size of one transaction.
    pub max_batch: usize,
}

impl Default for AuditLogConfig {
    fn default() -> Self {
        Self { queue: 1024, max_batch: 256 }
    }
}

/// Counters for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditLogStats {
    /// Transactions attempted (one disk sync each when they commit).
    pub batches: u64,
    /// Writes (appends and tool observations) carried by those transactions.
    pub writes: u64,
    /// Requests queued and not yet taken by the writer.
    pub queued: usize,
}

/// The async handle to the audit log: cheap to clone, `Send + Sync`.
///
/// Dropping every clone stops the writer once the queue is drained. A caller that stops waiting
/// (its future is dropped) after queueing a write does not cancel it: the event is still recorded.
#[derive(Clone, Debug)]
pub struct AuditLog {
    requests: mpsc::Sender<Request>,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    writes: AtomicU64,
}

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "nearly every request is a write; boxing it would add an allocation per call to save space only on rare flushes"
)]
enum Request {
    Write {
        write: Write,
        reply: oneshot::Sender<WriteResult>,
    },
    /// Answered once every request queued before it is durable.
    Flush {
        reply: oneshot::Sender<()>,
    },
    /// Stops taking requests; answered once those already queued are durable and the store is
    /// closed.
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

impl AuditLog {
    /// Starts the writer thread, which owns `store`, with the default bounds.
    pub fn start(store: Box<dyn Store>) -> Result<Self, StoreError> {
        Self::start_with(store, AuditLogConfig::default())
    }

    /// Starts the writer thread with the given bounds (each at least 1).
    pub fn start_with(store: Box<dyn Store>, config: AuditLogConfig) -> Result<Self, StoreError> {
        let (requests, receiver) = mpsc::channel(config.queue.max(1));
        let counters = Arc::new(Counters::default());
        let writer =
            Writer { store, requests: receiver, max_batch: config.max_batch.max(1), counters: counters.clone() };
        thread::Builder::new()
            .name("custos-audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::WriterStart { reason: e.to_string() })?;
        Ok(Self { requests, counters })
    }

    /// Appends `events` durably, chained in order; returns them numbered.
    ///
    /// An error means nothing of this call was recorded: the caller must not forward the tool
    /// call (fail closed).
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<StoredEvent>, StoreError> {
        match self.submit(Write::Append(events)).await? {
            WriteOutcome::Appended(stored) => Ok(stored),
            WriteOutcome::Observed(_) | WriteOutcome::Approval(_) => Err(mismatch()),
        }
    }

    /// Records one `tools/list` result; see [`Store::observe_tools`]. One sighting per
    /// descriptor, in the order of `tools`.
    pub async fn observe_tools(
        &self,
        tools: Vec<ToolDescriptor>,
        template: NewEvent,
    ) -> Result<Vec<ToolSighting>, StoreError> {
        match self.submit(Write::ObserveTools { tools, template }).await? {
            WriteOutcome::Observed(sightings) => Ok(sightings),
            WriteOutcome::Appended(_) | WriteOutcome::Approval(_) => Err(mismatch()),
        }
    }

    /// Applies one approval change with its event, durably; see [`ApprovalWrite`]. Group
    /// committed like any append, and atomic across processes (the state check runs inside the
    /// write transaction).
    pub async fn approval(&self, write: ApprovalWrite) -> Result<ApprovalOutcome, StoreError> {
        match self.submit(Write::Approval(write)).await? {
            WriteOutcome::Approval(outcome) => Ok(*outcome),
            WriteOutcome::Appended(_) | WriteOutcome::Observed(_) => Err(mismatch()),
        }
    }

    /// Waits until everything queued before this call is durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.requests.send(Request::Flush { reply }).await.map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)
    }

    /// Stops the writer: everything queued before this call is made durable, the store is
    /// closed, then this returns. Later writes on any clone fail with [`StoreError::Closed`].
    /// Returns at once if the writer has already stopped taking requests.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.requests.send(Request::Shutdown { reply }).await.is_ok() {
            // An error here means the writer died: there is nothing left to wait for.
            let _ = done.await;
        }
    }

    pub fn stats(&self) -> AuditLogStats {
        AuditLogStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            queued: self.requests.max_capacity().saturating_sub(self.requests.capacity()),
        }
    }

    async fn submit(&self, write: Write) -> Result<WriteOutcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.requests.send(Request::Write { write, reply }).await.map_err(|_| StoreError::Closed)?;
        // A dropped reply means the writer died mid-batch; the write may not be durable.
        outcome.await.map_err(|_| StoreError::Closed)?
    }
}

fn mismatch() -> StoreError {
    StoreError::Internal { reason: "the store answered a write with the wrong kind of result".into() }
}

/// The writer thread's state.
struct Writer {
    store: Box<dyn Store>,
    requests: mpsc::Receiver<Request>,
    max_batch: usize,
    counters: Arc<Counters>,
}

impl Writer {
    fn run(mut self) {
        let mut stopped = Vec::new();
        let mut batch = Vec::with_capacity(self.max_batch);
        // Blocks until at least one request is queued, then takes up to `max_batch` of those
        // already waiting. Returns 0 once the channel is closed and drained.
        while self.requests.blocking_recv_many(&mut batch, self.max_batch) > 0 {
            let mut writes = Vec::with_capacity(batch.len());
            let mut waiters = Vec::with_capacity(batch.len());
            let mut flushed = Vec::new();
            for request in batch.drain(..) {
                match request {
                    Request::Write { write, reply } => {
                        writes.push(write);
                        waiters.push(reply);
                    }
                    Request::Flush { reply } => flushed.push(reply),
                    Request::Shutdown { reply } => {
                        // New sends fail from here on; what is already queued is still drained.
                        self.requests.close();
                        stopped.push(reply);
                    }
                }
            }
            if !writes.is_empty() {
                self.commit(&writes, waiters);
            }
            for reply in flushed {
                let _ = reply.send(());
            }
        }
        // Close the database before confirming shutdown, so the caller may reopen or move it.
        drop(self.store);
        for reply in stopped {
            let _ = reply.send(());
        }
    }

    /// Writes one batch in one transaction and answers its waiters.
    fn commit(&mut self, writes: &[Write], waiters: Vec<oneshot::Sender<WriteResult>>) {
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters.writes.fetch_add(writes.len() as u64, Ordering::Relaxed);
        // A waiter that stopped waiting is not an error: its write is recorded regardless.
        match self.store.write_batch(writes) {
            Ok(results) => {
                let mut results = results.into_iter();
                for waiter in waiters {
                    let result = results.next().unwrap_or_else(|| {
                        Err(StoreError::Internal { reason: "the store answered fewer writes than it was given".into() })
                    });
                    let _ = waiter.send(result);
                }
            }
            // Nothing of the batch was recorded: every caller in it must fail closed.
            Err(e) => {
                for waiter in waiters {
                    let _ = waiter.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
