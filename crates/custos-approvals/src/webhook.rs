//! Announcing a new request to its approver groups: one signed HTTP POST per group that has a
//! webhook, retried with backoff, every attempt recorded (`approval.notified`).
//!
//! The body is JSON: `{"approval": {…the request, arguments redacted…}, "group": NAME, "url":
//! LINK, "console_url": PAGE}`, where `LINK` is the request in the admin API and `PAGE` the
//! request in the console, where an approver opens it to decide (each `null` when not served). The `Custos-Signature` header is
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: a receiver recomputes the MAC
//! over the exact bytes received, compares in constant time, and rejects a timestamp too far
//! from its clock (a replayed delivery). [`verify`] does exactly that. Each attempt is signed
//! afresh, so a retry carries a current timestamp.
//!
//! Delivery runs in the background: a held call does not wait for a webhook, and a webhook
//! that is down only delays the humans, never decides anything.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use custos_config::ApprovalSettings;
use custos_core::{EventKind, NewEvent};
use custos_store::AuditLog;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::ApprovalError;
use crate::request::ApprovalRequest;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "custos-signature";

/// How long one delivery attempt may take, connection included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The waits between attempts; one more attempt than waits (5 in all).
pub const BACKOFF: [Duration; 4] =
    [Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)];

/// The shortest secret accepted: a shorter one could be guessed.
const MIN_SECRET_BYTES: usize = 16;

/// The `Custos-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(mac(secret, timestamp, body)))
}

/// Whether `header` is a valid signature of `body` by `secret`, made within `tolerance_secs`
/// of `now_secs`. What a receiver does; the comparison is constant-time.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now_secs: u64, tolerance_secs: u64) -> bool {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", v)) => signature = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(signature)) = (timestamp, signature) else { return false };
    if now_secs.abs_diff(t) > tolerance_secs {
        return false;
    }
    let expected = mac(secret, t, body);
    subtle::ConstantTimeEq::ct_eq(expected.as_slice(), signature.as_slice()).into()
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> Vec<u8> {
    // HMAC accepts a key of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return Vec::new() };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The webhooks of every group that has one, ready to deliver.
pub(crate) struct Notifier {
    hooks: Vec<Hook>,
    client: HttpClient,
    audit: AuditLog,
    /// The admin API's base URL, for the link to the request.
    admin_url: Option<String>,
    /// The console's base URL, for the link that opens the request there.
    console_url: Option<String>,
    /// [`BACKOFF`], shortened by tests.
    pub(crate) backoff: Vec<Duration>,
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets, nor the full URLs (a URL may carry a token of the receiver's).
        let hooks: Vec<(&str, &str)> = self.hooks.iter().map(|h| (h.group.as_str(), h.host.as_str())).collect();
        f.debug_struct("Notifier").field("hooks", &hooks).finish_non_exhaustive()
    }
}

struct Hook {
    group: String,
    url: hyper::Uri,
    /// Host and port only: what the audit log records of the URL.
    host: String,
    /// Wiped from memory when dropped; never logged, never recorded.
    secret: Zeroizing<Vec<u8>>,
}

/// Plain HTTP, or HTTPS (which also speaks plain HTTP) when some webhook needs it.
enum HttpClient {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<custos_tls::client::HttpsConnector, Full<Bytes>>),
}

impl HttpClient {
    async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        match self {
            Self::Plain(c) => c.request(request).await,
            Self::Tls(c) => c.request(request).await,
        }
    }
}

impl Notifier {
    /// The notifier for `settings`' webhooks (their secrets read now), or `None` when no group
    /// has one.
    pub(crate) fn new(settings: &ApprovalSettings, audit: AuditLog) -> Result<Option<Arc<Self>>, ApprovalError> {
        let mut hooks = Vec::new();
        for group in &settings.groups {
            let Some(webhook) = &group.webhook else { continue };
            let bad = |reason: String| ApprovalError::Webhook { group: group.name.clone(), reason };
            let url: hyper::Uri =
                webhook.url.parse().map_err(|_| bad(format!("`{}` is not a url", webhook.url.escape_debug())))?;
            if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
                return Err(bad(format!("`{}` is not an http:// or https:// url", webhook.url.escape_debug())));
            }
            let host = match (url.host(), url.port_u16()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                (None, _) => String::new(),
            };
            let secret_error = |reason: String| ApprovalError::Secret {
                group: group.name.clone(),
                path: webhook.secret_file.clone(),
                reason,
            };
            let raw = Zeroizing::new(std::fs::read(&webhook.secret_file).map_err(|e| secret_error(e.to_string()))?);
            let secret = Zeroizing::new(raw.trim_ascii().to_vec());
            if secret.len() < MIN_SECRET_BYTES {
                return Err(secret_error(format!(
                    "too short: use at least {MIN_SECRET_BYTES} characters of randomness"
                )));
            }
            hooks.push(Hook { group: group.name.clone(), url, host, secret });
        }
        if hooks.is_empty() {
            return Ok(None);
        }
        let client = if hooks.iter().any(|h| h.url.scheme_str() == Some("https")) {
            let tls = custos_tls::client::ClientTls::load(None, None).map_err(|e| ApprovalError::Webhook {
                group: hooks
                    .iter()
                    .find(|h| h.url.scheme_str() == Some("https"))
                    .map_or_else(String::new, |h| h.group.clone()),
                reason: e.to_string(),
            })?;
            HttpClient::Tls(Client::builder(TokioExecutor::new()).build(tls.connector()))
        } else {
            HttpClient::Plain(Client::builder(TokioExecutor::new()).build_http())
        };
        Ok(Some(Arc::new(Self {
            hooks,
            client,
            audit,
            admin_url: settings.admin_url.clone(),
            console_url: settings.console_url.clone(),
            backoff: BACKOFF.to_vec(),
            timeout: ATTEMPT_TIMEOUT,
        })))
    }

    /// Starts delivering `request` to each of its groups that has a webhook, in the background.
    /// Returns the tasks (tests wait on them; the request path does not).
    pub(crate) fn announce(self: &Arc<Self>, request: &ApprovalRequest) -> Vec<tokio::task::JoinHandle<()>> {
        let link = self.admin_url.as_ref().map(|base| format!("{base}/v1/approvals/{}", request.id));
        let mut tasks = Vec::new();
        for (index, hook) in self.hooks.iter().enumerate() {
            if !request.groups.contains(&hook.group) {
                continue;
            }
            let console = self.console_url.as_ref().map(|base| format!("{base}/console/approvals/{}", request.id));
            let body = json!({
                "approval": request.summary_json(), "group": hook.group, "url": link, "console_url": console,
            });
            let body = Bytes::from(body.to_string());
            let this = self.clone();
            let request = request.clone();
            tasks.push(tokio::spawn(async move { this.deliver(index, body, &request).await }));
        }
        tasks
    }

    /// Delivers one body to hook `index`, retrying, and records every attempt.
    async fn deliver(&self, index: usize, body: Bytes, request: &ApprovalRequest) {
        let Some(hook) = self.hooks.get(index) else { return };
        let attempts = self.backoff.len() + 1;
        for attempt in 1..=attempts {
            let (status, error, retry) = self.attempt(hook, &body).await;
            let delivered = error.is_none();
            let mut e = NewEvent::new(EventKind::ApprovalNotified, now_ms());
            e.agent = Some(request.agent.clone());
            e.run = Some(request.run.clone());
            e.step = Some(request.step);
            e.tool = Some(request.tool.clone());
            e.detail = json!({
                "id": request.id, "group": hook.group, "host": hook.host, "attempt": attempt,
                "max_attempts": attempts, "status": status, "error": error, "delivered": delivered,
            });
            if let Err(err) = self.audit.append(vec![e]).await {
                tracing::warn!(approval = %request.id, group = %hook.group, "cannot record a webhook attempt: {err}");
            }
            if delivered || !retry {
                return;
            }
            let Some(wait) = self.backoff.get(attempt - 1) else { return };
            tokio::time::sleep(*wait).await;
        }
    }

    /// One POST: the status received, the error (`None` when delivered) and whether to retry.
    async fn attempt(&self, hook: &Hook, body: &Bytes) -> (Option<u16>, Option<String>, bool) {
        let signature = sign(&hook.secret, unix_secs(), body);
        let Ok(signature) = HeaderValue::try_from(signature) else {
            return (None, Some("cannot build the signature header".into()), false);
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(hook.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("custos/", env!("CARGO_PKG_VERSION")))
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(body.clone()));
        let Ok(request) = request else { return (None, Some("cannot build the request".into()), false) };
        match tokio::time::timeout(self.timeout, self.client.send(request)).await {
            Err(_) => (None, Some(format!("no answer within {} ms", self.timeout.as_millis())), true),
            Ok(Err(e)) => {
                let reason = custos_tls::client::handshake_failure(&e).unwrap_or_else(|| describe(&e));
                (None, Some(reason), true)
            }
            Ok(Ok(response)) => {
                let status = response.status();
                if status.is_success() {
                    (Some(status.as_u16()), None, false)
                } else {
                    let retry = status.is_server_error()
                        || status == StatusCode::REQUEST_TIMEOUT
                        || status == StatusCode::TOO_MANY_REQUESTS;
                    (Some(status.as_u16()), Some(format!("http status {}", status.as_u16())), retry)
                }
            }
        }
    }
}

/// An error and its causes on one line (the URL is not part of any of them).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("cannot reach it ({e}");
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(&format!(": {cause}"));
        next = cause.source();
    }
    out.push(')');
    out
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let secret = b"0123456789abcdef-secret";
        let body = br#"{"approval":{"id":"apr_1"}}"#;
        let header = sign(secret, 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="), "{header}");
        assert!(verify(secret, &header, body, 1_700_000_100, 300));
        assert!(!verify(secret, &header, br#"{"approval":{"id":"apr_2"}}"#, 1_700_000_100, 300), "tampered body");
        assert!(!verify(b"another-secret-of-16", &header, body, 1_700_000_100, 300), "wrong secret");
        assert!(!verify(secret, &header, body, 1_700_000_301, 300), "too old: a replay");
        assert!(!verify(secret, &header.replace("t=1700000000", "t=1700000100"), body, 1_700_000_100, 300));
        assert!(!verify(secret, "v1=00", body, 1_700_000_000, 300));
        // The documented construction, for receivers in any language.
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(b"1700000000.");
        mac.update(body);
        assert_eq!(header, format!("t=1700000000,v1={}", hex::encode(mac.finalize().into_bytes())));
    }
}
