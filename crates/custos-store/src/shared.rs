//! Short-lived state that the gateways on one database share: the abuse detectors' rate
//! windows, run budgets, loop streaks and replay memory, so that a limit holds across every
//! replica behind a load balancer and not once per replica.
//!
//! A value is a text (the detectors write JSON) under a key, with a time after which it is
//! gone. [`SqlStore::update_shared`] reads some keys, lets the caller change them, and writes
//! them back in one transaction. On PostgreSQL that transaction holds an advisory lock per key,
//! taken in key order (so two updates cannot deadlock), never the chain's lock: replicas that
//! touch different agents never wait for each other, and none waits for an audit append; and it
//! commits without waiting for a flush (`synchronous_commit` off for it alone). On SQLite it is
//! an ordinary write transaction, one writer at a time.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::sql::{Arg, DbError, Sql};
use crate::sqlite::SqlStore;
use crate::StoreError;

/// One key's value, and the time (milliseconds since the Unix epoch) it is gone at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedValue {
    pub value: String,
    pub expires_ms: i64,
}

/// The first half of every advisory lock [`SqlStore::update_shared`] takes ("SHRD" in ASCII):
/// the two-key lock space, apart from the chain's and the migrations' one-key locks.
const LOCK_CLASS: i32 = 0x5348_5244;

impl SqlStore {
    /// Reads the values at `keys` (a key whose value expired reads as `None`), passes them, in
    /// the order of `keys`, to `update` with the time now (milliseconds since the Unix epoch,
    /// taken once the keys are locked), and writes back what `update` leaves: a value is
    /// stored, a `None` removed. Atomic, and isolated from every other update of the same keys,
    /// whichever gateway makes it. Fails (and changes nothing) when the database cannot be
    /// read or written.
    pub fn update_shared<T>(
        &mut self,
        keys: &[String],
        update: impl FnOnce(i64, &mut [Option<SharedValue>]) -> T,
    ) -> Result<T, StoreError> {
        let mut order: Vec<&String> = keys.iter().collect();
        order.sort();
        order.dedup();
        // Not flushed at commit: these are counters that only ever make limits lenient when
        // lost (a database that crashes forgets the last moments' counts, as a restarted
        // gateway forgets its own), and waiting for a flush per call would serialize an agent's
        // calls on its disk. The audit log's own commits stay synchronous.
        let locks: String = std::iter::once("SET LOCAL synchronous_commit TO OFF;".to_owned())
            .chain(order.iter().map(|key| format!("SELECT pg_advisory_xact_lock({LOCK_CLASS}, {});", lock_id(key))))
            .collect();
        self.in_transaction_under(&locks, |db, path| {
            let failed = |e: DbError| StoreError::Write { path: path.to_owned(), reason: e.to_string() };
            let now = now_ms();
            let mut values = read(db, keys, now).map_err(failed)?;
            let existed: Vec<bool> = values.iter().map(Option::is_some).collect();
            let value = update(now, &mut values);
            write(db, keys, &values, &existed).map_err(failed)?;
            Ok(value)
        })
    }

    /// Removes every value that has expired; returns how many. Expired values already read as
    /// absent: this only gives their room back.
    pub fn sweep_shared(&mut self) -> Result<u64, StoreError> {
        // No key lock: an update that holds one rewrites its row with a later expiry, which a
        // delete of expired rows then leaves alone.
        self.in_transaction_under("", |db, path| {
            db.execute("DELETE FROM shared_state WHERE expires_ms <= ?1", &[Arg::Int(now_ms())])
                .map_err(|e| StoreError::Write { path: path.to_owned(), reason: e.to_string() })
        })
    }
}

/// The values at `keys`, in order; `None` for a key without one or whose value expired.
fn read(db: &mut dyn Sql, keys: &[String], now: i64) -> Result<Vec<Option<SharedValue>>, DbError> {
    let mut values = vec![None; keys.len()];
    if keys.is_empty() {
        return Ok(values);
    }
    let marks = (1..=keys.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    let args: Vec<Arg<'_>> = keys.iter().map(Arg::from).collect();
    let rows = db.query(&format!("SELECT key, value, expires_ms FROM shared_state WHERE key IN ({marks})"), &args)?;
    for row in rows {
        let (key, value, expires_ms) = (row.text(0)?, row.text(1)?, row.int(2)?);
        if expires_ms <= now {
            continue;
        }
        for (slot, _) in values.iter_mut().zip(keys).filter(|(_, k)| **k == key) {
            *slot = Some(SharedValue { value: value.clone(), expires_ms });
        }
    }
    Ok(values)
}

/// Stores every value `update` left, and removes the keys it emptied.
fn write(db: &mut dyn Sql, keys: &[String], values: &[Option<SharedValue>], existed: &[bool]) -> Result<(), DbError> {
    let mut upserts = Vec::new();
    let mut args: Vec<Arg<'_>> = Vec::new();
    for ((key, value), existed) in keys.iter().zip(values).zip(existed) {
        match value {
            Some(v) => {
                let n = args.len();
                upserts.push(format!("(?{}, ?{}, ?{})", n + 1, n + 2, n + 3));
                args.extend([Arg::from(key), Arg::from(&v.value), Arg::Int(v.expires_ms)]);
            }
            None if *existed => {
                db.execute("DELETE FROM shared_state WHERE key = ?1", &[Arg::from(key)])?;
            }
            None => {}
        }
    }
    if upserts.is_empty() {
        return Ok(());
    }
    db.execute(
        &format!(
            "INSERT INTO shared_state (key, value, expires_ms) VALUES {} \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_ms = excluded.expires_ms",
            upserts.join(", ")
        ),
        &args,
    )?;
    Ok(())
}

/// A key's lock: the same on every replica and every build (FNV-1a over its bytes). Two keys
/// that share one merely wait for each other.
fn lock_id(key: &str) -> i32 {
    let hash = key.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    i32::from_ne_bytes(hash.to_ne_bytes())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use std::thread;

    use super::*;
    use crate::conformance::on_both_stores;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Adds one to the counter at `key`, kept for a minute; returns the new count.
    fn bump(store: &mut SqlStore, key: &str) -> u64 {
        store
            .update_shared(&keys(&[key]), |now, values| {
                let n = values[0].as_ref().map_or(0, |v| v.value.parse::<u64>().unwrap()) + 1;
                values[0] = Some(SharedValue { value: n.to_string(), expires_ms: now + 60_000 });
                n
            })
            .unwrap()
    }

    #[test]
    fn lock_ids_are_stable_across_builds() {
        // FNV-1a of "", "a": the published test vectors, as signed 32-bit integers.
        assert_eq!(lock_id(""), i32::from_ne_bytes(0x811c_9dc5_u32.to_ne_bytes()));
        assert_eq!(lock_id("a"), i32::from_ne_bytes(0xe40c_292c_u32.to_ne_bytes()));
    }

    on_both_stores! {
        fn values_are_read_changed_and_written_back_in_the_order_of_the_keys(path: DbLocation) {
            let mut store = SqlStore::open(&path).unwrap();
            let ks = keys(&["b", "a", "c"]);
            let seen = store
                .update_shared(&ks, |now, values| {
                    assert!(values.iter().all(Option::is_none));
                    values[0] = Some(SharedValue { value: "B".into(), expires_ms: now + 60_000 });
                    values[1] = Some(SharedValue { value: "A".into(), expires_ms: now + 60_000 });
                    now
                })
                .unwrap();
            assert!(seen > 0);
            // Another connection sees them; `c` was never written, `a` is removed.
            let mut other = SqlStore::open(&path).unwrap();
            other
                .update_shared(&ks, |_, values| {
                    let got: Vec<Option<&str>> = values.iter().map(|v| v.as_ref().map(|v| v.value.as_str())).collect();
                    assert_eq!(got, [Some("B"), Some("A"), None]);
                    values[1] = None;
                })
                .unwrap();
            store
                .update_shared(&ks, |_, values| {
                    assert_eq!(values[0].as_ref().unwrap().value, "B");
                    assert!(values[1].is_none() && values[2].is_none());
                })
                .unwrap();
        }

        fn an_expired_value_reads_as_gone_and_is_swept(path: DbLocation) {
            let mut store = SqlStore::open(&path).unwrap();
            store
                .update_shared(&keys(&["old", "new"]), |now, values| {
                    values[0] = Some(SharedValue { value: "1".into(), expires_ms: now - 1 });
                    values[1] = Some(SharedValue { value: "2".into(), expires_ms: now + 60_000 });
                })
                .unwrap();
            store
                .update_shared(&keys(&["old", "new"]), |_, values| {
                    assert!(values[0].is_none());
                    assert_eq!(values[1].as_ref().unwrap().value, "2");
                })
                .unwrap();
            assert_eq!(store.sweep_shared().unwrap(), 1);
            assert_eq!(store.sweep_shared().unwrap(), 0);
            assert_eq!(bump(&mut store, "new"), 3);
        }

        fn updates_from_many_connections_never_lose_a_count(path: DbLocation) {
            drop(SqlStore::open(&path).unwrap());
            let writers: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    thread::spawn(move || {
                        let mut store = SqlStore::open(&path).unwrap();
                        for _ in 0..25 {
                            bump(&mut store, "counter");
                            bump(&mut store, "other");
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            let mut store = SqlStore::open(&path).unwrap();
            assert_eq!(bump(&mut store, "counter"), 101);
            assert_eq!(bump(&mut store, "other"), 101);
        }
    }
}
