//! What both backends say about an agent's name and departure: who may take a name (and the
//! refusal when its holder is alive), why its attempts are lost, why it cannot be forgotten.

use crate::model::{AgentState, Millis};
use crate::store::StoreError;

/// The refusal of a registration under a name whose holder is alive (another agent, or one
/// that cannot prove it is the holder restarted: a different or missing instance id).
pub(crate) fn name_taken(name: &str, holder_host: &str, silent_ms: Millis) -> StoreError {
    StoreError::Conflict(format!(
        "agent name {name:?} is taken by a live agent (host {holder_host}, last seen {}s ago): \
         give this agent its own name with --name or FERRY_NAME (or leave both unset for the \
         default, the hostname plus this agent's id), or stop the other agent",
        silent_ms.max(0) / 1000
    ))
}

/// Why attempts of the name's earlier session are lost when it registers again: `alive`
/// when that session was still alive (the same agent, restarted before its timeout).
pub(crate) fn lost_because(name: &str, alive: bool) -> String {
    if alive {
        format!("agent {name} restarted while running it")
    } else {
        format!("agent {name} restarted after its session ended")
    }
}

/// Why attempts still running on an agent are lost when its session ends in `state`.
pub(crate) fn ended_because(name: &str, state: AgentState) -> String {
    match state {
        AgentState::Drained => format!("agent {name} left (drained) while it was running"),
        _ => format!("agent {name} stopped heartbeating"),
    }
}

/// Why an attempt its agent stopped by itself is lost, in the agent's words.
pub(crate) fn given_up_because(name: &str, why: &str) -> String {
    format!("agent {name} stopped it: {why}")
}

/// The refusal to forget an agent that has not left.
pub(crate) fn still_live(name: &str, state: AgentState) -> StoreError {
    StoreError::Precondition(format!(
        "agent {name} is {state}: only an agent that has left (drained or dead) can be \
         forgotten; drain it first (ferry agents drain {name}) and forget it once it is drained"
    ))
}

/// The refusal to drain an agent that has already left.
pub(crate) fn already_gone(name: &str, state: AgentState) -> StoreError {
    StoreError::Precondition(format!(
        "agent {name} has already left ({state}); ferry agents forget {name} removes it from the list"
    ))
}
