//! Tests of the job file's query parameter check (`query_params`), `--param` keys the job does
//! not declare, and one error for one mistake in an sql table.

use super::{load, load_with, parse};

const JOB: &str = "name = \"etl\"\n\
[params]\n\
day = \"2026-12-07\"\n\
[[tasks]]\n\
id = \"extract\"\n\
[tasks.sql]\n\
datasource = \"sales\"\n\
query = \"select * from s where d = :day and r = :region and x = ':quoted' -- :commented\"\n";

#[test]
fn a_query_parameter_the_job_lacks_is_named_at_its_place() {
    let err = parse("etl.toml", JOB).unwrap_err();
    assert_eq!(
        err.problems,
        [
            "etl.toml:8:49: the query of task \"extract\" uses :region, which is not a parameter \
          of the job; declare it in [params] (or pass --param region=VALUE), or fix the name"
        ]
    );
    let declared = JOB.replace("day = ", "region = \"eu\"\nday = ");
    parse("etl.toml", &declared).unwrap();
}

#[test]
fn a_param_the_job_does_not_declare_is_refused_or_kept_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etl.toml");
    std::fs::write(&path, JOB.replace(":region", "'r'")).unwrap();
    let given = [("dya".to_string(), "2026-12-08".to_string())];
    let err = load(&path, &given).unwrap_err().to_string();
    assert!(
        err.contains("unknown parameter \"dya\": it declares day")
            && err.contains("--allow-extra-params"),
        "{err}"
    );
    let (spec, warnings) = load_with(&path, &given, true).unwrap();
    assert_eq!(spec.params["dya"], "2026-12-08");
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("declares no parameter \"dya\""),
        "{warnings:?}"
    );
    // An extra parameter the query uses is one it may use.
    std::fs::write(&path, JOB).unwrap();
    let given = [("region".to_string(), "eu".to_string())];
    assert!(load(&path, &given).is_err());
    let (spec, _) = load_with(&path, &given, true).unwrap();
    assert_eq!(spec.params["region"], "eu");
}

#[test]
fn an_unknown_format_is_one_problem_not_two() {
    let source = "name = \"etl\"\n[[tasks]]\nid = \"x\"\n[tasks.sql]\ndatasource = \"s\"\n\
                  query = \"select 1\"\nformat = \"parket\"\ncompression = \"snappy\"\n";
    let err = parse("etl.toml", source).unwrap_err();
    assert_eq!(
        err.problems,
        ["etl.toml:7:10: unknown sql.format \"parket\" in task \"x\"; use csv, jsonl, parquet"]
    );
}
