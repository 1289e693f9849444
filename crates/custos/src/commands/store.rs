//! `custos store migrate --to postgres://…`: carries a deployment's store (the embedded file, as
//! a rule) into an empty PostgreSQL database, whole, and checks the copy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use custos_store::{DbLocation, PgTarget, SqlStore};
use serde_json::json;

use crate::cli::Location;
use crate::context;
use crate::Failure;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy this deployment's store (agents, keys, sealed secrets, signing keys, pins,
    /// approvals, the whole log) into an empty PostgreSQL database, then verify the copy
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub location: Location,
    /// The PostgreSQL database: `postgres://user@host:port/database`, with `sslmode` and
    /// `sslrootcert` as in `[store] url`
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// A file holding the database password
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: StoreCommand) -> Result<(), Failure> {
    match cmd {
        StoreCommand::Migrate(args) => migrate(&args),
    }
}

fn migrate(args: &MigrateArgs) -> Result<(), Failure> {
    let to = target(&args.to, args.password_file.as_deref())?;
    let source = context::open_for_reading(&args.location)?;
    let mut target = SqlStore::open(&to).map_err(Failure::runtime)?;
    let report = source.copy_into(&mut target).map_err(Failure::runtime)?;
    if args.json {
        let rows: serde_json::Map<String, serde_json::Value> =
            report.rows.iter().map(|(table, n)| ((*table).to_owned(), json!(n))).collect();
        let out =
            json!({"to": to.to_string(), "events": report.events, "head": report.head, "rows": rows, "verified": true});
        println!("{out}");
        return Ok(());
    }
    println!("copied into {to}:");
    for (table, n) in &report.rows {
        println!("  {table:<16} {n}");
    }
    match &report.head {
        Some(head) => println!("the copy verifies: {} events, head {head}", report.events),
        None => println!("the copy verifies: the log is empty"),
    }
    println!("to use it, set in the config:\n\n[store]\nurl = \"{to}\"");
    Ok(())
}

/// The database `--to` names, checked as `[store] url` is, its password from `password_file`.
fn target(url: &str, password_file: Option<&Path>) -> Result<DbLocation, Failure> {
    let raw = custos_config::store::RawStore {
        url: Some(url.to_owned()),
        password_file: password_file.map(|p| p.display().to_string()),
        connect_timeout_ms: None,
    };
    let settings =
        custos_config::store::postgres(raw, &std::env::current_dir().unwrap_or_default()).map_err(Failure::usage)?;
    Ok(DbLocation::Postgres(PgTarget {
        url: settings.url,
        password: settings.password,
        connect_timeout: Duration::from_millis(settings.connect_timeout_ms),
    }))
}
