//! Named parameters (`:day`) in an sql task's query: a small tokenizer that finds them outside
//! string literals, quoted identifiers, comments, dollar quotes and PostgreSQL `::` casts;
//! the agent rewrites the query to its driver's placeholders (values are bound, never
//! spliced), and the CLI and the controller refuse a job whose query names a parameter the
//! job does not have (`unknown_params`), before anything runs.

use std::collections::HashMap;

/// Which SQL lexical rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
}

/// A query split into text and parameter references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pieces: Vec<Piece>,
    /// The byte offset in the query of each `Param` piece's colon, in order.
    offsets: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Param(String),
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Index just past a quoted run starting at `i` (the opening quote), where a doubled quote is
/// an escaped quote and, with `backslash`, `\x` escapes `x`. Unterminated runs end the text.
fn skip_quoted(b: &[u8], i: usize, quote: u8, backslash: bool) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if backslash && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == quote {
            if b.get(j + 1) == Some(&quote) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// `$tag$ … $tag$` (PostgreSQL): the index past the closing tag, when `i` opens one.
fn skip_dollar_quote(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() && is_ident(b[j]) && !(j == i + 1 && b[j].is_ascii_digit()) {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return None;
    }
    let tag = &b[i..=j];
    let body = j + 1;
    let end = b[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(b.len(), |p| body + p + tag.len());
    Some(end)
}

/// Splits `query` into text and `:name` references under `dialect`'s rules.
pub fn parse(query: &str, dialect: Dialect) -> Parsed {
    let b = query.as_bytes();
    let mut pieces = Vec::new();
    let mut offsets = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        i = match c {
            b'\'' => {
                // PostgreSQL E'…' strings and every MySQL string take backslash escapes.
                let escaped = match dialect {
                    Dialect::Mysql => true,
                    Dialect::Postgres => {
                        i > 0 && matches!(b[i - 1], b'e' | b'E') && (i < 2 || !is_ident(b[i - 2]))
                    }
                    Dialect::Sqlite => false,
                };
                skip_quoted(b, i, b'\'', escaped)
            }
            b'"' => skip_quoted(b, i, b'"', dialect == Dialect::Mysql),
            b'`' if dialect != Dialect::Postgres => skip_quoted(b, i, b'`', false),
            b'-' if next == Some(b'-') => b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p + 1),
            b'#' if dialect == Dialect::Mysql => b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p + 1),
            b'/' if next == Some(b'*') => {
                // PostgreSQL nests block comments; the others end at the first `*/`.
                let mut depth = 1;
                let mut j = i + 2;
                while j < b.len() && depth > 0 {
                    if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else if dialect == Dialect::Postgres
                        && b[j] == b'/'
                        && b.get(j + 1) == Some(&b'*')
                    {
                        depth += 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                j
            }
            b'$' if dialect == Dialect::Postgres && (i == 0 || !is_ident(b[i - 1])) => {
                skip_dollar_quote(b, i).unwrap_or(i + 1)
            }
            b':' if next == Some(b':') => i + 2,
            b':' if next.is_some_and(is_ident_start) => {
                let mut j = i + 1;
                while j < b.len() && is_ident(b[j]) {
                    j += 1;
                }
                if start < i {
                    pieces.push(Piece::Text(query[start..i].to_owned()));
                }
                pieces.push(Piece::Param(query[i + 1..j].to_owned()));
                offsets.push(i);
                start = j;
                j
            }
            _ => i + 1,
        };
    }
    if start < b.len() {
        pieces.push(Piece::Text(query[start..].to_owned()));
    }
    Parsed { pieces, offsets }
}

/// The `:name` references of `query` that are parameters under every dialect (so an agent
/// binds them whatever its datasource's kind) and that `known` does not hold: each name once,
/// with the byte offset of its first use, in query order. Each is a job no retry can fix.
pub fn unknown_params(query: &str, known: impl Fn(&str) -> bool) -> Vec<(usize, String)> {
    let dialects = [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite];
    let parsed: Vec<Parsed> = dialects.iter().map(|d| parse(query, *d)).collect();
    let mut out: Vec<(usize, String)> = Vec::new();
    for (name, at) in parsed[0].references() {
        let everywhere = parsed[1..]
            .iter()
            .all(|p| p.references().any(|(n, a)| n == name && a == at));
        if everywhere && !known(name) && !out.iter().any(|(_, n)| n == name) {
            out.push((at, name.to_owned()));
        }
    }
    out
}

/// The problem of an unknown parameter, in the words the CLI and the controller both use.
pub fn unknown_param_problem(name: &str, task: &str) -> String {
    format!(
        "the query of task {task:?} uses :{name}, which is not a parameter of the job; \
         declare it in [params] (or pass --param {name}=VALUE), or fix the name"
    )
}

impl Parsed {
    /// The distinct parameter names, in order of first use.
    pub fn names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for piece in &self.pieces {
            if let Piece::Param(name) = piece {
                if !out.contains(&name.as_str()) {
                    out.push(name);
                }
            }
        }
        out
    }

    /// The parameters the query uses that `values` lacks, sorted.
    pub fn missing(&self, values: &HashMap<String, String>) -> Vec<String> {
        let mut missing: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| !values.contains_key(*n))
            .map(str::to_owned)
            .collect();
        missing.sort();
        missing
    }

    /// The query with each reference replaced by `placeholder(index of its name among
    /// [`Parsed::names`], occurrence number from 0)`.
    pub fn render(&self, mut placeholder: impl FnMut(usize, usize) -> String) -> String {
        let names = self.names();
        let mut out = String::new();
        let mut occurrence = 0;
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Param(name) => {
                    let index = names.iter().position(|n| n == name).unwrap_or(0);
                    out.push_str(&placeholder(index, occurrence));
                    occurrence += 1;
                }
            }
        }
        out
    }

    /// Each reference's name and the byte offset of its colon, in order of appearance.
    pub fn references(&self) -> impl Iterator<Item = (&str, usize)> + '_ {
        self.occurrences()
            .into_iter()
            .zip(self.offsets.iter().copied())
    }

    /// The name of every reference in order of appearance (MySQL binds `?` by position).
    pub fn occurrences(&self) -> Vec<&str> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Param(n) => Some(n.as_str()),
                Piece::Text(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_params_are_those_every_dialect_sees() {
        let known = |n: &str| n == "day";
        let q =
            "select * from t where d = :day and r = :region and s = ':x' -- :y\n and z = :region";
        assert_eq!(unknown_params(q, known), vec![(39, "region".to_owned())]);
        // A cast, a string, a quoted identifier, a comment and a dollar quote hide nothing
        // they should not, and a MySQL-only comment hides what it hides.
        let q = "select a::int, \":q\", `:r`, $$:s$$ /* :t */ # :u\n from t";
        assert_eq!(unknown_params(q, known), vec![]);
        assert_eq!(
            unknown_params("select :Day", known),
            vec![(7, "Day".to_owned())]
        );
    }

    fn pg(query: &str) -> String {
        parse(query, Dialect::Postgres).render(|i, _| format!("${}", i + 1))
    }

    #[test]
    fn rewrites_names_to_numbered_placeholders() {
        assert_eq!(
            pg("select * from t where day = :day and x > :min or y = :day"),
            "select * from t where day = $1 and x > $2 or y = $1"
        );
        let p = parse("select :a, :b, :a", Dialect::Mysql);
        assert_eq!(p.render(|_, _| "?".into()), "select ?, ?, ?");
        assert_eq!(p.occurrences(), ["a", "b", "a"]);
        assert_eq!(p.names(), ["a", "b"]);
    }

    #[test]
    fn skips_literals_identifiers_comments_and_casts() {
        assert_eq!(
            pg("select ':no', \":no\", x::date, $$ :no $$, $t$ :no $t$ -- :no\n, :yes /* :no /* :no */ :no */"),
            "select ':no', \":no\", x::date, $$ :no $$, $t$ :no $t$ -- :no\n, $1 /* :no /* :no */ :no */"
        );
        assert_eq!(pg("select 'it''s :no', :yes"), "select 'it''s :no', $1");
        assert_eq!(pg("select E'\\' :no', :yes"), "select E'\\' :no', $1");
        // In standard PostgreSQL strings a backslash is an ordinary character.
        assert_eq!(pg("select '\\', :yes"), "select '\\', $1");
        let my = |q: &str| parse(q, Dialect::Mysql).render(|_, _| "?".into());
        assert_eq!(
            my("select 'a\\' :no', `:no`, \":no\", :yes # :no"),
            "select 'a\\' :no', `:no`, \":no\", ? # :no"
        );
        assert_eq!(my("set @x := 1, :p"), "set @x := 1, ?");
        let lite = |q: &str| parse(q, Dialect::Sqlite).render(|i, _| format!("?{}", i + 1));
        assert_eq!(
            lite("select '\\', :a, `:no`, :b, :a"),
            "select '\\', ?1, `:no`, ?2, ?1"
        );
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        for q in [
            "",
            ":",
            "'",
            "\"",
            "/*",
            "$",
            "$a",
            "--",
            "::",
            ": x",
            ":1",
            "é:ä :ü",
            "$$",
        ] {
            let _ = pg(q);
            let _ = parse(q, Dialect::Mysql).render(|_, _| "?".into());
        }
        assert_eq!(pg("a[:1]"), "a[:1]");
        assert_eq!(pg("$1 :x"), "$1 $1");
    }

    #[test]
    fn missing_names_are_listed() {
        let p = parse("select :b, :a, :c", Dialect::Postgres);
        let values = HashMap::from([("a".to_owned(), "1".to_owned())]);
        assert_eq!(p.missing(&values), ["b", "c"]);
    }
}
