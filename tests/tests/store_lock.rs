//! One controller per SQLite store: a second controller started on a store in use stops at
//! once, naming it, and the first keeps serving.

use ferry_tests::{Controller, ControllerOpts, TestDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_controller_on_a_sqlite_store_in_use_refuses_to_start() {
    let dir = TestDir::new("store-lock").unwrap();
    let store = format!("sqlite://{}", dir.path().join("ferry.db").display());
    let first = Controller::start(ControllerOpts::default().store(&store))
        .await
        .unwrap();
    let second = Controller::start(ControllerOpts::default().store(&store)).await;
    let e = match second {
        Ok(_) => panic!("a second controller started on a store in use"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("another controller is using the store"), "{e}");
    assert!(e.contains("ferry.db"), "{e}");
    // The first one still answers.
    let out = first.cli().run(["queues", "list"]).await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
}
