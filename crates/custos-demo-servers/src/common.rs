//! What every demo server shares.

use std::{
    borrow::Cow,
    sync::atomic::{AtomicU64, Ordering},
};

use rmcp::model::{CallToolResult, ContentBlock, Implementation, ProtocolVersion, ServerCapabilities, ServerConfig};

/// A successful tool result carrying `text`.
pub(crate) fn text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// A tool result with `isError` set: the model reads the text, the call does
/// not fail at the protocol level.
pub(crate) fn tool_error(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// The `initialize` answer of the demo server `name`.
pub(crate) fn info(name: &'static str, instructions: &'static str) -> ServerConfig {
    ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        .with_server_info(Implementation::new(name, env!("CARGO_PKG_VERSION")))
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
        .with_instructions(instructions)
}

/// The protocol versions the demo servers accept: those with the `initialize`
/// handshake, so that every client sees the server's name and instructions.
pub(crate) fn protocol_versions() -> Cow<'static, [ProtocolVersion]> {
    Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::LATEST_WITH_INITIALIZE))
}

/// Hands out the numbers of one kind of id (`R-1`, `R-2`, …) in order.
///
/// Counting from a fixed start, per process, keeps every demo run identical.
#[derive(Debug)]
pub(crate) struct Counter {
    /// The first number handed out.
    first: u64,
    /// The next number to hand out.
    next: AtomicU64,
}

impl Counter {
    /// A counter whose first number is `first`.
    pub(crate) const fn starting_at(first: u64) -> Self {
        Self { first, next: AtomicU64::new(first) }
    }

    /// The next number.
    pub(crate) fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether `number` has been handed out already.
    pub(crate) fn issued(&self, number: u64) -> bool {
        number >= self.first && number < self.next.load(Ordering::Relaxed)
    }

    /// Whether `id` is `prefix` followed by a number handed out already.
    pub(crate) fn issued_id(&self, prefix: &str, id: &str) -> bool {
        id.strip_prefix(prefix).and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| self.issued(n))
    }
}
