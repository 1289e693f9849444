//! Fuzz target `frames`: JSON-RPC framing and message parsing. The body, and its invariants, are in `custos_mcp::fuzzing::frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    custos_mcp::fuzzing::frames(data);
});
