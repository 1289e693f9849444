//! The credential broker as the commands start it: the master key, the secrets, the signing
//! keys. One way for `serve`, `run` and the `secrets` / `keys` / `token` commands.

use std::sync::Arc;
use std::time::Duration;

use custos_config::Config;
use custos_core::{EventKind, NewEvent};
use custos_gateway::broker::{rotate_key, BrokerSources};
use custos_gateway::{now_ms, Broker};
use custos_secrets::{Algorithm, MasterKey};
use custos_store::{CredentialStore, DbLocation, SqlStore};

use crate::Failure;

/// How often a running gateway looks for keys rotated by another process.
pub const KEY_RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Extra life of a retired key in the JWKS past the longest token it may have signed: clock
/// skew between the gateway and verifiers.
const PUBLISH_LEEWAY_MS: i64 = 60_000;

/// The master key of `config`: created on first use when `create`, else it must exist.
pub fn master_key(config: &Config, create: bool) -> Result<MasterKey, Failure> {
    let path = &config.credentials.key_file;
    let loaded = if create { MasterKey::load_or_create(path) } else { MasterKey::load(path) };
    loaded.map_err(|e| Failure::usage(format!("{e} ([credentials] key_file in `{}`)", config.path.display())))
}

/// Whether this configuration holds or mints anything: secrets, minted tokens, or a master
/// key that already exists (its signing keys may serve agents' own tokens).
pub fn needed(config: &Config) -> bool {
    !config.secrets.is_empty()
        || config.servers.iter().any(|s| s.token.is_some())
        || config.apis.iter().any(|a| a.token.is_some())
        || config.credentials.key_file.exists()
}

/// The configured signing algorithm.
pub fn algorithm(config: &Config) -> Algorithm {
    match config.credentials.algorithm {
        custos_config::SigningAlgorithm::EdDSA => Algorithm::EdDSA,
        custos_config::SigningAlgorithm::ES256 => Algorithm::ES256,
    }
}

/// How long a retired key stays published: the longest token lifetime configured, plus leeway.
pub fn publish_overlap_ms(config: &Config) -> i64 {
    i64::try_from(config.max_token_ttl_secs())
        .unwrap_or(i64::MAX / 2)
        .saturating_mul(1000)
        .saturating_add(PUBLISH_LEEWAY_MS)
}

/// A started broker and the master key its signing keys reload with.
#[derive(Debug)]
pub struct Started {
    pub broker: Arc<Broker>,
    pub master: Arc<MasterKey>,
}

/// Starts the broker for `serving` when the config needs one: reads every secret, and makes a
/// first signing key when an upstream takes minted tokens and none exists yet. `None`: nothing
/// is held, and the gateway's leak guard looks only for credential shapes.
pub fn start(config: &Config, serving: &[&str], store: &mut SqlStore) -> Result<Option<Started>, Failure> {
    if !needed(config) {
        return Ok(None);
    }
    let master = master_key(config, true)?;
    let mints = config.servers.iter().any(|s| s.token.is_some() && serving.contains(&s.name.as_str()))
        || config.apis.iter().any(|a| a.token.is_some() && serving.contains(&a.name.as_str()));
    let has_active = store.signing_keys().map_err(Failure::runtime)?.iter().any(|k| k.retired_ms.is_none());
    if mints && !has_active {
        let event = NewEvent::new(EventKind::SigningKeyCreated, now_ms());
        let kid = rotate_key(store, &master, algorithm(config), publish_overlap_ms(config), 0, event)
            .map_err(|e| Failure::runtime(e.to_string()))?;
        eprintln!("custos: created signing key `{kid}` ({})", algorithm(config).as_str());
    }
    let sources = BrokerSources { config, serving, master: &master, store };
    let broker =
        Broker::load(&sources, now_ms()).map_err(|e| Failure::usage(format!("{}: {e}", config.path.display())))?;
    Ok(Some(Started { broker: Arc::new(broker), master: Arc::new(master) }))
}

/// [`start`] for `custos serve`, which always holds its signing keys, even before there is
/// one: a key made later by another process (`custos keys rotate`, `custos token mint`) is then
/// picked up within [`KEY_RELOAD_EVERY`] and the agents' tokens it signs are accepted without a
/// restart. So the master key is created now when the config would not otherwise need it. A
/// gateway that cannot create it (say, a read-only `key_file` location) starts all the same,
/// as before: it holds nothing and accepts no token of its own until it is restarted.
pub fn start_serving(config: &Config, serving: &[&str], store: &mut SqlStore) -> Result<Option<Started>, Failure> {
    if !needed(config) {
        if let Err(e) = master_key(config, true) {
            eprintln!("custos: {}; the gateway's own tokens are not accepted until it is restarted", e.message);
            return Ok(None);
        }
    }
    start(config, serving, store)
}

/// Keeps a running gateway's signing keys in step with the store: a key rotated by `custos
/// keys rotate` starts minting, and a retired one leaves the JWKS when its overlap ends.
pub fn spawn_key_reload(broker: Arc<Broker>, master: Arc<MasterKey>, db: &DbLocation) -> Result<(), Failure> {
    let Some(keys) = broker.keys().cloned() else { return Ok(()) };
    let reader = crate::context::reader(db)?;
    let reader = Arc::new(std::sync::Mutex::new(reader));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(KEY_RELOAD_EVERY);
        loop {
            tick.tick().await;
            let (reader, keys, master) = (reader.clone(), keys.clone(), master.clone());
            let reloaded = tokio::task::spawn_blocking(move || {
                let reader = reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                keys.reload(&*reader, &master, now_ms())
            })
            .await;
            match reloaded {
                Ok(Ok(true)) => tracing::info!("signing keys changed; the JWKS now has the current set"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!("cannot reload the signing keys: {e}"),
                Err(e) => tracing::error!("the signing key reload stopped: {e}"),
            }
        }
    });
    Ok(())
}
