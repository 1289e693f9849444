//! A deterministic MCP server that Custos end-to-end tests put behind the gateway.
//!
//! It speaks MCP over stdio through the official `rmcp` SDK and exposes one tool
//! for every kind of traffic a gateway has to carry: plain calls, annotated
//! destructive calls, progress notifications, log notifications, server-to-client
//! requests (sampling, roots, elicitation), large results, tool errors and an
//! upstream that dies mid-call. Nothing here touches the network or sleeps.
//!
//! The server only offers protocol versions that still have the `initialize`
//! handshake (up to `2025-11-25`): from `2026-07-28` on, MCP forbids the
//! server-to-client requests that half of these tools exist to exercise.
//!
//! # Layout
//!
//! - `lib.rs`: [`SampleServer`], its [`ToolsVariant`] and the `ServerHandler`
//!   glue that advertises capabilities and serves resources.
//! - `tools.rs`: every tool, with its arguments and annotations.
//! - `client_requests.rs`: the requests and notifications a tool sends back to
//!   the client (sampling, roots, elicitation, logging, progress).
//! - `prompts.rs`: the `greet` prompt.
//! - `resources.rs`: the static resources (`sample://greeting`).
//! - `main.rs`: command-line flags and the stdio transport.

mod client_requests;
mod prompts;
mod resources;
mod tools;

use std::borrow::Cow;

pub use resources::{GREETING_TEXT, GREETING_URI};
pub use tools::{CRASH_EXIT_CODE, ECHO_DESCRIPTION_V1, ECHO_DESCRIPTION_V2, MAX_BIG_OUTPUT_BYTES, MAX_PROGRESS_STEPS};

use rmcp::{
    handler::server::router::{prompt::PromptRouter, tool::ToolRouter},
    model::{
        Implementation, ListResourcesResult, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams,
        ReadResourceResponse, ServerCapabilities, ServerConfig,
    },
    prompt_handler,
    service::RequestContext,
    tool_handler, ErrorData, RoleServer, ServerHandler,
};

/// The name the server reports in its `initialize` result.
pub const SERVER_NAME: &str = "custos-sample-server";

/// Which set of tool descriptors the server advertises.
///
/// Variant 2 changes only the description of `echo`, so that a test can restart
/// the upstream with different descriptors and watch the gateway notice the drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolsVariant {
    /// The original descriptors.
    #[default]
    One,
    /// `echo` carries a different description.
    Two,
}

impl ToolsVariant {
    /// Maps the `--tools-variant` number to a variant; `None` for unknown numbers.
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            1 => Some(Self::One),
            2 => Some(Self::Two),
            _ => None,
        }
    }
}

/// The sample MCP server. Cheap to clone; holds no mutable state.
#[derive(Debug, Clone)]
pub struct SampleServer {
    /// Built once per server so that the variant's descriptors are what
    /// `tools/list` returns and what `tools/call` validates against.
    tool_router: ToolRouter<SampleServer>,
    /// The prompts; built once like the tools.
    prompt_router: PromptRouter<SampleServer>,
}

impl SampleServer {
    /// A server advertising the descriptors of `variant`.
    pub fn new(variant: ToolsVariant) -> Self {
        Self { tool_router: tools::router(variant), prompt_router: Self::prompt_router() }
    }
}

impl Default for SampleServer {
    fn default() -> Self {
        Self::new(ToolsVariant::default())
    }
}

/// Tools, prompts, resources and logging (for `log_message`).
#[expect(deprecated, reason = "logging is deprecated by SEP-2577 but still in MCP 2025-11-25")]
fn capabilities() -> ServerCapabilities {
    ServerCapabilities::builder().enable_tools().enable_prompts().enable_resources().enable_logging().build()
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for SampleServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(capabilities())
            .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
            .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
            .with_instructions("A deterministic test server for the Custos gateway.")
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::LATEST_WITH_INITIALIZE))
    }

    #[expect(deprecated, reason = "logging is deprecated by SEP-2577 but still in MCP 2025-11-25")]
    async fn set_level(
        &self,
        _request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Accepted so that clients honouring the logging capability do not fail;
        // `log_message` always logs at `info`, whatever level was asked for.
        Ok(())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(resources::list()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        resources::read(&request.uri).map(ReadResourceResponse::from)
    }
}
