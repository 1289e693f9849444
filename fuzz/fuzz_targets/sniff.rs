//! Fuzz target `sniff`: sniffing the prefix of an oversized frame. The body, and its invariants, are in `custos_mcp::fuzzing::sniff_prefix`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    custos_mcp::fuzzing::sniff_prefix(data);
});
