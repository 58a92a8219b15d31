//! Wake-ups between the controllers sharing a PostgreSQL store, by `LISTEN`/`NOTIFY` on the
//! channel `ferry_wakes`. A publish reaches this controller's own sink at once and is queued
//! for a sender task, which coalesces whatever was queued meanwhile into few notifications;
//! a listener task on a connection of its own delivers other controllers' wake-ups,
//! reconnects after a break, and wakes everything every `FALLBACK_PERIOD`, so that a lost
//! notification delays work by no more than that.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;
use tokio_postgres::{AsyncMessage, Config};

use super::tls::Transport;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pool::{Pool, CONNECT_TIMEOUT};
use crate::notify::{Notifier, WakeSink, Wakes, FALLBACK_PERIOD};

const CHANNEL: &str = "ferry_wakes";
/// Largest payload sent: PostgreSQL refuses 8000 bytes and more.
const MAX_PAYLOAD: usize = 7_900;
/// Named jobs and agents pending past this are sent as "wake everything" instead.
const MAX_NAMED: usize = 1_024;
/// Longest pause between reconnections of the listener.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// One notification: wake-ups from the notifier `from`, or everything (`all`).
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Payload {
    #[serde(rename = "f")]
    from: String,
    #[serde(rename = "w", default, skip_serializing_if = "std::ops::Not::not")]
    work: bool,
    #[serde(rename = "j", default, skip_serializing_if = "Vec::is_empty")]
    jobs: Vec<String>,
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    agents: Vec<String>,
    #[serde(rename = "x", default, skip_serializing_if = "std::ops::Not::not")]
    all: bool,
}

/// Wake-ups published and not yet sent.
#[derive(Default)]
struct Pending {
    wakes: Wakes,
    /// Too many to name: everything is woken.
    all: bool,
}

pub(super) struct PgNotifier {
    sink: Arc<dyn WakeSink>,
    pending: Arc<Mutex<Pending>>,
    kick: Arc<Notify>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl PgNotifier {
    /// Starts the sender and the listener, which run until `shutdown` or `close`.
    pub(super) fn start(
        pool: Arc<Pool>,
        sink: Arc<dyn WakeSink>,
        shutdown: CancellationToken,
    ) -> PgNotifier {
        let id = format!("{:016x}", fastrand::u64(..));
        let stop = shutdown.child_token();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let kick = Arc::new(Notify::new());
        let tracker = TaskTracker::new();
        tracker.spawn(send(
            pool.clone(),
            id.clone(),
            pending.clone(),
            kick.clone(),
            stop.clone(),
        ));
        tracker.spawn(listen(
            pool.config().clone(),
            pool.transport().clone(),
            id,
            sink.clone(),
            stop.clone(),
        ));
        tracker.close();
        PgNotifier {
            sink,
            pending,
            kick,
            stop,
            tracker,
        }
    }
}

impl Drop for PgNotifier {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[async_trait]
impl Notifier for PgNotifier {
    fn publish(&self, wakes: Wakes) {
        if wakes.is_empty() {
            return;
        }
        self.sink.deliver(&wakes);
        {
            let mut pending = self.pending.lock().unwrap();
            if pending.all {
                pending.wakes.work |= wakes.work;
            } else {
                pending.wakes.merge(wakes);
                if pending.wakes.jobs.len() + pending.wakes.agents.len() > MAX_NAMED {
                    pending.all = true;
                    pending.wakes.jobs.clear();
                    pending.wakes.agents.clear();
                }
            }
        }
        self.kick.notify_one();
    }

    async fn close(&self) {
        self.stop.cancel();
        self.tracker.wait().await;
    }
}

/// The payloads that carry `wakes` from `from`, each under PostgreSQL's size limit.
fn encode(from: &str, wakes: Wakes, all: bool) -> Vec<String> {
    let text = |p: &Payload| serde_json::to_string(p).expect("a payload is plain json");
    if all {
        return vec![text(&Payload {
            from: from.to_string(),
            work: true,
            all: true,
            ..Payload::default()
        })];
    }
    let fresh = || Payload {
        from: from.to_string(),
        ..Payload::default()
    };
    let mut out = Vec::new();
    let mut current = Payload {
        work: wakes.work,
        ..fresh()
    };
    // Room for the fixed part and both lists' brackets and keys.
    let base = text(&current).len() + 16;
    let mut size = base;
    let named = wakes
        .jobs
        .into_iter()
        .map(|j| (true, j))
        .chain(wakes.agents.into_iter().map(|a| (false, a)));
    for (is_job, name) in named {
        let len = serde_json::to_string(&name).map_or(name.len() + 2, |s| s.len()) + 1;
        if size + len > MAX_PAYLOAD && (!current.jobs.is_empty() || !current.agents.is_empty()) {
            out.push(text(&std::mem::replace(&mut current, fresh())));
            size = base;
        }
        size += len;
        if is_job {
            current.jobs.push(name);
        } else {
            current.agents.push(name);
        }
    }
    out.push(text(&current));
    out
}

/// The sender: sends what was published, coalesced, until `stop`. A failed send is dropped
/// (the receivers' fallback wakes them anyway).
async fn send(
    pool: Arc<Pool>,
    id: String,
    pending: Arc<Mutex<Pending>>,
    kick: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = kick.notified() => {}
        }
        let Pending { wakes, all } = std::mem::take(&mut *pending.lock().unwrap());
        if wakes.is_empty() && !all {
            continue;
        }
        let sent = async {
            let conn = pool.get().await?;
            for payload in encode(&id, wakes, all) {
                conn.execute("SELECT pg_notify('ferry_wakes', $1)", &[&payload])
                    .await?;
            }
            Ok::<_, crate::store::StoreError>(())
        };
        let sent = tokio::select! {
            _ = stop.cancelled() => return,
            sent = sent => sent,
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "could not send wake-ups to the other controllers");
        }
    }
}

/// The listener: delivers other controllers' wake-ups to `sink` and wakes everything every
/// `FALLBACK_PERIOD`, reconnecting after a break, until `stop`.
async fn listen(
    config: Config,
    transport: Transport,
    id: String,
    sink: Arc<dyn WakeSink>,
    stop: CancellationToken,
) {
    let mut fallback = tokio::time::interval(FALLBACK_PERIOD);
    fallback.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut delay = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        let listened = listen_once(
            &config,
            &transport,
            &id,
            &*sink,
            &stop,
            &mut fallback,
            &mut delay,
        )
        .await;
        if stop.is_cancelled() {
            return;
        }
        failures += 1;
        if failures == 1 || failures.is_multiple_of(60) {
            tracing::warn!(error = %listened.err().unwrap_or_default(), "lost the connection that listens for other controllers' wake-ups; reconnecting");
        }
        let pause = tokio::time::sleep(delay.mul_f64(0.5 + fastrand::f64()));
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = &mut pause => break,
                _ = fallback.tick() => sink.wake_all(),
            }
        }
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

/// One connection's life: connects, listens, delivers; returns why it ended (`Ok` on
/// `stop`). Once listening, `delay` goes back to its start and everything is woken once.
async fn listen_once(
    config: &Config,
    transport: &Transport,
    id: &str,
    sink: &dyn WakeSink,
    stop: &CancellationToken,
    fallback: &mut tokio::time::Interval,
    delay: &mut Duration,
) -> Result<(), String> {
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, super::tls::connect(config, transport));
    let (client, mut messages) = tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        c = connect => c.map_err(|_| "connecting timed out".to_string())?.map_err(|e| e.to_string())?,
    };
    let listen = client.batch_execute("LISTEN ferry_wakes");
    tokio::pin!(listen);
    let mut listening = false;
    type Question<'c> = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<bool, tokio_postgres::Error>> + Send + 'c>,
    >;
    let mut question: Option<Question<'_>> = None;
    // When the last question was asked: the first asks about every queued task.
    let mut asked_at: crate::model::Millis = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            listened = &mut listen, if !listening => {
                listened.map_err(|e| e.to_string())?;
                listening = true;
                *delay = Duration::from_millis(100);
                // Whatever was sent while no one listened is woken now.
                sink.wake_all();
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CHANNEL => {
                    deliver(id, n.payload(), sink);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the server closed the connection".to_string()),
            },
            // The connection is driven by `messages` above, so the fallback's question runs
            // beside it rather than blocking this loop.
            _ = fallback.tick(), if question.is_none() => {
                let now = crate::model::now_ms();
                question = Some(Box::pin(work_waiting(&client, asked_at, now)));
                asked_at = now;
            }
            answer = async { question.as_mut().expect("guarded").await }, if question.is_some() => {
                question = None;
                match answer {
                    Ok(false) => sink.wake_watchers(),
                    // Work is waiting, or the question failed: wake everyone.
                    Ok(true) | Err(_) => sink.wake_all(),
                }
            }
        }
    }
}

/// How far back, from the previous question, the fallback's question looks: a task that became
/// eligible that long ago and is still queued (no agent can take it, or a claim that held it
/// rolled back) wakes the parked polls for this long, then only when they time out and ask
/// again. It also covers controllers' clocks that disagree by less.
const LOOK_BACK_MS: i64 = 10_000;

/// The fallback round's question: did a queued task become eligible since the previous one
/// (`since`, less `LOOK_BACK_MS`)? Watchers are always woken (a job may have changed); parked
/// polls only when such work waits — a notification lost, a retry's delay over — so that
/// thousands of idle agents do not each run a claim every `FALLBACK_PERIOD`, nor for as long
/// as a task waits that none of them can take. It reads the index of queued tasks whole (no
/// queue to start from), once a period: an index of its own, by `ready_at`, was also taken by
/// the claims, which then sorted every queued task for each claim.
async fn work_waiting(
    client: &tokio_postgres::Client,
    since: crate::model::Millis,
    now: crate::model::Millis,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM tasks
                            WHERE state = 'queued' AND ready_at > $1 AND ready_at <= $2)",
            &[&(since - LOOK_BACK_MS), &now],
        )
        .await?;
    Ok(row.get(0))
}

/// Delivers one notification to `sink`, unless this notifier sent it.
fn deliver(id: &str, payload: &str, sink: &dyn WakeSink) {
    match serde_json::from_str::<Payload>(payload) {
        Ok(p) if p.from == id => {}
        Ok(p) if p.all => sink.wake_all(),
        Ok(p) => sink.deliver(&Wakes {
            work: p.work,
            jobs: p.jobs,
            agents: p.agents,
        }),
        // Not ours to read: someone wanted something woken.
        Err(_) => sink.wake_all(),
    }
}

#[cfg(test)]
mod tests;
