//! SQL extraction: runs an `sql` task's query against a datasource of the agent's own config
//! and writes the rows as csv, jsonl or parquet files in the attempt's working directory,
//! streaming with bounded memory. Named parameters are bound from the job's parameters; an
//! incremental task takes the rows past the stored watermark up to an upper bound fixed when
//! the attempt starts.

pub mod datasource;
pub mod format;
pub mod mysql;
pub mod params;
pub mod pipe;
pub mod postgres;
pub mod sink;
pub mod sqlite;
pub mod value;

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    time::Duration,
};

use ferry_proto::v1::{ExtractColumn, ExtractInfo, ExtractRange, SqlTask};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use self::datasource::{Datasource, DbKind};
use self::{
    format::{Format, WriteError},
    params::{Dialect, Parsed},
    sink::Written,
    value::Column,
};

/// Why an extract failed. Messages name the datasource, never its URL or password.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("unknown datasource {name:?}; this agent has {known}")]
    UnknownDatasource { name: String, known: String },
    #[error("query parameter{} {} not among the job's parameters", if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|n| format!(":{n}")).collect::<Vec<_>>().join(", ") + if .0.len() == 1 { " is" } else { " are" })]
    MissingParams(Vec<String>),
    #[error("{0}")]
    Task(String),
    #[error("datasource {datasource}: {message}")]
    Database { datasource: String, message: String },
    /// The database refused the agent's credentials: no retry can fix that.
    #[error("datasource {datasource}: {message}")]
    Refused { datasource: String, message: String },
    #[error("writing the extract failed: {0}")]
    Write(#[from] WriteError),
    #[error("the database stream ended before the extract was complete")]
    Interrupted,
    #[error("stopped")]
    Aborted,
    #[error("timed out after {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("internal error: {0}")]
    Internal(String),
}

/// One sql attempt to run.
pub struct Request<'a> {
    pub task_id: &'a str,
    pub task: &'a SqlTask,
    pub params: &'a HashMap<String, String>,
    pub range: Option<&'a ExtractRange>,
    /// The attempt's working directory; the files are written here.
    pub dir: &'a Path,
    /// Fires on a stop order: nothing is reported.
    pub abort: &'a CancellationToken,
    /// The task's timeout, from the attempt's start.
    pub deadline: Option<(Instant, Duration)>,
}

/// The incremental part of a task: the column and the range of its values to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incremental {
    pub column: String,
    /// Rows with `column > after`; from the start when unset.
    pub after: Option<String>,
    /// An explicit upper bound (backfill); otherwise fixed at the start as `max(column)`.
    pub until: Option<String>,
    pub backfill: bool,
}

/// An extract checked and ready for a source module.
pub struct Job<'a> {
    pub ds: &'a Datasource,
    pub query: String,
    pub parsed: Parsed,
    pub params: &'a HashMap<String, String>,
    pub format: Format,
    pub max_rows: u64,
    pub stem: String,
    pub dir: &'a Path,
    pub incremental: Option<Incremental>,
    abort: &'a CancellationToken,
    deadline: Option<(Instant, Duration)>,
}

/// What a source module returns.
pub struct Extract {
    pub written: Written,
    pub columns: Vec<Column>,
    /// The upper bound taken (text form); `None` when the source had no rows at all.
    pub upper: Option<String>,
}

impl SqlError {
    /// False for what no retry can fix: an unknown datasource, a parameter the job does not
    /// have, credentials the database refuses. The attempt is reported `not_retryable`.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            SqlError::UnknownDatasource { .. }
                | SqlError::MissingParams(_)
                | SqlError::Refused { .. }
        )
    }
}

impl Job<'_> {
    /// A database error, with the datasource's name and secrets removed.
    pub fn db(&self, message: impl std::fmt::Display) -> SqlError {
        SqlError::Database {
            datasource: self.ds.name.clone(),
            message: self.ds.redact(&message.to_string()),
        }
    }

    /// The database refused to let the agent in (a wrong password, an unknown user), with the
    /// datasource's name and secrets removed.
    pub fn refused(&self, message: impl std::fmt::Display) -> SqlError {
        SqlError::Refused {
            datasource: self.ds.name.clone(),
            message: self.ds.redact(&message.to_string()),
        }
    }

    /// Resolves when the attempt must stop: a stop order or its timeout.
    pub async fn stopped(&self) -> SqlError {
        match self.deadline {
            Some((at, timeout)) => tokio::select! {
                () = self.abort.cancelled() => SqlError::Aborted,
                () = tokio::time::sleep_until(at) => SqlError::TimedOut(timeout),
            },
            None => {
                self.abort.cancelled().await;
                SqlError::Aborted
            }
        }
    }

    /// The value of each distinct parameter, in [`Parsed::names`] order.
    pub fn param_values(&self) -> Vec<&str> {
        self.parsed
            .names()
            .into_iter()
            .map(|n| self.params.get(n).map_or("", String::as_str))
            .collect()
    }

    /// The index of the incremental column among `columns`, or an error naming them.
    pub fn incremental_index(&self, names: &[&str]) -> Result<Option<usize>, SqlError> {
        let Some(inc) = &self.incremental else {
            return Ok(None);
        };
        names
            .iter()
            .position(|n| *n == inc.column)
            .map(Some)
            .ok_or_else(|| {
                SqlError::Task(format!(
                    "incremental column {:?} is not a column of the query's result ({})",
                    inc.column,
                    names.join(", ")
                ))
            })
    }
}

/// `"name"` with inner quotes doubled (PostgreSQL, SQLite).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The query without trailing `;` and blanks, so that it can be wrapped.
fn trim_query(query: &str) -> &str {
    query
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
}

/// A file-name-safe stem from the task id.
fn stem(task_id: &str) -> String {
    task_id
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Runs one extract to its files and the metadata `Complete` carries.
pub async fn run(
    datasources: &BTreeMap<String, Datasource>,
    req: Request<'_>,
) -> Result<ExtractInfo, SqlError> {
    let task = req.task;
    let ds =
        datasources
            .get(task.datasource.trim())
            .ok_or_else(|| SqlError::UnknownDatasource {
                name: task.datasource.clone(),
                known: if datasources.is_empty() {
                    "none (add [datasources.NAME] to its config file)".to_owned()
                } else {
                    datasources.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })?;
    let format = Format::parse(&task.format, &task.compression).map_err(SqlError::Task)?;
    let query = trim_query(&task.query).to_owned();
    if query.is_empty() {
        return Err(SqlError::Task("the sql task's query is empty".into()));
    }
    let dialect = match ds.kind {
        DbKind::Postgres => Dialect::Postgres,
        DbKind::Mysql => Dialect::Mysql,
        DbKind::Sqlite => Dialect::Sqlite,
    };
    let parsed = params::parse(&query, dialect);
    let missing = parsed.missing(req.params);
    if !missing.is_empty() {
        return Err(SqlError::MissingParams(missing));
    }
    let column = task.incremental_column.trim();
    let incremental = (!column.is_empty()).then(|| Incremental {
        column: column.to_owned(),
        after: req.range.and_then(|r| r.after.clone()),
        until: req.range.and_then(|r| r.until.clone()),
        backfill: req.range.is_some_and(|r| r.backfill),
    });
    let job = Job {
        ds,
        query,
        parsed,
        params: req.params,
        format,
        max_rows: task.max_rows_per_file,
        stem: stem(req.task_id),
        dir: req.dir,
        incremental,
        abort: req.abort,
        deadline: req.deadline,
    };
    let extract = match ds.kind {
        DbKind::Postgres => postgres::extract(&job).await?,
        DbKind::Mysql => mysql::extract(&job).await?,
        DbKind::Sqlite => sqlite::extract(&job).await?,
    };
    let inc = job.incremental.as_ref();
    Ok(ExtractInfo {
        rows: extract.written.rows,
        bytes: extract.written.bytes,
        files: extract.written.files,
        columns: extract
            .columns
            .iter()
            .map(|c| ExtractColumn {
                name: c.name.clone(),
                source_type: c.source_type.clone(),
                file_type: c.kind.file_type(),
                nullable: c.nullable,
            })
            .collect(),
        watermark: inc.and(extract.upper),
        incremental_column: inc.map(|i| i.column.clone()).unwrap_or_default(),
        backfill: inc.is_some_and(|i| i.backfill),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let e = SqlError::MissingParams(vec!["day".into()]);
        assert_eq!(
            e.to_string(),
            "query parameter :day is not among the job's parameters"
        );
        let e = SqlError::MissingParams(vec!["a".into(), "b".into()]);
        assert_eq!(
            e.to_string(),
            "query parameters :a, :b are not among the job's parameters"
        );
        assert_eq!(trim_query(" select 1 ; \n"), "select 1");
        assert_eq!(stem("a/b"), "a_b");
    }
}
