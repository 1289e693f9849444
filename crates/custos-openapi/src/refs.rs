//! Local `$ref`s (`#/components/schemas/Order`) followed, and schemas inlined.
//!
//! Only references inside the document are followed: one to another file or a URL is an error,
//! since reading it would make the import depend on what else can be reached at start-up.
//! A schema is copied with each reference replaced by what it points at, except that
//!
//! - a reference to a schema that is already being inlined (a recursive schema: a tree, a
//!   linked list) becomes `{}`, the schema that admits anything;
//! - past [`MAX_SCHEMA_DEPTH`] levels of nesting, what is left becomes `{}` too;
//! - inlining more than [`MAX_REF_EXPANSIONS`] references for one document is an error
//!   (references that each use another twice grow exponentially).
//!
//! So the arguments' schema is never stricter than the document's: it is advice for agents
//! (MCP `inputSchema`); policy decides on the arguments themselves.

use std::cell::Cell;

use serde_json::{Map, Value};

use crate::OpenApiError;

/// Levels of objects and arrays an inlined schema may have; deeper parts become `{}`.
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// References one document may have inlined, in all; more is refused.
pub const MAX_REF_EXPANSIONS: usize = 10_000;
/// References followed to reach one parameter or request body (`$ref` to a `$ref` …).
const MAX_REF_HOPS: usize = 32;

/// Keywords whose values are data, not schemas: copied as they are, never searched for `$ref`.
const DATA_KEYWORDS: [&str; 5] = ["example", "examples", "default", "const", "enum"];

/// Follows references inside one document.
pub(crate) struct Resolver<'a> {
    root: &'a Value,
    origin: &'a str,
    /// OpenAPI 3.1 schemas are JSON Schema 2020-12, where keywords beside a `$ref` count; in
    /// 3.0 they are ignored.
    siblings_count: bool,
    /// References left to inline: [`MAX_REF_EXPANSIONS`] at the start.
    budget: Cell<usize>,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(root: &'a Value, origin: &'a str, siblings_count: bool) -> Self {
        Self { root, origin, siblings_count, budget: Cell::new(MAX_REF_EXPANSIONS) }
    }

    /// Where the document came from, for messages.
    pub(crate) fn origin(&self) -> &'a str {
        self.origin
    }

    /// What `reference` points at.
    fn target(&self, reference: &str, at: &str) -> Result<&'a Value, OpenApiError> {
        let Some(fragment) = reference.strip_prefix('#') else {
            return Err(OpenApiError::invalid(
                self.origin,
                at,
                format!(
                    "`{}` is not a reference inside this document: only local references (`#/components/...`) are supported",
                    reference.escape_debug()
                ),
            ));
        };
        let pointer = percent_decode(fragment).filter(|p| p.is_empty() || p.starts_with('/'));
        pointer.as_deref().and_then(|p| self.root.pointer(p)).ok_or_else(|| {
            OpenApiError::invalid(
                self.origin,
                at,
                format!("`{}` points at nothing in this document", reference.escape_debug()),
            )
        })
    }

    /// `value`, or what its `$ref` (and theirs) point at: an object, else an error.
    pub(crate) fn object(&self, value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, OpenApiError> {
        let mut current = value;
        for _ in 0..MAX_REF_HOPS {
            let Some(obj) = current.as_object() else {
                return Err(OpenApiError::invalid(self.origin, at, "expected an object"));
            };
            match obj.get("$ref") {
                Some(Value::String(reference)) => current = self.target(reference, at)?,
                _ => return Ok(obj),
            }
        }
        Err(OpenApiError::invalid(
            self.origin,
            at,
            format!("more than {MAX_REF_HOPS} references in a row: a cycle of `$ref`s?"),
        ))
    }

    /// `schema` with its local references inlined (see the module doc).
    pub(crate) fn schema(&self, schema: &Value, at: &str) -> Result<Value, OpenApiError> {
        let mut stack = Vec::new();
        self.inline(schema, 0, &mut stack, at)
    }

    fn inline(&self, value: &Value, depth: usize, stack: &mut Vec<String>, at: &str) -> Result<Value, OpenApiError> {
        if depth >= MAX_SCHEMA_DEPTH {
            return Ok(Value::Object(Map::new()));
        }
        match value {
            Value::Array(items) => {
                items.iter().map(|v| self.inline(v, depth + 1, stack, at)).collect::<Result<_, _>>().map(Value::Array)
            }
            Value::Object(obj) => match obj.get("$ref") {
                Some(Value::String(reference)) => {
                    if stack.iter().any(|r| r == reference) {
                        return Ok(Value::Object(Map::new()));
                    }
                    let left = self.budget.get();
                    if left == 0 {
                        return Err(OpenApiError::invalid(
                            self.origin,
                            at,
                            format!("schemas expand past {MAX_REF_EXPANSIONS} references"),
                        ));
                    }
                    self.budget.set(left - 1);
                    let target = self.target(reference, at)?;
                    stack.push(reference.clone());
                    let resolved = self.inline(target, depth + 1, stack, at);
                    stack.pop();
                    let resolved = resolved?;
                    let siblings: Map<String, Value> =
                        obj.iter().filter(|(k, _)| *k != "$ref").map(|(k, v)| (k.clone(), v.clone())).collect();
                    if !self.siblings_count || siblings.is_empty() {
                        return Ok(resolved);
                    }
                    let Value::Object(mut rest) = self.inline(&Value::Object(siblings), depth + 1, stack, at)? else {
                        return Ok(resolved);
                    };
                    let all_of = match rest.remove("allOf") {
                        Some(Value::Array(mut more)) => {
                            more.insert(0, resolved);
                            more
                        }
                        Some(other) => vec![resolved, other],
                        None => vec![resolved],
                    };
                    rest.insert("allOf".to_owned(), Value::Array(all_of));
                    Ok(Value::Object(rest))
                }
                _ => {
                    let mut out = Map::new();
                    for (k, v) in obj {
                        let v = if DATA_KEYWORDS.contains(&k.as_str()) || k.starts_with("x-") {
                            v.clone()
                        } else {
                            self.inline(v, depth + 1, stack, at)?
                        };
                        out.insert(k.clone(), v);
                    }
                    Ok(Value::Object(out))
                }
            },
            other => Ok(other.clone()),
        }
    }
}

/// `text` with `%XX` escapes decoded, if they are valid and the result is UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16))?;
            let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16))?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use serde_json::json;

    use super::*;

    #[test]
    fn local_references_are_inlined_and_siblings_count_only_in_3_1() {
        let doc = json!({"components": {"schemas": {
            "Money": {"type": "object", "required": ["cents"], "properties": {"cents": {"type": "integer"}}},
            "Refund": {"type": "object", "properties": {"amount": {"$ref": "#/components/schemas/Money", "description": "how much"}}},
            "a~b/c": {"type": "string"}
        }}});
        let r = Resolver::new(&doc, "doc", false);
        let got = r.schema(&json!({"$ref": "#/components/schemas/Refund"}), "x").unwrap();
        assert_eq!(got["properties"]["amount"], doc["components"]["schemas"]["Money"]);
        let r31 = Resolver::new(&doc, "doc", true);
        let got = r31.schema(&json!({"$ref": "#/components/schemas/Refund"}), "x").unwrap();
        assert_eq!(
            got["properties"]["amount"],
            json!({"description": "how much", "allOf": [doc["components"]["schemas"]["Money"]]})
        );
        // JSON pointer escapes and percent-encoding in the fragment.
        let got = r.schema(&json!({"$ref": "#/components/schemas/a~0b~1c"}), "x").unwrap();
        assert_eq!(got, json!({"type": "string"}));
        let got = r.schema(&json!({"$ref": "#/components/schemas/a~0b%7E1c"}), "x").unwrap();
        assert_eq!(got, json!({"type": "string"}));
        // Data is data: a `$ref` inside an example is not followed.
        let example = json!({"type": "object", "example": {"$ref": "nowhere"}, "enum": [{"$ref": "x"}]});
        assert_eq!(r.schema(&example, "x").unwrap(), example);
    }

    #[test]
    fn recursive_schemas_end_in_an_open_schema() {
        let doc = json!({"components": {"schemas": {
            "Node": {"type": "object", "properties": {
                "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                "parent": {"$ref": "#/components/schemas/Node"}
            }},
            "A": {"$ref": "#/components/schemas/B"},
            "B": {"properties": {"a": {"$ref": "#/components/schemas/A"}}}
        }}});
        let r = Resolver::new(&doc, "doc", true);
        let node = r.schema(&json!({"$ref": "#/components/schemas/Node"}), "x").unwrap();
        assert_eq!(node["properties"]["children"]["items"], json!({}));
        assert_eq!(node["properties"]["parent"], json!({}));
        let a = r.schema(&json!({"$ref": "#/components/schemas/A"}), "x").unwrap();
        assert_eq!(a, json!({"properties": {"a": {}}}));
    }

    #[test]
    fn exponential_and_deep_schemas_are_bounded() {
        // S0 uses S1 twice, S1 uses S2 twice, …: 2^30 copies if nothing stopped it.
        let mut schemas = Map::new();
        for i in 0..30 {
            let next = format!("#/components/schemas/S{}", i + 1);
            schemas.insert(format!("S{i}"), json!({"properties": {"l": {"$ref": next}, "r": {"$ref": next}}}));
        }
        schemas.insert("S30".into(), json!({"type": "string"}));
        let doc = json!({"components": {"schemas": schemas}});
        let err =
            Resolver::new(&doc, "doc", false).schema(&json!({"$ref": "#/components/schemas/S0"}), "x").unwrap_err();
        assert!(err.to_string().contains("expand past 10000 references"), "{err}");

        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({"items": deep});
        }
        let got = Resolver::new(&json!({}), "doc", false).schema(&deep, "x").unwrap();
        let mut level = &got;
        let mut n = 0;
        while let Some(inner) = level.get("items") {
            level = inner;
            n += 1;
        }
        assert!(n <= MAX_SCHEMA_DEPTH && *level == json!({}), "{n}");
    }

    #[test]
    fn only_local_references_that_exist_are_followed() {
        let doc = json!({"components": {"parameters": {"Loop": {"$ref": "#/components/parameters/Loop"}}}});
        let r = Resolver::new(&doc, "doc.yaml", false);
        for (reference, why) in [
            ("other.yaml#/components/schemas/X", "only local references"),
            ("https://example.com/s.json", "only local references"),
            ("#/components/schemas/Missing", "points at nothing"),
            ("#components", "points at nothing"),
            ("#/bad%zz", "points at nothing"),
        ] {
            let err = r.schema(&json!({"$ref": reference}), "paths./x.get").unwrap_err().to_string();
            assert!(err.starts_with("doc.yaml: `paths./x.get`: ") && err.contains(why), "{reference}: {err}");
        }
        let err = r.object(&json!({"$ref": "#/components/parameters/Loop"}), "p").unwrap_err();
        assert!(err.to_string().contains("a cycle of `$ref`s"), "{err}");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%7e").as_deref(), Some("a/b~"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
    }
}
