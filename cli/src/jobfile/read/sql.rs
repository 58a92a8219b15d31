//! The `sql` table of an sql task: datasource, query, format, compression, rows per file and
//! the incremental column.

use ferry_jobspec::fields;
use ferry_jobspec::sql::{self as rules, FORMATS};
use ferry_proto::v1::SqlTask;

use super::{Reader, Value};

const SQL_KEYS: &[&str] = &[
    "datasource",
    "query",
    "format",
    "compression",
    "max_rows_per_file",
    "incremental",
];
const INCREMENTAL_KEYS: &[&str] = &["column"];

impl Reader<'_> {
    pub(super) fn sql(&mut self, value: &Value<'_>, label: &str) -> Option<SqlTask> {
        let table = self.table(value, "sql")?;
        let mut sql = SqlTask {
            format: rules::FORMAT_DEFAULT.to_owned(),
            ..SqlTask::default()
        };
        let (mut datasource, mut query) = (false, false);
        let mut compression = None;
        // An unknown format is named once; the compression is not then checked against csv.
        let mut format_known = true;
        for (key, value) in table.iter() {
            match &**key.get_ref() {
                "datasource" => {
                    datasource = true;
                    sql.datasource = self
                        .nonempty_string(value, "sql.datasource")
                        .unwrap_or_default();
                    let problem = fields::sql_name(&sql.datasource);
                    self.limit(value, "sql.datasource", problem);
                }
                "query" => {
                    query = true;
                    sql.query = self.nonempty_string(value, "sql.query").unwrap_or_default();
                    let problem = fields::sql_query(&sql.query);
                    self.limit(value, "sql.query", problem);
                }
                "format" => {
                    if let Some(format) = self.nonempty_string(value, "sql.format") {
                        if FORMATS.contains(&format.as_str()) {
                            sql.format = format;
                        } else {
                            format_known = false;
                            self.push(
                                value.span().start,
                                format!(
                                    "unknown sql.format {format:?} in {label}; use {}",
                                    FORMATS.join(", ")
                                ),
                            );
                        }
                    }
                }
                "compression" => {
                    compression = self
                        .nonempty_string(value, "sql.compression")
                        .map(|c| (c, value.span().start));
                }
                "max_rows_per_file" => {
                    sql.max_rows_per_file = self.max_rows(value).unwrap_or(0);
                }
                "incremental" => {
                    sql.incremental_column = self.incremental(value, label).unwrap_or_default();
                }
                _ => self.unknown_key(key, &format!("in sql of {label}"), SQL_KEYS),
            }
        }
        if let Some((c, at)) = compression.filter(|_| format_known) {
            // The format is a known one: an unknown one is not kept.
            let allowed = rules::compressions(&sql.format).unwrap_or_default();
            if !allowed.contains(&c.as_str()) {
                self.push(
                    at,
                    format!(
                        "sql.compression {c:?} does not apply to format {} in {label}; use {}",
                        sql.format,
                        allowed.join(", ")
                    ),
                );
            } else {
                // csv and jsonl spell "none" as the empty (default) compression on the wire.
                sql.compression = rules::compression(&sql.format, c);
            }
        }
        let start = value.span().start;
        if !datasource {
            self.push(start, format!("missing \"datasource\" in sql of {label}"));
        }
        if !query {
            self.push(start, format!("missing \"query\" in sql of {label}"));
        }
        Some(sql)
    }

    fn incremental(&mut self, value: &Value<'_>, label: &str) -> Option<String> {
        let table = self.table(value, "sql.incremental")?;
        let mut column = None;
        for (key, value) in table.iter() {
            match &**key.get_ref() {
                "column" => {
                    column = self.nonempty_string(value, "sql.incremental.column");
                    if let Some(c) = &column {
                        let problem = fields::sql_name(c);
                        self.limit(value, "sql.incremental.column", problem);
                    }
                }
                _ => self.unknown_key(
                    key,
                    &format!("in sql.incremental of {label}"),
                    INCREMENTAL_KEYS,
                ),
            }
        }
        if column.is_none() && !table.iter().any(|(k, _)| &**k.get_ref() == "column") {
            self.push(
                value.span().start,
                format!("missing \"column\" in sql.incremental of {label}"),
            );
        }
        column
    }

    fn max_rows(&mut self, value: &Value<'_>) -> Option<u64> {
        let Some(int) = value.get_ref().as_integer() else {
            self.wrong_type(value, "sql.max_rows_per_file", "a positive integer");
            return None;
        };
        match i64::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) if n >= 1 => Some(n as u64),
            _ => {
                self.push(
                    value.span().start,
                    "sql.max_rows_per_file must be a positive integer",
                );
                None
            }
        }
    }
}
