//! Type round trips: a PostgreSQL and a MariaDB row of every supported type, extracted as
//! jsonl, csv (plain and gzip) and Parquet, read back and compared value by value.

use std::collections::BTreeMap;

use ferry_tests::databases;
use mysql_async::prelude::Queryable;
use serde_json::json;

use crate::files::{gunzip, jsonl, parquet_read, parse_csv};
use crate::setup::{extract_info, job, setup};

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
