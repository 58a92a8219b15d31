//! CSV (RFC 4180): a header row, `,` separators, CRLF-free `\n` line ends, fields quoted when
//! they hold `,` `"` or a line break, and an empty string written `""` so that it differs from
//! NULL (an empty unquoted field).

use std::io::Write;

use super::{Out, RowWriter, WriteError};
use crate::sql::value::{Column, Value};

pub struct CsvWriter {
    out: Out,
    line: String,
    field: String,
}

/// Appends `text` as one CSV field, quoted when it must be.
pub fn push_field(line: &mut String, text: &str) {
    if text.is_empty() {
        line.push_str("\"\"");
    } else if text.contains([',', '"', '\n', '\r']) {
        line.push('"');
        for c in text.chars() {
            if c == '"' {
                line.push('"');
            }
            line.push(c);
        }
        line.push('"');
    } else {
        line.push_str(text);
    }
}

/// The header line of `columns` (with its `\n`).
pub fn header(columns: &[Column]) -> String {
    let mut line = String::new();
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        push_field(&mut line, &c.name);
    }
    line.push('\n');
    line
}

impl CsvWriter {
    pub fn new(mut out: Out, columns: &[Column]) -> Result<CsvWriter, WriteError> {
        out.write_all(header(columns).as_bytes())?;
        Ok(CsvWriter {
            out,
            line: String::with_capacity(1024),
            field: String::with_capacity(256),
        })
    }
}

impl RowWriter for CsvWriter {
    fn write_row(&mut self, row: &[Value<'_>]) -> Result<(), WriteError> {
        self.line.clear();
        for (i, value) in row.iter().enumerate() {
            if i > 0 {
                self.line.push(',');
            }
            if value.is_null() {
                continue;
            }
            self.field.clear();
            value.write_text(&mut self.field);
            push_field(&mut self.line, &self.field);
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())?;
        Ok(())
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.out.write_all(bytes)?;
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
    fn quoting() {
        let mut line = String::new();
        for f in ["plain", "", "a,b", "say \"hi\"", "two\nlines", " sp "] {
            push_field(&mut line, f);
            line.push('|');
        }
        assert_eq!(
            line,
            "plain|\"\"|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"| sp |"
        );
    }
}
