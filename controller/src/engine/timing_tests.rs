//! The engine on paused tokio time with a test clock (`Clock::starting_at`): the reaper, an
//! attempt's timeout, a long poll's deadline, a backoff's end and the lease writer, to the
//! millisecond and without sleeping.
//!
//! Paused time auto-advances to the next pending timer whenever the runtime is idle, and
//! awaiting the SQLite store's writer thread (an OS thread tokio cannot see) leaves it idle.
//! So these tests start no background loop unless they say so: while a test awaits the store
//! no timer is pending, and time moves only where the test advances it or the engine itself
//! waits (a parked poll), which auto-advance then reaches exactly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::reaper::{self, Reaper};
use super::*;
use crate::artifacts::Artifacts;
use crate::model::{AttemptState, Millis, NewJob, RetryPolicy, TaskKind, TaskSpec, TaskState};
use crate::store::Store;

/// The test clock's start: any wall time will do, and none is the host's.
const T0: Millis = 1_700_000_000_000;
const AGENT_TIMEOUT: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(1);

fn ms(d: Duration) -> Millis {
    d.as_millis() as Millis
}

async fn engine(dir: &std::path::Path) -> Arc<Engine> {
    let store: Arc<dyn Store> = Arc::new(
        crate::store::sqlite::SqliteStore::open(&dir.join("ferry.db"))
            .await
            .unwrap(),
    );
    let artifacts = Arc::new(Artifacts::open(&dir.join("artifacts"), 1 << 30).unwrap());
    let config = EngineConfig {
        agent_timeout: AGENT_TIMEOUT,
        log_limit: 1 << 20,
        timeout_grace: GRACE,
        max_poll_wait: Duration::from_secs(30),
    };
    let engine = Engine::new(
        config,
        Clock::starting_at(T0),
        store,
        artifacts,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(engine.clock.now_ms(), T0, "opening the store moved no time");
    Arc::new(engine)
}

async fn register(engine: &Engine) -> Identity {
    let session = engine
        .register(
            "a".into(),
            vec!["q".into()],
            BTreeMap::new(),
            4,
            "h".into(),
            "v".into(),
            "i".into(),
        )
        .await
        .unwrap();
    Identity {
        name: "a".into(),
        session,
    }
}

/// One task; `timeout_ms` 0 for none. Retries back off by 2 s (1 to 2 s with the jitter).
fn job(timeout_ms: u64) -> NewJob {
    NewJob {
        name: "j".into(),
        params: BTreeMap::new(),
        tasks: vec![TaskSpec {
            id: "t".into(),
            queue: "q".into(),
            labels: BTreeMap::new(),
            depends_on: vec![],
            kind: TaskKind::Shell {
                command: "true".into(),
            },
            outputs: vec![],
            timeout_ms,
            schedule_to_start_timeout_ms: 0,
            retry: RetryPolicy {
                max_attempts: 3,
                initial_delay_ms: 2_000,
                max_delay_ms: 2_000,
            },
        }],
        idempotency_key: None,
        backfill: BTreeMap::new(),
    }
}

/// Submits `job` and has the agent claim its task at once; the job's id.
async fn claimed(engine: &Engine, who: &Identity, job: NewJob) -> String {
    let id = engine.submit(job).await.unwrap().job_id;
    let orders = engine.poll(who, 1, &[], Duration::ZERO).await.unwrap();
    assert_eq!(orders.assignments.len(), 1);
    id
}

async fn agent_state(engine: &Engine) -> AgentState {
    engine.store.get_agent("a").await.unwrap().unwrap().state
}

/// Moves the clock to `at`, a reaper round every `period` on the way (as its loop would run
/// them), the agent still alive after each.
async fn rounds_until(engine: &Engine, reaper: &mut Reaper, at: Millis) {
    while engine.clock.now_ms() < at {
        let step = (at - engine.clock.now_ms()).min(ms(reaper.period));
        tokio::time::advance(Duration::from_millis(step as u64)).await;
        reaper.round(engine).await;
        assert_eq!(
            agent_state(engine).await,
            AgentState::Ready,
            "declared dead at {} ms",
            engine.clock.now_ms() - T0
        );
    }
    assert_eq!(engine.clock.now_ms(), at);
}

#[tokio::test(start_paused = true)]
async fn the_reaper_declares_a_silent_agent_dead_exactly_past_the_agent_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let who = register(&engine).await;
    let job_id = claimed(&engine, &who, job(0)).await;
    let mut reaper = Reaper::new(&engine);

    // Last heard of at T0 (its registration): alive up to and at T0 + the agent timeout.
    rounds_until(&engine, &mut reaper, T0 + ms(AGENT_TIMEOUT)).await;
    tokio::time::advance(Duration::from_millis(1)).await;
    reaper.round(&engine).await;

    assert_eq!(agent_state(&engine).await, AgentState::Dead);
    let task = &engine.job(&job_id).await.unwrap().tasks[0];
    assert_eq!(task.attempts[0].state, AttemptState::Lost);
    assert_eq!(
        task.attempts[0].finished_at,
        Some(T0 + ms(AGENT_TIMEOUT) + 1)
    );
    assert_eq!(
        task.state,
        TaskState::Queued,
        "the lost attempt is queued again"
    );
    assert!(matches!(
        engine.heartbeat(&who, &[], None).await,
        Err(EngineError::UnknownSession(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_reaper_that_takes_the_role_late_gives_every_agent_a_full_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    register(&engine).await;
    // This controller takes the role 8 s after the agent was last heard of (it started, or
    // the previous holder died).
    tokio::time::advance(Duration::from_secs(8)).await;
    let mut reaper = Reaper::new(&engine);
    let took_role = engine.clock.now_ms();
    // Silent for 10 s since T0 + 10 s, yet alive: the count starts with the role.
    rounds_until(&engine, &mut reaper, took_role + ms(AGENT_TIMEOUT) - 1).await;
    tokio::time::advance(Duration::from_millis(1)).await;
    reaper.round(&engine).await;
    assert_eq!(agent_state(&engine).await, AgentState::Dead);
}

#[tokio::test(start_paused = true)]
async fn a_stall_of_the_controller_restarts_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    register(&engine).await;
    let mut reaper = Reaper::new(&engine);
    rounds_until(&engine, &mut reaper, T0 + 5_000).await;
    // No round for 20 s: the controller itself was stalled, not its agents.
    tokio::time::advance(Duration::from_secs(20)).await;
    reaper.round(&engine).await;
    let stalled_until = engine.clock.now_ms();
    rounds_until(&engine, &mut reaper, stalled_until + ms(AGENT_TIMEOUT) - 1).await;
    tokio::time::advance(Duration::from_millis(1)).await;
    reaper.round(&engine).await;
    assert_eq!(agent_state(&engine).await, AgentState::Dead);
}

#[tokio::test(start_paused = true)]
async fn the_reaper_loop_reaps_in_the_first_round_past_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let who = register(&engine).await;
    let job_id = claimed(&engine, &who, job(0)).await;
    let mut changed = engine.watch(&job_id);
    let shutdown = CancellationToken::new();
    let reaper = tokio::spawn(reaper::run(engine.clone(), shutdown.clone()));
    // Only the reaper's tick is pending: paused time runs from one round to the next.
    let lost_at = loop {
        changed.changed().await.unwrap();
        let task = &engine.job(&job_id).await.unwrap().tasks[0];
        if task.attempts[0].state == AttemptState::Lost {
            break task.attempts[0].finished_at.unwrap();
        }
    };
    shutdown.cancel();
    reaper.await.unwrap();
    // Rounds run every 500 ms from T0: the one at T0 + 10 s still hears the agent; the next
    // declares it dead, stamped then or (time advancing to the next tick while the round
    // waits for the store) one period later.
    let period = ms(Reaper::new(&engine).period);
    assert!(
        (T0 + ms(AGENT_TIMEOUT) + period..=T0 + ms(AGENT_TIMEOUT) + 2 * period).contains(&lost_at),
        "lost at T0 + {} ms",
        lost_at - T0
    );
}

#[tokio::test(start_paused = true)]
async fn a_sign_of_life_the_lease_writer_records_holds_the_reaper_off() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let who = register(&engine).await;
    let mut reaper = Reaper::new(&engine);
    rounds_until(&engine, &mut reaper, T0 + 4_000).await;
    engine.heartbeat(&who, &[], None).await.unwrap();
    // Seen in memory, not yet in the store, until the lease writer's batch.
    let seen_at = || async { engine.store.get_agent("a").await.unwrap().unwrap().seen_at };
    assert_eq!(seen_at().await, T0);
    tokio::time::advance(Duration::from_millis(250)).await;
    lease_writer::write_batch(&engine).await.unwrap();
    assert_eq!(seen_at().await, T0 + 4_250);
    // Alive past T0 + the agent timeout, until the agent timeout after the batch.
    rounds_until(&engine, &mut reaper, T0 + 4_250 + ms(AGENT_TIMEOUT)).await;
    tokio::time::advance(Duration::from_millis(1)).await;
    reaper.round(&engine).await;
    assert_eq!(agent_state(&engine).await, AgentState::Dead);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_times_out_exactly_past_its_deadline_and_grace() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let who = register(&engine).await;
    let job_id = claimed(&engine, &who, job(2_000)).await;
    let attempt = engine.job(&job_id).await.unwrap().tasks[0].attempts[0].number;
    let key = AttemptKey {
        job_id: job_id.clone(),
        task_id: "t".into(),
        attempt,
    };
    // The deadline is T0 + 2 s; the agent had the grace to report it.
    tokio::time::advance(Duration::from_millis(2_000) + GRACE).await;
    reaper::expire(&engine).await.unwrap();
    let task = &engine.job(&job_id).await.unwrap().tasks[0];
    assert_eq!(task.attempts[0].state, AttemptState::Running);

    tokio::time::advance(Duration::from_millis(1)).await;
    reaper::expire(&engine).await.unwrap();
    let task = &engine.job(&job_id).await.unwrap().tasks[0];
    assert_eq!(task.attempts[0].state, AttemptState::TimedOut);
    assert_eq!(task.attempts[0].finished_at, Some(T0 + 3_001));
    let orders = engine
        .heartbeat(&who, std::slice::from_ref(&key), None)
        .await
        .unwrap();
    assert_eq!(orders.stop.len(), 1, "the agent is told to stop it");
    assert_eq!(orders.stop[0].attempt, key);

    // Retried after its backoff: a parked poll claims it the moment `ready_at` comes.
    let ready_at = task.ready_at;
    assert_eq!(task.state, TaskState::Queued);
    assert!((T0 + 4_001..T0 + 5_001).contains(&ready_at), "{ready_at}");
    let orders = engine
        .poll(&who, 1, &[], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(orders.assignments.len(), 1);
    assert_eq!(orders.assignments[0].attempt.attempt, attempt + 1);
    assert_eq!(engine.clock.now_ms(), ready_at);
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_returns_empty_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let who = register(&engine).await;
    let start = engine.clock.instant();
    let orders = engine
        .poll(&who, 1, &[], Duration::from_secs(5))
        .await
        .unwrap();
    assert!(orders.assignments.is_empty() && orders.stop.is_empty() && !orders.drain);
    assert_eq!(engine.clock.instant() - start, Duration::from_secs(5));
    assert_eq!(engine.clock.now_ms(), T0 + 5_000);
    // A longer wait than the engine allows is cut to `max_poll_wait`.
    let start = engine.clock.instant();
    engine
        .poll(&who, 1, &[], Duration::from_secs(3_600))
        .await
        .unwrap();
    assert_eq!(engine.clock.instant() - start, Duration::from_secs(30));
}
