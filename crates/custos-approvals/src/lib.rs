//! Custos approvals: a privileged call waits for a human yes bound to that exact call.
//!
//! When policy holds a call, the gateway opens an approval request here: who asked (agent,
//! principal chain, run, step), what (tool, arguments with secrets redacted), why (the policies
//! and the approver groups they named), and the canonical digest of (agent, run, tool, tool
//! descriptor digest, arguments). An approver of one of those groups approves or denies it from
//! the CLI or the admin API; the agent that made the call, and by default the human it acts for,
//! cannot (separation of duties). An approval lets exactly one call with exactly that digest
//! through, before it expires; a replay is refused and recorded. Every step is an audit event
//! (`approval.*`), and the store's `approvals` table is a projection of those events, changed
//! in the same transactions, so several processes sharing a database see each other's
//! decisions and never use one approval twice.
//!
//! # Layout
//!
//! - `approver.rs`: [`Approver`], who decides and how that is known (console sign-in through
//!   the identity provider or a one-time link, or a name asserted on the CLI or the admin API).
//! - `queue.rs`: [`Approvals`], the handle: `hold`, `wait`, `consume`, `decide`, `get`, `list`.
//! - `request.rs`: the values crossing the API: [`CallToApprove`], [`ApprovalRequest`],
//!   [`ApprovalState`], [`Verdict`], [`ApprovalFilter`].
//! - `digest.rs`: [`call_digest`], what an approval is bound to.
//! - `redact.rs`: [`redact`], what an approver (and the log, and a webhook) sees of arguments.
//! - [`webhook`]: signed notifications to approver groups, retried, every attempt recorded;
//!   [`webhook::verify`] is what a receiver does.
//! - `error.rs`: [`ApprovalError`] and whose [`Fault`] it is.

mod approver;
mod digest;
mod error;
mod queue;
mod redact;
mod request;
pub mod webhook;

pub use approver::{Approver, ApproverMethod, IdentityVerifier, VerifiedApprover};
pub use custos_store::ApprovalStatus;
pub use digest::call_digest;
pub use error::{ApprovalError, Fault};
pub use queue::{Approvals, POLL_INTERVAL};
pub use redact::{redact, REDACTED};
pub use request::{ApprovalFilter, ApprovalRequest, ApprovalState, CallToApprove, Verdict};

#[cfg(test)]
mod tests;
