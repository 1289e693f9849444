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
//! - [`detection`]: `[detection]` (what findings do; replay, loop, burst, rate and budget
//!   settings) and the flow marks of `[[servers]] flows`.
//! - [`telemetry`]: `[telemetry]` (OpenTelemetry over OTLP), its TOML table and its checks.
//! - [`sinks`]: `[[audit.sinks]]` (SIEM sinks: its raw shape, settings and rules in one file).
//! - [`apis`]: `[[apis]]` (plain HTTP APIs: raw shape, settings, rules, and the class overrides
//!   checked against an imported OpenAPI document).
//! - [`mod@error`]: the [`ConfigError`] type.

pub mod apis;
pub mod classify;
pub mod detection;
pub mod error;
pub mod fuzzing;
pub mod raw;
pub mod sinks;
pub mod store;
pub mod telemetry;
#[cfg(test)]
mod tests_support;
pub mod validate;

use std::path::{Path, PathBuf};

use custos_core::{Agent, AgentId};

pub use apis::{ApiConfig, ApiOperations};
pub use classify::ToolClasses;
pub use detection::{
    ClassifierSettings, ClassifierThresholds, DetectionSettings, LimitRule, OutputAction, ReplayAction, ReplaySettings,
    Score, ToolFlows, ToolPattern,
};
pub use error::ConfigError;
pub use sinks::{SinkFormat, SinkSettings, SinkTarget, TokenSource};
pub use store::PostgresSettings;
pub use telemetry::{OtlpProtocol, TelemetrySettings};

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
    /// `[[apis]]`: plain HTTP APIs, in the order written. Not served yet.
    pub apis: Vec<ApiConfig>,
    pub serve: ServeConfig,
    /// The admin API of `custos serve`, when configured.
    pub admin: Option<AdminConfig>,
    /// `[console]`: the web console; `None` without the section.
    pub console: Option<ConsoleConfig>,
    /// `[approvals]`: held calls, approver groups and their notifications.
    pub approvals: ApprovalSettings,
    /// `[[agents]] spiffe_id`: the SPIFFE ID (canonical form) that names each agent that has
    /// one, unique. Kept here rather than on [`Agent`], which knows nothing of transports.
    pub spiffe_ids: Vec<(String, AgentId)>,
    /// `[credentials]`: the master key and the tokens minted for upstreams; defaults when absent.
    pub credentials: CredentialSettings,
    /// `[secrets.NAME]`, sorted by name: where each secret comes from, never its value.
    pub secrets: Vec<SecretConfig>,
    /// `[detection]`: what findings do, and the behavioural detectors' thresholds and limits.
    pub detection: DetectionSettings,
    /// `[telemetry]`: OpenTelemetry export; `None` (off) without the table.
    pub telemetry: Option<TelemetrySettings>,
    /// `[store] url`: the PostgreSQL database shared by replicas; `None`: the embedded SQLite
    /// file in `data_dir`.
    pub store: Option<PostgresSettings>,
}

/// `[admin]`: the admin API and `/metrics`, on their own listener with their own credential.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: std::net::SocketAddr,
    /// A file holding the admin bearer token (kept out of the config, like any secret).
    pub token_file: PathBuf,
    /// The URL approvers reach the admin API at, without a trailing slash; `None`: `http://`
    /// and the address bound.
    pub public_url: Option<String>,
    /// Whether a holder of the admin token may name the approver of a decision through the
    /// admin API. Off by default: approvers sign in to the console, and a decision records who
    /// signed in, not a name someone typed.
    pub assert_approvers: bool,
}

/// Default `[console] session_idle_timeout_secs`: a console session unused this long ends.
pub const DEFAULT_CONSOLE_IDLE_SECS: u64 = 900;
/// Default `[console] session_max_secs`: a console session ends this long after sign-in.
pub const DEFAULT_CONSOLE_MAX_SECS: u64 = 28_800;
/// Default `[console] login_link_ttl_secs`: how long a `custos console login-link` lasts.
pub const DEFAULT_LOGIN_LINK_TTL_SECS: u64 = 300;

/// `[console]`: the web console of `custos serve`, where approvers decide held calls and
/// security reviews agents, runs and calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// The console's own listener; `None`: it is served on the `[admin]` listener.
    pub listen: Option<std::net::SocketAddr>,
    /// The URL people reach the console at, without a trailing slash (links, the OpenID
    /// Connect redirect URI); `None`: `http://` or `https://` and the address bound.
    pub public_url: Option<String>,
    /// A session unused this long ends.
    pub session_idle_timeout_secs: u64,
    /// A session ends this long after its sign-in, used or not.
    pub session_max_secs: u64,
    /// How long a one-time sign-in link lasts.
    pub login_link_ttl_secs: u64,
    /// Whether `custos console login-link` links sign in (default: only without `[console.oidc]`).
    pub local_sign_in: bool,
    /// `[console.tls]`: certificate and key for the console's own listener.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub oidc: Option<OidcSettings>,
}

impl ConsoleConfig {
    /// Whether session cookies must be `Secure`: the console is reached over TLS.
    pub fn secure(&self) -> bool {
        self.tls.is_some() || self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}

/// `[console.oidc]`: an OpenID Connect provider approvers sign in with (authorization code
/// flow with PKCE; the provider found by discovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The issuer, exactly as the provider's ID tokens name it (no trailing slash added).
    pub issuer: String,
    pub client_id: String,
    /// A file holding the client secret (confidential client); `None`: a public client.
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for; always includes `openid`.
    pub scopes: Vec<String>,
    /// The claim naming the approver (default `email`).
    pub identity_claim: String,
    /// The claim listing the approver's groups (default `groups`).
    pub groups_claim: String,
    /// A CA bundle to trust for the provider's `https://` endpoints.
    pub ca_file: Option<PathBuf>,
}

/// Default `[approvals] timeout_ms`: how long a held call waits for a decision.
pub const DEFAULT_APPROVAL_TIMEOUT_MS: u64 = 60_000;
/// Default `[approvals] expiry_ms`: how long a request, and the approval given to it, lasts.
pub const DEFAULT_APPROVAL_EXPIRY_MS: u64 = 900_000;

/// `[approvals]`: privileged calls wait for a human yes bound to that exact call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// How long a held call waits for a decision before the agent is told to retry.
    pub timeout_ms: u64,
    /// How long a request stays open, and an approval usable, after the request is made.
    pub expiry_ms: u64,
    /// Whether the human an agent acts for may approve that agent's calls. Off by default:
    /// separation of duties.
    pub allow_principal_approval: bool,
    /// `[approvals.groups.NAME]`, by name.
    pub groups: Vec<ApproverGroup>,
    /// The admin API's base URL, for links in notifications: `[admin] public_url`, else `http://`
    /// and `[admin] listen`; `None` without `[admin]`.
    pub admin_url: Option<String>,
    /// The console's base URL, for links that open a request in the console; `None` without
    /// `[console]` (set by `custos serve` once the console is bound).
    pub console_url: Option<String>,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        Self {
            timeout_ms: DEFAULT_APPROVAL_TIMEOUT_MS,
            expiry_ms: DEFAULT_APPROVAL_EXPIRY_MS,
            allow_principal_approval: false,
            groups: Vec::new(),
            admin_url: None,
            console_url: None,
        }
    }
}

impl ApprovalSettings {
    pub fn group(&self, name: &str) -> Option<&ApproverGroup> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// One group of approvers a policy's `@approval("NAME")` can ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverGroup {
    pub name: String,
    /// Approver identities (e.g. e-mail addresses), compared exactly.
    pub members: Vec<String>,
    /// Identity-provider groups whose signed-in members are members of this group.
    pub idp_groups: Vec<String>,
    /// Where new requests for this group are announced, when configured.
    pub webhook: Option<Webhook>,
}

/// A webhook announcing approval requests, signed with a shared secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `http://…` or `https://…`.
    pub url: String,
    /// The file holding the signing secret, resolved against the config's folder; read at
    /// start-up, never logged.
    pub secret_file: PathBuf,
}

/// Default `[credentials] token_ttl_secs`: how long a token minted for an upstream lives.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 300;
/// The longest `token_ttl_secs` allowed anywhere: a day. Minted tokens are meant to be short-lived.
pub const MAX_TOKEN_TTL_SECS: u64 = 86_400;
/// Default `[credentials] rotate_after_days`: a secret older than this is reported as due.
pub const DEFAULT_ROTATE_AFTER_DAYS: u64 = 90;
/// Default `[credentials] unused_after_days`: a secret not used for this long is reported as idle.
pub const DEFAULT_UNUSED_AFTER_DAYS: u64 = 30;

/// `[credentials]`: how the gateway keeps secrets and mints tokens for upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSettings {
    /// The master key: encrypts stored secrets and signing keys, and keys the fingerprints.
    /// Resolved against the config's folder; default `<data_dir>/custos.key`.
    pub key_file: PathBuf,
    /// How minted tokens are signed.
    pub algorithm: SigningAlgorithm,
    /// The `iss` of minted tokens; `None`: the caller picks one (e.g. the gateway's public URL).
    pub issuer: Option<String>,
    /// How long a minted token lives unless a server's `[servers.token] ttl_secs` says otherwise.
    pub token_ttl_secs: u64,
    /// A secret older than this many days is due for rotation (unless it sets its own).
    pub rotate_after_days: u64,
    /// A secret not used for this many days is reported as unused.
    pub unused_after_days: u64,
}

/// `[credentials] algorithm`: the signature of tokens the gateway mints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// Ed25519 (the default): small keys, deterministic signatures.
    EdDSA,
    /// ECDSA on P-256 with SHA-256, for verifiers that do not take EdDSA.
    ES256,
}

impl SigningAlgorithm {
    /// The JOSE `alg` name, as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
        }
    }
}

/// `[secrets.NAME]`: a secret the gateway brokers. The config holds where its value comes from,
/// never the value: that is read at start-up, outside this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretConfig {
    /// 1 to 64 of `A-Z a-z 0-9 _ . -`.
    pub name: String,
    pub source: SecretSource,
    /// Overrides `[credentials] rotate_after_days` for this secret.
    pub rotate_after_days: Option<u64>,
}

/// Where a secret's value comes from: exactly one of `env`, `file` and `store = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The gateway's environment variable of that name.
    Env(String),
    /// A file, resolved against the config's folder.
    File(PathBuf),
    /// Set with `custos secrets set NAME`, kept encrypted in the database.
    Store,
}

impl SecretSource {
    /// For listings: `env:VAR`, `file:PATH` or `store`.
    pub fn describe(&self) -> String {
        match self {
            Self::Env(var) => format!("env:{var}"),
            Self::File(path) => format!("file:{}", path.display()),
            Self::Store => "store".to_owned(),
        }
    }
}

/// `[[servers.inject]]`: a declared secret handed to one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// The `[secrets.NAME]` it names; validated to exist.
    pub secret: String,
    pub target: InjectTarget,
    /// The value sent, with `{}` where the secret goes; `{}` appears exactly once.
    pub format: String,
}

impl Injection {
    /// The value to send: `format` with `{}` replaced by `value`.
    pub fn render(&self, value: &str) -> String {
        self.format.replacen("{}", value, 1)
    }
}

/// Where an injected secret goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectTarget {
    /// A header of each request to a remote server.
    Header(String),
    /// A query parameter of the remote server's url.
    Query(String),
    /// An environment variable of a stdio server's process.
    Env(String),
}

/// `[servers.token]`: a short-lived JWT the gateway mints for a remote server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// The token's `aud`; default: the server's `url`.
    pub audience: String,
    pub per: TokenPer,
    /// Default: `[credentials] token_ttl_secs`.
    pub ttl_secs: u64,
    /// Default `Authorization`.
    pub header: String,
    /// The header value, with `{}` where the token goes; default `Bearer {}`.
    pub format: String,
}

impl TokenSettings {
    /// The header value: `format` with `{}` replaced by `token`.
    pub fn render(&self, token: &str) -> String {
        self.format.replacen("{}", token, 1)
    }
}

/// `[servers.token] per`: how often a fresh token is minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPer {
    /// A token for each call (the default).
    Call,
    /// One token for the whole run of an agent, reused by its calls.
    Run,
}

impl TokenPer {
    /// As written in the config: `call` or `run`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Run => "run",
        }
    }
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
    /// Open MCP sessions at once; more are refused (503) until one ends.
    pub max_sessions: usize,
    /// Open MCP sessions of one agent at once (each holds its own upstream processes); more
    /// are refused (429) until one of its own ends, so one agent cannot take every place of
    /// `max_sessions` from the others.
    pub max_sessions_per_agent: usize,
    /// How long a session may sit with no request in flight and no open event stream before
    /// it is closed (its upstream stopped, its place freed); its id then answers 404, and the
    /// client starts a new session.
    pub session_idle_timeout_ms: u64,
    /// Requests one agent may have in flight at once; more get 429, and other agents are not
    /// slowed by one that floods.
    pub max_concurrent_per_agent: usize,
    /// `subscriptions/listen` streams one agent may hold open on one server at once; they are
    /// long-lived, so they are counted apart from the requests in flight.
    pub max_subscriptions_per_agent: usize,
    /// How long one request may wait for its upstream's answer.
    pub request_timeout_ms: u64,
    /// Client connections open at once (plain or TLS, whatever they are doing). One past the
    /// limit is answered `503` with `Connection: close` (plain HTTP) or closed at once (TLS)
    /// and never reaches the router: the cap is what bounds the gateway's sockets, tasks and
    /// memory when clients flood it.
    pub max_connections: usize,
    /// How long a client has to send a complete request head (request line and headers), from
    /// when the connection is ready for one: after it opens, and again after each answer on a
    /// kept-alive connection. Past it the connection is closed, so it also bounds how long an
    /// idle kept-alive connection stays open. A slowloris client holds nothing longer than this.
    pub header_timeout_ms: u64,
    /// How long a client has to send a whole request body once its head has arrived; past it
    /// the request is answered `408` and the connection closed.
    pub body_timeout_ms: u64,
    /// Bearer tokens from an identity provider, when configured.
    pub jwt: Option<JwtSettings>,
    /// TLS terminated by the gateway itself, when configured; plain HTTP otherwise.
    pub tls: Option<TlsSettings>,
}

impl ServeConfig {
    /// `https` when the gateway terminates TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Where agents reach the gateway bound at `bound`: `public_url`, else the scheme and the
    /// address. The OAuth resource tokens must name, and the default JWT audience.
    pub fn public_url_or(&self, bound: std::net::SocketAddr) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("{}://{bound}", self.scheme()))
    }
}

/// `[serve.tls]`: the gateway's certificate, and whether agents are asked for theirs.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The server certificate chain (PEM, leaf first), resolved against the config's folder.
    pub cert_file: PathBuf,
    /// Its private key (PEM), resolved against the config's folder.
    pub key_file: PathBuf,
    /// The CAs that issue agents' client certificates (PEM), resolved likewise.
    pub client_ca_file: Option<PathBuf>,
    /// Default: `optional` with a `client_ca_file`, else `none`.
    pub client_auth: ClientAuth,
}

/// `[serve.tls] client_auth`: whether agents are asked for a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Not asked: agents authenticate with bearer credentials.
    None,
    /// Asked, and verified when presented; agents without one may use a bearer credential.
    Optional,
    /// Required: the handshake fails without a certificate the client CA issued.
    Required,
}

/// `[serve.jwt]`: agents authenticated by JWTs an identity provider signs.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    /// Where the provider's public keys (JWKS) come from.
    pub jwks: JwksSource,
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

/// Where `[serve.jwt]` finds the identity provider's keys: exactly one of `jwks_file` and
/// `jwks_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file read at start-up, resolved against the config's folder.
    File(PathBuf),
    /// A URL fetched at start-up and every `refresh_secs`, and again (at most every 30 s) when a
    /// token names a key id the set does not have. `https://`, or `http://` on a loopback host.
    Url {
        url: String,
        /// Extra trust roots (a private CA), resolved against the config's folder.
        ca_file: Option<PathBuf>,
        refresh_secs: u64,
    },
}

/// Default seconds between fetches of `jwks_url`.
pub const DEFAULT_JWKS_REFRESH_SECS: u64 = 300;

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
    /// `[audit.checkpoints]`: signed checkpoints made by `custos serve`; `None`: none.
    pub checkpoints: Option<CheckpointSettings>,
    /// `[[audit.sinks]]`: where `custos serve` sends the events as they are appended.
    pub sinks: Vec<SinkSettings>,
}

/// `[audit.checkpoints]`: `custos serve` signs a checkpoint of the log (size, RFC 6962 root)
/// every `every_events` new events, or every `every_secs` when the log grew, and at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    pub every_events: u64,
    pub every_secs: u64,
    /// Where each checkpoint is kept, as `checkpoint-<size>.json`.
    pub dir: PathBuf,
    /// Where the latest checkpoint is copied (replaced atomically): a mount another party
    /// controls, say.
    pub publish_file: Option<PathBuf>,
    /// Where each checkpoint is POSTed as JSON (`http://` or `https://`, the system's roots).
    pub publish_url: Option<String>,
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
    /// JSON values (scalars, arrays, objects) one call's arguments may hold. Counted while the
    /// message is read, so a call past it is refused before anything is built from it: each
    /// value costs the gateway about a hundred bytes to decide on, whatever its size on the wire.
    pub max_argument_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            max_in_flight: 64,
            max_pending_requests: 1024,
            shutdown_grace_ms: 5_000,
            max_argument_values: 10_000,
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
    /// A remote Streamable HTTP server (`http://…` or `https://…`), instead of a command.
    pub url: Option<String>,
    /// Headers sent to the remote server.
    pub headers: Vec<(String, String)>,
    /// TLS to an `https://` server; empty otherwise.
    pub tls: UpstreamTls,
    pub classes: ToolClasses,
    /// `[[servers.inject]]`: secrets handed to this server, in the order written.
    pub inject: Vec<Injection>,
    /// `[servers.token]`: a JWT minted for this (remote) server, when configured.
    pub token: Option<TokenSettings>,
    /// `flows`: which tools bring in untrusted input, read sensitive data or send data out.
    pub flows: ToolFlows,
}

/// TLS settings of an `https://` upstream, beyond the system's trust roots. Paths are resolved
/// against the config's folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Extra trust roots (a private CA bundle).
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and its key, presented to a server that asks for one (mTLS).
    pub client_identity: Option<(PathBuf, PathBuf)>,
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

    /// The agent whose `spiffe_id` is `id` (canonical form, compared exactly).
    pub fn agent_for_spiffe(&self, id: &str) -> Option<&Agent> {
        let (_, agent) = self.spiffe_ids.iter().find(|(spiffe, _)| spiffe == id)?;
        self.agent(&agent.0)
    }

    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The `[[apis]]` entry called `name`.
    pub fn api(&self, name: &str) -> Option<&ApiConfig> {
        self.apis.iter().find(|a| a.name == name)
    }

    /// The `[secrets.NAME]` called `name`.
    pub fn secret(&self, name: &str) -> Option<&SecretConfig> {
        self.secrets.iter().find(|s| s.name == name)
    }

    /// The longest lifetime of any token the gateway mints: `[credentials] token_ttl_secs` or a
    /// server's `[servers.token] ttl_secs`, whichever is larger.
    pub fn max_token_ttl_secs(&self) -> u64 {
        self.servers
            .iter()
            .filter_map(|s| s.token.as_ref().map(|t| t.ttl_secs))
            .fold(self.credentials.token_ttl_secs, u64::max)
    }
}
