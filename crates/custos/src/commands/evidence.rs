//! `custos audit checkpoint / checkpoint-key / proof / consistency` and `verify --checkpoint`:
//! the log held to signed checkpoints (`custos-evidence`).
//!
//! `checkpoint` and `verify --checkpoint` read the log a page at a time into a Merkle frontier;
//! `proof` and `consistency` hold the leaves of the tree they prove in memory (32 bytes an
//! event). The leaves are the events' digests in `seq` order, as stored; `audit verify` has already
//! recomputed each from its body, so a root over them stands for the bodies too. Exit codes: 0
//! the evidence holds, 3 it does not (a checkpoint the log no longer matches, as `audit verify`
//! for a broken chain), 2 usage.

use std::path::Path;

use custos_evidence::merkle::{self, Frontier, Hash};
use custos_evidence::{Checkpoint, CheckpointKey};
use custos_store::{EventQuery, Store};
use serde_json::json;

use crate::cli::Location;
use crate::context;
use crate::Failure;

/// The leaf hashes of the log's first `size` events (all when `None`), in order.
fn leaves(store: &dyn Store, size: Option<u64>) -> Result<Vec<Hash>, Failure> {
    let limit = size.map(|s| usize::try_from(s).unwrap_or(usize::MAX));
    let events = store.query(&EventQuery { limit, ..EventQuery::default() }).map_err(Failure::runtime)?;
    Ok(events.iter().map(|e| merkle::leaf_hash(e.hash.as_bytes())).collect())
}

/// This deployment's checkpoint key, from its master key (created if there is none yet).
fn key(location: &Location) -> Result<CheckpointKey, Failure> {
    let config = context::load_config(location)?;
    let master = crate::credentials::master_key(&config, true)?;
    CheckpointKey::from_seed(master.checkpoint_seed()).map_err(Failure::runtime)
}

fn read_checkpoint(file: &Path) -> Result<Checkpoint, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::usage(format!("cannot read the checkpoint `{}`: {e}", file.display())))?;
    Checkpoint::parse(&text).map_err(|e| Failure::usage(format!("`{}`: {e}", file.display())))
}

/// The frontier of the log's first `until` events (all with `u64::MAX`).
fn frontier(store: &dyn Store, until: u64) -> Result<Frontier, Failure> {
    let mut frontier = Frontier::new();
    crate::checkpoints::extend(store, &mut frontier, 0, until).map_err(Failure::runtime)?;
    Ok(frontier)
}

pub fn checkpoint(location: &Location, out: Option<&Path>) -> Result<(), Failure> {
    let key = key(location)?;
    let store = context::open_for_reading(location)?;
    let tree = frontier(&store, u64::MAX)?;
    let signed = key.sign(tree.size(), &tree.root(), custos_gateway::now_ms());
    let text = serde_json::to_string(&signed).map_err(Failure::runtime)?;
    if let Some(out) = out {
        std::fs::write(out, format!("{text}\n"))
            .map_err(|e| Failure::usage(format!("cannot write `{}`: {e}", out.display())))?;
    }
    println!("{text}");
    Ok(())
}

pub fn public_key(location: &Location) -> Result<(), Failure> {
    let key = key(location)?;
    println!(
        "{}",
        json!({ "public_key": hex::encode(key.public_key()), "key_id": key.key_id(), "algorithm": "Ed25519" })
    );
    Ok(())
}

pub fn proof(location: &Location, seq: u64, size: Option<u64>) -> Result<(), Failure> {
    let store = context::open_for_reading(location)?;
    let leaves = leaves(&store, size)?;
    let n = u64::try_from(leaves.len()).unwrap_or(u64::MAX);
    if size.is_some_and(|s| s > n) {
        return Err(Failure::usage(format!("the log has {n} events, fewer than --size")));
    }
    let index = seq.checked_sub(1).filter(|i| *i < n).ok_or_else(|| {
        Failure::usage(format!("event {seq} is not among the {n} events of the tree (sequence numbers start at 1)"))
    })?;
    let at = usize::try_from(index).map_err(Failure::runtime)?;
    let path = merkle::inclusion_proof(&leaves, at).ok_or_else(|| Failure::runtime("no proof"))?;
    let leaf = leaves.get(at).ok_or_else(|| Failure::runtime("no leaf"))?;
    println!(
        "{}",
        json!({
            "seq": seq, "index": index, "size": n,
            "leaf_hash": hex::encode(leaf), "root": hex::encode(merkle::root(&leaves)),
            "path": path.iter().map(hex::encode).collect::<Vec<_>>(),
        })
    );
    Ok(())
}

/// Whether `checkpoint` holds for `store`: signed with `public`, and the log's first `size`
/// events still have its root. `Ok(Err(why))` when it does not; `Err` when the log cannot be read.
pub fn holds(store: &dyn Store, checkpoint: &Checkpoint, public: &[u8]) -> Result<Result<(), String>, Failure> {
    if let Err(e) = checkpoint.verify_signature(public) {
        return Ok(Err(e.to_string()));
    }
    let tree = frontier(store, checkpoint.size)?;
    let have = tree.size();
    if have < checkpoint.size {
        return Ok(Err(format!("the log has {have} events, the checkpoint {}: it was truncated", checkpoint.size)));
    }
    let root = hex::encode(tree.root());
    if root != checkpoint.root {
        return Ok(Err(format!(
            "the root of the log's first {} events is {root}, the checkpoint's {}: events were rewritten",
            checkpoint.size, checkpoint.root
        )));
    }
    Ok(Ok(()))
}

/// Checks `file`'s signature with `public_key` (hex) or this deployment's key, and that the log's
/// first `size` events still have its root.
pub fn verify_checkpoint(
    location: &Location,
    file: &Path,
    public_key: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let checkpoint = read_checkpoint(file)?;
    let public = match public_key {
        Some(hex_key) => {
            hex::decode(hex_key.trim()).map_err(|_| Failure::usage(format!("`{hex_key}` is not a hex public key")))?
        }
        None => key(location)?.public_key().to_vec(),
    };
    let fail = |why: String| {
        if json {
            println!("{}", json!({ "checkpoint": false, "size": checkpoint.size, "problem": why }));
        } else {
            println!("CHECKPOINT NOT HELD: {why}");
        }
        Err(Failure::check(""))
    };
    let store = context::open_for_reading(location)?;
    if let Err(why) = holds(&store, &checkpoint, &public)? {
        return fail(why);
    }
    if json {
        println!("{}", json!({ "checkpoint": true, "size": checkpoint.size, "root": checkpoint.root }));
    } else {
        println!("CHECKPOINT HELD: the log's first {} events have root {}", checkpoint.size, checkpoint.root);
    }
    Ok(())
}

pub fn consistency(location: &Location, old: &Path, new: &Path) -> Result<(), Failure> {
    let (old, new) = (read_checkpoint(old)?, read_checkpoint(new)?);
    let key = key(location)?;
    for c in [&old, &new] {
        c.verify_signature(key.public_key())
            .map_err(|e| Failure::check(format!("checkpoint of {} events: {e}", c.size)))?;
    }
    if old.size == 0 || old.size > new.size {
        return Err(Failure::usage(format!(
            "the old checkpoint ({} events) must be non-empty and no larger than the new one ({})",
            old.size, new.size
        )));
    }
    let store = context::open_for_reading(location)?;
    let leaves = leaves(&store, Some(new.size))?;
    let old_at = usize::try_from(old.size).map_err(Failure::runtime)?;
    let proof = merkle::consistency_proof(&leaves, old_at)
        .ok_or_else(|| Failure::check(format!("the log has fewer than {} events: it was truncated", new.size)))?;
    let (old_root, new_root) = (old.root_hash().map_err(Failure::usage)?, new.root_hash().map_err(Failure::usage)?);
    if !merkle::verify_consistency(old.size, new.size, &old_root, &new_root, &proof) {
        return Err(Failure::check(format!(
            "the log's first {} events are not the history both checkpoints signed: it was rewritten",
            new.size
        )));
    }
    println!(
        "{}",
        json!({ "old_size": old.size, "new_size": new.size, "consistent": true,
                "proof": proof.iter().map(hex::encode).collect::<Vec<_>>() })
    );
    Ok(())
}
