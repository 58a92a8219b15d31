//! Tests of the wake-ups between controllers: payloads under the limit, a wake-all past it, and
//! wakes and the fallback across two handles on one database.

use super::*;
use crate::store::postgres::test_db::TestDb;
use crate::store::Store;
use std::sync::atomic::{AtomicU32, Ordering};

fn decode(text: &str) -> Payload {
    serde_json::from_str(text).unwrap()
}

#[test]
fn payloads_stay_under_the_limit_and_carry_every_name() {
    let wakes = Wakes {
        work: true,
        jobs: (0..600).map(|i| format!("{i:032x}")).collect(),
        agents: vec!["agent-1".into()],
    };
    let payloads = encode("me", wakes.clone(), false);
    assert!(payloads.len() > 1, "{} payloads", payloads.len());
    assert!(payloads.iter().all(|p| p.len() < MAX_PAYLOAD), "sizes");
    let decoded: Vec<Payload> = payloads.iter().map(|p| decode(p)).collect();
    assert!(decoded[0].work);
    let jobs: Vec<String> = decoded.iter().flat_map(|p| p.jobs.clone()).collect();
    assert_eq!(jobs, wakes.jobs);
    assert_eq!(decoded.last().unwrap().agents, ["agent-1"]);
}

#[test]
fn too_many_names_wake_everything() {
    let payloads = encode("me", Wakes::default(), true);
    assert_eq!(payloads.len(), 1);
    let p = decode(&payloads[0]);
    assert!(p.all && p.work);
}

#[derive(Default)]
struct Recorder {
    delivered: Mutex<Vec<Wakes>>,
    woken_all: AtomicU32,
}

impl WakeSink for Recorder {
    fn deliver(&self, wakes: &Wakes) {
        self.delivered.lock().unwrap().push(wakes.clone());
    }
    fn wake_all(&self) {
        self.woken_all.fetch_add(1, Ordering::Relaxed);
    }
}

impl Recorder {
    fn got_job(&self, job: &str) -> usize {
        let delivered = self.delivered.lock().unwrap();
        delivered
            .iter()
            .filter(|w| w.jobs.iter().any(|j| j == job))
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakes_reach_the_other_handles_sink_within_a_second() {
    let db = TestDb::new().await;
    let (a, b) = (db.open().await, db.open().await);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (sink_a, sink_b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let notifier_a = a.notifier(sink_a.clone(), shutdown.clone()).await.unwrap();
    let notifier_b = b.notifier(sink_b.clone(), shutdown.clone()).await.unwrap();
    // Each listener wakes everything once it listens.
    let ready = tokio::time::Instant::now() + Duration::from_secs(5);
    while sink_a.woken_all.load(Ordering::Relaxed) == 0
        || sink_b.woken_all.load(Ordering::Relaxed) == 0
    {
        assert!(
            tokio::time::Instant::now() < ready,
            "listeners never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = tokio::time::Instant::now();
    notifier_a.publish(Wakes {
        work: true,
        jobs: vec!["job-1".into()],
        agents: vec![],
    });
    assert_eq!(sink_a.got_job("job-1"), 1, "delivered here at once");
    while sink_b.got_job("job-1") == 0 {
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "not delivered within a second"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = sink_b.delivered.lock().unwrap().clone();
    assert!(got.iter().any(|w| w.work), "{got:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sink_a.got_job("job-1"),
        1,
        "its own notification is skipped"
    );
    shutdown.cancel();
    notifier_a.close().await;
    notifier_b.close().await;
}

#[tokio::test]
async fn the_fallback_wakes_polls_for_work_that_became_eligible_lately_only() {
    let db = TestDb::new().await;
    let store = db.open().await;
    let spec = crate::store::postgres::test_db::shell_task("t", "nobody-serves-this", &[]);
    let job = crate::store::postgres::test_db::new_job("waits", vec![spec]);
    let queued_at = 1_000_000;
    store.submit_job(job, queued_at).await.unwrap();
    let client = db.client().await;
    assert!(
        work_waiting(&client, 0, queued_at).await.unwrap(),
        "new work"
    );
    assert!(
        work_waiting(
            &client,
            queued_at + LOOK_BACK_MS - 1,
            queued_at + LOOK_BACK_MS
        )
        .await
        .unwrap(),
        "still looked at within the look-back"
    );
    assert!(
        !work_waiting(
            &client,
            queued_at + LOOK_BACK_MS + 1_000,
            queued_at + 20_000
        )
        .await
        .unwrap(),
        "a task that waits long for an agent no longer wakes every poll"
    );
    store.close().await;
}
