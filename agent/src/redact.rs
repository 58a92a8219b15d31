//! Secrets the agent knows — datasource passwords (from `password_env`, `password_file` or the
//! URL) and its own token — replaced by [`REDACTED`] in a task's log output before it leaves
//! for the controller (issue 16, class 4), and in the error an attempt reports.
//!
//! A task's output arrives in reads of any size, so a secret may be split between two of
//! them. Each stream has a [`Redactor`] that holds back the end of a read when it could be the
//! start of a secret (the longest such suffix, shorter than the longest secret) and looks at it
//! again in front of the next read; what it holds when the task ends goes out as it is (it is
//! not a whole secret). Output that cannot start a secret is never delayed.
//!
//! Secrets shorter than [`MIN_SECRET_BYTES`] are not looked for: they would match ordinary
//! output all the time. Only whole occurrences are redacted: a task that prints part of a
//! secret, or a transformation of it (base64, escaped), is not caught.

use std::{borrow::Cow, sync::Arc};

/// What replaces each occurrence of a secret.
pub const REDACTED: &[u8] = b"[redacted]";
/// Shorter secrets are ignored.
pub const MIN_SECRET_BYTES: usize = 4;

/// The secret values to redact; its `Debug` shows how many, never them.
#[derive(Clone)]
pub struct Secrets {
    /// Longest first, so that of two secrets starting at one place the longer is replaced.
    values: Vec<Vec<u8>>,
    /// Whether some secret starts with a byte.
    first: [bool; 256],
}

impl Default for Secrets {
    fn default() -> Self {
        Secrets {
            values: Vec::new(),
            first: [false; 256],
        }
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} values)", self.values.len())
    }
}

impl Secrets {
    /// From values, each once; those shorter than [`MIN_SECRET_BYTES`] are dropped.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Secrets {
        let mut values: Vec<Vec<u8>> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_SECRET_BYTES)
            .map(|v| v.as_bytes().to_vec())
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        let mut first = [false; 256];
        for v in &values {
            first[usize::from(v[0])] = true;
        }
        Secrets { values, first }
    }

    /// The secrets of the agent's config: its token and its datasources' passwords.
    pub fn of_config(config: &crate::Config) -> Secrets {
        let token = config.token.as_ref().map(|t| t.0.as_str());
        let datasources = config.datasources.values().flat_map(|d| d.secrets());
        Secrets::new(token.into_iter().chain(datasources))
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn longest(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }

    /// `text` with every secret replaced (a message, not a stream).
    pub fn redact_str(&self, text: &str) -> String {
        let (out, _) = self.scan(text.as_bytes(), false);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `data` with every whole secret replaced, and (with `hold`) the suffix held back because
    /// a secret could start in it and go on in the next read.
    fn scan<'a>(&self, data: &'a [u8], hold: bool) -> (Cow<'a, [u8]>, &'a [u8]) {
        if self.values.is_empty() {
            return (Cow::Borrowed(data), &[]);
        }
        let longest = self.longest();
        let mut out: Option<Vec<u8>> = None;
        let (mut i, mut copied) = (0, 0);
        while i < data.len() {
            if !self.first[usize::from(data[i])] {
                i += 1;
                continue;
            }
            let rest = &data[i..];
            if hold
                && rest.len() < longest
                && self
                    .values
                    .iter()
                    .any(|v| v.len() > rest.len() && v.starts_with(rest))
            {
                let done = &data[..i];
                let out = match out {
                    None => Cow::Borrowed(done),
                    Some(mut out) => {
                        out.extend_from_slice(&data[copied..i]);
                        Cow::Owned(out)
                    }
                };
                return (out, rest);
            }
            match self.values.iter().find(|v| rest.starts_with(v)) {
                Some(secret) => {
                    let out = out.get_or_insert_with(|| Vec::with_capacity(data.len()));
                    out.extend_from_slice(&data[copied..i]);
                    out.extend_from_slice(REDACTED);
                    i += secret.len();
                    copied = i;
                }
                None => i += 1,
            }
        }
        let out = match out {
            None => Cow::Borrowed(data),
            Some(mut out) => {
                out.extend_from_slice(&data[copied..]);
                Cow::Owned(out)
            }
        };
        (out, &[])
    }
}

/// Redacts one output stream read by read (see the module's comment).
#[derive(Default)]
pub struct Redactor {
    secrets: Arc<Secrets>,
    /// The end of earlier output that could be the start of a secret.
    held: Vec<u8>,
}

impl Redactor {
    pub fn new(secrets: Arc<Secrets>) -> Redactor {
        Redactor {
            secrets,
            held: Vec::new(),
        }
    }

    /// What can be sent of the output so far, given its next read `data`.
    pub fn feed<'a>(&mut self, data: &'a [u8]) -> Cow<'a, [u8]> {
        if self.secrets.is_empty() {
            return Cow::Borrowed(data);
        }
        if self.held.is_empty() {
            let (out, held) = self.secrets.scan(data, true);
            self.held.extend_from_slice(held);
            return out;
        }
        let mut joined = std::mem::take(&mut self.held);
        joined.extend_from_slice(data);
        let (out, held) = self.secrets.scan(&joined, true);
        let out = out.into_owned();
        self.held = held.to_vec();
        Cow::Owned(out)
    }

    /// What is still held, at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Arc<Secrets> {
        Arc::new(Secrets::new(values.iter().copied()))
    }

    /// The whole output fed in reads of `sizes` (cycled), as the controller would see it.
    fn stream(secrets: &Arc<Secrets>, output: &[u8], sizes: &[usize]) -> String {
        let mut r = Redactor::new(Arc::clone(secrets));
        let mut out = Vec::new();
        let mut rest = output;
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (read, next) = rest.split_at((*size).min(rest.len()));
            out.extend_from_slice(&r.feed(read));
            rest = next;
        }
        out.extend_from_slice(&r.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn whole_reads() {
        let s = secrets(&["hunter2-secret", "tok3n-abc"]);
        assert_eq!(
            stream(&s, b"pw=hunter2-secret token tok3n-abc!\n", &[4096]),
            "pw=[redacted] token [redacted]!\n"
        );
        assert_eq!(
            s.redact_str("x hunter2-secrethunter2-secret y"),
            "x [redacted][redacted] y"
        );
    }

    #[test]
    fn a_secret_split_across_reads() {
        let s = secrets(&["hunter2-secret"]);
        let output = b"PASSWORD=hunter2-secret\nand again: hunter2-secret";
        for size in 1..output.len() {
            let got = stream(&s, output, &[size]);
            assert_eq!(
                got, "PASSWORD=[redacted]\nand again: [redacted]",
                "reads of {size}"
            );
        }
        assert_eq!(
            stream(&s, output, &[3, 11, 1, 7]),
            "PASSWORD=[redacted]\nand again: [redacted]"
        );
    }

    #[test]
    fn only_a_possible_start_is_held() {
        let s = secrets(&["hunter2-secret"]);
        let mut r = Redactor::new(Arc::clone(&s));
        assert_eq!(&*r.feed(b"plain output\n"), b"plain output\n");
        assert_eq!(&*r.feed(b"ends with hun"), b"ends with ");
        // Not the secret after all: the held bytes go out with the next read.
        assert_eq!(&*r.feed(b"gry\n"), b"hungry\n");
        assert_eq!(&*r.feed(b"cut short: hunter2"), b"cut short: ");
        assert_eq!(r.finish(), b"hunter2");
    }

    #[test]
    fn the_longer_of_two_overlapping_secrets_wins() {
        let s = secrets(&["abcd", "abcdefgh"]);
        assert_eq!(stream(&s, b"<abcdefgh>", &[6]), "<[redacted]>");
        assert_eq!(stream(&s, b"<abcdefg>", &[6]), "<[redacted]efg>");
        assert_eq!(stream(&s, b"<abcdefgh>", &[1]), "<[redacted]>");
    }

    #[test]
    fn short_secrets_are_ignored() {
        let s = secrets(&["abc", "", "pw"]);
        assert!(s.is_empty());
        assert_eq!(stream(&s, b"abc pw", &[2]), "abc pw");
        assert_eq!(format!("{s:?}"), "Secrets(0 values)");
        let s = secrets(&["abcd"]);
        assert_eq!(s.redact_str("abc abcd"), "abc [redacted]");
    }
}
