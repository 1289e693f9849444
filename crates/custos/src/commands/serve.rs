//! `custos serve`: the Streamable HTTP gateway.

use std::sync::Arc;

use custos_http::auth::Authenticator;
use custos_http::AppState;
use custos_store::AuditLog;

use crate::cli::ServeArgs;
use crate::context;
use crate::Failure;

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let mut config = context::load_config(&args.location)?;
    if let Some(listen) = args.listen {
        config.serve.listen = listen;
    }
    let served: Vec<String> = config.servers.iter().filter(|s| s.is_served()).map(|s| s.name.clone()).collect();
    if served.is_empty() && config.apis.is_empty() {
        return Err(Failure::usage(format!(
            "nothing to serve: give at least one [[servers]] a `command` or a `url`, or declare [[apis]], in `{}`",
            config.path.display()
        )));
    }
    check_upstream_tls(&config)?;
    warn_if_few_files(config.serve.max_connections);
    let policy = Arc::new(super::run::load_policy(&config)?);
    let mut store = context::open_for_writing(&config)?;
    let db = context::database(&config);
    let serving: Vec<&str> =
        served.iter().map(String::as_str).chain(config.apis.iter().map(|a| a.name.as_str())).collect();
    let broker = crate::credentials::start_serving(&config, &serving, &mut store)?;
    let apis = load_apis(&config, broker.as_ref().map(|started| started.broker.clone()))?;
    let registry = context::reader(&db)?;
    let reader = context::reader(&db)?;
    let detection = super::run::detection(&config, &db)?;
    let tls = tls_acceptor(&config)?;
    let scheme = config.serve.scheme();

    let runtime = super::runtime()?;
    runtime.block_on(async {
        let listener = custos_http::bind(config.serve.listen)
            .map_err(|e| Failure::usage(format!("cannot listen on `{}`: {e}", config.serve.listen)))?;
        let addr = listener.local_addr().map_err(Failure::runtime)?;
        let audit = AuditLog::start(Box::new(store)).map_err(Failure::runtime)?;
        let mut telemetry = super::run::telemetry(&config)?;
        let checkpoints = match &config.audit.checkpoints {
            Some(settings) => {
                let master = crate::credentials::master_key(&config, true)?;
                let key =
                    custos_evidence::CheckpointKey::from_seed(master.checkpoint_seed()).map_err(Failure::runtime)?;
                let running = crate::checkpoints::start(settings.clone(), key, &db)
                    .map_err(|e| Failure::usage(format!("{}: [audit.checkpoints]: {e}", config.path.display())))?;
                Some(running)
            }
            None => None,
        };
        // After the log's writer: the sinks read what it appends.
        let sinks = crate::sinks::start(&config, &db)?;
        let (jwt, required_scopes) = match &config.serve.jwt {
            Some(settings) => (Some(jwt_verifier(settings, &config, addr).await?), settings.required_scopes.clone()),
            None => (None, Vec::new()),
        };
        let mut auth = Authenticator::new(config.agents.clone(), registry, jwt, required_scopes)
            .with_spiffe_ids(config.spiffe_ids.clone());
        if let Some(started) = &broker {
            crate::credentials::spawn_key_reload(started.broker.clone(), started.master.clone(), &db)?;
            if let Some(keys) = started.broker.keys() {
                // Agents may also present tokens the gateway minted for itself (`custos token
                // mint` with the gateway's URL as the audience). There may be no key yet: the
                // first one made, here or by another process, is picked up as it appears.
                let own = custos_http::auth::OwnTokens::new(keys.clone(), &config.serve.public_url_or(addr))
                    .map_err(|e| Failure::usage(format!("{}: the gateway's own tokens: {e}", config.path.display())))?;
                auth = auth.with_own_tokens(own);
            }
        }
        let admin = match &config.admin {
            Some(admin) => Some(admin_listener(admin).await?),
            None => None,
        };
        let console_listener = match config.console.as_ref().and_then(|c| c.listen) {
            Some(listen) => Some(
                custos_http::bind(listen)
                    .map_err(|e| Failure::usage(format!("cannot listen on `{listen}` for the console: {e}")))?,
            ),
            None => None,
        };
        let console_url = console_url(&config, console_listener.as_ref(), admin.as_ref().map(|(l, _)| l));
        let mut approvals_config = config.clone();
        approvals_config.approvals.console_url.clone_from(&console_url);
        let approvals = approvals(&approvals_config, audit.clone(), &db, admin.as_ref().map(|(listener, _)| listener))?;
        let console = match &console_url {
            Some(base) => Some(console(&config, &policy, &audit, &approvals, &db, base).await?),
            None => None,
        };
        let api_names: Vec<String> = apis.iter().map(|a| a.name().to_owned()).collect();
        let mut state = AppState::new(config, policy, audit.clone(), auth, reader, addr)
            .with_approvals(approvals.clone())
            .with_apis(apis);
        if let Some(started) = broker {
            state = state.with_broker(started.broker);
        }
        let state = Arc::new(state.with_detection(detection).with_tracer(telemetry.tracer()));
        // With `[telemetry]`, what `/metrics` shows is pushed over OTLP too.
        telemetry.push_metrics(state.metrics().clone());
        // Handlers first: a SIGTERM sent as soon as we say we are ready ends us gracefully.
        let signalled = custos_gateway::shutdown_signal();
        // stdout says where to connect (the ports are real even when 0 was asked for).
        say(&format!("listening on {scheme}://{addr}"));
        for server in &served {
            eprintln!("custos: serving `{server}` at {scheme}://{addr}/mcp/{server}");
        }
        for api in &api_names {
            eprintln!("custos: proxying API `{api}` at {scheme}://{addr}/api/{api}/");
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let identity = console.as_ref().and_then(|c| c.oidc.clone());
        let console_routes = console.map(custos_console::router);
        if let Some((listener, token)) = admin {
            let admin_addr = listener.local_addr().map_err(Failure::runtime)?;
            say(&format!("admin on http://{admin_addr}"));
            let mut admin_state = custos_http::admin::AdminState::new(state.clone(), token).with_approvals(approvals);
            let on_admin = state.config.console.as_ref().is_some_and(|c| c.listen.is_none());
            if let (Some(routes), Some(base), true) = (console_routes.clone(), &console_url, on_admin) {
                say(&format!("console on {base}/console/"));
                admin_state = admin_state.with_routes(routes);
            }
            if let Some(identity) = identity {
                admin_state = admin_state.with_identity(Arc::new(identity));
            }
            let admin_state = Arc::new(admin_state);
            let shutdown = until_stopped(stopped.clone());
            tokio::spawn(async move {
                if let Err(e) = custos_http::admin::serve_admin(admin_state, listener, shutdown).await {
                    eprintln!("custos: the admin api stopped: {e}");
                }
            });
        }
        if let (Some(base), Some(listener)) = (&console_url, console_listener) {
            say(&format!("console on {base}/console/"));
            let tls = console_tls(&state.config)?;
            let routes = console_routes.unwrap_or_default();
            let (app, shutdown) = (state.clone(), until_stopped(stopped.clone()));
            tokio::spawn(async move {
                if let Err(e) = custos_http::admin::serve_routes(app, routes, listener, "console", tls, shutdown).await
                {
                    eprintln!("custos: the console stopped: {e}");
                }
            });
        }
        tokio::spawn(async move {
            let signal = signalled.await;
            eprintln!("custos: {signal}: closing sessions");
            let _ = stop.send(true);
        });
        let result = match tls {
            Some(acceptor) => custos_http::serve_tls(state, listener, acceptor, until_stopped(stopped)).await,
            None => custos_http::serve(state, listener, until_stopped(stopped)).await,
        };
        audit.shutdown().await;
        // The last spans, before the process exits.
        telemetry.shutdown().await;
        if let Some(checkpoints) = checkpoints {
            // The last checkpoint covers every event the gateway wrote.
            checkpoints.stop();
        }
        // A last delivery of everything the gateway wrote.
        crate::sinks::stop(sinks);
        result.map_err(|e| Failure::runtime(format!("the server stopped: {e}")))
    })
}

/// The verifier for `[serve.jwt]`, the audience defaulting to the gateway's public URL. A
/// `jwks_file` is read now; a `jwks_url` is fetched now and then kept fresh in the background.
/// A first fetch that fails does not stop start-up (the provider may just be starting too):
/// bearer tokens get 503 until a retry succeeds, and API keys work meanwhile.
async fn jwt_verifier(
    settings: &custos_config::JwtSettings,
    config: &custos_config::Config,
    bound: std::net::SocketAddr,
) -> Result<custos_http::jwks::Jwt, Failure> {
    let audience = settings.audience.clone().unwrap_or_else(|| config.serve.public_url_or(bound));
    let mut jwt = custos_auth::JwtConfig::new(settings.issuer.clone(), audience);
    if let Some(algorithms) = &settings.algorithms {
        jwt.allowed_algorithms = algorithms.clone();
    }
    if let Some(leeway) = settings.leeway_secs {
        jwt.leeway_secs = leeway;
    }
    if let Some(claim) = &settings.agent_claim {
        jwt.agent_claim = claim.clone();
    }
    jwt.principal_claim = settings.principal_claim.clone();
    let bad = |e: &dyn std::fmt::Display| Failure::usage(format!("{}: [serve.jwt]: {e}", config.path.display()));
    match &settings.jwks {
        custos_config::JwksSource::File(path) => {
            let jwks = std::fs::read_to_string(path).map_err(|e| {
                Failure::usage(format!("cannot read the jwks `{}` named by [serve.jwt]: {e}", path.display()))
            })?;
            let verifier = custos_auth::JwtVerifier::new(jwt, &jwks).map_err(|e| bad(&e))?;
            Ok(custos_http::jwks::Jwt::fixed(verifier))
        }
        custos_config::JwksSource::Url { url, ca_file, refresh_secs } => {
            let verifier = custos_auth::JwtVerifier::without_keys(jwt).map_err(|e| bad(&e))?;
            let fetcher =
                custos_http::jwks::JwksFetcher::new(url, ca_file.as_deref(), verifier).map_err(|e| bad(&e))?;
            let fetcher = Arc::new(fetcher);
            let failing = match fetcher.refresh().await {
                Ok(()) => false,
                Err(e) => {
                    eprintln!("custos: {e}; bearer tokens are refused (503) until a fetch succeeds");
                    true
                }
            };
            fetcher.spawn_refresher(std::time::Duration::from_secs(*refresh_secs), failing);
            Ok(custos_http::jwks::Jwt::fetched(fetcher))
        }
    }
}

/// The TLS settings of each `https://` upstream, loaded once now so that a missing or bad
/// `ca_file` or client certificate stops start-up with the file's name instead of failing
/// every session.
fn check_upstream_tls(config: &custos_config::Config) -> Result<(), Failure> {
    for server in &config.servers {
        if !server.url.as_deref().is_some_and(|u| u.starts_with("https://")) {
            continue;
        }
        let identity = server.tls.client_identity.as_ref().map(|(cert, key)| (cert.as_path(), key.as_path()));
        custos_tls::client::ClientTls::load(server.tls.ca_file.as_deref(), identity)
            .map_err(|e| Failure::usage(format!("{}: server `{}`: {e}", config.path.display(), server.name)))?;
    }
    Ok(())
}

/// File descriptors the gateway needs besides client connections: the store, sessions'
/// upstream processes, the admin listener's connections. A rough floor, for a warning only.
const FILES_BESIDES_CONNECTIONS: u64 = 256;

/// Warns when the process may open too few files for `max_connections`: past the limit new
/// connections are not refused with a 503 but wait in the kernel's queue (accept fails and is
/// retried a second later). Linux only (`/proc/self/limits`); silent elsewhere.
fn warn_if_few_files(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else { return };
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse::<u64>().ok());
    let wanted = u64::try_from(max_connections).unwrap_or(u64::MAX).saturating_add(FILES_BESIDES_CONNECTIONS);
    if let Some(soft) = soft.filter(|soft| *soft < wanted) {
        eprintln!(
            "custos: the process may open {soft} files, and [serve] max_connections = {max_connections} needs about \
             {wanted}: raise the limit (`ulimit -n`, systemd `LimitNOFILE=`) or lower max_connections"
        );
    }
}

/// The TLS acceptor for `[serve.tls]`, its files read now so that a missing or mismatched file
/// stops start-up with the file's name.
fn tls_acceptor(config: &custos_config::Config) -> Result<Option<custos_tls::server::Acceptor>, Failure> {
    let Some(settings) = &config.serve.tls else {
        if !config.spiffe_ids.is_empty() {
            eprintln!("custos: some agents have a `spiffe_id`, but without [serve.tls] no client certificate is read");
        }
        return Ok(None);
    };
    if !config.spiffe_ids.is_empty() && settings.client_auth == custos_config::ClientAuth::None {
        eprintln!(
            "custos: some agents have a `spiffe_id`, but [serve.tls] client_auth = \"none\" asks for no certificate"
        );
    }
    custos_http::tls::acceptor(settings)
        .map(Some)
        .map_err(|e| Failure::usage(format!("{}: [serve.tls]: {e}", config.path.display())))
}

/// One line on stdout (where to connect). A reader that went away (a supervisor that read the
/// first lines and closed the pipe) is no reason to stop serving, as `println!` would.
fn say(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The console's base URL: `[console] public_url`, else the scheme and the address bound (its
/// own listener, or the admin one); `None` without `[console]`.
fn console_url(
    config: &custos_config::Config,
    own: Option<&tokio::net::TcpListener>,
    admin: Option<&tokio::net::TcpListener>,
) -> Option<String> {
    let console = config.console.as_ref()?;
    if let Some(url) = &console.public_url {
        return Some(url.clone());
    }
    let scheme = if own.is_some() && console.tls.is_some() { "https" } else { "http" };
    let addr = own.or(admin)?.local_addr().ok()?;
    Some(format!("{scheme}://{addr}"))
}

/// The console: the identity provider discovered now (a provider that cannot be reached stops
/// start-up, naming it), its own reader of the database.
pub(crate) async fn console(
    config: &custos_config::Config,
    policy: &Arc<custos_policy::PolicyEngine>,
    audit: &AuditLog,
    approvals: &custos_approvals::Approvals,
    db: &custos_store::DbLocation,
    base_url: &str,
) -> Result<Arc<custos_console::Console>, Failure> {
    let settings = config.console.as_ref().ok_or_else(|| Failure::runtime("no [console]"))?;
    let oidc = match &settings.oidc {
        Some(oidc) => Some(
            custos_console::oidc::OidcClient::discover(oidc)
                .await
                .map_err(|e| Failure::usage(format!("{}: [console.oidc]: {e}", config.path.display())))?,
        ),
        None => None,
    };
    let parts = custos_console::ConsoleParts {
        config: Arc::new(config.clone()),
        approvals: Some(approvals.clone()),
        audit: audit.clone(),
        reader: context::reader(db)?,
        database: db.clone(),
        policy: policy.clone(),
        oidc,
        base_url: base_url.to_owned(),
    };
    custos_console::Console::new(parts).map(Arc::new).map_err(Failure::usage)
}

/// The TLS acceptor of `[console.tls]`, its files read now.
fn console_tls(config: &custos_config::Config) -> Result<Option<custos_tls::server::Acceptor>, Failure> {
    let Some((cert, key)) = config.console.as_ref().and_then(|c| c.tls.as_ref()) else { return Ok(None) };
    let settings = custos_config::TlsSettings {
        cert_file: cert.clone(),
        key_file: key.clone(),
        client_ca_file: None,
        client_auth: custos_config::ClientAuth::None,
    };
    custos_http::tls::acceptor(&settings)
        .map(Some)
        .map_err(|e| Failure::usage(format!("{}: [console.tls]: {e}", config.path.display())))
}

/// The admin listener and its token, read from `[admin] token_file`.
async fn admin_listener(admin: &custos_config::AdminConfig) -> Result<(tokio::net::TcpListener, String), Failure> {
    let token = std::fs::read_to_string(&admin.token_file)
        .map_err(|e| Failure::usage(format!("cannot read the admin token `{}`: {e}", admin.token_file.display())))?
        .trim()
        .to_owned();
    if token.len() < 16 {
        return Err(Failure::usage(format!(
            "the admin token in `{}` is too short: use at least 16 characters of randomness",
            admin.token_file.display()
        )));
    }
    let listener = custos_http::bind(admin.listen)
        .map_err(|e| Failure::usage(format!("cannot listen on `{}` for the admin api: {e}", admin.listen)))?;
    Ok((listener, token))
}

/// The approval queue over the audit database (webhook secrets read now). Without `[admin]
/// public_url`, notification links name the admin listener as bound (its port is real even when
/// 0 was asked for).
pub(crate) fn approvals(
    config: &custos_config::Config,
    audit: AuditLog,
    db: &custos_store::DbLocation,
    admin: Option<&tokio::net::TcpListener>,
) -> Result<custos_approvals::Approvals, Failure> {
    let mut settings = config.approvals.clone();
    let bound = admin.and_then(|l| l.local_addr().ok());
    if let (Some(addr), Some(None)) = (bound, config.admin.as_ref().map(|a| a.public_url.as_ref())) {
        settings.admin_url = Some(format!("http://{addr}"));
    }
    custos_approvals::Approvals::new(audit, db, settings)
        .map_err(|e| Failure::usage(format!("{}: [approvals]: {e}", config.path.display())))
}

/// The `[[apis]]` of the config, each read (its OpenAPI document) and ready to proxy, with the
/// broker that holds their secrets (none: nothing is injected). A document that cannot be read
/// stops start-up, naming the api and the document.
pub(crate) fn load_apis(
    config: &custos_config::Config,
    broker: Option<Arc<custos_gateway::Broker>>,
) -> Result<Vec<custos_http::api::Api>, Failure> {
    let broker = broker.unwrap_or_else(|| Arc::new(custos_gateway::Broker::shapes_only()));
    let timeout = std::time::Duration::from_millis(config.serve.request_timeout_ms);
    config
        .apis
        .iter()
        .map(|api| {
            custos_http::api::Api::load(api, broker.clone(), timeout)
                .map_err(|e| Failure::usage(format!("{}: api `{}`: {e}", config.path.display(), api.name)))
        })
        .collect()
}
