//! Custos configuration.
//!
//! A TOML file is parsed into raw structs that refuse unknown keys, then validated into a
//! [`Config`] whose values are already checked: paths are resolved against the config file's
//! folder, agents are unique, limits are in range. Errors name the file, and the line and column
//! or the key, and say what was expected.
//!
//! # Layout
//!
//! - [`raw`]: the serde structs, one per TOML table, exactly as written.
//! - [`validate`](mod@validate): raw → [`Config`], with every check in one place.
//! - [`classify`]: tool classes from config patterns and, for trusted servers, MCP annotations.
//! - [`mod@error`]: the [`ConfigError`] type.

pub mod classify;
pub mod error;
pub mod raw;
pub mod validate;

use std::path::{Path, PathBuf};

use custos_core::{Agent, AgentId};

pub use classify::ToolClasses;
pub use error::ConfigError;

/// The file name `custos init` writes and commands look for by default.
pub const DEFAULT_CONFIG_FILE: &str = "custos.toml";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (for messages).
    pub path: PathBuf,
    /// Where the audit database lives; resolved against the config's folder.
    pub data_dir: PathBuf,
    pub policy: PolicyConfig,
    pub audit: AuditConfig,
    pub limits: Limits,
    pub agents: Vec<Agent>,
    /// The agent `custos run` acts as when `--agent` is not given.
    pub default_agent: Option<AgentId>,
    pub servers: Vec<ServerConfig>,
    pub serve: ServeConfig,
    /// The admin API of `custos serve`, when configured.
    pub admin: Option<AdminConfig>,
}

/// `[admin]`: the admin API and `/metrics`, on their own listener with their own credential.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: std::net::SocketAddr,
    /// A file holding the admin bearer token (kept out of the config, like any secret).
    pub token_file: PathBuf,
}

/// `custos serve`: the Streamable HTTP endpoint.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The loopback (or host) address to listen on.
    pub listen: std::net::SocketAddr,
    /// The URL agents use to reach the gateway, without a trailing slash: the OAuth protected
    /// resource that tokens must be issued for. `None`: `http://` and the address bound.
    pub public_url: Option<String>,
    /// Browser origins allowed to call the endpoint; requests from any other `Origin` are refused
    /// (DNS rebinding). Requests without an `Origin` header (non-browser agents) are allowed.
    pub allowed_origins: Vec<String>,
    /// Announced in the protected resource metadata.
    pub authorization_servers: Vec<String>,
    /// Open MCP sessions at once; more are refused until one ends.
    pub max_sessions: usize,
    /// Requests one agent may have in flight at once; more get 429, and other agents are not
    /// slowed by one that floods.
    pub max_concurrent_per_agent: usize,
    /// How long one request may wait for its upstream's answer.
    pub request_timeout_ms: u64,
    /// Bearer tokens from an identity provider, when configured.
    pub jwt: Option<JwtSettings>,
}

/// `[serve.jwt]`: agents authenticated by JWTs an identity provider signs.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    /// The provider's public keys (JWKS), resolved against the config's folder.
    pub jwks_file: PathBuf,
    /// The `aud` tokens must carry; default: the gateway's public URL (RFC 8707 resource).
    pub audience: Option<String>,
    /// Allowed signature algorithms; default RS256, ES256, EdDSA. `none` and HMAC are refused.
    pub algorithms: Option<Vec<String>>,
    pub leeway_secs: Option<u64>,
    /// The claim naming the agent (default `sub`).
    pub agent_claim: Option<String>,
    /// The claim naming the human the agent acts for (default: the `act` chain).
    pub principal_claim: Option<String>,
    /// Scopes every token must carry; missing ones get 403 `insufficient_scope`.
    pub required_scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Cedar policy files, resolved; never empty.
    pub files: Vec<PathBuf>,
    /// A Cedar schema file replacing the embedded one (to declare tool argument types).
    pub schema: Option<PathBuf>,
    pub tools_list: ToolsListMode,
}

/// What `tools/list` shows an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolsListMode {
    /// Hide tools the agent may never call (the default: least privilege includes least knowledge).
    Hide,
    /// Show every tool; calls are still decided one by one.
    Show,
}

#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    /// Store each call's raw arguments in the log (off by default: arguments may hold personal data).
    pub record_arguments: bool,
    /// Store each call's raw result in the log (off by default; the digest and size are always kept).
    pub record_results: bool,
}

/// Bounds on what a peer can make the gateway hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest JSON-RPC message accepted from either side, in bytes.
    pub max_message_bytes: usize,
    /// Messages read ahead while earlier ones wait for the audit log; more waits for room.
    pub max_in_flight: usize,
    /// Requests forwarded upstream and not yet answered; more are refused until answers come.
    pub max_pending_requests: usize,
    /// How long an upstream child gets to exit after its input closes before it is killed.
    pub shutdown_grace_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            max_in_flight: 64,
            max_pending_requests: 1024,
            shutdown_grace_ms: 5_000,
        }
    }
}

/// One upstream MCP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The name tools are known by: `NAME/tool`.
    pub name: String,
    /// The command that starts it over stdio, when the config gives one.
    pub command: Option<Vec<String>>,
    /// A remote Streamable HTTP server (`http://…`), instead of a command.
    pub url: Option<String>,
    /// Headers sent to the remote server.
    pub headers: Vec<(String, String)>,
    pub classes: ToolClasses,
}

impl ServerConfig {
    /// Whether `custos serve` can reach it: it has a command to start or a url to call.
    pub fn is_served(&self) -> bool {
        self.command.is_some() || self.url.is_some()
    }
}

impl Config {
    /// Reads and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::read(path, &e))?;
        Self::from_toml(path, &text)
    }

    /// Validates `text` as if read from `path` (relative paths resolve against its folder).
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError::parse(path, text, &e))?;
        validate::validate(path, raw)
    }

    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.id.0 == id)
    }

    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name == name)
    }
}
