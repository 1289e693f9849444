//! Drives the sample server in-process over a duplex pipe with an `rmcp` client.
#![allow(clippy::unwrap_used, reason = "test helpers: any failure should fail the test")]
#![expect(deprecated, reason = "sampling is deprecated by SEP-2577 but still in MCP 2025-11-25")]

use custos_sample_server::{SampleServer, ToolsVariant};
use rmcp::{
    model::{
        CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, CreateMessageRequestParams,
        CreateMessageResult, ErrorCode, Implementation, ProtocolVersion, ReadResourceRequestParams, SamplingMessage,
    },
    service::{RequestContext, RunningService},
    ClientHandler, ErrorData, RoleClient, ServiceError, ServiceExt,
};
use serde_json::{json, Value};

/// Answers sampling with the prompt reversed; everything else is rmcp's default.
#[derive(Debug, Clone)]
struct Client;

impl ClientHandler for Client {
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let prompt: String = params
            .messages
            .iter()
            .flat_map(|m| m.content.clone().into_vec())
            .filter_map(|block| block.as_text().map(|t| t.text.clone()))
            .collect();
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(prompt.chars().rev().collect::<String>()),
            "reverser".to_owned(),
        ))
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_sampling().build(),
            Implementation::new("in-process-test", "0"),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

async fn start(variant: ToolsVariant) -> RunningService<RoleClient, Client> {
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let server = SampleServer::new(variant).serve(server_io).await?;
        server.waiting().await?;
        anyhow::Ok(())
    });
    Client.serve(client_io).await.unwrap()
}

async fn call(client: &RunningService<RoleClient, Client>, name: &'static str, args: Value) -> CallToolResult {
    let mut params = CallToolRequestParams::new(name);
    if let Value::Object(args) = args {
        params = params.with_arguments(args);
    }
    client.call_tool(params).await.unwrap()
}

fn text(result: &CallToolResult) -> String {
    result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.as_str())).collect()
}

async fn echo_description(variant: ToolsVariant) -> String {
    let client = start(variant).await;
    let tools = client.list_all_tools().await.unwrap();
    client.cancel().await.unwrap();
    let echo = tools.into_iter().find(|t| t.name == "echo").unwrap();
    echo.description.unwrap().into_owned()
}

#[tokio::test]
async fn variant_two_changes_only_echo_description() {
    let one = echo_description(ToolsVariant::One).await;
    let two = echo_description(ToolsVariant::Two).await;
    assert_eq!(one, custos_sample_server::ECHO_DESCRIPTION_V1);
    assert_eq!(two, custos_sample_server::ECHO_DESCRIPTION_V2);

    let names = |tools: Vec<rmcp::model::Tool>| tools.into_iter().filter(|t| t.name != "echo").collect::<Vec<_>>();
    let c1 = start(ToolsVariant::One).await;
    let c2 = start(ToolsVariant::Two).await;
    assert_eq!(names(c1.list_all_tools().await.unwrap()), names(c2.list_all_tools().await.unwrap()));
    c1.cancel().await.unwrap();
    c2.cancel().await.unwrap();
    assert_eq!(ToolsVariant::from_number(2), Some(ToolsVariant::Two));
    assert_eq!(ToolsVariant::from_number(3), None);
}

#[tokio::test]
async fn tools_answer_deterministically() {
    let client = start(ToolsVariant::One).await;

    assert_eq!(text(&call(&client, "echo", json!({ "text": "abc" })).await), "abc");
    assert_eq!(text(&call(&client, "add", json!({ "a": -5, "b": 3 })).await), "-2");
    let overflow = call(&client, "add", json!({ "a": i64::MAX, "b": 1 })).await;
    assert_eq!(overflow.is_error, Some(true));
    assert_eq!(text(&call(&client, "write_note", json!({ "title": "t", "body": "b" })).await), "saved t");
    assert_eq!(text(&call(&client, "delete_everything", json!({ "confirm": true })).await), "deleted");
    assert_eq!(text(&call(&client, "ask_model", json!({ "prompt": "abc" })).await), "model said: cba");
    assert_eq!(text(&call(&client, "big_output", json!({ "bytes": 0 })).await), "");
    assert_eq!(text(&call(&client, "big_output", json!({ "bytes": 7 })).await), "xxxxxxx");

    client.cancel().await.unwrap();
}

#[tokio::test]
async fn limits_and_bad_arguments_become_tool_errors() {
    let client = start(ToolsVariant::One).await;

    let too_many = call(&client, "count_with_progress", json!({ "n": 101 })).await;
    assert_eq!(too_many.is_error, Some(true));
    let too_big = call(&client, "big_output", json!({ "bytes": u64::MAX })).await;
    assert_eq!(too_big.is_error, Some(true));
    // Arguments that do not fit the schema are reported by rmcp as a tool error.
    let missing_arg = call(&client, "echo", json!({})).await;
    assert_eq!(missing_arg.is_error, Some(true));
    // The server asks for roots even though this client declared no roots
    // capability (a gateway may want to see that); rmcp's client answers empty.
    let roots = call(&client, "list_roots", json!({})).await;
    assert_eq!(roots.is_error, Some(false));
    assert_eq!(text(&roots), "");

    client.cancel().await.unwrap();
}

#[tokio::test]
async fn unknown_tools_and_resources_are_protocol_errors() {
    let client = start(ToolsVariant::One).await;

    let unknown_tool = client.call_tool(CallToolRequestParams::new("nope")).await.unwrap_err();
    assert!(matches!(&unknown_tool, ServiceError::McpError(_)), "{unknown_tool:?}");
    let missing_resource = client.read_resource(ReadResourceRequestParams::new("sample://nothing")).await.unwrap_err();
    assert!(
        matches!(&missing_resource, ServiceError::McpError(e) if e.code == ErrorCode::RESOURCE_NOT_FOUND),
        "{missing_resource:?}"
    );

    client.cancel().await.unwrap();
}
