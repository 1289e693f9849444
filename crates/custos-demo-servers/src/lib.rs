//! The sample tool servers of `custos demo`: four small MCP servers and one
//! plain REST API that give the demo something realistic to govern.
//!
//! Each server keeps deterministic in-memory data: no clock, no randomness, and
//! ids (refunds, patches, drafts, …) counted from a fixed start in each
//! process, so that a demo run and its audit trail read the same every time.
//! Tools carry honest MCP annotations because Custos policy reads them.
//!
//! Two of the servers carry the attacks the demo shows Custos catching:
//! `helpdesk` serves a ticket with a prompt injection hidden in it, and
//! `codehost` changes the description of `run_tests` after the first
//! `tools/list` (a "rug pull").
//!
//! # Layout
//!
//! - `lib.rs`: [`SERVERS`], [`serve_stdio`] and [`serve`], which pick a server
//!   by name and run it on a transport.
//! - `common.rs`: what every server shares: result helpers, the id counter and
//!   the `initialize` answer.
//! - `helpdesk.rs`: the support desk (tickets, customers).
//! - `billing.rs`: the billing API (refunds), REST over HTTP rather than MCP,
//!   which takes only a bearer JWT and says which token it saw; [`serve_billing`]
//!   runs it on a listener (`custos demo` starts it in its own process).
//! - `codehost.rs`: the code host (files, patches, tests, pull requests) and
//!   its rug pull.
//! - `procurement.rs`: procurement and finance (suppliers, renewals, purchase
//!   orders).
//! - `ops.rs`: operations (metrics, deployments, rollbacks).

mod billing;
mod codehost;
mod common;
mod helpdesk;
mod ops;
mod procurement;

pub use billing::{seen as seen_token, serve_billing};
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use tokio::io::{AsyncRead, AsyncWrite};

/// The four demo servers, by name.
pub const SERVERS: [&str; 4] = ["helpdesk", "codehost", "procurement", "ops"];

/// Serves `name` over stdin/stdout until the client closes; an unknown name is an error.
pub async fn serve_stdio(name: &str) -> anyhow::Result<()> {
    serve(name, tokio::io::stdin(), tokio::io::stdout()).await
}

/// Serves `name` on `reader` and `writer` until the client closes; an unknown
/// name is an error.
///
/// [`serve_stdio`] is this on stdin/stdout; tests use it on an in-process pipe.
pub async fn serve<R, W>(name: &str, reader: R, writer: W) -> anyhow::Result<()>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    match name {
        "helpdesk" => run(helpdesk::Helpdesk::new(), reader, writer).await,
        "codehost" => run(codehost::Codehost::new(), reader, writer).await,
        "procurement" => run(procurement::Procurement::new(), reader, writer).await,
        "ops" => run(ops::Ops::new(), reader, writer).await,
        _ => Err(anyhow::anyhow!("unknown demo server `{name}` (expected one of: {})", SERVERS.join(", "))),
    }
}

/// Runs one server until the client closes the transport.
async fn run<S, R, W>(server: S, reader: R, writer: W) -> anyhow::Result<()>
where
    S: ServerHandler,
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let service = ServiceExt::<RoleServer>::serve(server, (reader, writer)).await?;
    service.waiting().await?;
    Ok(())
}
