//! Bad input named in the attempt's error (missing parameter, bad SQL; a datasource no agent
//! has is never dispatched: `waiting.rs`),
//! read-only datasources refusing writes, and the datasource password kept out of every log
//! and of the controller's data directory.

use ferry_tests::databases;
use mysql_async::prelude::Queryable;

use crate::files::read_tree;
use crate::setup::{job, setup, SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_secrets_stay_on_the_agent() {
    let s = setup("sql-errors").await;
    let error = s
        .failure(&job(
            "missing-param",
            // A parameter PostgreSQL sees but MySQL does not (inside its backslash-escaped
            // string) passes the submit's check, which refuses only what every dialect sees
            // (usability.rs); the agent names it, once, without retrying.
            r#"datasource = "pg", query = "select '\\', :day::date --'""#,
        ))
        .await;
    assert!(error.contains(":day"), "{error}");

    let error = s
        .failure(&job(
            "bad-sql",
            r#"datasource = "pg", query = "select * from no_such_table_xyz""#,
        ))
        .await;
    assert!(
        error.contains("datasource pg")
            && error.contains("relation \"no_such_table_xyz\" does not exist"),
        "{error}"
    );
    let error = s
        .failure(&job(
            "bad-my",
            r#"datasource = "my", query = "select * from no_such_table_xyz""#,
        ))
        .await;
    assert!(
        error.contains("datasource my") && error.contains("no_such_table_xyz"),
        "{error}"
    );
    assert!(
        !error.contains("127.0.0.1") && !error.contains("root@"),
        "{error}"
    );

    // Read-only datasources: the database refuses writes.
    let table = databases::unique_table("ferry_ro");
    let pg = databases::postgres().await.unwrap();
    pg.batch_execute(&format!(
        "CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1)"
    ))
    .await
    .unwrap();
    let error = s
        .failure(&job(
            "ro-pg",
            &format!(r#"datasource = "pg_ro", query = "delete from {table} returning *""#),
        ))
        .await;
    assert!(
        error.contains("datasource pg_ro") && error.contains("read-only transaction"),
        "{error}"
    );
    let mut my = databases::mysql().await.unwrap();
    my.query_drop(format!("CREATE TABLE {table} (id INT)"))
        .await
        .unwrap();
    my.query_drop(format!("INSERT INTO {table} VALUES (1)"))
        .await
        .unwrap();
    let error = s
        .failure(&job(
            "ro-my",
            &format!(r#"datasource = "my_ro", query = "delete from {table}""#),
        ))
        .await;
    assert!(
        error.contains("datasource my_ro") && error.contains("READ ONLY"),
        "{error}"
    );
    let n: i64 = pg
        .query_one(&format!("select count(*) from {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let n: Option<i64> = my
        .query_first(format!("select count(*) from {table}"))
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    let lite = rusqlite::Connection::open(&s.sqlite).unwrap();
    lite.execute_batch("CREATE TABLE ro (id INTEGER); INSERT INTO ro VALUES (1);")
        .unwrap();
    let error = s
        .failure(&job(
            "ro-lite",
            r#"datasource = "lite_ro", query = "delete from ro returning id""#,
        ))
        .await;
    assert!(
        error.contains("datasource lite_ro") && error.contains("readonly"),
        "{error}"
    );
    let n: i64 = lite
        .query_row("select count(*) from ro", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);

    // A successful extract through the datasource whose URL and file hold the password.
    let _ = s
        .extract(
            &job("ok", r#"datasource = "pg", query = "select 1 as one""#),
            &[],
        )
        .await;

    // The password is nowhere but the agent's own config: not in any log, not in the
    // controller's data directory (its database included).
    let agent_log = std::fs::read(s.agent.log_path()).unwrap();
    let mut controller_log = std::fs::read(s.controller.log_path()).unwrap();
    // The controller's own store (a PostgreSQL database with FERRY_TEST_STORE=postgres) is
    // named in its log; it is no datasource.
    if let Some(store) = s.controller.store_url() {
        controller_log = String::from_utf8_lossy(&controller_log)
            .replace(store, "<the controller's store>")
            .into_bytes();
    }
    for (what, bytes) in [
        ("agent log", &agent_log),
        ("controller log", &controller_log),
    ] {
        assert!(
            !contains(bytes, SECRET.as_bytes()),
            "the password is in the {what}"
        );
        assert!(
            !contains(bytes, b"postgres://"),
            "a datasource url is in the {what}"
        );
    }
    for (name, bytes) in read_tree(&s.controller.data_dir()) {
        assert!(
            !contains(&bytes, SECRET.as_bytes()),
            "the password is in the controller's {name}"
        );
        assert!(
            !contains(&bytes, b"postgres://postgres"),
            "a datasource url is in the controller's {name}"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
