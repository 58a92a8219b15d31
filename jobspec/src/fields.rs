//! Each text field of a job's spec with its rule — its limit, the characters it may hold and
//! whether it may be empty — named once for the CLI's job file and the controller's requests
//! (an agent's queues follow the tasks' rule). Each returns the problem in words, as `check`.

use crate::check::{text, Chars};
use crate::limits as l;

/// A job's name: 1..=256 bytes, no control characters.
pub fn job_name(name: &str) -> Option<String> {
    text(name, l::JOB_NAME_MAX, Chars::NoControl, true)
}

/// A parameter's value: ..=32 KiB, no NUL.
pub fn param_value(value: &str) -> Option<String> {
    text(value, l::PARAM_VALUE_MAX, Chars::NoNul, false)
}

/// A queue's name (a task's or an agent's): 1..=128 bytes, no control characters, not blank.
pub fn queue(queue: &str) -> Option<String> {
    text(queue, l::QUEUE_NAME_MAX, Chars::NoControl, true)
}

/// A label's key (a task's or an agent's): 1..=128 bytes, no control characters.
pub fn label_key(key: &str) -> Option<String> {
    text(key, l::LABEL_KEY_MAX, Chars::NoControl, true)
}

/// A label's value: ..=256 bytes, no control characters.
pub fn label_value(value: &str) -> Option<String> {
    text(value, l::LABEL_VALUE_MAX, Chars::NoControl, false)
}

/// A shell task's command: 1..=64 KiB, not blank, no NUL.
pub fn shell_command(command: &str) -> Option<String> {
    text(command, l::SHELL_COMMAND_MAX, Chars::NoNul, true)
}

/// An sql task's datasource or incremental column: ..=128 bytes, no control characters (an
/// empty datasource is a problem of its own, named by each side in its words).
pub fn sql_name(name: &str) -> Option<String> {
    text(name, l::SQL_NAME_MAX, Chars::NoControl, false)
}

/// An sql task's query: ..=256 KiB, no NUL (an empty one is a problem of its own).
pub fn sql_query(query: &str) -> Option<String> {
    text(query, l::SQL_QUERY_MAX, Chars::NoNul, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_field_its_characters_and_emptiness() {
        for required in [job_name, queue, label_key, shell_command] {
            assert!(required(" ").is_some());
        }
        for optional in [param_value, label_value, sql_name, sql_query] {
            assert_eq!(optional(""), None);
        }
        // Text people read in tables holds no control character; commands and values may.
        for read in [job_name, queue, label_key, label_value, sql_name] {
            assert!(read("a\u{1b}[2J").is_some());
        }
        for run in [param_value, shell_command, sql_query] {
            assert_eq!(run("a\tb\n"), None);
            assert!(run("a\0b").is_some());
        }
        assert!(queue(&"q".repeat(l::QUEUE_NAME_MAX + 1)).is_some());
        assert_eq!(shell_command(&"x".repeat(l::SHELL_COMMAND_MAX)), None);
    }
}
