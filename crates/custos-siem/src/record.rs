//! An event encoded once, in the format its sink was configured with.

use custos_store::StoredEvent;
use serde_json::Value;

/// What a sink sends for each event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OCSF 1.7.0 ([`crate::ocsf::to_ocsf`]).
    Ocsf,
    /// The log's own shape, as `custos audit query --json` prints it ([`to_jsonl`]).
    Jsonl,
}

/// One event ready to send.
#[derive(Clone, Debug)]
pub struct Record {
    pub seq: u64,
    /// The event's digest (hex): what receivers dedupe on.
    pub uid: String,
    pub time_ms: i64,
    /// The event kind, e.g. `call.decided` (syslog's MSGID).
    pub kind: &'static str,
    /// Syslog severity (RFC 5424: 2 critical … 6 informational).
    pub syslog_severity: u8,
    /// The event as one line of JSON.
    pub json: String,
}

impl Record {
    pub fn encode(format: Format, e: &StoredEvent) -> Self {
        let value = match format {
            Format::Ocsf => crate::ocsf::to_ocsf(e),
            Format::Jsonl => to_jsonl(e),
        };
        Self {
            seq: e.seq,
            uid: e.hash.to_hex(),
            time_ms: e.event.time_ms,
            kind: e.event.kind.as_str(),
            syslog_severity: syslog_severity(e),
            json: value.to_string(),
        }
    }
}

/// The event with its place in the chain (`seq`, `hash`, `prev`), as `audit query --json`.
pub fn to_jsonl(e: &StoredEvent) -> Value {
    let mut v = serde_json::to_value(&e.event).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("seq".into(), e.seq.into());
        obj.insert("hash".into(), e.hash.to_hex().into());
        obj.insert("prev".into(), e.prev.to_hex().into());
    }
    v
}

/// Findings by their severity; refusals and failures as warnings; the rest informational.
fn syslog_severity(e: &StoredEvent) -> u8 {
    let ocsf = crate::ocsf::to_ocsf_severity(e);
    match ocsf {
        5 | 6 => 2,
        4 => 3,
        3 | 2 => 4,
        0 => 5,
        _ => 6,
    }
}
