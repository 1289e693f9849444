//! Explain: what the policies would decide for an agent calling a tool with some arguments,
//! and which policies decide it, as `custos policy explain` says it. Read-only: nothing is
//! recorded, nothing is called.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use custos_core::{Agent, ToolClass, ToolDescriptor, ToolRef};
use custos_policy::{CallRequest, Explanation, ToolInfo};
use custos_store::{AgentRegistry, Store, ToolRecord};
use serde_json::Value;

use crate::auth::Signed;
use crate::calls::MAX_ROWS;
use crate::console::Console;
use crate::page::{self, Frame};

/// Most bytes of arguments the form takes.
const MAX_ARGUMENTS: usize = 64 * 1024;

/// One policy behind the decision.
#[derive(Debug)]
pub struct PolicyRow {
    pub effect: String,
    pub id: String,
    pub place: String,
    pub note: String,
}

/// The decision, as the page shows it.
#[derive(Debug)]
pub struct Outcome {
    pub decision: String,
    pub why: String,
    pub class: String,
    pub policies: Vec<PolicyRow>,
    /// The explanation as `custos policy explain` prints it.
    pub text: String,
}

#[derive(Template)]
#[template(path = "explain.html")]
struct ExplainPage {
    frame: Frame,
    agents: Vec<String>,
    tools: Vec<String>,
    agent: String,
    tool: String,
    arguments: String,
    outcome: Option<Outcome>,
    problem: Option<String>,
}

/// `GET /console/explain?agent=…&tool=server/name&arguments=JSON`: the form, and with an agent
/// and a tool, the decision.
pub async fn explain(
    State(c): State<Arc<Console>>,
    Signed { session }: Signed,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let frame = Frame::signed_in(&session, "explain");
    // An unreadable store is said as such, not as an unknown agent or tool.
    let (registered, inventory): (_, Vec<ToolRecord>) = match c.read(|store| Ok((store.agents()?, store.tools()?))) {
        Ok(read) => read,
        Err(e) => return crate::calls::unavailable(frame, &e),
    };
    let mut agents: Vec<Agent> = c.config.agents.clone();
    for r in registered {
        if r.revoked_ms.is_none() && !agents.iter().any(|a| a.id == r.agent.id) {
            agents.push(r.agent);
        }
    }
    let get = |k: &str| params.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let (agent_id, tool_text, arguments) = (get("agent"), get("tool"), get("arguments"));
    let mut page = ExplainPage {
        frame,
        agents: agents.iter().map(|a| a.id.0.clone()).collect(),
        tools: inventory.iter().take(MAX_ROWS).map(|t| t.tool.to_string()).collect(),
        agent: agent_id.clone(),
        tool: tool_text.clone(),
        arguments: arguments.clone(),
        outcome: None,
        problem: None,
    };
    if agent_id.is_empty() && tool_text.is_empty() {
        return page::html(StatusCode::OK, &page);
    }
    let fail = |mut page: ExplainPage, status: StatusCode, problem: String| {
        page.problem = Some(problem);
        page::html(status, &page)
    };
    let Some(agent) = agents.iter().find(|a| a.id.0 == agent_id) else {
        let problem = format!(
            "unknown agent `{}`: choose an agent declared in the config or registered (and not revoked)",
            agent_id.escape_debug()
        );
        return fail(page, StatusCode::BAD_REQUEST, problem);
    };
    let tool: ToolRef = match tool_text.parse() {
        Ok(t) => t,
        Err(_) => {
            let problem = format!("`{}` is not a tool: expected `server/name`", tool_text.escape_debug());
            return fail(page, StatusCode::BAD_REQUEST, problem);
        }
    };
    let arguments = match parse_arguments(&arguments) {
        Ok(v) => v,
        Err(problem) => return fail(page, StatusCode::BAD_REQUEST, problem),
    };
    let descriptor = inventory
        .into_iter()
        .find(|t| t.tool == tool)
        .and_then(|t| ToolDescriptor::from_listing(tool.server(), t.descriptor));
    let (class, explanation) = what_if(&c.config, &c.policy, agent, &tool, None, descriptor.as_ref(), &arguments);
    page.outcome = Some(outcome(&explanation, class));
    page::html(StatusCode::OK, &page)
}

/// What policy would decide for `agent` calling `tool` with `arguments` now, outside any run
/// (no approval, labels or findings): the tool's class (`class`, else from the config and
/// `descriptor`) and the explanation. Shared by this page and `custos policy explain`.
pub fn what_if(
    config: &custos_config::Config,
    engine: &custos_policy::PolicyEngine,
    agent: &Agent,
    tool: &ToolRef,
    class: Option<ToolClass>,
    descriptor: Option<&ToolDescriptor>,
    arguments: &Value,
) -> (ToolClass, Explanation) {
    let server = config.server(tool.server());
    let class =
        class.unwrap_or_else(|| server.map_or(ToolClass::Privileged, |s| s.classes.classify(tool.name(), descriptor)));
    let annotations = descriptor.and_then(|d| d.raw.get("annotations"));
    let flows = server.map(|s| s.flows.flows_of(tool.name())).unwrap_or_default();
    let explanation = engine.explain(&CallRequest {
        agent,
        tool: ToolInfo { tool, class, annotations },
        arguments,
        run_id: "explain",
        step: 1,
        labels: &[],
        findings: &[],
        flows: &flows,
        approval_granted: false,
    });
    (class, explanation)
}

/// The form's arguments: a JSON object (empty means `{}`), or what is wrong with them, naming
/// the line and column.
pub fn parse_arguments(text: &str) -> Result<Value, String> {
    if text.is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    if text.len() > MAX_ARGUMENTS {
        return Err(format!("the arguments are longer than {} KiB", MAX_ARGUMENTS / 1024));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("the arguments must be a JSON object, like {\"path\": \"/tmp/x\"}".to_owned()),
        Err(e) => Err(format!("the arguments are not JSON: line {}, column {}: {e}", e.line(), e.column())),
    }
}

fn outcome(e: &Explanation, class: ToolClass) -> Outcome {
    Outcome {
        decision: e.decision.as_str().to_owned(),
        why: e.decision.explain(),
        class: class.to_string(),
        policies: e
            .policies
            .iter()
            .map(|p| {
                let mut note = Vec::new();
                if let Some(g) = &p.approval {
                    note.push(format!("lifted by an approval of `{g}`"));
                }
                if let Some(r) = &p.reason {
                    note.push(r.clone());
                }
                if let Some(err) = &p.error {
                    note.push(format!("evaluation error: {err}"));
                }
                PolicyRow {
                    effect: p.effect.to_string(),
                    id: p.id.clone(),
                    place: format!("{}:{}:{}", p.file, p.line, p.column),
                    note: note.join("; "),
                }
            })
            .collect(),
        text: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_arguments;

    #[test]
    fn arguments_must_be_a_json_object_and_errors_name_the_place() {
        assert_eq!(parse_arguments("").unwrap(), serde_json::json!({}));
        assert_eq!(parse_arguments("{\"a\": 1}").unwrap(), serde_json::json!({"a": 1}));
        let e = parse_arguments("{\n  \"a\": 1,\n  oops\n}").unwrap_err();
        assert!(e.contains("line 3, column 3"), "{e}");
        assert!(parse_arguments("[1]").unwrap_err().contains("JSON object"));
    }
}
