//! Every limit on what a request may hold, in one table: the controller refuses a request past
//! one with `INVALID_ARGUMENT` naming the field, the problem and the limit; the CLI checks job
//! files against the same values. README "Limits" lists them for users.
//!
//! | limit | value | why |
//! | --- | --- | --- |
//! | job name | 1..=256 bytes, no control characters | printed in tables, a watermark key |
//! | tasks per job | 1..=10,000 | `jobs show` carries a whole job in one 4 MiB message (`watch` sends it in parts) |
//! | a job's shown fields | 2 MiB | name, params, ids, queues, labels and dependencies, repeated by every `jobs show` and `watch` message, leave room for attempts |
//! | task id | 1..=128 bytes of `[A-Za-z0-9_.-]`, not `.` or `..` | a directory of the artifact store |
//! | queue name | 1..=128 bytes, no control characters, not blank | printed by `queues list` |
//! | labels per task or agent | 64 | matched on every claim |
//! | label key / value | 1..=128 / ..=256 bytes, no control characters | printed by `agents list` |
//! | dependencies | unique, each a task of the job | a repeated one would be waited for twice and never released |
//! | shell command | 1..=64 KiB, not blank, no NUL | one `/bin/sh -c` argument: Linux refuses 128 KiB (E2BIG), and NUL ends a C string |
//! | sql query | 1..=256 KiB, no NUL; datasource, incremental column 1..=128 bytes | |
//! | outputs per task | 1,000, each 1..=1,024 bytes, relative, no `..`, no control characters | paths under the task's directory |
//! | parameters per job | 256 | environment variables of every task |
//! | parameter name | 1..=128 bytes, `[A-Za-z_][A-Za-z0-9_]*` | an environment variable and a bind name |
//! | parameter value | ..=32 KiB, no NUL; 512 KiB for all of a job's | the environment of `exec` (E2BIG) |
//! | timeout | ..=7 days (0: none) | deadlines are milliseconds since 1970: nothing overflows |
//! | retry delays | ..=1 day each, `max_delay` ≥ `initial_delay` | a backoff is a deadline too |
//! | max attempts | 1..=100 (0 on the wire: the default, 3) | |
//! | idempotency key | ..=256 bytes, no control characters | |
//! | backfill bounds | ..=1,024 bytes, no NUL | compared with a column's values |
//! | watermark value | ..=4,096 bytes, no NUL | a column's value |
//! | ids in lookups (job id) | ..=128 bytes | a job id is 32 hex digits |
//! | `ListJobs` limit | 1..=10,000 (0: 50) | above it is refused, not silently cut |
//! | agent name | 1..=128 bytes of printable ASCII, no space | printed by `agents list`, a session key |
//! | agent hostname / version | ..=255 / ..=128 bytes of printable ASCII | printed by `agents list` |
//! | queues per agent | 1..=64 | |
//! | datasources per agent | ..=64 names, each 1..=128 bytes, no control characters | matched on every claim of an sql task, as labels |
//! | schedule-to-start timeout | ..=7 days (0: none) | a deadline too |
//! | tasks per agent (`max_tasks`) | 1..=1,024 (0: 1) | a poll's `free_slots` above the registered `max_tasks` is cut to it; above 1,024 refused |
//! | attempts named per call (`running`, `Release`) | ..=1,024 | an agent runs at most `max_tasks` |
//! | log chunks per `AppendLogs` | ..=1,024 chunks, each ..=1 MiB, ..=4 MiB together | the agent sends 64 KiB chunks, 256 KiB at most |
//! | an attempt's error message | 16 KiB (longer ones are cut, not refused) | refusing a completion would strand the attempt |
//! | pipeline name | 1..=128 bytes of `[A-Za-z0-9_.-]`, not `.` or `..` | a CLI argument, later a webhook's URL path |
//! | a pipeline's declared parameters | ..=256, each type `string`/`int`/`date`/`timestamp`/`bool`, its default a parameter value of that type | the job's parameters |
//! | a run's given parameters | ..=256, each a parameter name and value, declared by the pipeline | |
//! | `PipelineHistory` limit | 1..=10,000 (0: 20) | as `ListJobs` |

/// Bytes of a job's name.
pub const JOB_NAME_MAX: usize = 256;
/// Tasks of one job.
pub const TASKS_PER_JOB_MAX: usize = 10_000;
/// Bytes of what `jobs show` repeats of a job's spec: its name, params, and each task's id,
/// queue, labels and dependencies (each field counted with 4 bytes of framing).
pub const JOB_SHOWN_BYTES_MAX: usize = 2 << 20;
/// Bytes of a task id.
pub const TASK_ID_MAX: usize = 128;
/// Bytes of a queue name.
pub const QUEUE_NAME_MAX: usize = 128;
/// Labels of one task, or of one agent.
pub const LABELS_MAX: usize = 64;
/// Bytes of a label's key.
pub const LABEL_KEY_MAX: usize = 128;
/// Bytes of a label's value.
pub const LABEL_VALUE_MAX: usize = 256;
/// Bytes of a shell command: under Linux's 128 KiB for one argument of `exec`.
pub const SHELL_COMMAND_MAX: usize = 64 << 10;
/// Bytes of an sql query.
pub const SQL_QUERY_MAX: usize = 256 << 10;
/// Bytes of a datasource name or an incremental column.
pub const SQL_NAME_MAX: usize = 128;
/// Outputs one task declares.
pub const OUTPUTS_MAX: usize = 1_000;
/// Bytes of one output path.
pub const OUTPUT_PATH_MAX: usize = 1_024;
/// Parameters of one job.
pub const PARAMS_MAX: usize = 256;
/// Bytes of a parameter's name.
pub const PARAM_NAME_MAX: usize = 128;
/// Bytes of a parameter's value.
pub const PARAM_VALUE_MAX: usize = 32 << 10;
/// Bytes of all of a job's parameter names and values together.
pub const PARAMS_TOTAL_MAX: usize = 512 << 10;
/// A task's timeout, in milliseconds: 7 days.
pub const TIMEOUT_MAX_MS: u64 = 7 * DAY_MS;
/// A retry delay (initial or max), in milliseconds: 1 day.
pub const RETRY_DELAY_MAX_MS: u64 = DAY_MS;
/// Attempts of one task.
pub const MAX_ATTEMPTS_MAX: u32 = 100;
/// Bytes of an idempotency key.
pub const IDEMPOTENCY_KEY_MAX: usize = 256;
/// Bytes of a backfill's bound.
pub const BACKFILL_BOUND_MAX: usize = 1_024;
/// Bytes of a watermark's value.
pub const WATERMARK_VALUE_MAX: usize = 4_096;
/// Bytes of an id a call looks up (a job id).
pub const LOOKUP_ID_MAX: usize = 128;
/// Jobs one `ListJobs` returns at most.
pub const LIST_JOBS_MAX: u32 = 10_000;
/// Jobs `ListJobs` returns when it names no limit.
pub const LIST_JOBS_DEFAULT: u32 = 50;
/// Bytes of an agent's name.
pub const AGENT_NAME_MAX: usize = 128;
/// Bytes of an agent's hostname.
pub const HOSTNAME_MAX: usize = 255;
/// Bytes of an agent's version.
pub const VERSION_MAX: usize = 128;
/// Datasources one agent advertises (their names).
pub const AGENT_DATASOURCES_MAX: usize = 64;
/// Queues one agent serves.
pub const AGENT_QUEUES_MAX: usize = 64;
/// Tasks one agent runs at once (`max_tasks`).
pub const AGENT_TASKS_MAX: u32 = 1_024;
/// Attempts one agent call names (`running`, `Release`).
pub const ATTEMPTS_PER_CALL_MAX: usize = 1_024;
/// Log chunks of one `AppendLogs` (or `Complete`).
pub const LOG_CHUNKS_MAX: usize = 1_024;
/// Bytes of one log chunk.
pub const LOG_CHUNK_MAX: usize = 1 << 20;
/// Bytes of all the log chunks of one call.
pub const LOG_BYTES_PER_CALL_MAX: usize = 4 << 20;
/// Bytes of an attempt's error message kept; longer ones are cut.
pub const ERROR_MESSAGE_MAX: usize = 16 << 10;

const DAY_MS: u64 = 24 * 60 * 60 * 1_000;
/// Bytes of a pipeline's name.
pub const PIPELINE_NAME_MAX: usize = 128;
/// Runs one `PipelineHistory` returns at most.
pub const PIPELINE_HISTORY_MAX: u32 = 10_000;
/// Runs `PipelineHistory` returns when it names no limit.
pub const PIPELINE_HISTORY_DEFAULT: u32 = 20;
