//! Failover between controllers through real connections to in-process fakes: an unreachable
//! controller is left for the next one with the session kept, on the control and the bulk
//! connection alike; an explicit "session unknown" answer moves nothing.

use std::time::Duration;

use ferry_proto::v1::{AttemptRef, HeartbeatRequest, RegisterRequest};
use tokio_util::sync::CancellationToken;

use super::ClientError;
use crate::testing::{client_for, dead_url, Fake};

const HEARTBEAT: Duration = Duration::from_secs(2);

fn attempt() -> AttemptRef {
    AttemptRef {
        job_id: "j".into(),
        task_id: "t".into(),
        attempt: 1,
    }
}

#[tokio::test]
async fn an_unreachable_first_controller_is_left_for_the_next() {
    let b = Fake::default();
    let (b_url, _b_task) = b.serve(CancellationToken::new()).await;
    let client = client_for(vec![dead_url().await, b_url], 0);
    let e = client
        .register(RegisterRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Transient(_)), "{e}");
    assert_eq!(client.controllers().current(), 1);
    let registered = client.register(RegisterRequest::default()).await.unwrap();
    assert_eq!(registered.session, "s-1");
    assert_eq!(b.state().registers, 1);
}

#[tokio::test]
async fn a_controller_that_goes_away_is_left_with_the_session_kept() {
    let (a, b) = (Fake::default(), Fake::default());
    let stop_a = CancellationToken::new();
    let (a_url, a_task) = a.serve(stop_a.clone()).await;
    let (b_url, _b_task) = b.serve(CancellationToken::new()).await;
    let client = client_for(vec![a_url, b_url], 0);
    client.register(RegisterRequest::default()).await.unwrap();
    client
        .heartbeat(HeartbeatRequest::default(), HEARTBEAT)
        .await
        .unwrap();
    client.upload_status(&attempt(), "out.csv").await.unwrap();
    assert_eq!(a.state().heartbeats, ["s-1"]);

    stop_a.cancel();
    a_task.await.unwrap();
    // The first call to notice moves the agent, whichever connection it went on.
    let e = client
        .heartbeat(HeartbeatRequest::default(), HEARTBEAT)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Transient(_)), "{e}");
    assert_eq!(client.controllers().current(), 1);
    client
        .heartbeat(HeartbeatRequest::default(), HEARTBEAT)
        .await
        .unwrap();
    client.upload_status(&attempt(), "out.csv").await.unwrap();
    let b = b.state();
    assert_eq!(b.heartbeats, ["s-1"], "same session, not registered again");
    assert_eq!(b.registers, 0);
    assert_eq!(b.status_calls, 1, "the bulk connection followed");
}

#[tokio::test]
async fn the_bulk_connection_moves_the_agent_too() {
    let b = Fake::default();
    let (b_url, _b_task) = b.serve(CancellationToken::new()).await;
    let client = client_for(vec![dead_url().await, b_url], 0);
    assert!(client.upload_status(&attempt(), "x").await.is_err());
    assert_eq!(client.controllers().current(), 1);
    client
        .heartbeat(HeartbeatRequest::default(), HEARTBEAT)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_controller_that_does_not_answer_in_time_is_left() {
    let (a, b) = (Fake::default(), Fake::default());
    a.state().faults.stall_heartbeats = true;
    let (a_url, _a_task) = a.serve(CancellationToken::new()).await;
    let (b_url, _b_task) = b.serve(CancellationToken::new()).await;
    let client = client_for(vec![a_url, b_url], 0);
    let e = client
        .heartbeat(HeartbeatRequest::default(), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Transient(_)), "{e}");
    assert_eq!(client.controllers().current(), 1);
    client
        .heartbeat(HeartbeatRequest::default(), HEARTBEAT)
        .await
        .unwrap();
    assert_eq!(b.state().heartbeats.len(), 1);
}

#[tokio::test]
async fn session_unknown_is_an_answer_not_a_reason_to_move() {
    let (a, b) = (Fake::default(), Fake::default());
    a.state().faults.unknown_session = true;
    let (a_url, _a_task) = a.serve(CancellationToken::new()).await;
    let (b_url, _b_task) = b.serve(CancellationToken::new()).await;
    let client = client_for(vec![a_url, b_url], 0);
    let e = client
        .heartbeat(HeartbeatRequest::default(), HEARTBEAT)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::SessionLost(_)), "{e}");
    assert_eq!(client.controllers().current(), 0);
    assert!(b.state().heartbeats.is_empty());
}
