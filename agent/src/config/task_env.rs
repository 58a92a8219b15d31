//! The settings of a task's environment (`crate::task_env`): `pass_env`, the agent's
//! variables its tasks get too, and `task_path`, their `PATH`; and their checks.

use super::{invalid, ConfigError, RawConfig};

impl RawConfig {
    /// `pass_env` (each name once, in the order given) and `task_path`, checked: names of
    /// variables only, none of the agent's `FERRY_*` settings or the tasks' own, none holding
    /// a datasource's password, and `PATH` either passed or set, not both.
    pub(super) fn task_env(&self) -> Result<(Vec<String>, Option<String>), ConfigError> {
        let mut names: Vec<String> = Vec::new();
        for name in &self.pass_env {
            let name = name.trim();
            if !is_variable_name(name) {
                return Err(invalid(
                    "pass_env",
                    format!("{name:?} is not a variable name (letters, digits and _, not first a digit)"),
                ));
            }
            if name.to_ascii_uppercase().starts_with("FERRY_") {
                return Err(invalid(
                    "pass_env",
                    format!("{name} cannot be passed: FERRY_* variables are the agent's settings or set by it for each task"),
                ));
            }
            if let Some((ds, _)) = self
                .datasources
                .iter()
                .find(|(_, d)| d.password_env.as_deref() == Some(name))
            {
                return Err(invalid(
                    "pass_env",
                    format!(
                        "{name} holds the password of datasources.{ds}; it never reaches a task"
                    ),
                ));
            }
            if name == "PATH" && self.task_path.is_some() {
                return Err(invalid(
                    "pass_env",
                    "PATH is passed and set by task_path; choose one",
                ));
            }
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        if let Some(path) = &self.task_path {
            if path.trim().is_empty() || path.contains('\0') {
                return Err(invalid(
                    "task_path",
                    "must name at least one directory and hold no NUL",
                ));
            }
        }
        Ok((names, self.task_path.clone()))
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: what a shell can name.
fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
