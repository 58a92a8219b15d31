//! Tests of the conversions: sql tasks and backfills round trip, and an empty reported
//! watermark is none.

use super::*;

fn sql_spec(id: &str, format: &str, compression: &str) -> pb::TaskSpec {
    pb::TaskSpec {
        id: id.into(),
        kind: Some(pb::task_spec::Kind::Sql(pb::SqlTask {
            datasource: "orders".into(),
            query: "select 1".into(),
            format: format.into(),
            incremental_column: "id".into(),
            compression: compression.into(),
            max_rows_per_file: 500,
        })),
        ..pb::TaskSpec::default()
    }
}

#[test]
fn sql_tasks_and_backfills_round_trip() {
    let spec = pb::JobSpec {
        name: "j".into(),
        params: Default::default(),
        tasks: vec![
            sql_spec("a", "", "none"),
            sql_spec("b", "parquet", "none"),
            sql_spec("c", "jsonl", "gzip"),
        ],
    };
    let backfill = [(
        "a".to_string(),
        pb::BackfillRange {
            from: None,
            until: "9".into(),
        },
    )]
    .into();
    let job = new_job(Some(spec), String::new(), backfill).unwrap();
    let kinds: Vec<_> = job
        .tasks
        .iter()
        .map(|t| match &t.kind {
            TaskKind::Sql {
                format,
                compression,
                max_rows_per_file,
                ..
            } => (format.as_str(), compression.as_str(), *max_rows_per_file),
            other => panic!("{other:?}"),
        })
        .collect();
    // No format is csv; csv's "none" is the empty compression; parquet keeps "none".
    assert_eq!(
        kinds,
        [
            ("csv", "", 500),
            ("parquet", "none", 500),
            ("jsonl", "gzip", 500)
        ]
    );
    assert_eq!(
        job.backfill["a"],
        Backfill {
            from: None,
            until: "9".into()
        }
    );
    let wire = task_spec(&job.tasks[2]);
    assert_eq!(
        wire.kind,
        Some(pb::task_spec::Kind::Sql(pb::SqlTask {
            datasource: "orders".into(),
            query: "select 1".into(),
            format: "jsonl".into(),
            incremental_column: "id".into(),
            compression: "gzip".into(),
            max_rows_per_file: 500,
        }))
    );
}

#[test]
fn an_empty_reported_watermark_is_none() {
    let e = extract_from_agent(Some(pb::ExtractInfo {
        rows: 1,
        watermark: Some(String::new()),
        ..pb::ExtractInfo::default()
    }))
    .unwrap();
    assert_eq!(e.watermark, None);
    assert!(extract_from_agent(None).is_none());
}
