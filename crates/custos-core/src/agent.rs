//! Agent identity: the non-human identity that makes tool calls.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An agent's id as configured, e.g. `support-bot` or a SPIFFE id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(pub String);

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One workflow execution. A `custos run` process is one run unless the caller names one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub String);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An agent as the configuration declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    /// The human or team accountable for the agent; recorded so every call has an owner.
    pub owner: String,
    /// What the agent is for, in words; shown in inventories and reviews.
    pub purpose: String,
    /// Groups the agent belongs to; Cedar sees them as the agent's parents.
    pub groups: Vec<String>,
}
