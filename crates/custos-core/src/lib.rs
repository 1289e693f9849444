//! Custos domain types: the nouns of `shared/DESIGN.md` with no I/O.
//!
//! Every other crate speaks in these types; none of them touches a file, a socket or a clock
//! except through values passed in.
//!
//! # Layout
//!
//! - [`digest`]: canonical JSON and SHA-256 digests (tool descriptors, audit chain, results).
//! - [`agent`]: agent identity as configured (id, owner, purpose, groups).
//! - [`tool`]: `server/name` references, tool classes and descriptors.
//! - [`decision`]: what policy said about one call.
//! - [`finding`]: what a detector saw, its kind and severity.
//! - [`event`]: one append to the audit log, before the store numbers and chains it.

pub mod agent;
pub mod decision;
pub mod digest;
pub mod event;
pub mod finding;
pub mod tool;

pub use agent::{Agent, AgentId, RunId};
pub use decision::Decision;
pub use digest::{canonical_json, write_canonical, Digest};
pub use event::{EventKind, NewEvent};
pub use finding::{Finding, Severity};
pub use tool::{
    check_tool_name, InvalidToolRef, ToolClass, ToolDescriptor, ToolRef, MAX_ARGUMENT_DEPTH, MAX_ARGUMENT_VALUES,
};
