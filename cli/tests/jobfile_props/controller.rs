//! What the controller would refuse of a job the file reader accepted: the shared checks of
//! `ferry_jobspec`, applied field by field as the controller's `engine::validate` does.

use std::collections::HashSet;

use ferry_jobspec::check::{self, Chars};
use ferry_jobspec::limits as l;
use ferry_proto::v1::{task_spec::Kind, JobSpec};

/// What the controller would refuse of an accepted file: the shared checks of
/// `ferry_jobspec`, field by field (the controller's `engine::validate`).
pub(crate) fn controller_problems(spec: &JobSpec) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |what: &str, problem: Option<String>| {
        if let Some(p) = problem {
            out.push(format!("{what} {p}"));
        }
    };
    note(
        "name",
        check::text(&spec.name, l::JOB_NAME_MAX, Chars::NoControl, true),
    );
    note(
        "tasks",
        check::count(spec.tasks.len(), l::TASKS_PER_JOB_MAX),
    );
    note("params", check::count(spec.params.len(), l::PARAMS_MAX));
    let mut params_bytes = 0;
    for (name, value) in &spec.params {
        params_bytes += name.len() + value.len();
        note("param name", check::param_name(name));
        note(
            "param",
            check::text(value, l::PARAM_VALUE_MAX, Chars::NoNul, false),
        );
    }
    note(
        "params bytes",
        check::count(params_bytes, l::PARAMS_TOTAL_MAX),
    );
    let mut ids = HashSet::new();
    for task in &spec.tasks {
        note("task id", check::task_id(&task.id));
        if !ids.insert(task.id.as_str()) {
            note("", Some(format!("duplicate task id {:?}", task.id)));
        }
        note(
            "queue",
            check::text(&task.queue, l::QUEUE_NAME_MAX, Chars::NoControl, true),
        );
        note("labels", check::count(task.labels.len(), l::LABELS_MAX));
        for (key, value) in &task.labels {
            note(
                "label key",
                check::text(key, l::LABEL_KEY_MAX, Chars::NoControl, true),
            );
            note(
                "label",
                check::text(value, l::LABEL_VALUE_MAX, Chars::NoControl, false),
            );
        }
        let mut deps = HashSet::new();
        for dep in &task.depends_on {
            if !deps.insert(dep) || dep == &task.id {
                note(
                    "",
                    Some(format!("dependency {dep:?} repeated or on itself")),
                );
            }
        }
        match &task.kind {
            Some(Kind::Shell(s)) => note(
                "shell",
                check::text(&s.command, l::SHELL_COMMAND_MAX, Chars::NoNul, true),
            ),
            Some(Kind::Sql(s)) => {
                note(
                    "datasource",
                    check::text(&s.datasource, l::SQL_NAME_MAX, Chars::NoControl, true),
                );
                note(
                    "query",
                    check::text(&s.query, l::SQL_QUERY_MAX, Chars::NoNul, true),
                );
                note(
                    "incremental column",
                    check::text(
                        &s.incremental_column,
                        l::SQL_NAME_MAX,
                        Chars::NoControl,
                        false,
                    ),
                );
            }
            None => note("", Some("no kind".to_owned())),
        }
        note("outputs", check::count(task.outputs.len(), l::OUTPUTS_MAX));
        for output in &task.outputs {
            note("output", check::output_path(output));
        }
        note(
            "timeout",
            check::duration_ms(task.timeout_ms, l::TIMEOUT_MAX_MS),
        );
        if let Some(retry) = &task.retry {
            note(
                "max_attempts",
                check::max_attempts(u64::from(retry.max_attempts)),
            );
            let initial = retry.initial_delay_ms.unwrap_or(0);
            note(
                "initial_delay",
                check::duration_ms(initial, l::RETRY_DELAY_MAX_MS),
            );
            let max = retry.max_delay_ms.unwrap_or(initial.max(60_000));
            note("max_delay", check::duration_ms(max, l::RETRY_DELAY_MAX_MS));
            if max < initial {
                note(
                    "",
                    Some("max_delay is shorter than initial_delay".to_owned()),
                );
            }
        }
    }
    for task in &spec.tasks {
        for dep in &task.depends_on {
            if !ids.contains(dep.as_str()) {
                note("", Some(format!("unknown dependency {dep:?}")));
            }
        }
    }
    out
}
