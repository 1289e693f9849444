//! Fuzz target `leak_guard`: the leak guard's scan of one JSON-RPC message, whatever its bytes.
//! The body, and its invariants, are in `custos_secrets::fuzzing::scan_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    custos_secrets::fuzzing::scan_message(data);
});
