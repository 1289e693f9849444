//! Finding the config, the data directory and the database, the same way for every command.
//!
//! [`database`] is the one place that decides which database a command opens: PostgreSQL when
//! the config has a `[store]` URL, else the embedded file in the data directory. Everything
//! else is handed the [`DbLocation`] it returns, never a path it made up, so a deployment on
//! PostgreSQL cannot have one command quietly write to a stray file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use custos_config::{Config, DEFAULT_CONFIG_FILE};
use custos_store::{DbLocation, PgTarget, SqlStore, StoreError};

use crate::cli::Location;
use crate::Failure;

/// The config named by `--config`, or `./custos.toml`.
pub fn load_config(location: &Location) -> Result<Config, Failure> {
    let path = location.config.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
    let mut config = Config::load(&path).map_err(Failure::usage)?;
    if let Some(dir) = &location.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

/// The data directory: `--data-dir`, else the config's. It matters with PostgreSQL too: the
/// master key, the checkpoints and the sinks' cursors live there.
pub fn data_dir(location: &Location) -> Result<PathBuf, Failure> {
    if let Some(dir) = &location.data_dir {
        return Ok(dir.clone());
    }
    Ok(load_config(location)?.data_dir)
}

/// The database `config` names: the PostgreSQL database of `[store]`, else the embedded file
/// in `data_dir`.
pub fn database(config: &Config) -> DbLocation {
    match &config.store {
        Some(pg) => DbLocation::Postgres(PgTarget {
            url: pg.url.clone(),
            password: pg.password.clone(),
            connect_timeout: Duration::from_millis(pg.connect_timeout_ms),
        }),
        None => DbLocation::File(database_file(&config.data_dir)),
    }
}

/// The embedded database file inside a data directory. Only for where a file is really meant
/// (the demo refusing a folder that already holds one); commands open [`database`].
pub fn database_file(data_dir: &Path) -> PathBuf {
    data_dir.join(custos_store::DATABASE_FILE)
}

/// The database a reading command opens: with `--data-dir` and no `--config`, the embedded
/// file there without reading any config (as before `[store]` existed); otherwise the config's
/// [`database`].
pub fn database_at(location: &Location) -> Result<DbLocation, Failure> {
    match (&location.config, &location.data_dir) {
        (None, Some(dir)) => Ok(DbLocation::File(database_file(dir))),
        _ => Ok(database(&load_config(location)?)),
    }
}

/// Opens the audit database for reading; an embedded file must exist (a PostgreSQL database
/// can only be told apart by connecting).
pub fn open_for_reading(location: &Location) -> Result<SqlStore, Failure> {
    let db = database_at(location)?;
    if !db.exists() {
        return Err(Failure::usage(format!(
            "no audit log at `{db}`: nothing has been recorded there yet (check --data-dir or --config)"
        )));
    }
    reader(&db)
}

/// Another read-only connection to `db` (a process's readers beside its writer).
pub fn reader(db: &DbLocation) -> Result<SqlStore, Failure> {
    SqlStore::open_read_only(db).map_err(|e| Failure::runtime(store_error(db, &e)))
}

/// Opens an existing `db` read-write (brought up to this schema), without the data directory
/// checks of [`open_for_writing`].
pub fn writer(db: &DbLocation) -> Result<SqlStore, Failure> {
    SqlStore::open(db).map_err(|e| Failure::runtime(store_error(db, &e)))
}

/// Creates the data directory if needed (it holds the master key, checkpoints and cursors
/// whichever database is used) and opens the config's [`database`] for writing.
pub fn open_for_writing(config: &Config) -> Result<SqlStore, Failure> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|e| {
        Failure::usage(format!(
            "cannot use data directory `{}`: {e}; set `data_dir` in the config or pass --data-dir",
            data_dir.display()
        ))
    })?;
    let db = database(config);
    SqlStore::open(&db).map_err(|e| {
        let hint = match &db {
            DbLocation::File(_) => "set `data_dir` in the config or pass --data-dir to a writable directory".to_owned(),
            DbLocation::Postgres(_) => format!("check `[store]` in `{}`", config.path.display()),
        };
        Failure::usage(format!("{}; {hint}", store_error(&db, &e)))
    })
}

/// `e` as a message that names `db` and never holds its password: the store's own messages
/// name the database, and this makes sure of both whatever a driver put into the reason.
pub fn store_error(db: &DbLocation, e: &StoreError) -> String {
    let mut message = e.to_string();
    if let DbLocation::Postgres(PgTarget { password: Some(password), .. }) = db {
        if !password.is_empty() {
            message = message.replace(password.as_str(), "***");
        }
    }
    let named = db.to_string();
    if message.contains(&named) {
        message
    } else {
        format!("audit database `{named}`: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(store: &str) -> Config {
        let text = format!("data_dir = \"/var/lib/custos\"\n[policy]\nfiles = [\"p.cedar\"]\n{store}");
        Config::from_toml(Path::new("/etc/custos/custos.toml"), &text).unwrap()
    }

    #[test]
    fn without_a_store_table_the_database_is_the_file_in_the_data_directory() {
        let db = database(&config(""));
        assert_eq!(db, DbLocation::File(PathBuf::from("/var/lib/custos/custos.db")));
        assert_eq!(db.to_string(), "/var/lib/custos/custos.db");
    }

    #[test]
    fn a_store_url_is_a_postgres_database_named_without_its_password() {
        let db = database(&config("[store]\nurl = \"postgres://custos:PW@127.0.0.1:1/custos\"\n"));
        let DbLocation::Postgres(pg) = &db else { panic!("expected PostgreSQL, got {db:?}") };
        assert_eq!(pg.password.as_deref(), Some("PW"));
        assert_eq!(pg.connect_timeout, Duration::from_millis(custos_config::store::DEFAULT_CONNECT_TIMEOUT_MS));
        assert_eq!(db.to_string(), "postgres://custos@127.0.0.1:1/custos");
        assert!(!format!("{db:?}").contains("PW"), "{db:?}");
        assert!(db.file().is_none());
    }

    #[test]
    fn a_store_error_names_the_database_and_hides_the_password() {
        let db = database(&config("[store]\nurl = \"postgres://custos:hunter2@db.internal/custos\"\n"));
        let leaky = StoreError::Internal { reason: "connecting with password=hunter2 failed".to_owned() };
        let message = store_error(&db, &leaky);
        assert!(message.contains("`postgres://custos@db.internal/custos`"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        let file = DbLocation::from(Path::new("/var/lib/custos/custos.db"));
        let named = StoreError::Open { path: PathBuf::from("/var/lib/custos/custos.db"), reason: "denied".to_owned() };
        assert_eq!(store_error(&file, &named), named.to_string());
    }

    #[test]
    fn the_data_dir_alone_names_its_file_without_reading_a_config() {
        let location = Location { config: None, data_dir: Some(PathBuf::from("/srv/custos")) };
        assert_eq!(database_at(&location).unwrap(), DbLocation::File(PathBuf::from("/srv/custos/custos.db")));
    }
}
