//! [`Console`]: what the console's handlers share.

use std::sync::{Arc, Mutex, PoisonError};

use custos_approvals::{Approvals, Approver};
use custos_config::{Config, ConsoleConfig};
use custos_core::{EventKind, NewEvent};
use custos_policy::PolicyEngine;
use custos_store::{AuditLog, DbLocation, SqlStore, StoreError};
use serde_json::{json, Value};

use crate::error::ConsoleError;
use crate::oidc::OidcClient;
use crate::session::Sessions;

/// What the serving process hands the console.
#[derive(Debug)]
pub struct ConsoleParts {
    pub config: Arc<Config>,
    /// The approval queue of the serving process: a decision here wakes its held calls at once.
    pub approvals: Option<Approvals>,
    /// The audit writer: sign-ins, sign-outs and refusals are recorded through it.
    pub audit: AuditLog,
    /// A read-only connection to the database, for the pages.
    pub reader: SqlStore,
    /// The database `audit` and `reader` use (the embedded file or PostgreSQL): the actions
    /// that need a connection of their own (verifying the whole log, accepting a tool) open it.
    pub database: DbLocation,
    pub policy: Arc<PolicyEngine>,
    /// The identity provider, discovered at start-up (`[console.oidc]`).
    pub oidc: Option<OidcClient>,
    /// The URL the console is reached at, without a trailing slash: `[console] public_url`, or
    /// the scheme and the address bound.
    pub base_url: String,
}

/// The console of one `custos serve`: cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Console {
    pub config: Arc<Config>,
    pub settings: ConsoleConfig,
    pub approvals: Option<Approvals>,
    pub audit: AuditLog,
    reader: Mutex<SqlStore>,
    /// [`ConsoleParts::database`].
    pub database: DbLocation,
    pub policy: Arc<PolicyEngine>,
    pub oidc: Option<OidcClient>,
    pub base_url: String,
    pub sessions: Mutex<Sessions>,
    /// Serializes login-link redemptions: the check that a link is unused and the sign-in that
    /// uses it are not split by another redemption.
    pub redeeming: tokio::sync::Mutex<()>,
    /// The session cookie's name: `__Host-custos_console` over TLS (the prefix makes browsers
    /// insist on `Secure`, `Path=/` and no `Domain`), `custos_console` otherwise.
    pub cookie: &'static str,
    /// The last verification of the log from the audit page (a restart forgets it: the log
    /// itself is the record that matters).
    pub verified: Mutex<Option<crate::audit::Verified>>,
}

impl Console {
    pub fn new(parts: ConsoleParts) -> Result<Self, ConsoleError> {
        let settings = parts
            .config
            .console
            .clone()
            .ok_or_else(|| ConsoleError::Config("the config has no [console] section".into()))?;
        let sessions = Sessions::new(settings.session_idle_timeout_secs, settings.session_max_secs);
        let cookie = if settings.secure() { "__Host-custos_console" } else { "custos_console" };
        Ok(Self {
            config: parts.config,
            settings,
            approvals: parts.approvals,
            audit: parts.audit,
            reader: Mutex::new(parts.reader),
            database: parts.database,
            policy: parts.policy,
            oidc: parts.oidc,
            base_url: parts.base_url.trim_end_matches('/').to_owned(),
            sessions: Mutex::new(sessions),
            redeeming: tokio::sync::Mutex::new(()),
            cookie,
            verified: Mutex::new(None),
        })
    }

    /// Runs `f` on the read-only connection.
    pub fn read<T>(&self, f: impl FnOnce(&SqlStore) -> Result<T, StoreError>) -> Result<T, StoreError> {
        // A poisoned lock only means another reader panicked mid-read; the connection is fine.
        let reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        f(&reader)
    }

    pub fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether cookies are `Secure`.
    pub fn secure(&self) -> bool {
        self.settings.secure()
    }

    /// Appends one console event durably (`kind`, `detail`); an error means it was not recorded,
    /// and the caller refuses what it was about to do.
    pub async fn record(&self, kind: EventKind, detail: Value) -> Result<(), ConsoleError> {
        let mut event = NewEvent::new(kind, now_ms());
        event.detail = detail;
        self.audit.append(vec![event]).await?;
        Ok(())
    }

    /// Records a refused console request (`console.refused`): `reason` a short code, `who` the
    /// approver when known. Recording failures are logged only: the request is refused anyway.
    pub async fn refused(&self, reason: &str, path: &str, who: Option<&Approver>) {
        let mut detail = json!({ "reason": reason, "path": path });
        if let (Some(o), Some(who)) = (detail.as_object_mut(), who) {
            o.insert("approver".into(), json!(who.name));
            o.insert("identity".into(), who.identity_json());
        }
        if let Err(e) = self.record(EventKind::ConsoleRefused, detail).await {
            tracing::warn!("the console could not record a refusal: {e}");
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
