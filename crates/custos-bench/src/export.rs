//! What getting evidence out costs: CPU per event to read the log, to map an event to OCSF and
//! serialize it, and to deliver it through a sink (a JSON lines file synced per batch, syslog
//! over TCP, a webhook over HTTP), each to a receiver in this process that only drains.
//!
//! Each row is one pass over the same log of gateway-like events (`call.requested`,
//! `call.decided`, `call.finished`) through `custos_siem`'s own code (`runner::pump`, the
//! sinks), timed by this process's CPU (user + system, all threads, from `/proc`); the
//! receivers' share is small (they parse nothing but the framing).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use custos_siem::http::{HttpSink, Receiver};
use custos_siem::jsonl::{JsonlSink, Rotation};
use custos_siem::runner::{pump, Follow};
use custos_siem::syslog::SyslogSink;
use custos_siem::{Cursor, Format, Record, Sink};
use custos_store::{EventQuery, SqlStore, Store};
use serde::Serialize;

/// Events per page and per delivered batch (the sinks' default `batch_size`).
const BATCH: usize = 500;

#[derive(Debug, Serialize)]
pub struct ExportResult {
    pub what: String,
    pub events: u64,
    pub events_per_sec: f64,
    /// This process's CPU time over the pass, per event.
    pub cpu_us_per_event: f64,
}

/// Writes `events` events to a new log in `dir`, then measures each pass over it.
pub fn export(dir: &Path, events: u64) -> Result<Vec<ExportResult>> {
    let db = dir.join("export.db");
    {
        let mut store = SqlStore::open(&db)?;
        let mut next = 0;
        while next < events {
            let batch: Vec<_> = (next..events.min(next + 10_000)).map(crate::micro::event).collect();
            next += u64::try_from(batch.len()).unwrap_or(0);
            store.append(&batch)?;
        }
    }
    let store = SqlStore::open_read_only(&db)?;
    let mut out = Vec::new();
    out.push(measure("read the log", events, || read(&store, None))?);
    out.push(measure("read + OCSF map + serialize", events, || read(&store, Some(Format::Ocsf)))?);
    out.push(measure("read + JSON lines serialize", events, || read(&store, Some(Format::Jsonl)))?);

    let file = dir.join("sink/events.jsonl");
    let rotation = Rotation { max_bytes: 64 * 1024 * 1024, max_age: None, keep: 2 };
    let sink = JsonlSink::open(&file, rotation)?;
    out.push(measure("OCSF to a JSON lines file (sync per batch)", events, || drain(&store, dir, "file", sink))?);

    let syslog = drain_tcp(None)?.addr;
    let sink = SyslogSink::new(&syslog.to_string(), None);
    out.push(measure("OCSF to syslog over TCP", events, || drain(&store, dir, "syslog", sink))?);

    let http = drain_tcp(Some(HEC_SUCCESS))?.addr;
    let sink = HttpSink::new(&format!("http://{http}/events"), Receiver::Webhook { token: None }, None)?;
    out.push(measure("OCSF to a webhook over HTTP", events, || drain(&store, dir, "webhook", sink))?);
    Ok(out)
}

fn measure(what: &str, events: u64, pass: impl FnOnce() -> Result<u64>) -> Result<ExportResult> {
    let pid = std::process::id();
    let cpu = crate::procfs::cpu_time(pid)?;
    let start = Instant::now();
    let done = pass()?;
    anyhow::ensure!(done == events, "{what}: {done} events of {events}");
    let secs = start.elapsed().as_secs_f64();
    let cpu = crate::procfs::cpu_time(pid)?.saturating_sub(cpu);
    Ok(ExportResult {
        what: what.to_owned(),
        events,
        events_per_sec: events as f64 / secs,
        cpu_us_per_event: cpu.as_secs_f64() * 1e6 / events as f64,
    })
}

/// Reads every event a page at a time, encoding each when `format` is given.
fn read(store: &SqlStore, format: Option<Format>) -> Result<u64> {
    let (mut after, mut count) = (0, 0);
    loop {
        let q = EventQuery { after_seq: Some(after), limit: Some(BATCH), ..EventQuery::default() };
        let page = store.query(&q)?;
        for e in &page {
            if let Some(format) = format {
                std::hint::black_box(Record::encode(format, e));
            }
            after = e.seq;
            count += 1;
        }
        if page.len() < BATCH {
            return Ok(count);
        }
    }
}

/// Delivers the whole log to `sink` as `custos serve` does, from a fresh cursor.
fn drain(store: &SqlStore, dir: &Path, name: &str, mut sink: impl Sink) -> Result<u64> {
    let mut cursor = Cursor::open(&dir.join("cursors"), name)?;
    let follow = Follow { name: name.to_owned(), format: Format::Ocsf, batch: BATCH, flush_every: Duration::ZERO };
    pump(store, &mut cursor, &mut sink, &follow, None)?;
    Ok(cursor.seq())
}

/// Splunk HEC's answer to a batch it took.
const HEC_SUCCESS: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 27\r\n\r\n{\"text\":\"Success\",\"code\":0}";

/// A loopback receiver that drops what it reads.
pub struct Drain {
    pub addr: std::net::SocketAddr,
    /// OTLP trace exports (`POST /v1/traces`) answered so far.
    pub trace_exports: Arc<AtomicU64>,
}

/// A loopback receiver on its own threads that reads and drops everything: with an `answer`,
/// it reads HTTP/1.1 requests (keep-alive) and answers each with it.
pub fn drain_tcp(answer: Option<&'static str>) -> Result<Drain> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let trace_exports = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&trace_exports);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let counted = Arc::clone(&counted);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&conn);
                let Some(answer) = answer else {
                    let _ = std::io::copy(&mut reader, &mut std::io::sink());
                    return;
                };
                loop {
                    let (mut length, mut traces) = (0usize, None);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        // The request line comes first.
                        traces.get_or_insert(line.starts_with("POST /v1/traces "));
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if (&conn).write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                    if traces == Some(true) {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    Ok(Drain { addr, trace_exports })
}
