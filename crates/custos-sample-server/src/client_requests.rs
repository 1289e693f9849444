//! What the server sends back to the client while a tool runs.
//!
//! Sampling, roots and logging are deprecated by SEP-2577 in `rmcp` 3, but
//! they are exactly the server-to-client traffic the gateway has to relay, so
//! this module uses them on purpose. Failures of a client request become a
//! short reason for a tool error; failures to send a notification become a
//! protocol error, since the connection itself is then broken.
#![expect(deprecated, reason = "sampling, roots and logging are deprecated by SEP-2577 but still in MCP 2025-11-25")]

use rmcp::{
    model::{
        CreateMessageRequestParams, ElicitRequestParams, ElicitationSchema, LoggingLevel,
        LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken, SamplingMessage,
    },
    ErrorData, Peer, RoleServer,
};
use serde_json::{json, Value};

/// The `maxTokens` asked of the client's model.
const SAMPLING_MAX_TOKENS: u32 = 256;

/// Sends `steps` progress notifications for `token`, numbered 1 to `steps`.
pub(crate) async fn send_progress(peer: &Peer<RoleServer>, token: ProgressToken, steps: u32) -> Result<(), ErrorData> {
    for step in 1..=steps {
        let param = ProgressNotificationParam::new(token.clone(), f64::from(step))
            .with_total(f64::from(steps))
            .with_message(format!("step {step} of {steps}"));
        peer.notify_progress(param)
            .await
            .map_err(|e| ErrorData::internal_error(format!("cannot send progress: {e}"), None))?;
    }
    Ok(())
}

/// Asks the client's model about `prompt`; returns the text of its answer.
pub(crate) async fn sample(peer: &Peer<RoleServer>, prompt: String) -> Result<String, String> {
    let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], SAMPLING_MAX_TOKENS);
    let result = peer.create_message(params).await.map_err(|e| format!("sampling failed: {e}"))?;
    result
        .message
        .content
        .into_vec()
        .into_iter()
        .find_map(|block| block.as_text().map(|t| t.text.clone()))
        .ok_or_else(|| "sampling failed: the answer has no text".to_owned())
}

/// Asks the client for its roots; returns their URIs in the client's order.
pub(crate) async fn root_uris(peer: &Peer<RoleServer>) -> Result<Vec<String>, String> {
    let result = peer.list_roots().await.map_err(|e| format!("roots/list failed: {e}"))?;
    Ok(result.roots.into_iter().map(|root| root.uri).collect())
}

/// Puts `question` to the user through a one-field form (`answer`); returns
/// `{"action": ..., "content": ...}`.
pub(crate) async fn elicit(peer: &Peer<RoleServer>, question: String) -> Result<Value, String> {
    let requested_schema = ElicitationSchema::builder()
        .required_string("answer")
        .build()
        .map_err(|e| format!("cannot build the elicitation schema: {e}"))?;
    let params = ElicitRequestParams::FormElicitationParams { meta: None, message: question, requested_schema };
    let result = peer.create_elicitation(params).await.map_err(|e| format!("elicitation failed: {e}"))?;
    Ok(json!({ "action": result.action, "content": result.content }))
}

/// Sends `text` to the client as an info-level log message.
pub(crate) async fn log(peer: &Peer<RoleServer>, text: String) -> Result<(), ErrorData> {
    let param =
        LoggingMessageNotificationParam::new(LoggingLevel::Info, Value::String(text)).with_logger(crate::SERVER_NAME);
    peer.notify_logging_message(param)
        .await
        .map_err(|e| ErrorData::internal_error(format!("cannot send log message: {e}"), None))
}
