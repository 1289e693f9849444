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
    pub serve: Option<RawServe>,
    pub admin: Option<RawAdmin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token_file: String,
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
    pub max_concurrent_per_agent: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub jwt: Option<RawJwt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub issuer: String,
    pub jwks_file: String,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_message_bytes: Option<u64>,
    pub max_in_flight: Option<u64>,
    pub max_pending_requests: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub id: String,
    pub owner: String,
    pub purpose: String,
    #[serde(default)]
    pub groups: Vec<String>,
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
    /// Believe the server's `readOnlyHint` / `destructiveHint` annotations when classifying.
    #[serde(default)]
    pub trust_annotations: bool,
    /// Tool name or `*` pattern → class.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolClass>,
}
