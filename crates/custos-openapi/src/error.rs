//! Why a document, or a declared operation, cannot be used: each error names where it came from
//! (the file, or `document` for text handed in) and where in it.

use std::path::PathBuf;

/// An OpenAPI document or a declared operation that cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    #[error("cannot read openapi document `{path}`: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("openapi document `{path}` is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    /// The parser's own message, at the line and column it gives (1-based).
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax { origin: String, line: usize, column: usize, message: String },
    /// A document that parses but is not one we can import; `at` is where in it, as
    /// `paths./orders/{id}.get.parameters[0]`.
    #[error("{origin}: `{at}`: {message}")]
    Invalid { origin: String, at: String, message: String },
    /// `load` reads files; a URL is fetched by the gateway (`custos serve`, at start-up) and
    /// its text given to [`crate::parse`].
    #[error("`{url}`: `load` reads files only; a document at a url is fetched by the gateway at start-up")]
    UrlNotSupported { url: String },
}

impl OpenApiError {
    pub(crate) fn invalid(origin: &str, at: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { origin: origin.to_owned(), at: at.into(), message: message.into() }
    }

    /// A parser's message without the location it appends (`… at line 3 column 5`), which the
    /// error carries apart.
    pub(crate) fn syntax(origin: &str, line: usize, column: usize, message: &str) -> Self {
        let message = message.split(" at line ").next().unwrap_or(message).trim().to_owned();
        Self::Syntax { origin: origin.to_owned(), line, column, message }
    }
}
