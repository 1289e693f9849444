//! [`Approvals`]: the approval queue of one process, over the shared store.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use custos_config::ApprovalSettings;
use custos_store::{
    ApprovalOutcome, ApprovalQuery, ApprovalRecord, ApprovalRefusal, ApprovalStatus, ApprovalStore, ApprovalWrite,
    AuditLog, DbLocation, SqlStore, StoreError,
};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::approver::Approver;
use crate::digest::call_digest;
use crate::error::ApprovalError;
use crate::redact::redact;
use crate::request::{ApprovalFilter, ApprovalRequest, ApprovalState, CallToApprove, Verdict};
use crate::webhook::{now_ms, Notifier};

/// How often [`Approvals::wait`] looks at the store for decisions made by other processes.
/// Decisions made through the same handle wake it at once.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The approval queue: opens requests for held calls, waits for and records decisions, and
/// lets an approved call through once.
///
/// Cheap to clone, `Send + Sync`. Several processes may each hold one over the same database
/// (`custos run` and `custos approvals approve` in another terminal): every change is one write
/// transaction that checks the state and appends its event together.
#[derive(Clone, Debug)]
pub struct Approvals {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Every change goes through the audit writer, so it is group committed with the calls'
    /// own events and ordered with them in the log.
    audit: AuditLog,
    /// Reads (`get`, `list`, the polling of `wait`) on a connection of their own, which sees
    /// what other processes commit.
    reader: Mutex<SqlStore>,
    settings: ApprovalSettings,
    /// `None` when no group has a webhook.
    notifier: Option<Arc<Notifier>>,
    /// Bumped on every decision made through this handle, so waiters wake without polling.
    decided: watch::Sender<u64>,
    /// [`POLL_INTERVAL`]; tests lengthen it to show that a local decision needs no poll.
    poll: Duration,
}

impl Approvals {
    /// The queue over `database` (the one `audit` writes to: the embedded file or PostgreSQL),
    /// with `settings` from the config. Reads the webhook secrets now: a missing or short secret
    /// is an error at start-up.
    pub fn new(
        audit: AuditLog,
        database: impl Into<DbLocation>,
        settings: ApprovalSettings,
    ) -> Result<Self, ApprovalError> {
        let reader = SqlStore::open_read_only(database)?;
        let notifier = Notifier::new(&settings, audit.clone())?;
        let (decided, _) = watch::channel(0);
        Ok(Self {
            inner: Arc::new(Inner {
                audit,
                reader: Mutex::new(reader),
                settings,
                notifier,
                decided,
                poll: POLL_INTERVAL,
            }),
        })
    }

    /// The settings this queue applies.
    pub fn settings(&self) -> &ApprovalSettings {
        &self.inner.settings
    }

    /// The open request for this call's digest (pending, or approved and not used, not
    /// expired) or a new one, recorded as `approval.requested` with the arguments redacted; a
    /// new request is announced to its groups' webhooks in the background.
    ///
    /// Two identical calls (a retry after a timeout, two processes at once) get the same
    /// request: the lookup and the insert are one write transaction.
    pub async fn hold(&self, call: &CallToApprove<'_>) -> Result<ApprovalRequest, ApprovalError> {
        let digest =
            call_digest(&call.agent.id, call.run, call.tool, call.descriptor_sha256.as_deref(), call.arguments);
        let now = now_ms();
        let expiry = i64::try_from(self.inner.settings.expiry_ms).unwrap_or(i64::MAX);
        for group in call.groups.iter().filter(|g| self.inner.settings.group(g).is_none()) {
            tracing::warn!(group = %group, "a policy asks approver group `{group}`, which the config does not declare");
        }
        let record = ApprovalRecord {
            id: new_id()?,
            digest,
            agent: call.agent.id.clone(),
            principal: call.principal.to_vec(),
            run: call.run.clone(),
            step: call.step,
            tool: call.tool.clone(),
            descriptor_sha256: call.descriptor_sha256.clone(),
            arguments: redact(call.arguments),
            policies: call.policies.to_vec(),
            groups: call.groups.to_vec(),
            created_ms: now,
            expires_ms: now.saturating_add(expiry),
            status: ApprovalStatus::Pending,
            decided_by: None,
            decided_ms: None,
            reason: None,
            used_ms: None,
        };
        match self.inner.audit.approval(ApprovalWrite::Request(Box::new(record))).await? {
            ApprovalOutcome::Requested { record, created } => {
                let request = ApprovalRequest::from_record(record, now);
                if created {
                    self.announce(&request);
                }
                Ok(request)
            }
            _ => Err(unexpected()),
        }
    }

    /// Starts the webhook deliveries of a new request; returns their tasks.
    fn announce(&self, request: &ApprovalRequest) -> Vec<tokio::task::JoinHandle<()>> {
        self.inner.notifier.as_ref().map(|n| n.announce(request)).unwrap_or_default()
    }

    /// Waits until request `id` is decided, expires, or `deadline` passes, and returns its state
    /// then (`Pending` at the deadline). Sees decisions of other processes within
    /// [`POLL_INTERVAL`], and those made through this handle at once. An expiry seen here is
    /// recorded (`approval.expired`).
    pub async fn wait(&self, id: &str, deadline: Instant) -> Result<ApprovalState, ApprovalError> {
        let mut decided = self.inner.decided.subscribe();
        loop {
            let record = self.record(id)?.ok_or_else(|| ApprovalError::Unknown { id: id.to_owned() })?;
            let now = now_ms();
            let request = ApprovalRequest::from_record(record.clone(), now);
            match request.state {
                ApprovalState::Pending => {}
                ApprovalState::Expired if record.status.is_open() => {
                    let checked = self.inner.audit.approval(ApprovalWrite::Expire { id: id.to_owned(), now_ms: now });
                    if let ApprovalOutcome::Checked(record) = checked.await? {
                        return Ok(ApprovalRequest::from_record(record, now).state);
                    }
                    return Ok(ApprovalState::Expired);
                }
                state => return Ok(state),
            }
            if Instant::now() >= deadline {
                return Ok(ApprovalState::Pending);
            }
            let until_expiry = u64::try_from(record.expires_ms.saturating_sub(now)).unwrap_or(0);
            let wake = deadline.min(Instant::now() + self.inner.poll.min(Duration::from_millis(until_expiry)));
            tokio::select! {
                // An error means the sender is gone, which cannot happen while `self` lives.
                _ = decided.changed() => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Uses approved request `id` for the call whose digest is `digest`: once, atomically (the
    /// check and `approval.used` are one write transaction, so of two identical calls racing,
    /// in one process or two, exactly one gets through). A second use is refused as
    /// [`ApprovalError::Replayed`] and recorded (`approval.replay_refused`); so are an expired
    /// approval, another digest and a request not approved.
    pub async fn consume(&self, id: &str, digest: &str) -> Result<(), ApprovalError> {
        let write = ApprovalWrite::Consume { id: id.to_owned(), digest: digest.to_owned(), now_ms: now_ms() };
        match self.inner.audit.approval(write).await? {
            ApprovalOutcome::Consumed(_) => Ok(()),
            ApprovalOutcome::Refused { record, refusal } => Err(refused(id, record.as_ref(), refusal, true)),
            _ => Err(unexpected()),
        }
    }

    /// Records `approver`'s verdict on request `id`, if the rules allow it:
    ///
    /// - the approver is a member of one of the request's groups;
    /// - the approver is not the agent that made the call (nor an agent in its principal chain);
    /// - the approver is not the human the agent acts for (the first of the principal chain),
    ///   unless `allow_principal_approval` is set;
    /// - the request is pending and unexpired (checked in the write transaction).
    ///
    /// A denial needs a reason. Every refused attempt is recorded as `approval.refused` with the
    /// approver and why.
    pub async fn decide(
        &self,
        id: &str,
        approver: &Approver,
        verdict: Verdict,
        reason: Option<&str>,
    ) -> Result<ApprovalRequest, ApprovalError> {
        let name = approver.name.trim();
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(ApprovalError::InvalidApprover { approver: name.escape_debug().to_string() });
        }
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if verdict == Verdict::Deny && reason.is_none() {
            return Err(ApprovalError::ReasonRequired);
        }
        let identity = approver.identity_json();
        let now = now_ms();
        if let Some(record) = self.record(id)? {
            if let Some((error, why)) = self.rules(&record, name, &approver.idp_groups) {
                let write = ApprovalWrite::Refuse {
                    id: id.to_owned(),
                    approver: name.to_owned(),
                    identity,
                    reason: why.to_owned(),
                    now_ms: now,
                };
                self.inner.audit.approval(write).await?;
                return Err(error);
            }
        }
        let write = ApprovalWrite::Decide {
            id: id.to_owned(),
            approver: name.to_owned(),
            identity,
            approve: verdict == Verdict::Approve,
            reason: reason.map(str::to_owned),
            now_ms: now,
        };
        match self.inner.audit.approval(write).await? {
            ApprovalOutcome::Decided(record) => {
                self.inner.decided.send_modify(|n| *n = n.wrapping_add(1));
                Ok(ApprovalRequest::from_record(record, now))
            }
            ApprovalOutcome::Refused { record, refusal } => Err(refused(id, record.as_ref(), refusal, false)),
            _ => Err(unexpected()),
        }
    }

    /// Records that `approver`'s attempt on request `id` was refused before the rules were
    /// applied (`approval.refused` with `why`): a decision through a channel not allowed to make
    /// it, for instance. The request does not change.
    pub async fn refuse(&self, id: &str, approver: &Approver, why: &str) -> Result<(), ApprovalError> {
        let write = ApprovalWrite::Refuse {
            id: id.to_owned(),
            approver: approver.name.trim().to_owned(),
            identity: approver.identity_json(),
            reason: why.to_owned(),
            now_ms: now_ms(),
        };
        self.inner.audit.approval(write).await?;
        Ok(())
    }

    /// Whether `approver` may decide `record` now, by the rules [`Self::decide`] applies (group
    /// membership, separation of duties), without recording anything: what a console shows
    /// before an approver tries. `None`: may decide; else why not.
    pub fn may_decide(&self, request: &ApprovalRequest, approver: &Approver) -> Option<&'static str> {
        let principal_first = request.principal.first().map(String::as_str);
        self.judge(
            request.agent.0.as_str(),
            &request.principal,
            principal_first,
            &request.groups,
            &approver.name,
            &approver.idp_groups,
        )
        .map(|(_, why)| why)
    }

    /// The separation-of-duties and membership rules: the error and the reason recorded when
    /// `approver` may not decide `record`.
    fn rules(
        &self,
        record: &ApprovalRecord,
        approver: &str,
        idp_groups: &[String],
    ) -> Option<(ApprovalError, &'static str)> {
        let first = record.principal.first().map(String::as_str);
        let (kind, why) =
            self.judge(record.agent.0.as_str(), &record.principal, first, &record.groups, approver, idp_groups)?;
        let id = record.id.clone();
        let approver = approver.to_owned();
        let error = match kind {
            Rule::Own => ApprovalError::SelfApproval { id, approver },
            Rule::Principal => ApprovalError::PrincipalApproval { id, approver },
            Rule::NotMember => {
                let groups = record.groups.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ");
                let groups = if groups.is_empty() { "(none named)".to_owned() } else { groups };
                ApprovalError::NotInGroup { id, approver, groups }
            }
        };
        Some((error, why))
    }

    fn judge(
        &self,
        agent: &str,
        principal: &[String],
        principal_first: Option<&str>,
        groups: &[String],
        approver: &str,
        idp_groups: &[String],
    ) -> Option<(Rule, &'static str)> {
        let agents_in_chain = principal.iter().skip(1);
        if agent == approver || agents_in_chain.into_iter().any(|a| a == approver) {
            return Some((Rule::Own, "an agent cannot approve its own call"));
        }
        if principal_first == Some(approver) && !self.inner.settings.allow_principal_approval {
            return Some((Rule::Principal, "the approver is the principal the agent acts for"));
        }
        let member = groups.iter().filter_map(|g| self.inner.settings.group(g)).any(|g| {
            g.members.iter().any(|m| m == approver) || g.idp_groups.iter().any(|want| idp_groups.contains(want))
        });
        if !member {
            return Some((Rule::NotMember, "the approver is not a member of the request's approver groups"));
        }
        None
    }

    /// Request `id`, with its state now.
    pub fn get(&self, id: &str) -> Result<Option<ApprovalRequest>, ApprovalError> {
        let now = now_ms();
        Ok(self.record(id)?.map(|r| ApprovalRequest::from_record(r, now)))
    }

    /// The requests matching `filter`, newest first.
    pub fn list(&self, filter: ApprovalFilter) -> Result<Vec<ApprovalRequest>, ApprovalError> {
        let now = now_ms();
        let q = ApprovalQuery { status: filter.status, now_ms: now, limit: filter.limit };
        let records = self.reader(|r| r.approvals(&q))?;
        Ok(records.into_iter().map(|r| ApprovalRequest::from_record(r, now)).collect())
    }

    fn record(&self, id: &str) -> Result<Option<ApprovalRecord>, ApprovalError> {
        Ok(self.reader(|r| r.approval(id))?)
    }

    fn reader<T>(&self, f: impl FnOnce(&SqlStore) -> Result<T, StoreError>) -> Result<T, StoreError> {
        // A poisoned lock only means another reader panicked mid-read; the connection is fine.
        let reader = self.inner.reader.lock().unwrap_or_else(PoisonError::into_inner);
        f(&reader)
    }

    #[cfg(test)]
    pub(crate) fn announce_for_test(&self, request: &ApprovalRequest) -> Vec<tokio::task::JoinHandle<()>> {
        self.announce(request)
    }

    #[cfg(test)]
    pub(crate) fn set_poll_interval(&mut self, poll: Duration) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.poll = poll;
        }
    }

    #[cfg(test)]
    pub(crate) fn shorten_webhook_backoff(&mut self, wait: Duration) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            if let Some(n) = inner.notifier.as_mut().and_then(Arc::get_mut) {
                n.backoff = vec![wait; n.backoff.len()];
                n.timeout = Duration::from_secs(2);
            }
        }
    }
}

/// Which of the rules of [`Approvals::decide`] refused an approver.
enum Rule {
    Own,
    Principal,
    NotMember,
}

/// The error for a write the store refused; `consuming`: a use, not a decision.
fn refused(id: &str, record: Option<&ApprovalRecord>, refusal: ApprovalRefusal, consuming: bool) -> ApprovalError {
    let id = id.to_owned();
    let state = record.map_or("unknown", |r| r.status.as_str());
    match refusal {
        ApprovalRefusal::Unknown => ApprovalError::Unknown { id },
        ApprovalRefusal::Expired => ApprovalError::Expired { id },
        ApprovalRefusal::Replayed => ApprovalError::Replayed { id },
        ApprovalRefusal::Mismatch => ApprovalError::Mismatch { id },
        ApprovalRefusal::NotPending if consuming => ApprovalError::NotApproved { id, state },
        ApprovalRefusal::NotPending | ApprovalRefusal::Rule => ApprovalError::AlreadyDecided { id, state },
    }
}

fn unexpected() -> ApprovalError {
    ApprovalError::Store(StoreError::Internal {
        reason: "the store answered an approval write with another kind".into(),
    })
}

/// `apr_` and 128 random bits in hex.
fn new_id() -> Result<String, ApprovalError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| ApprovalError::Random)?;
    Ok(format!("apr_{}", hex::encode(bytes)))
}
