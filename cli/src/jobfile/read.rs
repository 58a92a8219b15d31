//! Walks the spanned TOML tree of a job file, building the `JobSpec` and noting every problem
//! of shape, type and value on the way (the task graph is checked in `graph`).

use std::collections::HashMap;

use ferry_proto::v1::{task_spec::Kind, JobSpec, ParamDecl, RetryPolicy, ShellTask, TaskSpec};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use ferry_jobspec::check;
use ferry_jobspec::fields;
use ferry_jobspec::limits as l;

use super::{is_param_name, is_task_id, Problem};

mod params;
mod schedule;
mod sql;
mod values;

type Value<'i> = Spanned<DeValue<'i>>;

const JOB_KEYS: &[&str] = &["name", "params", "tasks", "schedule"];
const TASK_KEYS: &[&str] = &[
    "id",
    "queue",
    "labels",
    "depends_on",
    "shell",
    "sql",
    "outputs",
    "timeout",
    "retry",
    "schedule_to_start_timeout",
];
const RETRY_KEYS: &[&str] = &["max_attempts", "initial_delay", "max_delay"];

const DURATION: &str = "a duration string such as \"10m\"";

/// What the graph checks need to know of one task.
pub(super) struct TaskMeta {
    /// 1-based position among the `[[tasks]]`.
    pub number: usize,
    pub offset: usize,
    /// The id when it is a valid one.
    pub id: Option<(String, usize)>,
    pub deps: Vec<(String, usize)>,
    /// Where its `sql` table starts, for an sql task (`query_params`).
    pub sql_at: Option<usize>,
}

impl TaskMeta {
    pub fn label(&self) -> String {
        match &self.id {
            Some((id, _)) => format!("task {id:?}"),
            None => format!("task #{}", self.number),
        }
    }
}

pub(super) struct Draft {
    pub spec: JobSpec,
    pub tasks: Vec<TaskMeta>,
    /// The typed parameters of `[params]` (`params::param_decl`).
    pub params: Vec<ParamDecl>,
    /// A pipeline's `[schedule]` (`schedule.rs`).
    pub schedule: Option<ferry_proto::v1::ScheduleSpec>,
}

/// Reads the document; `None` when it is not even valid TOML (the syntax errors are noted).
pub(super) fn read(source: &str, problems: &mut Vec<Problem>) -> Option<Draft> {
    let (root, errors) = DeTable::parse_recoverable(source);
    if !errors.is_empty() {
        for err in errors {
            let offset = err.span().map_or(0, |span| span.start);
            problems.push(Problem::new(
                offset,
                format!("toml syntax error: {}", err.message()),
            ));
        }
        return None;
    }
    Some(Reader { problems }.job(root.get_ref()))
}

struct Reader<'p> {
    problems: &'p mut Vec<Problem>,
}

impl Reader<'_> {
    fn push(&mut self, offset: usize, message: impl Into<String>) {
        self.problems.push(Problem::new(offset, message));
    }

    /// Notes `what`'s problem with a limit shared with the controller (`ferry_jobspec`).
    fn limit(&mut self, value: &Value<'_>, what: &str, problem: Option<String>) {
        self.limit_at(value.span().start, what, problem);
    }

    fn limit_at(&mut self, offset: usize, what: &str, problem: Option<String>) {
        if let Some(problem) = problem {
            self.push(offset, format!("{what} {problem}"));
        }
    }

    fn job(&mut self, root: &DeTable<'_>) -> Draft {
        let mut spec = JobSpec::default();
        let mut tasks = Vec::new();
        let mut decls = Vec::new();
        let mut schedule = None;
        let mut has_name = false;
        let mut has_tasks = false;
        for (key, value) in root.iter() {
            match &**key.get_ref() {
                "name" => {
                    has_name = true;
                    if let Some(name) = self.nonempty_string(value, "name") {
                        let problem = fields::job_name(&name);
                        self.limit(value, "name", problem);
                        spec.name = name;
                    }
                }
                "params" => spec.params = self.params(value, &mut decls),
                "schedule" => schedule = self.schedule(value),
                "tasks" => {
                    has_tasks = true;
                    self.tasks(value, &mut spec, &mut tasks);
                }
                _ => self.unknown_key(key, "at the top level", JOB_KEYS),
            }
        }
        if !has_name {
            self.push(0, "missing \"name\": every job needs a name");
        }
        if !has_tasks {
            self.push(0, "no tasks: a job needs at least one [[tasks]] entry");
        }
        Draft {
            spec,
            tasks,
            params: decls,
            schedule,
        }
    }

    fn params(&mut self, value: &Value<'_>, decls: &mut Vec<ParamDecl>) -> HashMap<String, String> {
        let Some(table) = self.table(value, "params") else {
            return HashMap::new();
        };
        let mut params = HashMap::new();
        for (key, value) in table.iter() {
            let name: &str = key.get_ref();
            if !is_param_name(name) {
                self.push(
                    key.span().start,
                    format!(
                        "bad parameter name {name:?}: use {}",
                        check::PARAM_NAME_CHARS
                    ),
                );
            } else {
                self.limit_at(key.span().start, "parameter name", check::param_name(name));
            }
            if value.get_ref().as_table().is_some() {
                decls.extend(self.param_decl(name, value));
            } else if let Some(v) = self.scalar(value, &format!("params.{name}")) {
                let problem = fields::param_value(&v);
                self.limit(value, &format!("params.{name}"), problem);
                params.insert(name.to_owned(), v);
            }
        }
        let count = params.len() + decls.len();
        self.limit(value, "params", check::count(count, l::PARAMS_MAX));
        let bytes: usize = params.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > l::PARAMS_TOTAL_MAX {
            self.push(
                value.span().start,
                format!(
                    "params take {bytes} bytes together; the limit is {}",
                    l::PARAMS_TOTAL_MAX
                ),
            );
        }
        params
    }

    fn tasks(&mut self, value: &Value<'_>, spec: &mut JobSpec, metas: &mut Vec<TaskMeta>) {
        let Some(items) = value.get_ref().as_array() else {
            self.wrong_type(value, "tasks", "an array of tables ([[tasks]])");
            return;
        };
        if items.is_empty() {
            self.push(
                value.span().start,
                "no tasks: a job needs at least one [[tasks]] entry",
            );
        }
        self.limit(
            value,
            "tasks",
            check::count(items.len(), l::TASKS_PER_JOB_MAX),
        );
        for (i, item) in items.iter().enumerate() {
            let number = i + 1;
            match item.get_ref().as_table() {
                Some(table) => {
                    let (task, meta) = self.task(number, item.span().start, table);
                    spec.tasks.push(task);
                    metas.push(meta);
                }
                None => self.wrong_type(item, &format!("task #{number}"), "a table"),
            }
        }
    }

    fn task(&mut self, number: usize, offset: usize, table: &DeTable<'_>) -> (TaskSpec, TaskMeta) {
        let mut meta = TaskMeta {
            number,
            offset,
            id: None,
            deps: Vec::new(),
            sql_at: None,
        };
        let mut task = TaskSpec {
            queue: ferry_jobspec::defaults::QUEUE.to_owned(),
            ..TaskSpec::default()
        };
        let id_entry = table.iter().find(|(key, _)| &**key.get_ref() == "id");
        match id_entry {
            None => self.push(offset, format!("task #{number} has no id")),
            Some((_, value)) => {
                if let Some(id) = self.string(value, "id") {
                    if id.is_empty() {
                        self.push(
                            value.span().start,
                            format!("task #{number} has an empty id"),
                        );
                    } else if id.len() > l::TASK_ID_MAX {
                        self.limit(value, &format!("task #{number} id"), check::task_id(&id));
                    } else if !is_task_id(&id) {
                        self.push(
                            value.span().start,
                            format!("bad task id {id:?}: use only {}", check::TASK_ID_CHARS),
                        );
                    } else {
                        meta.id = Some((id.clone(), value.span().start));
                    }
                    task.id = id;
                }
            }
        }
        let label = meta.label();
        let (mut shell, mut sql) = (false, false);
        let mut outputs_at = None;
        for (key, value) in table.iter() {
            match &**key.get_ref() {
                "id" => {}
                "queue" => {
                    if let Some(queue) = self.nonempty_string(value, "queue") {
                        let problem = fields::queue(&queue);
                        self.limit(value, "queue", problem);
                        task.queue = queue;
                    }
                }
                "labels" => task.labels = self.labels(value),
                "depends_on" => {
                    let mut seen = std::collections::HashSet::new();
                    for (dep, at) in self.string_list(value, "depends_on") {
                        if seen.insert(dep.clone()) {
                            task.depends_on.push(dep.clone());
                            meta.deps.push((dep, at));
                        }
                    }
                }
                "shell" => {
                    shell = true;
                    if let Some(command) = self.nonempty_string(value, "shell") {
                        let problem = fields::shell_command(&command);
                        self.limit(value, "shell", problem);
                        task.kind = Some(Kind::Shell(ShellTask { command }));
                    }
                }
                "sql" => {
                    sql = true;
                    meta.sql_at = Some(value.span().start);
                    if let Some(query) = self.sql(value, &label) {
                        task.kind = Some(Kind::Sql(query));
                    }
                }
                "outputs" => {
                    task.outputs = self.outputs(value);
                    outputs_at = Some(value.span().start);
                }
                "timeout" => {
                    task.timeout_ms = self
                        .duration_ms(value, "timeout", l::TIMEOUT_MAX_MS)
                        .unwrap_or(0)
                }
                "retry" => task.retry = self.retry(value, &label),
                "schedule_to_start_timeout" => {
                    task.schedule_to_start_timeout_ms = self
                        .duration_ms(value, "schedule_to_start_timeout", l::TIMEOUT_MAX_MS)
                        .unwrap_or(0)
                }
                _ => self.unknown_key(key, &format!("in {label}"), TASK_KEYS),
            }
        }
        match (shell, sql) {
            (false, false) => self.push(
                offset,
                format!("{label} has no kind: give it shell = \"…\" or sql = {{ … }}"),
            ),
            (true, true) => self.push(
                offset,
                format!("{label} has both shell and sql: give it exactly one"),
            ),
            _ => {}
        }
        if let (true, Some(at)) = (sql && !task.outputs.is_empty(), outputs_at) {
            self.push(
                at,
                format!(
                    "{label} is an sql task: its extract files are its outputs; remove \"outputs\""
                ),
            );
        }
        (task, meta)
    }

    fn retry(&mut self, value: &Value<'_>, label: &str) -> Option<RetryPolicy> {
        let table = self.table(value, "retry")?;
        let mut retry = RetryPolicy::default();
        let mut delays = (None, None);
        for (key, value) in table.iter() {
            match &**key.get_ref() {
                "max_attempts" => {
                    if let Some(n) = self.max_attempts(value) {
                        retry.max_attempts = n;
                    }
                }
                "initial_delay" => {
                    delays.0 =
                        self.duration_ms(value, "retry.initial_delay", l::RETRY_DELAY_MAX_MS);
                    retry.initial_delay_ms = delays.0;
                }
                "max_delay" => {
                    delays.1 = self
                        .duration_ms(value, "retry.max_delay", l::RETRY_DELAY_MAX_MS)
                        .map(|ms| (ms, value.span().start));
                    retry.max_delay_ms = delays.1.map(|(ms, _)| ms);
                }
                _ => self.unknown_key(key, &format!("in retry of {label}"), RETRY_KEYS),
            }
        }
        if let (Some(initial), Some((max, at))) = delays {
            if !check::retry_delays_in_order(initial, max) {
                self.push(
                    at,
                    "retry.max_delay is shorter than retry.initial_delay".to_owned(),
                );
            }
        }
        Some(retry)
    }

    fn max_attempts(&mut self, value: &Value<'_>) -> Option<u32> {
        let Some(int) = value.get_ref().as_integer() else {
            self.wrong_type(value, "retry.max_attempts", "an integer");
            return None;
        };
        let at = value.span().start;
        match i64::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) if n < 1 => {
                self.push(at, "retry.max_attempts must be at least 1");
                None
            }
            Ok(n) if n > i64::from(l::MAX_ATTEMPTS_MAX) => {
                self.push(
                    at,
                    format!(
                        "retry.max_attempts {n} is above the limit of {}",
                        l::MAX_ATTEMPTS_MAX
                    ),
                );
                None
            }
            Ok(n) => match u32::try_from(n) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.push(at, format!("retry.max_attempts {n} is too large"));
                    None
                }
            },
            Err(_) => {
                self.push(at, "retry.max_attempts is too large");
                None
            }
        }
    }

    fn outputs(&mut self, value: &Value<'_>) -> Vec<String> {
        let mut outputs = Vec::new();
        let paths = self.string_list(value, "outputs");
        self.limit(value, "outputs", check::count(paths.len(), l::OUTPUTS_MAX));
        for (path, at) in paths {
            if path.is_empty() {
                self.push(at, "outputs: a path must not be empty");
            } else if !check::is_inside_task_dir(&path) {
                self.push(
                    at,
                    format!("output {path:?} must be a path inside the task's working directory"),
                );
            } else if let Some(problem) = check::output_path(&path) {
                self.push(at, format!("output {} {problem}", check::shown(&path)));
            } else {
                outputs.push(path);
            }
        }
        outputs
    }

    /// A task's labels, each key and value within the limits shared with agents'.
    fn labels(&mut self, value: &Value<'_>) -> HashMap<String, String> {
        let labels = self.scalar_map(value, "labels");
        self.limit(value, "labels", check::count(labels.len(), l::LABELS_MAX));
        if let Some(table) = value.get_ref().as_table() {
            for (key, v) in table.iter() {
                let name: &str = key.get_ref();
                let Some(text) = labels.get(name) else {
                    continue;
                };
                let problem = fields::label_key(name);
                self.limit_at(key.span().start, "label key", problem);
                let problem = fields::label_value(text);
                self.limit(v, &format!("labels.{}", check::shown(name)), problem);
            }
        }
        labels
    }
}
