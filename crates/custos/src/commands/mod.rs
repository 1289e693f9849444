//! One module per command group.

mod agents;
mod approvals;
mod audit;
mod init;
mod inventory;
mod keys;
mod policy;
mod run;
pub mod scan;
mod secrets;
mod serve;
mod token;

use crate::cli::{Cli, Command};
use crate::Failure;

pub fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Init(args) => init::run(&args),
        Command::Run(args) => run::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Agents(cmd) => agents::run(cmd),
        Command::Approvals(cmd) => approvals::run(cmd),
        Command::Secrets(cmd) => secrets::run(cmd),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Token(cmd) => token::run(cmd),
        Command::Inventory(cmd) => inventory::run(cmd),
        Command::Scan(args) => scan::run(args),
    }
}

/// Milliseconds in a day: credential ages and idle times are reported in whole days.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// `ms` since the Unix epoch as an RFC 3339 time to the second, in UTC.
pub fn rfc3339(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Opens the data directory's database when it exists, for commands that only report: a
/// deployment that never recorded anything has nothing to list, and listing must not create a
/// database. Read-write: opening brings a database written by an earlier Custos up to this
/// schema.
pub fn open_existing(config: &custos_config::Config) -> Result<Option<custos_store::SqliteStore>, Failure> {
    let db = crate::context::database_path(&config.data_dir);
    if !db.exists() {
        return Ok(None);
    }
    custos_store::SqliteStore::open(&db).map(Some).map_err(Failure::runtime)
}

/// A multi-threaded runtime for commands that do I/O concurrently.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))
}
