//! The combiner: agents' completions and claims that arrive together share one transaction
//! (`batch`), so that a busy controller makes one commit, one lock of each job's row and one
//! statement of each kind for many agents rather than a dozen round trips each. Nothing waits
//! for a batch to fill: a call that finds a batch slot free runs at once (alone, if nothing
//! else is waiting); calls that arrive while `IN_FLIGHT` batches run are taken together by the
//! next. A batch that fails for a reason other than a lost connection is made again one call
//! at a time, so that one bad completion fails no other.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::batch::{self, Done, Item};
use super::cursors::Cursors;
use super::dispatch;
use super::pool::{Conn, Pool};
use super::transitions;
use super::tx::{backoff, begin, begin_with, end, end_unwritten, Mode, BEGIN_BATCH, MAX_TRIES};
use crate::model::{AttemptKey, Millis};
use crate::store::StoreError;

/// Batches running at once on one controller.
const IN_FLIGHT: usize = 2;
/// Calls in one batch at most.
const MAX_BATCH: usize = 128;
/// Calls waiting for a batch at most; more wait to be queued (backpressure on the callers).
const QUEUE: usize = 4096;

pub(super) struct Call {
    pub(super) item: Item,
    pub(super) now: Millis,
    pub(super) reply: oneshot::Sender<Result<Done, StoreError>>,
}

pub(super) struct Combiner {
    calls: mpsc::Sender<Call>,
    cancel: CancellationToken,
    worker: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Combiner {
    pub(super) fn start(pool: Arc<Pool>, cursors: Arc<Cursors>) -> Self {
        let (calls, rx) = mpsc::channel(QUEUE);
        let cancel = CancellationToken::new();
        let worker = tokio::spawn(work(pool, cursors, rx, cancel.clone()));
        Self {
            calls,
            cancel,
            worker: tokio::sync::Mutex::new(Some(worker)),
        }
    }

    /// Runs `item` in the next batch and returns its outcome.
    pub(super) async fn call(&self, item: Item, now: Millis) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send(Call { item, now, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops taking calls, lets the batches under way end, and waits for them.
    pub(super) async fn close(&self) {
        self.cancel.cancel();
        if let Some(worker) = self.worker.lock().await.take() {
            let _ = worker.await;
        }
    }
}

/// Takes calls into batches until cancelled; then answers the calls still waiting with
/// `Closed` and waits for the batches under way.
async fn work(
    pool: Arc<Pool>,
    cursors: Arc<Cursors>,
    mut rx: mpsc::Receiver<Call>,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut running = JoinSet::new();
    // Calls that completed a task another call of the forming batch completes too.
    let mut held: VecDeque<Call> = VecDeque::new();
    loop {
        let first = match held.pop_front() {
            Some(call) => call,
            None => tokio::select! {
                _ = cancel.cancelled() => break,
                call = rx.recv() => match call {
                    Some(call) => call,
                    None => break,
                },
                Some(_) = running.join_next(), if !running.is_empty() => continue,
            },
        };
        let slot = tokio::select! {
            _ = cancel.cancelled() => {
                held.push_front(first);
                break;
            }
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let mut calls = vec![first];
        let mut tasks: HashSet<(String, String)> = HashSet::new();
        let mut later = VecDeque::new();
        note(&calls[0], &mut tasks);
        while calls.len() < MAX_BATCH {
            let next = match held.pop_front() {
                Some(call) => call,
                None => match rx.try_recv() {
                    Ok(call) => call,
                    Err(_) => break,
                },
            };
            if note(&next, &mut tasks) {
                calls.push(next);
            } else {
                later.push_back(next);
            }
        }
        held.extend(later);
        while running.try_join_next().is_some() {}
        let (pool, cursors) = (pool.clone(), cursors.clone());
        let span = tracing::debug_span!("store_batch", calls = calls.len());
        running.spawn(
            async move {
                run(&pool, &cursors, calls).await;
                drop(slot);
            }
            .instrument(span),
        );
    }
    rx.close();
    for call in held.drain(..) {
        let _ = call.reply.send(Err(StoreError::Closed));
    }
    while let Ok(call) = rx.try_recv() {
        let _ = call.reply.send(Err(StoreError::Closed));
    }
    while running.join_next().await.is_some() {}
}

/// Notes the task `call` completes in `tasks`: false if a call of the batch completes it too.
fn note(call: &Call, tasks: &mut HashSet<(String, String)>) -> bool {
    match call.item.task() {
        Some((job, task)) => tasks.insert((job.to_owned(), task.to_owned())),
        None => true,
    }
}

/// How a batch's transaction failed.
pub(super) enum Failed {
    /// Before its statements ran (no connection, no `BEGIN`) or at `COMMIT`: every call gets
    /// the error, as each would have alone.
    All(StoreError),
    /// In its statements (rolled back): each call is made again on its own.
    Body(StoreError),
}

impl Failed {
    #[cfg(test)]
    pub(super) fn into_error(self) -> StoreError {
        match self {
            Failed::All(e) | Failed::Body(e) => e,
        }
    }
}

/// Runs one batch and answers its calls.
pub(super) async fn run(pool: &Pool, cursors: &Cursors, calls: Vec<Call>) {
    // A caller that went away (its agent's call was cancelled) claims nothing: what it
    // claimed would never reach its agent.
    let calls: Vec<Call> = calls
        .into_iter()
        .filter_map(|mut c| {
            if c.reply.is_closed() {
                c.item.claim = None;
            }
            (c.item.completion.is_some() || c.item.claim.is_some()).then_some(c)
        })
        .collect();
    if calls.is_empty() {
        return;
    }
    let now = calls.iter().map(|c| c.now).max().unwrap_or_default();
    let (items, replies): (Vec<Item>, Vec<_>) = calls
        .into_iter()
        .map(|c| (c.item, (c.reply, c.now)))
        .unzip();
    let began = std::time::Instant::now();
    let outcome = transact(pool, cursors, &items, now).await;
    tracing::debug!(
        calls = items.len(),
        elapsed_us = began.elapsed().as_micros() as u64,
        "batch done"
    );
    match outcome {
        Ok(results) => {
            let mut undelivered = Vec::new();
            for (((reply, _), result), item) in replies.into_iter().zip(results).zip(&items) {
                if let Err(Ok(done)) = reply.send(result) {
                    // The caller went away during the batch: what it claimed goes back.
                    if let Some(claim) = &item.claim {
                        undelivered.extend(
                            done.claimed
                                .assignments
                                .into_iter()
                                .map(|a| (claim.agent.clone(), a.attempt)),
                        );
                    }
                }
            }
            if !undelivered.is_empty() {
                hand_back(pool, undelivered, now).await;
            }
        }
        Err(Failed::All(e)) => {
            let message = e.to_string();
            tracing::warn!(calls = items.len(), error = %message, "a batch of store calls failed");
            for (reply, _) in replies {
                let _ = reply.send(Err(copy(&e)));
            }
        }
        Err(Failed::Body(e)) if items.len() > 1 => {
            tracing::debug!(calls = items.len(), error = %e, "a batch failed: its calls are made one by one");
            for (item, (reply, now)) in items.into_iter().zip(replies) {
                let result = match transact(pool, cursors, std::slice::from_ref(&item), now).await {
                    Ok(mut one) => one.pop().unwrap_or_else(|| Err(StoreError::Closed)),
                    Err(Failed::All(e) | Failed::Body(e)) => Err(e),
                };
                let _ = reply.send(result);
            }
        }
        Err(Failed::Body(e)) => {
            if let Some((reply, _)) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// Hands back attempts claimed for callers that went away before the answer (their agents
/// never got them): queued again at once, rather than found lost when their agents next
/// report what they run. Pollers find them at the next wake-up (within a second).
pub(super) async fn hand_back(pool: &Pool, undelivered: Vec<(String, AttemptKey)>, now: Millis) {
    let mut by_agent: std::collections::BTreeMap<String, Vec<AttemptKey>> = Default::default();
    for (agent, key) in undelivered {
        by_agent.entry(agent).or_default().push(key);
    }
    for (agent, keys) in by_agent {
        let why = format!("handed back: agent {agent}'s call ended before its claim was answered");
        let mut tries = 0;
        let result = loop {
            tries += 1;
            let result = async {
                let mut conn = pool.get().await?;
                begin(&mut conn, Mode::Write).await?;
                let outcome = dispatch::release(&conn, &agent, &keys, &why, now).await;
                end(&mut conn, Mode::Write, outcome).await
            }
            .await;
            match result {
                Err(e) if e.is_retryable() && tries < MAX_TRIES => backoff(tries).await,
                other => break other,
            }
        };
        match result {
            Ok(_) => tracing::info!(agent, attempts = keys.len(), "{why}"),
            Err(e) => {
                tracing::warn!(agent, error = %e, "could not hand back attempts claimed for a call that ended: they are found lost when the agent next reports")
            }
        }
    }
}

/// The batch in one transaction, made again whole (at most `MAX_TRIES` times) after a
/// retryable failure, as `transaction!` does.
pub(super) async fn transact(
    pool: &Pool,
    cursors: &Cursors,
    items: &[Item],
    now: Millis,
) -> Result<Vec<Result<Done, StoreError>>, Failed> {
    let mut tries = 0u32;
    loop {
        tries += 1;
        let result = async {
            let mut conn = pool.get().await.map_err(Failed::All)?;
            // Marked first: a batch cut short in its transaction drops the connection.
            conn.in_transaction = true;
            let c: &Conn = &conn;
            match begin_with(c, BEGIN_BATCH, batch::run(c, items, now, cursors)).await {
                Ok(ran) if ran.wrote_nothing(items) => end_unwritten(&mut conn, ran.results)
                    .await
                    .map_err(Failed::All),
                Ok(ran) => {
                    match transitions::end_jobs_and_commit(&mut conn, &ran.ends, now).await {
                        Ok(()) => Ok(ran.results),
                        // Ending the jobs failed: the COMMIT rolled the batch back.
                        Err(e) if !conn.in_transaction => Err(Failed::Body(e)),
                        Err(e) => Err(Failed::All(e)),
                    }
                }
                Err(e) => Err(Failed::Body(
                    end::<()>(&mut conn, Mode::Write, Err(e)).await.unwrap_err(),
                )),
            }
        }
        .await;
        match result {
            Err(Failed::All(e) | Failed::Body(e)) if e.is_retryable() && tries < MAX_TRIES => {
                tracing::debug!(tries, error = %e, "a batch's transaction failed, making it again");
                backoff(tries).await;
            }
            other => return other,
        }
    }
}

/// The same failure for another caller (the source stays with the first).
fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::Closed => StoreError::Closed,
        StoreError::Backend {
            message, retryable, ..
        } => StoreError::Backend {
            message: message.clone(),
            retryable: *retryable,
            source: None,
        },
        other => StoreError::backend(other.to_string()),
    }
}
