//! A sink's durable cursor: the last sequence number it delivered and had acknowledged.
//!
//! Kept in a small file of its own (`<data_dir>/sinks/<name>.cursor`), not in the store: the
//! log's writer is on the path of every governed call and a sink's progress is not evidence, so
//! sinks never write to the database. The file is replaced whole (written under a temporary
//! name, synced, renamed, the folder synced), so after a crash it holds either the old cursor or
//! the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::SiemError;

/// Where one sink is in the log.
#[derive(Debug)]
pub struct Cursor {
    path: PathBuf,
    /// Every event up to and including this one was acknowledged; 0: none yet.
    seq: u64,
    /// The digest (hex) of event `seq`, to tell at start whether the log still holds it.
    uid: Option<String>,
}

impl Cursor {
    /// The cursor of sink `name` in `dir` (made if missing); 0 when the sink never delivered.
    /// A cursor file that cannot be read is an error, not a reason to start again from 0 (that
    /// would send everything twice).
    pub fn open(dir: &Path, name: &str) -> Result<Self, SiemError> {
        std::fs::create_dir_all(dir).map_err(|e| SiemError::file(dir, e))?;
        let path = dir.join(format!("{name}.cursor"));
        let (seq, uid) = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let v = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
                let seq = v
                    .get("seq")
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(|| SiemError::file(&path, "not a cursor: expected {\"seq\": N, \"uid\": DIGEST}"))?;
                (seq, v.get("uid").and_then(serde_json::Value::as_str).map(str::to_owned))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, None),
            Err(e) => return Err(SiemError::file(&path, e)),
        };
        Ok(Self { path, seq, uid })
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The digest of the last event delivered, when known.
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the cursor to `seq` (with the digest of that event, for a reader), durably.
    pub fn advance(&mut self, seq: u64, uid: &str) -> Result<(), SiemError> {
        let tmp = self.path.with_extension("cursor.tmp");
        let text = json!({ "seq": seq, "uid": uid }).to_string();
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        });
        written.and_then(|()| std::fs::rename(&tmp, &self.path)).map_err(|e| SiemError::file(&self.path, e))?;
        if let Some(dir) = self.path.parent() {
            // The rename itself must survive a power cut.
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        self.seq = seq;
        self.uid = Some(uid.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_reopening_and_a_corrupt_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cursor::open(dir.path(), "s").unwrap();
        assert_eq!(c.seq(), 0);
        c.advance(42, "ab").unwrap();
        assert_eq!(Cursor::open(dir.path(), "s").unwrap().seq(), 42);
        std::fs::write(dir.path().join("s.cursor"), "{").unwrap();
        assert!(Cursor::open(dir.path(), "s").is_err());
    }
}
