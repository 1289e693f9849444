//! The FastAPI billing API of `tests/peers/billing_api.py`, really running: its generated
//! OpenAPI 3.1 document fetched from `/openapi.json` and imported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use custos_core::ToolClass;
use custos_openapi::{parse_json, Location, Method, Router};
use serde_json::json;

/// How long the peer may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The billing API, killed when dropped.
struct BillingApi {
    child: Child,
    port: u16,
    /// Holds the port file; removed when dropped.
    _dir: tempfile::TempDir,
}

impl BillingApi {
    fn start() -> Self {
        let python = repo().join(".venv-peers/bin/python");
        assert!(python.exists(), "{} is missing: run `bash .ci/setup-peers`", python.display());
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let mut child = Command::new(python)
            .arg(repo().join("tests/peers/billing_api.py"))
            .arg("--port-file")
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let port = wait_for_port(&mut child, &port_file);
        Self { child, port, _dir: dir }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(START_TIMEOUT)).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
    }
}

impl Drop for BillingApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port the peer writes (renamed into place, so never partial) once it listens; polled
/// with a deadline, and given up as soon as the peer exits.
fn wait_for_port(child: &mut Child, port_file: &Path) -> u16 {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(port_file) {
            return text.trim().parse().unwrap_or_else(|_| panic!("bad port file: {text:?}"));
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("billing_api.py exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "billing_api.py did not listen within {START_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_fastapi_billing_api_imports_with_its_operations_classes_and_schemas() {
    let api = BillingApi::start();
    let (status, document) = api.get("/openapi.json");
    assert_eq!(status, 200, "{document}");
    let spec = parse_json(&document, "billing /openapi.json").unwrap();
    assert_eq!((spec.title.as_str(), spec.version.as_str()), ("Custos test billing API", "1.0.0"));

    let mut ops: Vec<_> = spec
        .operations
        .iter()
        .map(|o| (o.tool_name.as_str(), o.method, o.path_template.as_str(), o.default_class()))
        .collect();
    ops.sort();
    assert_eq!(
        ops,
        [
            ("create_refund", Method::Post, "/refunds", ToolClass::Write),
            ("delete_order", Method::Delete, "/orders/{order_id}", ToolClass::Privileged),
            ("echo_auth", Method::Get, "/debug/echo-auth", ToolClass::Read),
            ("get_big", Method::Get, "/big", ToolClass::Read),
            ("get_order", Method::Get, "/orders/{order_id}", ToolClass::Read),
            ("get_receipt", Method::Get, "/orders/{order_id}/receipt", ToolClass::Read),
            ("put_attachment", Method::Put, "/orders/{order_id}/attachment", ToolClass::Write),
        ]
    );

    // The refund body is `$ref: #/components/schemas/RefundRequest`: inlined, required fields
    // and all; the Authorization header is no argument.
    let refund = spec.operation("create_refund").unwrap();
    let schema = refund.input_schema();
    assert_eq!(schema["required"], json!(["body"]));
    let body = &schema["properties"]["body"];
    assert_eq!(body["type"], "object");
    let mut required: Vec<_> = body["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    required.sort_unstable();
    assert_eq!(required, ["amount_cents", "currency", "order_id", "reason"]);
    assert_eq!(body["properties"]["amount_cents"]["type"], "integer");
    assert_eq!(body["properties"]["currency"]["minLength"], 3);
    assert!(!schema.to_string().contains("$ref"), "{schema}");
    assert_eq!(schema["properties"].as_object().unwrap().len(), 1, "{schema}");
    assert!(spec.operation("echo_auth").unwrap().parameters.is_empty());

    // `format` is a `$ref` to an enum with a sibling `default`: JSON Schema 2020-12 keeps both.
    let receipt = spec.operation("get_receipt").unwrap();
    let params: Vec<_> = receipt.parameters.iter().map(|p| (p.name.as_str(), p.location, p.required)).collect();
    assert_eq!(params, [("order_id", Location::Path, true), ("format", Location::Query, false)]);
    let format = &receipt.input_schema()["properties"]["format"];
    assert_eq!(format["default"], "text");
    assert_eq!(format["allOf"][0]["enum"], json!(["pdf", "text"]));
    let big = spec.operation("get_big").unwrap();
    assert_eq!(big.input_schema()["required"], json!(["bytes"]));
    assert_eq!(big.input_schema()["properties"]["bytes"]["maximum"], 16 * 1024 * 1024);

    // The router names the operation of each request the API serves.
    let router = Router::new(&spec.operations).unwrap();
    let tool =
        |method: &str, path: &str| spec.operations[router.find(method, path).unwrap().operation].tool_name.clone();
    assert_eq!(tool("GET", "/orders/o-1"), "get_order");
    assert_eq!(tool("DELETE", "/orders/o-1"), "delete_order");
    assert_eq!(tool("GET", "/orders/o-1/receipt"), "get_receipt");
    assert_eq!(tool("POST", "/refunds"), "create_refund");
    assert_eq!(tool("GET", "/debug/echo-auth"), "echo_auth");
    // …and the API serves what the document says.
    let (status, order) = api.get("/orders/o-1");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&order).unwrap()["amount_cents"], 4200);
    assert_eq!(api.get("/big?bytes=5"), (200, "xxxxx".to_owned()));
}
