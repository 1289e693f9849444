//! What the gateway tells a client that is not (yet) allowed in: the OAuth 2.0 protected
//! resource metadata (RFC 9728) and the `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9728 §5.1)
//! that point at it.
//!
//! The metadata's URL comes from the resource identifier by RFC 9728 §3.1: the well-known suffix
//! goes between the host and the path, so `https://gw.example/mcp` publishes at
//! `https://gw.example/.well-known/oauth-protected-resource/mcp`, and `https://gw.example` at
//! `https://gw.example/.well-known/oauth-protected-resource`.

use serde_json::{json, Value};

use crate::error::AuthError;

/// The well-known path segment of RFC 9728.
pub const WELL_KNOWN_PATH: &str = "/.well-known/oauth-protected-resource";

/// The protected resource metadata the gateway publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedResourceMetadata {
    /// The gateway's resource identifier (RFC 8707): what tokens must carry in `aud`.
    resource: String,
    /// Issuers whose tokens the gateway accepts, so clients know where to get one.
    authorization_servers: Vec<String>,
    /// Scopes the gateway understands, so clients can ask for the right ones.
    scopes_supported: Vec<String>,
    /// A name for people, shown by clients when they ask for consent.
    resource_name: Option<String>,
}

impl ProtectedResourceMetadata {
    /// Metadata for `resource`, an absolute `https` (or `http`) URL without query or fragment.
    pub fn new(
        resource: &str,
        authorization_servers: Vec<String>,
        scopes_supported: Vec<String>,
    ) -> Result<ProtectedResourceMetadata, AuthError> {
        split_url(resource, "resource")?;
        for server in &authorization_servers {
            split_url(server, "authorization_servers")?;
        }
        Ok(ProtectedResourceMetadata {
            resource: resource.to_owned(),
            authorization_servers,
            scopes_supported,
            resource_name: None,
        })
    }

    /// Adds a human-readable name.
    pub fn with_resource_name(mut self, name: impl Into<String>) -> ProtectedResourceMetadata {
        self.resource_name = Some(name.into());
        self
    }

    /// The resource identifier.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The document to serve, as JSON.
    pub fn to_json(&self) -> Value {
        let mut doc = json!({
            "resource": self.resource,
            "authorization_servers": self.authorization_servers,
            "scopes_supported": self.scopes_supported,
            "bearer_methods_supported": ["header"],
        });
        if let (Some(name), Some(map)) = (&self.resource_name, doc.as_object_mut()) {
            map.insert("resource_name".to_owned(), Value::String(name.clone()));
        }
        doc
    }

    /// The absolute URL the document is served at (RFC 9728 §3.1); what challenges point to.
    pub fn metadata_url(&self) -> String {
        let (origin, path) = split_url(&self.resource, "resource").unwrap_or((&self.resource, ""));
        format!("{origin}{}", well_known_path_for(path))
    }

    /// The request path to serve the document on: `/.well-known/oauth-protected-resource` plus
    /// the resource's own path, if it has one.
    pub fn well_known_path(&self) -> String {
        let (_, path) = split_url(&self.resource, "resource").unwrap_or((&self.resource, ""));
        well_known_path_for(path)
    }
}

fn well_known_path_for(resource_path: &str) -> String {
    // RFC 9728 §3.1: a terminating `/` after the host is removed before inserting.
    let path = resource_path.trim_end_matches('/');
    format!("{WELL_KNOWN_PATH}{path}")
}

/// Splits an absolute http(s) URL into origin (`https://host:port`) and path; refuses queries,
/// fragments, userinfo, whitespace and anything that could break a header.
fn split_url<'a>(url: &'a str, field: &'static str) -> Result<(&'a str, &'a str), AuthError> {
    let invalid = |reason| AuthError::InvalidUrl { field, reason };
    let after_scheme = ["https://", "http://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or(invalid("expected an absolute `https://` or `http://` url"))?;
    if !url.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
        return Err(invalid("it holds spaces, quotes, backslashes or non-ascii characters"));
    }
    if url.contains('?') {
        return Err(invalid("a query is not allowed"));
    }
    if url.contains('#') {
        return Err(invalid("a fragment is not allowed"));
    }
    let host_len = after_scheme.find('/').unwrap_or(after_scheme.len());
    let host = after_scheme.get(..host_len).unwrap_or_default();
    if host.is_empty() {
        return Err(invalid("the host is empty"));
    }
    if host.contains('@') {
        return Err(invalid("userinfo is not allowed"));
    }
    let origin_len = url.len() - after_scheme.len() + host_len;
    Ok(url.split_at_checked(origin_len).unwrap_or((url, "")))
}

/// The challenge for a request with no credential (HTTP 401):
/// `Bearer resource_metadata="<url>"`.
pub fn challenge_missing(resource_metadata_url: &str) -> String {
    format!("Bearer resource_metadata={}", quoted(resource_metadata_url))
}

/// The challenge for a presented token that was refused (HTTP 401): `error="invalid_token"`
/// with a description.
pub fn challenge_invalid_token(resource_metadata_url: &str, description: &str) -> String {
    format!(
        "Bearer resource_metadata={}, error=\"invalid_token\", error_description={}",
        quoted(resource_metadata_url),
        quoted_description(description)
    )
}

/// The challenge for a valid token without the scope needed (HTTP 403):
/// `error="insufficient_scope", scope="…"`.
pub fn challenge_insufficient_scope(resource_metadata_url: &str, required: &[String], description: &str) -> String {
    format!(
        "Bearer resource_metadata={}, error=\"insufficient_scope\", scope={}, error_description={}",
        quoted(resource_metadata_url),
        quoted(&required.join(" ")),
        quoted_description(description)
    )
}

/// The `WWW-Authenticate` value for `error`, or `None` when the answer is not a challenge
/// (the gateway's own faults, HTTP 500). The status to send is [`AuthError::http_status`].
pub fn challenge_for(error: &AuthError, resource_metadata_url: &str) -> Option<String> {
    match (error, error.oauth_error()) {
        (AuthError::InsufficientScope { required }, _) => {
            Some(challenge_insufficient_scope(resource_metadata_url, required, &error.to_string()))
        }
        (_, Some(_)) => Some(challenge_invalid_token(resource_metadata_url, &error.to_string())),
        (AuthError::MissingCredential | AuthError::UnsupportedScheme | AuthError::UnknownSpiffeId, None) => {
            Some(challenge_missing(resource_metadata_url))
        }
        (_, None) => None,
    }
}

/// An RFC 9110 `quoted-string`: `"` and `\` escaped; characters a header cannot carry
/// (controls, non-ASCII) replaced with `?`.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' | '\t' => out.push(c),
            c if c.is_ascii_graphic() => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// RFC 6750 §3 allows only `%x20-21 / %x23-5B / %x5D-7E` in `error_description`: no `"`,
/// no `\`, nothing outside printable ASCII. Those become `'`, `/` and `?`.
fn quoted_description(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' ' => ' ',
            c if c.is_ascii_graphic() => c,
            _ => '?',
        })
        .collect();
    format!("\"{cleaned}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(resource: &str) -> ProtectedResourceMetadata {
        ProtectedResourceMetadata::new(
            resource,
            vec!["https://auth.example".to_owned()],
            vec!["tools:call".to_owned(), "tools:list".to_owned()],
        )
        .unwrap()
    }

    #[test]
    fn metadata_json_has_the_rfc9728_fields() {
        let doc = metadata("https://gw.example/mcp").with_resource_name("Custos").to_json();
        assert_eq!(
            doc,
            json!({
                "resource": "https://gw.example/mcp",
                "authorization_servers": ["https://auth.example"],
                "scopes_supported": ["tools:call", "tools:list"],
                "bearer_methods_supported": ["header"],
                "resource_name": "Custos",
            })
        );
        assert!(metadata("https://gw.example").to_json().get("resource_name").is_none());
    }

    #[test]
    fn metadata_url_inserts_the_well_known_suffix() {
        let cases = [
            ("https://gw.example", "https://gw.example/.well-known/oauth-protected-resource", WELL_KNOWN_PATH),
            ("https://gw.example/", "https://gw.example/.well-known/oauth-protected-resource", WELL_KNOWN_PATH),
            (
                "https://gw.example:8443/mcp",
                "https://gw.example:8443/.well-known/oauth-protected-resource/mcp",
                "/.well-known/oauth-protected-resource/mcp",
            ),
            (
                "http://127.0.0.1:7000/a/b/",
                "http://127.0.0.1:7000/.well-known/oauth-protected-resource/a/b",
                "/.well-known/oauth-protected-resource/a/b",
            ),
        ];
        for (resource, url, path) in cases {
            let meta = metadata(resource);
            assert_eq!(meta.metadata_url(), url, "{resource}");
            assert_eq!(meta.well_known_path(), path, "{resource}");
        }
    }

    #[test]
    fn bad_resource_urls_are_refused() {
        for bad in [
            "gw.example",
            "ftp://gw.example",
            "https://",
            "https:///mcp",
            "https://gw.example/mcp?x=1",
            "https://gw.example/mcp#top",
            "https://user@gw.example",
            "https://gw.example/a b",
            "https://gw.example/\"",
        ] {
            let err = ProtectedResourceMetadata::new(bad, vec![], vec![]).unwrap_err();
            assert!(matches!(err, AuthError::InvalidUrl { field: "resource", .. }), "{bad}: {err:?}");
        }
        let err = ProtectedResourceMetadata::new("https://gw.example", vec!["auth.example".into()], vec![]);
        assert!(matches!(err, Err(AuthError::InvalidUrl { field: "authorization_servers", .. })));
    }

    #[test]
    fn www_authenticate_for_a_missing_credential() {
        let url = "https://gw.example/.well-known/oauth-protected-resource/mcp";
        let expected = "Bearer resource_metadata=\"https://gw.example/.well-known/oauth-protected-resource/mcp\"";
        assert_eq!(challenge_missing(url), expected);
        assert_eq!(challenge_for(&AuthError::MissingCredential, url).unwrap(), expected);
        assert_eq!(challenge_for(&AuthError::UnsupportedScheme, url).unwrap(), expected);
    }

    #[test]
    fn www_authenticate_for_an_invalid_token() {
        let url = "https://gw.example/.well-known/oauth-protected-resource";
        assert_eq!(
            challenge_for(&AuthError::Expired, url).unwrap(),
            "Bearer resource_metadata=\"https://gw.example/.well-known/oauth-protected-resource\", \
             error=\"invalid_token\", error_description=\"the token has expired\""
        );
        let missing = AuthError::MissingAgentClaim { claim: "client_id".into() };
        assert_eq!(
            challenge_for(&missing, url).unwrap(),
            "Bearer resource_metadata=\"https://gw.example/.well-known/oauth-protected-resource\", \
             error=\"invalid_token\", error_description=\"the token has no `client_id` claim to name the agent\""
        );
    }

    #[test]
    fn www_authenticate_for_insufficient_scope() {
        let url = "https://gw.example/.well-known/oauth-protected-resource";
        let err = AuthError::InsufficientScope { required: vec!["tools:call".into(), "admin".into()] };
        assert_eq!(err.http_status(), 403);
        assert_eq!(
            challenge_for(&err, url).unwrap(),
            "Bearer resource_metadata=\"https://gw.example/.well-known/oauth-protected-resource\", \
             error=\"insufficient_scope\", scope=\"tools:call admin\", \
             error_description=\"the token lacks a scope this request needs: `tools:call admin`\""
        );
    }

    #[test]
    fn an_unknown_client_certificate_gets_the_plain_challenge() {
        let url = "https://gw.example/.well-known/oauth-protected-resource";
        assert_eq!(challenge_for(&AuthError::UnknownSpiffeId, url).unwrap(), challenge_missing(url));
    }

    #[test]
    fn gateway_faults_are_not_challenges() {
        assert_eq!(challenge_for(&AuthError::NoUsableKeys, "https://x"), None);
        assert_eq!(challenge_for(&AuthError::ClockUnavailable, "https://x"), None);
    }

    #[test]
    fn values_are_quote_escaped() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("a\r\nb"), "\"a??b\"");
        assert_eq!(quoted("é"), "\"?\"");
        assert_eq!(quoted_description(r#"say "hi" \ bye"#), r#""say 'hi' / bye""#);
        assert_eq!(quoted_description("line\nbreak"), "\"line?break\"");
        let header = challenge_insufficient_scope("https://x", &["a\"b".to_owned()], "d\"e");
        assert_eq!(
            header,
            r#"Bearer resource_metadata="https://x", error="insufficient_scope", scope="a\"b", error_description="d'e""#
        );
    }
}
