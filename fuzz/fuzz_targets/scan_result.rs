//! Fuzz target `scan_result`: the output rules on a `tools/call` result of any JSON shape.
//! The body, and its invariants, are in `custos_detect::fuzzing::scan`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    custos_detect::fuzzing::scan(data);
});
