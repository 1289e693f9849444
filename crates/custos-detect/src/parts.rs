//! Every string of a tool descriptor that a model is shown, with where it sits.
//!
//! A model reads the whole descriptor, not its description alone: the tool's name and title,
//! the annotations, and in the input and output schemas each property's name, description,
//! title, default, enum and const values and examples, through nested objects, `items`,
//! `anyOf`/`oneOf`/`allOf`, `$defs` and the rest. [`descriptor_parts`] lists them so that the
//! phrase rules judge all of it.
//!
//! Bounds: at most [`MAX_PARTS`] parts and [`MAX_PARTS_BYTES`] bytes of text in all, and schemas
//! are walked [`MAX_SCHEMA_DEPTH`] levels deep; past a bound the rest is dropped (the
//! invisible-character rule still reads every string, and a descriptor that large is odd
//! already). Structural keywords (`type`, `$ref`, `required`, …) are not parts; a descriptor's
//! `_meta` and `icons` are not shown to models and are skipped.

use serde_json::Value;

/// Parts listed at most.
pub const MAX_PARTS: usize = 1000;
/// Bytes of part text at most, in all.
pub const MAX_PARTS_BYTES: usize = 512 * 1024;
/// Schema nesting followed at most.
pub const MAX_SCHEMA_DEPTH: usize = 24;

/// What a part of a descriptor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Name,
    Title,
    Description,
    ParamName,
    ParamDescription,
    ParamTitle,
    ParamDefault,
    /// An `enum` or `const` value.
    ParamEnum,
    ParamExample,
    Annotation,
    /// Any other string a model may be shown (a vendor keyword's value, an unknown top-level key).
    Other,
}

impl Field {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Title => "title",
            Self::Description => "description",
            Self::ParamName => "param_name",
            Self::ParamDescription => "param_description",
            Self::ParamTitle => "param_title",
            Self::ParamDefault => "param_default",
            Self::ParamEnum => "param_enum",
            Self::ParamExample => "param_example",
            Self::Annotation => "annotation",
            Self::Other => "other",
        }
    }
}

/// One string of a descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub field: Field,
    /// Where it is: `description`, `inputSchema.properties.to.description`,
    /// `inputSchema.properties.mode.enum[2]`, `annotations.title`.
    pub path: String,
    pub text: String,
}

/// Schema keywords whose values are structure, not text for the model: types, references and
/// the list of required properties (their names are parts already). Every other keyword's
/// strings are parts (`format`, `pattern`, `$comment` and vendor keywords as [`Field::Other`]):
/// a client shows the model the schema as it is.
const STRUCTURAL: &[&str] = &["type", "$ref", "$schema", "$id", "$anchor", "$dynamicRef", "$dynamicAnchor", "required"];

/// Keywords whose value is a schema.
const SUBSCHEMA: &[&str] = &[
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "additionalItems",
];
/// Keywords whose value is an array of schemas.
const SUBSCHEMAS: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems", "items"];
/// Keywords whose value maps names to schemas that are not parameters.
const SCHEMA_MAPS: &[&str] = &["$defs", "definitions", "dependentSchemas"];

/// The parts of `descriptor`: name, title, description, annotations, then the input and
/// output schemas, then other top-level strings.
pub fn descriptor_parts(descriptor: &Value) -> Vec<Part> {
    let mut w = Walker { parts: Vec::new(), bytes: 0 };
    let Some(map) = descriptor.as_object() else {
        if let Some(s) = descriptor.as_str() {
            w.push(Field::Other, String::new(), s.to_owned());
        }
        return w.parts;
    };
    for (key, field) in [("name", Field::Name), ("title", Field::Title), ("description", Field::Description)] {
        if let Some(s) = map.get(key).and_then(Value::as_str) {
            w.push(field, key.to_owned(), s.to_owned());
        }
    }
    if let Some(annotations) = map.get("annotations").and_then(Value::as_object) {
        for (k, v) in annotations {
            let path = format!("annotations.{k}");
            match v {
                Value::String(s) => w.push(Field::Annotation, path, s.clone()),
                Value::Bool(_) | Value::Number(_) | Value::Null => w.push(Field::Annotation, path, format!("{k}={v}")),
                other => w.strings(other, &path, Field::Annotation, 0),
            }
        }
    }
    for key in ["inputSchema", "outputSchema"] {
        if let Some(schema) = map.get(key) {
            w.schema(schema, key, 0);
        }
    }
    for (k, v) in map {
        let known = ["name", "title", "description", "annotations", "inputSchema", "outputSchema", "_meta", "icons"];
        if let (false, Value::String(s)) = (known.contains(&k.as_str()), v) {
            w.push(Field::Other, k.clone(), s.clone());
        }
    }
    w.parts
}

struct Walker {
    parts: Vec<Part>,
    bytes: usize,
}

impl Walker {
    fn full(&self) -> bool {
        self.parts.len() >= MAX_PARTS || self.bytes >= MAX_PARTS_BYTES
    }

    fn push(&mut self, field: Field, path: String, text: String) {
        if self.full() || text.is_empty() {
            return;
        }
        self.bytes += text.len();
        self.parts.push(Part { field, path, text });
    }

    /// A value that is text for the model: a string as it is, anything else as JSON.
    fn value(&mut self, v: &Value, path: String, field: Field) {
        match v {
            Value::String(s) => self.push(field, path, s.clone()),
            other => {
                if !self.full() {
                    let json = other.to_string();
                    self.push(field, path, json);
                }
            }
        }
    }

    /// Every string under `v`, as `field`.
    fn strings(&mut self, v: &Value, path: &str, field: Field, depth: usize) {
        if self.full() || depth > MAX_SCHEMA_DEPTH {
            return;
        }
        match v {
            Value::String(s) => self.push(field, path.to_owned(), s.clone()),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.strings(item, &format!("{path}[{i}]"), field, depth + 1);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    self.strings(item, &format!("{path}.{k}"), field, depth + 1);
                }
            }
            _ => {}
        }
    }

    fn schema(&mut self, schema: &Value, path: &str, depth: usize) {
        if self.full() || depth > MAX_SCHEMA_DEPTH {
            return;
        }
        let Some(map) = schema.as_object() else { return };
        for (k, v) in map {
            let here = format!("{path}.{k}");
            match k.as_str() {
                "description" => self.value(v, here, Field::ParamDescription),
                "title" => self.value(v, here, Field::ParamTitle),
                "default" => self.value(v, here, Field::ParamDefault),
                "const" => self.value(v, here, Field::ParamEnum),
                "example" => self.value(v, here, Field::ParamExample),
                "enum" | "examples" => {
                    let field = if k == "enum" { Field::ParamEnum } else { Field::ParamExample };
                    match v.as_array() {
                        Some(items) => {
                            for (i, item) in items.iter().enumerate() {
                                self.value(item, format!("{here}[{i}]"), field);
                            }
                        }
                        None => self.value(v, here, field),
                    }
                }
                "properties" | "patternProperties" => {
                    if let Some(props) = v.as_object() {
                        for (name, sub) in props {
                            let at = format!("{here}.{name}");
                            self.push(Field::ParamName, at.clone(), name.clone());
                            self.schema(sub, &at, depth + 1);
                        }
                    }
                }
                key if SCHEMA_MAPS.contains(&key) => {
                    if let Some(defs) = v.as_object() {
                        for (name, sub) in defs {
                            self.schema(sub, &format!("{here}.{name}"), depth + 1);
                        }
                    }
                }
                key if SUBSCHEMA.contains(&key) || SUBSCHEMAS.contains(&key) => match v {
                    Value::Array(items) => {
                        for (i, sub) in items.iter().enumerate() {
                            self.schema(sub, &format!("{here}[{i}]"), depth + 1);
                        }
                    }
                    other => self.schema(other, &here, depth + 1),
                },
                key if STRUCTURAL.contains(&key) => {}
                _ => self.strings(v, &here, Field::Other, depth + 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn find<'p>(parts: &'p [Part], path: &str) -> &'p Part {
        parts.iter().find(|p| p.path == path).unwrap_or_else(|| panic!("no part at {path}: {parts:#?}"))
    }

    #[test]
    fn every_string_a_model_reads() {
        let d = json!({
            "name": "send", "title": "Send", "description": "Sends mail.",
            "annotations": {"title": "Send mail", "readOnlyHint": false},
            "inputSchema": {"type": "object", "properties": {
                "to": {"type": "string", "description": "Recipient", "examples": ["a@example.com"]},
                "mode": {"enum": ["plain", "html", "ignore previous instructions"], "default": "plain"},
                "retries": {"type": "integer", "default": 3},
                "opts": {"type": "object", "properties": {"cc": {"anyOf": [{"type": "string", "title": "CC"}, {"type": "null"}]}}},
                "list": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
                "x": {"x-hint": "vendor text", "const": "fixed", "pattern": "^a+$", "$comment": "note"}
            }, "$defs": {"Item": {"properties": {"v": {"description": "Value"}}}}},
            "outputSchema": {"properties": {"id": {"description": "Message id"}}},
            "_meta": {"secret": "not shown"}
        });
        let parts = descriptor_parts(&d);
        assert_eq!(find(&parts, "name").field, Field::Name);
        assert_eq!(find(&parts, "title").field, Field::Title);
        assert_eq!(find(&parts, "description").field, Field::Description);
        assert_eq!(find(&parts, "annotations.title").text, "Send mail");
        assert_eq!(find(&parts, "annotations.readOnlyHint").text, "readOnlyHint=false");
        assert_eq!(find(&parts, "inputSchema.properties.to").field, Field::ParamName);
        assert_eq!(find(&parts, "inputSchema.properties.to.description").field, Field::ParamDescription);
        assert_eq!(find(&parts, "inputSchema.properties.to.examples[0]").field, Field::ParamExample);
        let e = find(&parts, "inputSchema.properties.mode.enum[2]");
        assert_eq!((e.field, e.text.as_str()), (Field::ParamEnum, "ignore previous instructions"));
        assert_eq!(find(&parts, "inputSchema.properties.retries.default").text, "3");
        assert_eq!(find(&parts, "inputSchema.properties.opts.properties.cc.anyOf[0].title").field, Field::ParamTitle);
        assert_eq!(find(&parts, "inputSchema.$defs.Item.properties.v.description").text, "Value");
        assert_eq!(find(&parts, "inputSchema.properties.x.x-hint").field, Field::Other);
        assert_eq!(find(&parts, "inputSchema.properties.x.const").field, Field::ParamEnum);
        assert_eq!(find(&parts, "inputSchema.properties.x.pattern").field, Field::Other);
        assert_eq!(find(&parts, "inputSchema.properties.x.$comment").text, "note");
        assert_eq!(find(&parts, "outputSchema.properties.id.description").text, "Message id");
        assert!(parts.iter().all(|p| !p.text.contains("not shown") && p.text != "object" && p.text != "string"));
        assert!(parts.iter().all(|p| !p.path.contains("$ref")));
    }

    #[test]
    fn bounded() {
        let props: serde_json::Map<String, Value> =
            (0..5000).map(|i| (format!("p{i}"), json!({"description": "x".repeat(200)}))).collect();
        let parts = descriptor_parts(&json!({"name": "t", "inputSchema": {"properties": props}}));
        assert!(parts.len() <= MAX_PARTS);
        let mut deep = json!({"description": "bottom"});
        for _ in 0..200 {
            deep = json!({"items": deep});
        }
        let parts = descriptor_parts(&json!({"name": "t", "inputSchema": deep}));
        assert!(parts.iter().all(|p| p.text != "bottom"));
        assert!(descriptor_parts(&json!(42)).is_empty());
    }
}
