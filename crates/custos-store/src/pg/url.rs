//! The database URL: what `tokio-postgres` reads, plus the TLS settings it does not.
//!
//! `tokio-postgres` knows `sslmode=disable|prefer|require` and nothing of `sslrootcert` or the
//! verifying modes, so both are taken out of the query string here and enforced by our rustls
//! verifier (`tls.rs`); the rest of the URL goes to `tokio-postgres` as it is.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::Config;

use super::tls::{MakeRustls, Verify, SYSTEM_ROOTS};
use crate::sql::DbError;

/// TCP keepalive defaults: a silent peer is declared dead after about a minute
/// (`KEEPALIVE_IDLE + KEEPALIVE_RETRIES * KEEPALIVE_INTERVAL`).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the connection is dropped (Linux).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything needed to open (and reopen) one connection. Its `Debug` shows the redacted URL
/// only: the config holds the password.
pub(super) struct Settings {
    pub(super) config: Config,
    /// `None` for `sslmode=disable`.
    pub(super) tls: Option<MakeRustls>,
    /// The URL without its password: the only form of it that errors and logs may show.
    pub(super) redacted: String,
    /// Bounds the whole connect: TCP, TLS handshake and authentication.
    pub(super) connect_timeout: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.redacted)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// `sslmode` as libpq spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Settings {
    pub(super) fn parse(url: &str, connect_timeout: Duration) -> Result<Settings, DbError> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| DbError::new("the database URL must start with `postgres://` or `postgresql://`"))?;
        let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut mode = Mode::Prefer;
        let mut root: Option<PathBuf> = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => mode = parse_mode(value)?,
                "sslrootcert" => root = Some(PathBuf::from(percent_decode(value)?)),
                _ => kept.push(pair),
            }
        }
        let mut text = format!("postgresql://{base}");
        if !kept.is_empty() {
            text.push('?');
            text.push_str(&kept.join("&"));
        }
        // The parser's messages name options, never their values.
        let mut config = Config::from_str(&text).map_err(|e| DbError::new(format!("invalid database URL: {e}")))?;
        // `connect_timeout` in the URL wins over the caller's default, as libpq's would.
        let connect_timeout = config.get_connect_timeout().copied().unwrap_or(connect_timeout);
        config.connect_timeout(connect_timeout);
        // A peer that vanished without closing (a cut network, a frozen host) would otherwise
        // leave a call waiting for hours while it holds the store. The URL may say otherwise.
        let given = |key: &str| kept.iter().any(|p| p.split('=').next() == Some(key));
        if !given("keepalives_idle") {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if !given("keepalives_interval") {
            config.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        if !given("keepalives_retries") {
            config.keepalives_retries(KEEPALIVE_RETRIES);
        }
        if !given("tcp_user_timeout") {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        let redacted = redact(&config);
        let verify = match (mode, root) {
            (Mode::Disable, _) => None,
            // As libpq: the system's roots are for verify-full only (any public name would pass otherwise).
            (_, Some(root)) if root.as_os_str() == SYSTEM_ROOTS && mode != Mode::VerifyFull => {
                return Err(DbError::new("`sslrootcert=system` needs `sslmode=verify-full`"))
            }
            (Mode::VerifyFull, Some(root)) => Some(Verify::Full(root)),
            (Mode::VerifyCa, Some(root)) | (Mode::Prefer | Mode::Require, Some(root)) => Some(Verify::Chain(root)),
            (Mode::VerifyCa | Mode::VerifyFull, None) => {
                return Err(DbError::new(
                    "sslmode `verify-ca` and `verify-full` need `sslrootcert=PATH` (the CA certificates to trust)",
                ))
            }
            (Mode::Prefer | Mode::Require, None) => Some(Verify::Encrypt),
        };
        config.ssl_mode(match mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        });
        let tls = verify.map(|v| MakeRustls::new(&v)).transpose()?;
        Ok(Settings { config, tls, redacted, connect_timeout })
    }
}

/// `url` as `postgres://user@host:port/db`, without its password; for errors and logs.
#[cfg(test)]
pub(crate) fn redacted(url: &str) -> String {
    let base = url.split_once('?').map_or(url, |(b, _)| b);
    let Some(rest) = base.strip_prefix("postgres://").or_else(|| base.strip_prefix("postgresql://")) else {
        return "(a database URL that is not postgres://)".to_owned();
    };
    match Config::from_str(&format!("postgresql://{rest}")) {
        Ok(config) => redact(&config),
        Err(_) => "(an unreadable postgres:// URL)".to_owned(),
    }
}

fn redact(config: &Config) -> String {
    let user = config.get_user().unwrap_or("");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => config.get_hostaddrs().first().map_or_else(|| "localhost".to_owned(), ToString::to_string),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}")
}

fn parse_mode(value: &str) -> Result<Mode, DbError> {
    Ok(match value {
        "disable" => Mode::Disable,
        "prefer" => Mode::Prefer,
        "require" => Mode::Require,
        "verify-ca" => Mode::VerifyCa,
        "verify-full" => Mode::VerifyFull,
        other => {
            return Err(DbError::new(format!(
                "unknown sslmode `{other}`: expected disable, prefer, require, verify-ca or verify-full"
            )))
        }
    })
}

/// Decodes `%XX` escapes (a path may hold characters a URL cannot).
fn percent_decode(value: &str) -> Result<String, DbError> {
    let bad = || DbError::new("`sslrootcert` is not a valid percent-encoded path");
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}
