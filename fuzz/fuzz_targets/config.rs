//! Fuzz target `config`: the config loader. The body, and its invariants, are in `custos_config::fuzzing::load`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    custos_config::fuzzing::load(data);
});
