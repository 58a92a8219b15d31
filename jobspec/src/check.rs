//! Pure checks of one value against its rule: each returns the problem in words (lowercase, no
//! trailing period, naming the limit), for the caller to prefix with the field it checked.

use crate::limits;

/// Which characters a text may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chars {
    /// Anything but NUL (commands, queries, values).
    NoNul,
    /// No control characters (C0, DEL, C1): text people read in tables.
    NoControl,
    /// Printable ASCII, spaces included.
    PrintableAscii,
    /// Printable ASCII without spaces (agent names, hostnames).
    Graphic,
}

impl Chars {
    fn allows(self, c: char) -> bool {
        match self {
            Chars::NoNul => c != '\0',
            Chars::NoControl => !c.is_control(),
            Chars::PrintableAscii => c == ' ' || c.is_ascii_graphic(),
            Chars::Graphic => c.is_ascii_graphic(),
        }
    }

    fn words(self) -> &'static str {
        match self {
            Chars::NoNul => "a NUL byte",
            Chars::NoControl => "a control character",
            Chars::PrintableAscii => "a character other than printable ASCII",
            Chars::Graphic => "a character other than printable ASCII without spaces",
        }
    }
}

/// The problem with `value`, a text of at most `max` bytes of `chars`; `required` refuses an
/// empty (or blank) one.
pub fn text(value: &str, max: usize, chars: Chars, required: bool) -> Option<String> {
    if value.len() > max {
        return Some(format!("is {} bytes long; the limit is {max}", value.len()));
    }
    if required && value.trim().is_empty() {
        return Some("must not be empty".to_owned());
    }
    if let Some(c) = value.chars().find(|c| !chars.allows(*c)) {
        return Some(format!("holds {} ({c:?})", chars.words()));
    }
    None
}

/// What a task id may hold, in the words of every problem that names it.
pub const TASK_ID_CHARS: &str = "letters, digits, '_', '.' and '-'";

/// What a parameter name may hold, in the words of every problem that names it.
pub const PARAM_NAME_CHARS: &str = "letters, digits and '_', not starting with a digit";

/// The problem with a task id: `[A-Za-z0-9_.-]`, 1 to 128 bytes, not `.` or `..`.
pub fn task_id(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if id.len() > limits::TASK_ID_MAX {
        return Some(format!(
            "is {} bytes long; the limit is {}",
            id.len(),
            limits::TASK_ID_MAX
        ));
    }
    if !is_task_id(id) {
        return Some(format!("may hold only {TASK_ID_CHARS}"));
    }
    if id == "." || id == ".." {
        // It names a directory of the artifact store.
        return Some("is reserved".to_owned());
    }
    None
}

/// A task id's characters: `[A-Za-z0-9_.-]+`.
pub fn is_task_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A parameter name reaches shell commands as an environment variable name and SQL as a bind
/// name, so it is `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The problem with a parameter name.
pub fn param_name(name: &str) -> Option<String> {
    if name.len() > limits::PARAM_NAME_MAX {
        return Some(format!(
            "is {} bytes long; the limit is {}",
            name.len(),
            limits::PARAM_NAME_MAX
        ));
    }
    (!is_param_name(name)).then(|| format!("is not an identifier: use {PARAM_NAME_CHARS}"))
}

/// The problem with a duration of `ms` milliseconds bounded by `max_ms`.
pub fn duration_ms(ms: u64, max_ms: u64) -> Option<String> {
    (ms > max_ms).then(|| format!("{} is above the limit of {}", human(ms), human(max_ms)))
}

/// Whether a retry policy's delays are in order: the longest never below the first.
pub fn retry_delays_in_order(initial_delay_ms: u64, max_delay_ms: u64) -> bool {
    max_delay_ms >= initial_delay_ms
}

/// The problem with `max_attempts` (0 is not given: the default).
pub fn max_attempts(n: u64) -> Option<String> {
    (n > u64::from(limits::MAX_ATTEMPTS_MAX))
        .then(|| format!("{n} is above the limit of {}", limits::MAX_ATTEMPTS_MAX))
}

/// The problem with an output path: relative, inside the task's directory, bounded.
pub fn output_path(path: &str) -> Option<String> {
    if let Some(problem) = text(path, limits::OUTPUT_PATH_MAX, Chars::NoControl, true) {
        return Some(problem);
    }
    (!is_inside_task_dir(path))
        .then(|| "must be a path inside the task's working directory".to_owned())
}

/// Whether an output path stays inside the task's working directory: relative, no `..` part.
pub fn is_inside_task_dir(path: &str) -> bool {
    !(path.starts_with('/') || path.split('/').any(|part| part == ".."))
}

/// The problem with a count of `n` items when at most `max` may be given.
pub fn count(n: usize, max: usize) -> Option<String> {
    (n > max).then(|| format!("{n} are given; the limit is {max}"))
}

/// Milliseconds in the largest whole unit that divides them ("7d", "90s"), else in ms.
pub fn human(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (24 * 3_600_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    for (size, unit) in UNITS {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// `s` quoted for a message, its first 40 characters when longer (a refused value may be a
/// megabyte, or hold terminal escapes: `{:?}` escapes them).
pub fn shown(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((end, _)) => format!("{:?}…", &s[..end]),
        None => format!("{s:?}"),
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_bounded_and_their_characters_checked() {
        assert_eq!(text("abc", 3, Chars::NoNul, true), None);
        assert_eq!(
            text("abcd", 3, Chars::NoNul, true).unwrap(),
            "is 4 bytes long; the limit is 3"
        );
        assert_eq!(
            text(" ", 3, Chars::NoNul, true).unwrap(),
            "must not be empty"
        );
        assert_eq!(text("", 3, Chars::NoNul, false), None);
        assert_eq!(
            text("a\0b", 9, Chars::NoNul, true).unwrap(),
            "holds a NUL byte ('\\0')"
        );
        assert_eq!(text("a\tb", 9, Chars::NoNul, true), None);
        assert_eq!(
            text("a\u{1b}[2J", 9, Chars::NoControl, true).unwrap(),
            "holds a control character ('\\u{1b}')"
        );
        assert_eq!(text("café", 9, Chars::NoControl, true), None);
        assert!(text("café", 9, Chars::PrintableAscii, true).is_some());
        assert_eq!(text("v 1.0", 9, Chars::PrintableAscii, true), None);
        assert!(text("a b", 9, Chars::Graphic, true).is_some());
    }

    #[test]
    fn task_ids_are_short_safe_path_names() {
        assert_eq!(task_id("extract-1.a_b"), None);
        assert_eq!(task_id("").unwrap(), "must not be empty");
        assert!(task_id("a/b").unwrap().contains("only letters"));
        assert_eq!(task_id("..").unwrap(), "is reserved");
        assert_eq!(task_id(&"a".repeat(128)), None);
        assert_eq!(
            task_id(&"a".repeat(129)).unwrap(),
            "is 129 bytes long; the limit is 128"
        );
    }

    #[test]
    fn parameter_names_are_identifiers() {
        assert_eq!(param_name("_day2"), None);
        assert!(param_name("2day").is_some());
        assert!(param_name("a-b").is_some());
        assert!(param_name("").is_some());
        assert!(param_name(&"a".repeat(129))
            .unwrap()
            .contains("limit is 128"));
    }

    #[test]
    fn durations_and_attempts_are_bounded() {
        assert_eq!(
            duration_ms(limits::TIMEOUT_MAX_MS, limits::TIMEOUT_MAX_MS),
            None
        );
        assert_eq!(
            duration_ms(limits::TIMEOUT_MAX_MS + 1, limits::TIMEOUT_MAX_MS).unwrap(),
            "604800001ms is above the limit of 7d"
        );
        assert_eq!(
            duration_ms(2 * limits::RETRY_DELAY_MAX_MS, limits::RETRY_DELAY_MAX_MS).unwrap(),
            "2d is above the limit of 1d"
        );
        assert_eq!(max_attempts(100), None);
        assert_eq!(max_attempts(101).unwrap(), "101 is above the limit of 100");
    }

    #[test]
    fn outputs_stay_inside_the_working_directory() {
        assert_eq!(output_path("out/a.csv"), None);
        assert!(output_path("/etc/passwd").is_some());
        assert!(output_path("a/../../b").is_some());
        assert!(output_path("").is_some());
        assert!(output_path("a\nb").is_some());
    }

    #[test]
    fn long_values_are_shown_cut() {
        assert_eq!(shown("a\u{1b}"), "\"a\\u{1b}\"");
        assert_eq!(shown(&"x".repeat(100)), format!("{:?}…", "x".repeat(40)));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        let mut s = "aé".to_owned();
        truncate(&mut s, 2);
        assert_eq!(s, "a");
        let mut s = "abc".to_owned();
        truncate(&mut s, 5);
        assert_eq!(s, "abc");
    }
}
