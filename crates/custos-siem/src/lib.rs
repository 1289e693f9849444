//! Evidence for SIEMs: the audit log's events mapped to OCSF, and the sinks that deliver them.
//!
//! The log is the source of truth; sinks follow it. Each configured sink runs on its own thread
//! with its own read-only connection to the log, reads the events after its durable cursor a
//! batch at a time, delivers them, and moves the cursor only once the receiver acknowledged the
//! batch. A sink that is down is retried with backoff and catches up when it returns; it never
//! holds up a governed call, which only ever waits for the log.
//!
//! # Layout
//!
//! - `ocsf.rs`: [`ocsf::to_ocsf`], one OCSF 1.7.0 event per audit event; the class table.
//! - `record.rs`: [`Format`], [`Record`]: an event encoded once, as its sink wants it.
//! - `cursor.rs`: [`Cursor`], the last sequence number a sink delivered, in a file replaced
//!   atomically.
//! - `jsonl.rs`, `http.rs`, `syslog.rs`: the sinks (a JSON lines file with rotation; Splunk HEC
//!   and a generic webhook; RFC 5424 syslog over TCP or TLS, octet-counted).
//! - `runner.rs`: [`runner::start`], the thread that follows the log for one sink.
//! - `error.rs`: [`SiemError`].

mod cursor;
mod error;
pub mod http;
pub mod jsonl;
pub mod ocsf;
mod record;
pub mod runner;
pub mod syslog;

pub use cursor::Cursor;
pub use error::SiemError;
pub use record::{to_jsonl, Format, Record};

/// Where events go: one implementation per kind of receiver.
pub trait Sink: Send {
    /// Delivers `batch` (in log order, never empty). `Ok` means the receiver acknowledged every
    /// record, so the cursor may move past the last one; an error means none may be taken as
    /// delivered, and the whole batch is sent again.
    fn deliver(&mut self, batch: &[Record]) -> Result<(), SiemError>;

    /// Called once the batch's cursor is durable; and before the thread ends.
    fn flush(&mut self) {}
}
