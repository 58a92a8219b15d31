//! Agents' names and departures in the store: a live name refused to another agent and kept
//! by its own restart, a clean exit recorded `drained` (not `dead`), and departed agents
//! forgotten while live ones are not; and attempts an agent stopped by itself recorded with its
//! reason.

use super::*;
use crate::model::AttemptRecord;
use crate::store::{AgentRegistration, AgentSeen};

/// A registration of `name` on its own queue (so that no other scenario's task is claimed),
/// session `session`, agent id `instance`, whose holder counts as alive if seen since
/// `live_after`.
fn named(name: &str, session: &str, instance: &str, live_after: i64) -> AgentRegistration {
    let mut reg = registration(name);
    reg.queues = vec![format!("{name}-q")];
    reg.session = session.into();
    reg.instance = instance.into();
    reg.live_after = live_after;
    reg
}

/// Submits a one-task job on `name`'s queue and claims its attempt for `name`.
async fn running_on(store: &Arc<dyn Store>, name: &str, session: &str, now: i64) -> AttemptKey {
    let t = on_queue(task("t", &[]), &format!("{name}-q"));
    store
        .submit_job(job(&format!("{name}-job"), vec![t]), now)
        .await
        .unwrap();
    let mut req = claim_req(name, 1);
    req.session = session.into();
    req.queues = vec![format!("{name}-q")];
    let mut claimed = store.claim(req, now).await.unwrap();
    assert_eq!(claimed.assignments.len(), 1, "the task is claimed");
    claimed.assignments.remove(0).attempt
}

async fn attempt(store: &Arc<dyn Store>, key: &AttemptKey) -> AttemptRecord {
    let job = store.get_job(&key.job_id).await.unwrap();
    let task = job.tasks.iter().find(|t| t.spec.id == key.task_id).unwrap();
    task.attempts
        .iter()
        .find(|a| a.number == key.attempt)
        .unwrap()
        .clone()
}

pub(crate) async fn a_live_name_is_refused_to_another_agent_and_kept_by_its_own(
    store: &Arc<dyn Store>,
) {
    store
        .register_agent(named("nm-a", "nm-a-1", "id-1", 0), T0)
        .await
        .unwrap();
    let key = running_on(store, "nm-a", "nm-a-1", T0).await;

    // Another agent (another id) while the holder is alive: refused, and nothing changes.
    let refused = store
        .register_agent(named("nm-a", "nm-a-2", "id-2", T0 - 1_000), T0 + 10)
        .await;
    let Err(StoreError::Conflict(why)) = refused else {
        panic!("a live name is refused to another agent: {refused:?}");
    };
    assert!(
        why.contains("\"nm-a\"") && why.contains("--name") && why.contains("FERRY_NAME"),
        "the refusal names the conflict and the remedy: {why}"
    );
    let a = store.get_agent("nm-a").await.unwrap().unwrap();
    assert_eq!((a.session.as_str(), a.state), ("nm-a-1", AgentState::Ready));
    assert_eq!(attempt(store, &key).await.state, AttemptState::Running);
    // An agent without an id proves nothing either.
    let anonymous = store
        .register_agent(named("nm-a", "nm-a-2", "", T0 - 1_000), T0 + 10)
        .await;
    assert!(
        matches!(anonymous, Err(StoreError::Conflict(_))),
        "{anonymous:?}"
    );

    // The same agent restarted (its id) takes its name back at once; what ran is lost, and
    // says so.
    store
        .register_agent(named("nm-a", "nm-a-3", "id-1", T0 - 1_000), T0 + 20)
        .await
        .unwrap();
    let lost = attempt(store, &key).await;
    assert_eq!(lost.state, AttemptState::Lost);
    assert_eq!(lost.error, "agent nm-a restarted while running it");
    assert_eq!(
        store.get_agent("nm-a").await.unwrap().unwrap().session,
        "nm-a-3"
    );

    // Once the holder is silent past the timeout, another agent may take the name.
    store
        .register_agent(named("nm-a", "nm-a-4", "id-2", T0 + 21), T0 + 30)
        .await
        .unwrap();
    // And a departed holder never blocks it.
    store.agent_left("nm-a", "nm-a-4", T0 + 40).await.unwrap();
    store
        .register_agent(named("nm-a", "nm-a-5", "id-3", 0), T0 + 41)
        .await
        .unwrap();
    assert_eq!(
        store.get_agent("nm-a").await.unwrap().unwrap().state,
        AgentState::Ready
    );
}

pub(crate) async fn departed_agents_are_drained_or_dead_and_forgotten(store: &Arc<dyn Store>) {
    for name in ["dep-left", "dep-dead", "dep-live"] {
        store
            .register_agent(named(name, &format!("{name}-1"), name, 0), T0)
            .await
            .unwrap();
    }
    let key = running_on(store, "dep-left", "dep-left-1", T0).await;

    // A clean exit: drained, not dead; what still ran is lost with that reason.
    let effects = store
        .agent_left("dep-left", "dep-left-1", T0 + 10)
        .await
        .unwrap();
    assert_eq!(effects.jobs.len(), 1, "its job changed");
    let left = store.get_agent("dep-left").await.unwrap().unwrap();
    assert_eq!((left.state, left.seen_at), (AgentState::Drained, T0));
    let lost = attempt(store, &key).await;
    assert_eq!(lost.state, AttemptState::Lost);
    assert_eq!(
        lost.error,
        "agent dep-left left (drained) while it was running"
    );
    let again = store
        .agent_left("dep-left", "dep-left-1", T0 + 11)
        .await
        .unwrap();
    assert!(
        again.jobs.is_empty() && !again.queued,
        "leaving twice does nothing"
    );
    store
        .agent_dead("dep-dead", "dep-dead-1", T0 + 10)
        .await
        .unwrap();
    assert_eq!(
        store.get_agent("dep-dead").await.unwrap().unwrap().state,
        AgentState::Dead
    );
    // A drained agent is not declared dead later, nor touched back to life.
    store
        .agent_dead("dep-left", "dep-left-1", T0 + 12)
        .await
        .unwrap();
    store
        .touch_agents(
            vec![AgentSeen {
                name: "dep-left".into(),
                session: "dep-left-1".into(),
                metrics: None,
            }],
            T0 + 13,
        )
        .await
        .unwrap();
    let left = store.get_agent("dep-left").await.unwrap().unwrap();
    assert_eq!((left.state, left.seen_at), (AgentState::Drained, T0));
    let silent = store.silent_agents(T0 + 1_000).await.unwrap();
    assert!(
        !silent
            .iter()
            .any(|(n, _)| n == "dep-left" || n == "dep-dead"),
        "departed agents are not silent: {silent:?}"
    );
    // Draining an agent that left is refused, naming why.
    let drain = store
        .set_agent_state("dep-left", AgentState::Draining)
        .await;
    assert!(
        matches!(&drain, Err(StoreError::Precondition(m)) if m.contains("already left (drained)")),
        "{drain:?}"
    );

    // A live agent is not forgotten; departed ones are, once.
    let live = store.forget_agent("dep-live").await;
    assert!(
        matches!(&live, Err(StoreError::Precondition(m))
            if m.contains("dep-live is ready") && m.contains("ferry agents drain dep-live")),
        "{live:?}"
    );
    assert!(store.get_agent("dep-live").await.unwrap().is_some());
    for name in ["dep-left", "dep-dead"] {
        store.forget_agent(name).await.unwrap();
        assert!(store.get_agent(name).await.unwrap().is_none());
        let again = store.forget_agent(name).await;
        assert!(matches!(again, Err(StoreError::NotFound(_))), "{again:?}");
    }
}

pub(crate) async fn attempts_an_agent_gave_up_are_lost_with_its_reason(store: &Arc<dyn Store>) {
    for name in ["gave-up", "gave-up-other"] {
        store
            .register_agent(named(name, &format!("{name}-1"), name, 0), T0)
            .await
            .unwrap();
    }
    let key = running_on(store, "gave-up", "gave-up-1", T0).await;
    // Not its attempt: another agent's word changes nothing.
    let effects = store
        .attempts_given_up("gave-up-other", vec![(key.clone(), "no".into())], T0 + 5)
        .await
        .unwrap();
    assert!(effects.jobs.is_empty());
    assert_eq!(attempt(store, &key).await.state, AttemptState::Running);

    let effects = store
        .attempts_given_up(
            "gave-up",
            vec![(key.clone(), "its lease ran out".into())],
            T0 + 10,
        )
        .await
        .unwrap();
    assert_eq!(effects.jobs.len(), 1);
    let lost = attempt(store, &key).await;
    assert_eq!(lost.state, AttemptState::Lost);
    assert_eq!(lost.error, "agent gave-up stopped it: its lease ran out");
    // Said twice (a heartbeat sent again): the second changes nothing.
    let again = store
        .attempts_given_up("gave-up", vec![(key.clone(), "again".into())], T0 + 11)
        .await
        .unwrap();
    assert!(again.jobs.is_empty());
    assert_eq!(attempt(store, &key).await.error, lost.error);
}
