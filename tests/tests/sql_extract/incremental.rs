//! Incremental extracts across submissions: SQLite and PostgreSQL runs take only the rows past
//! the watermark, and a failed run leaves the watermark where it was.

use std::collections::BTreeMap;

use ferry_tests::databases;
use serde_json::json;

use crate::files::{jsonl, parse_csv};
use crate::setup::{extract_info, job, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_extract_and_incremental_runs_across_submissions() {
    let s = setup("sql-lite").await;
    let db = rusqlite::Connection::open(&s.sqlite).unwrap();
    db.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, amount REAL, note TEXT, paid BOOLEAN, raw BLOB);
         INSERT INTO orders VALUES (1, 9.5, 'a', 1, x'00ff'), (2, NULL, 'b', 0, NULL), (3, 1.25, NULL, 1, NULL);",
    )
    .unwrap();
    let toml = job(
        "lite-orders",
        r#"datasource = "lite", format = "jsonl", query = "select * from orders where id > :min", incremental = { column = "id" }"#,
    );
    let toml = format!("{toml}\n[params]\nmin = \"0\"\n");
    let (done, files) = s.extract(&toml, &[]).await;
    let rows = jsonl(&files["extract.jsonl"]);
    assert_eq!(
        rows,
        [
            json!({"id": 1, "amount": 9.5, "note": "a", "paid": true, "raw": "AP8="}),
            json!({"id": 2, "amount": null, "note": "b", "paid": false, "raw": null}),
            json!({"id": 3, "amount": 1.25, "note": null, "paid": true, "raw": null}),
        ]
    );
    let info = extract_info(&done);
    assert_eq!(info["watermark"], "3", "{info:#}");
    assert_eq!(info["incremental_column"], "id");

    db.execute_batch("INSERT INTO orders VALUES (4, 4.0, 'd', 0, NULL), (5, 5.0, 'e', 0, NULL);")
        .unwrap();
    let (done, files) = s.extract(&toml, &[]).await;
    let ids: Vec<_> = jsonl(&files["extract.jsonl"])
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [json!(4), json!(5)],
        "the second run takes only the new rows"
    );
    assert_eq!(extract_info(&done)["watermark"], "5");

    let (done, files) = s.extract(&toml, &[]).await;
    assert!(files["extract.jsonl"].is_empty(), "nothing new: no rows");
    assert_eq!(extract_info(&done)["rows"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_incremental_takes_new_rows_only_and_a_failure_keeps_the_watermark() {
    let s = setup("sql-pg-incr").await;
    let table = databases::unique_table("ferry_incr");
    let pg = databases::postgres().await.unwrap();
    pg.batch_execute(&format!(
        "CREATE TABLE {table} (id bigint, at timestamptz, v text); \
         INSERT INTO {table} SELECT g, '2026-01-01'::timestamptz + g * interval '1 minute', 'v' || g \
         FROM generate_series(1, 3) g;"
    ))
    .await
    .unwrap();
    let toml = job(
        "pg-incr",
        &format!(
            r#"datasource = "pg", format = "csv", query = "select id, at, v from {table}", incremental = {{ column = "at" }}"#
        ),
    );
    let ids = |files: &BTreeMap<String, Vec<u8>>| -> Vec<String> {
        parse_csv(std::str::from_utf8(&files["extract.csv"]).unwrap())[1..]
            .iter()
            .map(|r| r[0].clone().unwrap())
            .collect()
    };
    let (done, files) = s.extract(&toml, &[]).await;
    assert_eq!(ids(&files), ["1", "2", "3"]);
    assert_eq!(extract_info(&done)["watermark"], "2026-01-01 00:03:00+00");

    pg.batch_execute(&format!(
        "INSERT INTO {table} VALUES (4, '2026-01-01 00:04:00+00', 'v4'), (5, '2026-01-01 00:05:00+00', 'v5')"
    ))
    .await
    .unwrap();
    // A failing run (the table is gone for a moment) must not move the watermark.
    pg.batch_execute(&format!("ALTER TABLE {table} RENAME TO {table}_away"))
        .await
        .unwrap();
    let error = s.failure(&toml).await;
    assert!(
        error.contains("datasource pg") && error.contains("does not exist"),
        "{error}"
    );
    pg.batch_execute(&format!("ALTER TABLE {table}_away RENAME TO {table}"))
        .await
        .unwrap();

    let (done, files) = s.extract(&toml, &[]).await;
    assert_eq!(ids(&files), ["4", "5"]);
    assert_eq!(extract_info(&done)["watermark"], "2026-01-01 00:05:00+00");
    let (done, files) = s.extract(&toml, &[]).await;
    assert!(ids(&files).is_empty());
    assert_eq!(extract_info(&done)["rows"], 0);
}
