//! Job files: read a TOML job file, check all of it, and turn it into a `JobSpec`.
//!
//! A file with problems is refused whole: every problem is reported, each with its place in
//! the file as `FILE:LINE:COL`, before anything is sent to the controller. A file that is not
//! valid TOML gets all its syntax errors reported; the rest is checked once it parses.

mod graph;
mod location;
#[cfg(test)]
mod param_tests;
#[cfg(test)]
mod query_param_tests;
mod query_params;
mod read;
#[cfg(test)]
mod tests;

use std::{fmt, path::Path};

use ferry_proto::v1::{JobSpec, ParamDecl};

use crate::reason::io_reason;

/// One thing wrong with a job file, at a byte offset of its source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    offset: usize,
    message: String,
}

impl Problem {
    fn new(offset: usize, message: impl Into<String>) -> Self {
        Problem {
            offset,
            message: message.into(),
        }
    }
}

/// A job file refused whole, with every problem as `FILE:LINE:COL: message`, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidJobFile {
    pub file: String,
    pub problems: Vec<String>,
}

impl fmt::Display for InvalidJobFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        let plural = if n == 1 { "" } else { "s" };
        write!(f, "invalid job file {} ({n} problem{plural})", self.file)?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidJobFile {}

/// Why a job file on disk did not become a job.
#[derive(Debug, thiserror::Error)]
pub enum JobFileError {
    /// The file could not be read, or its parameters were refused: the whole message.
    #[error("{0}")]
    Refused(String),
    /// The file was read and has problems, each at its place.
    #[error(transparent)]
    Invalid(#[from] InvalidJobFile),
}

/// A job file read whole: the spec, and the typed parameters of its `[params]`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFile {
    pub spec: JobSpec,
    pub params: Vec<ParamDecl>,
    /// A pipeline's `[schedule]`, if the file has one.
    pub schedule: Option<ferry_proto::v1::ScheduleSpec>,
}

/// Reads the job file at `path` and checks it.
pub fn read_file(path: &Path) -> Result<JobFile, JobFileError> {
    read_file_with(path, &[])
}

/// `read_file`, where the queries may also use the parameters named `extra`.
fn read_file_with(path: &Path, extra: &[String]) -> Result<JobFile, JobFileError> {
    let source = std::fs::read_to_string(path).map_err(|err| {
        JobFileError::Refused(format!(
            "cannot read job file {}: {}",
            path.display(),
            io_reason(&err)
        ))
    })?;
    Ok(parse_with(&path.display().to_string(), &source, extra)?)
}

/// Reads the job file at `path`, checks it, and applies `--param` overrides on top of its
/// `[params]`: a typed parameter's value must be of its type, a required one must be given
/// (`ferry_jobspec::pipeline::resolve`), each refusal naming the parameter. A parameter the
/// job does not declare is refused.
pub fn load(path: &Path, overrides: &[(String, String)]) -> Result<JobSpec, JobFileError> {
    load_with(path, overrides, false).map(|(spec, _)| spec)
}

/// `load`, where with `allow_extra` (`--allow-extra-params`) a parameter the job does not
/// declare is kept, and named in a warning returned with the spec.
pub fn load_with(
    path: &Path,
    overrides: &[(String, String)],
    allow_extra: bool,
) -> Result<(JobSpec, Vec<String>), JobFileError> {
    let extra: Vec<String> = if allow_extra {
        overrides.iter().map(|(k, _)| k.clone()).collect()
    } else {
        Vec::new()
    };
    let JobFile {
        mut spec, params, ..
    } = read_file_with(path, &extra)?;
    let decls = typed(&params);
    let plain = spec
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let given = overrides.iter().cloned().collect();
    let values = ferry_jobspec::pipeline::resolve(&plain, &decls, &given, !allow_extra).map_err(
        |problems| {
            let hint = if problems.iter().any(|p| p.starts_with("unknown parameter")) {
                " (declare it in the job file's [params], or pass --allow-extra-params)"
            } else {
                ""
            };
            JobFileError::Refused(format!(
                "parameters refused for job file {}: {}{hint}",
                path.display(),
                problems.join("; ")
            ))
        },
    )?;
    let warnings = overrides
        .iter()
        .filter(|(k, _)| !spec.params.contains_key(k) && !params.iter().any(|p| &p.name == k))
        .map(|(k, _)| {
            format!(
                "--param {k}: job file {} declares no parameter {k:?}; kept \
                 (--allow-extra-params)",
                path.display()
            )
        })
        .collect();
    spec.params = values.into_iter().collect();
    Ok((spec, warnings))
}

/// The declarations of a checked file (whose types are known).
fn typed(params: &[ParamDecl]) -> Vec<ferry_jobspec::pipeline::ParamDecl> {
    params
        .iter()
        .filter_map(|p| {
            Some(ferry_jobspec::pipeline::ParamDecl {
                name: p.name.clone(),
                ty: ferry_jobspec::pipeline::ParamType::parse(&p.r#type)?,
                default: p.default.clone(),
                required: p.required,
            })
        })
        .collect()
}

/// Parses and checks the job file `source`; `file` names it in problems.
pub fn parse(file: &str, source: &str) -> Result<JobSpec, InvalidJobFile> {
    parse_file(file, source).map(|f| f.spec)
}

/// Parses and checks the job file `source`, typed parameters included.
pub fn parse_file(file: &str, source: &str) -> Result<JobFile, InvalidJobFile> {
    parse_with(file, source, &[])
}

/// `parse_file`, where the queries may also use the parameters named `extra`.
fn parse_with(file: &str, source: &str, extra: &[String]) -> Result<JobFile, InvalidJobFile> {
    let mut problems = Vec::new();
    let draft = read::read(source, &mut problems);
    let lines = location::LineIndex::new(source);
    if let Some(draft) = &draft {
        graph::check(&draft.tasks, &lines, &mut problems);
        let (spec, params) = (&draft.spec, &draft.params);
        query_params::check(source, spec, params, extra, &draft.tasks, &mut problems);
    }
    match draft {
        Some(draft) if problems.is_empty() => Ok(JobFile {
            spec: draft.spec,
            params: draft.params,
            schedule: draft.schedule,
        }),
        _ => {
            problems.sort_by_key(|p| p.offset);
            problems.dedup();
            let problems = problems
                .into_iter()
                .map(|p| {
                    let (line, col) = lines.line_col(p.offset);
                    format!("{file}:{line}:{col}: {}", p.message)
                })
                .collect();
            Err(InvalidJobFile {
                file: file.to_owned(),
                problems,
            })
        }
    }
}

/// Adds or replaces parameters given with `--param k=v`.
pub fn apply_params(spec: &mut JobSpec, overrides: &[(String, String)]) {
    for (key, value) in overrides {
        spec.params.insert(key.clone(), value.clone());
    }
}

// The rules shared with the controller (`ferry_jobspec`): a parameter name is
// `[A-Za-z_][A-Za-z0-9_]*`, a task id `[A-Za-z0-9_.-]+`.
pub use ferry_jobspec::check::{is_param_name, is_task_id};

#[cfg(test)]
mod limit_tests {
    use super::parse;

    #[test]
    fn the_limits_shared_with_the_controller_are_named_with_their_place() {
        let source = format!(
            "name = \"j\"\n[[tasks]]\nid = \"{}\"\nshell = \"x\"\n[[tasks]]\nid = \"b\"\n\
             shell = \"{}\"\ntimeout = \"300000000y\"\n\
             retry = {{ max_attempts = 101, initial_delay = \"2d\" }}\n",
            "a".repeat(129),
            "x".repeat((64 << 10) + 1),
        );
        let problems = parse("job.toml", &source).unwrap_err().problems;
        assert_eq!(
            problems,
            vec![
                "job.toml:3:6: task #1 id is 129 bytes long; the limit is 128",
                "job.toml:7:9: shell is 65537 bytes long; the limit is 65536",
                "job.toml:8:11: timeout 109575000000d is above the limit of 7d",
                "job.toml:9:26: retry.max_attempts 101 is above the limit of 100",
                "job.toml:9:47: retry.initial_delay 2d is above the limit of 1d",
            ]
        );
    }
}
