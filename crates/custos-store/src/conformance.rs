//! Test support: the store is one contract with two databases, so every test of that contract
//! runs on both, a fresh SQLite file and a fresh PostgreSQL database (one real cluster per test
//! binary, started on first use, a database per test). Tests about SQLite's file itself
//! (tampering with it, read-only opens of old files) stay SQLite's alone.
//!
//! ```ignore
//! on_both_stores! {
//!     fn appends_are_chained(path: DbLocation) {
//!         let mut store = SqlStore::open(&path).unwrap();
//!         …
//!     }
//! }
//! ```
//!
//! defines `appends_are_chained` once and the tests `on_sqlite::appends_are_chained` and
//! `on_postgres::appends_are_chained`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use custos_testpg::TestCluster;

use crate::location::{DbLocation, PgTarget};

/// A database no other test uses, removed with the value (the file) or with the cluster.
pub(crate) struct Fresh {
    pub(crate) at: DbLocation,
    _dir: tempfile::TempDir,
}

impl Fresh {
    pub(crate) fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Fresh { at: DbLocation::File(dir.path().join("custos.db")), _dir: dir }
    }

    pub(crate) fn postgres() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("store_test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let url = cluster().create_database(&name);
        let target = PgTarget { url, password: None, connect_timeout: Duration::from_secs(10) };
        Fresh { at: DbLocation::Postgres(target), _dir: tempfile::tempdir().unwrap() }
    }
}

impl Fresh {
    /// Another fresh database of the same kind as `at`.
    pub(crate) fn like(at: &DbLocation) -> Self {
        match at {
            DbLocation::File(_) => Fresh::sqlite(),
            DbLocation::Postgres(_) => Fresh::postgres(),
        }
    }
}

/// The cluster the tests of this binary share.
pub(crate) fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(TestCluster::start)
}

/// Defines each function once, and a test of it on each database; see the module docs.
macro_rules! on_both_stores {
    ($( $(#[$meta:meta])* fn $name:ident($at:ident: DbLocation) $body:block )*) => {
        $( $(#[$meta])* fn $name($at: $crate::DbLocation) $body )*

        mod on_sqlite {
            $( #[test] fn $name() {
                let fresh = $crate::conformance::Fresh::sqlite();
                super::$name(fresh.at.clone());
            } )*
        }

        mod on_postgres {
            $( #[test] fn $name() {
                let fresh = $crate::conformance::Fresh::postgres();
                super::$name(fresh.at.clone());
            } )*
        }
    };
}
pub(crate) use on_both_stores;
