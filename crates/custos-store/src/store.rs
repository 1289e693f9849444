//! The store interface and the values that cross it.
//!
//! Everything here is independent of the database driver: [`crate::SqlStore`] implements it on
//! an SQLite file or a PostgreSQL database, and nothing outside this crate learns which one is
//! behind a `Box<dyn Store>`.

use custos_core::{Agent, AgentId, Digest, EventKind, NewEvent, ToolDescriptor, ToolRef};

use crate::approvals::{ApprovalOutcome, ApprovalQuery, ApprovalRecord, ApprovalWrite};
use crate::chain::VerifyReport;
use crate::credentials::{CredentialUse, SigningKeyRecord, StoredSecret};
use crate::error::StoreError;
use crate::pins::ToolPin;

/// One event as the log holds it: numbered, chained to its predecessor and digested.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// The digest of the event before it; [`Digest::ZERO`] for the first event.
    pub prev: Digest,
    /// SHA-256 of the event's canonical body, which includes `seq` and `prev`: changing,
    /// removing or moving any earlier event breaks every later link.
    pub hash: Digest,
    pub event: NewEvent,
}

/// What [`Store::observe_tools`] concluded about one listed tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolSighting {
    /// First time this `server/name` was listed; a `tool.seen` event was appended.
    New,
    /// Same descriptor digest as last recorded; only `last_seen_ms` moved.
    Unchanged,
    /// The descriptor changed since it was last recorded, to the pinned one (a quarantined tool
    /// listed with its pinned descriptor again, or one an operator pinned again); a
    /// `tool.changed` event was appended.
    Changed { previous: Digest },
    /// The listed descriptor differs from the tool's pin (a possible rug pull), or the tool
    /// has no pin of its own and resembles a pinned tool of its server (a possible rename,
    /// pinned to that tool's descriptor): the tool is quarantined until an operator accepts the
    /// listed descriptor ([`ToolPins::accept_tool`]). Returned instead of the three above
    /// whenever the listing differs from the pin; the `tool.seen` or `tool.changed` event was
    /// appended as usual, and a `rug_pull` finding with it the first time this digest was
    /// listed.
    Quarantined { pinned: Digest },
}

/// One row of the tool inventory: the latest descriptor seen for a tool, and its pin.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolRecord {
    pub tool: ToolRef,
    pub digest: Digest,
    /// The descriptor exactly as the server last listed it.
    pub descriptor: serde_json::Value,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// The digest the tool is pinned to; `None` only for a tool listed before pins existed and
    /// not listed since.
    pub pinned_digest: Option<Digest>,
    /// The pinned descriptor, to show what changed.
    pub pinned_descriptor: Option<serde_json::Value>,
}

impl ToolRecord {
    /// Whether the latest listing differs from the pin: the tool is under suspicion of a rug
    /// pull until an operator accepts the change.
    pub fn quarantined(&self) -> bool {
        self.pinned_digest.is_some_and(|pinned| pinned != self.digest)
    }

    /// The tool whose descriptor this one is pinned to, when it was quarantined on first sight
    /// for resembling it (see [`crate::ToolPin::resembles`]).
    pub fn resembles(&self) -> Option<ToolRef> {
        crate::pins::borrowed_from(&self.tool, self.pinned_descriptor.as_ref()?)
    }
}

/// A search of the log. Every field set narrows the result; results come in `seq` order.
///
/// Build it with struct update syntax: `EventQuery { agent: Some("bot".into()), ..Default::default() }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub agent: Option<String>,
    pub run: Option<String>,
    /// `server/name` matches that tool exactly; `server/` (trailing slash) matches every tool of
    /// that server.
    pub tool: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    pub kind: Option<EventKind>,
    /// Only events at or after this time (milliseconds since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Only events after this sequence number: the cursor for paging and `audit tail`.
    pub after_seq: Option<u64>,
    /// At most this many events, the earliest first. `None` returns every match, so callers
    /// reading a large log should set it.
    pub limit: Option<usize>,
}

/// An agent registered at run time (`custos agents add`). Agents declared in the config need no
/// record to exist, but their keys live here too.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentRecord {
    pub agent: Agent,
    pub created_ms: i64,
    /// When `custos agents revoke` revoked the whole agent; it can no longer act.
    pub revoked_ms: Option<i64>,
}

/// One API key of an agent: its public id and the hash of its secret, never the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentKeyRecord {
    /// The public part of the key (`cst_<id>_…`), for lookup without scanning.
    pub key_id: String,
    pub agent: AgentId,
    /// The stored hash, as `custos-auth` encodes it (`sha256:<hex>`).
    pub hash: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// One write in a group-committed batch (see [`Store::write_batch`]).
///
/// A write lives only while queued for the writer; no variant is boxed but an approval request
/// (inside [`ApprovalWrite`]), so appends do not allocate for it.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Same as [`Store::append`].
    Append(Vec<NewEvent>),
    /// Same as [`Store::observe_tools`].
    ObserveTools { tools: Vec<ToolDescriptor>, template: NewEvent },
    /// Same as [`ApprovalStore::write_approval`].
    Approval(ApprovalWrite),
}

/// The result of one [`Write`], in the same shape as the single-write method's result.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOutcome {
    Appended(Vec<StoredEvent>),
    Observed(Vec<ToolSighting>),
    /// Boxed: a request carries its arguments, far larger than the other outcomes.
    Approval(Box<ApprovalOutcome>),
}

/// The result of one write inside a batch: its own outcome or why it alone was rolled back.
pub type WriteResult = Result<WriteOutcome, StoreError>;

/// The blocking store interface: the audit log and the tool inventory.
///
/// One writer thread owns a store for writing (see [`crate::AuditLog`]); readers (`audit
/// query`, `audit verify`) open their own. Several stores, in several processes, may write to
/// the same database: each write reads the chain's head inside its own transaction.
pub trait Store: Send {
    /// Appends all `events` in one durable transaction (synced to disk before returning),
    /// numbering them after the current head and chaining each to the one before.
    fn append(&mut self, events: &[NewEvent]) -> Result<Vec<StoredEvent>, StoreError>;

    /// Records the descriptors of one `tools/list` result in the inventory and, in the same
    /// transaction, appends `tool.seen` for a tool never seen before and `tool.changed` for one
    /// whose digest differs from the last recorded one (detail: `previous_digest`, `digest`,
    /// `descriptor`). Unchanged tools only get a new `last_seen_ms`.
    ///
    /// Pins ([`ToolPins`]) are kept here too. A tool without a pin is pinned to this listing:
    /// the `tool.seen` (or `tool.changed`) recording the listing gains `"pinned": true` in its
    /// detail; a tool inventoried before pins existed and listed unchanged gets a `tool.pinned`
    /// event (detail: `digest`, `source` `first_sight`, `by` empty) instead. A tool listed
    /// with a digest other than its pin's is [`ToolSighting::Quarantined`], and the first
    /// listing of each such digest appends a `finding.recorded` after the tool's event (kind
    /// `rug_pull`, severity high, rule `descriptor_changed`, action `quarantined`; detail also
    /// `pinned_digest` and `digest`).
    ///
    /// Renames are changes: a tool without a pin whose name differs from a pinned tool's of the
    /// same server (pinned before, or earlier in this listing) only by case or look-alike
    /// characters, or whose descriptor but for its name and title is that of a tool pinned
    /// before this listing, is not pinned to its listing but to that tool's descriptor, and is
    /// [`ToolSighting::Quarantined`] at once; its finding has the rule `confusable_name` or
    /// `renamed` and, in its detail, `resembles` (`server/name` of that tool).
    ///
    /// `template` gives the events' time, agent, run and step; its kind, tool, decision and
    /// detail are replaced. Returns one sighting per descriptor, in the order of `tools`.
    fn observe_tools(&mut self, tools: &[ToolDescriptor], template: &NewEvent)
        -> Result<Vec<ToolSighting>, StoreError>;

    /// Applies `writes` in order in ONE durable transaction: the group commit behind
    /// [`crate::AuditLog`], one disk sync for many callers.
    ///
    /// The outer error means the transaction failed and nothing was recorded. An inner error
    /// means that one write was rolled back on its own (for example, an event out of range)
    /// while the others were committed. Returns one result per write, in order.
    fn write_batch(&mut self, writes: &[Write]) -> Result<Vec<WriteResult>, StoreError>;

    /// The events matching `q`, in `seq` order, as stored (not verified: see [`Store::verify`]).
    fn query(&self, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;

    /// The last event matching `q` (its `limit` ignored), as stored: when an agent was last
    /// seen, say, without reading its whole history. The default reads every match; a store
    /// should answer it with one indexed read.
    fn last(&self, q: &EventQuery) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self.query(&EventQuery { limit: None, ..q.clone() })?.pop())
    }

    /// The tool inventory, ordered by `server/name`.
    fn tools(&self) -> Result<Vec<ToolRecord>, StoreError>;

    /// Walks the whole log in `seq` order, streaming, and reports the first broken link.
    fn verify(&self) -> Result<VerifyReport, StoreError>;

    /// The last event's sequence number and digest; `None` for an empty log.
    fn head(&self) -> Result<Option<(u64, Digest)>, StoreError>;
}

/// Agents registered at run time and the API keys of every agent. Kept apart from [`Store`]: the
/// audit writer never needs it, and the commands that manage agents never need the writer.
pub trait AgentRegistry: Send {
    /// Records a new key for `agent` (registering the agent if it has no record yet) and
    /// appends `event` (an `agent.key_issued`), in one transaction.
    fn issue_key(&mut self, agent: &Agent, key: &AgentKeyRecord, event: &NewEvent) -> Result<(), StoreError>;

    /// Revokes one key of `agent` (`key_id`), or the agent and all its keys (`None`), appending
    /// `event` (an `agent.key_revoked`, its detail extended with the revoked key ids) in the same
    /// transaction. Returns the key ids revoked now; revoking twice revokes nothing new.
    fn revoke(&mut self, agent: &AgentId, key_id: Option<&str>, event: &NewEvent) -> Result<Vec<String>, StoreError>;

    /// Every agent registered at run time, by id.
    fn agents(&self) -> Result<Vec<AgentRecord>, StoreError>;

    /// The agent registered at run time with this id, revoked or not.
    fn find_agent(&self, id: &AgentId) -> Result<Option<AgentRecord>, StoreError>;

    /// Every key, by agent then creation.
    fn agent_keys(&self) -> Result<Vec<AgentKeyRecord>, StoreError>;

    /// The key with this public id, revoked or not.
    fn find_key(&self, key_id: &str) -> Result<Option<AgentKeyRecord>, StoreError>;
}

/// Approval requests: a projection of the `approval.*` events, changed only together with them.
/// The audit writer applies [`Write::Approval`] through [`Store::write_batch`]; processes that
/// do not run a writer (`custos approvals approve`) use this directly.
pub trait ApprovalStore: Send {
    /// Applies `write` and its event in one durable transaction; see [`ApprovalWrite`].
    fn write_approval(&mut self, write: &ApprovalWrite) -> Result<ApprovalOutcome, StoreError>;

    /// The request with this id.
    fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError>;

    /// The requests matching `q`, newest first.
    fn approvals(&self, q: &ApprovalQuery) -> Result<Vec<ApprovalRecord>, StoreError>;
}

/// The credential broker's state: sealed secrets, signing keys, revoked tokens, and the use of
/// credentials as the log records it. Every change is durable and atomic with its event, and
/// safe with several processes on one database: the CLI changes it while `custos serve` reads.
pub trait CredentialStore: Send {
    /// Stores or replaces secret `secret.name` and appends `event` (a `secret.set`) in one
    /// durable transaction.
    ///
    /// A replacement is stored whole, times included: a replaced secret is a rotated secret, so
    /// the caller gives it `created_ms` = `updated_ms` = the time of the replace, and the old
    /// value's times are gone with it (the log keeps its history).
    fn put_secret(&mut self, secret: &StoredSecret, event: &NewEvent) -> Result<(), StoreError>;

    /// Removes secret `name`, appending `event` (a `secret.removed`) in the same transaction.
    /// Returns false, and appends nothing, when there was no such secret.
    fn remove_secret(&mut self, name: &str, event: &NewEvent) -> Result<bool, StoreError>;

    /// The secret named `name`.
    fn secret(&self, name: &str) -> Result<Option<StoredSecret>, StoreError>;

    /// Every stored secret, by name.
    fn secrets(&self) -> Result<Vec<StoredSecret>, StoreError>;

    /// Makes `key` the active signing key: every key still active gets `retired_ms =
    /// key.created_ms` and `publish_until_ms = key.created_ms + publish_overlap_ms`; appends
    /// `events` (a `signing_key.created`, plus whatever the caller adds), all in one durable
    /// transaction.
    ///
    /// Refused, with nothing written, when `key.kid` is already present
    /// ([`StoreError::AlreadyExists`]), when `key` is itself retired, or when the overlap is
    /// negative or out of range.
    fn add_signing_key(
        &mut self,
        key: &SigningKeyRecord,
        publish_overlap_ms: i64,
        events: &[NewEvent],
    ) -> Result<(), StoreError>;

    /// Every signing key, oldest first.
    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;

    /// Revokes minted token `jti`, appending `event` (a `token.revoked`) in the same
    /// transaction; `event.time_ms` is the time of revocation. Returns false, and appends
    /// nothing, when it was already revoked.
    ///
    /// The revocation is kept at least until `expires_ms` (forever when `None`), after which
    /// the token could not be used anyway; later revocations prune those long expired.
    fn revoke_token(&mut self, jti: &str, expires_ms: Option<i64>, event: &NewEvent) -> Result<bool, StoreError>;

    /// Whether minted token `jti` is revoked. One indexed read: meant for every token check.
    fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError>;

    /// The use projection, by credential, server, agent.
    fn credential_uses(&self) -> Result<Vec<CredentialUse>, StoreError>;
}

/// Tool pins: the descriptor each tool must keep to stay out of quarantine (see
/// [`Store::observe_tools`] for how a listing is checked against them). Kept apart from
/// [`Store`] like the other projections: only the commands that manage pins and the request
/// path's lookup need it.
pub trait ToolPins: Send {
    /// Pins `descriptor` for `tool` ahead of time (or again), appending `event` (a
    /// `tool.pinned`, its detail extended with `previous_digest` when a pin is replaced) in the
    /// same transaction. The pin's time is `event.time_ms`.
    ///
    /// Refused, with nothing written, when `digest` is not the digest of `descriptor`.
    fn pin_tool(
        &mut self,
        tool: &ToolRef,
        descriptor: &serde_json::Value,
        digest: &Digest,
        by: &str,
        event: &NewEvent,
    ) -> Result<(), StoreError>;

    /// Accepts the latest listed descriptor of `tool` as its new pin, appending `event` (a
    /// `tool.accepted`, its detail extended with `previous_digest` and `digest`) in the same
    /// transaction. Returns the tool's record as it now is.
    ///
    /// Refused, with nothing written, when the tool was never listed
    /// ([`StoreError::UnknownTool`]) or is not quarantined ([`StoreError::NothingToAccept`]).
    fn accept_tool(&mut self, tool: &ToolRef, by: &str, event: &NewEvent) -> Result<ToolRecord, StoreError>;

    /// The pinned digest of `tool`, if pinned: one read by primary key, cheap enough for the
    /// request path when a call's tool looks changed.
    fn pinned_digest(&self, tool: &ToolRef) -> Result<Option<Digest>, StoreError>;

    /// The pin of `tool`, if pinned: one read by primary key, for the request path to say why a
    /// quarantined tool is refused (a changed descriptor, or one that resembles another tool).
    fn pin(&self, tool: &ToolRef) -> Result<Option<ToolPin>, StoreError>;

    /// Every pin, by tool, including pins of tools not listed yet.
    fn pins(&self) -> Result<Vec<ToolPin>, StoreError>;
}

/// What the log already holds of one run: who made it, and its last step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// The agent of the run's first attributed event; `None` for a run never seen.
    pub agent: Option<AgentId>,
    /// The highest step recorded (0 when none).
    pub last_step: u64,
}

/// Summarizes run `run` from the log, so a named run continues its step numbers and is not
/// taken over by another agent.
pub fn run_summary(store: &dyn Store, run: &str) -> Result<RunSummary, StoreError> {
    let events = store.query(&EventQuery { run: Some(run.to_owned()), ..EventQuery::default() })?;
    Ok(RunSummary {
        agent: events.iter().find_map(|e| e.event.agent.clone()),
        last_step: events.iter().filter_map(|e| e.event.step).max().unwrap_or(0),
    })
}

/// The last recorded descriptor of each of `server`'s tools (the inventory), so a call made
/// before any `tools/list` in a connection is still classified by what the server declared.
pub fn known_tools(store: &dyn Store, server: &str) -> Result<Vec<ToolDescriptor>, StoreError> {
    Ok(store
        .tools()?
        .into_iter()
        .filter(|t| t.tool.server() == server)
        .filter_map(|t| ToolDescriptor::from_listing(server, t.descriptor))
        .collect())
}
