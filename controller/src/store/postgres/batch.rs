//! Completions and claims of many agents in one transaction (the combiner's batches), with
//! the outcome each would have had in its own: the claiming agents' rows locked first, then
//! the finished tasks' rows in key order and their attempts fenced, each refused completion
//! answered alone; successes, releases and claims in one statement each for the whole batch,
//! the rarer parts (logs, outputs, extracts, failures, inputs) per completion; the job
//! counters last, one row per job.

use std::collections::{HashMap, HashSet};

use super::cursors::Cursors;
use super::pool::{col, Conn};
use super::{dispatch, extracts, logs, outputs, transitions};
use crate::model::{AttemptKey, Millis, Outcome};
use crate::store::{ClaimRequest, Claimed, Completion, Effects, StoreError};

/// One agent's call: the end of an attempt, a claim of its next work, or both (a completion
/// that claims).
#[derive(Debug)]
pub(super) struct Item {
    pub completion: Option<Completion>,
    pub claim: Option<ClaimRequest>,
}

impl Item {
    /// The task whose row a completion locks: two items of one batch never share it.
    pub fn task(&self) -> Option<(&str, &str)> {
        self.completion.as_ref().map(|c| {
            let key = &c.report.finish.attempt;
            (key.job_id.as_str(), key.task_id.as_str())
        })
    }
}

/// What an item's call returns.
#[derive(Debug, Default)]
pub(super) struct Done {
    pub effects: Effects,
    pub claimed: Claimed,
}

/// Runs `items` (no two completing the same task) in the open transaction. The outer error
/// fails the batch (it is rolled back); an inner one is an item's own refusal (`Fenced`), which
/// the others do not share.
pub(super) async fn run(
    c: &Conn,
    items: &[Item],
    now: Millis,
    cursors: &Cursors,
) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
    let mut seen = HashSet::new();
    if !items.iter().filter_map(Item::task).all(|t| seen.insert(t)) {
        return Err(StoreError::backend(
            "a batch completes one task twice (the combiner keeps them apart)",
        ));
    }
    let live = lock_agents(c, items).await?;
    let mut refused = fence(c, items).await?;
    for (item, refusal) in items.iter().zip(&refused) {
        let Some(completion) = item.completion.as_ref().filter(|_| refusal.is_none()) else {
            continue;
        };
        let r = &completion.report;
        let key = &r.finish.attempt;
        logs::append(c, key, &r.logs, r.dropped_bytes, completion.log_limit).await?;
        if r.finish.outcome == Outcome::Succeeded {
            outputs::publish(c, key, &r.outputs, now).await?;
            if let Some(extract) = &r.extract {
                extracts::record(c, key, extract, now).await?;
            }
        }
    }
    let mut done: Vec<Done> = items.iter().map(|_| Done::default()).collect();
    transitions::deferring_job_counts(c, now, async {
        let mut succeeded = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let Some(completion) = item.completion.as_ref().filter(|_| refused[i].is_none()) else {
                continue;
            };
            let finish = &completion.report.finish;
            if finish.outcome == Outcome::Succeeded {
                succeeded.push(finish);
            } else {
                done[i].effects = transitions::finish(c, finish, now).await?;
            }
        }
        let mut shared = Effects::default();
        transitions::succeed_many(c, &succeeded, now, &mut shared).await?;
        for (i, item) in items.iter().enumerate() {
            if let (Some(completion), None) = (&item.completion, &refused[i]) {
                let key = &completion.report.finish.attempt;
                done[i].effects.queued |= shared.queued;
                if completion.report.finish.outcome == Outcome::Succeeded {
                    done[i].effects.jobs.push(key.job_id.clone());
                }
            }
        }
        let claiming: Vec<usize> = (0..items.len())
            .filter(|&i| refused[i].is_none())
            .filter(|&i| {
                items[i]
                    .claim
                    .as_ref()
                    .is_some_and(|claim| live.contains(&(&claim.agent, &claim.session)))
            })
            .collect();
        let reqs: Vec<&ClaimRequest> = claiming
            .iter()
            .filter_map(|&i| items[i].claim.as_ref())
            .collect();
        for (i, claimed) in claiming
            .iter()
            .zip(dispatch::claim_for(c, &reqs, now, Some(cursors)).await?)
        {
            done[*i].claimed = claimed;
        }
        Ok(())
    })
    .await?;
    Ok(done
        .into_iter()
        .zip(refused.iter_mut())
        .map(|(done, refusal)| match refusal.take() {
            Some(e) => Err(e),
            None => Ok(done),
        })
        .collect())
}

/// Locks the rows of the agents that claim (in name order, `FOR KEY SHARE` as
/// `dispatch::lock_session`) and returns the (agent, session) pairs that are live and ready.
async fn lock_agents<'a>(
    c: &Conn,
    items: &'a [Item],
) -> Result<HashSet<(&'a String, &'a String)>, StoreError> {
    let mut names: Vec<&str> = items
        .iter()
        .filter_map(|i| i.claim.as_ref().map(|c| c.agent.as_str()))
        .collect();
    if names.is_empty() {
        return Ok(HashSet::new());
    }
    names.sort_unstable();
    names.dedup();
    let mut ready: HashMap<String, String> = HashMap::new();
    for r in c
        .query(
            "SELECT name, session, state FROM agents WHERE name = ANY($1)
             ORDER BY name FOR KEY SHARE",
            &[&names],
        )
        .await?
    {
        if col::<&str>(&r, 2)? == "ready" {
            ready.insert(col(&r, 0)?, col(&r, 1)?);
        }
    }
    Ok(items
        .iter()
        .filter_map(|i| i.claim.as_ref())
        .filter(|c| ready.get(&c.agent) == Some(&c.session))
        .map(|c| (&c.agent, &c.session))
        .collect())
}

/// Locks the tasks the items finish (in key order) and fences their attempts as
/// `transitions::fence_locked` does, one statement for all: each item's refusal, if any.
async fn fence(c: &Conn, items: &[Item]) -> Result<Vec<Option<StoreError>>, StoreError> {
    let keys: Vec<(&str, &AttemptKey)> = items
        .iter()
        .filter_map(|i| i.completion.as_ref())
        .map(|c| (c.report.finish.agent.as_str(), &c.report.finish.attempt))
        .collect();
    if keys.is_empty() {
        return Ok(items.iter().map(|_| None).collect());
    }
    let job_ids: Vec<&str> = keys.iter().map(|(_, k)| k.job_id.as_str()).collect();
    let task_ids: Vec<&str> = keys.iter().map(|(_, k)| k.task_id.as_str()).collect();
    let numbers: Vec<i64> = keys.iter().map(|(_, k)| i64::from(k.attempt)).collect();
    // The read is sent with the locks, after them (prepared first, so that nothing reorders
    // them); PostgreSQL runs it once the locks are held, so it sees the end of an attempt by
    // whoever held one before.
    let (lock, read) = tokio::join!(
        c.statement(
            "SELECT t.job_id, t.task_id, t.attempts FROM tasks t
             JOIN unnest($1::text[], $2::text[]) AS u(job_id, task_id)
               ON t.job_id = u.job_id AND t.task_id = u.task_id
             ORDER BY t.job_id, t.task_id FOR UPDATE OF t",
        ),
        c.statement(
            "SELECT a.job_id, a.task_id, a.number, a.state, a.agent FROM attempts a
             JOIN unnest($1::text[], $2::text[], $3::int8[]) AS u(job_id, task_id, number)
               ON a.job_id = u.job_id AND a.task_id = u.task_id AND a.number = u.number",
        ),
    );
    // The first failure in the order sent: what follows it only says the transaction aborted.
    let (lock, read) = (lock?, read?);
    let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&job_ids, &task_ids];
    let read_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&job_ids, &task_ids, &numbers];
    let (locked, read) = tokio::join!(
        c.query_prepared(&lock, &lock_params),
        c.query_prepared(&read, &read_params),
    );
    // The first failure in the order sent: what follows it only says the transaction aborted.
    let (locked, read) = (locked?, read?);
    let mut current: HashMap<(String, String), i64> = HashMap::new();
    for r in &locked {
        current.insert((col(r, 0)?, col(r, 1)?), col(r, 2)?);
    }
    let mut found: HashMap<(String, String, i64), (String, String)> = HashMap::new();
    for r in &read {
        found.insert(
            (col(r, 0)?, col(r, 1)?, col(r, 2)?),
            (col(r, 3)?, col(r, 4)?),
        );
    }
    Ok(items
        .iter()
        .map(|item| {
            let completion = item.completion.as_ref()?;
            let finish = &completion.report.finish;
            let key = &finish.attempt;
            let task = (key.job_id.clone(), key.task_id.clone());
            let attempt = (task.0.clone(), task.1.clone(), i64::from(key.attempt));
            transitions::refusal(
                &finish.agent,
                key,
                current.get(&task).copied(),
                found.remove(&attempt),
            )
            .err()
        })
        .collect())
}
