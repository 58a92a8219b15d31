//! Passes PostgreSQL's own `COPY … (FORMAT csv)` output through to the files, counting rows
//! with a quote-aware scan so that files split only between rows.

use crate::sql::{format::WriteError, sink::Sink};

/// Carries the quote state across chunks.
#[derive(Default)]
pub struct RowScanner {
    in_quotes: bool,
}

impl RowScanner {
    /// Index just past the `n`-th row end in `b` (or the last one found) and how many ends
    /// that covers.
    fn ends(&mut self, b: &[u8], n: u64) -> (usize, u64) {
        let mut found = 0;
        let mut past = 0;
        let mut at = 0;
        while found < n {
            if self.in_quotes {
                // Inside a quoted field only the closing quote matters.
                match memchr::memchr(b'"', &b[at..]) {
                    Some(i) => {
                        self.in_quotes = false;
                        at += i + 1;
                    }
                    None => break,
                }
            } else {
                match memchr::memchr2(b'"', b'\n', &b[at..]) {
                    Some(i) if b[at + i] == b'"' => {
                        self.in_quotes = true;
                        at += i + 1;
                    }
                    Some(i) => {
                        found += 1;
                        at += i + 1;
                        past = at;
                    }
                    None => break,
                }
            }
        }
        // Short of `n`: every byte was scanned and the quote state is the chunk end's.
        (past, found)
    }

    /// Writes a chunk into `sink`, rows counted, rotating files between rows.
    pub fn write(&mut self, sink: &mut Sink, chunk: &[u8]) -> Result<(), WriteError> {
        let mut at = 0;
        while at < chunk.len() {
            let room = sink.room();
            let rest = &chunk[at..];
            let (past, rows) = self.ends(rest, room);
            if rows == room && past < rest.len() {
                // The file is full mid-chunk: the scan stopped at the row end.
                sink.write_raw(&rest[..past], rows)?;
                at += past;
                continue;
            }
            sink.write_raw(rest, rows)?;
            break;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{
        format::Format,
        value::{Column, Kind},
    };

    #[test]
    fn splits_between_rows_even_with_quoted_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let cols = vec![Column {
            name: "v".into(),
            source_type: "text".into(),
            kind: Kind::Text,
            nullable: true,
        }];
        let mut sink = Sink::new(dir.path(), "t", Format::Csv { gzip: false }, 2, cols);
        let data = b"a\n\"b\nb\"\nc\nd\n\"e\"\n";
        let mut scan = RowScanner::default();
        // Chunks that cut rows, and a quote, in the middle.
        for piece in [&data[..3], &data[3..9], &data[9..]] {
            scan.write(&mut sink, piece).unwrap();
        }
        let w = sink.finish().unwrap();
        assert_eq!(w.rows, 5);
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(read("t-00001.csv"), "v\na\n\"b\nb\"\n");
        assert_eq!(read("t-00002.csv"), "v\nc\nd\n");
        assert_eq!(read("t-00003.csv"), "v\n\"e\"\n");
    }
}
