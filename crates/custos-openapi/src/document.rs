//! A parsed OpenAPI 3.0 / 3.1 document (a JSON value) read into an [`ApiSpec`].

use serde_json::{json, Map, Value};

use crate::model::{Body, Location, Method, Operation, Param, BODY_ARGUMENT};
use crate::refs::Resolver;
use crate::template::Template;
use crate::{ApiSpec, OpenApiError};

/// Header parameters OpenAPI says to ignore: the transport and the security schemes own them.
const IGNORED_HEADERS: [&str; 3] = ["accept", "content-type", "authorization"];

/// Reads the document `doc`, whose errors name `origin`.
pub(crate) fn read(doc: &Value, origin: &str) -> Result<ApiSpec, OpenApiError> {
    let Some(root) = doc.as_object() else {
        return Err(OpenApiError::invalid(origin, "/", "an openapi document is an object"));
    };
    if root.contains_key("swagger") {
        return Err(OpenApiError::invalid(
            origin,
            "swagger",
            "OpenAPI 2.0 (Swagger) is not supported: convert the document to OpenAPI 3.0 or 3.1",
        ));
    }
    let version = match root.get("openapi") {
        Some(Value::String(v)) => v.as_str(),
        Some(_) => return Err(OpenApiError::invalid(origin, "openapi", "expected a version string such as `3.1.0`")),
        None => {
            return Err(OpenApiError::invalid(
                origin,
                "openapi",
                "missing: not an OpenAPI document (expected `openapi: 3.0.x` or `3.1.x`)",
            ))
        }
    };
    let v31 = if is_version(version, "3.1") {
        true
    } else if is_version(version, "3.0") {
        false
    } else {
        return Err(OpenApiError::invalid(
            origin,
            "openapi",
            format!("version `{}` is not supported: expected 3.0.x or 3.1.x", version.escape_debug()),
        ));
    };
    let info = root.get("info").and_then(Value::as_object);
    // `version: 1.0` in YAML is a number: read as written rather than lost.
    let text = |key: &str| match info.and_then(|i| i.get(key)) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let resolver = Resolver::new(doc, origin, v31);

    let mut operations = Vec::new();
    let no_paths = Map::new();
    let paths = match root.get("paths") {
        None => &no_paths,
        Some(Value::Object(paths)) => paths,
        Some(_) => return Err(OpenApiError::invalid(origin, "paths", "expected an object")),
    };
    // In the order of their paths, whatever order the JSON map keeps (serde_json's
    // `preserve_order`, switched on by other crates of a build, keeps the document's): the
    // same document gives the same operations in every build.
    let mut sorted: Vec<(&String, &Value)> = paths.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (template_text, item) in sorted {
        if template_text.starts_with("x-") {
            continue;
        }
        let at = format!("paths.{template_text}");
        let template = Template::parse(template_text).map_err(|m| OpenApiError::invalid(origin, &at, m))?;
        let item = resolver.object(item, &at)?;
        let shared = params(&resolver, item.get("parameters"), &format!("{at}.parameters"))?;
        for method in Method::ALL {
            let Some(op) = item.get(method.openapi_key()) else { continue };
            let at = format!("{at}.{}", method.openapi_key());
            let op = op.as_object().ok_or_else(|| OpenApiError::invalid(origin, &at, "expected an object"))?;
            operations.push(operation(&resolver, origin, method, template_text, &template, &shared, op, &at)?);
        }
    }
    ApiSpec::checked(text("title"), text("version"), operations, origin)
}

/// `3.1`, `3.1.0`, `3.1.1-rc`…: the major and minor version `want`.
fn is_version(version: &str, want: &str) -> bool {
    version == want || version.strip_prefix(want).is_some_and(|rest| rest.starts_with('.'))
}

#[expect(clippy::too_many_arguments, reason = "one operation's context, read once")]
fn operation(
    resolver: &Resolver<'_>,
    origin: &str,
    method: Method,
    template_text: &str,
    template: &Template,
    shared: &[Param],
    op: &Map<String, Value>,
    at: &str,
) -> Result<Operation, OpenApiError> {
    let own = params(resolver, op.get("parameters"), &format!("{at}.parameters"))?;
    // The operation's parameters replace the path item's of the same name and location.
    let mut parameters: Vec<Param> =
        shared.iter().filter(|s| !own.iter().any(|o| o.name == s.name && o.location == s.location)).cloned().collect();
    parameters.extend(own);
    for p in parameters.iter().filter(|p| p.location == Location::Path) {
        if !template.variables().any(|v| v == p.name) {
            return Err(OpenApiError::invalid(
                origin,
                at,
                format!("path parameter `{}` is not in the path `{template_text}`", p.name),
            ));
        }
    }
    // A template variable the document does not describe is still an argument: a string.
    for var in template.variables() {
        if !parameters.iter().any(|p| p.location == Location::Path && p.name == var) {
            parameters.push(Param {
                name: var.to_owned(),
                location: Location::Path,
                required: true,
                schema: json!({"type": "string"}),
                description: None,
            });
        }
    }
    let request_body = match op.get("requestBody") {
        None => None,
        Some(body) => body_of(resolver, body, &format!("{at}.requestBody"))?,
    };
    // Arguments are one flat object: names must not collide across locations or with `body`.
    let mut names: Vec<(&str, Location)> = Vec::new();
    for p in parameters.iter().filter(|p| p.location != Location::Cookie) {
        let clash = names
            .iter()
            .find(|(n, _)| *n == p.name)
            .map(|(_, l)| l.as_str())
            .or_else(|| (request_body.is_some() && p.name == BODY_ARGUMENT).then_some("the request body"));
        if let Some(other) = clash {
            return Err(OpenApiError::invalid(
                origin,
                at,
                format!(
                    "parameter `{}` in {} has the name of another argument (in {other}): a tool's arguments need distinct names",
                    p.name,
                    p.location.as_str()
                ),
            ));
        }
        names.push((&p.name, p.location));
    }
    let operation_id = op.get("operationId").and_then(Value::as_str).map(str::to_owned);
    let tool_name = match &operation_id {
        Some(id) if custos_core::check_tool_name(id).is_ok() => id.clone(),
        _ => crate::name::derived(method, template_text),
    };
    let text = |key: &str| op.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(Operation {
        method,
        path_template: template_text.to_owned(),
        operation_id,
        tool_name,
        summary: text("summary"),
        description: text("description"),
        parameters,
        request_body,
    })
}

/// A `parameters` list: each entry (or what its `$ref` points at) read, none listed twice.
fn params(resolver: &Resolver<'_>, list: Option<&Value>, at: &str) -> Result<Vec<Param>, OpenApiError> {
    let origin = resolver.origin().to_owned();
    let Some(list) = list else { return Ok(Vec::new()) };
    let Some(list) = list.as_array() else {
        return Err(OpenApiError::invalid(&origin, at, "expected a list"));
    };
    let mut out: Vec<Param> = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let p = resolver.object(entry, &at)?;
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| OpenApiError::invalid(&origin, &at, "a parameter needs a `name`"))?;
        let location = match p.get("in").and_then(Value::as_str) {
            Some(text) => Location::from_openapi(text).ok_or_else(|| {
                OpenApiError::invalid(
                    &origin,
                    &at,
                    format!(
                        "`in: {}` is not a parameter location: expected path, query, header or cookie",
                        text.escape_debug()
                    ),
                )
            })?,
            None => return Err(OpenApiError::invalid(&origin, &at, "a parameter needs `in`")),
        };
        if location == Location::Header && IGNORED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        if out.iter().any(|o| o.name == name && o.location == location) {
            return Err(OpenApiError::invalid(
                &origin,
                &at,
                format!("parameter `{name}` in {} is listed twice", location.as_str()),
            ));
        }
        let schema = match (p.get("schema"), p.get("content").and_then(Value::as_object)) {
            (Some(schema), _) => resolver.schema(schema, &at)?,
            (None, Some(content)) => match content.values().next().and_then(|m| m.get("schema")) {
                Some(schema) => resolver.schema(schema, &at)?,
                None => json!({}),
            },
            (None, None) => json!({}),
        };
        out.push(Param {
            name: name.to_owned(),
            location,
            required: location == Location::Path || p.get("required").and_then(Value::as_bool).unwrap_or(false),
            schema,
            description: p.get("description").and_then(Value::as_str).filter(|d| !d.is_empty()).map(str::to_owned),
        });
    }
    Ok(out)
}

/// A `requestBody` (or what its `$ref` points at): the JSON media type's schema when there is
/// one. `None` for a body with no content.
fn body_of(resolver: &Resolver<'_>, body: &Value, at: &str) -> Result<Option<Body>, OpenApiError> {
    let body = resolver.object(body, at)?;
    let Some(content) = body.get("content").and_then(Value::as_object) else {
        return Ok(None);
    };
    let chosen = content
        .get_key_value("application/json")
        .or_else(|| content.iter().filter(|(k, _)| k.ends_with("+json")).min_by(|a, b| a.0.cmp(b.0)))
        .or_else(|| content.iter().min_by(|a, b| a.0.cmp(b.0)));
    let Some((content_type, media)) = chosen else { return Ok(None) };
    let schema = match media.get("schema") {
        Some(schema) => resolver.schema(schema, &format!("{at}.content.{content_type}"))?,
        None => json!({}),
    };
    Ok(Some(Body {
        required: body.get("required").and_then(Value::as_bool).unwrap_or(false),
        content_type: content_type.clone(),
        schema,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use custos_core::ToolClass;
    use serde_json::json;

    use crate::{parse, parse_json, parse_yaml, Location, Method};

    const BILLING: &str = r##"
openapi: 3.1.0
info: {title: Billing, version: "2.4"}
paths:
  /orders/{order_id}:
    parameters:
      - {name: order_id, in: path, required: true, schema: {type: string}, description: the order}
      - {name: X-Tenant, in: header, schema: {type: string}}
      - {name: Authorization, in: header, schema: {type: string}}
    get:
      operationId: get_order
      summary: Read an order
      parameters:
        - {name: X-Tenant, in: header, required: true, schema: {type: string, enum: [a, b]}}
        - $ref: '#/components/parameters/Expand'
    delete:
      operationId: "delete order!"
  /refunds:
    post:
      operationId: create_refund
      requestBody: {$ref: '#/components/requestBodies/Refund'}
  /orders/{order_id}/receipt.{format}:
    get: {}
components:
  parameters:
    Expand: {name: expand, in: query, schema: {type: boolean}}
  requestBodies:
    Refund:
      required: true
      content:
        text/plain: {schema: {type: string}}
        application/json: {schema: {$ref: '#/components/schemas/Refund'}}
  schemas:
    Refund:
      type: object
      required: [order_id, amount_cents]
      properties:
        order_id: {type: string}
        amount_cents: {type: integer}
"##;

    #[test]
    fn a_document_becomes_operations_with_merged_parameters() {
        let spec = parse(BILLING, "billing.yaml").unwrap();
        assert_eq!((spec.title.as_str(), spec.version.as_str()), ("Billing", "2.4"));
        let names: Vec<_> = spec.operations.iter().map(|o| (o.describe(), o.tool_name.as_str())).collect();
        assert_eq!(
            names,
            [
                ("GET /orders/{order_id}".to_owned(), "get_order"),
                ("DELETE /orders/{order_id}".to_owned(), "delete_orders_by_order_id"),
                ("GET /orders/{order_id}/receipt.{format}".to_owned(), "get_orders_by_order_id_receipt_by_format"),
                ("POST /refunds".to_owned(), "create_refund"),
            ]
        );
        let get = spec.operation("get_order").unwrap();
        assert_eq!(get.summary.as_deref(), Some("Read an order"));
        let params: Vec<_> = get.parameters.iter().map(|p| (p.name.as_str(), p.location, p.required)).collect();
        // The operation's X-Tenant replaced the path item's; Authorization is the security
        // scheme's, not a parameter.
        assert_eq!(
            params,
            [
                ("order_id", Location::Path, true),
                ("X-Tenant", Location::Header, true),
                ("expand", Location::Query, false)
            ]
        );
        assert_eq!(get.parameters[1].schema, json!({"type": "string", "enum": ["a", "b"]}));
        let delete = spec.operation("delete_orders_by_order_id").unwrap();
        assert_eq!(delete.operation_id.as_deref(), Some("delete order!"));
        assert_eq!(delete.parameters.len(), 2);
        let receipt = &spec.operations[2];
        assert!(receipt.parameters.iter().any(|p| p.name == "format" && p.required && p.location == Location::Path));

        let classes: Vec<_> = spec.operations.iter().map(|o| o.default_class()).collect();
        assert_eq!(classes, [ToolClass::Read, ToolClass::Privileged, ToolClass::Read, ToolClass::Write]);

        let refund = spec.operation("create_refund").unwrap();
        let body = refund.request_body.as_ref().unwrap();
        assert_eq!((body.required, body.content_type.as_str()), (true, "application/json"));
        assert_eq!(
            refund.input_schema(),
            json!({"type": "object", "additionalProperties": false, "required": ["body"], "properties": {"body": {
                "type": "object", "required": ["order_id", "amount_cents"],
                "properties": {"order_id": {"type": "string"}, "amount_cents": {"type": "integer"}}
            }}})
        );
        assert_eq!(
            get.input_schema(),
            json!({"type": "object", "additionalProperties": false, "required": ["order_id", "X-Tenant"], "properties": {
                "order_id": {"type": "string", "description": "the order"},
                "X-Tenant": {"type": "string", "enum": ["a", "b"]},
                "expand": {"type": "boolean"}
            }})
        );
        // The same document as JSON reads the same.
        let doc: serde_json::Value = serde_yaml_ng::from_str(BILLING).unwrap();
        assert_eq!(parse_json(&doc.to_string(), "billing.json").unwrap(), spec);
    }

    #[test]
    fn yaml_keys_that_are_not_strings_still_read() {
        let doc = "openapi: 3.0.3\ninfo: {title: t, version: 1.0}\npaths:\n  /a:\n    get:\n      operationId: get_a\n      responses:\n        200: {description: ok}\n        default: {description: error}\n";
        let spec = parse_yaml(doc, "a.yaml").unwrap();
        assert_eq!(spec.operations[0].tool_name, "get_a");
        assert_eq!(spec.version, "1.0");
    }

    #[test]
    fn methods_classify_by_default() {
        let class = |m: Method| m.default_class();
        assert_eq!(class(Method::Get), ToolClass::Read);
        assert_eq!(class(Method::Head), ToolClass::Read);
        for m in [Method::Post, Method::Put, Method::Patch] {
            assert_eq!(class(m), ToolClass::Write);
        }
        for m in [Method::Delete, Method::Options, Method::Trace] {
            assert_eq!(class(m), ToolClass::Privileged);
        }
    }

    fn err(text: &str) -> String {
        parse(text, "api.yaml").unwrap_err().to_string()
    }

    #[test]
    fn versions_other_than_3_0_and_3_1_are_refused() {
        assert!(parse("openapi: 3.0.3\ninfo: {title: t, version: v}\npaths: {}\n", "a").is_ok());
        assert!(parse("openapi: '3.1'\ninfo: {title: t, version: v}\n", "a").is_ok());
        let swagger = err("swagger: '2.0'\ninfo: {title: t, version: v}\npaths: {}\n");
        assert!(swagger.starts_with("api.yaml: `swagger`: OpenAPI 2.0 (Swagger) is not supported"), "{swagger}");
        for (doc, why) in [
            ("openapi: 4.0.0\n", "version `4.0.0` is not supported: expected 3.0.x or 3.1.x"),
            ("openapi: 3.10.0\n", "version `3.10.0` is not supported"),
            ("openapi: 3.0\n", "expected a version string"),
            ("info: {}\n", "`openapi`: missing: not an OpenAPI document"),
            ("- a\n", "an openapi document is an object"),
        ] {
            let e = err(doc);
            assert!(e.contains(why), "{doc}: {e}");
        }
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let e = parse_yaml("openapi: 3.1.0\npaths:\n  /a: [\n", "api.yaml").unwrap_err().to_string();
        assert!(e.starts_with("api.yaml:4:1: "), "{e}");
        assert!(!e.contains(" at line "), "{e}");
        let e = parse_json("{\n  \"openapi\": \"3.1.0\",\n  \"paths\": {,}\n}", "api.json").unwrap_err().to_string();
        assert!(e.starts_with("api.json:3:13: "), "{e}");
    }

    #[test]
    fn documents_we_cannot_import_safely_are_refused() {
        let head = "openapi: 3.1.0\ninfo: {title: t, version: v}\n";
        for (paths, at, why) in [
            (
                "paths:\n  /a:\n    get: {operationId: x}\n  /b:\n    get: {operationId: x}\n",
                "GET /b",
                "`GET /a` and `GET /b` have the same tool name `x`",
            ),
            (
                "paths:\n  /a/{x}:\n    get: {operationId: one}\n  /a/{y}:\n    get: {operationId: two}\n",
                "GET /a/{y}",
                "match the same paths",
            ),
            ("paths:\n  /a/../b:\n    get: {}\n", "paths./a/../b", "`..` segment"),
            ("paths:\n  a:\n    get: {}\n", "paths.a", "does not start with `/`"),
            (
                "paths:\n  /a/{id}:\n    get:\n      parameters: [{name: id, in: query}]\n",
                "paths./a/{id}.get",
                "parameter `id` in path has the name of another argument (in query)",
            ),
            (
                "paths:\n  /a:\n    post:\n      parameters: [{name: body, in: query}]\n      requestBody: {content: {application/json: {}}}\n",
                "paths./a.post",
                "(in the request body)",
            ),
            (
                "paths:\n  /a:\n    get:\n      parameters: [{name: q, in: query}, {name: q, in: query}]\n",
                "paths./a.get.parameters[1]",
                "listed twice",
            ),
            ("paths:\n  /a:\n    get:\n      parameters: [{name: q, in: body}]\n", "paths./a.get.parameters[0]", "`in: body`"),
            ("paths:\n  /a:\n    get:\n      parameters: [{in: query}]\n", "paths./a.get.parameters[0]", "needs a `name`"),
            (
                "paths:\n  /a:\n    get:\n      parameters: [{name: id, in: path}]\n",
                "paths./a.get",
                "path parameter `id` is not in the path `/a`",
            ),
            (
                "paths:\n  /a:\n    get:\n      parameters: [{$ref: 'common.yaml#/p'}]\n",
                "paths./a.get.parameters[0]",
                "only local references",
            ),
            (
                "paths:\n  /a:\n    post:\n      requestBody: {$ref: '#/components/requestBodies/Nope'}\n",
                "paths./a.post.requestBody",
                "points at nothing",
            ),
            ("paths:\n  /a:\n    get: 3\n", "paths./a.get", "expected an object"),
        ] {
            let e = err(&format!("{head}{paths}"));
            assert!(e.starts_with(&format!("api.yaml: `{at}`: ")) && e.contains(why), "{paths}: {e}");
        }
    }

    #[test]
    fn path_items_and_bodies_take_references_and_recursive_schemas_end() {
        let doc = r##"{"openapi": "3.0.3", "info": {"title": "t", "version": "1"},
          "paths": {"/tree": {"$ref": "#/components/x-items/Tree"}},
          "components": {
            "x-items": {"Tree": {"put": {"operationId": "put_tree", "requestBody": {"content": {
               "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/Node"}},
               "text/plain": {}}}}}},
            "schemas": {"Node": {"type": "object", "properties": {
               "kids": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
               "name": {"$ref": "#/components/schemas/Name", "description": "ignored in 3.0"}}},
              "Name": {"type": "string"}}}}"##;
        let spec = parse(doc, "t.json").unwrap();
        let op = spec.operation("put_tree").unwrap();
        let body = op.request_body.as_ref().unwrap();
        assert_eq!(body.content_type, "application/merge-patch+json");
        assert!(!body.required);
        assert_eq!(body.schema["properties"]["kids"]["items"], json!({}));
        assert_eq!(body.schema["properties"]["name"], json!({"type": "string"}));
        assert_eq!(op.input_schema()["required"], json!([]));
    }
}
