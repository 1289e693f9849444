//! Body of the fuzz target that exercises this crate.
//!
//! The function is what the `cargo fuzz` target `config` in `fuzz/fuzz_targets/` runs. It lives
//! here, not in the fuzz crate, so that `cargo test` replays the committed corpus
//! (`fuzz/corpus/config/`) through exactly the same code without a fuzzing engine.

use std::path::Path;

use crate::Config;

/// The body of fuzz target `config`; asserts the invariants: no panic, whatever the text;
/// an error names the file it was given and is one non-empty message; a config that loads
/// loads again to the same agents and servers (validation depends on nothing but the text).
///
/// Bytes that are not UTF-8 are loaded lossily, so the fuzzer's mutations still reach the
/// TOML parser instead of stopping at the encoding.
pub fn load(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // A path that does not exist: loading from text must never touch the filesystem.
    let path = Path::new("/custos-fuzz/custos.toml");
    match Config::from_toml(path, &text) {
        Ok(config) => {
            assert_eq!(config.path, path, "the config remembers where it came from");
            let again = Config::from_toml(path, &text);
            assert!(again.is_ok(), "loading is deterministic");
            if let Ok(again) = again {
                assert_eq!(again.agents, config.agents, "loading is deterministic");
                assert_eq!(again.servers.len(), config.servers.len(), "loading is deterministic");
            }
            if let Some(default) = &config.default_agent {
                assert!(config.agent(&default.0).is_some(), "the default agent is a configured agent");
            }
        }
        Err(err) => {
            let message = err.to_string();
            assert!(!message.is_empty(), "an error says something");
            assert!(message.contains("custos.toml"), "an error names the file: {message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_inputs_pass() {
        for input in [&b""[..], b"[", b"\xff", b"agents = 3", b"[[agents]]\nid = \"a\"\n"] {
            load(input);
        }
    }
}
