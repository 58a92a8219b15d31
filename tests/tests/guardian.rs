//! A task never outlives its agent's lease (DESIGN.md invariant 7): the guardian of an attempt
//! stops the whole task — an escaped descendant too — when its agent is killed or frozen past
//! the agent timeout, before the controller can start the task again; an agent restarted on
//! the same work directory stops what an earlier one left. Checked from the record and from
//! `/proc`, never from logs.

#[path = "guardian/common.rs"]
mod common;

#[path = "guardian/frozen.rs"]
mod frozen;
#[path = "guardian/killed.rs"]
mod killed;
#[path = "guardian/restart.rs"]
mod restart;
