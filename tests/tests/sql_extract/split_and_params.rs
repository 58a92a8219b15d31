//! File splits (`max_rows_per_file`) with gzip, from PostgreSQL and MariaDB, and parameters
//! bound as data: a parameter holding SQL syntax matches nothing and drops nothing.

use ferry_tests::databases;
use mysql_async::prelude::Queryable;
use serde_json::json;

use crate::files::{gunzip, parse_csv};
use crate::setup::{extract_info, job, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_files_gzip_and_parameters_bound_as_data() {
    let s = setup("sql-split").await;
    let table = databases::unique_table("ferry_split");
    let pg = databases::postgres().await.unwrap();
    pg.batch_execute(&format!(
        "CREATE TABLE {table} AS SELECT g AS id, 'row ' || g AS v FROM generate_series(1, 25) g"
    ))
    .await
    .unwrap();
    let toml = job(
        "pg-split",
        &format!(
            r#"datasource = "pg", format = "csv", compression = "gzip", max_rows_per_file = 10, query = "select * from {table} where id <= :upto::int order by id""#
        ),
    );
    let (done, files) = s
        .extract(&toml, &["--param", "upto=25", "--allow-extra-params"])
        .await;
    let names: Vec<_> = files.keys().cloned().collect();
    assert_eq!(
        names,
        [
            "extract-00001.csv.gz",
            "extract-00002.csv.gz",
            "extract-00003.csv.gz"
        ]
    );
    let counts: Vec<usize> = names
        .iter()
        .map(|n| parse_csv(std::str::from_utf8(&gunzip(&files[n])).unwrap()).len() - 1)
        .collect();
    assert_eq!(counts, [10, 10, 5]);
    let info = extract_info(&done);
    assert_eq!(info["files"], json!(names));
    assert_eq!(info["rows"], 25);

    // jsonl split too, from MariaDB.
    let my_table = databases::unique_table("ferry_split");
    let mut my = databases::mysql().await.unwrap();
    my.query_drop(format!("CREATE TABLE {my_table} (id INT, v TEXT)"))
        .await
        .unwrap();
    my.query_drop(format!(
        "INSERT INTO {my_table} VALUES (1,'a'),(2,'b'),(3,'c')"
    ))
    .await
    .unwrap();
    let (_, files) = s
        .extract(
            &job("my-split", &format!(r#"datasource = "my", format = "jsonl", max_rows_per_file = 2, query = "select * from {my_table} order by id""#)),
            &[],
        )
        .await;
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["extract-00001.jsonl", "extract-00002.jsonl"]
    );

    // A parameter holding SQL syntax is data: no row matches, the table is still there.
    let hostile = format!("x'; drop table {table}; --");
    let toml = job(
        "pg-hostile",
        &format!(
            r#"datasource = "pg", format = "csv", query = "select * from {table} where v = :v""#
        ),
    );
    let param = format!("v={hostile}");
    let (_, files) = s
        .extract(&toml, &["--param", &param, "--allow-extra-params"])
        .await;
    assert_eq!(files["extract.csv"], b"id,v\n", "header only");
    let n: i64 = pg
        .query_one(&format!("select count(*) from {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 25);
    let toml = job(
        "my-hostile",
        &format!(
            r#"datasource = "my", format = "csv", query = "select * from {my_table} where v = :v""#
        ),
    );
    let hostile = format!("x'; drop table {my_table}; --");
    let (_, files) = s
        .extract(
            &toml,
            &["--param", &format!("v={hostile}"), "--allow-extra-params"],
        )
        .await;
    assert_eq!(files["extract.csv"], b"id,v\n");
    let n: Option<i64> = my
        .query_first(format!("select count(*) from {my_table}"))
        .await
        .unwrap();
    assert_eq!(n, Some(3));
}
