//! Where extracted rows go: files `<task>.<ext>` (or `<task>-00001.<ext>`, `-00002`… with
//! `max_rows_per_file`) in the attempt's working directory. Each file is written under a
//! hidden temporary name and renamed only once complete, so a failed extract never leaves a
//! file that looks finished; whatever is unfinished is removed when the sink is dropped.

use std::{
    fs::{self, File, OpenOptions},
    path::{Path, PathBuf},
};

use super::{
    format::{self, Format, RowWriter, WriteError},
    value::{Column, Value},
};

/// What the files of an extract hold, once finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    pub bytes: u64,
    /// Names relative to the working directory, in order.
    pub files: Vec<String>,
}

struct Open {
    writer: Box<dyn RowWriter>,
    temp: PathBuf,
    name: String,
    rows: u64,
}

pub struct Sink {
    dir: PathBuf,
    stem: String,
    format: Format,
    max_rows: u64,
    columns: Vec<Column>,
    current: Option<Open>,
    written: Written,
    /// Files already renamed into place; removed again if the extract fails after all.
    finished: Vec<PathBuf>,
    done: bool,
}

fn io_at(path: &Path, e: std::io::Error) -> WriteError {
    WriteError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

impl Sink {
    pub fn new(
        dir: &Path,
        stem: &str,
        format: Format,
        max_rows: u64,
        columns: Vec<Column>,
    ) -> Sink {
        Sink {
            dir: dir.to_owned(),
            stem: stem.to_owned(),
            format,
            max_rows,
            columns,
            current: None,
            written: Written::default(),
            finished: Vec::new(),
            done: false,
        }
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    fn next_name(&self) -> String {
        let ext = self.format.extension();
        if self.max_rows == 0 {
            format!("{}.{ext}", self.stem)
        } else {
            format!("{}-{:05}.{ext}", self.stem, self.written.files.len() + 1)
        }
    }

    /// The open file, after rotating when the current one is full.
    fn file(&mut self) -> Result<&mut Open, WriteError> {
        if self
            .current
            .as_ref()
            .is_some_and(|o| self.max_rows > 0 && o.rows >= self.max_rows)
        {
            self.close_current()?;
        }
        if self.current.is_none() {
            let name = self.next_name();
            let temp = self.dir.join(format!(".{name}.partial"));
            let file: File = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp)
                .map_err(|e| io_at(&temp, e))?;
            let writer = format::open(self.format, file, &self.columns)?;
            self.written.files.push(name.clone());
            self.current = Some(Open {
                writer,
                temp,
                name,
                rows: 0,
            });
        }
        Ok(self.current.as_mut().expect("opened above"))
    }

    fn close_current(&mut self) -> Result<(), WriteError> {
        let Some(open) = self.current.take() else {
            return Ok(());
        };
        let result = open.writer.finish();
        if let Err(e) = result {
            let _ = fs::remove_file(&open.temp);
            return Err(e);
        }
        let path = self.dir.join(&open.name);
        fs::rename(&open.temp, &path).map_err(|e| io_at(&path, e))?;
        let size = fs::metadata(&path).map_err(|e| io_at(&path, e))?.len();
        self.written.bytes += size;
        self.finished.push(path);
        Ok(())
    }

    pub fn write_row(&mut self, row: &[Value<'_>]) -> Result<(), WriteError> {
        let open = self.file()?;
        open.writer.write_row(row)?;
        open.rows += 1;
        self.written.rows += 1;
        Ok(())
    }

    /// Whole CSV rows already formatted (PostgreSQL `COPY … CSV`), `rows` of them.
    pub fn write_raw(&mut self, bytes: &[u8], rows: u64) -> Result<(), WriteError> {
        let open = self.file()?;
        open.writer.write_raw(bytes)?;
        open.rows += rows;
        self.written.rows += rows;
        Ok(())
    }

    /// Room left in the current file before it rotates; `u64::MAX` without a limit.
    pub fn room(&self) -> u64 {
        match (&self.current, self.max_rows) {
            (_, 0) => u64::MAX,
            (Some(open), max) if open.rows < max => max - open.rows,
            (Some(_), max) => max,
            (None, max) => max,
        }
    }

    /// Closes the last file (an extract of no rows still gets one, with its header or
    /// schema) and returns what was written.
    pub fn finish(mut self) -> Result<Written, WriteError> {
        if self.written.files.is_empty() {
            self.file()?;
        }
        self.close_current()?;
        self.done = true;
        Ok(std::mem::take(&mut self.written))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(open) = self.current.take() {
            let _ = fs::remove_file(&open.temp);
        }
        for path in &self.finished {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::sql::value::Kind;

    fn columns() -> Vec<Column> {
        vec![Column {
            name: "id".into(),
            source_type: "int8".into(),
            kind: Kind::Int64,
            nullable: false,
        }]
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn splits_into_numbered_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = Sink::new(dir.path(), "t", Format::Csv { gzip: false }, 2, columns());
        for i in 0..5 {
            sink.write_row(&[Value::Int(i)]).unwrap();
        }
        let w = sink.finish().unwrap();
        assert_eq!(w.rows, 5);
        assert_eq!(w.files, ["t-00001.csv", "t-00002.csv", "t-00003.csv"]);
        assert_eq!(listing(dir.path()), w.files);
        assert_eq!(
            fs::read_to_string(dir.path().join("t-00003.csv")).unwrap(),
            "id\n4\n"
        );
        let total: u64 = w
            .files
            .iter()
            .map(|f| fs::metadata(dir.path().join(f)).unwrap().len())
            .sum();
        assert_eq!(w.bytes, total);
    }

    #[test]
    fn empty_extract_gets_one_file_and_failure_leaves_none() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::new(dir.path(), "t", Format::Jsonl { gzip: false }, 0, columns());
        let w = sink.finish().unwrap();
        assert_eq!(w.files, ["t.jsonl"]);
        assert_eq!(w.rows, 0);

        let dir = tempfile::tempdir().unwrap();
        let mut sink = Sink::new(dir.path(), "t", Format::Csv { gzip: true }, 1, columns());
        sink.write_row(&[Value::Int(1)]).unwrap();
        sink.write_row(&[Value::Int(2)]).unwrap();
        assert_eq!(
            listing(dir.path()),
            ["", ".t-00002.csv.gz.partial", "t-00001.csv.gz"][1..]
        );
        // A failure after some files were complete: nothing of the extract stays.
        let err = sink.write_row(&[Value::Text(Cow::Borrowed("x"))]);
        assert!(err.is_ok(), "csv takes any value");
        drop(sink);
        assert!(listing(dir.path()).is_empty());
    }
}
