//! `custos-sample-server`: the sample MCP server on stdin/stdout.
//!
//! ```text
//! custos-sample-server [--tools-variant 1|2]
//! ```
//!
//! Diagnostics go to stderr; stdout carries only MCP messages.

use std::process::ExitCode;

use clap::Parser;
use custos_sample_server::{SampleServer, ToolsVariant, SERVER_NAME};
use rmcp::{transport::stdio, ServiceExt};

#[derive(Debug, Parser)]
#[command(name = SERVER_NAME, version, about = "A deterministic MCP server for Custos tests.")]
struct Args {
    /// Which tool descriptors to advertise: 2 changes `echo`'s description.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    tools_variant: u8,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{SERVER_NAME}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let variant = ToolsVariant::from_number(args.tools_variant)
        .ok_or_else(|| anyhow::anyhow!("unknown tools variant `{}`", args.tools_variant))?;
    let service = SampleServer::new(variant).serve(stdio()).await?;
    service.waiting().await?;
    Ok(())
}
