//! [`EvidenceError`].

/// What can be wrong with evidence; messages name the problem, never key material.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("the checkpoint key cannot be made")]
    Key,
    #[error("the checkpoint is malformed: {reason}")]
    Malformed { reason: String },
    #[error("the checkpoint was signed by key `{key_id}`, not by this key (`{expected}`)")]
    WrongKey { key_id: String, expected: String },
    #[error("the checkpoint's signature does not verify: it was not signed as it reads")]
    BadSignature,
}
