//! STUB until det-decode merges.
use serde_json::Value;
pub enum Field {
    Name,
    Description,
    ParamName,
    Other,
}
impl Field {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Description => "description",
            Self::ParamName => "param_name",
            Self::Other => "param_description",
        }
    }
}
pub struct Part {
    pub field: Field,
    pub path: String,
    pub text: String,
}
pub fn descriptor_parts(d: &Value) -> Vec<Part> {
    let mut out = Vec::new();
    if let Some(s) = d.get("name").and_then(Value::as_str) {
        out.push(Part { field: Field::Name, path: "name".into(), text: s.into() });
    }
    if let Some(s) = d.get("description").and_then(Value::as_str) {
        out.push(Part { field: Field::Description, path: "description".into(), text: s.into() });
    }
    if let Some(props) = d.get("inputSchema").and_then(|s| s.get("properties")).and_then(Value::as_object) {
        for (k, v) in props {
            out.push(Part { field: Field::ParamName, path: format!("inputSchema.properties.{k}"), text: k.clone() });
            crate::descriptor::each_string(v, &mut |s| {
                out.push(Part { field: Field::Other, path: format!("inputSchema.properties.{k}"), text: s.to_owned() })
            });
        }
    }
    out
}
