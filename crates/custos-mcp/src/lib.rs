//! MCP and JSON-RPC 2.0 framing for Custos.
//!
//! A gateway forwards frames; it does not re-serialize them. This crate reads frames with a size
//! limit, looks inside each only as far as governance needs (`jsonrpc`, `id`, `method`,
//! `params.name`, `params.arguments`, `_meta`) and keeps the raw bytes for forwarding, so unknown
//! fields, `_meta`, vendor extensions and id spellings (`3.0` stays `3.0`) survive untouched.
//!
//! # Layout
//!
//! - [`frame`]: newline-delimited frames from a byte stream, refusing oversized ones without
//!   buffering them whole (the stdio transport of MCP).
//! - [`message`]: the classified view of one frame (request, notification, response) and the
//!   parameters of the methods Custos governs.
//! - [`error`]: JSON-RPC error codes, Custos's own codes, and error responses built around the
//!   request's raw id.
//! - [`protocol`]: MCP revision facts (session-based and stateless generations, `_meta` keys).
//! - [`sniff`]: best-effort recovery of `id` and `method` from the prefix of an oversized frame.
//! - [`strict`]: one reading of JSON — what two mainstream parsers would read differently
//!   (duplicate or case-colliding keys, lone surrogates, look-alike members) is refused before
//!   anything reads a frame.
//! - [`trace`]: W3C trace context in `params._meta`, read from a client and written for an
//!   upstream.

pub mod error;
pub mod frame;
pub mod fuzzing;
pub mod message;
pub mod protocol;
pub mod sniff;
pub mod strict;
pub mod trace;

pub use error::{codes, error_response};
pub use frame::{Frame, FrameReader};
pub use message::{subscription_id, with_id, with_subscription_id, Message, MessageError, MessageKind, ToolCallParams};
pub use strict::Side;
