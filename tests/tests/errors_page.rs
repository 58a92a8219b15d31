//! `docs/errors.md` cannot drift from the code (issue 19): every entry's heading quotes a
//! message, and each fixed part of it (between the `…` that stand for variable parts) must occur
//! in the binaries' sources; and every refusal the shared job rules (`jobspec/src`, used by the
//! CLI and again by the controller) write must have its words on the page. No process is
//! started: the test reads files.

use std::path::{Path, PathBuf};

/// The crates whose messages users meet.
const SOURCES: &[&str] = &[
    "cli/src",
    "controller/src",
    "agent/src",
    "jobspec/src",
    "tls/src",
    "log/src",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ferry-tests lives in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A source as its string literals read: a `\` line continuation (with the next line's
/// indentation) counts as nothing, `\"` as `"`.
fn normalized(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some('\n')) => {
                chars.next();
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            ('\\', Some('"')) => {
                out.push('"');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// The source of a file before its inline `#[cfg(test)] mod … {` (the tests' own strings are
/// no messages); a `#[cfg(test)] mod name;` naming a file is skipped over.
fn without_tests(source: &str) -> &str {
    let mut from = 0;
    while let Some(i) = source[from..].find("#[cfg(test)]") {
        let at = from + i;
        let next_line = source[at..].lines().nth(1).unwrap_or_default();
        if next_line.trim_end().ends_with('{') {
            return &source[..at];
        }
        from = at + 1;
    }
    source
}

/// Every heading `### \`…\`` of the page, outside its fenced examples.
fn quoted_messages(page: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in page.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if let Some(m) = line.strip_prefix("### `").and_then(|l| l.strip_suffix('`')) {
            if !fenced {
                out.push(m.to_owned());
            }
        }
    }
    out
}

#[test]
fn every_message_the_errors_page_quotes_occurs_in_the_sources() {
    let root = root();
    let page = std::fs::read_to_string(root.join("docs/errors.md")).unwrap();
    let mut files = Vec::new();
    for dir in SOURCES {
        rust_files(&root.join(dir), &mut files);
    }
    let sources: String = files
        .iter()
        .map(|f| normalized(without_tests(&std::fs::read_to_string(f).unwrap())))
        .collect::<Vec<_>>()
        .join("\n");
    let messages = quoted_messages(&page);
    assert!(messages.len() >= 20, "{} entries", messages.len());
    let mut missing = Vec::new();
    for message in &messages {
        for part in message.split('…').map(str::trim) {
            if part.len() > 3 && !sources.contains(part) {
                missing.push(format!("{part:?} (of `{message}`)"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/errors.md quotes words no source holds (reworded? gone?):\n  {}",
        missing.join("\n  ")
    );
}

/// The fixed parts of the first string literal of each `format!(` and of each `"…".into()` /
/// `.to_owned()` / `.to_string()` in `source`: what a check's problem says.
fn problem_words(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find('"') {
        let before = &rest[..i];
        let after = &rest[i + 1..];
        let Some(end) = after.find('"') else { break };
        let literal = &after[..end];
        let tail = &after[end + 1..];
        let is_format = before.trim_end().ends_with("format!(");
        let is_text = [".into()", ".to_owned()", ".to_string()"]
            .iter()
            .any(|s| tail.starts_with(s));
        if (is_format || is_text) && literal.contains(' ') {
            // The longest fixed part: what a reader would search the page for.
            let longest = literal
                .split(['{', '}'])
                .enumerate()
                .filter(|(i, _)| i % 2 == 0)
                .map(|(_, p)| p.trim().trim_end_matches([':', ';', ',']).trim())
                .max_by_key(|p| p.len())
                .unwrap_or_default();
            if longest.len() > 5 {
                out.push(longest.to_owned());
            }
        }
        rest = tail;
    }
    out
}

#[test]
fn every_refusal_of_the_shared_job_rules_is_on_the_errors_page() {
    let root = root();
    let page = std::fs::read_to_string(root.join("docs/errors.md")).unwrap();
    let page = page.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut files = Vec::new();
    rust_files(&root.join("jobspec/src"), &mut files);
    let mut missing = Vec::new();
    for file in &files {
        let source = normalized(without_tests(&std::fs::read_to_string(file).unwrap()));
        for words in problem_words(&source) {
            if !page.contains(&words) {
                missing.push(format!("{words:?} ({})", file.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "refusals of jobspec/src that docs/errors.md does not mention:\n  {}",
        missing.join("\n  ")
    );
}
