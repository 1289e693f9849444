//! `[[audit.sinks]]`: `custos serve` sends the log's events to SIEMs as they are appended.
//!
//! Each sink is built here from its settings (its token read from the encrypted store or its
//! file, its CA loaded), so that a sink that can never work stops start-up; a receiver that is
//! merely down does not: its thread (`custos_siem::runner`) retries, and the events wait in the
//! log. Cursors are kept in `<data_dir>/sinks/`.

use std::time::Duration;

use custos_config::{Config, SinkFormat, SinkSettings, SinkTarget, TokenSource};
use custos_siem::http::{HttpSink, Receiver, Token};
use custos_siem::jsonl::{JsonlSink, Rotation};
use custos_siem::runner::{self, Follow, Running};
use custos_siem::syslog::SyslogSink;
use custos_siem::{Format, Sink};
use custos_store::{CredentialStore, DbLocation, SqlStore};

use crate::Failure;

/// Starts every configured sink; none when there are none.
pub fn start(config: &Config, db: &DbLocation) -> Result<Vec<Running>, Failure> {
    let dir = config.data_dir.join("sinks");
    let mut running = Vec::with_capacity(config.audit.sinks.len());
    for settings in &config.audit.sinks {
        let fail = |e: &dyn std::fmt::Display| {
            Failure::usage(format!("{}: [[audit.sinks]] `{}`: {e}", config.path.display(), settings.name))
        };
        let sink = build(config, settings, db).map_err(|e| fail(&e))?;
        let follow = Follow {
            name: settings.name.clone(),
            format: match settings.format {
                SinkFormat::Ocsf => Format::Ocsf,
                SinkFormat::Jsonl => Format::Jsonl,
            },
            batch: settings.batch_size,
            flush_every: Duration::from_millis(settings.flush_interval_ms),
        };
        running.push(runner::start(follow, sink, db, &dir).map_err(|e| fail(&e))?);
    }
    Ok(running)
}

/// Delivers what is left and stops every sink.
pub fn stop(running: Vec<Running>) {
    for r in running {
        r.stop();
    }
}

fn build(config: &Config, settings: &SinkSettings, db: &DbLocation) -> Result<Box<dyn Sink>, String> {
    let err = |e: custos_siem::SiemError| e.to_string();
    Ok(match &settings.target {
        SinkTarget::Jsonl { path, rotate_bytes, rotate_secs, keep } => {
            let rotation =
                Rotation { max_bytes: *rotate_bytes, max_age: rotate_secs.map(Duration::from_secs), keep: *keep };
            Box::new(JsonlSink::open(path, rotation).map_err(err)?)
        }
        SinkTarget::SplunkHec { url, token, source_type, ca_file } => {
            let receiver =
                Receiver::SplunkHec { token: token_of(config, token, db)?, source_type: source_type.clone() };
            Box::new(HttpSink::new(url, receiver, ca_file.as_deref()).map_err(err)?)
        }
        SinkTarget::Webhook { url, token, ca_file } => {
            let token = token.as_ref().map(|t| token_of(config, t, db)).transpose()?;
            Box::new(HttpSink::new(url, Receiver::Webhook { token }, ca_file.as_deref()).map_err(err)?)
        }
        SinkTarget::Syslog { address, tls, ca_file } => {
            let tls = if *tls {
                let client =
                    custos_tls::client::ClientTls::load(ca_file.as_deref(), None).map_err(|e| e.to_string())?;
                Some(client.stream_config())
            } else {
                None
            };
            Box::new(SyslogSink::new(address, tls))
        }
    })
}

/// The token, from the encrypted store or its file. Errors name where, never the value.
fn token_of(config: &Config, source: &TokenSource, db: &DbLocation) -> Result<Token, String> {
    match source {
        TokenSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            Token::new(&text).map_err(|e| format!("`{}`: {e}", path.display()))
        }
        TokenSource::Secret(name) => {
            let master = crate::credentials::master_key(config, false).map_err(|e| e.message)?;
            let store = SqlStore::open_read_only(db).map_err(|e| crate::context::store_error(db, &e))?;
            let stored = store
                .secret(name)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no secret `{name}` in the store: set it with `custos secrets set {name}`"))?;
            let plain = master
                .open(&custos_gateway::broker::secret_context(name), &stored.sealed)
                .map_err(|e| format!("secret `{name}`: {e}"))?;
            let text = std::str::from_utf8(&plain).map_err(|_| format!("secret `{name}` is not text"))?;
            Token::new(text).map_err(|e| format!("secret `{name}`: {e}"))
        }
    }
}
