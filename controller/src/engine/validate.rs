//! Structural checks of a submitted job, whoever sent it: the CLI checks the file with its
//! locations first, but the API is open to any client, so the controller checks again: every
//! field against its limit (`fields`, the limits of `ferry_jobspec::limits`), then the graph.

use std::collections::HashSet;

use ferry_jobspec::check::{self, shown};
use ferry_jobspec::sql;

use crate::model::{NewJob, TaskKind, TaskSpec};

mod fields;

pub(crate) use fields::labels;

/// Every problem with the job: its fields past their limits (`fields`), then its structure in
/// task order; empty when it is valid.
pub fn problems(job: &NewJob) -> Vec<String> {
    let mut problems = Vec::new();
    fields::problems(job, &mut problems);
    if job.tasks.len() > ferry_jobspec::limits::TASKS_PER_JOB_MAX {
        // The graph of a job refused for its size is not worth walking.
        return reported(problems);
    }
    if job.tasks.is_empty() {
        problems.push("job has no tasks".to_string());
    }
    let mut ids = HashSet::new();
    for task in &job.tasks {
        if let Some(problem) = check::task_id(&task.id) {
            problems.push(format!("task id {} {problem}", shown(&task.id)));
        }
        if !ids.insert(task.id.as_str()) {
            problems.push(format!("duplicate task id {}", shown(&task.id)));
        }
        sql_problems(task, &job.params, &mut problems);
    }
    for task in &job.tasks {
        for dep in &task.depends_on {
            if dep == &task.id {
                problems.push(format!("task {} depends on itself", shown(&task.id)));
            } else if !ids.contains(dep.as_str()) {
                problems.push(format!(
                    "task {} depends on unknown task {}",
                    shown(&task.id),
                    shown(dep)
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(job) {
        problems.push(format!("dependency cycle: {}", cycle.join(" -> ")));
    }
    for (task_id, range) in &job.backfill {
        match job.tasks.iter().find(|t| &t.id == task_id) {
            None => problems.push(format!("backfill names unknown task {}", shown(task_id))),
            Some(t) if t.kind.incremental_column().is_none() => problems.push(format!(
                "backfill of task {task_id:?}: it is not an incremental sql task"
            )),
            Some(_) => {}
        }
        if range.until.is_empty() {
            problems.push(format!(
                "backfill of task {} has an empty upper bound (until)",
                shown(task_id)
            ));
        }
    }
    reported(problems)
}

/// Problems reported at once: the first 20, and how many more there are.
const REPORTED_MAX: usize = 20;

fn reported(mut problems: Vec<String>) -> Vec<String> {
    if problems.len() > REPORTED_MAX {
        let more = problems.len() - REPORTED_MAX;
        problems.truncate(REPORTED_MAX);
        problems.push(format!("and {more} more problems"));
    }
    problems
}

/// Checks of an sql task: datasource and query given, every `:name` of the query a parameter
/// of the job, a known format, a compression that format takes, and no declared outputs (its
/// extract files are its outputs).
fn sql_problems(
    task: &TaskSpec,
    params: &std::collections::BTreeMap<String, String>,
    problems: &mut Vec<String>,
) {
    let TaskKind::Sql {
        datasource,
        query,
        format,
        compression,
        ..
    } = &task.kind
    else {
        return;
    };
    let id = &shown(&task.id);
    if datasource.trim().is_empty() {
        problems.push(format!("sql task {id} has no datasource"));
    }
    if query.trim().is_empty() {
        problems.push(format!("sql task {id} has no query"));
    }
    for (_, name) in ferry_jobspec::query::unknown_params(query, |n| params.contains_key(n)) {
        problems.push(ferry_jobspec::query::unknown_param_problem(&name, &task.id));
    }
    match sql::compressions(format) {
        None => problems.push(format!(
            "sql task {id}: unknown format {}; use {}",
            shown(format),
            sql::FORMATS.join(", ")
        )),
        Some(allowed) if !compression.is_empty() && !allowed.contains(&compression.as_str()) => {
            problems.push(format!(
                "sql task {id}: compression {} does not apply to {format}; use {}",
                shown(compression),
                allowed.join(", ")
            ))
        }
        Some(_) => {}
    }
    if !task.outputs.is_empty() {
        problems.push(format!(
            "sql task {id} declares outputs: its extract files are its outputs"
        ));
    }
}

/// The first cycle among the tasks' dependencies (`ferry_jobspec::graph`), as the ids along it
/// (first repeated at the end).
fn find_cycle(job: &NewJob) -> Option<Vec<String>> {
    let ids: Vec<Option<&str>> = job.tasks.iter().map(|t| Some(t.id.as_str())).collect();
    let deps: Vec<Vec<&str>> = job
        .tasks
        .iter()
        .map(|t| t.depends_on.iter().map(String::as_str).collect())
        .collect();
    let cycle = ferry_jobspec::graph::cycles(&ids, &deps)
        .into_iter()
        .next()?;
    Some(cycle.iter().map(|&i| job.tasks[i].id.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RetryPolicy, TaskKind, TaskSpec};

    fn task(id: &str, deps: &[&str]) -> TaskSpec {
        TaskSpec {
            id: id.into(),
            queue: "default".into(),
            labels: Default::default(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            kind: TaskKind::Shell {
                command: "true".into(),
            },
            outputs: vec![],
            timeout_ms: 0,
            schedule_to_start_timeout_ms: 0,
            retry: RetryPolicy::default(),
        }
    }

    fn job(tasks: Vec<TaskSpec>) -> NewJob {
        NewJob {
            name: "j".into(),
            params: Default::default(),
            tasks,
            idempotency_key: None,
            backfill: Default::default(),
        }
    }

    fn sql(id: &str, format: &str, compression: &str, incremental: &str) -> TaskSpec {
        TaskSpec {
            kind: TaskKind::Sql {
                datasource: "orders".into(),
                query: "select 1".into(),
                format: format.into(),
                incremental_column: incremental.into(),
                compression: compression.into(),
                max_rows_per_file: 0,
            },
            ..task(id, &[])
        }
    }

    #[test]
    fn sql_tasks_need_a_known_format_a_fitting_compression_and_no_outputs() {
        assert!(problems(&job(vec![
            sql("a", "csv", "", ""),
            sql("b", "csv", "gzip", ""),
            sql("c", "jsonl", "none", ""),
            sql("d", "parquet", "snappy", "id"),
            sql("e", "parquet", "zstd", ""),
        ]))
        .is_empty());
        let mut with_outputs = sql("f", "csv", "", "");
        with_outputs.outputs = vec!["x.csv".into()];
        let mut empty = sql("g", "csv", "", "");
        if let TaskKind::Sql {
            datasource, query, ..
        } = &mut empty.kind
        {
            datasource.clear();
            query.clear();
        }
        assert_eq!(
            problems(&job(vec![
                sql("a", "xml", "", ""),
                sql("b", "csv", "zstd", ""),
                sql("c", "parquet", "gzip", ""),
                with_outputs,
                empty,
            ])),
            vec![
                "sql task \"a\": unknown format \"xml\"; use csv, jsonl, parquet",
                "sql task \"b\": compression \"zstd\" does not apply to csv; use none, gzip",
                "sql task \"c\": compression \"gzip\" does not apply to parquet; use zstd, snappy, none",
                "sql task \"f\" declares outputs: its extract files are its outputs",
                "sql task \"g\" has no datasource",
                "sql task \"g\" has no query",
            ]
        );
    }

    #[test]
    fn a_query_parameter_the_job_lacks_is_refused_by_name() {
        let mut t = sql("extract", "csv", "", "");
        if let TaskKind::Sql { query, .. } = &mut t.kind {
            *query = "select * from s where d = :day and r = :region and x = ':no'".into();
        }
        let mut j = job(vec![t]);
        j.params.insert("day".into(), "2026-12-07".into());
        assert_eq!(
            problems(&j),
            vec![ferry_jobspec::query::unknown_param_problem(
                "region", "extract"
            )]
        );
    }

    #[test]
    fn backfills_name_incremental_sql_tasks_and_an_upper_bound() {
        let mut j = job(vec![
            sql("inc", "csv", "", "updated_at"),
            sql("full", "csv", "", ""),
            task("sh", &[]),
        ]);
        let range = |from: Option<&str>, until: &str| crate::model::Backfill {
            from: from.map(str::to_string),
            until: until.into(),
        };
        j.backfill.insert("inc".into(), range(None, "2026-01-01"));
        assert!(problems(&j).is_empty());
        j.backfill.insert("full".into(), range(Some("1"), "2"));
        j.backfill.insert("sh".into(), range(None, "2"));
        j.backfill.insert("nope".into(), range(None, "2"));
        j.backfill.insert("inc".into(), range(Some("1"), ""));
        assert_eq!(
            problems(&j),
            vec![
                "backfill of task \"full\": it is not an incremental sql task",
                "backfill of task \"inc\" has an empty upper bound (until)",
                "backfill names unknown task \"nope\"",
                "backfill of task \"sh\": it is not an incremental sql task",
            ]
        );
    }

    #[test]
    fn a_valid_dag_has_no_problems() {
        assert!(problems(&job(vec![
            task("a", &[]),
            task("b", &["a"]),
            task("c", &["a", "b"])
        ]))
        .is_empty());
    }

    #[test]
    fn names_duplicates_unknown_deps_self_deps_and_cycles() {
        let found = problems(&job(vec![
            task("a", &["c"]),
            task("e", &[]),
            task("e", &[]),
            task("b", &["zz", "b"]),
            task("c", &["d"]),
            task("d", &["a"]),
        ]));
        assert_eq!(
            found,
            vec![
                "duplicate task id \"e\"",
                "task \"b\" depends on unknown task \"zz\"",
                "task \"b\" depends on itself",
                "dependency cycle: a -> c -> d -> a",
            ]
        );
    }
}
