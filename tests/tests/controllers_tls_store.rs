//! A controller's PostgreSQL store over TLS (a server the test starts with a certificate of
//! its own CA): with `sslmode=verify-full` and that CA as `sslrootcert`, the controller's
//! connections are encrypted (the server's `pg_stat_ssl` says so) and a job runs; with another
//! CA, the controller refuses to start, naming the certificate.

use std::time::Duration;

use ferry_tests::{AgentOpts, Controller, ControllerOpts, DevCerts, PgServer, TestDir};

const JOB: &str = r#"
name = "over-tls"

[[tasks]]
id = "only"
shell = "true"
"#;

fn store_url(server: &PgServer, ca: &std::path::Path) -> String {
    format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        server.admin_url(),
        ca.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_over_tls_is_verified_and_encrypted() {
    let certs = DevCerts::generate().unwrap();
    let server =
        PgServer::start_with_tls(&certs.file("controller.pem"), &certs.file("controller.key"))
            .await
            .unwrap();
    let data = TestDir::new("tls-store").unwrap();
    let controller = Controller::start(
        ControllerOpts::default()
            .store(store_url(&server, &certs.ca()))
            .data_dir(data.path()),
    )
    .await
    .unwrap();
    let _agent = ferry_tests::Agent::start(&controller.addr(), AgentOpts::new("tls-store-agent"))
        .await
        .unwrap();
    let cli = controller.cli();
    let id = cli.submit(JOB).await.unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(done["state"], "succeeded", "{done:#}");

    // From the server's own record: every connection of the controller is encrypted.
    let (admin, connection) = tokio_postgres::connect(&server.admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid
             WHERE a.application_name = 'ferry-controller'",
            &[],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty(), "the controller has connections");
    assert!(
        rows.iter().all(|r| r.get::<_, bool>(0)),
        "every controller connection uses TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_certificate_does_not_chain_to_the_given_ca_is_refused() {
    let certs = DevCerts::generate().unwrap();
    let other = DevCerts::generate().unwrap();
    let server =
        PgServer::start_with_tls(&certs.file("controller.pem"), &certs.file("controller.key"))
            .await
            .unwrap();
    let data = TestDir::new("tls-store-refused").unwrap();
    let (status, log) = Controller::start_refused(
        ControllerOpts::default()
            .store(store_url(&server, &other.ca()))
            .data_dir(data.path()),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(!status.success(), "{status}\n{log}");
    assert!(
        log.to_lowercase().contains("certificate"),
        "the refusal names the certificate:\n{log}"
    );
}
