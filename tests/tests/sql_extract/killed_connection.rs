//! A database connection killed mid-extract (PostgreSQL and MariaDB): the attempt fails, its
//! partial file is removed and nothing is published.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use ferry_tests::{
    databases,
    job::{attempts, state},
};
use mysql_async::prelude::Queryable;
use serde_json::json;

use crate::files::read_tree_names;
use crate::setup::{job, setup, Setup, JOB_TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_extract_fails_the_attempt_and_publishes_nothing() {
    let s = setup("sql-killed").await;
    let marker = databases::unique_table("ferry_killed");
    // Rows stream for a long time: slow enough to be caught mid-way, fast enough to have
    // written a partial file by then.
    let toml = job(
        "pg-killed",
        &format!(
            r#"datasource = "pg", format = "csv", query = "select g, '{marker}' as m, pg_sleep(0.0005) from generate_series(1, 200000) g""#
        ),
    );
    let id = s.cli.submit(&toml).await.unwrap();
    let pg = databases::postgres().await.unwrap();
    let work = s.agent.work_dir();
    // Wait until the extract is streaming and its partial file has data.
    let partial = partial_file_with_data(&work).await;
    let killed: i64 = pg
        .query_one(
            &format!(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity \
                 where query like '%{marker}%' and pid <> pg_backend_pid()"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    failed_leaving_nothing(&s, &id, &work, &partial, "datasource pg").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_connection_killed_mid_extract_fails_the_attempt_and_publishes_nothing() {
    let s = setup("sql-my-killed").await;
    let marker = databases::unique_table("ferry_killed");
    let toml = job(
        "my-killed",
        &format!(
            r#"datasource = "my", format = "jsonl", query = "select seq, '{marker}' as m, sleep(0.0002) as z from seq_1_to_400000""#
        ),
    );
    let id = s.cli.submit(&toml).await.unwrap();
    let mut my = databases::mysql().await.unwrap();
    let work = s.agent.work_dir();
    let partial = partial_file_with_data(&work).await;
    let ids: Vec<u64> = my
        .query(format!(
            "select id from information_schema.processlist \
             where info like '%{marker}%' and id <> connection_id()"
        ))
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    my.query_drop(format!("KILL CONNECTION {}", ids[0]))
        .await
        .unwrap();
    failed_leaving_nothing(&s, &id, &work, &partial, "datasource my").await;
}

/// The job failed naming `datasource`, its partial file is gone, no extract file is left in
/// the agent's working dirs and nothing was published.
async fn failed_leaving_nothing(
    s: &Setup,
    id: &str,
    work: &std::path::Path,
    partial: &std::path::Path,
    datasource: &str,
) {
    let done = s.cli.wait_job(id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    let error = attempts(&done, "extract").last().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains(datasource), "{error}");
    assert!(
        !partial.exists(),
        "the partial file is left: {}",
        partial.display()
    );
    let left: Vec<_> = read_tree_names(work)
        .into_iter()
        .filter(|p| p.to_str().unwrap().contains("extract"))
        .collect();
    assert!(left.is_empty(), "files left: {left:?}");
    let listed = s.cli.json(["results", "list", id]).await.unwrap();
    assert_eq!(listed, json!([]), "nothing published");
}

/// Waits (30 s at most) until an extract under `work` is streaming: its `.partial` file has data.
async fn partial_file_with_data(work: &Path) -> PathBuf {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = read_tree_names(work).into_iter().find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".partial"))
        });
        if let Some(p) = found {
            if std::fs::metadata(&p).map(|m| m.len() > 0).unwrap_or(false) {
                return p;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no partial file under {}",
            work.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
