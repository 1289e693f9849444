//! Evidence a party who does not trust the gateway host can check.
//!
//! The audit log's hash chain shows an edit, but a host that rewrites the whole log, or cuts its
//! tail, can recompute the chain. A signed checkpoint fixes the log's size and the Merkle root
//! of its event digests at a time; kept outside the host, it lets anyone with the public key
//! tell whether the log still holds exactly those events (`custos audit verify --checkpoint`),
//! whether one event is in it (an inclusion proof) and whether a later checkpoint extends an
//! earlier one (a consistency proof).
//!
//! # Layout
//!
//! - `merkle.rs`: RFC 6962 trees, inclusion and consistency proofs, and their verification.
//! - `checkpoint.rs`: [`Checkpoint`] (its signed message and JSON), [`CheckpointKey`].
//! - `error.rs`: [`EvidenceError`].

mod checkpoint;
mod error;
pub mod merkle;

pub use checkpoint::{key_id, message, Checkpoint, CheckpointKey, CONTEXT};
pub use error::EvidenceError;
