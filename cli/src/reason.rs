//! Short, lowercase reasons for errors, as the CLI's messages quote them ("connection
//! refused", "no such file or directory").

use std::io;

/// A short lowercase reason for an I/O error: "connection refused", "no such file or directory".
pub fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    let text = text
        .find(" (os error")
        .map_or(text.as_str(), |at| &text[..at]);
    lowercase_first(text)
}

/// `text` with its first character in lower case.
pub(crate) fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
