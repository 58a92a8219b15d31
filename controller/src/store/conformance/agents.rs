//! Agents' liveness in the store: one agent's record, signs of life (`touch_agents`) taken
//! only from its current, live session, and the agents silent since a given time.

use super::*;
use crate::model::HostMetrics;
use crate::store::AgentSeen;

fn seen(name: &str, session: &str, metrics: Option<HostMetrics>) -> AgentSeen {
    AgentSeen {
        name: name.into(),
        session: session.into(),
        metrics,
    }
}

/// The silent agents of this scenario (others may share the store), by name.
async fn silent(store: &Arc<dyn Store>, before: i64) -> Vec<(String, String)> {
    let mut silent = store.silent_agents(before).await.unwrap();
    silent.retain(|(name, _)| name.starts_with("live-"));
    silent.sort();
    silent
}

pub(crate) async fn agents_are_touched_and_found_silent(store: &Arc<dyn Store>) {
    for name in ["live-a", "live-b", "live-c"] {
        store.register_agent(registration(name), T0).await.unwrap();
    }
    let a = store
        .get_agent("live-a")
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(
        (a.session.as_str(), a.state, a.seen_at, a.metrics, a.running),
        ("live-a-1", AgentState::Ready, T0, None, 0),
        "registration is a sign of life"
    );
    assert_eq!(a.queues, ["q"]);
    assert!(store.get_agent("live-nobody").await.unwrap().is_none());

    let metrics = HostMetrics {
        cpu_percent: 12.5,
        memory_used_bytes: 1 << 30,
        memory_total_bytes: 4 << 30,
        load1: 0.5,
        load5: 0.25,
        load15: 0.125,
    };
    store
        .touch_agents(
            vec![
                seen("live-a", "live-a-1", Some(metrics)),
                seen("live-b", "live-b-0", Some(metrics)),
                seen("live-nobody", "x", None),
            ],
            T0 + 100,
        )
        .await
        .unwrap();
    let a = store.get_agent("live-a").await.unwrap().unwrap();
    assert_eq!((a.seen_at, a.metrics), (T0 + 100, Some(metrics)));
    let b = store.get_agent("live-b").await.unwrap().unwrap();
    assert_eq!(
        (b.seen_at, b.metrics),
        (T0, None),
        "a stale session's touch is ignored"
    );
    store
        .touch_agents(vec![seen("live-a", "live-a-1", None)], T0 + 150)
        .await
        .unwrap();
    let a = store.get_agent("live-a").await.unwrap().unwrap();
    assert_eq!(
        (a.seen_at, a.metrics),
        (T0 + 150, Some(metrics)),
        "a touch without metrics keeps the last ones"
    );
    let listed = store.list_agents().await.unwrap();
    let listed = listed.iter().find(|l| l.name == "live-a").unwrap();
    assert_eq!((listed.seen_at, listed.metrics), (T0 + 150, Some(metrics)));

    store
        .agent_dead("live-c", "live-c-1", T0 + 160)
        .await
        .unwrap();
    store
        .touch_agents(vec![seen("live-c", "live-c-1", Some(metrics))], T0 + 200)
        .await
        .unwrap();
    let c = store.get_agent("live-c").await.unwrap().unwrap();
    assert_eq!(
        (c.state, c.seen_at, c.metrics),
        (AgentState::Dead, T0, None),
        "a dead agent's touch is ignored"
    );

    assert_eq!(silent(store, T0).await, [], "strictly before");
    assert_eq!(
        silent(store, T0 + 120).await,
        [("live-b".to_string(), "live-b-1".to_string())],
        "the dead are not silent"
    );
    assert_eq!(
        silent(store, T0 + 151).await,
        [
            ("live-a".to_string(), "live-a-1".to_string()),
            ("live-b".to_string(), "live-b-1".to_string()),
        ]
    );
    // A new session is seen at its registration.
    let mut again = registration("live-b");
    again.session = "live-b-2".into();
    store.register_agent(again, T0 + 300).await.unwrap();
    assert_eq!(
        silent(store, T0 + 200).await,
        [("live-a".to_string(), "live-a-1".to_string())]
    );
}
