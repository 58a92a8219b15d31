//! The limits of every field of a submitted job (`ferry_jobspec::limits`): sizes, characters,
//! counts and durations, each problem naming the field and the limit.

use std::collections::{BTreeMap, HashSet};

use ferry_jobspec::check::{self, shown, Chars};
use ferry_jobspec::limits as l;

use crate::model::{NewJob, TaskKind, TaskSpec};

/// Notes every field of `job` past its limit.
pub(super) fn problems(job: &NewJob, out: &mut Vec<String>) {
    let mut note = |field: String, problem: Option<String>| {
        if let Some(problem) = problem {
            out.push(format!("{field} {problem}"));
        }
    };
    note(
        "job name".into(),
        ferry_jobspec::fields::job_name(&job.name),
    );
    note(
        "tasks".into(),
        check::count(job.tasks.len(), l::TASKS_PER_JOB_MAX),
    );
    if let Some(key) = &job.idempotency_key {
        note(
            "idempotency key".into(),
            check::text(key, l::IDEMPOTENCY_KEY_MAX, Chars::NoControl, false),
        );
    }
    note(
        "params".into(),
        check::count(job.params.len(), l::PARAMS_MAX),
    );
    let mut params_bytes = 0;
    for (name, value) in &job.params {
        params_bytes += name.len() + value.len();
        note(
            format!("param name {}", shown(name)),
            check::param_name(name),
        );
        note(
            format!("param {}", shown(name)),
            ferry_jobspec::fields::param_value(value),
        );
    }
    if params_bytes > l::PARAMS_TOTAL_MAX {
        note(
            "params".into(),
            Some(format!(
                "take {params_bytes} bytes together; the limit is {}",
                l::PARAMS_TOTAL_MAX
            )),
        );
    }
    for (task, range) in &job.backfill {
        let field = format!("backfill of task {}", shown(task));
        if let Some(from) = &range.from {
            note(
                format!("{field}: from"),
                check::text(from, l::BACKFILL_BOUND_MAX, Chars::NoNul, false),
            );
        }
        note(
            format!("{field}: until"),
            check::text(&range.until, l::BACKFILL_BOUND_MAX, Chars::NoNul, false),
        );
    }
    for task in job.tasks.iter().take(l::TASKS_PER_JOB_MAX) {
        task_problems(task, &mut note);
    }
    let shown_bytes = shown_bytes(job);
    if shown_bytes > l::JOB_SHOWN_BYTES_MAX {
        note(
            "job".into(),
            Some(format!(
                "names, params, ids, queues, labels and dependencies take {shown_bytes} bytes; \
                 the limit is {} (a job is shown whole in one message)",
                l::JOB_SHOWN_BYTES_MAX
            )),
        );
    }
}

fn task_problems(task: &TaskSpec, note: &mut impl FnMut(String, Option<String>)) {
    let t = format!("task {}", shown(&task.id));
    note(
        format!("{t} queue"),
        ferry_jobspec::fields::queue(&task.queue),
    );
    labels(&t, &task.labels, note);
    let mut seen = HashSet::new();
    for dep in &task.depends_on {
        if !seen.insert(dep.as_str()) {
            note(
                format!("{t} depends_on"),
                Some(format!("names {} twice", shown(dep))),
            );
        }
    }
    match &task.kind {
        TaskKind::Shell { command } => note(
            format!("{t} shell command"),
            ferry_jobspec::fields::shell_command(command),
        ),
        TaskKind::Sql {
            datasource,
            query,
            incremental_column,
            ..
        } => {
            // Emptiness is `sql_problems`' to name.
            note(
                format!("{t} sql datasource"),
                ferry_jobspec::fields::sql_name(datasource),
            );
            note(
                format!("{t} sql query"),
                ferry_jobspec::fields::sql_query(query),
            );
            note(
                format!("{t} sql incremental column"),
                ferry_jobspec::fields::sql_name(incremental_column),
            );
        }
    }
    note(
        format!("{t} outputs"),
        check::count(task.outputs.len(), l::OUTPUTS_MAX),
    );
    for output in task.outputs.iter().take(l::OUTPUTS_MAX) {
        note(
            format!("{t} output {}", shown(output)),
            check::output_path(output),
        );
    }
    note(
        format!("{t} timeout"),
        check::duration_ms(task.timeout_ms, l::TIMEOUT_MAX_MS),
    );
    note(
        format!("{t} schedule_to_start_timeout"),
        check::duration_ms(task.schedule_to_start_timeout_ms, l::TIMEOUT_MAX_MS),
    );
    let retry = &task.retry;
    note(
        format!("{t} retry max_attempts"),
        check::max_attempts(u64::from(retry.max_attempts)),
    );
    note(
        format!("{t} retry initial_delay"),
        check::duration_ms(retry.initial_delay_ms, l::RETRY_DELAY_MAX_MS),
    );
    note(
        format!("{t} retry max_delay"),
        check::duration_ms(retry.max_delay_ms, l::RETRY_DELAY_MAX_MS),
    );
    if !check::retry_delays_in_order(retry.initial_delay_ms, retry.max_delay_ms) {
        note(
            format!("{t} retry max_delay"),
            Some("is shorter than initial_delay".into()),
        );
    }
}

/// Checks a task's (or an agent's) labels: how many, and each key and value.
pub(crate) fn labels(
    owner: &str,
    labels: &BTreeMap<String, String>,
    note: &mut impl FnMut(String, Option<String>),
) {
    note(
        format!("{owner} labels"),
        check::count(labels.len(), l::LABELS_MAX),
    );
    for (key, value) in labels.iter().take(l::LABELS_MAX) {
        note(
            format!("{owner} label key {}", shown(key)),
            ferry_jobspec::fields::label_key(key),
        );
        note(
            format!("{owner} label {}", shown(key)),
            ferry_jobspec::fields::label_value(value),
        );
    }
}

/// Bytes of what every `jobs show` and `watch` message repeats of the job's spec, each field
/// with 4 bytes of framing.
fn shown_bytes(job: &NewJob) -> usize {
    let field = |s: &String| s.len() + 4;
    let pairs = |m: &BTreeMap<String, String>| -> usize {
        m.iter().map(|(k, v)| field(k) + field(v) + 4).sum()
    };
    field(&job.name)
        + pairs(&job.params)
        + job
            .tasks
            .iter()
            .map(|t| {
                field(&t.id)
                    + field(&t.queue)
                    + pairs(&t.labels)
                    + t.depends_on.iter().map(field).sum::<usize>()
                    + 16
            })
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use crate::engine::validate::problems;
    use crate::model::{NewJob, RetryPolicy, TaskKind, TaskSpec};

    fn task(id: &str) -> TaskSpec {
        TaskSpec {
            id: id.into(),
            queue: "default".into(),
            labels: Default::default(),
            depends_on: vec![],
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

    fn shell(id: &str, command: &str) -> TaskSpec {
        TaskSpec {
            kind: TaskKind::Shell {
                command: command.into(),
            },
            ..task(id)
        }
    }

    #[test]
    fn commands_are_not_empty_bounded_and_free_of_nul() {
        assert!(problems(&job(vec![shell("a", &"x".repeat(64 << 10))])).is_empty());
        assert_eq!(
            problems(&job(vec![
                shell("a", " "),
                shell("b", "echo\0hi"),
                shell("c", &"x".repeat((64 << 10) + 1)),
            ])),
            vec![
                "task \"a\" shell command must not be empty",
                "task \"b\" shell command holds a NUL byte ('\\0')",
                "task \"c\" shell command is 65537 bytes long; the limit is 65536",
            ]
        );
    }

    #[test]
    fn durations_and_attempts_are_bounded() {
        let mut t = task("a");
        t.timeout_ms = 7 * 86_400_000;
        t.retry = RetryPolicy {
            max_attempts: 100,
            initial_delay_ms: 86_400_000,
            max_delay_ms: 86_400_000,
        };
        assert!(problems(&job(vec![t.clone()])).is_empty());
        // 300000000y, as a probe sent it.
        t.timeout_ms = 9_467_280_000_000_000_000;
        t.schedule_to_start_timeout_ms = 8 * 86_400_000;
        t.retry = RetryPolicy {
            max_attempts: 101,
            initial_delay_ms: u64::MAX,
            max_delay_ms: 2,
        };
        assert_eq!(
            problems(&job(vec![t])),
            vec![
                "task \"a\" timeout 109575000000d is above the limit of 7d",
                "task \"a\" schedule_to_start_timeout 8d is above the limit of 7d",
                "task \"a\" retry max_attempts 101 is above the limit of 100",
                "task \"a\" retry initial_delay 18446744073709551615ms is above the limit of 1d",
                "task \"a\" retry max_delay is shorter than initial_delay",
            ]
        );
    }

    #[test]
    fn duplicate_dependencies_are_refused() {
        let mut b = task("b");
        b.depends_on = vec!["a".into(), "a".into()];
        assert_eq!(
            problems(&job(vec![task("a"), b])),
            vec!["task \"b\" depends_on names \"a\" twice"]
        );
    }

    #[test]
    fn names_params_labels_and_outputs_are_bounded() {
        let mut j = job(vec![task("a")]);
        j.name = "n".repeat(1 << 20);
        j.params.insert("not-an-id".into(), "v".into());
        j.params.insert("ok".into(), "a\0b".into());
        j.tasks[0].queue = "q\u{1b}".into();
        j.tasks[0].labels.insert("site".into(), "x".repeat(257));
        j.tasks[0].outputs = vec!["../up".into()];
        j.idempotency_key = Some("k".repeat(257));
        assert_eq!(
            problems(&j),
            vec![
                "job name is 1048576 bytes long; the limit is 256",
                "idempotency key is 257 bytes long; the limit is 256",
                "param name \"not-an-id\" is not an identifier: use letters, digits and '_', \
                 not starting with a digit",
                "param \"ok\" holds a NUL byte ('\\0')",
                "task \"a\" queue holds a control character ('\\u{1b}')",
                "task \"a\" label \"site\" is 257 bytes long; the limit is 256",
                "task \"a\" output \"../up\" must be a path inside the task's working directory",
            ]
        );
    }

    #[test]
    fn long_ids_are_refused_and_shown_cut() {
        let id = "a".repeat(1 << 20);
        let found = problems(&job(vec![task(&id)]));
        assert_eq!(found.len(), 1, "{found:?}");
        let cut = "a".repeat(40);
        assert_eq!(
            found[0],
            format!("task id \"{cut}\"… is 1048576 bytes long; the limit is 128")
        );
    }

    #[test]
    fn too_many_tasks_are_refused_naming_the_limit() {
        let tasks = (0..10_001).map(|i| task(&format!("t{i}"))).collect();
        assert_eq!(
            problems(&job(tasks)),
            vec!["tasks 10001 are given; the limit is 10000"]
        );
    }

    #[test]
    fn a_job_too_large_to_show_is_refused() {
        let mut tasks: Vec<_> = (0..2_000).map(|i| task(&format!("t{i:0>120}"))).collect();
        for t in tasks.iter_mut().skip(1) {
            t.depends_on = vec![format!("t{:0>120}", 0)];
            t.labels = (0..8).map(|l| (format!("k{l}"), "v".repeat(100))).collect();
        }
        let found = problems(&job(tasks));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("job names, params, ids, queues, labels and dependencies take")
        );
        assert!(found[0].ends_with("the limit is 2097152 (a job is shown whole in one message)"));
    }
}
