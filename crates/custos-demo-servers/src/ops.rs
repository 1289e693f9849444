//! `ops`: operations, with one service failing after a deploy.
//!
//! The data never changes, not even after a rollback: the demo is about the
//! decision to roll back, not about watching the service recover.

use std::borrow::Cow;

use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{CallToolResult, ProtocolVersion, ServerConfig},
    schemars, tool, tool_handler, tool_router, ServerHandler,
};
use serde::Deserialize;

use crate::common::{info, protocol_versions, text, tool_error};

/// The only service.
const SERVICE: &str = "checkout";

/// The version `checkout` runs.
const CURRENT_VERSION: &str = "v2.3.1";

/// The version before it, the rollback target.
const PREVIOUS_VERSION: &str = "v2.3.0";

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct ServiceArgs {
    /// The service's name, such as `checkout`.
    service: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct RollbackArgs {
    /// The service to roll back, such as `checkout`.
    service: String,
    /// The earlier version to run, such as `v2.3.0`.
    version: String,
}

/// The operations server. Holds no state besides its tools.
#[derive(Debug)]
pub(crate) struct Ops {
    /// The tools, built once so that listing and calling agree.
    tool_router: ToolRouter<Ops>,
}

impl Ops {
    pub(crate) fn new() -> Self {
        Self { tool_router: Self::tool_router() }
    }
}

/// The error for a service other than `checkout`.
fn unknown_service(service: &str) -> CallToolResult {
    tool_error(format!("unknown service `{service}`"))
}

#[tool_router]
impl Ops {
    #[tool(
        title = "Query metrics",
        description = "Read a service's current error rate and latency.",
        annotations(
            title = "Query metrics",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    fn query_metrics(&self, Parameters(args): Parameters<ServiceArgs>) -> CallToolResult {
        if args.service != SERVICE {
            return unknown_service(&args.service);
        }
        text("checkout: error rate 12.4% since deploy v2.3.1 14 minutes ago (baseline 0.2%); p99 latency 2.8 s")
    }

    #[tool(
        title = "List deployments",
        description = "List a service's recent deployments, newest first.",
        annotations(
            title = "List deployments",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    fn list_deployments(&self, Parameters(args): Parameters<ServiceArgs>) -> CallToolResult {
        if args.service != SERVICE {
            return unknown_service(&args.service);
        }
        text("checkout deployments:\n- v2.3.1: current, deployed 14 minutes ago\n- v2.3.0: deployed yesterday, healthy")
    }

    #[tool(
        title = "Roll back service",
        description = "Roll a production service back to an earlier version, replacing the running one.",
        annotations(
            title = "Roll back service",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    fn rollback_service(&self, Parameters(args): Parameters<RollbackArgs>) -> CallToolResult {
        if args.service != SERVICE {
            return unknown_service(&args.service);
        }
        match args.version.as_str() {
            PREVIOUS_VERSION => text(format!("{SERVICE} rolled back to {PREVIOUS_VERSION}")),
            CURRENT_VERSION => tool_error(format!("`{CURRENT_VERSION}` is the version {SERVICE} runs now")),
            other => tool_error(format!("unknown version `{other}` of {SERVICE}")),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Ops {
    fn get_info(&self) -> ServerConfig {
        info("ops", "Operations: read service metrics and deployments, and roll services back.")
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        protocol_versions()
    }
}
