//! Each sql task's `:name` query parameters checked against the job's parameters (plain and
//! typed `[params]`, and those `--allow-extra-params` let through), each unknown one refused
//! at its place in the file — the rule the controller applies again (`ferry_jobspec::query`).

use ferry_jobspec::query::{unknown_param_problem, unknown_params};
use ferry_proto::v1::{task_spec::Kind, JobSpec, ParamDecl};

use super::{read::TaskMeta, Problem};

pub(super) fn check(
    source: &str,
    spec: &JobSpec,
    params: &[ParamDecl],
    extra: &[String],
    metas: &[TaskMeta],
    problems: &mut Vec<Problem>,
) {
    let known = |name: &str| {
        spec.params.contains_key(name)
            || params.iter().any(|p| p.name == name)
            || extra.iter().any(|e| e == name)
    };
    for (task, meta) in spec.tasks.iter().zip(metas) {
        let (Some(Kind::Sql(sql)), Some(at)) = (&task.kind, meta.sql_at) else {
            continue;
        };
        for (_, name) in unknown_params(&sql.query, known) {
            problems.push(Problem::new(
                place(source, at, &name),
                unknown_param_problem(&name, &task.id),
            ));
        }
    }
}

/// The offset of the first `:name` (a whole name) in the file from `from` (the task's `sql`
/// table), or `from` when the query spells it with escapes.
fn place(source: &str, from: usize, name: &str) -> usize {
    let needle = format!(":{name}");
    let rest = source.get(from..).unwrap_or_default();
    let mut start = 0;
    while let Some(i) = rest[start..].find(&needle) {
        let end = start + i + needle.len();
        let whole = !rest[end..]
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        if whole {
            return from + start + i;
        }
        start = end;
    }
    from
}
