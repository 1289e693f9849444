//! Replays the committed fuzz corpus (`fuzz/corpus/`) through the fuzz target bodies (each a
//! `fuzzing` function of the crate it exercises), so a regression a fuzzer once found fails
//! `cargo test` without a fuzzing engine. One file for every target: the binary's tests see
//! every crate.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test helpers: any failure should fail the test")]

use std::path::PathBuf;

/// Runs every file of `fuzz/corpus/<target>/` through `body`; fails naming each file that
/// broke an invariant.
fn replay(target: &str, body: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 12, "the {target} corpus has too few inputs: {}", files.len());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            std::panic::catch_unwind(|| body(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "fuzz corpus inputs broke an invariant: {failed:#?}");
}

#[test]
fn frames_corpus() {
    replay("frames", custos_mcp::fuzzing::frames);
}

#[test]
fn sniff_corpus() {
    replay("sniff", custos_mcp::fuzzing::sniff_prefix);
}

#[test]
fn config_corpus() {
    replay("config", custos_config::fuzzing::load);
}

#[test]
fn policy_input_corpus() {
    replay("policy_input", custos_policy::fuzzing::decide);
}

#[test]
fn leak_guard_corpus() {
    replay("leak_guard", custos_secrets::fuzzing::scan_message);
}

#[test]
fn scan_result_corpus() {
    replay("scan_result", custos_detect::fuzzing::scan);
}
