//! An MCP client for end-to-end tests, built on the official `rmcp` SDK.
//!
//! [`connect`] starts a server (the sample server, or the gateway in front of
//! it) as a child process speaking MCP over stdio, performs the `initialize`
//! handshake at protocol `2025-11-25` and returns a [`TestClient`].
//!
//! The client answers the server's own requests with fixed values, so tests can
//! check that they crossed the gateway:
//!
//! - `sampling/createMessage` → assistant text `sampled: <last user message text>`;
//! - `roots/list` → [`ROOT_A`] and [`ROOT_B`];
//! - `elicitation/create` → `accept` with `{"answer": "yes"}`.
//!
//! Every notification the server sends is recorded as a [`Received`]; tests
//! wait for them with [`TestClient::wait_for_notifications`] or
//! [`TestClient::wait_until`], which wake on each arrival instead of sleeping.
//!
//! Note that `rmcp` attaches a progress token to every request it sends, so a
//! `tools/call` through [`TestClient::call`] always carries one.
#![allow(dead_code, reason = "each test binary uses only part of this shared helper")]
#![expect(deprecated, reason = "sampling, roots and logging are deprecated by SEP-2577 but still in MCP 2025-11-25")]

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::{anyhow, bail, Context as _};
use rmcp::{
    model::{
        CallToolRequestParams, CallToolResult, CancelledNotificationParam, ClientCapabilities, ClientConfig,
        ClientRequest, CreateMessageRequestParams, CreateMessageResult, CustomNotification, ElicitRequestParams,
        ElicitResult, ElicitationAction, ElicitationCapability, FormElicitationCapability, Implementation,
        ListRootsResult, LoggingMessageNotificationParam, PingRequest, ProgressNotificationParam, ProtocolVersion,
        ResourceUpdatedNotificationParam, Role, Root, RootsCapabilities, SamplingCapability, SamplingMessage,
        ServerResult, SubscriptionsAcknowledgedNotificationParams, TaskStatusNotificationParams,
    },
    service::{NotificationContext, QuitReason, RequestContext, RunningService},
    transport::TokioChildProcess,
    ClientHandler, ErrorData, Peer, RoleClient, ServiceError, ServiceExt,
};
use serde_json::{json, Value};
use tokio::sync::watch;

/// First root the client reports to `roots/list`.
pub const ROOT_A: &str = "file:///tmp/root-a";
/// Second root the client reports to `roots/list`.
pub const ROOT_B: &str = "file:///tmp/root-b";
/// Prefix of every sampling answer; the last user message's text follows it.
pub const SAMPLING_PREFIX: &str = "sampled: ";
/// Model name reported in sampling answers.
pub const SAMPLING_MODEL: &str = "custos-test-model";
/// How long the `wait_*` helpers wait before failing the test.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A notification the client received from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// `notifications/progress`.
    Progress(ProgressNotificationParam),
    /// `notifications/message`.
    Log(LoggingMessageNotificationParam),
    /// `notifications/cancelled`.
    Cancelled(CancelledNotificationParam),
    /// `notifications/resources/updated`.
    ResourceUpdated(ResourceUpdatedNotificationParam),
    /// `notifications/tools/list_changed`.
    ToolListChanged,
    /// `notifications/prompts/list_changed`.
    PromptListChanged,
    /// `notifications/resources/list_changed`.
    ResourceListChanged,
    /// Any other notification, by method name.
    Other(String),
}

impl Received {
    /// The JSON-RPC method of the notification.
    pub fn method(&self) -> &str {
        match self {
            Self::Progress(_) => "notifications/progress",
            Self::Log(_) => "notifications/message",
            Self::Cancelled(_) => "notifications/cancelled",
            Self::ResourceUpdated(_) => "notifications/resources/updated",
            Self::ToolListChanged => "notifications/tools/list_changed",
            Self::PromptListChanged => "notifications/prompts/list_changed",
            Self::ResourceListChanged => "notifications/resources/list_changed",
            Self::Other(method) => method,
        }
    }
}

/// The notifications received so far, shared between the handler and the test.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Every notification, in arrival order.
    received: Arc<Mutex<Vec<Received>>>,
    /// Bumped after each push, so waiters re-check without polling.
    changed: watch::Sender<usize>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self { received: Arc::default(), changed: watch::Sender::new(0) }
    }
}

impl Recorder {
    fn push(&self, item: Received) {
        let len = {
            let mut received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
            received.push(item);
            received.len()
        };
        self.changed.send_replace(len);
    }

    /// A copy of everything received so far.
    pub fn snapshot(&self) -> Vec<Received> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits up to [`WAIT_TIMEOUT`] until `done` holds for the notifications
    /// received so far; returns them.
    pub async fn wait_until(&self, mut done: impl FnMut(&[Received]) -> bool) -> anyhow::Result<Vec<Received>> {
        let mut changes = self.changed.subscribe();
        let wait = async {
            loop {
                let now = self.snapshot();
                if done(&now) {
                    return Ok(now);
                }
                // The sender lives in `self`, so `changed` only fails if it was dropped.
                changes.changed().await?;
            }
        };
        match tokio::time::timeout(WAIT_TIMEOUT, wait).await {
            Ok(result) => result.map_err(|e: watch::error::RecvError| anyhow!(e)),
            Err(_) => bail!("timed out after {WAIT_TIMEOUT:?}; received so far: {:?}", self.snapshot()),
        }
    }
}

/// The client side of the connection: fixed answers plus the recorder.
#[derive(Debug, Clone, Default)]
pub struct TestHandler {
    recorder: Recorder,
}

impl ClientHandler for TestHandler {
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let last_user_text = params
            .messages
            .iter()
            .rev()
            .filter(|message| message.role == Role::User)
            .flat_map(|message| message.content.clone().into_vec())
            .find_map(|block| block.as_text().map(|text| text.text.clone()))
            .ok_or_else(|| ErrorData::invalid_params("no user message with text", None))?;
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(format!("{SAMPLING_PREFIX}{last_user_text}")),
            SAMPLING_MODEL.to_owned(),
        )
        .with_stop_reason(CreateMessageResult::STOP_REASON_END_TURN))
    }

    async fn list_roots(&self, _context: RequestContext<RoleClient>) -> Result<ListRootsResult, ErrorData> {
        Ok(ListRootsResult::new(vec![Root::new(ROOT_A), Root::new(ROOT_B)]))
    }

    async fn create_elicitation(
        &self,
        _request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({ "answer": "yes" })))
    }

    async fn on_cancelled(&self, params: CancelledNotificationParam, _context: NotificationContext<RoleClient>) {
        self.recorder.push(Received::Cancelled(params));
    }

    async fn on_progress(&self, params: ProgressNotificationParam, _context: NotificationContext<RoleClient>) {
        self.recorder.push(Received::Progress(params));
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.recorder.push(Received::Log(params));
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.recorder.push(Received::ResourceUpdated(params));
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.recorder.push(Received::ResourceListChanged);
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.recorder.push(Received::ToolListChanged);
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.recorder.push(Received::PromptListChanged);
    }

    async fn on_subscriptions_acknowledged(
        &self,
        _params: SubscriptionsAcknowledgedNotificationParams,
        _context: NotificationContext<RoleClient>,
    ) {
        self.recorder.push(Received::Other("notifications/subscriptions/acknowledged".to_owned()));
    }

    async fn on_task_status(&self, _params: TaskStatusNotificationParams, _context: NotificationContext<RoleClient>) {
        self.recorder.push(Received::Other("notifications/tasks/status".to_owned()));
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleClient>,
    ) {
        self.recorder.push(Received::Other(notification.method));
    }

    fn get_info(&self) -> ClientConfig {
        // The capability builder needs rmcp's `server` feature; set the fields instead.
        let mut capabilities = ClientCapabilities::default();
        capabilities.roots = Some(RootsCapabilities::default());
        capabilities.sampling = Some(SamplingCapability::default());
        capabilities.elicitation = Some(ElicitationCapability::new().with_form(FormElicitationCapability::default()));
        ClientConfig::new(capabilities, Implementation::new("custos-test-client", env!("CARGO_PKG_VERSION")))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

/// A connected client. [`TestClient::peer`] gives the full `rmcp` API
/// (`list_tools`, `call_tool`, `list_resources`, `read_resource`,
/// `list_prompts`, `get_prompt`, …); the methods here cover the common cases.
#[derive(Debug)]
pub struct TestClient {
    service: RunningService<RoleClient, TestHandler>,
    recorder: Recorder,
}

/// Starts `cmd` with piped stdin/stdout (stderr inherited) and connects to it.
pub async fn connect(cmd: tokio::process::Command) -> anyhow::Result<TestClient> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let transport = TokioChildProcess::new(cmd).with_context(|| format!("cannot start MCP server `{program}`"))?;
    let handler = TestHandler::default();
    let recorder = handler.recorder.clone();
    let service =
        handler.serve(transport).await.with_context(|| format!("cannot initialize MCP session with `{program}`"))?;
    Ok(TestClient { service, recorder })
}

impl TestClient {
    /// The `rmcp` peer, for every request the client can send.
    pub fn peer(&self) -> &Peer<RoleClient> {
        self.service.peer()
    }

    /// Calls tool `name` with `arguments` (a JSON object, or `null` for none).
    pub async fn call(&self, name: &str, arguments: Value) -> Result<CallToolResult, ServiceError> {
        let mut params = CallToolRequestParams::new(name.to_owned());
        if let Value::Object(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        self.peer().call_tool(params).await
    }

    /// Sends `ping` and waits for the answer.
    pub async fn ping(&self) -> Result<(), ServiceError> {
        match self.peer().send_request(ClientRequest::PingRequest(PingRequest::default())).await? {
            ServerResult::EmptyResult(_) => Ok(()),
            _ => Err(ServiceError::UnexpectedResponse),
        }
    }

    /// The recorder, to share with other tasks.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// A copy of every notification received so far.
    pub fn notifications(&self) -> Vec<Received> {
        self.recorder.snapshot()
    }

    /// Waits until at least `count` notifications have arrived; returns all of them.
    pub async fn wait_for_notifications(&self, count: usize) -> anyhow::Result<Vec<Received>> {
        self.recorder.wait_until(|received| received.len() >= count).await
    }

    /// Waits until `done` holds for the notifications received so far.
    pub async fn wait_until(&self, done: impl FnMut(&[Received]) -> bool) -> anyhow::Result<Vec<Received>> {
        self.recorder.wait_until(done).await
    }

    /// Whether the connection's service loop has stopped (server gone or client closed).
    pub fn is_transport_closed(&self) -> bool {
        self.peer().is_transport_closed()
    }

    /// Waits up to [`WAIT_TIMEOUT`] for the connection to end on its own, for
    /// instance because the server exited; `QuitReason::Closed` means the
    /// transport closed.
    pub async fn wait_closed(self) -> anyhow::Result<QuitReason> {
        tokio::time::timeout(WAIT_TIMEOUT, self.service.waiting())
            .await
            .context("the connection did not close")?
            .context("the client task failed")
    }

    /// Closes the connection and waits for the child process to exit.
    pub async fn close(&mut self) -> anyhow::Result<QuitReason> {
        self.service.close().await.context("the client task failed")
    }

    /// Like [`TestClient::close`], consuming the client.
    pub async fn cancel(self) -> anyhow::Result<QuitReason> {
        self.service.cancel().await.context("the client task failed")
    }
}

/// The text of every text content block of `result`, concatenated.
pub fn text(result: &CallToolResult) -> String {
    result.content.iter().filter_map(|block| block.as_text().map(|text| text.text.as_str())).collect()
}
