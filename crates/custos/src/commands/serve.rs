//! `custos serve`: the Streamable HTTP gateway.

use std::sync::Arc;

use custos_http::auth::Authenticator;
use custos_http::AppState;
use custos_store::{AuditLog, SqliteStore};

use crate::cli::ServeArgs;
use crate::context;
use crate::Failure;

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let mut config = context::load_config(&args.location)?;
    if let Some(listen) = args.listen {
        config.serve.listen = listen;
    }
    let served: Vec<String> = config.servers.iter().filter(|s| s.is_served()).map(|s| s.name.clone()).collect();
    if served.is_empty() {
        return Err(Failure::usage(format!(
            "nothing to serve: give at least one [[servers]] a `command` or a `url` in `{}`",
            config.path.display()
        )));
    }
    let policy = Arc::new(super::run::load_policy(&config)?);
    let store = context::open_for_writing(&config.data_dir)?;
    let db = context::database_path(&config.data_dir);
    let registry = SqliteStore::open_read_only(&db).map_err(Failure::runtime)?;
    let reader = SqliteStore::open_read_only(&db).map_err(Failure::runtime)?;

    let runtime = super::runtime()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.serve.listen)
            .await
            .map_err(|e| Failure::usage(format!("cannot listen on `{}`: {e}", config.serve.listen)))?;
        let addr = listener.local_addr().map_err(Failure::runtime)?;
        let audit = AuditLog::start(Box::new(store)).map_err(Failure::runtime)?;
        let (jwt, required_scopes) = match &config.serve.jwt {
            Some(settings) => (Some(jwt_verifier(settings, &config, addr)?), settings.required_scopes.clone()),
            None => (None, Vec::new()),
        };
        let auth = Authenticator::new(config.agents.clone(), registry, jwt, required_scopes);
        let admin = match &config.admin {
            Some(admin) => Some(admin_listener(admin).await?),
            None => None,
        };
        let state = Arc::new(AppState::new(config, policy, audit.clone(), auth, reader, addr));
        // stdout says where to connect (the ports are real even when 0 was asked for).
        println!("listening on http://{addr}");
        for server in &served {
            eprintln!("custos: serving `{server}` at http://{addr}/mcp/{server}");
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        if let Some((listener, token)) = admin {
            let admin_addr = listener.local_addr().map_err(Failure::runtime)?;
            println!("admin on http://{admin_addr}");
            let admin_state = Arc::new(custos_http::admin::AdminState::new(state.clone(), token));
            let shutdown = until_stopped(stopped.clone());
            tokio::spawn(async move {
                if let Err(e) = custos_http::admin::serve_admin(admin_state, listener, shutdown).await {
                    eprintln!("custos: the admin api stopped: {e}");
                }
            });
        }
        tokio::spawn(async move {
            let signal = custos_gateway::shutdown_signal().await;
            eprintln!("custos: {signal}: closing sessions");
            let _ = stop.send(true);
        });
        let result = custos_http::serve(state, listener, until_stopped(stopped)).await;
        audit.shutdown().await;
        result.map_err(|e| Failure::runtime(format!("the server stopped: {e}")))
    })
}

/// The verifier for `[serve.jwt]`: the JWKS file read now, the audience defaulting to the
/// gateway's public URL.
fn jwt_verifier(
    settings: &custos_config::JwtSettings,
    config: &custos_config::Config,
    bound: std::net::SocketAddr,
) -> Result<custos_auth::JwtVerifier, Failure> {
    let jwks = std::fs::read_to_string(&settings.jwks_file).map_err(|e| {
        Failure::usage(format!("cannot read the jwks `{}` named by [serve.jwt]: {e}", settings.jwks_file.display()))
    })?;
    let audience = settings
        .audience
        .clone()
        .or_else(|| config.serve.public_url.clone())
        .unwrap_or_else(|| format!("http://{bound}"));
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
    custos_auth::JwtVerifier::new(jwt, &jwks)
        .map_err(|e| Failure::usage(format!("{}: [serve.jwt]: {e}", config.path.display())))
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
    let listener = tokio::net::TcpListener::bind(admin.listen)
        .await
        .map_err(|e| Failure::usage(format!("cannot listen on `{}` for the admin api: {e}", admin.listen)))?;
    Ok((listener, token))
}
