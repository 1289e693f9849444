//! `custos audit checkpoint / checkpoint-key / proof / consistency` and `verify --checkpoint`:
//! the log held to signed checkpoints (`custos-evidence`).
//!
//! Every command reads the log once, a page at a time: `checkpoint` and `verify --checkpoint` into
//! a Merkle frontier, `proof` and `consistency` into the roots of the subtrees their proof names
//! ([`merkle::RangeRoots`]), so memory does not grow with the log. `consistency --proof` checks a
//! proof printed earlier without the log at all. The leaves are the events' digests in `seq` order, as stored; `audit verify` has already
//! recomputed each from its body, so a root over them stands for the bodies too. Exit codes: 0
//! the evidence holds, 3 it does not (a checkpoint the log no longer matches, as `audit verify`
//! for a broken chain), 2 usage.

use std::ops::Range;
use std::path::Path;

use custos_evidence::merkle::{self, Frontier, Hash};
use custos_evidence::{Checkpoint, CheckpointKey};
use custos_store::Store;
use serde_json::json;

use crate::cli::Location;
use crate::context;
use crate::Failure;

/// What one pass over the log's first `size` events gives a proof: the tree's root, the roots of
/// the proof's subtrees, and the leaf hash at `leaf_at`.
struct Streamed {
    root: Hash,
    proof: Vec<Hash>,
    leaf: Option<Hash>,
}

/// Reads the log's first `size` events once; fails (as evidence not held) when it has fewer.
fn stream(store: &dyn Store, size: u64, ranges: &[Range<u64>], leaf_at: Option<u64>) -> Result<Streamed, Failure> {
    let (mut tree, mut roots, mut leaf) = (Frontier::new(), merkle::RangeRoots::new(ranges), None);
    crate::checkpoints::each_leaf(store, 0, size, |h| {
        if leaf_at == Some(tree.size()) {
            leaf = Some(h);
        }
        tree.push(h);
        roots.push(h);
    })
    .map_err(Failure::runtime)?;
    if tree.size() < size {
        return Err(Failure::check(format!("the log has {} events, fewer than {size}: it was truncated", tree.size())));
    }
    let proof = roots.finish().ok_or_else(|| Failure::runtime("a proof's subtree was not read whole"))?;
    Ok(Streamed { root: tree.root(), proof, leaf })
}

/// How many events the log holds (sequence numbers are contiguous from 1; `audit verify` checks).
fn log_size(store: &dyn Store) -> Result<u64, Failure> {
    Ok(store.head().map_err(Failure::runtime)?.map_or(0, |(seq, _)| seq))
}

/// The public key to check checkpoints with: `hex_key`, or this deployment's own.
fn public_key(location: &Location, hex_key: Option<&str>) -> Result<Vec<u8>, Failure> {
    match hex_key {
        Some(hex_key) => {
            hex::decode(hex_key.trim()).map_err(|_| Failure::usage(format!("`{hex_key}` is not a hex public key")))
        }
        None => Ok(key(location)?.public_key().to_vec()),
    }
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

pub fn show_public_key(location: &Location) -> Result<(), Failure> {
    let key = key(location)?;
    println!(
        "{}",
        json!({ "public_key": hex::encode(key.public_key()), "key_id": key.key_id(), "algorithm": "Ed25519" })
    );
    Ok(())
}

pub fn proof(location: &Location, seq: u64, size: Option<u64>) -> Result<(), Failure> {
    let store = context::open_for_reading(location)?;
    let have = log_size(&store)?;
    let n = size.unwrap_or(have);
    if n > have {
        return Err(Failure::usage(format!("the log has {have} events, fewer than --size")));
    }
    let index = seq.checked_sub(1).filter(|i| *i < n).ok_or_else(|| {
        Failure::usage(format!("event {seq} is not among the {n} events of the tree (sequence numbers start at 1)"))
    })?;
    let ranges = merkle::inclusion_ranges(index, n).ok_or_else(|| Failure::runtime("no proof"))?;
    let tree = stream(&store, n, &ranges, Some(index))?;
    let leaf = tree.leaf.ok_or_else(|| Failure::runtime("no leaf"))?;
    println!(
        "{}",
        json!({
            "seq": seq, "index": index, "size": n,
            "leaf_hash": hex::encode(leaf), "root": hex::encode(tree.root),
            "path": tree.proof.iter().map(hex::encode).collect::<Vec<_>>(),
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
    let public = self::public_key(location, public_key)?;
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

/// A consistency proof as `custos audit consistency` prints it.
#[derive(Debug, serde::Deserialize)]
struct ProofFile {
    old_size: u64,
    new_size: u64,
    proof: Vec<String>,
}

fn read_proof(file: &Path) -> Result<ProofFile, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::usage(format!("cannot read the proof `{}`: {e}", file.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("`{}` is not a consistency proof: {e}", file.display())))
}

/// Shows that checkpoint `new` extends checkpoint `old`: with `proof_file`, from that proof alone
/// (no log needed: what an auditor holding only the checkpoints and the public key runs);
/// without, from a proof made now from the log, and printed.
pub fn consistency(
    location: &Location,
    old: &Path,
    new: &Path,
    proof_file: Option<&Path>,
    public_key: Option<&str>,
) -> Result<(), Failure> {
    let (old, new) = (read_checkpoint(old)?, read_checkpoint(new)?);
    let public = self::public_key(location, public_key)?;
    for c in [&old, &new] {
        c.verify_signature(&public).map_err(|e| Failure::check(format!("checkpoint of {} events: {e}", c.size)))?;
    }
    if old.size == 0 || old.size > new.size {
        return Err(Failure::usage(format!(
            "the old checkpoint ({} events) must be non-empty and no larger than the new one ({})",
            old.size, new.size
        )));
    }
    let proof = match proof_file {
        Some(file) => {
            let given = read_proof(file)?;
            if (given.old_size, given.new_size) != (old.size, new.size) {
                return Err(Failure::usage(format!(
                    "`{}` proves {} → {} events, the checkpoints are of {} and {}",
                    file.display(),
                    given.old_size,
                    given.new_size,
                    old.size,
                    new.size
                )));
            }
            given
                .proof
                .iter()
                .map(|h| {
                    hex::decode(h)
                        .ok()
                        .and_then(|b| Hash::try_from(b).ok())
                        .ok_or_else(|| Failure::usage(format!("`{}`: `{h}` is not a 32-byte hex hash", file.display())))
                })
                .collect::<Result<Vec<Hash>, Failure>>()?
        }
        None => {
            let store = context::open_for_reading(location)?;
            let ranges = merkle::consistency_ranges(old.size, new.size).ok_or_else(|| Failure::runtime("no proof"))?;
            stream(&store, new.size, &ranges, None)?.proof
        }
    };
    let (old_root, new_root) = (old.root_hash().map_err(Failure::usage)?, new.root_hash().map_err(Failure::usage)?);
    if !merkle::verify_consistency(old.size, new.size, &old_root, &new_root, &proof) {
        return Err(Failure::check(format!(
            "the first {} events are not the history both checkpoints signed: the log was rewritten",
            old.size
        )));
    }
    println!(
        "{}",
        json!({ "old_size": old.size, "new_size": new.size, "consistent": true,
                "proof": proof.iter().map(hex::encode).collect::<Vec<_>>() })
    );
    Ok(())
}
