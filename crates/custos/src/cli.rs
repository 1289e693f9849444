//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "custos", version, about = "A governance gateway for AI agent tool calls", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a starter config, a Cedar schema and an example policy set
    Init(InitArgs),
    /// Wrap one stdio MCP server: use as the server command in an MCP client's configuration
    Run(RunArgs),
    /// The gateway: MCP over Streamable HTTP at /mcp/{server} for every server with a command
    Serve(ServeArgs),
    /// Validate and explain policies
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Check, search and follow the audit log
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Register agents and manage their API keys
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// The approval queue: list, show, approve and deny held calls
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// The web console of `custos serve`: one-time sign-in links for approvers
    #[command(subcommand)]
    Console(ConsoleCommand),
    /// Secrets the gateway holds for upstreams: set, list and remove them (values are never shown)
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// The signing keys of the tokens the gateway mints: rotate and list them
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Mint a short-lived token by hand, or revoke one
    #[command(subcommand)]
    Token(TokenCommand),
    /// What the gateway holds, where it goes and who uses it
    #[command(subcommand)]
    Inventory(InventoryCommand),
    /// Scan tool descriptors (or, with --output, tool results) for poisoning, shadowing and
    /// injection, without a gateway
    Scan(crate::commands::scan::ScanArgs),
    /// The tool inventory and its pins: list tools, pin descriptors ahead of time, review and
    /// accept a changed (quarantined) tool
    #[command(subcommand)]
    Tools(ToolsCommand),
    /// What the detectors found (rug pulls, leaks, injections, ...), from the audit log
    Findings(FindingsArgs),
    /// Reports over the audit log and the inventory
    #[command(subcommand)]
    Report(ReportCommand),
    /// The store itself: copy an embedded deployment into PostgreSQL
    #[command(subcommand)]
    Store(crate::commands::store::StoreCommand),
    /// Four agent workflows (support, coding, procurement, operations) run through a gateway on
    /// a throwaway deployment, then their timelines read back from the audit log
    Demo(DemoArgs),
    /// One of the demo's tool servers over stdio (the demo's gateway starts them)
    #[command(hide = true)]
    DemoServer {
        /// helpdesk, codehost, procurement or ops
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Print a one-time, short-lived link that signs APPROVER in to the console (recorded in the
    /// audit log; for deployments without an identity provider)
    LoginLink {
        #[command(flatten)]
        location: Location,
        /// Who the link signs in (compared with `[approvals.groups]` members)
        #[arg(long = "as", value_name = "APPROVER")]
        approver: String,
        /// The console's base URL [default: `[console] public_url`, else its listen address]
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the deployment (config, policies, audit log); created if missing, and kept
    /// [default: a temporary folder, removed at the end]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Ask on the terminal before approving each held call, instead of approving them all
    #[arg(long)]
    pub interactive: bool,
    /// Print one JSON object: the workflows, their steps, the findings and the audit check
    #[arg(long)]
    pub json: bool,
    /// No ANSI colours, even on a terminal (also: the `NO_COLOR` environment variable)
    #[arg(long)]
    pub no_color: bool,
    /// Keep the temporary deployment and print where it is
    #[arg(long)]
    pub keep: bool,
    /// Keep the gateway running after the workflows with the web console open, print a sign-in
    /// link, and leave held calls for you to decide in a browser (Ctrl-C ends it)
    #[arg(long, conflicts_with = "interactive")]
    pub console: bool,
}

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// Every tool: listed by its server or pinned ahead of time, its class, digest and state
    /// (pinned, quarantined, unpinned)
    List {
        #[command(flatten)]
        location: Location,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Pin tool descriptors ahead of time, from a saved tools/list result or by asking the server
    /// itself; a later listing that differs quarantines the tool
    Pin(ToolsPinArgs),
    /// Accept a quarantined tool's latest descriptor as its new pin, after showing what changed
    Accept {
        #[command(flatten)]
        location: Location,
        /// The tool, as SERVER/TOOL
        #[arg(value_name = "SERVER/TOOL")]
        tool: String,
        /// Who accepts it (recorded in the audit log) [default: $USER]
        #[arg(long = "as", value_name = "WHO")]
        by: Option<String>,
    },
    /// Show how a tool's latest descriptor differs from its pinned one
    Diff {
        #[command(flatten)]
        location: Location,
        /// The tool, as SERVER/TOOL
        #[arg(value_name = "SERVER/TOOL")]
        tool: String,
    },
}

#[derive(Debug, Args)]
pub struct ToolsPinArgs {
    #[command(flatten)]
    pub location: Location,
    /// The server whose tools these are: tools are named SERVER/TOOL
    #[arg(long, value_name = "NAME")]
    pub server: String,
    /// A saved tools/list result: `{"result":{"tools":[…]}}`, `{"tools":[…]}` or `[…]`
    #[arg(long, value_name = "FILE", conflicts_with = "command")]
    pub from: Option<PathBuf>,
    /// Who pins them (recorded in the audit log) [default: $USER]
    #[arg(long = "as", value_name = "WHO")]
    pub by: Option<String>,
    /// A stdio MCP server to start and ask for its tools [default: the server's `command` in the
    /// config]
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct FindingsArgs {
    #[command(flatten)]
    pub location: Location,
    /// Only the findings of this run
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// A finding kind, e.g. rug_pull, secret_leak, output_injection
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only findings at least this severe: info, low, medium, high or critical
    #[arg(long, value_name = "MIN")]
    pub severity: Option<String>,
    /// An RFC 3339 time, or a duration back from now such as 15m or 2h
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// At most this many findings: the latest ones, oldest first
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Per agent: tools granted but unused, tools used but no longer granted, first uses of
    /// write and privileged tools, agents without an owner or not seen lately
    Drift {
        #[command(flatten)]
        location: Location,
        /// The window, in days back from now
        #[arg(long, value_name = "N", default_value_t = 30)]
        days: u64,
        /// One JSON object per agent
        #[arg(long)]
        json: bool,
    },
    /// One run's timeline for an incident review: every step with its decision, policies,
    /// approval and approver, credentials by fingerprint and findings, with the audit chain's
    /// and the latest signed checkpoint's status (exit 3 when either does not hold; the report
    /// is written all the same)
    Run {
        #[command(flatten)]
        location: Location,
        /// The run's id
        run: String,
        /// A self-contained HTML page, or Markdown
        #[arg(long, value_enum, default_value_t = RunFormat::Html)]
        format: RunFormat,
        /// Where to write the report [default: stdout]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The controls this configuration switches on, mapped to OWASP Agentic Top 10 (2026),
    /// OWASP NHI Top 10 (2025), NIST SP 800-207 tenets and CSA MAESTRO layers, with evidence
    /// counted from the audit log and the gaps left open
    Posture {
        #[command(flatten)]
        location: Location,
        /// A self-contained HTML page, or JSON
        #[arg(long, value_enum, default_value_t = PostureFormat::Html)]
        format: PostureFormat,
        /// Where to write the report [default: stdout]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// What `custos report run` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunFormat {
    Html,
    Markdown,
}

/// What `custos report posture` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PostureFormat {
    Html,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Store a secret declared with `[secrets.NAME] store = true`; the value is read from stdin
    /// (one trailing newline dropped) and kept encrypted under the master key
    Set {
        #[command(flatten)]
        location: Location,
        /// The secret's name, as declared in the config
        name: String,
    },
    /// Every configured secret and every stored one: source, whether it is available here, and
    /// its fingerprint
    List {
        #[command(flatten)]
        location: Location,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Remove a stored secret
    Rm {
        #[command(flatten)]
        location: Location,
        /// The secret's name
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a new signing key and make it the one that mints; the previous key stays published
    /// until the tokens it signed have expired
    Rotate {
        #[command(flatten)]
        location: Location,
        /// The new key's algorithm [default: `[credentials] algorithm`, else EdDSA]
        #[arg(long, value_name = "ALG", value_parser = ["EdDSA", "ES256"])]
        algorithm: Option<String>,
        /// How long the new key is published before it mints, so verifiers that cache the JWKS
        /// (for up to a minute: its max-age) learn it before they see a token it signed
        #[arg(long, value_name = "DURATION", default_value = "60s")]
        activate_in: String,
    },
    /// Every signing key: kid, algorithm, creation, and whether it mints, is still published or
    /// has expired
    List {
        #[command(flatten)]
        location: Location,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token for an agent and print it alone on stdout; the audit log records its jti,
    /// never the token
    Mint(TokenMintArgs),
    /// Revoke a minted token by its jti; the gateway refuses it from its next use
    Revoke {
        #[command(flatten)]
        location: Location,
        /// The token's `jti` claim (base64url, so it may begin with `-`)
        #[arg(allow_hyphen_values = true)]
        jti: String,
    },
}

#[derive(Debug, Args)]
pub struct TokenMintArgs {
    #[command(flatten)]
    pub location: Location,
    /// The agent the token is for (its `sub`): declared in the config or registered
    #[arg(long, value_name = "ID")]
    pub agent: String,
    /// The token's `aud`: a configured server's name (its `[servers.token] audience`, else its
    /// url), or any audience such as the gateway's own public URL
    #[arg(long, value_name = "AUD")]
    pub audience: String,
    /// The token's `scope`, space-separated
    #[arg(long, value_name = "SCOPE", default_value = "")]
    pub scope: String,
    /// How long it lives, e.g. 90s, 5m, 1h; at most 24h [default: `[credentials] token_ttl_secs`]
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Who the agent acts for: the human first, then each actor down to the agent; repeat for
    /// several
    #[arg(long = "principal", value_name = "WHO")]
    pub principal: Vec<String>,
    /// The run the token belongs to (its `run` claim)
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// Print {"token", "jti", "kid", "expires_at", "audience", "scope"} as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Every secret and signing key: source, fingerprint, age, the upstreams it goes to, the
    /// agents that used it, and warnings (rotation overdue, unused, shared, not available)
    Credentials {
        #[command(flatten)]
        location: Location,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
        /// Warn about credentials not used for this many days [default: `[credentials]
        /// unused_after_days`]
        #[arg(long, value_name = "N")]
        unused_days: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List approval requests: those waiting for a decision, or all with --all (newest first)
    List {
        #[command(flatten)]
        location: Location,
        /// Every request, whatever its state
        #[arg(long)]
        all: bool,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Show one request: the held call (arguments redacted), who may decide it, its state
    Show {
        #[command(flatten)]
        location: Location,
        /// The request's id (`apr_…`)
        id: String,
        /// Print it as one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Approve a request: exactly that call may then go through, once, before it expires
    Approve(DecideArgs),
    /// Deny a request, with a reason the agent and the log are given
    Deny(DenyArgs),
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    #[command(flatten)]
    pub location: Location,
    /// The request's id (`apr_…`)
    pub id: String,
    /// Who decides: a member of an approver group of the request [default: $CUSTOS_APPROVER]
    #[arg(long = "as", value_name = "APPROVER")]
    pub approver: Option<String>,
    /// Why (recorded in the audit log)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct DenyArgs {
    #[command(flatten)]
    pub location: Location,
    /// The request's id (`apr_…`)
    pub id: String,
    /// Who decides: a member of an approver group of the request [default: $CUSTOS_APPROVER]
    #[arg(long = "as", value_name = "APPROVER")]
    pub approver: Option<String>,
    /// Why (recorded in the audit log and given to the agent)
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Issue a new API key for an agent (registering it if the config does not declare it);
    /// the key is printed once and only its hash is kept
    Add(AgentsAddArgs),
    /// List agents from the config and the registry, with their keys
    List {
        #[command(flatten)]
        location: Location,
        /// One JSON object per agent
        #[arg(long)]
        json: bool,
    },
    /// Revoke an agent and all its keys, or one key with --key; takes effect on the next request
    Revoke {
        #[command(flatten)]
        location: Location,
        /// The agent
        id: String,
        /// Only this key (its public id: `cst_<id>` or `<id>`)
        #[arg(long, value_name = "KEY_ID")]
        key: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct AgentsAddArgs {
    #[command(flatten)]
    pub location: Location,
    /// The agent's id
    pub id: String,
    /// The human or team accountable for it (required unless the config declares the agent)
    #[arg(long)]
    pub owner: Option<String>,
    /// What it is for (required unless the config declares the agent)
    #[arg(long)]
    pub purpose: Option<String>,
    /// A group it belongs to; repeat for several
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
}

/// Where the config is, and an optional data directory that overrides it.
#[derive(Debug, Args, Clone)]
pub struct Location {
    /// The config file [default: ./custos.toml]
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory holding the audit database [default: from the config, `.custos/` beside it]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the files
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite files that already exist
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub location: Location,
    /// The agent making the calls [default: `default_agent` from the config]
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    /// The run these calls belong to [default: a new id per process]
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// The run that started this one (a sub-agent names its parent's run); recorded on run.started
    #[arg(long, value_name = "ID")]
    pub parent_run: Option<String>,
    /// The upstream's name, as tools are named `SERVER/TOOL` [default: the only server in the
    /// config, else the command's file name]
    #[arg(long, value_name = "NAME")]
    pub server: Option<String>,
    /// The MCP server command and its arguments [default: the server's `command` in the config]
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub location: Location,
    /// The address to listen on [default: `listen` under [serve] in the config, 127.0.0.1:8080]
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate every policy file against the schema
    Check {
        #[command(flatten)]
        location: Location,
    },
    /// Decide one call and show the policies that decided it
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub location: Location,
    /// The calling agent
    #[arg(long, value_name = "ID")]
    pub agent: String,
    /// The tool, as SERVER/TOOL
    #[arg(long, value_name = "SERVER/TOOL")]
    pub tool: String,
    /// The call's arguments as a JSON object
    #[arg(long, value_name = "JSON", default_value = "{}")]
    pub args: String,
    /// The tool's class [default: from the config and the tool inventory]
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,
    /// Print the explanation as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of the whole log
    Verify {
        #[command(flatten)]
        location: Location,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
        /// Also hold the log to this signed checkpoint: its signature, and the Merkle root of the
        /// log's first `size` events (detects truncation and any rewrite, even with recomputed
        /// hashes)
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// The checkpoint key to check against, in hex [default: this deployment's, from its
        /// master key]
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
    },
    /// Sign a checkpoint of the log now (its size and the RFC 6962 Merkle root of its event
    /// digests) and print it as JSON; keep it somewhere the gateway host cannot write
    Checkpoint {
        #[command(flatten)]
        location: Location,
        /// Also write it to FILE
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the public key checkpoints are signed with (hex) and its id
    CheckpointKey {
        #[command(flatten)]
        location: Location,
    },
    /// Print the inclusion proof of event SEQ in the tree of the first SIZE events
    Proof {
        #[command(flatten)]
        location: Location,
        /// The event's sequence number
        #[arg(long)]
        seq: u64,
        /// The tree's size [default: the whole log]
        #[arg(long)]
        size: Option<u64>,
    },
    /// Show that checkpoint NEW extends checkpoint OLD: both signatures and the RFC 6962
    /// consistency proof between them, made from the log and printed, or with --proof checked
    /// without the log
    Consistency {
        #[command(flatten)]
        location: Location,
        old: PathBuf,
        new: PathBuf,
        /// A proof printed earlier by this command: check it alone, without reading the log
        #[arg(long)]
        proof: Option<PathBuf>,
        /// The checkpoint public key (hex) [default: this deployment's]
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Search the log
    Query(QueryArgs),
    /// Show the latest events, and with -f keep following
    Tail(TailArgs),
    /// Write the log's events as OCSF or JSON lines, one per line, for a SIEM or an archive
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub location: Location,
    /// `ocsf` (OCSF 1.7.0 events) or `jsonl` (the log's own shape, as `audit query --json`)
    #[arg(long, value_name = "FORMAT", default_value = "ocsf")]
    pub format: String,
    /// Only events after sequence number N, or at or after an RFC 3339 time, or within a
    /// duration back from now (15m, 2h)
    #[arg(long, value_name = "N|WHEN")]
    pub since: Option<String>,
    /// Only events up to and including sequence number N, or before an RFC 3339 time or a
    /// duration back from now
    #[arg(long, value_name = "N|WHEN")]
    pub until: Option<String>,
    /// Write to FILE instead of standard output
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub location: Location,
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// SERVER/TOOL, or SERVER/ for every tool of a server
    #[arg(long, value_name = "TOOL")]
    pub tool: Option<String>,
    /// allow, deny or hold
    #[arg(long, value_name = "DECISION")]
    pub decision: Option<String>,
    /// An event kind, e.g. call.requested
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// An RFC 3339 time, or a duration back from now such as 15m or 2h
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// At most this many events (the oldest matching first)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub location: Location,
    /// How many of the latest events to show first
    #[arg(short = 'n', long, default_value_t = 20)]
    pub lines: usize,
    /// Keep printing new events as they are appended
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
}
