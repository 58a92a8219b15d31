//! JSON Lines: one object per row, keys in column order. Numbers and booleans bare, JSON
//! columns embedded as JSON, NULL as `null`, everything else (decimals included, so that no
//! reader rounds them) as strings.

use std::io::Write;

use super::{Out, RowWriter, WriteError};
use crate::sql::value::{Column, Value};

pub struct JsonlWriter {
    out: Out,
    /// `"name":` of each column, escaped once.
    keys: Vec<String>,
    line: String,
    field: String,
}

/// Appends `text` as a JSON string literal.
pub fn push_string(out: &mut String, text: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        if escape.is_empty() {
            use std::fmt::Write as _;
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

impl JsonlWriter {
    pub fn new(out: Out, columns: &[Column]) -> JsonlWriter {
        let keys = columns
            .iter()
            .map(|c| {
                let mut key = String::new();
                push_string(&mut key, &c.name);
                key.push(':');
                key
            })
            .collect();
        JsonlWriter {
            out,
            keys,
            line: String::with_capacity(1024),
            field: String::with_capacity(256),
        }
    }
}

impl RowWriter for JsonlWriter {
    fn write_row(&mut self, row: &[Value<'_>]) -> Result<(), WriteError> {
        self.line.clear();
        self.line.push('{');
        for (i, (value, key)) in row.iter().zip(&self.keys).enumerate() {
            if i > 0 {
                self.line.push(',');
            }
            self.line.push_str(key);
            if value.is_null() {
                self.line.push_str("null");
            } else if value.json_bare() {
                value.write_text(&mut self.line);
            } else {
                self.field.clear();
                value.write_text(&mut self.field);
                push_string(&mut self.line, &self.field);
            }
        }
        self.line.push_str("}\n");
        self.out.write_all(self.line.as_bytes())?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), WriteError> {
        Ok(self.out.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut s = String::new();
        push_string(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é\"");
        let parsed: String = serde_json::from_str(&s).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");
    }
}
