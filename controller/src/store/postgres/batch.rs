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
) -> Result<Ran, StoreError> {
    let mut seen = HashSet::new();
    if !items.iter().filter_map(Item::task).all(|t| seen.insert(t)) {
        return Err(StoreError::backend(
            "a batch completes one task twice (the combiner keeps them apart)",
        ));
    }
    let (live, mut refused) = lock_and_fence(c, items).await?;
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
    let (_, ends) = transitions::deferring_job_counts(c, async {
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
        // The successes' statements and the claim's picks are sent together (one round trip):
        // PostgreSQL runs them in that order, so the picks see the dependents just released.
        let mut shared = Effects::default();
        let stmts = match succeeded.is_empty() {
            true => None,
            false => Some(transitions::prepare_success(c).await?),
        };
        let (succeeded, picks) = tokio::join!(
            async {
                match &stmts {
                    Some(stmts) => {
                        transitions::succeed_many(c, stmts, &succeeded, now, &mut shared).await
                    }
                    None => Ok(()),
                }
            },
            dispatch::pick_for(c, &reqs, now, Some(cursors)),
        );
        // The first failure in the order sent: what follows it only says the transaction aborted.
        let (_, picks) = (succeeded?, picks?);
        for (i, item) in items.iter().enumerate() {
            if let (Some(completion), None) = (&item.completion, &refused[i]) {
                let key = &completion.report.finish.attempt;
                done[i].effects.queued |= shared.queued;
                if completion.report.finish.outcome == Outcome::Succeeded {
                    done[i].effects.jobs.push(key.job_id.clone());
                }
            }
        }
        for (i, claimed) in claiming
            .iter()
            .zip(dispatch::start_picked(c, &reqs, picks, now).await?)
        {
            done[*i].claimed = claimed;
        }
        Ok(())
    })
    .await?;
    let results = done
        .into_iter()
        .zip(refused.iter_mut())
        .map(|(done, refusal)| match refusal.take() {
            Some(e) => Err(e),
            None => Ok(done),
        })
        .collect();
    Ok(Ran { results, ends })
}

/// What a batch did, before its `COMMIT`.
pub(super) struct Ran {
    /// Each item's outcome, in order.
    pub results: Vec<Result<Done, StoreError>>,
    /// The jobs it ends, ended with the `COMMIT` (`transitions::end_jobs_and_commit`).
    pub ends: transitions::JobEnds,
}

impl Ran {
    /// Whether the batch wrote nothing (no completion, nothing claimed): then it need not
    /// wait for a commit to reach the disk.
    pub fn wrote_nothing(&self, items: &[Item]) -> bool {
        items.iter().all(|i| i.completion.is_none())
            && self.results.iter().all(|r| match r {
                Ok(done) => done.claimed.assignments.is_empty(),
                Err(_) => true,
            })
    }
}

const LOCK_AGENTS: &str = "SELECT name, session, state FROM agents WHERE name = ANY($1)
                           ORDER BY name FOR KEY SHARE";
const LOCK_TASKS: &str = "SELECT t.job_id, t.task_id, t.attempts FROM tasks t
                          JOIN unnest($1::text[], $2::text[]) AS u(job_id, task_id)
                            ON t.job_id = u.job_id AND t.task_id = u.task_id
                          ORDER BY t.job_id, t.task_id FOR UPDATE OF t";
const READ_ATTEMPTS: &str = "SELECT a.job_id, a.task_id, a.number, a.state, a.agent FROM attempts a
                             JOIN unnest($1::text[], $2::text[], $3::int8[])
                                  AS u(job_id, task_id, number)
                               ON a.job_id = u.job_id AND a.task_id = u.task_id
                              AND a.number = u.number";

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// `sql` prepared on `c`, if `needed`.
async fn prepare_if(
    c: &Conn,
    needed: bool,
    sql: &'static str,
) -> Result<Option<tokio_postgres::Statement>, StoreError> {
    match needed {
        true => c.statement(sql).await.map(Some),
        false => Ok(None),
    }
}

/// The rows of `stmt`, if there is one; sent when first polled.
async fn query_if(
    c: &Conn,
    stmt: Option<tokio_postgres::Statement>,
    params: &[Param<'_>],
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    match stmt {
        Some(stmt) => c.query_prepared(&stmt, params).await,
        None => Ok(Vec::new()),
    }
}

/// Locks the rows of the agents that claim (in name order, `FOR KEY SHARE` as
/// `dispatch::claim`), then the tasks the items finish (in key order), and fences their
/// attempts as `transitions::fence_locked` does: the (agent, session) pairs that are live and
/// ready, and each item's refusal, if any. The three statements are prepared first, then sent
/// together in that order (one round trip); PostgreSQL runs the attempts' read once the locks
/// are held, so it sees the end of an attempt by whoever held one before.
#[allow(clippy::type_complexity)]
async fn lock_and_fence<'a>(
    c: &Conn,
    items: &'a [Item],
) -> Result<(HashSet<(&'a String, &'a String)>, Vec<Option<StoreError>>), StoreError> {
    let mut names: Vec<&str> = items
        .iter()
        .filter_map(|i| i.claim.as_ref().map(|c| c.agent.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let keys: Vec<&AttemptKey> = items
        .iter()
        .filter_map(|i| i.completion.as_ref())
        .map(|c| &c.report.finish.attempt)
        .collect();
    let job_ids: Vec<&str> = keys.iter().map(|k| k.job_id.as_str()).collect();
    let task_ids: Vec<&str> = keys.iter().map(|k| k.task_id.as_str()).collect();
    let numbers: Vec<i64> = keys.iter().map(|k| i64::from(k.attempt)).collect();
    let (agents, lock, read) = tokio::join!(
        prepare_if(c, !names.is_empty(), LOCK_AGENTS),
        prepare_if(c, !keys.is_empty(), LOCK_TASKS),
        prepare_if(c, !keys.is_empty(), READ_ATTEMPTS),
    );
    let (agents, lock, read) = (agents?, lock?, read?);
    let agent_params: [Param; 1] = [&names];
    let lock_params: [Param; 2] = [&job_ids, &task_ids];
    let read_params: [Param; 3] = [&job_ids, &task_ids, &numbers];
    let (agent_rows, locked, found_rows) = tokio::join!(
        query_if(c, agents, &agent_params),
        query_if(c, lock, &lock_params),
        query_if(c, read, &read_params),
    );
    // The first failure in the order sent: what follows it only says the transaction aborted.
    let (agent_rows, locked, found_rows) = (agent_rows?, locked?, found_rows?);
    let mut ready: HashMap<String, String> = HashMap::new();
    for r in &agent_rows {
        if col::<&str>(r, 2)? == "ready" {
            ready.insert(col(r, 0)?, col(r, 1)?);
        }
    }
    let live = items
        .iter()
        .filter_map(|i| i.claim.as_ref())
        .filter(|c| ready.get(&c.agent) == Some(&c.session))
        .map(|c| (&c.agent, &c.session))
        .collect();
    let mut current: HashMap<(String, String), i64> = HashMap::new();
    for r in &locked {
        current.insert((col(r, 0)?, col(r, 1)?), col(r, 2)?);
    }
    let mut found: HashMap<(String, String, i64), (String, String)> = HashMap::new();
    for r in &found_rows {
        found.insert(
            (col(r, 0)?, col(r, 1)?, col(r, 2)?),
            (col(r, 3)?, col(r, 4)?),
        );
    }
    let refused = items
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
        .collect();
    Ok((live, refused))
}
