//! The job file's values by type, each wrong one a problem at its place: tables, strings,
//! scalars and maps of them, string lists and durations, and unknown keys.

use std::collections::HashMap;

use ferry_jobspec::check;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{Reader, Value, DURATION};

impl Reader<'_> {
    pub(super) fn unknown_key(
        &mut self,
        key: &Spanned<toml::de::DeString<'_>>,
        place: &str,
        allowed: &[&str],
    ) {
        self.push(
            key.span().start,
            format!(
                "unknown key {:?} {place}; allowed: {}",
                &**key.get_ref(),
                allowed.join(", ")
            ),
        );
    }

    pub(super) fn wrong_type(&mut self, value: &Value<'_>, what: &str, expected: &str) {
        self.push(
            value.span().start,
            format!(
                "wrong type for {what}: expected {expected}, found {}",
                value.get_ref().type_str()
            ),
        );
    }

    pub(super) fn table<'v, 'i>(
        &mut self,
        value: &'v Value<'i>,
        what: &str,
    ) -> Option<&'v DeTable<'i>> {
        let table = value.get_ref().as_table();
        if table.is_none() {
            self.wrong_type(value, what, "a table");
        }
        table
    }

    pub(super) fn string(&mut self, value: &Value<'_>, what: &str) -> Option<String> {
        let s = value.get_ref().as_str().map(str::to_owned);
        if s.is_none() {
            self.wrong_type(value, what, "a string");
        }
        s
    }

    pub(super) fn nonempty_string(&mut self, value: &Value<'_>, what: &str) -> Option<String> {
        let s = self.string(value, what)?;
        if s.trim().is_empty() {
            self.push(value.span().start, format!("{what} must not be empty"));
            return None;
        }
        Some(s)
    }

    /// A string, or a number, boolean or date written as its TOML text.
    pub(super) fn scalar(&mut self, value: &Value<'_>, what: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            DeValue::Integer(int) => Some(
                i64::from_str_radix(int.as_str(), int.radix())
                    .map_or_else(|_| int.to_string(), |n| n.to_string()),
            ),
            DeValue::Float(float) => Some(float.as_str().to_owned()),
            DeValue::Boolean(b) => Some(b.to_string()),
            DeValue::Datetime(dt) => Some(dt.to_string()),
            DeValue::Array(_) | DeValue::Table(_) => {
                self.wrong_type(value, what, "a string, number or boolean");
                None
            }
        }
    }

    pub(super) fn scalar_map(&mut self, value: &Value<'_>, what: &str) -> HashMap<String, String> {
        let Some(table) = self.table(value, what) else {
            return HashMap::new();
        };
        let mut map = HashMap::new();
        for (key, value) in table.iter() {
            let key: &str = key.get_ref();
            if let Some(v) = self.scalar(value, &format!("{what}.{key}")) {
                map.insert(key.to_owned(), v);
            }
        }
        map
    }

    /// An array of strings, each with its offset.
    pub(super) fn string_list(&mut self, value: &Value<'_>, what: &str) -> Vec<(String, usize)> {
        let Some(items) = value.get_ref().as_array() else {
            self.wrong_type(value, what, "an array of strings");
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let s = self.string(item, &format!("{what}[{i}]"))?;
                Some((s, item.span().start))
            })
            .collect()
    }

    pub(super) fn duration_ms(
        &mut self,
        value: &Value<'_>,
        what: &str,
        max_ms: u64,
    ) -> Option<u64> {
        let Some(text) = value.get_ref().as_str() else {
            self.wrong_type(value, what, DURATION);
            return None;
        };
        match humantime::parse_duration(text) {
            Ok(d) => {
                let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                let problem = check::duration_ms(ms, max_ms);
                self.limit(value, what, problem.clone());
                problem.is_none().then_some(ms)
            }
            Err(err) => {
                self.push(
                    value.span().start,
                    format!("bad duration {text:?} for {what}: {err}"),
                );
                None
            }
        }
    }
}
