//! HTTP APIs as tools: OpenAPI 3.0 and 3.1 documents read into operations, and the route
//! matcher that says which operation a request is.
//!
//! Each operation of an `[[apis]]` entry becomes a tool `API/tool_name` whose class comes from
//! its method (`GET`/`HEAD` read; `POST`, `PUT`, `PATCH` write; `DELETE` privileged) unless the
//! config overrides it. The model is ours and small: what governance needs (method, path
//! template, parameters, body schema), not a full OpenAPI object model.
//!
//! Reading a document: JSON with `serde_json`; YAML with `serde_yaml_ng`, a maintained fork of
//! the unmaintained `serde_yaml` that deserializes straight into the `serde_json::Value` the rest
//! of the crate reads, reports line and column, and bounds nesting depth and alias expansion
//! (no "billion laughs"). `saphyr` (pure Rust, YAML 1.2) was the alternative; it builds its own
//! tree, which we would then have to convert and bound ourselves.
//!
//! What is refused, with a message naming the file and where in it: OpenAPI 2.0 (Swagger) and
//! versions other than 3.0.x and 3.1.x; references to other files or URLs; templates that
//! cannot be matched safely (see [`Router`]); two operations with one tool name, or of one
//! method on templates of the same shape; arguments whose names collide.
//!
//! # Layout
//!
//! - [`model`](mod@model): [`ApiSpec`], [`Operation`], [`Param`], [`Body`], [`Method`] and the
//!   default classes, the tool's input schema.
//! - `document.rs`: a parsed document read into an [`ApiSpec`]: versions, path items,
//!   parameters merged, request bodies.
//! - [`refs`]: local `$ref`s followed and schemas inlined, cycle-safe and bounded.
//! - `name.rs`: tool names made from a method and path.
//! - `template.rs`: path templates.
//! - [`router`]: [`Router`], the request → operation matcher, and what it refuses.
//! - [`mod@error`]: the [`OpenApiError`] type.

pub mod error;
pub mod model;
pub mod refs;
pub mod router;

mod document;
mod name;
mod template;

use std::path::Path;

pub use error::OpenApiError;
pub use model::{ApiSpec, Body, Location, Method, Operation, Param, BODY_ARGUMENT};
pub use router::{Match, RouteError, Router};

/// The largest document read, in bytes.
pub const MAX_DOCUMENT_BYTES: u64 = 16 * 1024 * 1024;

/// The API described by `source`: a file, relative to `base_dir` (the config's folder) unless
/// absolute; JSON when its name ends in `.json`, YAML when in `.yaml` or `.yml`, else whichever
/// its first character says. `http://` and `https://` sources are refused: the gateway fetches those.
pub fn load(source: &str, base_dir: &Path) -> Result<ApiSpec, OpenApiError> {
    if source.starts_with("https://") || source.starts_with("http://") {
        return Err(OpenApiError::UrlNotSupported { url: source.to_owned() });
    }
    let path = base_dir.join(source);
    let read_error = |e: std::io::Error| OpenApiError::Read { path: path.clone(), reason: e.to_string() };
    let size = std::fs::metadata(&path).map_err(read_error)?.len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(OpenApiError::TooLarge { path, max: MAX_DOCUMENT_BYTES });
    }
    let bytes = std::fs::read(&path).map_err(read_error)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_DOCUMENT_BYTES {
        return Err(OpenApiError::TooLarge { path, max: MAX_DOCUMENT_BYTES });
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| OpenApiError::Read { path: path.clone(), reason: "not UTF-8 text".to_owned() })?;
    let origin = path.display().to_string();
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("json") => parse_json(&text, &origin),
        Some("yaml" | "yml") => parse_yaml(&text, &origin),
        _ => parse(&text, &origin),
    }
}

/// The API described by `text`, JSON if it starts with `{` (after blanks), else YAML; errors
/// name `origin`.
pub fn parse(text: &str, origin: &str) -> Result<ApiSpec, OpenApiError> {
    if text.trim_start().starts_with('{') {
        parse_json(text, origin)
    } else {
        parse_yaml(text, origin)
    }
}

/// The API described by the JSON document `text`.
pub fn parse_json(text: &str, origin: &str) -> Result<ApiSpec, OpenApiError> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| OpenApiError::syntax(origin, e.line(), e.column(), &e.to_string()))?;
    document::read(&doc, origin)
}

/// The API described by the YAML document `text` (JSON is YAML too).
pub fn parse_yaml(text: &str, origin: &str) -> Result<ApiSpec, OpenApiError> {
    let doc: serde_json::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        OpenApiError::syntax(origin, line, column, &e.to_string())
    })?;
    document::read(&doc, origin)
}
