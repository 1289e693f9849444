//! Custos policy: decides each tool call with Cedar policies.
//!
//! This crate is the only place Cedar appears. The rest of the gateway hands it a call (who,
//! which tool, what arguments, which run) and gets back a [`custos_core::Decision`]; Cedar's
//! types never leave the crate.
//!
//! The model (see `shared/DESIGN.md`, section Policy): principal = `Custos::Agent`, action =
//! `Custos::Action::"call_tool"`, resource = `Custos::Tool`, context = the call's arguments,
//! facts about its run and whether a human approved the call. Every policy is validated against
//! the schema in strict mode when it is loaded, so a typo is a start-up error with a file, line
//! and column, not a policy that silently never matches; a policy Cedar proves can never apply
//! (usually a typo after `has`, which Cedar treats as simply false) is refused as well.
//! Decisions are default deny, a `forbid` beats any `permit`, and a policy that fails to
//! evaluate denies the call (fail closed). A deny that only an approval stands behind is a
//! hold (see `@approval` below).
//!
//! # Layout
//!
//! - `schema/custos.cedarschema`: the schema shipped with Custos, embedded as the default;
//!   its comments explain how a deployment declares more tool arguments.
//! - `policies/example.cedar`: a readable example policy file, loaded by a test.
//! - `src/schema.rs`: where the schema comes from ([`SchemaSource`]) and parsing it.
//! - `src/load.rs`: policy files → one validated policy set; ids, positions, annotations.
//! - `src/request.rs`: one call as Cedar sees it ([`CallRequest`]): entity uids, entities and
//!   the context.
//! - `src/context.rs`: JSON tool arguments → Cedar values, and the limits on them.
//! - `src/engine.rs`: [`PolicyEngine`]: `decide`, `explain`, `may_ever_allow`; its tests, which
//!   drive the engine end to end, are in `src/engine/tests.rs`.
//! - `src/error.rs`: [`PolicyError`] and source positions (`file:line:column`).
//!
//! # Annotations
//!
//! - `@id("refunds-small")`: the policy's id (otherwise `<file stem>:<n>`, `n` counting the
//!   file's policies from 0). Ids appear in decisions and the audit log; they must be unique.
//! - `@reason("...")`: on a `forbid`, the words a denied call's reason carries.
//! - `@approval("GROUP")`: on a `forbid` that reads `context.approval.granted`, the group of
//!   people who may lift it for one call. When every policy that denies a call carries one,
//!   and the call would be allowed once approved, the decision is `hold`, not `deny`. Refused
//!   on a `permit`, with a group that is not a plain name (`[A-Za-z0-9_.-]+`), and on a forbid
//!   that never reads `context.approval.granted`.

mod context;
mod engine;
mod error;
pub mod fuzzing;
mod guard;
mod load;
mod request;
mod schema;

pub use context::{MAX_ARGUMENT_DEPTH, MAX_ARGUMENT_VALUES};
pub use engine::{Explanation, PolicyEngine, PolicyTrace, DEFAULT_DENY_REASON};
pub use error::{PolicyError, SourcePos};
pub use load::PolicyEffect;
pub use request::{CallRequest, ToolInfo};
pub use schema::{SchemaSource, EMBEDDED_SCHEMA, EMBEDDED_SCHEMA_NAME};
