//! Policy files → one validated policy set, with the id, position and annotations of every
//! policy.
//!
//! Ids: a policy's `@id("...")` annotation if it has one, else `<file stem>:<n>` where `n`
//! counts the file's policies from 0 in source order. Ids are unique across all files.
//!
//! Approvals: `@approval("GROUP")` marks a `forbid` that a human of `GROUP` may lift for one
//! call. It is refused on a `permit` (an approval takes a forbid away, it grants nothing), with
//! a group that is not a plain name, and on a forbid whose conditions never read
//! `context.approval.granted` (no approval could ever lift it).

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{Effect, PolicyId, PolicySet, Schema, ValidationMode, ValidationWarning, Validator};
use serde::Serialize;

use crate::error::{first_offset, one_line, LineIndex, PolicyError, SourcePos};
use crate::guard::argument_guard;

/// Whether a policy grants or takes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyEffect {
    Permit,
    Forbid,
}

impl PolicyEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permit => "permit",
            Self::Forbid => "forbid",
        }
    }
}

impl std::fmt::Display for PolicyEffect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engine remembers about each policy to report on it.
#[derive(Clone, Debug)]
pub(crate) struct PolicyMeta {
    pub(crate) id: String,
    /// Where the policy starts (its first annotation, or `permit`/`forbid`).
    pub(crate) at: SourcePos,
    pub(crate) effect: PolicyEffect,
    /// The `@reason("...")` annotation: shown to people when this policy denies a call.
    pub(crate) reason: Option<String>,
    /// The `@approval("GROUP")` annotation (only ever on a `forbid`): who may lift this policy
    /// for one call. A deny made only of such forbids is a hold.
    pub(crate) approval: Option<String>,
    /// The argument keys the policy cannot apply without: see [`crate::guard`].
    pub(crate) guard: Vec<String>,
}

/// A loaded, validated policy set.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) set: PolicySet,
    /// Every policy in load order (files in the order given, policies in source order).
    pub(crate) policies: Vec<PolicyMeta>,
}

/// Parses every `(file name, text)`, gives each policy its id and validates the whole set
/// against `schema` in strict mode. The first problem (in file and source order) is the error.
pub(crate) fn load(schema: &Schema, sources: &[(String, String)]) -> Result<Loaded, PolicyError> {
    let mut set = PolicySet::new();
    let mut policies: Vec<PolicyMeta> = Vec::new();
    // id → index into `policies`, to report duplicates and to find a policy's file text.
    let mut by_id: HashMap<String, usize> = HashMap::new();
    // index into `policies` → index into `sources`.
    let mut file_of: Vec<usize> = Vec::new();

    for (file_index, (name, text)) in sources.iter().enumerate() {
        let stem = Path::new(name).file_stem().map_or_else(|| name.clone(), |s| s.to_string_lossy().into_owned());
        for statement in parse_file(name, text)? {
            let id = match &statement.id_annotation {
                Some(id) if id.is_empty() => return Err(PolicyError::EmptyId { at: statement.at }),
                Some(id) => id.clone(),
                None => format!("{stem}:{}", statement.index),
            };
            if let Some(first) = by_id.get(&id).and_then(|&i| policies.get(i)) {
                return Err(PolicyError::DuplicateId { at: statement.at, policy: id, first: first.at.clone() });
            }
            check_approval(&statement, &id)?;
            let policy = statement.policy.new_id(PolicyId::new(&id));
            let guard = argument_guard(&policy);
            set.add(policy).map_err(|e| PolicyError::Parse { at: statement.at.clone(), message: one_line(&e) })?;
            by_id.insert(id.clone(), policies.len());
            file_of.push(file_index);
            policies.push(PolicyMeta {
                id,
                at: statement.at,
                effect: statement.effect,
                reason: statement.reason,
                approval: statement.approval,
                guard,
            });
        }
    }

    let validation = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    // A policy that can never apply is refused too: Cedar only warns, but for a gateway it is
    // nearly always a mistake, and a dangerous one when it is a `forbid`. The usual cause is a
    // typo after `has`: `context.arguments has amout` is simply false, not an error.
    // Errors first: an unknown action is an error, and also makes the policy never apply.
    let problems: Vec<(&PolicyId, &dyn miette::Diagnostic, &str)> = if validation.validation_passed() {
        validation
            .validation_warnings()
            .filter_map(|w| match w {
                ValidationWarning::ImpossiblePolicy(_) => Some((w.policy_id(), w as &dyn miette::Diagnostic, HAS_HINT)),
                ValidationWarning::InvalidActionApplication(_) => {
                    Some((w.policy_id(), w as &dyn miette::Diagnostic, ""))
                }
                _ => None,
            })
            .collect()
    } else {
        validation.validation_errors().map(|e| (e.policy_id(), e as &dyn miette::Diagnostic, "")).collect()
    };
    let first = problems
        .into_iter()
        .filter_map(|(id, diag, hint)| {
            let policy_index = *by_id.get(id_str(id))?;
            let meta = policies.get(policy_index)?;
            let (name, text) = sources.get(*file_of.get(policy_index)?)?;
            let at = first_offset(diag).map_or_else(|| meta.at.clone(), |offset| SourcePos::locate(name, text, offset));
            let message = one_line(diag);
            let prefix = format!("for policy `{}`, ", meta.id);
            let message = message.strip_prefix(&prefix).map(str::to_owned).unwrap_or(message);
            Some((policy_index, at, meta.id.clone(), format!("{message}{hint}")))
        })
        .min_by(|a, b| (a.0, a.1.line, a.1.column).cmp(&(b.0, b.1.line, b.1.column)));
    if let Some((_, at, policy, message)) = first {
        return Err(PolicyError::Validation { at, policy, message });
    }
    if !validation.validation_passed() {
        // Only reachable if Cedar reported an error for a policy id we did not add.
        return Err(PolicyError::Validation {
            at: sources.first().map_or_else(|| SourcePos::start_of("policies"), |(name, _)| SourcePos::start_of(name)),
            policy: String::new(),
            message: "the policy set does not validate".to_owned(),
        });
    }
    Ok(Loaded { set, policies })
}

/// The annotation naming the approver group of a `forbid` an approval lifts.
const APPROVAL: &str = "approval";

/// Refuses an `@approval` annotation that could not work: on a `permit`, with a group that is
/// not a plain name, or on a forbid whose conditions never read `context.approval.granted`.
fn check_approval(statement: &Statement, id: &str) -> Result<(), PolicyError> {
    let Some(group) = &statement.approval else { return Ok(()) };
    let at = || statement.at.clone();
    if statement.effect == PolicyEffect::Permit {
        return Err(PolicyError::ApprovalOnPermit { at: at(), policy: id.to_owned() });
    }
    if !is_group_name(group) {
        // Escaped: the message is one line whatever the annotation holds.
        let group = group.escape_debug().to_string();
        return Err(PolicyError::ApprovalGroup { at: at(), policy: id.to_owned(), group });
    }
    // A policy Cedar cannot turn into JSON is not one we can check: refuse it rather than
    // accept a hold that might never lift.
    let reads_granted = statement.policy.to_json().is_ok_and(|json| reads_approval_granted(&json));
    if !reads_granted {
        return Err(PolicyError::ApprovalNeverLifted { at: at(), policy: id.to_owned() });
    }
    Ok(())
}

/// Whether `group` can name an approver group: non-empty, letters, digits, `_`, `.`, `-`.
fn is_group_name(group: &str) -> bool {
    !group.is_empty() && group.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Whether a policy in Cedar's JSON form reads `context.approval.granted` anywhere. In that
/// form an attribute access is `{".": {"left": <expr>, "attr": "<name>"}}` and a variable
/// `{"Var": "context"}`; `has` tests are not reads.
fn reads_approval_granted(json: &serde_json::Value) -> bool {
    let is_granted_read = attribute_of(json, "granted")
        .and_then(|approval| attribute_of(approval, "approval"))
        .is_some_and(|context| context.get("Var").and_then(serde_json::Value::as_str) == Some("context"));
    is_granted_read
        || match json {
            serde_json::Value::Object(map) => map.values().any(reads_approval_granted),
            serde_json::Value::Array(items) => items.iter().any(reads_approval_granted),
            _ => false,
        }
}

/// `<expr>` when `json` is the access `<expr>.<attr>` in Cedar's JSON form.
fn attribute_of<'a>(json: &'a serde_json::Value, attr: &str) -> Option<&'a serde_json::Value> {
    let access = json.get(".")?;
    if access.get("attr")?.as_str()? == attr {
        access.get("left")
    } else {
        None
    }
}

/// Added to the message of a policy whose conditions are always false.
const HAS_HINT: &str = " (a `has` test of an attribute the schema does not declare is always false)";

/// One static policy of a file, before it gets its final id.
struct Statement {
    /// Position among the file's statements, from 0.
    index: usize,
    at: SourcePos,
    policy: cedar_policy::Policy,
    effect: PolicyEffect,
    id_annotation: Option<String>,
    reason: Option<String>,
    approval: Option<String>,
}

/// Parses one file into its static policies in source order. Templates are refused.
fn parse_file(name: &str, text: &str) -> Result<Vec<Statement>, PolicyError> {
    let parsed = PolicySet::from_str(text).map_err(|err| {
        let at = first_offset(&err)
            .map_or_else(|| SourcePos::start_of(name), |offset| SourcePos::locate(name, text, offset));
        PolicyError::Parse { at, message: one_line(&err) }
    })?;

    // Cedar names a file's statements `policy0`, `policy1`, ... in source order, templates
    // included, and keeps each one's source text. Searching for those texts in order gives
    // each statement's position; Cedar exposes no other way to get it.
    let mut texts: Vec<(usize, Option<String>, bool)> = parsed
        .policies()
        .map(|p| (statement_index(p.id()), p.to_cedar(), false))
        .chain(parsed.templates().map(|t| (statement_index(t.id()), Some(t.to_cedar()), true)))
        .collect();
    texts.sort_by_key(|(index, _, _)| *index);
    let comments = comment_ranges(text);
    let lines = LineIndex::new(text);
    let mut positions: HashMap<usize, SourcePos> = HashMap::new();
    let mut search_from = 0;
    for (index, source, is_template) in &texts {
        // Between two statements there is only whitespace and comments, so the first match
        // outside a comment is the statement (a commented-out copy must not count).
        let found = source.as_deref().and_then(|s| {
            let start = text
                .get(search_from..)?
                .match_indices(s)
                .map(|(at, _)| search_from + at)
                .find(|at| !comments.iter().any(|c| c.contains(at)))?;
            Some((start, start + s.len()))
        });
        let at = match found {
            Some((start, end)) => {
                search_from = end;
                lines.locate(name, start)
            }
            None => lines.locate(name, search_from),
        };
        if *is_template {
            return Err(PolicyError::Template { at });
        }
        positions.insert(*index, at);
    }

    let mut statements: Vec<Statement> = parsed
        .policies()
        .map(|p| {
            let index = statement_index(p.id());
            Statement {
                index,
                at: positions.get(&index).cloned().unwrap_or_else(|| SourcePos::start_of(name)),
                policy: p.clone(),
                effect: match p.effect() {
                    Effect::Permit => PolicyEffect::Permit,
                    Effect::Forbid => PolicyEffect::Forbid,
                },
                id_annotation: p.annotation("id").map(str::to_owned),
                reason: p.annotation("reason").map(str::to_owned),
                approval: p.annotation(APPROVAL).map(str::to_owned),
            }
        })
        .collect();
    statements.sort_by_key(|s| s.index);
    Ok(statements)
}

/// The byte ranges of the `//` comments in a Cedar file (`//` inside a string is not one).
fn comment_ranges(text: &str) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut in_string = false;
    while let Some((at, ch)) = chars.next() {
        if in_string {
            match ch {
                '\\' => {
                    chars.next();
                }
                '"' => in_string = false,
                _ => {}
            }
        } else if ch == '"' {
            in_string = true;
        } else if ch == '/' && matches!(chars.peek(), Some((_, '/'))) {
            let end = text.get(at..).and_then(|rest| rest.find('\n')).map_or(text.len(), |n| at + n);
            ranges.push(at..end);
            while chars.next_if(|(next, _)| *next < end).is_some() {}
        }
    }
    ranges
}

/// `n` from Cedar's generated id `policy<n>`.
fn statement_index(id: &PolicyId) -> usize {
    id_str(id).strip_prefix("policy").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX)
}

/// A policy id as text.
pub(crate) fn id_str(id: &PolicyId) -> &str {
    id.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_found_outside_strings() {
        let text = "a // one\n\"// not\\\" // still not\" b // two";
        let found: Vec<&str> = comment_ranges(text).into_iter().map(|r| &text[r]).collect();
        assert_eq!(found, ["// one", "// two"]);
    }

    #[test]
    fn positions_skip_commented_out_copies() {
        let text = "// permit (principal, action, resource);\n\n  permit (principal, action, resource);\n";
        let statements = parse_file("f.cedar", text).unwrap();
        assert_eq!(statements.len(), 1);
        assert_eq!(statements[0].at.to_string(), "f.cedar:3:3");
    }
}
