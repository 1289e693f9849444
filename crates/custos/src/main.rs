//! `custos`: the one binary. Parses the command line, sets up logging, runs one command and maps
//! its outcome to an exit code.
//!
//! # Layout
//!
//! - `cli.rs`: the command line (clap).
//! - `commands/`: one file per command group: `init`, `run`, `serve`, `policy`, `audit`, `agents`,
//!   `approvals`, `secrets`, `keys`, `token`, `inventory`, `scan`, `tools`, `findings`, `report`, `demo` (and the hidden `demo-server` it starts
//!   its tool servers with).
//! - `credentials.rs`: the credential broker as commands start it (master key, secrets,
//!   signing keys).
//! - `context.rs`: finding the config and the data directory the same way for every command.
//! - `init_templates/`: the files `custos init` writes.

mod checkpoints;
mod cli;
mod commands;
mod context;
mod credentials;
mod sinks;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: the gateway allocates and frees small buffers on every
/// call from several threads, where glibc's arenas cost about a sixth of its CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes, one per outcome a script may want to tell apart.
pub mod exit {
    /// The command did what was asked.
    pub const OK: u8 = 0;
    /// The command failed at run time (the upstream died, I/O failed).
    pub const FAILURE: u8 = 1;
    /// The command line, the config or the policies are wrong: nothing was started.
    pub const USAGE: u8 = 2;
    /// An integrity check failed: `audit verify` found tampering, `policy check` found errors.
    pub const CHECK_FAILED: u8 = 3;
}

/// An error with the exit code it should produce.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Self { code: exit::USAGE, message: message.to_string() }
    }
    pub fn runtime(message: impl std::fmt::Display) -> Self {
        Self { code: exit::FAILURE, message: message.to_string() }
    }
    pub fn check(message: impl std::fmt::Display) -> Self {
        Self { code: exit::CHECK_FAILED, message: message.to_string() }
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging();
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("custos: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

/// Logs go to stderr (stdout belongs to the MCP client in `custos run`); `CUSTOS_LOG` sets the
/// filter, warnings and errors by default.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
