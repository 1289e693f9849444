//! Finding the config and the data directory, the same way for every command.

use std::path::{Path, PathBuf};

use custos_config::{Config, DEFAULT_CONFIG_FILE};
use custos_store::SqlStore;

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

/// The data directory: `--data-dir`, else the config's.
pub fn data_dir(location: &Location) -> Result<PathBuf, Failure> {
    if let Some(dir) = &location.data_dir {
        return Ok(dir.clone());
    }
    Ok(load_config(location)?.data_dir)
}

/// The audit database inside a data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join(custos_store::DATABASE_FILE)
}

/// Opens the audit database for reading; it must exist.
pub fn open_for_reading(location: &Location) -> Result<SqlStore, Failure> {
    let dir = data_dir(location)?;
    let db = database_path(&dir);
    if !db.exists() {
        return Err(Failure::usage(format!(
            "no audit log at `{}`: nothing has been recorded there yet (check --data-dir or --config)",
            db.display()
        )));
    }
    SqlStore::open_read_only(&db).map_err(Failure::runtime)
}

/// Creates the data directory if needed and opens the audit database for writing.
pub fn open_for_writing(data_dir: &Path) -> Result<SqlStore, Failure> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        Failure::usage(format!(
            "cannot use data directory `{}`: {e}; set `data_dir` in the config or pass --data-dir",
            data_dir.display()
        ))
    })?;
    SqlStore::open(&database_path(data_dir)).map_err(|e| {
        Failure::usage(format!("{e}; set `data_dir` in the config or pass --data-dir to a writable directory"))
    })
}
