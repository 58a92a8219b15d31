//! What a pipeline's requests must hold, for the CLI and the controller alike: its name, its
//! typed parameter declarations (`type`, `default`, `required`), the rule of each type's values,
//! and how a run's values are resolved against the declarations (`resolve`), every problem
//! named with the parameter it is about.

use std::collections::BTreeMap;

use crate::check::{self, shown};
use crate::fields;
use crate::limits as l;

/// The characters of a pipeline's name, as problems name them.
pub const PIPELINE_NAME_CHARS: &str = "letters, digits, '_', '.' and '-'";

/// Why `name` cannot be a pipeline's name (it names a webhook's URL and a CLI argument).
pub fn pipeline_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > l::PIPELINE_NAME_MAX {
        return Some(format!(
            "is {} bytes long; the limit is {}",
            name.len(),
            l::PIPELINE_NAME_MAX
        ));
    }
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok || name == "." || name == ".." {
        return Some(format!("is not a pipeline name: use {PIPELINE_NAME_CHARS}"));
    }
    None
}

/// The type of a declared parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Int,
    Date,
    Timestamp,
    Bool,
}

impl ParamType {
    /// The types, as a problem lists them.
    pub const NAMES: &'static str = "string, int, date, timestamp or bool";

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "string" => Self::String,
            "int" => Self::Int,
            "date" => Self::Date,
            "timestamp" => Self::Timestamp,
            "bool" => Self::Bool,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "int",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
            Self::Bool => "bool",
        }
    }

    /// What a value of this type looks like, for a problem's words.
    pub fn described(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Int => "an int (a whole number such as 42)",
            Self::Date => "a date (YYYY-MM-DD)",
            Self::Timestamp => "a timestamp (RFC 3339, such as 2026-11-24T02:00:00Z)",
            Self::Bool => "a bool (true or false)",
        }
    }

    /// Whether `value` is a value of this type.
    pub fn accepts(self, value: &str) -> bool {
        match self {
            Self::String => true,
            Self::Int => value.parse::<i64>().is_ok(),
            Self::Bool => value == "true" || value == "false",
            Self::Date => is_date(value),
            Self::Timestamp => is_timestamp(value),
        }
    }
}

/// One declared parameter: `name = { type = "date", default = "…", required = true }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamDecl {
    pub name: String,
    pub ty: ParamType,
    pub default: Option<String>,
    pub required: bool,
}

/// Why a declaration cannot be kept, each problem naming the parameter.
pub fn decl_problems(decl: &ParamDecl) -> Vec<String> {
    let mut problems = Vec::new();
    let name = shown(&decl.name);
    if let Some(problem) = check::param_name(&decl.name) {
        problems.push(format!("parameter name {name} {problem}"));
    }
    if let Some(default) = &decl.default {
        if decl.required {
            problems.push(format!(
                "parameter {name} is required and has a default: drop one of them"
            ));
        }
        if let Some(problem) = fields::param_value(default) {
            problems.push(format!("parameter {name} default {problem}"));
        } else if !decl.ty.accepts(default) {
            problems.push(format!(
                "parameter {name} default {} is not {}",
                shown(default),
                decl.ty.described()
            ));
        }
    }
    problems
}

/// The problem of `value` given for the declared parameter `decl`, if any.
pub fn value_problem(decl: &ParamDecl, value: &str) -> Option<String> {
    if !decl.ty.accepts(value) {
        return Some(format!(
            "parameter {} is {}, which is not {}",
            shown(&decl.name),
            shown(value),
            decl.ty.described()
        ));
    }
    None
}

/// The values of a run: the plain defaults (`[params] name = "value"`), then the declared
/// parameters' defaults, then `given`. Refused, naming each parameter, when a required one is
/// missing, a declared one's value is not of its type or, with `strict`, a given name is
/// declared neither way.
pub fn resolve(
    plain: &BTreeMap<String, String>,
    decls: &[ParamDecl],
    given: &BTreeMap<String, String>,
    strict: bool,
) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut problems = Vec::new();
    let mut values = plain.clone();
    for decl in decls {
        if let Some(default) = &decl.default {
            values.insert(decl.name.clone(), default.clone());
        }
    }
    for (name, value) in given {
        let known = plain.contains_key(name) || decls.iter().any(|d| &d.name == name);
        if strict && !known {
            let mut names: Vec<&str> = plain.keys().map(String::as_str).collect();
            names.extend(decls.iter().map(|d| d.name.as_str()));
            names.sort_unstable();
            let declared = if names.is_empty() {
                "it declares none".to_string()
            } else {
                format!("it declares {}", names.join(", "))
            };
            problems.push(format!("unknown parameter {}: {declared}", shown(name)));
        }
        values.insert(name.clone(), value.clone());
    }
    for decl in decls {
        match values.get(&decl.name) {
            None if decl.required => problems.push(format!(
                "missing required parameter {} ({}): give it with --param {}=…",
                shown(&decl.name),
                decl.ty.described(),
                decl.name
            )),
            None => {}
            Some(value) => problems.extend(value_problem(decl, value)),
        }
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems)
    }
}

/// The number the ASCII digits of `b` spell (none: not all digits, or empty).
fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

/// `YYYY-MM-DD`, a day that exists.
fn is_date(s: &str) -> bool {
    is_date_bytes(s.as_bytes())
}

fn is_date_bytes(b: &[u8]) -> bool {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) =
        (digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10]))
    else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// RFC 3339: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`. Read as bytes: any text is safe.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || !is_date_bytes(&b[..10]) || !matches!(b[10], b'T' | b't') {
        return false;
    }
    let t = &b[11..];
    if t[2] != b':' || t[5] != b':' {
        return false;
    }
    let (Some(h), Some(m), Some(sec)) = (digits(&t[0..2]), digits(&t[3..5]), digits(&t[6..8]))
    else {
        return false;
    };
    if h > 23 || m > 59 || sec > 60 {
        return false;
    }
    let mut zone = &t[8..];
    if let Some(frac) = zone.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        zone = &frac[n..];
    }
    match zone {
        b"Z" | b"z" => true,
        [sign, h1, h2, b':', m1, m2] => {
            matches!(sign, b'+' | b'-')
                && digits(&[*h1, *h2]).is_some_and(|h| h <= 23)
                && digits(&[*m1, *m2]).is_some_and(|m| m <= 59)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(name: &str, ty: ParamType, default: Option<&str>, required: bool) -> ParamDecl {
        ParamDecl {
            name: name.into(),
            ty,
            default: default.map(Into::into),
            required,
        }
    }

    #[test]
    fn each_type_takes_its_values_only() {
        use ParamType::*;
        for (ty, good, bad) in [
            (
                Int,
                &["0", "-7", "42"][..],
                &["", "4.2", "x", "99999999999999999999"][..],
            ),
            (Bool, &["true", "false"], &["yes", "1", "True"]),
            (
                Date,
                &["2026-11-24", "2024-02-29"],
                &["2026-02-29", "2026-13-01", "26-11-24", "2026-1-01"],
            ),
            (
                Timestamp,
                &[
                    "2026-11-24T02:00:00Z",
                    "2026-11-24T02:00:00.123+01:00",
                    "2026-11-24t02:00:60z",
                ],
                &[
                    "2026-11-24",
                    "2026-11-24T24:00:00Z",
                    "2026-11-24T02:00:00",
                    "2026-11-24T02:00:00+1:00",
                    "2026-11-24T02:00:00.Z",
                ],
            ),
            (String, &["", "anything"], &[]),
        ] {
            for v in good {
                assert!(ty.accepts(v), "{ty:?} {v:?}");
            }
            for v in bad {
                assert!(!ty.accepts(v), "{ty:?} {v:?}");
            }
        }
        assert!(!ParamType::Timestamp.accepts("2026-11-24T02:00:00Zé"));
        assert!(!ParamType::Timestamp.accepts("2026-11-2éT02:00:00Z"));
        assert!(!ParamType::Timestamp.accepts("2026-11-24T02:00:0éZ"));
        assert!(!ParamType::Date.accepts("2026-1é-01"));
    }

    #[test]
    fn a_run_is_refused_naming_each_missing_or_ill_typed_parameter() {
        let decls = [
            decl("day", ParamType::Date, None, true),
            decl("count", ParamType::Int, Some("3"), false),
        ];
        let plain = BTreeMap::from([("region".to_string(), "eu".to_string())]);
        let given = BTreeMap::from([("count".to_string(), "many".to_string())]);
        assert_eq!(
            resolve(&plain, &decls, &given, true).unwrap_err(),
            vec![
                "missing required parameter \"day\" (a date (YYYY-MM-DD)): give it with --param day=…",
                "parameter \"count\" is \"many\", which is not an int (a whole number such as 42)",
            ]
        );
        let given = BTreeMap::from([
            ("day".to_string(), "2026-11-24".to_string()),
            ("other".to_string(), "x".to_string()),
        ]);
        assert_eq!(
            resolve(&plain, &decls, &given, true).unwrap_err(),
            vec!["unknown parameter \"other\": it declares count, day, region"]
        );
        let values = resolve(&plain, &decls, &given, false).unwrap();
        assert_eq!(values["count"], "3");
        assert_eq!(values["region"], "eu");
        assert_eq!(values["day"], "2026-11-24");
    }

    #[test]
    fn declarations_are_checked() {
        assert_eq!(
            decl_problems(&decl("d", ParamType::Date, Some("soon"), true)),
            vec![
                "parameter \"d\" is required and has a default: drop one of them",
                "parameter \"d\" default \"soon\" is not a date (YYYY-MM-DD)",
            ]
        );
        assert!(decl_problems(&decl("d", ParamType::Bool, Some("true"), false)).is_empty());
        assert_eq!(
            pipeline_name("a b").unwrap(),
            "is not a pipeline name: use letters, digits, '_', '.' and '-'"
        );
        assert!(pipeline_name("orders-etl.v2").is_none());
    }

    proptest::proptest! {
        #[test]
        fn no_text_makes_a_type_check_panic(text in "[0-9:.+TZ\\-é ]{0,40}") {
            for ty in [ParamType::String, ParamType::Int, ParamType::Date, ParamType::Timestamp, ParamType::Bool] {
                let _ = ty.accepts(&text);
            }
        }
    }
}
