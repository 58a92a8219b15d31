//! The PostgreSQL store, shared by several controllers: a bounded pool of connections
//! (`pool`), every write one READ COMMITTED transaction that takes row locks in one order
//! (agents, tasks, attempts, jobs) and is made again whole after a serialization failure, a
//! deadlock or a lost connection; reads on one connection, in a snapshot when they take
//! several statements. Versioned migrations at open (`migrate`), singleton roles on advisory
//! locks (`leadership`), wake-ups between controllers by `LISTEN`/`NOTIFY` (`notify`).

mod agents;
mod batch;
mod combiner;
mod cursors;
mod dispatch;
mod extracts;
mod jobs;
mod leadership;
mod logs;
mod migrate;
mod notify;
mod outputs;
mod pool;
mod settings;
mod tls;
mod transitions;
mod tx;
mod unstarted;
mod watermarks;

#[cfg(test)]
pub(crate) mod test_db;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{
    AgentRegistration, AgentSeen, Cancelled, ClaimRequest, Claimed, Completion, Effects,
    Leadership, LogPage, Store, StoreError, Written,
};
use crate::model::{
    AgentRecord, AgentState, Assignment, AttemptKey, JobRecord, JobState, JobSummary, LogChunk,
    Millis, NewJob, QueueStats, ResultFile, StopOrder, Submitted, TaskExtract, Watermark,
};
use crate::notify::{Notifier, WakeSink};
use pool::{Conn, Pool};
use tx::{backoff, begin, end, Mode, MAX_TRIES};

pub struct PostgresStore {
    pool: Arc<Pool>,
    /// Completions and claims, many agents' to a transaction.
    combiner: combiner::Combiner,
    /// Where this controller's claims of each queue start.
    cursors: Arc<cursors::Cursors>,
}

/// Runs `$body` (a future using `$c: &Conn`) in a transaction of mode `$mode` on a connection
/// of `$store`'s pool, and makes it again whole, after a short jittered pause, when it fails
/// retryably (at most `MAX_TRIES` times): its outcome is then that of one transaction.
macro_rules! transaction {
    ($store:expr, $mode:expr, |$c:ident| $body:expr) => {{
        let mut tries = 0u32;
        loop {
            tries += 1;
            let result = async {
                let mut conn = $store.pool.get().await?;
                let outcome = if $mode == Mode::Snapshot {
                    // Marked first: a call cancelled in its transaction drops the connection.
                    conn.in_transaction = true;
                    let $c: &Conn = &conn;
                    $crate::store::postgres::tx::begin_with($c, $crate::store::postgres::tx::BEGIN_SNAPSHOT, $body).await
                } else {
                    begin(&mut conn, $mode).await?;
                    let $c: &Conn = &conn;
                    $body.await
                };
                end(&mut conn, $mode, outcome).await
            }
            .await;
            match result {
                Err(e) if e.is_retryable() && tries < MAX_TRIES => {
                    tracing::debug!(tries, error = %e, "postgresql transaction failed, making it again");
                    backoff(tries).await;
                }
                other => break other,
            }
        }
    }};
}

// After `transaction!`, which they use.
mod pipelines;
mod triggers;
// After `transaction!`, which the tests use.
#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod tests;

/// Milliseconds since the Unix epoch, for the record of when a migration was applied.
fn wall_clock() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://` or `postgresql://`), `password`
    /// taking the place of any in the URL, and brings its schema up to date; refuses a
    /// database whose schema is newer than this binary.
    pub async fn open(url: &str, password: Option<String>) -> Result<Self, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::UnsupportedUrl(super::redact_url(url)));
        }
        // libpq's TLS settings that tokio-postgres does not read (`tls::split_url`).
        let (parsed_url, ca) = tls::split_url(url);
        let mut config = tokio_postgres::Config::from_str(&parsed_url).map_err(|e| {
            // The parser's message may quote the URL: name the redacted one instead.
            StoreError::backend(format!(
                "invalid postgresql url {}: {}",
                super::redact_url(url),
                pool::sanitize(&e.to_string(), url, password.as_deref())
            ))
        })?;
        if let Some(password) = password {
            config.password(password);
        }
        if config.get_application_name().is_none() {
            config.application_name("ferry-controller");
        }
        config.connect_timeout(pool::CONNECT_TIMEOUT);
        // A dead peer is noticed within about a minute rather than hours.
        config.keepalives_idle(Duration::from_secs(30));
        let transport = tls::Transport::for_config(&config, ca.as_deref())?;
        tracing::info!(
            store = %pool::target(&config),
            tls = transport.is_tls(),
            "connecting to the postgresql store"
        );
        let pool = Arc::new(Pool::new(config, transport, pool::MAX_CONNECTIONS));
        {
            let conn = pool.get().await?;
            migrate::apply(&conn, wall_clock())
                .await
                .map_err(|e| match e {
                    StoreError::Backend {
                        message, source, ..
                    } => StoreError::Backend {
                        message: format!(
                            "migrating the store at {}: {message}",
                            pool::target(pool.config())
                        ),
                        retryable: false,
                        source,
                    },
                    other => other,
                })?;
            pool::warn_of_clock_skew(&conn, wall_clock).await;
        }
        let cursors = Arc::new(cursors::Cursors::default());
        let combiner = combiner::Combiner::start(pool.clone(), cursors.clone());
        Ok(Self {
            pool,
            combiner,
            cursors,
        })
    }

    /// Closes every connection of the store, its leaderships' included (which frees their
    /// roles), and waits for their drivers to end; later calls fail with `Closed`.
    pub async fn close(&self) {
        self.combiner.close().await;
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn submit_job(&self, job: NewJob, now: Millis) -> Result<Submitted, StoreError> {
        transaction!(self, Mode::WriteKeyed, |c| jobs::submit(c, &job, now))
    }

    async fn submit_and_claim(
        &self,
        job: NewJob,
        claims: Vec<ClaimRequest>,
        now: Millis,
    ) -> Result<Written<Vec<Claimed>, Submitted>, StoreError> {
        let (submitted, claimed) = transaction!(self, Mode::WriteKeyed, |c| async {
            let submitted = jobs::submit(c, &job, now).await?;
            let mut claimed = Vec::with_capacity(claims.len());
            for claim in &claims {
                claimed.push(dispatch::claim(c, claim, now, Some(&self.cursors)).await?);
            }
            Ok((submitted, claimed))
        })?;
        // PostgreSQL's commit is durable at once.
        Ok(Written::ready(claimed, submitted))
    }

    async fn get_job(&self, job_id: &str) -> Result<JobRecord, StoreError> {
        transaction!(self, Mode::Snapshot, |c| jobs::get(c, job_id))
    }

    async fn list_jobs(
        &self,
        state: Option<JobState>,
        limit: u32,
    ) -> Result<Vec<JobSummary>, StoreError> {
        transaction!(self, Mode::Single, |c| jobs::list(c, state, limit))
    }

    async fn cancel_job(&self, job_id: &str, now: Millis) -> Result<Cancelled, StoreError> {
        transaction!(self, Mode::Write, |c| jobs::cancel(c, job_id, now))
    }

    async fn register_agent(
        &self,
        reg: AgentRegistration,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        transaction!(self, Mode::Write, |c| agents::register(c, &reg, now))
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        transaction!(self, Mode::Snapshot, |c| agents::list(c))
    }

    async fn get_agent(&self, name: &str) -> Result<Option<AgentRecord>, StoreError> {
        transaction!(self, Mode::Snapshot, |c| agents::get(c, name))
    }

    async fn touch_agents(&self, seen: Vec<AgentSeen>, now: Millis) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        transaction!(self, Mode::Single, |c| agents::touch(c, &seen, now))
    }

    async fn silent_agents(&self, before: Millis) -> Result<Vec<(String, String)>, StoreError> {
        transaction!(self, Mode::Single, |c| agents::silent(c, before))
    }

    async fn set_agent_state(&self, name: &str, state: AgentState) -> Result<(), StoreError> {
        transaction!(self, Mode::Write, |c| agents::set_state(c, name, state))
    }

    async fn agent_dead(
        &self,
        name: &str,
        session: &str,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        transaction!(self, Mode::Write, |c| agents::dead(c, name, session, now))
    }

    async fn agent_left(
        &self,
        name: &str,
        session: &str,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        transaction!(self, Mode::Write, |c| agents::end(
            c,
            name,
            session,
            AgentState::Drained,
            now
        ))
    }

    async fn attempts_given_up(
        &self,
        agent: &str,
        given_up: Vec<(AttemptKey, String)>,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        transaction!(self, Mode::Write, |c| agents::given_up(
            c, agent, &given_up, now
        ))
    }

    async fn forget_agent(&self, name: &str) -> Result<(), StoreError> {
        transaction!(self, Mode::Write, |c| agents::forget(c, name))
    }

    async fn claim(&self, req: ClaimRequest, now: Millis) -> Result<Claimed, StoreError> {
        let item = batch::Item {
            completion: None,
            claim: Some(req),
        };
        Ok(self.combiner.call(item, now).await?.claimed)
    }

    async fn stale_attempts(
        &self,
        agent: &str,
        running: &[AttemptKey],
    ) -> Result<Vec<StopOrder>, StoreError> {
        if running.is_empty() {
            return Ok(Vec::new());
        }
        transaction!(self, Mode::Single, |c| dispatch::stale(c, agent, running))
    }

    async fn reconcile_agent(
        &self,
        agent: &str,
        running: &[AttemptKey],
        started_before: Millis,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        // Nearly always nothing is missing: one read, no transaction, no lock.
        let orphans = transaction!(self, Mode::Single, |c| dispatch::orphans(
            c,
            agent,
            running,
            started_before
        ))?;
        if orphans.is_empty() {
            return Ok(Effects::default());
        }
        transaction!(self, Mode::Write, |c| dispatch::reconcile(
            c,
            agent,
            running,
            started_before,
            now
        ))
    }

    async fn append_logs(
        &self,
        agent: &str,
        attempt: &AttemptKey,
        chunks: Vec<LogChunk>,
        dropped_bytes: u64,
        limit: u64,
    ) -> Result<(), StoreError> {
        transaction!(self, Mode::Write, |c| async {
            transitions::fence_locked(c, agent, attempt).await?;
            logs::append(c, attempt, &chunks, dropped_bytes, limit).await
        })
    }

    async fn complete(
        &self,
        c: Completion,
        claim: Option<ClaimRequest>,
        now: Millis,
    ) -> Result<(Effects, Vec<Assignment>), StoreError> {
        let item = batch::Item {
            completion: Some(c),
            claim,
        };
        let done = self.combiner.call(item, now).await?;
        Ok((done.effects, done.claimed.assignments))
    }

    async fn complete_early(
        &self,
        c: Completion,
        claim: Option<ClaimRequest>,
        now: Millis,
    ) -> Result<Written<Vec<Assignment>, Effects>, StoreError> {
        let (mut effects, assignments) = self.complete(c, claim, now).await?;
        effects
            .jobs
            .extend(assignments.iter().map(|a| a.attempt.job_id.clone()));
        // PostgreSQL's commit is durable at once.
        Ok(Written::ready(assignments, effects))
    }

    async fn check_attempt(&self, agent: &str, attempt: &AttemptKey) -> Result<(), StoreError> {
        transaction!(self, Mode::Single, |c| transitions::fence(
            c, agent, attempt
        ))
    }

    async fn running_attempts(
        &self,
        attempts: Vec<AttemptKey>,
    ) -> Result<Vec<AttemptKey>, StoreError> {
        if attempts.is_empty() {
            return Ok(attempts);
        }
        transaction!(self, Mode::Single, |c| outputs::running(c, &attempts))
    }

    async fn task_dependencies(
        &self,
        job_id: &str,
        task_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        transaction!(self, Mode::Single, |c| outputs::dependencies(
            c, job_id, task_id
        ))
    }

    async fn list_outputs(
        &self,
        job_id: &str,
        task_id: Option<&str>,
    ) -> Result<Vec<ResultFile>, StoreError> {
        transaction!(self, Mode::Snapshot, |c| outputs::list(c, job_id, task_id))
    }

    async fn list_extracts(
        &self,
        job_id: &str,
        task_id: Option<&str>,
    ) -> Result<Vec<TaskExtract>, StoreError> {
        transaction!(self, Mode::Snapshot, |c| extracts::list(c, job_id, task_id))
    }

    async fn list_watermarks(&self, job_name: Option<&str>) -> Result<Vec<Watermark>, StoreError> {
        transaction!(self, Mode::Snapshot, |c| watermarks::list(c, job_name))
    }

    async fn set_watermark(
        &self,
        job_name: &str,
        task_id: &str,
        value: &str,
        now: Millis,
    ) -> Result<Watermark, StoreError> {
        transaction!(self, Mode::Write, |c| watermarks::set(
            c, job_name, task_id, value, now
        ))
    }

    async fn reset_watermark(&self, job_name: &str, task_id: &str) -> Result<bool, StoreError> {
        transaction!(self, Mode::Write, |c| watermarks::reset(
            c, job_name, task_id
        ))
    }

    async fn job_ends(
        &self,
        job_ids: Vec<String>,
    ) -> Result<HashMap<String, Option<Millis>>, StoreError> {
        if job_ids.is_empty() {
            return Ok(HashMap::new());
        }
        transaction!(self, Mode::Single, |c| outputs::job_ends(c, &job_ids))
    }

    async fn delete_outputs(&self, job_id: &str) -> Result<u64, StoreError> {
        transaction!(self, Mode::Single, |c| outputs::delete(c, job_id))
    }

    async fn release_attempts(
        &self,
        agent: &str,
        attempts: &[AttemptKey],
        now: Millis,
    ) -> Result<Effects, StoreError> {
        let why = format!("handed back by draining agent {agent}");
        transaction!(self, Mode::Write, |c| dispatch::release(
            c, agent, attempts, &why, now
        ))
    }

    async fn expire_attempts(&self, now: Millis, grace_ms: i64) -> Result<Effects, StoreError> {
        transaction!(self, Mode::Write, |c| dispatch::expire(c, now, grace_ms))
    }

    async fn overdue_unstarted(
        &self,
        now: Millis,
    ) -> Result<Vec<(String, crate::model::TaskSpec)>, StoreError> {
        transaction!(self, Mode::Single, |c| unstarted::overdue(c, now))
    }

    async fn fail_unstarted(
        &self,
        job_id: &str,
        task_id: &str,
        reason: &str,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        transaction!(self, Mode::Write, |c| unstarted::fail(
            c, job_id, task_id, reason, now
        ))
    }

    async fn resolve_attempt(
        &self,
        job_id: &str,
        task_id: &str,
        attempt: u32,
    ) -> Result<AttemptKey, StoreError> {
        transaction!(self, Mode::Single, |c| logs::resolve(
            c, job_id, task_id, attempt
        ))
    }

    async fn read_logs(&self, attempt: &AttemptKey, after_seq: i64) -> Result<LogPage, StoreError> {
        transaction!(self, Mode::Snapshot, |c| logs::read(c, attempt, after_seq))
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError> {
        transaction!(self, Mode::Single, |c| dispatch::queue_stats(c))
    }

    async fn bind_setting(&self, key: &str, value: &str) -> Result<String, StoreError> {
        transaction!(self, Mode::Write, |c| settings::bind(c, key, value))
    }

    async fn lead(&self, role: &str) -> Result<Option<Box<dyn Leadership>>, StoreError> {
        leadership::lead(&self.pool, role).await
    }

    async fn notifier(
        &self,
        sink: Arc<dyn WakeSink>,
        shutdown: CancellationToken,
    ) -> Result<Arc<dyn Notifier>, StoreError> {
        Ok(Arc::new(notify::PgNotifier::start(
            self.pool.clone(),
            sink,
            shutdown,
        )))
    }
}

/// JSON of a value, as the TEXT columns keep it.
fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::backend(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::backend(format!("corrupt record: {e}")))
}
