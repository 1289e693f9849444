//! One module per command group.

mod agents;
mod approvals;
mod audit;
mod init;
mod policy;
mod run;
mod serve;

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
    }
}

/// A multi-threaded runtime for commands that do I/O concurrently.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))
}
