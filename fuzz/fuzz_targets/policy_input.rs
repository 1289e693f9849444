//! Fuzz target `policy_input`: tool arguments of any JSON shape through the policy engine. The body, and its invariants, are in `custos_policy::fuzzing::decide`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    custos_policy::fuzzing::decide(data);
});
