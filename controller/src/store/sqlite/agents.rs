//! Agents in SQLite: registration (which loses an earlier session's attempts), listing, state,
//! and liveness (sessions' last signs of life and metrics, silent agents, death).

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::{backend, dispatch, from_json, to_json, transitions};
use crate::model::{AgentRecord, AgentState, AttemptKey, AttemptState, HostMetrics, Millis};
use crate::store::{
    agent_rules::{
        already_gone, ended_because, given_up_because, lost_because, name_taken, still_live,
    },
    AgentRegistration, AgentSeen, Effects, StoreError,
};

pub(super) fn register(
    conn: &Connection,
    reg: &AgentRegistration,
    now: Millis,
) -> Result<Effects, StoreError> {
    let holder: Option<(String, String, String, Millis)> = conn
        .prepare_cached("SELECT state, instance, hostname, seen_at FROM agents WHERE name = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([&reg.name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(backend)?;
    let why = match holder {
        Some((state, instance, hostname, seen_at)) => {
            let gone = AgentState::parse(&state).is_some_and(AgentState::is_gone);
            let alive = !gone && seen_at >= reg.live_after;
            if alive && (instance.is_empty() || instance != reg.instance) {
                return Err(name_taken(&reg.name, &hostname, now - seen_at));
            }
            lost_because(&reg.name, alive)
        }
        None => lost_because(&reg.name, false),
    };
    let effects = dispatch::lose_all(conn, &reg.name, &why, now)?;
    conn.execute(
        "INSERT INTO agents (name, session, state, queues, labels, max_tasks, hostname, version, registered_at, seen_at, instance)
         VALUES (?1, ?2, 'ready', ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)
         ON CONFLICT (name) DO UPDATE SET session = excluded.session, state = 'ready', queues = excluded.queues,
             labels = excluded.labels, max_tasks = excluded.max_tasks, hostname = excluded.hostname,
             version = excluded.version, registered_at = excluded.registered_at, seen_at = excluded.seen_at,
             instance = excluded.instance",
        params![
            reg.name,
            reg.session,
            to_json(&reg.queues)?,
            to_json(&reg.labels)?,
            reg.max_tasks,
            reg.hostname,
            reg.version,
            now,
            reg.instance
        ],
    )
    .map_err(backend)?;
    Ok(effects)
}

const COLUMNS: &str = "name, session, state, queues, labels, max_tasks, hostname, version, \
                       registered_at, seen_at, metrics";

fn record(r: &rusqlite::Row<'_>, running: u32) -> Result<AgentRecord, StoreError> {
    let state: String = r.get(2).map_err(backend)?;
    let metrics: Option<String> = r.get(10).map_err(backend)?;
    Ok(AgentRecord {
        name: r.get(0).map_err(backend)?,
        session: r.get(1).map_err(backend)?,
        state: AgentState::parse(&state)
            .ok_or_else(|| StoreError::backend(format!("unknown agent state {state:?}")))?,
        queues: from_json(&r.get::<_, String>(3).map_err(backend)?)?,
        labels: from_json(&r.get::<_, String>(4).map_err(backend)?)?,
        max_tasks: r.get(5).map_err(backend)?,
        hostname: r.get(6).map_err(backend)?,
        version: r.get(7).map_err(backend)?,
        registered_at: r.get(8).map_err(backend)?,
        seen_at: r.get(9).map_err(backend)?,
        metrics: metrics.map(|m| from_json::<HostMetrics>(&m)).transpose()?,
        running,
    })
}

pub(super) fn list(conn: &Connection) -> Result<Vec<AgentRecord>, StoreError> {
    let mut running: HashMap<String, u32> = HashMap::new();
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT agent, COUNT(*) FROM attempts WHERE state = 'running' GROUP BY agent",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(backend)?;
        for row in rows {
            let (agent, count) = row.map_err(backend)?;
            running.insert(agent, count);
        }
    }
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM agents ORDER BY name"))
        .map_err(backend)?;
    let mut rows = stmt.query([]).map_err(backend)?;
    let mut agents = Vec::new();
    while let Some(r) = rows.next().map_err(backend)? {
        let name: String = r.get(0).map_err(backend)?;
        agents.push(record(r, running.get(&name).copied().unwrap_or(0))?);
    }
    Ok(agents)
}

pub(super) fn get(conn: &Connection, name: &str) -> Result<Option<AgentRecord>, StoreError> {
    let running: u32 = conn
        .prepare_cached("SELECT COUNT(*) FROM attempts WHERE state = 'running' AND agent = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |r| r.get(0)))
        .map_err(backend)?;
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM agents WHERE name = ?1"))
        .map_err(backend)?;
    let mut rows = stmt.query([name]).map_err(backend)?;
    match rows.next().map_err(backend)? {
        Some(r) => record(r, running).map(Some),
        None => Ok(None),
    }
}

/// Records the batch's signs of life: each session still its agent's and not dead is seen at
/// `now` (never moved back), with its metrics when given.
pub(super) fn touch(conn: &Connection, seen: &[AgentSeen], now: Millis) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE agents SET seen_at = MAX(seen_at, ?3), metrics = COALESCE(?4, metrics)
             WHERE name = ?1 AND session = ?2 AND state NOT IN ('dead', 'drained')",
        )
        .map_err(backend)?;
    for s in seen {
        let metrics = s.metrics.as_ref().map(to_json).transpose()?;
        stmt.execute(params![s.name, s.session, now, metrics])
            .map_err(backend)?;
    }
    Ok(())
}

/// Agents not gone last seen before `before`, with their session, by name.
pub(super) fn silent(
    conn: &Connection,
    before: Millis,
) -> Result<Vec<(String, String)>, StoreError> {
    conn.prepare_cached(
        "SELECT name, session FROM agents WHERE state NOT IN ('dead', 'drained') AND seen_at < ?1
         ORDER BY name",
    )
    .and_then(|mut stmt| {
        stmt.query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    })
    .map_err(backend)
}

pub(super) fn set_state(
    conn: &Connection,
    name: &str,
    state: AgentState,
) -> Result<(), StoreError> {
    let current: Option<String> = conn
        .prepare_cached("SELECT state FROM agents WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |r| r.get(0)).optional())
        .map_err(backend)?;
    let current = current.ok_or_else(|| StoreError::NotFound(format!("agent {name}")))?;
    if let Some(gone) = AgentState::parse(&current).filter(|s| s.is_gone()) {
        return Err(already_gone(name, gone));
    }
    conn.execute(
        "UPDATE agents SET state = ?2 WHERE name = ?1",
        params![name, state.as_str()],
    )
    .map_err(backend)?;
    Ok(())
}

pub(super) fn dead(
    conn: &Connection,
    name: &str,
    session: &str,
    now: Millis,
) -> Result<Effects, StoreError> {
    end(conn, name, session, AgentState::Dead, now)
}

/// The agent's session ends in `state` (dead or drained); what still runs on it is lost.
pub(super) fn end(
    conn: &Connection,
    name: &str,
    session: &str,
    state: AgentState,
    now: Millis,
) -> Result<Effects, StoreError> {
    let changed = conn
        .execute(
            "UPDATE agents SET state = ?3
             WHERE name = ?1 AND session = ?2 AND state NOT IN ('dead', 'drained')",
            params![name, session, state.as_str()],
        )
        .map_err(backend)?;
    if changed == 0 {
        return Ok(Effects::default());
    }
    dispatch::lose_all(conn, name, &ended_because(name, state), now)
}

/// Removes a departed agent's record; a live one is refused (`Precondition`).
pub(super) fn forget(conn: &Connection, name: &str) -> Result<(), StoreError> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM agents WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |r| r.get(0)).optional())
        .map_err(backend)?;
    let state = state.ok_or_else(|| StoreError::NotFound(format!("agent {name}")))?;
    let state = AgentState::parse(&state)
        .ok_or_else(|| StoreError::backend(format!("unknown agent state {state:?}")))?;
    if !state.is_gone() {
        return Err(still_live(name, state));
    }
    conn.execute("DELETE FROM agents WHERE name = ?1", [name])
        .map_err(backend)?;
    Ok(())
}

/// Attempts the agent stopped by itself: those still its current ones become `lost`, with its
/// reason.
pub(super) fn given_up(
    conn: &Connection,
    agent: &str,
    given_up: &[(AttemptKey, String)],
    now: Millis,
) -> Result<Effects, StoreError> {
    let mut effects = Effects::default();
    for (key, why) in given_up {
        if transitions::fence(conn, agent, key).is_ok() {
            let why = given_up_because(agent, why);
            transitions::end_and_retry(conn, key, AttemptState::Lost, &why, now, &mut effects)?;
        }
    }
    Ok(effects)
}
