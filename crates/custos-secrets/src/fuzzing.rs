//! Body of the fuzz target that exercises this crate.
//!
//! The function is what the `cargo fuzz` target `leak_guard` in `fuzz/fuzz_targets/` runs. It
//! lives here, not in the fuzz crate, so that `cargo test` replays the committed corpus
//! (`fuzz/corpus/leak_guard/`) through exactly the same code without a fuzzing engine.

use std::sync::OnceLock;

use zeroize::Zeroizing;

use crate::{Fingerprinter, LeakGuard, SecretValue};

/// The secret the fuzzed guard holds. The corpus carries it raw, escaped and split, so the
/// fuzzer starts from messages that leak it.
pub const FUZZ_SECRET: &str = "s3cr3t-FUZZ-value-0123456789";

/// Built once per process: the guard compiles a regex, far slower than one scan.
fn guard() -> Option<&'static LeakGuard> {
    static GUARD: OnceLock<Option<LeakGuard>> = OnceLock::new();
    GUARD
        .get_or_init(|| {
            let value = SecretValue::from_utf8("fuzz", Zeroizing::new(FUZZ_SECRET.as_bytes().to_vec())).ok()?;
            Some(LeakGuard::new(vec![("fuzz".to_owned(), value)], Fingerprinter::from_key(&[7; 32])))
        })
        .as_ref()
}

/// The body of fuzz target `leak_guard`; asserts the invariants: no panic, whatever the bytes
/// (any size, nesting, invalid UTF-8, not JSON); a message whose bytes hold the secret is
/// always cleaned; what is forwarded instead never holds the secret's bytes, and its hits
/// are at most [`crate::MAX_HITS`].
pub fn scan_message(data: &[u8]) {
    let guard = guard();
    assert!(guard.is_some(), "the fuzzing guard builds");
    let Some(guard) = guard else { return };
    let secret = FUZZ_SECRET.as_bytes();
    let holds = |bytes: &[u8]| bytes.windows(secret.len()).any(|w| w == secret);
    match guard.scan_message(data) {
        None => assert!(!holds(data), "a message holding the secret is cleaned"),
        Some(cleaned) => {
            assert!(!holds(&cleaned.raw), "the cleaned message does not hold the secret");
            assert!(cleaned.hits.len() <= crate::MAX_HITS, "hits are bounded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_inputs_pass() {
        let leak = format!("{{\"a\":\"{FUZZ_SECRET}\"}}");
        for input in [&b""[..], b"{}", b"\xff", leak.as_bytes(), FUZZ_SECRET.as_bytes()] {
            scan_message(input);
        }
    }
}
