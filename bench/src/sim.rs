//! Simulated agents inside the bench process, speaking `AgentService` as `ferry-agent` does
//! but running nothing: `Register`, long-`Poll` for the free slots (a zero-slot poll kept open
//! as the control channel, dropped when a slot frees), `Complete` each attempt at once as
//! succeeded with `want = 1` so that its answer hands the slot its next attempt, and
//! `Heartbeat` listing what runs.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ferry_proto::v1::{
    agent_service_client::AgentServiceClient, AgentIdentity, Assignment, AttemptRef,
    CompleteRequest, HeartbeatRequest, HostMetrics, Outcome, PollRequest, RegisterRequest,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::common::QUEUE;

/// How long the controller may hold a poll open (the real agent asks for 20 s).
const POLL_WAIT_MS: u32 = 20_000;

/// One registered agent: its own connection and session.
#[derive(Clone)]
pub struct SimAgent {
    pub client: AgentServiceClient<Channel>,
    pub identity: AgentIdentity,
}

impl SimAgent {
    /// Connects to `addr` (a connection of its own, as a real agent has) and registers `name`
    /// serving [`QUEUE`] with `slots` slots.
    pub async fn register(addr: &str, name: String, slots: u32) -> Result<Self> {
        let mut client = ferry_tests::agent_client(addr).await?;
        let session = client
            .register(RegisterRequest {
                name: name.clone(),
                queues: vec![QUEUE.into()],
                labels: HashMap::new(),
                max_tasks: slots,
                hostname: "bench".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("registering {name} at {addr}"))?
            .into_inner()
            .session;
        Ok(Self {
            client,
            identity: AgentIdentity { name, session },
        })
    }

    /// One heartbeat, with host metrics like the real agent's.
    pub async fn heartbeat(&mut self, running: Vec<AttemptRef>) -> Result<()> {
        self.client
            .heartbeat(HeartbeatRequest {
                agent: Some(self.identity.clone()),
                running,
                metrics: Some(HostMetrics {
                    cpu_percent: 12.5,
                    memory_used_bytes: 1 << 30,
                    memory_total_bytes: 8 << 30,
                    load1: 0.5,
                    load5: 0.5,
                    load15: 0.5,
                }),
                ..Default::default()
            })
            .await
            .with_context(|| format!("Heartbeat of {}", self.identity.name))?;
        Ok(())
    }
}

/// What all the agents of a dispatch run have done, and when it is over.
pub struct Tally {
    target: usize,
    claimed: AtomicUsize,
    recorded: AtomicUsize,
    first_claim: OnceLock<Instant>,
    last_recorded: Mutex<Option<Instant>>,
    error: Mutex<Option<String>>,
    /// Fires once `target` outcomes are recorded, or on the first error.
    pub finished: CancellationToken,
}

impl Tally {
    pub fn new(target: usize) -> Arc<Self> {
        Arc::new(Self {
            target,
            claimed: AtomicUsize::new(0),
            recorded: AtomicUsize::new(0),
            first_claim: OnceLock::new(),
            last_recorded: Mutex::new(None),
            error: Mutex::new(None),
            finished: CancellationToken::new(),
        })
    }

    fn claimed(&self, n: usize) {
        if n > 0 {
            self.first_claim.get_or_init(Instant::now);
            self.claimed.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn recorded(&self) {
        let now = Instant::now();
        *self.last_recorded.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        if self.recorded.fetch_add(1, Ordering::AcqRel) + 1 >= self.target {
            self.finished.cancel();
        }
    }

    fn failed(&self, error: anyhow::Error) {
        let mut first = self.error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert_with(|| format!("{error:#}"));
        self.finished.cancel();
    }

    /// `(claimed, recorded)` so far.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.claimed.load(Ordering::Relaxed),
            self.recorded.load(Ordering::Acquire),
        )
    }

    /// The first error any agent met.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// From the first claim to the last recorded outcome.
    pub fn span(&self) -> Option<Duration> {
        let first = *self.first_claim.get()?;
        let last = (*self.last_recorded.lock().unwrap_or_else(|e| e.into_inner()))?;
        Some(last.saturating_duration_since(first))
    }
}

/// One agent's slots and the attempts it holds.
struct Slots {
    agent: SimAgent,
    slots: u32,
    busy: AtomicU32,
    freed: Notify,
    running: Mutex<HashMap<u64, AttemptRef>>,
    next_id: AtomicU64,
    tally: Arc<Tally>,
}

impl Slots {
    fn running(&self) -> Vec<AttemptRef> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.values().cloned().collect()
    }

    fn hold(&self, attempt: AttemptRef) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.insert(id, attempt);
        id
    }

    fn drop_held(&self, id: u64) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.remove(&id);
    }

    /// Takes a slot for each assignment and completes them, chaining the next attempts.
    fn start(self: &Arc<Self>, assignments: Vec<Assignment>) {
        self.tally.claimed(assignments.len());
        for assignment in assignments {
            let Some(attempt) = assignment.attempt else {
                continue;
            };
            self.busy.fetch_add(1, Ordering::AcqRel);
            let me = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(e) = me.run_slot(attempt).await {
                    me.tally.failed(e);
                }
                me.busy.fetch_sub(1, Ordering::AcqRel);
                me.freed.notify_one();
            });
        }
    }

    /// Completes `attempt`, then each next attempt the answers bring, until one brings none.
    async fn run_slot(self: &Arc<Self>, mut attempt: AttemptRef) -> Result<()> {
        let mut id = self.hold(attempt.clone());
        loop {
            let mut client = self.agent.client.clone();
            let request = CompleteRequest {
                agent: Some(self.agent.identity.clone()),
                attempt: Some(attempt.clone()),
                outcome: Outcome::Succeeded as i32,
                exit_code: Some(0),
                want: 1,
                ..Default::default()
            };
            let mut answer = client
                .complete(request)
                .await
                .with_context(|| format!("Complete of {attempt:?}"))?
                .into_inner();
            let first = answer
                .message()
                .await
                .with_context(|| format!("Complete of {attempt:?}"))?;
            self.drop_held(id);
            // The outcome counts once the answer ends OK (durable); the next attempt starts now.
            let tally = Arc::clone(&self.tally);
            tokio::spawn(async move {
                loop {
                    match answer.message().await {
                        Ok(Some(_)) => {}
                        Ok(None) => return tally.recorded(),
                        Err(e) => return tally.failed(anyhow::Error::new(e).context("Complete")),
                    }
                }
            });
            let mut next = first.map(|m| m.assignments).unwrap_or_default().into_iter();
            let Some(following) = next.next() else {
                return Ok(());
            };
            self.start(next.collect());
            self.tally.claimed(1);
            let Some(following) = following.attempt else {
                return Ok(());
            };
            attempt = following;
            id = self.hold(attempt.clone());
        }
    }
}

/// Runs `agent` with `slots` slots until the tally is finished: the poll loop and a heartbeat
/// every `heartbeat`.
pub async fn dispatch(agent: SimAgent, slots: u32, tally: Arc<Tally>, heartbeat: Duration) {
    let me = Arc::new(Slots {
        agent,
        slots,
        busy: AtomicU32::new(0),
        freed: Notify::new(),
        running: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        tally,
    });
    let beats = tokio::spawn(heartbeats(Arc::clone(&me), heartbeat));
    if let Err(e) = poll_loop(&me).await {
        me.tally.failed(e);
    }
    beats.abort();
}

async fn poll_loop(me: &Arc<Slots>) -> Result<()> {
    let finished = me.tally.finished.clone();
    loop {
        let freed = me.freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        let free = me.slots.saturating_sub(me.busy.load(Ordering::Acquire));
        let mut client = me.agent.client.clone();
        let request = PollRequest {
            agent: Some(me.agent.identity.clone()),
            free_slots: free,
            wait_ms: POLL_WAIT_MS,
            running: me.running(),
        };
        tokio::select! {
            answer = client.poll(request) => {
                let answer = answer.context("Poll")?.into_inner();
                me.start(answer.assignments);
            }
            // A poll for no slot claims nothing: dropping it loses nothing.
            () = &mut freed, if free == 0 => {}
            () = finished.cancelled() => return Ok(()),
        }
    }
}

async fn heartbeats(me: Arc<Slots>, every: Duration) {
    let mut agent = me.agent.clone();
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = agent.heartbeat(me.running()).await {
            me.tally.failed(e);
            return;
        }
    }
}
