//! Reading the CLI's `--output json` documents (`jobs show`, `jobs list`, `agents list`).
//! Lookups panic with the whole document, since a missing field is a test failure.

use anyhow::{bail, Result};
use serde_json::Value;

/// The items of a list document: a bare JSON array, or an object holding it under `key`.
pub fn items(doc: &Value, key: &str) -> Result<Vec<Value>> {
    match doc {
        Value::Array(items) => Ok(items.clone()),
        Value::Object(map) => match map.get(key) {
            Some(Value::Array(items)) => Ok(items.clone()),
            _ => bail!("expected a list or {{\"{key}\": [...]}}, got {doc:#}"),
        },
        _ => bail!("expected a list or {{\"{key}\": [...]}}, got {doc:#}"),
    }
}

/// The `state` string of a job, task, attempt or agent document.
pub fn state(doc: &Value) -> &str {
    doc["state"]
        .as_str()
        .unwrap_or_else(|| panic!("no string `state` in {doc:#}"))
}

/// Task `id` of a `jobs show` document.
pub fn task<'a>(job: &'a Value, id: &str) -> &'a Value {
    job["tasks"]
        .as_array()
        .and_then(|tasks| tasks.iter().find(|t| t["id"] == id))
        .unwrap_or_else(|| panic!("no task `{id}` in {job:#}"))
}

/// State of task `id` of a `jobs show` document.
pub fn task_state<'a>(job: &'a Value, id: &str) -> &'a str {
    state(task(job, id))
}

/// Attempts of task `id`, in the order listed (by number); none when the field is absent.
pub fn attempts<'a>(job: &'a Value, id: &str) -> &'a [Value] {
    match &task(job, id)["attempts"] {
        Value::Array(attempts) => attempts,
        Value::Null => &[],
        other => panic!("task `{id}` has `attempts` {other} instead of a list in {job:#}"),
    }
}

/// States of the attempts of task `id`, in order.
pub fn attempt_states<'a>(job: &'a Value, id: &str) -> Vec<&'a str> {
    attempts(job, id).iter().map(state).collect()
}

/// The agent that ran the last attempt of task `id`.
pub fn last_agent<'a>(job: &'a Value, id: &str) -> &'a str {
    let attempt = attempts(job, id)
        .last()
        .unwrap_or_else(|| panic!("task `{id}` has no attempt in {job:#}"));
    attempt["agent"]
        .as_str()
        .unwrap_or_else(|| panic!("attempt without `agent` in {job:#}"))
}
