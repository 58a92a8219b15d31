//! Reading what an extract wrote: the files under a directory, csv (RFC 4180), jsonl, gzip
//! and Parquet (with the parquet crate's own reader), for the SQL extraction tests.

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Path, PathBuf},
};

use ferry_tests::results_fixture::files_under;
use serde_json::Value;

/// Every file under `dir` by file name.
pub fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .map(|rel| {
            let path = dir.join(&rel);
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

/// RFC 4180 records (quoted fields may hold `,`, `""` and line breaks); `None` is an empty
/// unquoted field (NULL), `Some("")` a quoted empty one.
pub fn parse_csv(text: &str) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                in_quotes = true;
                quoted = true;
            }
            ',' | '\n' => {
                let f = std::mem::take(&mut field);
                row.push(if f.is_empty() && !quoted {
                    None
                } else {
                    Some(f)
                });
                quoted = false;
                if c == '\n' {
                    rows.push(std::mem::take(&mut row));
                }
            }
            _ => field.push(c),
        }
    }
    assert!(
        row.is_empty() && field.is_empty(),
        "csv ends mid-record: {text:?}"
    );
    rows
}

pub fn jsonl(bytes: &[u8]) -> Vec<Value> {
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad json line {l:?}: {e}")))
        .collect()
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// A Parquet file's columns (name, physical type, logical type) and rows as text.
/// Columns as (name, physical type, logical type) and rows as text.
pub type ParquetContents = (Vec<(String, String, String)>, Vec<Vec<String>>);

pub fn parquet_read(bytes: &[u8]) -> ParquetContents {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr();
    let columns = schema
        .columns()
        .iter()
        .map(|c| {
            (
                c.name().to_owned(),
                format!("{:?}", c.physical_type()),
                format!("{:?}", c.logical_type()),
            )
        })
        .collect();
    let rows = reader
        .get_row_iter(None)
        .unwrap()
        .map(|r| {
            r.unwrap()
                .get_column_iter()
                .map(|(_, f)| f.to_string())
                .collect()
        })
        .collect();
    (columns, rows)
}

pub fn read_tree_names(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}
