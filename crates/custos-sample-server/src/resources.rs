//! The server's static resources.

use rmcp::{
    model::{ReadResourceResult, Resource, ResourceContents},
    ErrorData,
};
use serde_json::json;

/// URI of the greeting resource.
pub const GREETING_URI: &str = "sample://greeting";

/// Text of the greeting resource.
pub const GREETING_TEXT: &str = "hello from the sample server";

/// Every resource the server lists.
pub(crate) fn list() -> Vec<Resource> {
    vec![Resource::new(GREETING_URI, "greeting").with_description("A fixed greeting.").with_mime_type("text/plain")]
}

/// The contents of the resource at `uri`, or `resource not found`.
pub(crate) fn read(uri: &str) -> Result<ReadResourceResult, ErrorData> {
    match uri {
        GREETING_URI => Ok(ReadResourceResult::new(vec![ResourceContents::text(GREETING_TEXT, uri)])),
        _ => Err(ErrorData::resource_not_found(format!("no resource `{uri}`"), Some(json!({ "uri": uri })))),
    }
}
