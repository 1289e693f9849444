//! What an imported API is: its operations, each a tool with parameters, a body and a class.

use custos_core::ToolClass;
use serde_json::{json, Map, Value};

use crate::template::Template;
use crate::OpenApiError;

/// An HTTP method an OpenAPI path item can hold, written as on the wire (uppercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Trace,
}

impl Method {
    /// Every method, in the order operations of one path are listed.
    pub const ALL: [Self; 8] =
        [Self::Get, Self::Head, Self::Post, Self::Put, Self::Patch, Self::Delete, Self::Options, Self::Trace];

    /// The method's token, as on the wire: `GET`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
        }
    }

    /// The method named by `token`, compared exactly: HTTP methods are case-sensitive, so `get`
    /// is not `GET` (and is refused rather than guessed).
    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == token)
    }

    /// The key of a path item that holds this method's operation: `get`.
    pub(crate) fn openapi_key(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Head => "head",
            Self::Post => "post",
            Self::Put => "put",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::Options => "options",
            Self::Trace => "trace",
        }
    }

    /// The class of a call by this method, unless the config says otherwise: `GET` and `HEAD`
    /// read, `POST`, `PUT` and `PATCH` write, `DELETE` is privileged. So are `OPTIONS` and
    /// `TRACE`: nothing says what an API does with them (`TRACE` echoes the request, credentials
    /// included), and what is not known gets the most scrutiny.
    pub fn default_class(self) -> ToolClass {
        match self {
            Self::Get | Self::Head => ToolClass::Read,
            Self::Post | Self::Put | Self::Patch => ToolClass::Write,
            Self::Delete | Self::Options | Self::Trace => ToolClass::Privileged,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a parameter travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Location {
    Path,
    Query,
    Header,
    Cookie,
}

impl Location {
    /// As OpenAPI's `in` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Path => "path",
            Self::Query => "query",
            Self::Header => "header",
            Self::Cookie => "cookie",
        }
    }

    pub(crate) fn from_openapi(text: &str) -> Option<Self> {
        [Self::Path, Self::Query, Self::Header, Self::Cookie].into_iter().find(|l| l.as_str() == text)
    }
}

/// One parameter of an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub location: Location,
    /// Always true for path parameters.
    pub required: bool,
    /// Its JSON Schema, local references inlined (see the crate doc); `{}` when the document
    /// gives none.
    pub schema: Value,
    pub description: Option<String>,
}

/// The request body an operation takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    pub required: bool,
    /// The media type whose schema this is: `application/json` when the document offers it,
    /// else a `+json` one, else the first (by name).
    pub content_type: String,
    /// Its JSON Schema, local references inlined; `{}` when the document gives none.
    pub schema: Value,
}

/// One operation of an API: a method on a path template, known to agents and policies as the
/// tool `API/tool_name`.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub method: Method,
    /// As written in the document: `/orders/{order_id}`.
    pub path_template: String,
    pub operation_id: Option<String>,
    /// The `operationId` when it is a name an agent may call (`custos_core::check_tool_name`),
    /// else one made from the method and path: `get_orders_by_order_id`. Unique in its API.
    pub tool_name: String,
    pub summary: Option<String>,
    pub description: Option<String>,
    /// Path-level and operation-level parameters merged (the operation's win, by name and
    /// location), in the order written; one per template variable of the path.
    pub parameters: Vec<Param>,
    pub request_body: Option<Body>,
}

/// The argument under which [`Operation::input_schema`] carries the request body.
pub const BODY_ARGUMENT: &str = "body";

impl Operation {
    /// An operation declared by hand (`[[apis.operations]]`): every template variable a
    /// required string, and for `POST`, `PUT` and `PATCH` an optional JSON body of any shape.
    /// `id`, when given, is the tool name and must be one an agent may call.
    pub fn declared(method: Method, path_template: &str, id: Option<&str>) -> Result<Self, OpenApiError> {
        let origin = "declared operation";
        let template = Template::parse(path_template).map_err(|m| OpenApiError::invalid(origin, path_template, m))?;
        if let Some(id) = id {
            custos_core::check_tool_name(id).map_err(|m| OpenApiError::invalid(origin, path_template, m))?;
        }
        let parameters = template
            .variables()
            .map(|name| Param {
                name: name.to_owned(),
                location: Location::Path,
                required: true,
                schema: json!({"type": "string"}),
                description: None,
            })
            .collect();
        let request_body = matches!(method, Method::Post | Method::Put | Method::Patch).then(|| Body {
            required: false,
            content_type: "application/json".to_owned(),
            schema: json!({}),
        });
        let tool_name = id.map_or_else(|| crate::name::derived(method, path_template), str::to_owned);
        Ok(Self {
            method,
            path_template: path_template.to_owned(),
            operation_id: id.map(str::to_owned),
            tool_name,
            summary: None,
            description: None,
            parameters,
            request_body,
        })
    }

    /// The class a call gets unless the config overrides it: see [`Method::default_class`].
    pub fn default_class(&self) -> ToolClass {
        self.method.default_class()
    }

    /// `METHOD /path/template`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.path_template)
    }

    /// The operation as an MCP tool descriptor: its tool name, what it does (summary and
    /// description, else its method and path), its input schema, and annotations saying what
    /// `class` (the one the config gives it) it is.
    pub fn descriptor(&self, class: ToolClass) -> Value {
        let description = match (&self.summary, &self.description) {
            (Some(summary), Some(description)) => format!("{summary}\n\n{description}"),
            (Some(text), None) | (None, Some(text)) => text.clone(),
            (None, None) => self.describe(),
        };
        json!({
            "name": self.tool_name,
            "description": description,
            "inputSchema": self.input_schema(),
            "annotations": {
                "readOnlyHint": class == ToolClass::Read,
                "destructiveHint": class == ToolClass::Privileged,
            },
        })
    }

    /// The tool's arguments as a JSON Schema object (an MCP `inputSchema`): one property per
    /// path, query and header parameter, `body` for the request body, `required` naming those
    /// that are. Cookie parameters are not arguments. Names are distinct: the import refuses an
    /// operation whose arguments would collide.
    pub fn input_schema(&self) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for p in self.parameters.iter().filter(|p| p.location != Location::Cookie) {
            let mut schema = p.schema.clone();
            if let (Some(d), Some(obj)) = (&p.description, schema.as_object_mut()) {
                obj.entry("description").or_insert_with(|| Value::String(d.clone()));
            }
            properties.insert(p.name.clone(), schema);
            if p.required {
                required.push(Value::String(p.name.clone()));
            }
        }
        if let Some(body) = &self.request_body {
            properties.insert(BODY_ARGUMENT.to_owned(), body.schema.clone());
            if body.required {
                required.push(Value::String(BODY_ARGUMENT.to_owned()));
            }
        }
        json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
    }
}

/// An imported API: what its document says it is, and its operations.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSpec {
    /// `info.title`; empty when the document has none.
    pub title: String,
    /// `info.version`: the API's version, not OpenAPI's; empty when the document has none.
    pub version: String,
    /// In the document's order of paths (sorted) and, within a path, of [`Method::ALL`].
    pub operations: Vec<Operation>,
}

impl ApiSpec {
    /// An API of `operations`, refused when two share a tool name or when two of one method
    /// have templates that match the same paths (`/a/{x}` and `/a/{y}`): which one a request
    /// is would be a guess.
    pub fn new(title: String, version: String, operations: Vec<Operation>) -> Result<Self, OpenApiError> {
        Self::checked(title, version, operations, "api")
    }

    pub(crate) fn checked(
        title: String,
        version: String,
        operations: Vec<Operation>,
        origin: &str,
    ) -> Result<Self, OpenApiError> {
        let mut shapes = Vec::new();
        for (i, op) in operations.iter().enumerate() {
            if let Some(other) = operations.iter().take(i).find(|o| o.tool_name == op.tool_name) {
                return Err(OpenApiError::invalid(
                    origin,
                    op.describe(),
                    format!(
                        "`{}` and `{}` have the same tool name `{}`: give one an `operationId` of its own",
                        other.describe(),
                        op.describe(),
                        op.tool_name
                    ),
                ));
            }
            let template =
                Template::parse(&op.path_template).map_err(|m| OpenApiError::invalid(origin, op.describe(), m))?;
            let shape = (op.method, template.shape());
            if let Some((_, j)) = shapes.iter().find(|(s, _)| *s == shape) {
                let other = operations.get(*j).map(Operation::describe).unwrap_or_default();
                return Err(OpenApiError::invalid(
                    origin,
                    op.describe(),
                    format!(
                        "`{other}` and `{}` match the same paths: which one a request is would be a guess",
                        op.describe()
                    ),
                ));
            }
            shapes.push((shape, i));
        }
        Ok(Self { title, version, operations })
    }

    /// The operation whose tool name is `name`.
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.iter().find(|o| o.tool_name == name)
    }
}
