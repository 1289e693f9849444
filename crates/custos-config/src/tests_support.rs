//! What the tests of each table share: a config made of one table beside a minimal policy.

use std::path::Path;

use crate::{Config, ConfigError};

/// A config at `/etc/custos/custos.toml` with one policy file and `table` after it.
pub(crate) fn load(table: &str) -> Result<Config, ConfigError> {
    let text = format!("[policy]\nfiles = [\"p.cedar\"]\n{table}");
    Config::from_toml(Path::new("/etc/custos/custos.toml"), &text)
}
