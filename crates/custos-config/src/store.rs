//! `[store]`: where the audit log and the state beside it live. Without the table, the embedded
//! SQLite file in `data_dir`; with `url = "postgres://…"`, a PostgreSQL database that several
//! `custos serve` replicas share.
//!
//! The password is never part of a validated setting's URL, and never echoed in an error: it
//! comes from `password_file` (or from the URL, accepted for local trials and moved out of it
//! here), so that logging the URL is safe.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ConfigError;

/// Default `[store] connect_timeout_ms`.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// The `sslmode` values accepted, as libpq names them.
const SSL_MODES: [&str; 5] = ["disable", "prefer", "require", "verify-ca", "verify-full"];

/// `[store]`, validated: a PostgreSQL database. The embedded store needs no settings.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// `postgres://user@host:port/database?sslmode=…&sslrootcert=…`, without a password, with
    /// `sslrootcert` resolved against the config's folder. Safe to log.
    pub url: String,
    /// The password, read from `password_file` or taken out of the URL.
    pub password: Option<String>,
    pub connect_timeout_ms: u64,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

/// `[store]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
    pub password_file: Option<String>,
    pub connect_timeout_ms: Option<u64>,
}

/// Checks a PostgreSQL URL given outside a config (`custos store migrate --to`): as
/// `[store]`, relative paths against `base`. The error names the key (`store.url`) and never
/// echoes the URL.
pub fn postgres(raw: RawStore, base: &Path) -> Result<PostgresSettings, String> {
    let resolve = |p: &str| base.join(p);
    match store(Path::new("--to"), Some(raw), resolve) {
        Ok(Some(settings)) => Ok(settings),
        Ok(None) => Err("a PostgreSQL URL is needed".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks `[store]`; `None` (the embedded store) without the table or without `url`. Paths are
/// resolved with `resolve`.
pub(crate) fn store(
    path: &Path,
    raw: Option<RawStore>,
    resolve: impl Fn(&str) -> PathBuf,
) -> Result<Option<PostgresSettings>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let invalid = |key: &str, message: String| ConfigError::invalid(path, format!("store.{key}"), message);
    let Some(url) = raw.url else {
        if raw.password_file.is_some() || raw.connect_timeout_ms.is_some() {
            return Err(invalid("url", "missing: the other `[store]` keys are for a PostgreSQL `url`".to_owned()));
        }
        return Ok(None);
    };
    // Nothing of the URL is echoed below: it may hold a password.
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| invalid("url", "expected a `postgres://` URL".to_owned()))?;
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (user_info, host) = match authority.rsplit_once('@') {
        Some((user_info, host)) => (Some(user_info), host),
        None => (None, authority),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(invalid("url", "expected a host: `postgres://user@host:5432/database`".to_owned()));
    }
    let (user, url_password) = match user_info {
        Some(info) => match info.split_once(':') {
            Some((user, password)) => (user, Some(password.to_owned())),
            None => (info, None),
        },
        None => ("", None),
    };
    let (database, query) = match tail.split_once('?') {
        Some((database, query)) => (database, Some(query)),
        None => (tail, None),
    };
    let mut params = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" if SSL_MODES.contains(&value) => params.push(format!("sslmode={value}")),
            "sslmode" => {
                return Err(invalid("url", format!("`sslmode={value}`: expected one of {}", SSL_MODES.join(", "))));
            }
            // `system`: the operating system's roots, not a file.
            "sslrootcert" if value == "system" => params.push(pair.to_owned()),
            "sslrootcert" if !value.is_empty() => {
                params.push(format!("sslrootcert={}", resolve(value).display()));
            }
            // What the driver reads besides TLS; anything else is a typo or a libpq option
            // the driver would ignore.
            "application_name"
            | "connect_timeout"
            | "options"
            | "target_session_attrs"
            | "keepalives"
            | "keepalives_idle"
            | "keepalives_interval"
            | "keepalives_retries"
            | "tcp_user_timeout"
            | "hostaddr"
            | "channel_binding"
            | "load_balance_hosts" => {
                params.push(pair.to_owned());
            }
            "password" => return Err(invalid("url", "put the password in `password_file`, not the URL".to_owned())),
            other => return Err(invalid("url", format!("unknown parameter `{other}`"))),
        }
    }
    let password = match (raw.password_file, url_password) {
        (Some(_), Some(_)) => {
            return Err(invalid("password_file", "the URL has a password too: keep one of them".to_owned()));
        }
        (Some(file), None) => {
            let file = resolve(&file);
            let text = std::fs::read_to_string(&file)
                .map_err(|e| invalid("password_file", format!("cannot read `{}`: {}", file.display(), e.kind())))?;
            let password = text.trim_end_matches(['\n', '\r']).to_owned();
            if password.is_empty() {
                return Err(invalid("password_file", format!("`{}` is empty", file.display())));
            }
            Some(password)
        }
        (None, password) => password,
    };
    let connect_timeout_ms = crate::validate::in_range(
        path,
        "store.connect_timeout_ms",
        raw.connect_timeout_ms.unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS),
        100..=600_000,
    )?;
    let user = if user.is_empty() { String::new() } else { format!("{user}@") };
    let query = if params.is_empty() { String::new() } else { format!("?{}", params.join("&")) };
    Ok(Some(PostgresSettings {
        url: format!("postgres://{user}{host}{database}{query}"),
        password,
        connect_timeout_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    use crate::tests_support::load;

    #[test]
    fn absent_is_the_embedded_store() {
        assert_eq!(load("").unwrap().store, None);
        assert_eq!(load("[store]\n").unwrap().store, None);
    }

    #[test]
    fn a_url_is_kept_without_its_password_and_with_its_root_certificate_resolved() {
        let pg = load(
            "[store]\nurl = \"postgres://custos:s3cret@db.internal:5432/custos?sslmode=verify-full&sslrootcert=tls/ca.pem\"\n",
        )
        .unwrap()
        .store
        .unwrap();
        assert_eq!(
            pg.url,
            "postgres://custos@db.internal:5432/custos?sslmode=verify-full&sslrootcert=/etc/custos/tls/ca.pem"
        );
        assert_eq!(pg.password.as_deref(), Some("s3cret"));
        assert_eq!(pg.connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT_MS);
        assert!(!format!("{pg:?}").contains("s3cret"));
        let plain = load("[store]\nurl = \"postgresql://localhost/custos\"\nconnect_timeout_ms = 250\n")
            .unwrap()
            .store
            .unwrap();
        assert_eq!(
            (plain.url.as_str(), plain.password, plain.connect_timeout_ms),
            ("postgres://localhost/custos", None, 250)
        );
    }

    #[test]
    fn the_password_file_is_read_and_one_password_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pg.password"), "from-file\n").unwrap();
        let text = "[policy]\nfiles = [\"p.cedar\"]\n[store]\nurl = \"postgres://custos@db/custos\"\npassword_file = \"pg.password\"\n";
        let pg = Config::from_toml(&dir.path().join("custos.toml"), text).unwrap().store.unwrap();
        assert_eq!(pg.password.as_deref(), Some("from-file"));
        let both = text.replace("custos@db", "custos:inline-SECRET@db");
        let err = Config::from_toml(&dir.path().join("custos.toml"), &both).unwrap_err().to_string();
        assert!(err.contains("`store.password_file`") && !err.contains("SECRET"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key_and_never_echo_the_url() {
        for (table, key) in [
            ("url = \"mysql://u:SECRET@h/db\"", "store.url"),
            ("url = \"postgres://u:SECRET@/db\"", "store.url"),
            ("url = \"postgres://u:SECRET@h/db?sslmode=sometimes\"", "store.url"),
            ("url = \"postgres://u:SECRET@h/db?password=SECRET\"", "store.url"),
            ("url = \"postgres://u:SECRET@h/db?bogus=1\"", "store.url"),
            ("url = \"postgres://h/db\"\nconnect_timeout_ms = 1", "store.connect_timeout_ms"),
            ("url = \"postgres://h/db\"\npassword_file = \"/nonexistent/SECRET\"", "store.password_file"),
            ("connect_timeout_ms = 100", "store.url"),
            ("url = \"postgres://h/db\"\nhost = \"x\"", "host"),
        ] {
            let err = load(&format!("[store]\n{table}\n")).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}")), "{table}: {err}");
            assert!(!err.contains("u:SECRET"), "{err}");
        }
    }
}
