//! The embedded SQLite store: one file under the data directory, WAL journal. All writes go
//! through one writer thread with group commit, which syncs the WAL itself (`writer`); reads
//! use read-only connections, which WAL lets run beside the writer: a small pool on the
//! blocking threads, and one on the caller's thread for point reads of a few rows.

mod agents;
mod dispatch;
mod extracts;
mod jobs;
mod logs;
mod outputs;
mod transitions;
mod watermarks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::{
    AgentRegistration, Cancelled, ClaimRequest, Claimed, Completion, Effects, LogPage, Store,
    StoreError,
};
use crate::model::{
    AgentRecord, AgentState, Assignment, AttemptKey, JobRecord, JobState, JobSummary, LogChunk,
    Millis, NewJob, Outcome, QueueStats, ResultFile, StopOrder, Submitted, TaskExtract, Watermark,
};

const SCHEMA: &str = include_str!("sqlite/schema.sql");

pub struct SqliteStore {
    writer: writer::Writer,
    readers: Arc<ReaderPool>,
    /// The connection of point reads made on the caller's thread (see [`SqliteStore::read_now`]);
    /// `None` until first used.
    now: Mutex<Option<Connection>>,
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// Tasks of a job read on the caller's thread, at most; larger jobs are read on the pool.
const READ_NOW_MAX_TASKS: u32 = 64;
/// Running attempts checked for stop orders on the caller's thread, at most.
const READ_NOW_MAX_ATTEMPTS: usize = 64;

fn open_reader(path: &Path, busy_timeout_ms: u32) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout = {busy_timeout_ms}; PRAGMA cache_size = -16384;"
    ))
    .map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Prepared statements each connection keeps. rusqlite's default (16) is fewer than the
/// writer's distinct statements, so the cache thrashed: every claim and completion parsed its
/// SQL again (a tenth of the controller's CPU in the latency benchmark).
const STATEMENT_CACHE: usize = 256;

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Executes one statement through the connection's statement cache.
pub(crate) fn exec(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute(params))
        .map_err(backend)
}

/// A read transaction on a reader connection: one consistent snapshot for several queries,
/// with `BEGIN` and `COMMIT` from the statement cache. Ends when dropped.
pub(crate) struct ReadTx<'c>(&'c Connection);

impl<'c> ReadTx<'c> {
    pub(crate) fn begin(conn: &'c Connection) -> Result<Self, StoreError> {
        exec(conn, "BEGIN", [])?;
        Ok(Self(conn))
    }
}

impl std::ops::Deref for ReadTx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.0
    }
}

impl Drop for ReadTx<'_> {
    fn drop(&mut self) {
        let _ = exec(self.0, "COMMIT", []);
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies the schema.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
        }
        let path = path.to_path_buf();
        let conn = tokio::task::spawn_blocking({
            let path = path.clone();
            move || -> Result<Connection, StoreError> {
                let conn = Connection::open(&path)
                    .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA busy_timeout = 10000;
                     PRAGMA cache_size = -65536;
                     PRAGMA temp_store = MEMORY;",
                )
                .map_err(backend)?;
                conn.execute_batch(SCHEMA).map_err(backend)?;
                conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                Ok(conn)
            }
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))??;
        let (writer, _thread) = writer::Writer::start(conn, &path)
            .map_err(|e| StoreError::Backend(format!("starting the writer thread: {e}")))?;
        Ok(Self {
            writer,
            readers: Arc::new(ReaderPool {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            now: Mutex::new(None),
        })
    }

    /// Runs a read of a few rows on the caller's thread. Such a read costs tens of
    /// microseconds, less than the two thread hand-offs of the blocking pool (on a VM each
    /// one may wake an idle vCPU): measured in the latency benchmark, 0.2 ms less per job on
    /// the controller's CPU and at the median. `None` (the caller then reads on the pool)
    /// when `f` finds the read larger than a point read (it answers `Ok(None)`), when another
    /// thread holds this connection, and when SQLite is busy or fails: this connection never
    /// waits (`busy_timeout = 0`), so a runtime thread never sleeps here.
    fn read_now<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<Option<R>, StoreError>,
    ) -> Option<Result<R, StoreError>> {
        let mut slot = self.now.try_lock().ok()?;
        if slot.is_none() {
            *slot = Some(open_reader(&self.readers.path, 0).ok()?);
        }
        match f(slot.as_ref()?) {
            Ok(Some(value)) => Some(Ok(value)),
            Ok(None) | Err(StoreError::Backend(_)) => None,
            Err(e) => Some(Err(e)),
        }
    }

    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().expect("reader pool poisoned").pop() {
                Some(conn) => conn,
                None => open_reader(&pool.path, 10_000)?,
            };
            let result = f(&conn);
            let mut idle = pool.idle.lock().expect("reader pool poisoned");
            if idle.len() < 8 {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn submit_job(&self, job: NewJob, now: Millis) -> Result<Submitted, StoreError> {
        self.writer
            .write(move |conn| jobs::submit(conn, &job, now))
            .await
    }

    async fn submit_and_claim(
        &self,
        job: NewJob,
        claims: Vec<ClaimRequest>,
        now: Millis,
        claimed: oneshot::Sender<Vec<Claimed>>,
    ) -> Result<Submitted, StoreError> {
        self.writer
            .write_early(claimed, move |conn| {
                let submitted = jobs::submit(conn, &job, now)?;
                let claimed = claims
                    .iter()
                    .map(|claim| dispatch::claim(conn, claim, now))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((submitted, claimed))
            })
            .await
    }

    async fn get_job(&self, job_id: &str) -> Result<JobRecord, StoreError> {
        if let Some(read) =
            self.read_now(|conn| jobs::get_bounded(conn, job_id, READ_NOW_MAX_TASKS))
        {
            return read;
        }
        let job_id = job_id.to_string();
        self.read(move |conn| jobs::get(conn, &job_id)).await
    }

    async fn list_jobs(
        &self,
        state: Option<JobState>,
        limit: u32,
    ) -> Result<Vec<JobSummary>, StoreError> {
        self.read(move |conn| jobs::list(conn, state, limit)).await
    }

    async fn cancel_job(&self, job_id: &str, now: Millis) -> Result<Cancelled, StoreError> {
        let job_id = job_id.to_string();
        self.writer
            .write(move |conn| jobs::cancel(conn, &job_id, now))
            .await
    }

    async fn register_agent(
        &self,
        reg: AgentRegistration,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        self.writer
            .write(move |conn| agents::register(conn, &reg, now))
            .await
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.read(agents::list).await
    }

    async fn set_agent_state(&self, name: &str, state: AgentState) -> Result<(), StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |conn| agents::set_state(conn, &name, state))
            .await
    }

    async fn agent_dead(
        &self,
        name: &str,
        session: &str,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        let (name, session) = (name.to_string(), session.to_string());
        self.writer
            .write(move |conn| agents::dead(conn, &name, &session, now))
            .await
    }

    async fn claim(&self, req: ClaimRequest, now: Millis) -> Result<Claimed, StoreError> {
        self.writer
            .write_with(writer::Durability::Relaxed, move |conn| {
                dispatch::claim(conn, &req, now)
            })
            .await
    }

    async fn stale_attempts(
        &self,
        agent: &str,
        running: &[AttemptKey],
    ) -> Result<Vec<StopOrder>, StoreError> {
        if running.len() <= READ_NOW_MAX_ATTEMPTS {
            if let Some(read) =
                self.read_now(|conn| dispatch::stale(conn, agent, running).map(Some))
            {
                return read;
            }
        }
        let agent = agent.to_string();
        let running = running.to_vec();
        self.read(move |conn| dispatch::stale(conn, &agent, &running))
            .await
    }

    async fn reconcile_agent(
        &self,
        agent: &str,
        running: &[AttemptKey],
        started_before: Millis,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        let agent = agent.to_string();
        let running = running.to_vec();
        self.writer
            .write(move |conn| dispatch::reconcile(conn, &agent, &running, started_before, now))
            .await
    }

    async fn append_logs(
        &self,
        agent: &str,
        attempt: &AttemptKey,
        chunks: Vec<LogChunk>,
        dropped_bytes: u64,
        limit: u64,
    ) -> Result<(), StoreError> {
        let agent = agent.to_string();
        let attempt = attempt.clone();
        self.writer
            .write(move |conn| {
                transitions::fence(conn, &agent, &attempt)?;
                logs::append(conn, &attempt, &chunks, dropped_bytes, limit)
            })
            .await
    }

    async fn complete(
        &self,
        c: Completion,
        claim: Option<ClaimRequest>,
        now: Millis,
    ) -> Result<(Effects, Vec<Assignment>), StoreError> {
        self.writer
            .write(move |conn| {
                let key = &c.finish.attempt;
                transitions::fence(conn, &c.finish.agent, key)?;
                logs::append(conn, key, &c.logs, c.dropped_bytes, c.log_limit)?;
                if c.finish.outcome == Outcome::Succeeded {
                    outputs::publish(conn, key, &c.outputs, now)?;
                    if let Some(extract) = &c.extract {
                        extracts::record(conn, key, extract, now)?;
                    }
                }
                let effects = transitions::finish(conn, &c.finish, now)?;
                let assignments = match &claim {
                    Some(claim) => dispatch::claim(conn, claim, now)?.assignments,
                    None => Vec::new(),
                };
                Ok((effects, assignments))
            })
            .await
    }

    async fn check_attempt(&self, agent: &str, attempt: &AttemptKey) -> Result<(), StoreError> {
        if let Some(read) = self.read_now(|conn| transitions::fence(conn, agent, attempt).map(Some))
        {
            return read;
        }
        let agent = agent.to_string();
        let attempt = attempt.clone();
        self.read(move |conn| transitions::fence(conn, &agent, &attempt))
            .await
    }

    async fn running_attempts(
        &self,
        attempts: Vec<AttemptKey>,
    ) -> Result<Vec<AttemptKey>, StoreError> {
        self.read(move |conn| outputs::running(conn, attempts))
            .await
    }

    async fn task_dependencies(
        &self,
        job_id: &str,
        task_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let (job_id, task_id) = (job_id.to_string(), task_id.to_string());
        self.read(move |conn| outputs::dependencies(conn, &job_id, &task_id))
            .await
    }

    async fn list_outputs(
        &self,
        job_id: &str,
        task_id: Option<&str>,
    ) -> Result<Vec<ResultFile>, StoreError> {
        let job_id = job_id.to_string();
        let task_id = task_id.map(str::to_string);
        self.read(move |conn| outputs::list(conn, &job_id, task_id.as_deref()))
            .await
    }

    async fn list_extracts(
        &self,
        job_id: &str,
        task_id: Option<&str>,
    ) -> Result<Vec<TaskExtract>, StoreError> {
        let job_id = job_id.to_string();
        let task_id = task_id.map(str::to_string);
        self.read(move |conn| extracts::list(conn, &job_id, task_id.as_deref()))
            .await
    }

    async fn list_watermarks(&self, job_name: Option<&str>) -> Result<Vec<Watermark>, StoreError> {
        let job_name = job_name.map(str::to_string);
        self.read(move |conn| watermarks::list(conn, job_name.as_deref()))
            .await
    }

    async fn set_watermark(
        &self,
        job_name: &str,
        task_id: &str,
        value: &str,
        now: Millis,
    ) -> Result<Watermark, StoreError> {
        let (job_name, task_id, value) =
            (job_name.to_string(), task_id.to_string(), value.to_string());
        self.writer
            .write(move |conn| watermarks::set(conn, &job_name, &task_id, &value, now))
            .await
    }

    async fn reset_watermark(&self, job_name: &str, task_id: &str) -> Result<bool, StoreError> {
        let (job_name, task_id) = (job_name.to_string(), task_id.to_string());
        self.writer
            .write(move |conn| watermarks::reset(conn, &job_name, &task_id))
            .await
    }

    async fn job_ends(
        &self,
        job_ids: Vec<String>,
    ) -> Result<std::collections::HashMap<String, Option<Millis>>, StoreError> {
        self.read(move |conn| outputs::job_ends(conn, &job_ids))
            .await
    }

    async fn delete_outputs(&self, job_id: &str) -> Result<u64, StoreError> {
        let job_id = job_id.to_string();
        self.writer
            .write(move |conn| outputs::delete(conn, &job_id))
            .await
    }

    async fn release_attempts(
        &self,
        agent: &str,
        attempts: &[AttemptKey],
        now: Millis,
    ) -> Result<Effects, StoreError> {
        let agent = agent.to_string();
        let attempts = attempts.to_vec();
        self.writer
            .write(move |conn| dispatch::release(conn, &agent, &attempts, now))
            .await
    }

    async fn expire_attempts(&self, now: Millis, grace_ms: i64) -> Result<Effects, StoreError> {
        self.writer
            .write(move |conn| dispatch::expire(conn, now, grace_ms))
            .await
    }

    async fn resolve_attempt(
        &self,
        job_id: &str,
        task_id: &str,
        attempt: u32,
    ) -> Result<AttemptKey, StoreError> {
        let (job_id, task_id) = (job_id.to_string(), task_id.to_string());
        self.read(move |conn| logs::resolve(conn, &job_id, &task_id, attempt))
            .await
    }

    async fn read_logs(&self, attempt: &AttemptKey, after_seq: i64) -> Result<LogPage, StoreError> {
        let attempt = attempt.clone();
        self.read(move |conn| logs::read(conn, &attempt, after_seq))
            .await
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError> {
        self.read(dispatch::queue_stats).await
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_store_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::SqliteStore::open(&dir.path().join("ferry.db"))
            .await
            .unwrap();
        crate::store::conformance::run_all(std::sync::Arc::new(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn accepted_jobs_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.db");
        let job = job_of(1);
        let id = {
            let store = super::SqliteStore::open(&path).await.unwrap();
            crate::store::Store::submit_job(&store, job, 1)
                .await
                .unwrap()
                .job_id
        };
        let store = super::SqliteStore::open(&path).await.unwrap();
        let job = crate::store::Store::get_job(&store, &id).await.unwrap();
        assert_eq!(job.tasks[0].state, crate::model::TaskState::Queued);
    }

    fn job_of(tasks: usize) -> crate::model::NewJob {
        let task = |i: usize| crate::model::TaskSpec {
            id: format!("t{i}"),
            queue: "q".into(),
            labels: Default::default(),
            depends_on: vec![],
            kind: crate::model::TaskKind::Shell {
                command: "true".into(),
            },
            outputs: vec![],
            timeout_ms: 0,
            retry: Default::default(),
        };
        crate::model::NewJob {
            name: format!("job-of-{tasks}"),
            params: Default::default(),
            tasks: (0..tasks).map(task).collect(),
            idempotency_key: None,
            backfill: Default::default(),
        }
    }

    /// Small jobs are read on the caller's thread, larger ones on the pool; both whole, and an
    /// unknown job is `NotFound` either way, also while another caller holds the inline
    /// connection.
    #[tokio::test]
    // Holds the inline connection across reads on purpose, as a concurrent caller would.
    #[allow(clippy::await_holding_lock)]
    async fn jobs_are_read_whole_on_either_path() {
        use crate::store::{Store, StoreError};
        let dir = tempfile::tempdir().unwrap();
        let store = super::SqliteStore::open(&dir.path().join("ferry.db"))
            .await
            .unwrap();
        let max = super::READ_NOW_MAX_TASKS as usize;
        for tasks in [1, max, max + 1, 3 * max] {
            let id = store.submit_job(job_of(tasks), 1).await.unwrap().job_id;
            let inline = super::jobs::get_bounded;
            let read_now = store.read_now(|conn| inline(conn, &id, super::READ_NOW_MAX_TASKS));
            assert_eq!(read_now.is_some(), tasks <= max, "{tasks} tasks");
            let job = store.get_job(&id).await.unwrap();
            assert_eq!(job.tasks.len(), tasks);
            assert_eq!(job.tasks[tasks - 1].spec.id, format!("t{}", tasks - 1));
            let held = store.now.lock().unwrap();
            assert_eq!(store.get_job(&id).await.unwrap().tasks.len(), tasks);
            drop(held);
        }
        let err = store.get_job("nope").await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let _held = store.now.lock().unwrap();
        let err = store.get_job("nope").await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }
}
