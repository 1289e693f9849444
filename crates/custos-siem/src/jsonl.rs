//! A JSON lines file: one event a line, rotated by size and by age.
//!
//! A batch is acknowledged once its lines are written and synced to disk. Rotation renames
//! `events.jsonl` to `events.jsonl.1` (the older ones moving up to `.keep`, the oldest dropped)
//! before a batch that would start in a file already at `max_bytes`, or older than `max_age`;
//! a batch is never split across two files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::{Record, SiemError, Sink};

/// When to start a new file, and how many old ones to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// A file this large or larger is rotated before the next batch.
    pub max_bytes: u64,
    /// A file first written this long ago is rotated before the next batch; `None`: never.
    pub max_age: Option<Duration>,
    /// Rotated files kept (`.1` newest … `.keep` oldest); 0: the old file is dropped.
    pub keep: u32,
}

/// The JSON lines sink.
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    rotation: Rotation,
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    /// When the current file was first written (its creation time, or when this process found it).
    started: SystemTime,
}

impl JsonlSink {
    /// Opens (or creates) `path` for appending; its folder must exist or be makeable.
    pub fn open(path: &Path, rotation: Rotation) -> Result<Self, SiemError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| SiemError::file(dir, e))?;
        }
        let mut sink = Self { path: path.to_owned(), rotation, file: None, size: 0, started: SystemTime::now() };
        sink.reopen()?;
        Ok(sink)
    }

    fn reopen(&mut self) -> Result<(), SiemError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| SiemError::file(&self.path, e))?;
        let meta = file.metadata().map_err(|e| SiemError::file(&self.path, e))?;
        self.size = meta.len();
        self.started = meta.created().unwrap_or_else(|_| SystemTime::now());
        self.file = Some(file);
        Ok(())
    }

    fn due(&self) -> bool {
        if self.size == 0 {
            return false;
        }
        let old = self.rotation.max_age.is_some_and(|age| self.started.elapsed().unwrap_or_default() >= age);
        self.size >= self.rotation.max_bytes || old
    }

    /// `events.jsonl` → `events.jsonl.1`, `.1` → `.2`, …; the one past `keep` is removed.
    fn rotate(&mut self) -> Result<(), SiemError> {
        self.file = None;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let oldest = numbered(self.rotation.keep.max(1));
        match std::fs::remove_file(&oldest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SiemError::file(&oldest, e)),
        }
        for n in (1..self.rotation.keep).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1)).map_err(|e| SiemError::file(&from, e))?;
            }
        }
        if self.rotation.keep == 0 {
            std::fs::remove_file(&self.path).map_err(|e| SiemError::file(&self.path, e))?;
        } else {
            std::fs::rename(&self.path, numbered(1)).map_err(|e| SiemError::file(&self.path, e))?;
        }
        self.reopen()?;
        // A new file is young whatever its inode's creation time says.
        self.started = SystemTime::now();
        Ok(())
    }
}

impl Sink for JsonlSink {
    fn deliver(&mut self, batch: &[Record]) -> Result<(), SiemError> {
        if self.file.is_none() {
            self.reopen()?;
        }
        if self.due() {
            self.rotate()?;
        }
        let mut text = String::with_capacity(batch.iter().map(|r| r.json.len() + 1).sum());
        for r in batch {
            text.push_str(&r.json);
            text.push('\n');
        }
        let file = self.file.as_mut().ok_or_else(|| SiemError::file(&self.path, "not open"))?;
        let written = file.write_all(text.as_bytes()).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Reopened on the next attempt; a torn line may be left, and the batch is written
            // again after it.
            self.file = None;
            return Err(SiemError::file(&self.path, e));
        }
        self.size += text.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> Record {
        Record {
            seq,
            uid: format!("{seq:064x}"),
            time_ms: 0,
            kind: "run.started",
            syslog_severity: 6,
            json: format!("{{\"seq\":{seq}}}"),
        }
    }

    #[test]
    fn files_rotate_by_size_and_only_keep_so_many() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let rotation = Rotation { max_bytes: 20, max_age: None, keep: 2 };
        let mut sink = JsonlSink::open(&path, rotation).unwrap();
        for seq in 1..=8 {
            sink.deliver(&[record(seq), record(seq + 100)]).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "{\"seq\":8}\n{\"seq\":108}\n");
        assert_eq!(read(&dir.path().join("events.jsonl.1")), "{\"seq\":7}\n{\"seq\":107}\n");
        assert_eq!(read(&dir.path().join("events.jsonl.2")), "{\"seq\":6}\n{\"seq\":106}\n");
        assert!(!dir.path().join("events.jsonl.3").exists());
    }

    #[test]
    fn files_rotate_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let rotation = Rotation { max_bytes: u64::MAX, max_age: Some(Duration::ZERO), keep: 1 };
        let mut sink = JsonlSink::open(&path, rotation).unwrap();
        sink.deliver(&[record(1)]).unwrap();
        sink.deliver(&[record(2)]).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("e.jsonl.1")).unwrap(), "{\"seq\":1}\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"seq\":2}\n");
    }
}
