//! Signed checkpoints: "the log had `size` events whose Merkle root is `root` at `time_ms`",
//! signed with Ed25519 so that someone holding only the public key can hold the host to it.
//!
//! The signed message is ASCII, one field per line, each line ending in `\n`:
//!
//! ```text
//! custos-checkpoint-v1
//! <size, decimal>
//! <root, 64 lowercase hex digits>
//! <time_ms, decimal>
//! ```
//!
//! A checkpoint is kept and published as JSON: `{"version": 1, "size": N, "root": HEX,
//! "time_ms": T, "key_id": HEX, "signature": BASE64}`, where `key_id` is the first 16 hex digits
//! of SHA-256 of the 32-byte public key and `signature` the standard base64 of the 64-byte
//! Ed25519 signature over the message.

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::EvidenceError;
use crate::merkle::Hash;

/// The first line of every signed checkpoint message.
pub const CONTEXT: &str = "custos-checkpoint-v1";

/// A signed statement of the log's size and Merkle root at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub version: u32,
    pub size: u64,
    /// Hex of the root.
    pub root: String,
    pub time_ms: i64,
    pub key_id: String,
    /// Standard base64 of the Ed25519 signature over [`message`].
    pub signature: String,
}

/// The bytes a checkpoint's signature covers.
pub fn message(size: u64, root: &Hash, time_ms: i64) -> String {
    format!("{CONTEXT}\n{size}\n{}\n{time_ms}\n", hex::encode(root))
}

/// The key checkpoints are signed with: Ed25519 from a 32-byte seed (derived from the
/// deployment's master key, so it needs no storage of its own).
pub struct CheckpointKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey").field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

impl CheckpointKey {
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, EvidenceError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| EvidenceError::Key)?;
        Ok(Self { pair })
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    pub fn key_id(&self) -> String {
        key_id(self.public_key())
    }

    /// A checkpoint of `size` events with `root`, at `time_ms`.
    pub fn sign(&self, size: u64, root: &Hash, time_ms: i64) -> Checkpoint {
        let signature = self.pair.sign(message(size, root, time_ms).as_bytes());
        Checkpoint {
            version: 1,
            size,
            root: hex::encode(root),
            time_ms,
            key_id: self.key_id(),
            signature: base64::engine::general_purpose::STANDARD.encode(signature.as_ref()),
        }
    }
}

/// The id of a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(Sha256::digest(public_key).get(..8).unwrap_or_default())
}

impl Checkpoint {
    /// Reads a checkpoint's JSON.
    pub fn parse(text: &str) -> Result<Self, EvidenceError> {
        let c: Checkpoint =
            serde_json::from_str(text).map_err(|e| EvidenceError::Malformed { reason: e.to_string() })?;
        if c.version != 1 {
            return Err(EvidenceError::Malformed { reason: format!("version `{}` is not supported", c.version) });
        }
        c.root_hash()?;
        Ok(c)
    }

    /// The root as bytes.
    pub fn root_hash(&self) -> Result<Hash, EvidenceError> {
        hex::decode(&self.root)
            .ok()
            .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
            .ok_or_else(|| EvidenceError::Malformed { reason: format!("`{}` is not a 32-byte hex root", self.root) })
    }

    /// Checks the signature with `public_key` (32 bytes).
    pub fn verify_signature(&self, public_key: &[u8]) -> Result<(), EvidenceError> {
        if key_id(public_key) != self.key_id {
            return Err(EvidenceError::WrongKey { key_id: self.key_id.clone(), expected: key_id(public_key) });
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(&self.signature)
            .map_err(|_| EvidenceError::Malformed { reason: "the signature is not base64".into() })?;
        let message = message(self.size, &self.root_hash()?, self.time_ms);
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(message.as_bytes(), &signature)
            .map_err(|_| EvidenceError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_with_its_key_only_and_only_as_signed() {
        let key = CheckpointKey::from_seed(&[7; 32]).unwrap();
        let c = key.sign(10, &[1; 32], 1_000);
        let json = serde_json::to_string(&c).unwrap();
        let read = Checkpoint::parse(&json).unwrap();
        read.verify_signature(key.public_key()).unwrap();
        let other = CheckpointKey::from_seed(&[8; 32]).unwrap();
        assert!(matches!(read.verify_signature(other.public_key()), Err(EvidenceError::WrongKey { .. })));
        let mut grown = read.clone();
        grown.size = 11;
        assert!(matches!(grown.verify_signature(key.public_key()), Err(EvidenceError::BadSignature)));
        let mut moved = read;
        moved.root = hex::encode([2; 32]);
        assert!(matches!(moved.verify_signature(key.public_key()), Err(EvidenceError::BadSignature)));
        assert!(Checkpoint::parse("{\"version\":2}").is_err());
    }
}
