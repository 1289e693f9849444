//! [`DbLocation`]: which database a store opens, the embedded file or a PostgreSQL server.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the audit log and the state beside it live.
///
/// Shown (`Display`) as the file's path or the PostgreSQL URL; the password is never part of
/// either, so a location is safe to name in a message.
#[derive(Clone, PartialEq, Eq)]
pub enum DbLocation {
    /// The embedded SQLite file.
    File(PathBuf),
    /// A PostgreSQL database, shared by replicas.
    Postgres(PgTarget),
}

/// A PostgreSQL database to connect to.
#[derive(Clone, PartialEq, Eq)]
pub struct PgTarget {
    /// `postgres://user@host:port/database?sslmode=…&sslrootcert=…`, without a password.
    pub url: String,
    pub password: Option<String>,
    pub connect_timeout: Duration,
}

impl DbLocation {
    /// The file, for the embedded store.
    pub fn file(&self) -> Option<&Path> {
        match self {
            DbLocation::File(path) => Some(path),
            DbLocation::Postgres(_) => None,
        }
    }

    /// Whether there is something to open: the file exists, or (PostgreSQL) always, since only
    /// connecting can tell.
    pub fn exists(&self) -> bool {
        match self {
            DbLocation::File(path) => path.exists(),
            DbLocation::Postgres(_) => true,
        }
    }
}

impl fmt::Display for DbLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbLocation::File(path) => write!(f, "{}", path.display()),
            DbLocation::Postgres(pg) => f.write_str(&pg.url),
        }
    }
}

impl fmt::Debug for DbLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbLocation::File(path) => f.debug_tuple("File").field(path).finish(),
            DbLocation::Postgres(pg) => f.debug_tuple("Postgres").field(pg).finish(),
        }
    }
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl From<&Path> for DbLocation {
    fn from(path: &Path) -> Self {
        DbLocation::File(path.to_owned())
    }
}

impl From<PathBuf> for DbLocation {
    fn from(path: PathBuf) -> Self {
        DbLocation::File(path)
    }
}

impl From<&PathBuf> for DbLocation {
    fn from(path: &PathBuf) -> Self {
        DbLocation::File(path.clone())
    }
}

impl From<&DbLocation> for DbLocation {
    fn from(location: &DbLocation) -> Self {
        location.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_names_its_file_or_url_never_the_password() {
        let file = DbLocation::from(Path::new("/var/lib/custos/custos.db"));
        assert_eq!(file.to_string(), "/var/lib/custos/custos.db");
        let pg = DbLocation::Postgres(PgTarget {
            url: "postgres://custos@db/custos".into(),
            password: Some("s3cret".into()),
            connect_timeout: Duration::from_secs(5),
        });
        assert_eq!(pg.to_string(), "postgres://custos@db/custos");
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert!(pg.exists() && pg.file().is_none());
    }
}
