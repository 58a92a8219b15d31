//! Agents in PostgreSQL: registration (which loses an earlier session's attempts), listing,
//! state, and liveness (sessions' last signs of life and metrics in one statement per batch,
//! silent agents, death). Whatever ends or changes a session locks its row `FOR UPDATE`,
//! which waits for claims in flight (they hold it `FOR KEY SHARE`).

use std::collections::HashMap;

use super::pool::{col, Conn};
use super::{dispatch, from_json, to_json, transitions};
use crate::model::{AgentRecord, AgentState, AttemptKey, AttemptState, HostMetrics, Millis};
use crate::store::{
    agent_rules::{
        already_gone, ended_because, given_up_because, lost_because, name_taken, still_live,
    },
    AgentRegistration, AgentSeen, Effects, StoreError,
};

pub(super) async fn register(
    c: &Conn,
    reg: &AgentRegistration,
    now: Millis,
) -> Result<Effects, StoreError> {
    let holder = c
        .query(
            "SELECT state, instance, hostname, seen_at FROM agents WHERE name = $1 FOR UPDATE",
            &[&reg.name],
        )
        .await?;
    let why = match holder.first() {
        Some(r) => {
            let (state, instance, hostname, seen_at): (&str, &str, &str, Millis) =
                (col(r, 0)?, col(r, 1)?, col(r, 2)?, col(r, 3)?);
            let gone = AgentState::parse(state).is_some_and(AgentState::is_gone);
            let alive = !gone && seen_at >= reg.live_after;
            if alive && (instance.is_empty() || instance != reg.instance) {
                return Err(name_taken(&reg.name, hostname, now - seen_at));
            }
            lost_because(&reg.name, alive)
        }
        None => lost_because(&reg.name, false),
    };
    let effects = dispatch::lose_all(c, &reg.name, &why, now).await?;
    c.execute(
        "INSERT INTO agents (name, session, state, queues, labels, max_tasks, hostname, version, registered_at, seen_at, instance)
         VALUES ($1, $2, 'ready', $3, $4, $5, $6, $7, $8, $8, $9)
         ON CONFLICT (name) DO UPDATE SET session = excluded.session, state = 'ready', queues = excluded.queues,
             labels = excluded.labels, max_tasks = excluded.max_tasks, hostname = excluded.hostname,
             version = excluded.version, registered_at = excluded.registered_at, seen_at = excluded.seen_at,
             instance = excluded.instance",
        &[
            &reg.name,
            &reg.session,
            &to_json(&reg.queues)?,
            &to_json(&reg.labels)?,
            &i64::from(reg.max_tasks),
            &reg.hostname,
            &reg.version,
            &now,
            &reg.instance,
        ],
    )
    .await?;
    Ok(effects)
}

fn record(r: &tokio_postgres::Row, running: u32) -> Result<AgentRecord, StoreError> {
    let state: &str = col(r, 2)?;
    let metrics: Option<&str> = col(r, 10)?;
    Ok(AgentRecord {
        name: col(r, 0)?,
        session: col(r, 1)?,
        state: AgentState::parse(state)
            .ok_or_else(|| StoreError::backend(format!("unknown agent state {state:?}")))?,
        queues: from_json(col(r, 3)?)?,
        labels: from_json(col(r, 4)?)?,
        max_tasks: col::<i64>(r, 5)? as u32,
        hostname: col(r, 6)?,
        version: col(r, 7)?,
        registered_at: col(r, 8)?,
        seen_at: col(r, 9)?,
        metrics: metrics.map(from_json::<HostMetrics>).transpose()?,
        running,
    })
}

pub(super) async fn list(c: &Conn) -> Result<Vec<AgentRecord>, StoreError> {
    let mut running: HashMap<String, u32> = HashMap::new();
    for r in c
        .query(
            "SELECT agent, COUNT(*) FROM attempts WHERE state = 'running' GROUP BY agent",
            &[],
        )
        .await?
    {
        running.insert(col(&r, 0)?, col::<i64>(&r, 1)? as u32);
    }
    let rows = c
        .query(
            "SELECT name, session, state, queues, labels, max_tasks, hostname, version,
                    registered_at, seen_at, metrics
             FROM agents ORDER BY name",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let name: &str = col(r, 0)?;
            record(r, running.get(name).copied().unwrap_or(0))
        })
        .collect()
}

pub(super) async fn get(c: &Conn, name: &str) -> Result<Option<AgentRecord>, StoreError> {
    let running = c
        .query_one(
            "SELECT COUNT(*) FROM attempts WHERE state = 'running' AND agent = $1",
            &[&name],
        )
        .await?;
    let running = col::<i64>(&running, 0)? as u32;
    let row = c
        .query_opt(
            "SELECT name, session, state, queues, labels, max_tasks, hostname, version,
                    registered_at, seen_at, metrics
             FROM agents WHERE name = $1",
            &[&name],
        )
        .await?;
    row.map(|r| record(&r, running)).transpose()
}

/// Records the batch's signs of life in one statement: each session still its agent's and
/// not dead is seen at `now` (never moved back), with its metrics when given. Rows are
/// updated in name order, so that two controllers' batches never wait on each other in a
/// cycle.
pub(super) async fn touch(c: &Conn, seen: &[AgentSeen], now: Millis) -> Result<(), StoreError> {
    // One entry per session, in name order: the latest metrics given for it.
    let mut batch: Vec<(&str, &str, Option<&HostMetrics>)> = Vec::with_capacity(seen.len());
    for s in seen {
        batch.push((&s.name, &s.session, s.metrics.as_ref()));
    }
    batch.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    batch.dedup_by(|later, earlier| {
        let same = (later.0, later.1) == (earlier.0, earlier.1);
        if same {
            earlier.2 = later.2.or(earlier.2);
        }
        same
    });
    let names: Vec<&str> = batch.iter().map(|s| s.0).collect();
    let sessions: Vec<&str> = batch.iter().map(|s| s.1).collect();
    let metrics = batch
        .iter()
        .map(|s| s.2.map(to_json).transpose())
        .collect::<Result<Vec<Option<String>>, _>>()?;
    c.execute(
        "UPDATE agents SET seen_at = GREATEST(agents.seen_at, $1), metrics = COALESCE(b.metrics, agents.metrics)
         FROM unnest($2::text[], $3::text[], $4::text[]) AS b(name, session, metrics)
         WHERE agents.name = b.name AND agents.session = b.session
           AND agents.state NOT IN ('dead', 'drained')",
        &[&now, &names, &sessions, &metrics],
    )
    .await?;
    Ok(())
}

/// Agents not dead last seen before `before`, with their session, by name.
pub(super) async fn silent(c: &Conn, before: Millis) -> Result<Vec<(String, String)>, StoreError> {
    let rows = c
        .query(
            "SELECT name, session FROM agents WHERE state NOT IN ('dead', 'drained') AND seen_at < $1
             ORDER BY name",
            &[&before],
        )
        .await?;
    rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
}

pub(super) async fn set_state(c: &Conn, name: &str, state: AgentState) -> Result<(), StoreError> {
    let rows = c
        .query(
            "SELECT state FROM agents WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?;
    let current: &str = match rows.first() {
        Some(r) => col(r, 0)?,
        None => return Err(StoreError::NotFound(format!("agent {name}"))),
    };
    if let Some(gone) = AgentState::parse(current).filter(|s| s.is_gone()) {
        return Err(already_gone(name, gone));
    }
    c.execute(
        "UPDATE agents SET state = $2 WHERE name = $1",
        &[&name, &state.as_str()],
    )
    .await?;
    Ok(())
}

pub(super) async fn dead(
    c: &Conn,
    name: &str,
    session: &str,
    now: Millis,
) -> Result<Effects, StoreError> {
    end(c, name, session, AgentState::Dead, now).await
}

/// The agent's session ends in `state` (dead or drained); what still runs on it is lost.
pub(super) async fn end(
    c: &Conn,
    name: &str,
    session: &str,
    state: AgentState,
    now: Millis,
) -> Result<Effects, StoreError> {
    let live = c
        .execute(
            "SELECT 1 FROM agents WHERE name = $1 AND session = $2
               AND state NOT IN ('dead', 'drained') FOR UPDATE",
            &[&name, &session],
        )
        .await?;
    if live == 0 {
        return Ok(Effects::default());
    }
    c.execute(
        "UPDATE agents SET state = $2 WHERE name = $1",
        &[&name, &state.as_str()],
    )
    .await?;
    dispatch::lose_all(c, name, &ended_because(name, state), now).await
}

/// Removes a departed agent's record; a live one is refused (`Precondition`).
pub(super) async fn forget(c: &Conn, name: &str) -> Result<(), StoreError> {
    let rows = c
        .query(
            "SELECT state FROM agents WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?;
    let state: &str = match rows.first() {
        Some(r) => col(r, 0)?,
        None => return Err(StoreError::NotFound(format!("agent {name}"))),
    };
    let state = AgentState::parse(state)
        .ok_or_else(|| StoreError::backend(format!("unknown agent state {state:?}")))?;
    if !state.is_gone() {
        return Err(still_live(name, state));
    }
    c.execute("DELETE FROM agents WHERE name = $1", &[&name])
        .await?;
    Ok(())
}

/// Attempts the agent stopped by itself: those still its current ones become `lost`, with its
/// reason (tasks locked in key order, as every transition does).
pub(super) async fn given_up(
    c: &Conn,
    agent: &str,
    given_up: &[(AttemptKey, String)],
    now: Millis,
) -> Result<Effects, StoreError> {
    let mut effects = Effects::default();
    let mut given_up: Vec<&(AttemptKey, String)> = given_up.iter().collect();
    given_up.sort_by(|a, b| (&a.0.job_id, &a.0.task_id).cmp(&(&b.0.job_id, &b.0.task_id)));
    for (key, why) in given_up {
        if transitions::fence_locked(c, agent, key).await.is_ok() {
            let why = given_up_because(agent, why);
            transitions::end_and_retry(c, key, AttemptState::Lost, &why, now, &mut effects).await?;
        }
    }
    Ok(effects)
}
