//! Configuration errors: each names the file and where in it.

use std::path::{Path, PathBuf};

/// A configuration that cannot be used, and where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config `{path}`: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}:{line}:{column}: {message}")]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: `{key}`: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
}

impl ConfigError {
    pub(crate) fn read(path: &Path, e: &std::io::Error) -> Self {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no such file (run `custos init` to write one, or pass --config)".to_owned()
            }
            _ => e.to_string(),
        };
        Self::Read { path: path.to_owned(), reason }
    }

    pub(crate) fn parse(path: &Path, text: &str, e: &toml::de::Error) -> Self {
        let (line, column) = e.span().map_or((1, 1), |span| line_col(text, span.start));
        // toml's message is already one line about the key; drop its own location suffix.
        let message = e.message().trim().to_owned();
        Self::Parse { path: path.to_owned(), line, column, message }
    }

    pub(crate) fn invalid(path: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { path: path.to_owned(), key: key.into(), message: message.into() }
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
