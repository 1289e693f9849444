//! `custos run -- CMD ARGS…`: one stdio MCP server, governed.

use std::path::Path;
use std::sync::Arc;

use custos_config::Config;
use custos_core::RunId;
use custos_gateway::{serve_stdio, Gateway, GatewaySpec, StdioExit};
use custos_policy::{PolicyEngine, SchemaSource};
use custos_store::{AgentRegistry, AuditLog, DbLocation};

use crate::cli::RunArgs;
use crate::context;
use crate::Failure;

pub fn run(args: RunArgs) -> Result<(), Failure> {
    let config = context::load_config(&args.location)?;
    let agent_id = args
        .agent
        .clone()
        .or_else(|| config.default_agent.as_ref().map(|a| a.0.clone()))
        .ok_or_else(|| Failure::usage("no agent: pass --agent ID or set `default_agent` in the config"))?;
    let agent = resolve_agent(&config, &agent_id)?;
    let (server, command) = upstream(&config, args.server.as_deref(), args.command)?;
    let policy = Arc::new(load_policy(&config)?);

    let mut store = context::open_for_writing(&config)?;
    let broker = crate::credentials::start(&config, &[server.name.as_str()], &mut store)?.map(|started| started.broker);
    let run = RunId(args.run.unwrap_or_else(new_run_id));
    let history = custos_store::run_summary(&store, &run.0).map_err(Failure::runtime)?;
    if let Some(owner) = history.agent.as_ref().filter(|owner| **owner != agent.id) {
        return Err(Failure::usage(format!("run `{run}` belongs to agent `{owner}`; name a new run")));
    }
    let first_step_after = history.last_step;
    let known_tools = custos_store::known_tools(&store, &server.name).map_err(Failure::runtime)?;
    let quarantined: Vec<String> = custos_store::Store::tools(&store)
        .map_err(Failure::runtime)?
        .into_iter()
        .filter(|t| t.tool.server() == server.name && t.quarantined())
        .map(|t| t.tool.name().to_owned())
        .collect();
    let db = context::database(&config);
    let detection = detection(&config, &db)?;

    let runtime = super::runtime()?;
    let exit = runtime.block_on(async {
        let audit = AuditLog::start(Box::new(store)).map_err(Failure::runtime)?;
        // Held calls wait here; approvers decide from another terminal (`custos approvals`)
        // against the same database, which this process polls.
        let approvals =
            custos_approvals::Approvals::new(audit.clone(), &db, config.approvals.clone()).map_err(Failure::runtime)?;
        let mut telemetry = telemetry(&config)?;
        // Nothing scrapes a stdio proxy; with `[telemetry]` its counters go out over OTLP.
        let metrics = metrics_registry(&config);
        telemetry.push_metrics(metrics.clone());
        let gateway = Arc::new(Gateway::new(GatewaySpec {
            agent,
            principal: Vec::new(),
            run,
            parent_run: args.parent_run.map(RunId),
            shared_steps: None,
            first_step_after,
            server: server.name.clone(),
            classes: server.classes.clone(),
            policy,
            audit: audit.clone(),
            tools_list: config.policy.tools_list,
            audit_config: config.audit.clone(),
            limits: config.limits,
            known_tools,
            metrics: custos_gateway::GatewayMetrics::register(&metrics),
            tracer: telemetry.tracer(),
            approvals: Some(approvals),
            broker,
            detection,
            run_state: None,
            flows: server.flows.clone(),
            quarantined,
        }));
        let (stdin, stdout) = client_streams();
        let stdin = tokio::io::BufReader::with_capacity(64 * 1024, stdin);
        let result = serve_stdio(gateway, &command, stdin, stdout, config.limits).await;
        audit.shutdown().await;
        // A short session's spans are still queued: send them before the runtime stops.
        telemetry.shutdown().await;
        result.map_err(Failure::usage)
    })?;
    // Do not wait for a blocked stdin read to notice: the session is over.
    runtime.shutdown_background();
    match exit {
        StdioExit::UpstreamExited { status } => Err(Failure::runtime(format!(
            "upstream `{}` exited ({status}); unanswered requests were failed",
            server.name
        ))),
        StdioExit::ClientClosed { .. } | StdioExit::Signal(_) => Ok(()),
    }
}

/// The metrics registry of this process, its OTLP resource named as `[telemetry]` names it.
pub(crate) fn metrics_registry(config: &Config) -> custos_metrics::Registry {
    match &config.telemetry {
        Some(settings) => custos_metrics::Registry::for_service(&settings.service_name),
        None => custos_metrics::Registry::new(),
    }
}

/// OpenTelemetry from `[telemetry]` (off without it). Runs inside the runtime, which carries
/// the exports.
pub(crate) fn telemetry(config: &Config) -> Result<custos_telemetry::Telemetry, Failure> {
    custos_telemetry::Telemetry::start(config.telemetry.as_ref())
        .map_err(|e| Failure::usage(format!("{}: {e}", config.path.display())))
}

/// The detectors of this process, with a read-only view of the store `db` (pins, history) and
/// every tool the inventory knows (for shadowing). On PostgreSQL, where replicas share one
/// database, their limits, loops and replays are counted in it, through a connection of their
/// own.
pub(crate) fn detection(config: &Config, db: &DbLocation) -> Result<Arc<custos_gateway::detect::Detection>, Failure> {
    let reader = context::reader(db)?;
    let known = custos_store::Store::tools(&reader).map_err(Failure::runtime)?.into_iter().map(|t| t.tool).collect();
    let detection = custos_gateway::detect::Detection::new(config.detection.clone(), Some(reader), known);
    Ok(Arc::new(match db {
        DbLocation::File(_) => detection,
        DbLocation::Postgres(_) => {
            detection.sharing_limits(custos_gateway::abuse::SharedState::new(context::writer(db)?))
        }
    }))
}

/// The agent from the config, else from the registry (`custos agents add`); a revoked agent
/// cannot act.
fn resolve_agent(config: &Config, id: &str) -> Result<custos_core::Agent, Failure> {
    // Only if the database exists: an unknown agent must not create a log.
    let db = context::database(config);
    let registered = if db.exists() {
        // Read-write: opening brings a database written by an earlier Custos up to this schema.
        let store = context::writer(&db)?;
        store.agents().map_err(Failure::runtime)?.into_iter().find(|r| r.agent.id.0 == id)
    } else {
        None
    };
    if registered.as_ref().is_some_and(|r| r.revoked_ms.is_some()) {
        return Err(Failure::usage(format!("agent `{id}` is revoked (custos agents revoke)")));
    }
    config.agent(id).cloned().or_else(|| registered.map(|r| r.agent)).ok_or_else(|| {
        Failure::usage(format!(
            "unknown agent `{id}`: declare it under [[agents]] in `{}` or register it with `custos agents add`",
            config.path.display()
        ))
    })
}

/// The upstream's name and classification rules, and the command that starts it.
fn upstream(
    config: &Config,
    name: Option<&str>,
    command: Vec<String>,
) -> Result<(custos_config::ServerConfig, Vec<String>), Failure> {
    let server = match name {
        Some(name) => match config.server(name) {
            Some(s) => s.clone(),
            None if config.servers.is_empty() => unconfigured(name),
            None => {
                return Err(Failure::usage(format!(
                    "unknown server `{name}`: declare it under [[servers]] in `{}`",
                    config.path.display()
                )))
            }
        },
        None => match config.servers.as_slice() {
            [only] => only.clone(),
            [] => {
                let program = command
                    .first()
                    .ok_or_else(|| Failure::usage("no upstream command: custos run [OPTIONS] -- CMD [ARGS…]"))?;
                let stem = Path::new(program)
                    .file_stem()
                    .map_or_else(|| program.clone(), |s| s.to_string_lossy().into_owned());
                unconfigured(&stem)
            }
            _ => return Err(Failure::usage("several servers are configured: name one with --server")),
        },
    };
    let command = if command.is_empty() { server.command.clone().unwrap_or_default() } else { command };
    if command.is_empty() {
        return Err(Failure::usage(format!(
            "no command for server `{}`: give one after `--` or set `command` under [[servers]]",
            server.name
        )));
    }
    Ok((server, command))
}

/// A server the config does not describe: its tools are all privileged (nothing is trusted).
fn unconfigured(name: &str) -> custos_config::ServerConfig {
    custos_config::ServerConfig {
        name: name.to_owned(),
        command: None,
        url: None,
        headers: Vec::new(),
        tls: custos_config::UpstreamTls::default(),
        classes: custos_config::ToolClasses::new(false, Default::default()),
        inject: Vec::new(),
        token: None,
        flows: custos_config::ToolFlows::default(),
    }
}

pub fn load_policy(config: &Config) -> Result<PolicyEngine, Failure> {
    let schema = config.policy.schema.clone().map_or(SchemaSource::Embedded, SchemaSource::File);
    PolicyEngine::load(&schema, &config.policy.files).map_err(Failure::usage)
}

/// A fresh run id: time and process id make it unique on this machine.
fn new_run_id() -> String {
    format!("run-{}-{}", custos_gateway::now_ms(), std::process::id())
}

/// The client's side of the session: stdin and stdout as non-blocking pipes when they are
/// pipes (what an MCP client gives its server), read and written from the runtime's own event
/// loop; otherwise (a terminal, a file) tokio's stdin and stdout, which hand every read and
/// write to a blocking thread — a thread switch per message.
fn client_streams() -> (Box<dyn tokio::io::AsyncRead + Unpin + Send>, Box<dyn tokio::io::AsyncWrite + Unpin + Send>) {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let input = std::io::stdin().as_fd().try_clone_to_owned().and_then(pipe::Receiver::from_owned_fd);
    let output = std::io::stdout().as_fd().try_clone_to_owned().and_then(pipe::Sender::from_owned_fd);
    let input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match input {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdin()),
    };
    let output: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match output {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdout()),
    };
    (input, output)
}
