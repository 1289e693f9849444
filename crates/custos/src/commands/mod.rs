//! One module per command group.

mod agents;
mod approvals;
mod audit;
mod console;
mod demo;
mod evidence;
mod export;
mod findings;
mod init;
mod inventory;
mod keys;
mod policy;
mod report;
mod run;
pub mod scan;
mod secrets;
mod serve;
pub mod store;
mod token;
mod tools;

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
        Command::Console(cmd) => console::run(cmd),
        Command::Secrets(cmd) => secrets::run(cmd),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Token(cmd) => token::run(cmd),
        Command::Inventory(cmd) => inventory::run(cmd),
        Command::Scan(args) => scan::run(args),
        Command::Tools(cmd) => tools::run(cmd),
        Command::Findings(args) => findings::run(&args),
        Command::Report(cmd) => report::run(cmd),
        Command::Store(cmd) => store::run(cmd),
        Command::Demo(args) => demo::run(&args),
        Command::DemoServer { name } => demo::serve_demo_server(&name),
    }
}

/// Milliseconds in a day: credential ages and idle times are reported in whole days.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// `ms` since the Unix epoch as an RFC 3339 time to the second, in UTC.
pub fn rfc3339(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `2026-01-31T12:00:00Z`, or a duration back from now such as `15m`, as milliseconds since the
/// Unix epoch: what `--since` accepts.
pub fn parse_since(s: &str) -> Result<i64, Failure> {
    use std::time::{SystemTime, UNIX_EPOCH};
    let when = if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        t
    } else if let Ok(d) = humantime::parse_duration(s) {
        SystemTime::now().checked_sub(d).unwrap_or(UNIX_EPOCH)
    } else {
        return Err(Failure::usage(format!(
            "`{s}` is not a time: expected RFC 3339 (2026-01-31T12:00:00Z) or a duration (15m, 2h)"
        )));
    };
    Ok(when.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

/// Prints `rows` under `header` in aligned columns (two spaces apart; the last column is not
/// padded, so a long last cell does not widen the others).
pub fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", text.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Who a change made from the command line is recorded as: `--as`, else `$USER`, else `cli`.
pub fn who(by: Option<&str>) -> String {
    by.map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "cli".to_owned())
}

/// Opens the config's database when it exists, for commands that only report: a deployment
/// that never recorded anything has nothing to list, and listing must not create an embedded
/// file (a PostgreSQL database is always opened: only connecting can tell). Read-write:
/// opening brings a database written by an earlier Custos up to this schema.
pub fn open_existing(config: &custos_config::Config) -> Result<Option<custos_store::SqlStore>, Failure> {
    let db = crate::context::database(config);
    if !db.exists() {
        return Ok(None);
    }
    crate::context::writer(&db).map(Some)
}

/// A multi-threaded runtime for commands that do I/O concurrently.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))
}
