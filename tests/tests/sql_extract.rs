//! SQL extraction against the real PostgreSQL and MariaDB on this machine (and SQLite files):
//! every format, type round trips read back (Parquet with the parquet crate's reader), file
//! splits and gzip, parameters bound as data, bad input named, read-only datasources, secrets
//! kept out of logs and the controller's database, a connection killed mid-extract, and
//! incremental runs across submissions.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use ferry_tests::{
    databases::{self, write_agent_config, DatasourceConfig},
    job::{attempts, state, task},
    Agent, AgentOpts, Cli, Controller, ControllerOpts, TestDir,
};
use mysql_async::prelude::Queryable;

#[path = "sql_extract/files.rs"]
mod files;
use files::{gunzip, jsonl, parquet_read, parse_csv, read_tree, read_tree_names};
use serde_json::{json, Value};

const JOB_TIMEOUT: Duration = Duration::from_secs(90);
const SECRET: &str = "s3cret-ferry-pw-5521";

/// A controller and one agent serving queue `sql` with datasources `pg`, `pg_ro`, `my`,
/// `my_ro`, `lite` and `lite_ro` (a fresh SQLite file); `pg` has [`SECRET`] as its password,
/// in its URL and in its `password_file`.
struct Setup {
    controller: Controller,
    agent: Agent,
    cli: Cli,
    scratch: TestDir,
    sqlite: PathBuf,
}

async fn setup(label: &str) -> Setup {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let scratch = TestDir::new(label).unwrap();
    let pw = scratch.path().join("pg.password");
    std::fs::write(&pw, format!("{SECRET}\n")).unwrap();
    let sqlite = scratch.path().join("lite.db");
    rusqlite::Connection::open(&sqlite).unwrap();
    let config = scratch.path().join("agent.toml");
    // Trust authentication on this machine: the password is configured and never needed,
    // which is what lets the test look for it everywhere.
    let pg = databases::postgres_url();
    let pg_with_secret = pg.replacen("postgres@", &format!("postgres:{SECRET}@"), 1);
    write_agent_config(
        &config,
        &[
            DatasourceConfig::new("pg", pg_with_secret).password_file(&pw),
            DatasourceConfig::new("pg_ro", &pg).read_only(),
            DatasourceConfig::new("my", databases::mysql_url()),
            DatasourceConfig::new("my_ro", databases::mysql_url()).read_only(),
            DatasourceConfig::new("lite", format!("sqlite://{}", sqlite.display())),
            DatasourceConfig::new("lite_ro", format!("sqlite://{}", sqlite.display())).read_only(),
        ],
    )
    .unwrap();
    let agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("sql-agent")
            .queue("sql")
            .arg("--config")
            .arg(config.display().to_string()),
    )
    .await
    .unwrap();
    let cli = controller.cli();
    Setup {
        controller,
        agent,
        cli,
        scratch,
        sqlite,
    }
}

/// A one-task job `name` whose task `extract` runs `sql` (the inside of the `sql = { … }`).
fn job(name: &str, sql: &str) -> String {
    format!(
        r#"
name = "{name}"

[[tasks]]
id = "extract"
queue = "sql"
retry = {{ max_attempts = 1 }}
sql = {{ {sql} }}
"#
    )
}

impl Setup {
    /// Submits, waits for the end, and returns the `jobs show` document.
    async fn run(&self, toml: &str, extra: &[&str]) -> (String, Value) {
        let id = self.cli.submit_with(toml, extra).await.unwrap();
        let done = self.cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
        (id, done)
    }

    /// Runs a job that must succeed and downloads task `extract`'s files.
    async fn extract(&self, toml: &str, extra: &[&str]) -> (Value, BTreeMap<String, Vec<u8>>) {
        let (id, done) = self.run(toml, extra).await;
        assert_eq!(
            state(&done),
            "succeeded",
            "{done:#}\nagent log:\n{}",
            self.agent.log_tail(30)
        );
        let dir = self.scratch.path().join(format!("results-{id}"));
        let out = self
            .cli
            .run([
                "results",
                "get",
                &id,
                "extract",
                "-o",
                &dir.display().to_string(),
            ])
            .await
            .unwrap();
        assert_eq!(out.code, 0, "{out}");
        (done, read_tree(&dir))
    }

    /// Runs a job that must fail and returns the last attempt's error.
    async fn failure(&self, toml: &str) -> String {
        let (_, done) = self.run(toml, &[]).await;
        assert_eq!(state(&done), "failed", "{done:#}");
        let tries = attempts(&done, "extract");
        tries.last().unwrap()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// The extract metadata `jobs show` carries for task `extract`.
fn extract_info(done: &Value) -> Value {
    let t = task(done, "extract");
    t.get("extract")
        .cloned()
        .unwrap_or_else(|| panic!("no extract metadata on task extract: {done:#}"))
}

const PG_TYPES: &str = "id int primary key, i2 smallint, i8 bigint, n numeric(12,3), \
    nf numeric, r real, d double precision, t text, e text, vc varchar(10), b bytea, \
    bo boolean, dt date, tm time, ts timestamp, tstz timestamptz, iv interval, j json, \
    jb jsonb, u uuid, arr int[], tarr text[]";
const PG_ROW: &str = "1, -32768, 9223372036854775807, 123456789.125, \
    3.14159265358979323846264338327950288419716939937510, 1.5, 0.1, \
    E'h\\u00e9llo, \"world\"\\nline2', '', 'abc', '\\x00ff41', true, '2024-02-29', \
    '13:45:30.123456', '2024-02-29 13:45:30.123456', '2024-02-29 13:45:30.123456+02', \
    '1 day 02:03:04', '{\"a\": [1, 2]}', '{\"b\": null}', \
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{1,2,NULL}', '{\"x,y\",z}'";
const PI: &str = "3.14159265358979323846264338327950288419716939937510";

async fn pg_types_table() -> String {
    let table = databases::unique_table("ferry_types");
    let pg = databases::postgres().await.unwrap();
    pg.batch_execute(&format!(
        "CREATE TABLE {table} ({PG_TYPES}); INSERT INTO {table} VALUES ({PG_ROW}); \
         INSERT INTO {table} (id) VALUES (2);"
    ))
    .await
    .unwrap();
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_types_round_trip_in_every_format() {
    let s = setup("sql-pg-types").await;
    let table = pg_types_table().await;
    let query = format!("select * from {table} order by id");

    // jsonl
    let (done, files) = s
        .extract(
            &job(
                "pg-jsonl",
                &format!(r#"datasource = "pg", format = "jsonl", query = "{query}""#),
            ),
            &[],
        )
        .await;
    let rows = jsonl(&files["extract.jsonl"]);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let r = &rows[0];
    let expect = json!({
        "id": 1, "i2": -32768, "i8": 9223372036854775807i64, "n": "123456789.125",
        "nf": PI, "r": 1.5, "d": 0.1, "t": "héllo, \"world\"\nline2", "e": "", "vc": "abc",
        "b": "AP9B", "bo": true, "dt": "2024-02-29", "tm": "13:45:30.123456",
        "ts": "2024-02-29T13:45:30.123456", "tstz": "2024-02-29T11:45:30.123456Z",
        "iv": "1 day 02:03:04", "j": {"a": [1, 2]}, "jb": {"b": null},
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "arr": [1, 2, null], "tarr": ["x,y", "z"]
    });
    assert_eq!(r, &expect);
    for (k, v) in rows[1].as_object().unwrap() {
        if k != "id" {
            assert!(v.is_null(), "{k} of the NULL row is {v}");
        }
    }
    let info = extract_info(&done);
    assert_eq!(info["rows"], 2, "{info:#}");
    let cols = info["columns"].as_array().unwrap();
    let col = |name: &str| cols.iter().find(|c| c["name"] == name).unwrap().clone();
    assert_eq!(col("n")["source_type"], "numeric(12,3)");
    assert_eq!(col("n")["file_type"], "decimal(12,3)");
    assert_eq!(col("tstz")["file_type"], "timestamp[us, UTC]");
    assert_eq!(col("id")["nullable"], false);
    assert_eq!(col("t")["nullable"], true);

    // csv: the server's own text forms, bytes in base64, NULL empty and unquoted.
    let (_, files) = s
        .extract(
            &job(
                "pg-csv",
                &format!(r#"datasource = "pg", format = "csv", query = "{query}""#),
            ),
            &[],
        )
        .await;
    let text = String::from_utf8(files["extract.csv"].clone()).unwrap();
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), 3, "{text}");
    let header: Vec<_> = rows[0].iter().map(|f| f.clone().unwrap()).collect();
    assert_eq!(header[..4], ["id", "i2", "i8", "n"]);
    let row: BTreeMap<_, _> = header.iter().cloned().zip(rows[1].clone()).collect();
    let get = |k: &str| row[k].clone();
    assert_eq!(get("i8").as_deref(), Some("9223372036854775807"));
    assert_eq!(get("n").as_deref(), Some("123456789.125"));
    assert_eq!(get("nf").as_deref(), Some(PI));
    assert_eq!(get("t").as_deref(), Some("héllo, \"world\"\nline2"));
    assert_eq!(get("e").as_deref(), Some(""), "an empty string is not NULL");
    assert_eq!(get("b").as_deref(), Some("AP9B"));
    assert_eq!(
        get("tstz").as_deref(),
        Some("2024-02-29 11:45:30.123456+00")
    );
    assert_eq!(get("arr").as_deref(), Some("{1,2,NULL}"));
    assert!(
        text.contains("\n2,,,,,,,,,,,,,,,,,,,,,\n"),
        "NULLs are empty: {text}"
    );

    // parquet: typed columns read back with the parquet crate.
    let (_, files) = s
        .extract(
            &job(
                "pg-parquet",
                &format!(r#"datasource = "pg", format = "parquet", query = "{query}""#),
            ),
            &[],
        )
        .await;
    let (columns, rows) = parquet_read(&files["extract.parquet"]);
    let types: BTreeMap<_, _> = columns
        .iter()
        .map(|(n, p, l)| (n.as_str(), format!("{p} {l}")))
        .collect();
    assert_eq!(types["i8"], "INT64 None");
    assert_eq!(
        types["n"],
        "INT64 Some(Decimal { scale: 3, precision: 12 })"
    );
    assert_eq!(types["nf"], "BYTE_ARRAY Some(String)");
    assert!(
        types["tstz"].contains("is_adjusted_to_u_t_c: true"),
        "{types:?}"
    );
    assert!(
        types["ts"].contains("is_adjusted_to_u_t_c: false"),
        "{types:?}"
    );
    assert_eq!(types["u"], "FIXED_LEN_BYTE_ARRAY Some(Uuid)");
    assert_eq!(types["dt"], "INT32 Some(Date)");
    assert_eq!(types["b"], "BYTE_ARRAY None");
    let names: Vec<&str> = columns.iter().map(|c| c.0.as_str()).collect();
    let row: BTreeMap<_, _> = names.iter().zip(&rows[0]).collect();
    assert_eq!(row[&"i8"], "9223372036854775807");
    assert_eq!(row[&"n"], "123456789.125");
    assert_eq!(row[&"nf"], &format!("\"{PI}\""));
    assert_eq!(row[&"d"], "0.1");
    assert_eq!(row[&"bo"], "true");
    assert_eq!(row[&"dt"], "2024-02-29");
    assert!(row[&"tstz"].starts_with("2024-02-29 11:45:30"), "{row:?}");
    assert_eq!(row[&"arr"], "\"[1,2,null]\"");
    assert!(rows[1][1..].iter().all(|f| f == "null"), "{:?}", rows[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_types_round_trip_in_every_format() {
    let s = setup("sql-my-types").await;
    let table = databases::unique_table("ferry_types");
    let mut my = databases::mysql().await.unwrap();
    my.query_drop(format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, ti TINYINT, bi BIGINT, ub BIGINT UNSIGNED, \
         n DECIMAL(12,3), f FLOAT, d DOUBLE, t TEXT, e VARCHAR(5), b VARBINARY(10), dt DATE, \
         tm TIME(6), ts DATETIME(6), tz TIMESTAMP(6) NULL, j JSON, u UUID)"
    ))
    .await
    .unwrap();
    my.query_drop("SET time_zone = '+02:00'").await.unwrap();
    my.query_drop(format!(
        "INSERT INTO {table} VALUES (1, -128, 9223372036854775807, 18446744073709551615, \
         123456789.125, 1.5, 0.1, 'h\u{e9}llo, \"world\"\\nline2', '', X'00FF41', '2024-02-29', \
         '-838:59:59.000001', '2024-02-29 13:45:30.123456', '2024-02-29 13:45:30.123456', \
         '{{\"a\": [1, 2]}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), \
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    ))
    .await
    .unwrap();
    drop(my);
    let query = format!("select * from {table} order by id");

    let (done, files) = s
        .extract(
            &job(
                "my-jsonl",
                &format!(r#"datasource = "my", format = "jsonl", query = "{query}""#),
            ),
            &[],
        )
        .await;
    let rows = jsonl(&files["extract.jsonl"]);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        json!({
            "id": 1, "ti": -128, "bi": 9223372036854775807i64, "ub": 18446744073709551615u64,
            "n": "123456789.125", "f": 1.5, "d": 0.1, "t": "héllo, \"world\"\nline2", "e": "",
            "b": "AP9B", "dt": "2024-02-29", "tm": "-838:59:59.000001",
            "ts": "2024-02-29T13:45:30.123456", "tz": "2024-02-29T11:45:30.123456Z",
            // MariaDB's JSON is LONGTEXT: it reaches the file as text.
            "j": "{\"a\": [1, 2]}", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        })
    );
    assert!(rows[1]
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| k == "id" || v.is_null()));
    let info = extract_info(&done);
    let cols = info["columns"].as_array().unwrap();
    let col = |name: &str| cols.iter().find(|c| c["name"] == name).unwrap().clone();
    assert_eq!(col("n")["file_type"], "decimal(12,3)");
    assert_eq!(col("ub")["file_type"], "decimal(20,0)");
    assert_eq!(col("id")["nullable"], false);

    let (_, files) = s
        .extract(
            &job(
                "my-csv",
                &format!(
                    r#"datasource = "my", format = "csv", compression = "gzip", query = "{query}""#
                ),
            ),
            &[],
        )
        .await;
    let text = String::from_utf8(gunzip(&files["extract.csv.gz"])).unwrap();
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(rows[1][7].as_deref(), Some("héllo, \"world\"\nline2"));
    assert_eq!(rows[1][8].as_deref(), Some(""));
    assert!(rows[2][1..].iter().all(Option::is_none), "{:?}", rows[2]);

    let (_, files) = s
        .extract(
            &job("my-parquet", &format!(r#"datasource = "my", format = "parquet", compression = "snappy", query = "{query}""#)),
            &[],
        )
        .await;
    let (columns, rows) = parquet_read(&files["extract.parquet"]);
    let names: Vec<&str> = columns.iter().map(|c| c.0.as_str()).collect();
    let row: BTreeMap<_, _> = names.iter().zip(&rows[0]).collect();
    assert_eq!(row[&"bi"], "9223372036854775807");
    // The reader prints a scale-0 decimal with a trailing point.
    assert_eq!(row[&"ub"].trim_end_matches('.'), "18446744073709551615");
    assert_eq!(row[&"n"], "123456789.125");
    assert_eq!(row[&"dt"], "2024-02-29");
    assert!(row[&"tz"].starts_with("2024-02-29 11:45:30"), "{row:?}");
    assert!(rows[1][1..].iter().all(|f| f == "null"), "{:?}", rows[1]);
}

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
    let (done, files) = s.extract(&toml, &["--param", "upto=25"]).await;
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
    let (_, files) = s.extract(&toml, &["--param", &param]).await;
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
        .extract(&toml, &["--param", &format!("v={hostile}")])
        .await;
    assert_eq!(files["extract.csv"], b"id,v\n");
    let n: Option<i64> = my
        .query_first(format!("select count(*) from {my_table}"))
        .await
        .unwrap();
    assert_eq!(n, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_secrets_stay_on_the_agent() {
    let s = setup("sql-errors").await;
    let error = s
        .failure(&job(
            "unknown-ds",
            r#"datasource = "nope", query = "select 1""#,
        ))
        .await;
    assert!(
        error.contains("\"nope\"") && error.contains("lite, lite_ro, my, my_ro, pg, pg_ro"),
        "{error}"
    );

    let error = s
        .failure(&job(
            "missing-param",
            r#"datasource = "pg", query = "select :day::date""#,
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
    let controller_log = std::fs::read(s.controller.log_path()).unwrap();
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
    let done = s.cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    let error = attempts(&done, "extract").last().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("datasource pg"), "{error}");
    assert!(
        !partial.exists(),
        "the partial file is left: {}",
        partial.display()
    );
    let left: Vec<_> = read_tree_names(&work)
        .into_iter()
        .filter(|p| p.to_str().unwrap().contains("extract"))
        .collect();
    assert!(left.is_empty(), "files left: {left:?}");
    let listed = s.cli.json(["results", "list", &id]).await.unwrap();
    assert_eq!(listed, json!([]), "nothing published");
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
    let done = s.cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    let error = attempts(&done, "extract").last().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("datasource my"), "{error}");
    assert!(
        !partial.exists(),
        "the partial file is left: {}",
        partial.display()
    );
    let left: Vec<_> = read_tree_names(&work)
        .into_iter()
        .filter(|p| p.to_str().unwrap().contains("extract"))
        .collect();
    assert!(left.is_empty(), "files left: {left:?}");
    let listed = s.cli.json(["results", "list", &id]).await.unwrap();
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
