//! The TOML file as written. Every table refuses unknown keys, so a typo is an error that names
//! the key instead of a setting silently ignored.

use std::collections::BTreeMap;

use custos_core::ToolClass;
use serde::Deserialize;

use crate::ToolsListMode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: Option<String>,
    pub default_agent: Option<String>,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub agents: Vec<RawAgent>,
    #[serde(default)]
    pub servers: Vec<RawServer>,
    /// `[[apis]]`: plain HTTP APIs governed like MCP servers.
    #[serde(default)]
    pub apis: Vec<crate::apis::RawApi>,
    pub serve: Option<RawServe>,
    pub admin: Option<RawAdmin>,
    pub console: Option<RawConsole>,
    #[serde(default)]
    pub approvals: RawApprovals,
    #[serde(default)]
    pub credentials: RawCredentials,
    /// `[secrets.NAME]`, by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, RawSecret>,
    #[serde(default)]
    pub detection: RawDetection,
    pub telemetry: Option<crate::telemetry::RawTelemetry>,
    pub store: Option<crate::store::RawStore>,
}

/// `[detection]`: what detectors' findings do, and the thresholds of the behavioural ones.
/// Choices are strings and numbers are `u64` so that a bad value is our error naming the key and
/// the allowed values, not serde's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDetection {
    /// `record`, `redact` or `block`.
    pub output: Option<String>,
    /// `off`, `high` or `critical`.
    pub quarantine_poisoned: Option<String>,
    pub loop_threshold: Option<u64>,
    pub burst_factor: Option<u64>,
    pub burst_min_calls: Option<u64>,
    #[serde(default)]
    pub replay: RawReplay,
    /// `[[detection.limits]]`.
    #[serde(default)]
    pub limits: Vec<RawLimit>,
    /// `[detection.classifier]`.
    #[serde(default)]
    pub classifier: RawClassifier,
}

/// `[detection.classifier]`: the learned classifier on descriptors and results.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassifier {
    pub enabled: Option<bool>,
    /// A descriptor scoring at least this is quarantined.
    pub quarantine_score: Option<f64>,
    #[serde(default)]
    pub descriptors: RawThresholds,
    #[serde(default)]
    pub results: RawThresholds,
}

/// `[detection.classifier.descriptors]` and `.results`: the score of each severity.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThresholds {
    pub low: Option<f64>,
    pub medium: Option<f64>,
    pub high: Option<f64>,
}

/// `[detection.replay]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplay {
    pub window_secs: Option<u64>,
    /// `deny`, `hold` or `record`.
    pub action: Option<String>,
    /// The approver group asked with `action = "hold"`.
    pub group: Option<String>,
    pub request_ids: Option<bool>,
}

/// `[[detection.limits]]`: one rate limit, run budget or concurrency limit (or several).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    /// An agent id or `*`.
    pub agent: Option<String>,
    /// `SERVER/TOOL`, `SERVER/*` or `*`.
    pub tool: Option<String>,
    pub calls_per_minute: Option<u64>,
    pub calls_per_run: Option<u64>,
    pub concurrent: Option<u64>,
}

/// `[credentials]`: the master key, and the tokens the gateway mints for upstreams.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    pub key_file: Option<String>,
    /// `EdDSA` or `ES256`; a string so the error can name the key.
    pub algorithm: Option<String>,
    pub issuer: Option<String>,
    pub token_ttl_secs: Option<u64>,
    pub rotate_after_days: Option<u64>,
    pub unused_after_days: Option<u64>,
}

/// `[secrets.NAME]`: where a secret's value comes from (never the value itself).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    pub env: Option<String>,
    pub file: Option<String>,
    pub store: Option<bool>,
    pub rotate_after_days: Option<u64>,
}

/// `[[servers.inject]]` (and `[[apis.inject]]`): a secret placed in each request to (or the
/// environment of) an upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInjection {
    pub secret: String,
    pub header: Option<String>,
    pub query: Option<String>,
    pub env: Option<String>,
    pub format: Option<String>,
}

/// `[servers.token]`: a short-lived JWT the gateway mints for a remote server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub audience: Option<String>,
    /// `call` or `run`; a string so the error can name the key.
    pub per: Option<String>,
    pub ttl_secs: Option<u64>,
    pub header: Option<String>,
    pub format: Option<String>,
}

/// `[approvals]`: how long held calls wait, how long approvals last, who may give them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    pub timeout_ms: Option<u64>,
    pub expiry_ms: Option<u64>,
    #[serde(default)]
    pub allow_principal_approval: bool,
    /// `[approvals.groups.NAME]`, by name.
    #[serde(default)]
    pub groups: BTreeMap<String, RawApproverGroup>,
}

/// `[approvals.groups.NAME]`: the approvers a policy's `@approval("NAME")` asks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApproverGroup {
    #[serde(default)]
    pub members: Vec<String>,
    /// Groups of the identity provider (the console's `[console.oidc] groups_claim`) whose
    /// members are members of this group.
    #[serde(default)]
    pub idp_groups: Vec<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token_file: String,
    /// The URL approvers reach the admin API at (links in approval notifications).
    pub public_url: Option<String>,
    /// Whether the admin token may name the approver of a decision (off: approvers sign in).
    #[serde(default)]
    pub assert_approvers: bool,
}

/// `[console]`: the web console of `custos serve`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub session_idle_timeout_secs: Option<u64>,
    pub session_max_secs: Option<u64>,
    pub login_link_ttl_secs: Option<u64>,
    pub local_sign_in: Option<bool>,
    pub tls: Option<RawConsoleTls>,
    pub oidc: Option<RawOidc>,
}

/// `[console.tls]`: the console's own listener over TLS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsoleTls {
    pub cert_file: String,
    pub key_file: String,
}

/// `[console.oidc]`: approvers sign in with an OpenID Connect provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_file: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub identity_claim: Option<String>,
    pub groups_claim: Option<String>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    pub max_sessions: Option<u64>,
    pub max_sessions_per_agent: Option<u64>,
    pub session_idle_timeout_ms: Option<u64>,
    pub max_concurrent_per_agent: Option<u64>,
    pub max_subscriptions_per_agent: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub max_connections: Option<u64>,
    pub header_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub jwt: Option<RawJwt>,
    pub tls: Option<RawTls>,
}

/// `[serve.tls]`: TLS terminated by `custos serve` itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: String,
    pub key_file: String,
    pub client_ca_file: Option<String>,
    pub client_auth: Option<crate::ClientAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub issuer: String,
    /// The provider's keys, read from a file at start-up; or:
    pub jwks_file: Option<String>,
    /// …fetched from the provider (`https://`, or `http://` on loopback), and refreshed.
    pub jwks_url: Option<String>,
    /// Extra trust roots for `jwks_url` (a private CA).
    pub jwks_ca_file: Option<String>,
    /// Seconds between fetches of `jwks_url`.
    pub jwks_refresh_secs: Option<u64>,
    pub audience: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub leeway_secs: Option<u64>,
    pub agent_claim: Option<String>,
    pub principal_claim: Option<String>,
    #[serde(default)]
    pub required_scopes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    pub files: Vec<String>,
    pub schema: Option<String>,
    pub tools_list: Option<ToolsListMode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    #[serde(default)]
    pub record_arguments: bool,
    #[serde(default)]
    pub record_results: bool,
    pub checkpoints: Option<RawCheckpoints>,
    #[serde(default)]
    pub sinks: Vec<crate::sinks::RawSink>,
}

/// `[audit.checkpoints]`: `custos serve` signs checkpoints of the log as it grows.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheckpoints {
    pub every_events: Option<u64>,
    pub every_secs: Option<u64>,
    pub dir: Option<String>,
    pub publish_file: Option<String>,
    pub publish_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_message_bytes: Option<u64>,
    pub max_in_flight: Option<u64>,
    pub max_pending_requests: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub max_argument_values: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub id: String,
    pub owner: String,
    pub purpose: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The SPIFFE ID of the agent's client certificate (mTLS), when it authenticates by one.
    pub spiffe_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub name: String,
    pub command: Option<Vec<String>>,
    /// A remote Streamable HTTP server instead of a command.
    pub url: Option<String>,
    /// Headers sent to a remote server (never the agent's own credential).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra trust roots for an `https://` url (a private CA).
    pub ca_file: Option<String>,
    /// A client certificate chain (and its key) for an `https://` url that asks for one.
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
    /// Believe the server's `readOnlyHint` / `destructiveHint` annotations when classifying.
    #[serde(default)]
    pub trust_annotations: bool,
    /// Tool name or `*` pattern → class.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolClass>,
    /// `[[servers.inject]]`: declared secrets this server receives.
    #[serde(default)]
    pub inject: Vec<RawInjection>,
    /// `[servers.token]`: a JWT minted for this server.
    pub token: Option<RawToken>,
    /// Tool name or `*` pattern → flow marks (`untrusted_input`, `read_sensitive`, `egress`).
    #[serde(default)]
    pub flows: BTreeMap<String, Vec<String>>,
}
