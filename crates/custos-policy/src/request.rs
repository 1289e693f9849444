//! One call as Cedar sees it: the entities (agent, groups, tool, server) and the context.
//!
//! Entity uids:
//!
//! | what | uid |
//! |---|---|
//! | agent | `Custos::Agent::"<agent id>"`, parents: its groups |
//! | group | `Custos::Group::"<group>"` |
//! | tool | `Custos::Tool::"<server>/<name>"`, parent: its server |
//! | server | `Custos::Server::"<server>"` |
//! | action | `Custos::Action::"call_tool"` |

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicySet, RestrictedExpression, Schema,
};
use custos_core::{Agent, ToolClass, ToolRef};

use crate::context::{arguments_record, record, Unreadable};
use crate::error::{lowercase_first, with_causes};

/// What policy knows about a tool, apart from the call's arguments.
#[derive(Clone, Copy, Debug)]
pub struct ToolInfo<'a> {
    pub tool: &'a ToolRef,
    /// The class the config (or the classifier's default) gave the tool.
    pub class: ToolClass,
    /// The `annotations` object of the tool's descriptor, if the server sent one. Only the four
    /// MCP hints with boolean values are passed to policy.
    pub annotations: Option<&'a serde_json::Value>,
}

/// One tool call to decide.
#[derive(Clone, Copy, Debug)]
pub struct CallRequest<'a> {
    pub agent: &'a Agent,
    pub tool: ToolInfo<'a>,
    /// `params.arguments` of the call, exactly as the agent sent it.
    pub arguments: &'a serde_json::Value,
    pub run_id: &'a str,
    pub step: u64,
    /// Labels earlier steps left on the run (`read_sensitive`, `untrusted_input`, ...).
    pub labels: &'a [String],
    /// The kinds of finding the detectors made on this call before it was decided, and those
    /// made earlier that taint the run (`output_injection`, `rug_pull`, ...):
    /// `context.findings`.
    pub findings: &'a [String],
    /// The tool's flow marks from the config (`untrusted_input`, `read_sensitive`, `egress`):
    /// `resource.flows`.
    pub flows: &'a [String],
    /// Whether a human approved exactly this call (`context.approval.granted`). The engine
    /// takes the caller's word for it: set it only when an approval bound to this agent, run,
    /// tool and arguments exists. `false` for every call that has none.
    pub approval_granted: bool,
}

/// The MCP tool annotations the schema declares on `Custos::Tool`.
const ANNOTATION_HINTS: [&str; 4] = ["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"];

/// The Cedar names Custos uses, parsed once.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    agent: EntityTypeName,
    group: EntityTypeName,
    tool: EntityTypeName,
    server: EntityTypeName,
    pub(crate) call_tool: EntityUid,
}

impl Names {
    pub(crate) fn new() -> Result<Self, String> {
        let ty = |name: &str| EntityTypeName::from_str(name).map_err(|e| e.to_string());
        Ok(Self {
            agent: ty("Custos::Agent")?,
            group: ty("Custos::Group")?,
            tool: ty("Custos::Tool")?,
            server: ty("Custos::Server")?,
            call_tool: EntityUid::from_type_name_and_id(ty("Custos::Action")?, EntityId::new("call_tool")),
        })
    }

    pub(crate) fn agent_uid(&self, agent: &Agent) -> EntityUid {
        uid(&self.agent, &agent.id.0)
    }

    pub(crate) fn tool_uid(&self, tool: &ToolRef) -> EntityUid {
        uid(&self.tool, &tool.to_string())
    }

    /// The uids of `agent`'s groups: its ancestors, for `principal in ...`.
    pub(crate) fn group_uids(&self, agent: &Agent) -> Vec<EntityUid> {
        agent.groups.iter().map(|g| uid(&self.group, g)).collect()
    }

    /// The uid of `tool`'s server: its ancestor, for `resource in ...`.
    pub(crate) fn server_uid(&self, tool: &ToolRef) -> EntityUid {
        uid(&self.server, tool.server())
    }

    /// The agent, its groups, the tool and its server, checked against `schema` (which also
    /// adds the action entities).
    pub(crate) fn entities(
        &self,
        schema: &Schema,
        agent: &Agent,
        tool: &ToolInfo<'_>,
        flows: &[String],
    ) -> Result<Entities, String> {
        let groups: BTreeSet<&str> = agent.groups.iter().map(String::as_str).collect();
        let group_uids: Vec<EntityUid> = groups.iter().map(|g| uid(&self.group, g)).collect();
        let agent_entity = Entity::new(
            self.agent_uid(agent),
            HashMap::from([
                ("owner".to_owned(), RestrictedExpression::new_string(agent.owner.clone())),
                ("purpose".to_owned(), RestrictedExpression::new_string(agent.purpose.clone())),
            ]),
            group_uids.iter().cloned().collect(),
        )
        .map_err(|e| lowercase_first(&e.to_string()))?;

        let server_uid = uid(&self.server, tool.tool.server());
        let hints = ANNOTATION_HINTS.iter().filter_map(|hint| {
            let value = tool.annotations?.get(*hint)?.as_bool()?;
            Some(((*hint).to_owned(), RestrictedExpression::new_bool(value)))
        });
        let annotations = record(hints.collect()).map_err(|e| e.to_string())?;
        let tool_entity = Entity::new(
            self.tool_uid(tool.tool),
            HashMap::from([
                ("server".to_owned(), RestrictedExpression::new_string(tool.tool.server().to_owned())),
                ("name".to_owned(), RestrictedExpression::new_string(tool.tool.name().to_owned())),
                ("class".to_owned(), RestrictedExpression::new_string(tool.class.as_str().to_owned())),
                ("annotations".to_owned(), annotations),
                ("flows".to_owned(), string_set(flows)),
            ]),
            [server_uid.clone()].into_iter().collect(),
        )
        .map_err(|e| lowercase_first(&e.to_string()))?;

        let all = group_uids.into_iter().map(Entity::with_uid).chain([
            agent_entity,
            tool_entity,
            Entity::with_uid(server_uid),
        ]);
        Entities::from_entities(all, Some(schema)).map_err(|e| with_causes(&e))
    }
}

/// What deciding a call of one tool by one agent needs apart from the call's context: the
/// entities, and the policies whose scope can match them.
///
/// The policies with an argument guard ([`crate::guard`]) are kept apart: a call is decided
/// over the unguarded ones and those whose guard keys its arguments all have. The sets for the
/// combinations of guard keys seen lately are kept, since one tool is called with the same
/// arguments over and over.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) entities: Entities,
    /// Every applicable policy, for a call whose arguments pass every guard; the only set
    /// when no applicable policy has a guard.
    all: Arc<PolicySet>,
    /// The applicable policies that have no guard.
    unguarded: Vec<Policy>,
    /// The guarded ones, with the indices in `keys` of their guard's keys.
    guarded: Vec<(Vec<usize>, Policy)>,
    /// Every key a guard names, to its index.
    keys: HashMap<String, usize>,
    /// The set for each combination of guard keys present (sorted indices into `keys`).
    sets: Mutex<HashMap<Vec<usize>, Arc<PolicySet>>>,
}

/// Combinations of guard keys whose policy sets one [`Prepared`] keeps.
const MAX_GUARD_SETS: usize = 8;

impl Prepared {
    /// `policies` (applicable to one agent and tool) with their guards.
    pub(crate) fn new(entities: Entities, policies: Vec<(Policy, &[String])>) -> Result<Self, String> {
        let mut keys: HashMap<String, usize> = HashMap::new();
        let (mut unguarded, mut guarded) = (Vec::new(), Vec::new());
        let all = Arc::new(policy_set(policies.iter().map(|(p, _)| p.clone()))?);
        for (policy, guard) in policies {
            if guard.is_empty() {
                unguarded.push(policy);
                continue;
            }
            let indices = guard
                .iter()
                .map(|key| {
                    let next = keys.len();
                    *keys.entry(key.clone()).or_insert(next)
                })
                .collect();
            guarded.push((indices, policy));
        }
        Ok(Self { entities, all, unguarded, guarded, keys, sets: Mutex::default() })
    }

    /// The most policies it may come to hold: every applicable policy twice (in `all`, and
    /// split by guard), and as many again for each combination of guard keys it may keep a
    /// set for.
    pub(crate) fn weight(&self) -> usize {
        let combinations =
            u32::try_from(self.keys.len()).ok().and_then(|n| 2usize.checked_pow(n)).unwrap_or(usize::MAX);
        let sets = combinations.saturating_sub(1).min(MAX_GUARD_SETS);
        self.all.policies().count().max(1).saturating_mul(sets + 2)
    }

    /// The policies to decide a call with these `arguments` over.
    pub(crate) fn policies(&self, arguments: &serde_json::Value) -> Result<Arc<PolicySet>, String> {
        if self.guarded.is_empty() {
            return Ok(self.all.clone());
        }
        let mut present: Vec<usize> = match arguments.as_object() {
            Some(map) if map.len() < self.keys.len() => map.keys().filter_map(|k| self.keys.get(k).copied()).collect(),
            Some(map) => self.keys.iter().filter(|(k, _)| map.contains_key(*k)).map(|(_, &i)| i).collect(),
            None => Vec::new(),
        };
        if present.len() == self.keys.len() {
            return Ok(self.all.clone());
        }
        present.sort_unstable();
        if let Some(found) = self.sets.lock().ok().and_then(|sets| sets.get(&present).cloned()) {
            return Ok(found);
        }
        let passed = self.guarded.iter().filter(|(guard, _)| guard.iter().all(|k| present.binary_search(k).is_ok()));
        let set = Arc::new(policy_set(self.unguarded.iter().chain(passed.map(|(_, p)| p)).cloned())?);
        if let Ok(mut sets) = self.sets.lock() {
            if sets.len() >= MAX_GUARD_SETS {
                sets.clear();
            }
            sets.insert(present, set.clone());
        }
        Ok(set)
    }
}

fn policy_set(policies: impl Iterator<Item = Policy>) -> Result<PolicySet, String> {
    PolicySet::from_policies(policies).map_err(|e| with_causes(&e))
}

/// [`Prepared`] for the agent and tool pairs seen lately: building and validating entities, and
/// evaluating policies scoped to other agents and tools, cost more than deciding the call, and
/// an agent calls the same few tools over and over.
///
/// Keyed by everything [`Names::entities`] reads, so a changed agent, class, annotation or
/// flow mark is a different key, never a stale entry. Bounded: emptied when full.
#[derive(Debug, Default)]
pub(crate) struct PreparedCache {
    built: Mutex<Built>,
}

#[derive(Debug, Default)]
struct Built {
    prepared: HashMap<PreparedKey, Arc<Prepared>>,
    /// The sum of their [`Prepared::weight`]s.
    weight: usize,
}

/// Pairs of agent and tool remembered at once.
pub(crate) const MAX_PREPARED: usize = 4096;

/// The most policies the cached sets may hold between them, counted by [`Prepared::weight`]:
/// a policy in a set costs a few hundred bytes, so this bounds the cache to about 100 MB
/// however large the policy set.
pub(crate) const MAX_PREPARED_WEIGHT: usize = 1 << 18;

#[derive(Debug, PartialEq, Eq, Hash)]
struct PreparedKey {
    agent: String,
    owner: String,
    purpose: String,
    groups: Vec<String>,
    tool: ToolRef,
    class: ToolClass,
    hints: [Option<bool>; 4],
    flows: Vec<String>,
}

impl PreparedCache {
    /// How many pairs are held, and their total weight.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        self.built.lock().map(|b| (b.prepared.len(), b.weight)).unwrap_or_default()
    }

    /// What deciding a call of `tool` by `agent` needs, from the cache or built by `build` and
    /// kept.
    pub(crate) fn get_or_build(
        &self,
        agent: &Agent,
        tool: &ToolInfo<'_>,
        flows: &[String],
        build: impl FnOnce() -> Result<Prepared, String>,
    ) -> Result<Arc<Prepared>, String> {
        let key = PreparedKey {
            agent: agent.id.0.clone(),
            owner: agent.owner.clone(),
            purpose: agent.purpose.clone(),
            groups: agent.groups.clone(),
            tool: tool.tool.clone(),
            class: tool.class,
            hints: ANNOTATION_HINTS.map(|hint| tool.annotations.and_then(|a| a.get(hint)?.as_bool())),
            flows: flows.to_vec(),
        };
        if let Some(found) = self.built.lock().ok().and_then(|built| built.prepared.get(&key).cloned()) {
            return Ok(found);
        }
        let prepared = Arc::new(build()?);
        if let Ok(mut built) = self.built.lock() {
            let weight = prepared.weight();
            if built.prepared.len() >= MAX_PREPARED || built.weight.saturating_add(weight) > MAX_PREPARED_WEIGHT {
                *built = Built::default();
            }
            built.weight = built.weight.saturating_add(weight);
            if let Some(replaced) = built.prepared.insert(key, prepared.clone()) {
                built.weight = built.weight.saturating_sub(replaced.weight());
            }
        }
        Ok(prepared)
    }
}

/// A Cedar set of strings, without duplicates.
fn string_set(items: &[String]) -> RestrictedExpression {
    let unique: BTreeSet<&String> = items.iter().collect();
    RestrictedExpression::new_set(unique.into_iter().map(|s| RestrictedExpression::new_string(s.clone())))
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// The context of a call: `{ arguments: ..., run: { id, step, labels }, findings,
/// approval: { granted } }`, with the numbers among the arguments that policy cannot read.
pub(crate) fn context(req: &CallRequest<'_>) -> Result<(Context, Vec<Unreadable>), String> {
    let (arguments, unreadable) = arguments_record(req.arguments).map_err(|e| e.to_string())?;
    let run = record(vec![
        ("id".to_owned(), RestrictedExpression::new_string(req.run_id.to_owned())),
        // A step past i64::MAX cannot happen in practice; saturating keeps `step > n` true.
        ("step".to_owned(), RestrictedExpression::new_long(i64::try_from(req.step).unwrap_or(i64::MAX))),
        ("labels".to_owned(), string_set(req.labels)),
    ])
    .map_err(|e| e.to_string())?;
    let approval = record(vec![("granted".to_owned(), RestrictedExpression::new_bool(req.approval_granted))])
        .map_err(|e| e.to_string())?;
    Context::from_pairs([
        ("arguments".to_owned(), arguments),
        ("run".to_owned(), run),
        ("findings".to_owned(), string_set(req.findings)),
        ("approval".to_owned(), approval),
    ])
    .map(|context| (context, unreadable))
    .map_err(|e| lowercase_first(&e.to_string()))
}
