//! Custos content rules: what in an MCP tool descriptor or a tool result is an attack on the
//! model that reads it.
//!
//! A descriptor is *poisoned* when it carries instructions the user never sees (hidden in the
//! description, a parameter's description, an enum value, or invisible characters), asks for
//! secrets, or tells the model to send data out; it *shadows* when it talks about other
//! servers' tools. A result carries *injection* when it addresses the model, hides text, or
//! holds a URL built to leak the conversation. Each rule has an id ([`rules()`]) that its
//! findings carry, and findings are [`custos_core::Finding`]s: one per rule per descriptor or
//! result, with the matched text (bounded) as evidence, never the whole text.
//!
//! Pure: no I/O, no clock, no async. The patterns are compiled once, on first use.
//!
//! # Layout
//!
//! - `rules.rs`: the rule table ([`RuleInfo`], [`rules()`]) and the rule ids ([`ids`]).
//! - `descriptor.rs`: [`scan_descriptor`]: which strings of a descriptor are read, and
//!   shadowing (mentions of other servers' tools).
//! - `output.rs`: [`scan_result`], [`redact_result`], [`scan_output_text`]: which texts of a
//!   result are read, and redaction.
//! - `patterns.rs`: the phrase patterns of the instruction, credential, exfiltration and
//!   cross-tool rules, and the matcher that runs them.
//! - `exfil.rs`: the `exfil_url` rule for results (markdown images, template URLs, "visit this
//!   URL with the conversation").
//! - `decode.rs`: [`decode`]: the text the phrase rules read (NFKC, confusables folded,
//!   invisible characters removed, tag characters and encoded segments decoded).
//! - `parts.rs`: [`descriptor_parts`]: every string of a descriptor a model is shown.
//! - `text.rs`: invisible characters: which are suspect (read on the raw text), and their
//!   evidence.
//! - `found.rs`: one finding per rule, in table order.
//!
//! The detection corpus in `tests/detection/` (benign and malicious descriptors and results)
//! is run by `tests/corpus.rs`, which prints each rule's precision and recall.
//! `examples/decode_cost.rs` measures what decoding costs (`cargo run --release -p
//! custos-detect --example decode_cost`).

mod classify;
mod concepts;
mod decode;
mod descriptor;
mod exfil;
pub mod features;
mod found;
pub mod fuzzing;
pub mod model;
mod output;
mod parts;
mod patterns;
mod rules;
mod text;

pub use classify::{
    descriptor_segments, judge, judge_descriptor, judge_result, model as built_in_model, redact_result_with,
    result_segments, scan_descriptor_with, scan_result_with, Judged, Settings as ClassifierSettings, Target,
    Thresholds,
};
pub use decode::{
    confusable, decode, Decoded, Transform, TransformKind, EXTRA_BYTES, INLINE_WINDOW, MAX_DEPTH, MAX_TRANSFORMS,
    MAX_TRANSFORM_CHARS,
};
pub use descriptor::{scan_descriptor, MAX_DESCRIPTION_CHARS, MIN_TOOL_NAME_CHARS};
pub use exfil::MIN_DATA_VALUE_CHARS;
pub use output::{redact_result, scan_output_text, scan_result};
pub use parts::{descriptor_parts, Field, Part, MAX_PARTS, MAX_PARTS_BYTES, MAX_SCHEMA_DEPTH};
pub use rules::{ids, rules, RuleInfo};
