//! `[[apis]]`: plain HTTP APIs whose operations are governed as tools `API/operation`. Its raw
//! shape, settings and rules in one file.
//!
//! An api's operations come from exactly one of an OpenAPI document (`openapi`, read later by
//! [`custos_openapi::load`]) or `[[apis.operations]]` declared by hand (read here). Class
//! overrides (`tools`) can be checked against declared operations now; against a document's
//! only once it is read: [`ApiConfig::classes`] does that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use custos_core::ToolClass;
use custos_openapi::{ApiSpec, Method, OpenApiError, Operation};
use serde::Deserialize;

use crate::validate::{http_url, injections, is_header_name, ranged};
use crate::{ConfigError, Injection, SecretConfig, ToolClasses};

/// Default `[[apis]] max_body_bytes`: the largest request or answer body passed through.
pub const DEFAULT_API_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// Bounds of `max_body_bytes`: at least a byte, at most 1 GiB (a memory hazard beyond).
const BODY_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1..=1024 * 1024 * 1024;
/// Request headers that hold the agent's own credential: never policy arguments (they would be
/// recorded).
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// `[[apis]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub name: String,
    pub base_url: String,
    /// An OpenAPI document: a file (relative to the config) or an `http(s)://` URL.
    pub openapi: Option<String>,
    /// `[[apis.operations]]`: operations declared by hand instead.
    #[serde(default)]
    pub operations: Vec<RawApiOperation>,
    /// Tool name or `*` pattern → class.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolClass>,
    /// Request headers whose values become policy arguments.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Also expose the operations as MCP tools.
    #[serde(default)]
    pub mcp: bool,
    /// `[[apis.inject]]`: declared secrets this api receives.
    #[serde(default)]
    pub inject: Vec<crate::raw::RawInjection>,
    /// `[apis.token]`: a JWT minted for each call (or run), as for a remote server.
    pub token: Option<crate::raw::RawToken>,
    pub max_body_bytes: Option<u64>,
}

/// `[[apis.operations]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiOperation {
    /// `GET`, `POST`…: a string so the error can name the key.
    pub method: String,
    /// A path template: `/orders/{order_id}`.
    pub path: String,
    /// The tool name; default: made from the method and path (`get_orders_by_order_id`).
    pub id: Option<String>,
    pub class: Option<ToolClass>,
}

/// One `[[apis]]` entry, validated.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The name its tools are known by: `NAME/operation`; unique among servers and apis.
    pub name: String,
    /// `http://…` or `https://…`, without a trailing `/`: requests go to this plus their path.
    pub base_url: String,
    pub operations: ApiOperations,
    /// `tools`, with the `class` of declared operations: tool name or `*` pattern → class.
    pub tools: BTreeMap<String, ToolClass>,
    /// Request headers whose values become policy arguments, as written.
    pub headers: Vec<String>,
    /// Whether the operations are also MCP tools.
    pub mcp: bool,
    /// `[[apis.inject]]`: secrets handed to this api, in the order written.
    pub inject: Vec<Injection>,
    /// `[apis.token]`: the JWT the gateway mints for each call to this api.
    pub token: Option<crate::TokenSettings>,
    /// The largest request or answer body passed through.
    pub max_body_bytes: u64,
    /// The config file and this entry's index, for the errors of [`ApiConfig::classes`].
    file: PathBuf,
    index: usize,
}

/// Where an api's operations come from.
#[derive(Debug, Clone)]
pub enum ApiOperations {
    /// An OpenAPI document, read at start-up with [`custos_openapi::load`]`(source, base_dir)`.
    OpenApi {
        /// As written: a path or an `http(s)://` URL.
        source: String,
        /// The config's folder, which a relative path is read from.
        base_dir: PathBuf,
    },
    /// `[[apis.operations]]`, already read.
    Declared(ApiSpec),
}

impl ApiOperations {
    /// The operations: the declared ones, or the document read (files only for now).
    pub fn load(&self) -> Result<ApiSpec, OpenApiError> {
        match self {
            Self::OpenApi { source, base_dir } => custos_openapi::load(source, base_dir),
            Self::Declared(spec) => Ok(spec.clone()),
        }
    }
}

impl ApiConfig {
    /// The class of each operation of `spec`, in order: the `tools` entry for its tool name,
    /// else the most specific `*` pattern that matches, else the method's default. An entry
    /// that matches no operation is an error naming it: a typo must not leave an operation at
    /// a weaker class than meant.
    pub fn classes(&self, spec: &ApiSpec) -> Result<Vec<ToolClass>, ConfigError> {
        for key in self.tools.keys() {
            let matches = |op: &Operation| {
                if key.contains('*') {
                    crate::classify::glob_match(key, &op.tool_name)
                } else {
                    *key == op.tool_name
                }
            };
            if !spec.operations.iter().any(matches) {
                return Err(ConfigError::invalid(
                    &self.file,
                    format!("apis[{}].tools.{key}", self.index),
                    format!("api `{}` has no operation `{}`", self.name, key.escape_debug()),
                ));
            }
        }
        let classes = ToolClasses::new(false, self.tools.clone());
        Ok(spec.operations.iter().map(|op| classes.configured(&op.tool_name).unwrap_or(op.default_class())).collect())
    }
}

/// `[[apis]]`: each checked; `names` holds the servers' names, and gets the apis'.
pub(crate) fn apis(
    path: &Path,
    dir: &Path,
    raw: Vec<RawApi>,
    secrets: &[SecretConfig],
    names: &mut std::collections::BTreeSet<String>,
    default_token_ttl_secs: u64,
) -> Result<Vec<ApiConfig>, ConfigError> {
    let mut out = Vec::new();
    for (i, a) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("apis[{i}].{field}");
        if a.name.is_empty() || a.name.contains('/') || a.name.contains("__") {
            return Err(ConfigError::invalid(
                path,
                key("name"),
                format!(
                    "`{}` is not an api name: expected a non-empty name without `/` or `__`",
                    a.name.escape_debug()
                ),
            ));
        }
        if !names.insert(a.name.clone()) {
            return Err(ConfigError::invalid(
                path,
                key("name"),
                format!("`{}` is already the name of a server or another api", a.name),
            ));
        }
        let api = format!("api `{}`", a.name);
        http_url(path, &key("base_url"), &a.base_url)?;
        if let Some(c) = a.base_url.chars().find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#')) {
            return Err(ConfigError::invalid(
                path,
                key("base_url"),
                format!(
                    "{api}: `{}` holds `{}`: expected a url without query or fragment",
                    a.base_url.escape_debug(),
                    c.escape_debug()
                ),
            ));
        }
        let base_url = a.base_url.trim_end_matches('/').to_owned();
        let mut tools = a.tools;
        let operations = match (a.openapi, a.operations.is_empty()) {
            (Some(_), false) => {
                return Err(ConfigError::invalid(
                    path,
                    key("operations"),
                    format!("{api}: operations come from `openapi` or `[[apis.operations]]`, not both"),
                ))
            }
            (None, true) => {
                return Err(ConfigError::invalid(
                    path,
                    format!("apis[{i}]"),
                    format!("{api}: no operations: give an OpenAPI document (`openapi`) or `[[apis.operations]]`"),
                ))
            }
            (Some(source), true) => {
                if source.trim().is_empty() {
                    return Err(ConfigError::invalid(path, key("openapi"), format!("{api}: an empty `openapi`")));
                }
                if source.contains("://") {
                    http_url(path, &key("openapi"), &source)?;
                }
                ApiOperations::OpenApi { source, base_dir: dir.to_owned() }
            }
            (None, false) => ApiOperations::Declared(declared(path, i, &api, &a.name, &a.operations, &mut tools)?),
        };
        if tools.keys().any(String::is_empty) {
            return Err(ConfigError::invalid(path, key("tools"), format!("{api}: an empty tool name")));
        }
        let inject = injections(path, &format!("apis[{i}]"), &api, true, &[], &a.inject, secrets)?;
        let mut headers: Vec<String> = Vec::new();
        for (j, h) in a.headers.iter().enumerate() {
            let key = format!("apis[{i}].headers[{j}]");
            let lower = h.to_ascii_lowercase();
            if !is_header_name(h) {
                return Err(ConfigError::invalid(
                    path,
                    key,
                    format!("{api}: `{}` is not an http header name", h.escape_debug()),
                ));
            }
            if CREDENTIAL_HEADERS.contains(&lower.as_str()) {
                return Err(ConfigError::invalid(
                    path,
                    key,
                    format!("{api}: `{h}` carries the agent's credential: it is never a policy argument"),
                ));
            }
            if headers.iter().any(|k| k.eq_ignore_ascii_case(h)) {
                return Err(ConfigError::invalid(
                    path,
                    key,
                    format!("{api}: header `{h}` is listed twice (header names ignore case)"),
                ));
            }
            let injected = inject
                .iter()
                .any(|inj| matches!(&inj.target, crate::InjectTarget::Header(t) if t.eq_ignore_ascii_case(h)));
            if injected {
                return Err(ConfigError::invalid(
                    path,
                    key,
                    format!("{api}: header `{h}` is injected by the gateway (`inject`): it cannot also be a policy argument"),
                ));
            }
            headers.push(h.clone());
        }
        let max_body_bytes =
            ranged(path, &key("max_body_bytes"), a.max_body_bytes, DEFAULT_API_MAX_BODY_BYTES, BODY_BYTES_RANGE)?;
        let token = match &a.token {
            Some(t) => Some(crate::validate::token_settings(
                path,
                &key("token"),
                &api,
                t,
                &base_url,
                std::iter::empty(),
                &inject,
                default_token_ttl_secs,
            )?),
            None => None,
        };
        let config = ApiConfig {
            name: a.name,
            base_url,
            operations,
            tools,
            headers,
            mcp: a.mcp,
            inject,
            token,
            max_body_bytes,
            file: path.to_owned(),
            index: i,
        };
        // Declared operations are known now: their overrides are checked with the config.
        if let ApiOperations::Declared(spec) = &config.operations {
            config.classes(spec)?;
        }
        out.push(config);
    }
    Ok(out)
}

/// `[[apis.operations]]` of api `i`, read into an [`ApiSpec`]; each `class` becomes an entry of
/// `tools`.
fn declared(
    path: &Path,
    i: usize,
    api: &str,
    name: &str,
    raw: &[RawApiOperation],
    tools: &mut BTreeMap<String, ToolClass>,
) -> Result<ApiSpec, ConfigError> {
    let mut operations = Vec::new();
    for (j, r) in raw.iter().enumerate() {
        let key = |field: &str| format!("apis[{i}].operations[{j}].{field}");
        let method = Method::from_token(&r.method).ok_or_else(|| {
            ConfigError::invalid(
                path,
                key("method"),
                format!(
                    "{api}: `{}` is not a method: expected GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or TRACE (uppercase)",
                    r.method.escape_debug()
                ),
            )
        })?;
        if let Some(id) = &r.id {
            custos_core::check_tool_name(id)
                .map_err(|m| ConfigError::invalid(path, key("id"), format!("{api}: {m}")))?;
        }
        let op = Operation::declared(method, &r.path, r.id.as_deref()).map_err(|e| {
            let message = match e {
                OpenApiError::Invalid { message, .. } => message,
                other => other.to_string(),
            };
            ConfigError::invalid(path, key("path"), format!("{api}: {message}"))
        })?;
        if let Some(class) = r.class {
            if tools.insert(op.tool_name.clone(), class).is_some() {
                return Err(ConfigError::invalid(
                    path,
                    key("class"),
                    format!("{api}: operation `{}` has a `class` and a `tools` entry: keep one", op.tool_name),
                ));
            }
        }
        operations.push(op);
    }
    ApiSpec::new(name.to_owned(), String::new(), operations).map_err(|e| {
        let message = match e {
            OpenApiError::Invalid { message, .. } => message,
            other => other.to_string(),
        };
        ConfigError::invalid(path, format!("apis[{i}].operations"), format!("{api}: {message}"))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use std::path::Path;

    use custos_core::ToolClass;

    use crate::{ApiOperations, Config, ConfigError, InjectTarget};

    const BASE: &str = r#"
[policy]
files = ["p.cedar"]
[secrets.billing_key]
env = "BILLING_KEY"
[[servers]]
name = "crm"
url = "https://crm.example/mcp"
"#;

    fn load(apis: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("/etc/custos/custos.toml"), &format!("{BASE}\n{apis}"))
    }

    const DECLARED: &str = r#"
[[apis]]
name = "billing"
base_url = "https://billing.example/v1/"
headers = ["X-Request-Id"]
mcp = true
max_body_bytes = 65536
tools = { "get_*" = "write" }
[[apis.operations]]
method = "GET"
path = "/orders/{order_id}"
[[apis.operations]]
method = "POST"
path = "/refunds"
id = "create_refund"
class = "privileged"
[[apis.operations]]
method = "DELETE"
path = "/orders/{order_id}"
[[apis.inject]]
secret = "billing_key"
header = "X-Api-Key"
"#;

    #[test]
    fn declared_operations_are_read_with_the_config_and_classified() {
        let c = load(DECLARED).unwrap();
        let api = c.api("billing").unwrap();
        assert_eq!(api.base_url, "https://billing.example/v1");
        assert_eq!(api.headers, ["X-Request-Id"]);
        assert!(api.mcp);
        assert_eq!(api.max_body_bytes, 65536);
        assert_eq!(api.inject.len(), 1);
        assert_eq!(api.inject[0].target, InjectTarget::Header("X-Api-Key".into()));
        let ApiOperations::Declared(spec) = &api.operations else { panic!("{:?}", api.operations) };
        let names: Vec<_> = spec.operations.iter().map(|o| o.tool_name.as_str()).collect();
        assert_eq!(names, ["get_orders_by_order_id", "create_refund", "delete_orders_by_order_id"]);
        assert_eq!(spec.operations[0].parameters[0].name, "order_id");
        assert_eq!(
            api.classes(spec).unwrap(),
            [ToolClass::Write, ToolClass::Privileged, ToolClass::Privileged],
            "the pattern, the declared class, the method's default"
        );
        assert_eq!(api.operations.load().unwrap(), *spec);
    }

    #[test]
    fn an_api_defaults_to_no_mcp_and_a_bounded_body() {
        let c =
            load("[[apis]]\nname = \"b\"\nbase_url = \"http://127.0.0.1:8080\"\nopenapi = \"billing.yaml\"\n").unwrap();
        let api = &c.apis[0];
        assert!(!api.mcp && api.headers.is_empty() && api.inject.is_empty() && api.tools.is_empty());
        assert_eq!(api.token, None);
        assert_eq!(api.max_body_bytes, super::DEFAULT_API_MAX_BODY_BYTES);
        match &api.operations {
            ApiOperations::OpenApi { source, base_dir } => {
                assert_eq!((source.as_str(), base_dir.as_path()), ("billing.yaml", Path::new("/etc/custos")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_apis_token_defaults_to_its_base_url_as_audience() {
        let c = load(
            "[[apis]]\nname = \"b\"\nbase_url = \"http://127.0.0.1:8080/v1\"\nopenapi = \"billing.yaml\"\n[apis.token]\nheader = \"X-Custos-Token\"\n",
        )
        .unwrap();
        let token = c.apis[0].token.as_ref().unwrap();
        assert_eq!((token.audience.as_str(), token.header.as_str()), ("http://127.0.0.1:8080/v1", "X-Custos-Token"));
        assert_eq!(token.render("t.o.k"), "Bearer t.o.k");
    }

    #[test]
    fn a_documents_operations_take_the_overrides_and_unknown_ones_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("billing.yaml"),
            "openapi: 3.1.0\ninfo: {title: Billing, version: '1'}\npaths:\n  /orders/{id}:\n    get: {operationId: get_order}\n    delete: {operationId: delete_order}\n  /refunds:\n    post: {operationId: create_refund}\n",
        )
        .unwrap();
        let config = |tools: &str| {
            let text = format!(
                "{BASE}\n[[apis]]\nname = \"billing\"\nbase_url = \"http://127.0.0.1:9\"\nopenapi = \"billing.yaml\"\ntools = {{ {tools} }}\n"
            );
            let path = dir.path().join("custos.toml");
            std::fs::write(&path, text).unwrap();
            Config::load(&path).unwrap()
        };
        let c = config("\"get_order\" = \"privileged\", \"create_*\" = \"read\"");
        let api = c.api("billing").unwrap();
        let spec = api.operations.load().unwrap();
        assert_eq!(api.classes(&spec).unwrap(), [ToolClass::Privileged, ToolClass::Privileged, ToolClass::Read]);

        for (tools, key) in [("\"getOrder\" = \"read\"", "getOrder"), ("\"list_*\" = \"read\"", "list_*")] {
            let c = config(tools);
            let api = c.api("billing").unwrap();
            let err = api.classes(&api.operations.load().unwrap()).unwrap_err().to_string();
            assert!(err.contains("custos.toml") && err.contains(&format!("`apis[0].tools.{key}`")), "{err}");
            assert!(err.contains(&format!("api `billing` has no operation `{key}`")), "{err}");
        }

        assert!(config("").apis[0].operations.load().is_ok());
        let c = Config::from_toml(
            &dir.path().join("custos.toml"),
            &format!("{BASE}\n[[apis]]\nname = \"b\"\nbase_url = \"http://x\"\nopenapi = \"nope.yaml\"\n"),
        )
        .unwrap();
        let err = c.apis[0].operations.load().unwrap_err().to_string();
        assert!(err.contains("nope.yaml"), "{err}");
        let c = load("[[apis]]\nname = \"b\"\nbase_url = \"http://x\"\nopenapi = \"https://b.example/openapi.json\"\n")
            .unwrap();
        let err = c.apis[0].operations.load().unwrap_err().to_string();
        assert!(err.contains("reads files only"), "{err}");
    }

    #[test]
    fn api_errors_name_the_file_and_key() {
        let api = |body: &str| format!("[[apis]]\nname = \"billing\"\nbase_url = \"https://b.example\"\n{body}\n");
        let ops = "[[apis.operations]]\nmethod = \"GET\"\npath = \"/orders/{id}\"\n";
        let cases: Vec<(String, &[&str])> = vec![
            (api(""), &["`apis[0]`", "api `billing`: no operations"]),
            (api(&format!("openapi = \"b.yaml\"\n{ops}")), &["`apis[0].operations`", "not both"]),
            (api("openapi = \"\""), &["`apis[0].openapi`", "empty"]),
            (api("openapi = \"ftp://x/a.yaml\""), &["`apis[0].openapi`"]),
            (api("openapi = \"https://\""), &["`apis[0].openapi`", "not an http:// or https:// url"]),
            (
                "[[apis]]\nname = \"crm\"\nbase_url = \"https://b.example\"\nopenapi = \"a.yaml\"".to_owned(),
                &["`apis[0].name`", "`crm` is already the name of a server or another api"],
            ),
            (
                format!("{}{}", api("openapi = \"a.yaml\""), api("openapi = \"b.yaml\"")),
                &["`apis[1].name`", "`billing`"],
            ),
            (
                "[[apis]]\nname = \"a/b\"\nbase_url = \"https://b.example\"\nopenapi = \"a.yaml\"".to_owned(),
                &["`apis[0].name`", "not an api name"],
            ),
            (
                "[[apis]]\nname = \"b\"\nbase_url = \"ftp://b.example\"\nopenapi = \"a.yaml\"".to_owned(),
                &["`apis[0].base_url`", "`ftp://b.example`"],
            ),
            (
                "[[apis]]\nname = \"b\"\nbase_url = \"https://b.example/?x=1\"\nopenapi = \"a.yaml\"".to_owned(),
                &["`apis[0].base_url`", "without query or fragment"],
            ),
            (api(&ops.replace("GET", "get")), &["`apis[0].operations[0].method`", "`get` is not a method"]),
            (api(&ops.replace("/orders/{id}", "/orders/../x")), &["`apis[0].operations[0].path`", "`..` segment"]),
            (api(&ops.replace("/orders/{id}", "orders")), &["`apis[0].operations[0].path`", "does not start with `/`"]),
            (api(&format!("{ops}id = \"get order\"")), &["`apis[0].operations[0].id`", "`get order`"]),
            (api(&format!("{ops}{ops}")), &["`apis[0].operations`", "same tool name `get_orders_by_id`"]),
            (
                api(&format!("{ops}{}", ops.replace("{id}", "{key}").replace("path", "id = \"other\"\npath"))),
                &["`apis[0].operations`", "match the same paths"],
            ),
            (
                format!("{}{ops}class = \"read\"", api("tools = { \"get_orders_by_id\" = \"write\" }")),
                &["`apis[0].operations[0].class`", "a `class` and a `tools` entry"],
            ),
            (
                api(&format!("tools = {{ \"nope\" = \"read\" }}\n{ops}")),
                &["`apis[0].tools.nope`", "no operation `nope`"],
            ),
            (api(&format!("tools = {{ \"\" = \"read\" }}\n{ops}")), &["`apis[0].tools`", "an empty tool name"]),
            (api(&format!("headers = [\"Authorization\"]\n{ops}")), &["`apis[0].headers[0]`", "agent's credential"]),
            (api(&format!("headers = [\"cookie\"]\n{ops}")), &["`apis[0].headers[0]`", "agent's credential"]),
            (api(&format!("headers = [\"X A\"]\n{ops}")), &["`apis[0].headers[0]`", "not an http header name"]),
            (api(&format!("headers = [\"X-A\", \"x-a\"]\n{ops}")), &["`apis[0].headers[1]`", "listed twice"]),
            (
                api(&format!(
                    "headers = [\"X-Api-Key\"]\n{ops}[[apis.inject]]\nsecret = \"billing_key\"\nheader = \"x-api-key\""
                )),
                &["`apis[0].headers[0]`", "injected by the gateway"],
            ),
            (
                api(&format!("{ops}[[apis.inject]]\nsecret = \"nope\"\nheader = \"X\"")),
                &["`apis[0].inject[0].secret`", "api `billing`: unknown secret `nope`"],
            ),
            (
                api(&format!("{ops}[[apis.inject]]\nsecret = \"billing_key\"\nenv = \"K\"")),
                &["`apis[0].inject[0].env`", "api `billing`"],
            ),
            (
                api(&format!("{ops}[[apis.inject]]\nsecret = \"billing_key\"\nheader = \"Content-Length\"")),
                &["`apis[0].inject[0].header`", "transport"],
            ),
            (
                api(&format!("{ops}[[apis.inject]]\nsecret = \"billing_key\"\nquery = \"k\"\nformat = \"x\"")),
                &["`apis[0].inject[0].format`", "exactly once"],
            ),
            (api(&format!("max_body_bytes = 0\n{ops}")), &["`apis[0].max_body_bytes`", "`0` is out of range"]),
            (api(&format!("{ops}[apis.token]\nper = \"day\"")), &["`apis[0].token.per`", "api `billing`"]),
            (
                api(&format!(
                    "{ops}[[apis.inject]]\nsecret = \"billing_key\"\nheader = \"Authorization\"\n[apis.token]"
                )),
                &["`apis[0].token.header`", "api `billing`"],
            ),
            (api(&format!("{ops}[apis.token]\nttl_secs = 0")), &["`apis[0].token.ttl_secs`"]),
        ];
        for (text, wants) in cases {
            let err = load(&text).unwrap_err().to_string();
            assert!(err.starts_with("/etc/custos/custos.toml: "), "{text}\n{err}");
            for want in wants {
                assert!(err.contains(want), "{text}\nwanted {want}: {err}");
            }
        }
        // Unknown keys are parse errors naming the key and line.
        let err = load(&api("openapi = \"a.yaml\"\nbase_path = \"/v1\"")).unwrap_err().to_string();
        assert!(err.contains("unknown field `base_path`"), "{err}");
        let err = load(&api(&format!("{ops}verb = \"GET\""))).unwrap_err().to_string();
        assert!(err.contains("unknown field `verb`"), "{err}");
    }
}
