//! The policy engine: a validated policy set and the decisions it makes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Decision as CedarDecision, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint, Request,
    ResourceConstraint, Schema,
};
use custos_core::{Agent, Decision, ToolClass, ToolRef};
use serde::Serialize;

use crate::context::{unreadable_note, Unreadable};
use crate::error::{io_reason, one_line, truncate, with_causes, PolicyError};
use crate::load::{self, id_str, PolicyEffect, PolicyMeta};
use crate::request::{self, CallRequest, Names, Prepared, PreparedCache, ToolInfo};
use crate::schema::{self, SchemaSource};

/// The reason of a deny when nothing permitted the call.
pub const DEFAULT_DENY_REASON: &str = "no policy permits this call (default deny)";

/// The longest evaluation error message kept in a reason, in characters. Reasons are written
/// to the audit log on every denied call.
const MAX_ERROR_CHARS: usize = 300;

/// A schema and a validated policy set, ready to decide calls.
///
/// Immutable once built: reloading policies means building a new engine and swapping the
/// `Arc`. `Send + Sync`, so one engine serves every connection.
#[derive(Debug)]
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    /// Every policy in load order: ids, positions and annotations for reports.
    meta: Vec<PolicyMeta>,
    /// Policy id → index into `meta`.
    index: HashMap<String, usize>,
    names: Names,
    authorizer: Authorizer,
    /// What deciding a call needs besides its context, per agent and tool.
    prepared: PreparedCache,
}

/// One policy's part in a decision, for `custos policy explain` and reviews.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyTrace {
    pub id: String,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub effect: PolicyEffect,
    /// The policy's `@reason` annotation, if it has one.
    pub reason: Option<String>,
    /// The approver group of a `forbid` an approval lifts (its `@approval` annotation).
    pub approval: Option<String>,
    /// Why the policy could not be evaluated for this call, if it could not. A policy that
    /// fails to evaluate denies the call.
    pub error: Option<String>,
}

/// A decision with the policies behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub decision: Decision,
    /// The policies that determined the decision (the matching permits of an allow, the
    /// matching forbids of a deny or a hold), then every policy that failed to evaluate; in
    /// load order.
    pub policies: Vec<PolicyTrace>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", self.decision.as_str(), self.decision.explain())?;
        for p in &self.policies {
            write!(f, "  {} `{}` at {}:{}:{}", p.effect, p.id, p.file, p.line, p.column)?;
            if let Some(group) = &p.approval {
                write!(f, " (lifted by an approval of `{group}`)")?;
            }
            if let Some(reason) = &p.reason {
                write!(f, ": {reason}")?;
            }
            if let Some(error) = &p.error {
                write!(f, " (evaluation error: {error})")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl PolicyEngine {
    /// Reads the schema and every policy file, parses them and validates every policy against
    /// the schema (strict mode). An empty list of files is allowed: every call is denied.
    pub fn load(schema: &SchemaSource, files: &[PathBuf]) -> Result<Self, PolicyError> {
        let (schema_name, schema_text) = schema.read()?;
        let sources = files
            .iter()
            .map(|path| {
                let name = path.display().to_string();
                std::fs::read_to_string(path)
                    .map(|text| (name.clone(), text))
                    .map_err(|e| PolicyError::ReadPolicy { path: name, reason: io_reason(&e) })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::build(&schema_name, &schema_text, &sources)
    }

    /// Like [`load`](Self::load) with the texts already in memory: `sources` are
    /// `(file name, text)` pairs; errors name the files by these names and the schema as
    /// `schema`.
    pub fn from_sources(schema_text: &str, sources: &[(String, String)]) -> Result<Self, PolicyError> {
        Self::build("schema", schema_text, sources)
    }

    fn build(schema_name: &str, schema_text: &str, sources: &[(String, String)]) -> Result<Self, PolicyError> {
        let schema = schema::parse(schema_name, schema_text)?;
        let names =
            Names::new().map_err(|message| PolicyError::SchemaShape { file: schema_name.to_owned(), message })?;
        check_shape(schema_name, &schema, &names)?;
        let loaded = load::load(&schema, sources)?;
        let index = loaded.policies.iter().enumerate().map(|(i, p)| (p.id.clone(), i)).collect();
        Ok(Self {
            schema,
            policies: loaded.set,
            meta: loaded.policies,
            index,
            names,
            authorizer: Authorizer::new(),
            prepared: PreparedCache::default(),
        })
    }

    /// Decides one call. Never panics; anything that stops evaluation denies.
    pub fn decide(&self, req: &CallRequest<'_>) -> Decision {
        self.explain(req).decision
    }

    /// Decides one call and says which policies decided it, where they are, and which failed
    /// to evaluate.
    ///
    /// - A matching `forbid` denies, whatever else matches; the reason carries the forbids'
    ///   `@reason` annotations.
    /// - Otherwise a policy that fails to evaluate (an argument of another type than the
    ///   schema declares, say) denies, even if permits match: fail closed.
    /// - Otherwise a matching `permit` allows; with none, the call is denied by default.
    ///
    /// A deny is a hold instead when an approval would turn it into an allow: every matching
    /// forbid carries `@approval`, no policy failed to evaluate, and the same call with
    /// `approval_granted` allows. A hold that no approval could lift (no permit matches, say)
    /// stays a deny, and says why.
    pub fn explain(&self, req: &CallRequest<'_>) -> Explanation {
        let denied = self.evaluate(req);
        let Some(groups) = approval_groups(&denied) else { return denied };
        let Decision::Deny { policies, reason } = denied.decision else { return denied };
        let approved = self.evaluate(&CallRequest { approval_granted: true, ..*req });
        let decision = match approved.decision {
            Decision::Allow { .. } => {
                let reason = hold_reason(&groups, &denied.policies);
                Decision::Hold { policies, groups, reason }
            }
            // Already approved, or the approval is not what stands in the way.
            Decision::Deny { reason: why, .. } | Decision::Hold { reason: why, .. } => {
                Decision::Deny { policies, reason: format!("{reason}; with an approval: {why}") }
            }
        };
        Explanation { decision, policies: denied.policies }
    }

    /// [`explain`](Self::explain) without holds: what Cedar decides for this exact context.
    fn evaluate(&self, req: &CallRequest<'_>) -> Explanation {
        let (response, unreadable) = match self.request(req) {
            Ok((request, prepared, policies, unreadable)) => {
                (self.authorizer.is_authorized(&request, &policies, &prepared.entities), unreadable)
            }
            Err(reason) => {
                return Explanation { decision: Decision::Deny { policies: Vec::new(), reason }, policies: Vec::new() }
            }
        };

        // Indices into `meta`, so both come out in load order.
        let determining: BTreeSet<usize> =
            response.diagnostics().reason().filter_map(|id| self.index.get(id_str(id)).copied()).collect();
        // Policy index → its first evaluation error. Cedar gives errors in no particular order.
        let mut errors: BTreeMap<usize, String> = BTreeMap::new();
        for err in response.diagnostics().errors() {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(err) = err;
            if let Some(&i) = self.index.get(id_str(err.policy_id())) {
                errors.entry(i).or_insert_with(|| truncate(&one_line(err.inner()), MAX_ERROR_CHARS));
            }
        }

        let involved: BTreeSet<usize> = determining.iter().chain(errors.keys()).copied().collect();
        let mut traces: Vec<PolicyTrace> =
            involved.into_iter().filter_map(|i| Some(trace(self.meta.get(i)?, errors.get(&i).cloned()))).collect();
        let decided_by: Vec<&PolicyMeta> = determining.iter().filter_map(|&i| self.meta.get(i)).collect();

        let decision = match response.decision() {
            // INVARIANT: on deny, Cedar's determining policies are exactly the matching forbids.
            CedarDecision::Deny if !decided_by.is_empty() => Decision::Deny {
                policies: decided_by.iter().map(|m| m.id.clone()).collect(),
                reason: forbid_reason(&decided_by),
            },
            _ if !errors.is_empty() => {
                let failed: Vec<&PolicyMeta> = errors.keys().filter_map(|&i| self.meta.get(i)).collect();
                let mut reason = failed
                    .iter()
                    .zip(errors.values())
                    .map(|(m, e)| format!("policy `{}` could not be evaluated: {e}", m.id))
                    .collect::<Vec<_>>()
                    .join("; ");
                // Why, when the call carried numbers policy cannot read (the likely cause).
                let note = unreadable_note(&unreadable);
                if !note.is_empty() {
                    reason = format!("{reason}; {note}");
                }
                Decision::Deny { policies: failed.iter().map(|m| m.id.clone()).collect(), reason }
            }
            CedarDecision::Deny => Decision::Deny { policies: Vec::new(), reason: DEFAULT_DENY_REASON.to_owned() },
            CedarDecision::Allow => Decision::Allow { policies: decided_by.iter().map(|m| m.id.clone()).collect() },
        };
        // A deny for errors lists only the failed policies, not the permits that matched.
        if let Decision::Deny { policies, .. } = &decision {
            traces.retain(|t| t.error.is_some() || policies.contains(&t.id));
        }
        Explanation { decision, policies: traces }
    }

    /// Whether some call of `tool` by `agent` could be allowed, whatever its arguments and run
    /// facts: `false` means every such call is denied, so `tools/list` can leave the tool out.
    ///
    /// Uses Cedar's partial evaluation with the whole context unknown: the answer is `false`
    /// only when a `forbid` matches without looking at the context, or no `permit` can match
    /// for any context. Anything undecided counts as "may allow", so a callable tool is never
    /// hidden. A tool reachable only through an approval counts as callable: a forbid that
    /// holds calls reads `context.approval.granted` (loading makes sure of it), which is unknown
    /// here, so it stays undecided; only one that applies whatever the approval (which no
    /// approval could lift) hides the tool.
    pub fn may_ever_allow(&self, agent: &Agent, tool: &ToolInfo<'_>) -> bool {
        // Flow marks are not passed here: with none, a policy that forbids on a mark cannot
        // hide the tool. The safe side of a listing: every call is still decided, with them.
        let Ok(entities) = self.names.entities(&self.schema, agent, tool, &[]) else {
            // Cannot happen with a schema that passed `check_shape`; showing the tool is the
            // safe side (a call would still be decided, and denied).
            return true;
        };
        let request = Request::builder()
            .principal(self.names.agent_uid(agent))
            .action(self.names.call_tool.clone())
            .resource(self.names.tool_uid(tool.tool))
            .build();
        let partial = self.authorizer.is_authorized_partial(&request, &self.policies, &entities);
        partial.decision() != Some(CedarDecision::Deny)
    }

    /// Every policy id, in load order.
    pub fn policy_ids(&self) -> Vec<String> {
        self.meta.iter().map(|m| m.id.clone()).collect()
    }

    /// The approver group of policy `id`: its `@approval` annotation, which only a `forbid`
    /// can carry. `None` for an unknown id or a policy without one.
    pub fn approval_group(&self, id: &str) -> Option<&str> {
        self.meta.get(*self.index.get(id)?)?.approval.as_deref()
    }

    /// How many policies are loaded.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// The Cedar request and entities for one call, or why they cannot be built (the reason of
    /// the resulting deny).
    /// The policies whose scope can match a call of `tool` by `agent`. Cedar checks a policy's
    /// scope before its conditions, so one whose scope cannot match is never satisfied and never
    /// fails: leaving it out changes no decision, no determining policy and no error. With
    /// thousands of policies scoped to particular agents or tools, a call evaluates a few.
    /// The policies whose scope may match `agent` calling `tool`, with their argument guards.
    fn applicable(&self, agent: &Agent, tool: &ToolRef) -> Vec<(Policy, &[String])> {
        let (principal, groups) = (self.names.agent_uid(agent), self.names.group_uids(agent));
        let (resource, server) = (self.names.tool_uid(tool), [self.names.server_uid(tool)]);
        self.policies
            .policies()
            .filter(|p| {
                Scope::from(p.principal_constraint()).may_match(&principal, &groups)
                    && Scope::from(p.resource_constraint()).may_match(&resource, &server)
            })
            .map(|p| {
                let guard =
                    self.index.get(id_str(p.id())).and_then(|&i| self.meta.get(i)).map_or(&[][..], |m| &m.guard);
                (p.clone(), guard)
            })
            .collect()
    }

    /// The Cedar request for a call, what was prepared for its agent and tool, and the policies
    /// to decide it over.
    #[expect(clippy::type_complexity, reason = "one private call site takes it apart at once")]
    fn request(
        &self,
        req: &CallRequest<'_>,
    ) -> Result<(Request, Arc<Prepared>, Arc<PolicySet>, Vec<Unreadable>), String> {
        let prepared_for_call = self
            .prepared
            .get_or_build(req.agent, &req.tool, req.flows, || {
                let entities = self.names.entities(&self.schema, req.agent, &req.tool, req.flows)?;
                Prepared::new(entities, self.applicable(req.agent, req.tool.tool))
            })
            .and_then(|prepared| Ok((prepared.policies(req.arguments)?, prepared)));
        let (policies, prepared) = prepared_for_call.map_err(|e| format!("cannot describe the call to policy: {e}"))?;
        let (context, unreadable) = request::context(req)?;
        // The context is not checked against the schema: it holds every argument the agent
        // sent, and the schema declares only those policies read. Validated policies cannot
        // name the others; a declared one with the wrong type fails evaluation, which denies.
        let request = Request::new(
            self.names.agent_uid(req.agent),
            self.names.call_tool.clone(),
            self.names.tool_uid(req.tool.tool),
            context,
            None,
        )
        .map_err(|e| format!("cannot describe the call to policy: {}", with_causes(&e)))?;
        Ok((request, prepared, policies, unreadable))
    }
}

/// A policy's principal or resource scope.
enum Scope {
    Any,
    Eq(EntityUid),
    In(EntityUid),
    Is(EntityTypeName),
    IsIn(EntityTypeName, EntityUid),
}

impl Scope {
    /// Whether an entity `uid`, whose ancestors are `ancestors`, can satisfy the scope (`in` is
    /// reflexive: an entity is in itself).
    fn may_match(&self, uid: &EntityUid, ancestors: &[EntityUid]) -> bool {
        let within = |u: &EntityUid| u == uid || ancestors.contains(u);
        match self {
            Scope::Any => true,
            Scope::Eq(u) => u == uid,
            Scope::In(u) => within(u),
            Scope::Is(ty) => ty == uid.type_name(),
            Scope::IsIn(ty, u) => ty == uid.type_name() && within(u),
        }
    }
}

impl From<PrincipalConstraint> for Scope {
    fn from(c: PrincipalConstraint) -> Self {
        match c {
            PrincipalConstraint::Any => Scope::Any,
            PrincipalConstraint::Eq(u) => Scope::Eq(u),
            PrincipalConstraint::In(u) => Scope::In(u),
            PrincipalConstraint::Is(ty) => Scope::Is(ty),
            PrincipalConstraint::IsIn(ty, u) => Scope::IsIn(ty, u),
        }
    }
}

impl From<ResourceConstraint> for Scope {
    fn from(c: ResourceConstraint) -> Self {
        match c {
            ResourceConstraint::Any => Scope::Any,
            ResourceConstraint::Eq(u) => Scope::Eq(u),
            ResourceConstraint::In(u) => Scope::In(u),
            ResourceConstraint::Is(ty) => Scope::Is(ty),
            ResourceConstraint::IsIn(ty, u) => Scope::IsIn(ty, u),
        }
    }
}

fn trace(meta: &PolicyMeta, error: Option<String>) -> PolicyTrace {
    PolicyTrace {
        id: meta.id.clone(),
        file: meta.at.file.clone(),
        line: meta.at.line,
        column: meta.at.column,
        effect: meta.effect,
        reason: meta.reason.clone(),
        approval: meta.approval.clone(),
        error,
    }
}

/// The approver groups of a deny that an approval might lift, sorted and without duplicates:
/// `Some` when forbids denied the call, every one of them carries `@approval`, and no policy
/// failed to evaluate (a hold resting on an error would not be fail closed).
fn approval_groups(denied: &Explanation) -> Option<Vec<String>> {
    let Decision::Deny { policies, .. } = &denied.decision else { return None };
    if policies.is_empty() {
        return None;
    }
    let mut groups = BTreeSet::new();
    for t in &denied.policies {
        if t.effect != PolicyEffect::Forbid || t.error.is_some() {
            return None;
        }
        groups.insert(t.approval.clone()?);
    }
    Some(groups.into_iter().collect())
}

/// "needs approval by `ops`", with the `@reason`s of the holding forbids that have one.
fn hold_reason(groups: &[String], forbids: &[PolicyTrace]) -> String {
    let groups: Vec<String> = groups.iter().map(|g| format!("`{g}`")).collect();
    let reasons: Vec<&str> = forbids.iter().filter_map(|t| t.reason.as_deref()).collect();
    if reasons.is_empty() {
        format!("needs approval by {}", groups.join(", "))
    } else {
        format!("needs approval by {}: {}", groups.join(", "), reasons.join("; "))
    }
}

/// "forbidden by policy", with the `@reason`s of the forbids that have one.
fn forbid_reason(forbids: &[&PolicyMeta]) -> String {
    let reasons: Vec<&str> = forbids.iter().filter_map(|m| m.reason.as_deref()).collect();
    if reasons.is_empty() {
        "forbidden by policy".to_owned()
    } else {
        format!("forbidden by policy: {}", reasons.join("; "))
    }
}

/// Refuses a schema the gateway could not fill in: builds the entities and a schema-checked
/// request for a sample call, which fails if an entity type, attribute or the action is missing
/// or has another shape, or if an argument attribute is required.
fn check_shape(schema_name: &str, schema: &Schema, names: &Names) -> Result<(), PolicyError> {
    let shape_error = |message: String| PolicyError::SchemaShape { file: schema_name.to_owned(), message };
    let agent = Agent {
        id: custos_core::AgentId("sample".to_owned()),
        owner: "owner".to_owned(),
        purpose: "purpose".to_owned(),
        groups: vec!["group".to_owned()],
    };
    let tool = ToolRef::new("server", "tool").map_err(|e| shape_error(e.to_string()))?;
    let annotations = serde_json::json!({
        "readOnlyHint": true, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false,
    });
    let info = ToolInfo { tool: &tool, class: ToolClass::Read, annotations: Some(&annotations) };
    names.entities(schema, &agent, &info, &[]).map_err(shape_error)?;
    let call = CallRequest {
        agent: &agent,
        tool: info,
        arguments: &serde_json::Value::Null,
        run_id: "run",
        step: 1,
        labels: &[],
        findings: &[],
        flows: &[],
        approval_granted: false,
    };
    let (context, _) = request::context(&call).map_err(shape_error)?;
    Request::new(names.agent_uid(&agent), names.call_tool.clone(), names.tool_uid(&tool), context, Some(schema))
        .map_err(|e| {
            shape_error(format!(
                "{} (the context must declare `arguments`, `run` and `approval` as the shipped schema does, \
                 and every argument attribute must be optional)",
                with_causes(&e)
            ))
        })?;
    Ok(())
}

#[cfg(test)]
mod tests;
