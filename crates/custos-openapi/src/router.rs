//! Which operation a request is: the method and the raw path of a request matched against the
//! operations' templates.
//!
//! This decides which tool, and so which policy, a request is judged as, so a path is matched
//! only when every reader would read it the same way. Refused (an error, never a match):
//! paths that do not start with `/`, hold a query or fragment, a space, a backslash, a control
//! or non-ASCII byte, an empty segment (`//`), a `.` or `..` segment (also encoded, `%2e%2e`,
//! or before a `;`, `..;`), an encoded `/` or `\` (`%2F`, `%5C`), an encoded control
//! character, invalid percent-encoding or UTF-8, a segment still holding an encoded `.`, `/`
//! or `\` once decoded (`%252e`: double encoding), more than [`MAX_PATH_BYTES`] bytes or
//! [`MAX_SEGMENTS`] segments.
//!
//! Segments are compared after percent-decoding (`/%6Frders` is `/orders`, as for the
//! upstream). Among the operations of the request's method, the template that is most specific
//! from the left wins: a literal segment before `prefix{var}suffix` before `{var}`, so
//! `/orders/latest` is not `/orders/{id}`. A trailing `/` matches only a template that has one.
//! Methods are compared exactly (`get` is not `GET`), and `HEAD` matches only operations
//! declared for `HEAD`: a gateway that let `HEAD` borrow a `GET` would forward a request the
//! document does not describe, under a policy written for another method.

use std::collections::BTreeMap;

use crate::model::{Method, Operation};
use crate::refs::percent_decode;
use crate::template::{Piece, Template};
use crate::OpenApiError;

/// The longest raw path matched.
pub const MAX_PATH_BYTES: usize = 8 * 1024;
/// The most segments a matched path may have.
pub const MAX_SEGMENTS: usize = 128;

/// The operations of one API, ready to match requests against.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
}

#[derive(Debug, Clone)]
struct Route {
    /// Its index in the operations the router was built from.
    index: usize,
    method: Method,
    template: Template,
}

/// The operation a request is, and its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index into the operations given to [`Router::new`].
    pub operation: usize,
    /// Template variable → the request's value, percent-decoded.
    pub path_params: BTreeMap<String, String>,
}

/// Why a request matches no operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("`{}` is not an http method (methods are uppercase, e.g. `GET`)", .0.escape_debug())]
    BadMethod(String),
    #[error("refused path: {0}")]
    BadPath(String),
    #[error("no operation has this path")]
    NotFound,
    #[error("no `{method}` operation has this path")]
    MethodNotAllowed { method: Method, allowed: Vec<Method> },
}

impl RouteError {
    /// The HTTP status to answer with: 400 for a malformed request, 404, 405.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadMethod(_) | Self::BadPath(_) => 400,
            Self::NotFound => 404,
            Self::MethodNotAllowed { .. } => 405,
        }
    }
}

impl Router {
    /// A router over `operations`; refused when a template cannot be matched safely.
    pub fn new(operations: &[Operation]) -> Result<Self, OpenApiError> {
        let routes = operations
            .iter()
            .enumerate()
            .map(|(index, op)| {
                let template =
                    Template::parse(&op.path_template).map_err(|m| OpenApiError::invalid("api", op.describe(), m))?;
                Ok(Route { index, method: op.method, template })
            })
            .collect::<Result<_, OpenApiError>>()?;
        Ok(Self { routes })
    }

    /// The operation that `method` on `raw_path` (the request target's path, still
    /// percent-encoded, without its query) is; see the module doc for what is refused.
    pub fn find(&self, method: &str, raw_path: &str) -> Result<Match, RouteError> {
        let method = Method::from_token(method).ok_or_else(|| RouteError::BadMethod(method.to_owned()))?;
        let (segments, trailing_slash) = split_path(raw_path)?;
        let mut best: Option<(Vec<u8>, &Route, BTreeMap<String, String>)> = None;
        let mut allowed = Vec::new();
        for route in &self.routes {
            let Some((rank, params)) = matches(&route.template, &segments, trailing_slash) else { continue };
            if route.method != method {
                if !allowed.contains(&route.method) {
                    allowed.push(route.method);
                }
                continue;
            }
            // Strictly better only: on a tie the first operation stays (ApiSpec refuses ties).
            if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
                best = Some((rank, route, params));
            }
        }
        match best {
            Some((_, route, path_params)) => Ok(Match { operation: route.index, path_params }),
            None if allowed.is_empty() => Err(RouteError::NotFound),
            None => {
                allowed.sort();
                Err(RouteError::MethodNotAllowed { method, allowed })
            }
        }
    }
}

/// The rank of each segment and the variables, when `template` matches the decoded segments.
fn matches(
    template: &Template,
    segments: &[String],
    trailing_slash: bool,
) -> Option<(Vec<u8>, BTreeMap<String, String>)> {
    if template.pieces.len() != segments.len() || template.trailing_slash != trailing_slash {
        return None;
    }
    let mut rank = Vec::with_capacity(segments.len());
    let mut params = BTreeMap::new();
    for (piece, segment) in template.pieces.iter().zip(segments) {
        match piece {
            Piece::Literal(text) => {
                if text != segment {
                    return None;
                }
            }
            Piece::Variable(name) => {
                params.insert(name.clone(), segment.clone());
            }
            Piece::Mixed { prefix, name, suffix } => {
                let value = segment
                    .strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                    .filter(|v| !v.is_empty() && *v != "." && *v != "..")?;
                params.insert(name.clone(), value.to_owned());
            }
        }
        rank.push(piece.rank());
    }
    Some((rank, params))
}

/// The decoded segments of `raw`, and whether it ends with `/`; or why it is refused.
fn split_path(raw: &str) -> Result<(Vec<String>, bool), RouteError> {
    let bad = |why: String| Err(RouteError::BadPath(why));
    if raw.len() > MAX_PATH_BYTES {
        return bad(format!("longer than {MAX_PATH_BYTES} bytes"));
    }
    let Some(rest) = raw.strip_prefix('/') else {
        return bad("it does not start with `/`".to_owned());
    };
    if let Some(b) = raw.bytes().find(|b| !b.is_ascii_graphic() || matches!(b, b'\\' | b'?' | b'#')) {
        return bad(match b {
            b'\\' => "a backslash".to_owned(),
            b'?' | b'#' => "a query or fragment: give the path alone".to_owned(),
            b' ' => "a space".to_owned(),
            b => format!("byte 0x{b:02X}: paths are ASCII, anything else percent-encoded"),
        });
    }
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    let trailing_slash = rest.ends_with('/');
    let body = if trailing_slash { rest.get(..rest.len() - 1).unwrap_or_default() } else { rest };
    let mut segments = Vec::new();
    for raw_segment in body.split('/') {
        if segments.len() == MAX_SEGMENTS {
            return bad(format!("more than {MAX_SEGMENTS} segments"));
        }
        segments.push(segment(raw_segment).map_err(RouteError::BadPath)?);
    }
    Ok((segments, trailing_slash))
}

/// One raw segment, decoded; or why it is refused.
fn segment(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("an empty segment (`//`)".to_owned());
    }
    let lower = raw.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Err(format!("an encoded slash or backslash in `{raw}`"));
    }
    let decoded = percent_decode(raw).ok_or_else(|| format!("invalid percent-encoding or UTF-8 in `{raw}`"))?;
    if decoded.chars().any(char::is_control) {
        return Err(format!("an encoded control character in `{raw}`"));
    }
    let before_params = decoded.split(';').next().unwrap_or_default();
    if before_params == "." || before_params == ".." {
        return Err(format!("a dot segment `{raw}`"));
    }
    let decoded_lower = decoded.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c"].iter().any(|e| decoded_lower.contains(e)) {
        return Err(format!("a doubly encoded `.`, `/` or `\\` in `{raw}`"));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use proptest::prelude::*;

    use super::*;

    fn ops(list: &[(Method, &str)]) -> Vec<Operation> {
        list.iter().map(|(m, p)| Operation::declared(*m, p, None).unwrap()).collect()
    }

    fn billing() -> (Vec<Operation>, Router) {
        let ops = ops(&[
            (Method::Get, "/orders/{order_id}"),
            (Method::Delete, "/orders/{order_id}"),
            (Method::Get, "/orders/latest"),
            (Method::Get, "/orders/{order_id}/receipt"),
            (Method::Post, "/refunds"),
            (Method::Get, "/files/{name}.pdf"),
            (Method::Get, "/files/{path}"),
            (Method::Get, "/"),
            (Method::Get, "/dir/"),
            (Method::Head, "/health"),
        ]);
        let router = Router::new(&ops).unwrap();
        (ops, router)
    }

    fn found(router: &Router, ops: &[Operation], method: &str, path: &str) -> (String, Vec<(String, String)>) {
        let m = router.find(method, path).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (ops[m.operation].describe(), m.path_params.into_iter().collect())
    }

    #[test]
    fn requests_find_their_operation_and_decoded_parameters() {
        let (ops, r) = billing();
        let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            found(&r, &ops, "GET", "/orders/o-1"),
            ("GET /orders/{order_id}".into(), vec![p("order_id", "o-1")])
        );
        assert_eq!(found(&r, &ops, "DELETE", "/orders/o-1").0, "DELETE /orders/{order_id}");
        assert_eq!(found(&r, &ops, "GET", "/orders/o-1/receipt").0, "GET /orders/{order_id}/receipt");
        assert_eq!(found(&r, &ops, "POST", "/refunds"), ("POST /refunds".into(), vec![]));
        assert_eq!(found(&r, &ops, "GET", "/orders/a%20b%C3%A9").1, vec![p("order_id", "a bé")]);
        assert_eq!(found(&r, &ops, "GET", "/orders/50%25").1, vec![p("order_id", "50%")]);
        assert_eq!(found(&r, &ops, "GET", "/%6Frders/x").0, "GET /orders/{order_id}");
        assert_eq!(found(&r, &ops, "GET", "/").0, "GET /");
        assert_eq!(found(&r, &ops, "GET", "/dir/").0, "GET /dir/");
        assert_eq!(found(&r, &ops, "GET", "/orders/..x").1, vec![p("order_id", "..x")]);
        assert_eq!(found(&r, &ops, "GET", "/orders/a;b").1, vec![p("order_id", "a;b")]);
    }

    #[test]
    fn literal_segments_win_over_variables_whatever_the_order() {
        let (ops, r) = billing();
        assert_eq!(found(&r, &ops, "GET", "/orders/latest"), ("GET /orders/latest".into(), vec![]));
        // Only among the request's method: DELETE has no literal, so its variable takes it.
        assert_eq!(found(&r, &ops, "DELETE", "/orders/latest").0, "DELETE /orders/{order_id}");
        let mixed = found(&r, &ops, "GET", "/files/report.pdf");
        assert_eq!(mixed.0, "GET /files/{name}.pdf");
        assert_eq!(mixed.1, vec![("name".into(), "report".into())]);
        assert_eq!(found(&r, &ops, "GET", "/files/.pdf").0, "GET /files/{path}");
        // A variable inside a segment is never a dot segment either.
        assert_eq!(found(&r, &ops, "GET", "/files/...pdf").0, "GET /files/{path}");
        assert_eq!(found(&r, &ops, "GET", "/files/README").0, "GET /files/{path}");
        let reversed: Vec<Operation> = ops.iter().rev().cloned().collect();
        let rr = Router::new(&reversed).unwrap();
        assert_eq!(found(&rr, &reversed, "GET", "/orders/latest").0, "GET /orders/latest");
    }

    #[test]
    fn methods_are_exact_and_head_is_not_get() {
        let (_, r) = billing();
        assert_eq!(r.find("get", "/refunds"), Err(RouteError::BadMethod("get".into())));
        assert_eq!(r.find("FETCH", "/refunds").unwrap_err().status(), 400);
        let err = r.find("HEAD", "/orders/o-1").unwrap_err();
        assert_eq!(
            err,
            RouteError::MethodNotAllowed { method: Method::Head, allowed: vec![Method::Get, Method::Delete] }
        );
        assert_eq!(err.status(), 405);
        assert!(r.find("HEAD", "/health").is_ok());
        assert_eq!(r.find("GET", "/health").unwrap_err().status(), 405);
        assert_eq!(r.find("PUT", "/refunds").unwrap_err().status(), 405);
        assert_eq!(r.find("GET", "/nowhere"), Err(RouteError::NotFound));
        assert_eq!(r.find("GET", "/nowhere").unwrap_err().status(), 404);
        // A trailing slash is another path.
        assert_eq!(r.find("POST", "/refunds/"), Err(RouteError::NotFound));
        assert_eq!(r.find("GET", "/dir"), Err(RouteError::NotFound));
    }

    #[test]
    fn hostile_paths_are_refused_never_matched() {
        let (_, r) = billing();
        let long = format!("/orders/{}", "a".repeat(MAX_PATH_BYTES));
        let many = "/a".repeat(MAX_SEGMENTS + 1);
        for path in [
            "",
            "orders/1",
            "//orders/1",
            "/orders//receipt",
            "/orders/1//receipt",
            "/orders/1/receipt//",
            "/orders/.",
            "/orders/..",
            "/orders/1/../2",
            "/orders/%2e%2e",
            "/orders/%2E%2E",
            "/orders/.%2e",
            "/orders/%2e",
            "/orders/..;",
            "/orders/..;x=1",
            "/orders/%2e%2e;/x",
            "/orders/a%2Fb",
            "/orders/a%2fb",
            "/orders/a%5Cb",
            "/orders/a\\b",
            "/orders\\1",
            "/orders/%252e%252e",
            "/orders/%252F",
            "/orders/a%00b",
            "/orders/a%0Ab",
            "/orders/a%7Fb",
            "/orders/a%C2%85b",
            "/orders/a\0b",
            "/orders/a\nb",
            "/orders/a b",
            "/orders/é",
            "/orders/%",
            "/orders/%4",
            "/orders/%zz",
            "/orders/%ff",
            "/orders/%C3",
            "/orders/1?x=1",
            "/orders/1#f",
            &long,
            &many,
        ] {
            match r.find("GET", path) {
                Err(RouteError::BadPath(_)) => {}
                other => panic!("{path:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_router_refuses_templates_it_cannot_match_safely() {
        let mut bad = ops(&[(Method::Get, "/ok")]);
        bad[0].path_template = "/a/../b".into();
        assert!(Router::new(&bad).unwrap_err().to_string().contains("`..` segment"));
    }

    proptest! {
        #[test]
        fn find_never_panics_and_values_never_hold_separators(
            method in "(GET|HEAD|POST|get|DELETE|[A-Z]{0,8}|\\PC{0,4})",
            path in "(/|%|\\.|[a-z]|2|e|E|f|F|5|c|C|;|\\\\|\\{|\\}|\\PC){0,40}",
        ) {
            let (_, r) = billing();
            if let Ok(m) = r.find(&method, &path) {
                prop_assert!(path.starts_with('/'));
                for value in m.path_params.values() {
                    prop_assert!(!value.is_empty());
                    prop_assert!(!value.contains('/') && !value.contains('\\'));
                    prop_assert!(value != "." && value != "..");
                    prop_assert!(!value.chars().any(char::is_control));
                }
            }
        }

        #[test]
        fn find_never_panics_on_any_bytes(method in any::<String>(), path in any::<String>()) {
            let (_, r) = billing();
            let _ = r.find(&method, &path);
        }
    }
}
