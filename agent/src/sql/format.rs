//! File formats of an extract: the writer of one file per format, over a plain or gzip
//! stream. Rotation, temporary names and renames live in `sink.rs`.

pub mod csv;
pub mod jsonl;
pub mod parquet;

use std::{
    fs::File,
    io::{self, BufWriter, Write},
};

use flate2::{write::GzEncoder, Compression as GzLevel};

use super::value::{Column, Value};

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    #[error("column {column}: {message}")]
    Value { column: String, message: String },
}

/// The format and compression a task asked for, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv { gzip: bool },
    Jsonl { gzip: bool },
    Parquet(ParquetCompression),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetCompression {
    Zstd,
    Snappy,
    None,
}

impl Format {
    /// Checks `format` and `compression` of an sql task; the message names the bad value.
    pub fn parse(format: &str, compression: &str) -> Result<Format, String> {
        let compression = compression.trim().to_ascii_lowercase();
        let format = format.trim().to_ascii_lowercase();
        let gzip = |what: &str| match compression.as_str() {
            "" | "none" => Ok(false),
            "gzip" => Ok(true),
            other => Err(format!(
                "compression {other:?} is not available for {what}; use \"gzip\" or none"
            )),
        };
        match format.as_str() {
            "" | "csv" => Ok(Format::Csv { gzip: gzip("csv")? }),
            "jsonl" => Ok(Format::Jsonl {
                gzip: gzip("jsonl")?,
            }),
            "parquet" => Ok(Format::Parquet(match compression.as_str() {
                "" | "zstd" => ParquetCompression::Zstd,
                "snappy" => ParquetCompression::Snappy,
                "none" => ParquetCompression::None,
                other => {
                    return Err(format!(
                        "compression {other:?} is not available for parquet; use \"zstd\", \"snappy\" or \"none\""
                    ))
                }
            })),
            other => Err(format!(
                "format {other:?} is not known; use \"csv\", \"jsonl\" or \"parquet\""
            )),
        }
    }

    /// The file name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv { gzip: false } => "csv",
            Format::Csv { gzip: true } => "csv.gz",
            Format::Jsonl { gzip: false } => "jsonl",
            Format::Jsonl { gzip: true } => "jsonl.gz",
            Format::Parquet(_) => "parquet",
        }
    }
}

/// Writes the rows of one file.
pub trait RowWriter: Send {
    fn write_row(&mut self, row: &[Value<'_>]) -> Result<(), WriteError>;
    /// Bytes already in CSV form (rows of a PostgreSQL `COPY … CSV`), for the csv writer.
    fn write_raw(&mut self, _bytes: &[u8]) -> Result<(), WriteError> {
        Err(WriteError::Io(io::Error::other(
            "raw rows can only be written to csv",
        )))
    }
    /// Flushes everything into the file.
    fn finish(self: Box<Self>) -> Result<(), WriteError>;
}

/// A buffered file stream, gzip-compressed or not.
pub enum Out {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

const BUFFER: usize = 256 << 10;

impl Out {
    pub fn new(file: File, gzip: bool) -> Out {
        let buffered = BufWriter::with_capacity(BUFFER, file);
        if gzip {
            // Level 6 is gzip's own default; 1 halves the CPU for a few % of size.
            Out::Gzip(GzEncoder::new(buffered, GzLevel::new(1)))
        } else {
            Out::Plain(buffered)
        }
    }

    /// Writes the gzip trailer and flushes. No fsync: the files are made durable by their
    /// upload, and an agent that crashes before it loses the attempt with them.
    pub fn finish(self) -> io::Result<()> {
        let buffered = match self {
            Out::Plain(w) => w,
            Out::Gzip(gz) => gz.finish()?,
        };
        buffered.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Plain(w) => w.write(buf),
            Out::Gzip(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Out::Plain(w) => w.write_all(buf),
            Out::Gzip(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Plain(w) => w.flush(),
            Out::Gzip(w) => w.flush(),
        }
    }
}

/// Opens the writer of `format` over `file`, header written.
pub fn open(
    format: Format,
    file: File,
    columns: &[Column],
) -> Result<Box<dyn RowWriter>, WriteError> {
    Ok(match format {
        Format::Csv { gzip } => Box::new(csv::CsvWriter::new(Out::new(file, gzip), columns)?),
        Format::Jsonl { gzip } => Box::new(jsonl::JsonlWriter::new(Out::new(file, gzip), columns)),
        Format::Parquet(compression) => {
            Box::new(parquet::ParquetWriter::new(file, columns, compression)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_compressions() {
        assert_eq!(Format::parse("", ""), Ok(Format::Csv { gzip: false }));
        assert_eq!(Format::parse("CSV", "gzip"), Ok(Format::Csv { gzip: true }));
        assert_eq!(
            Format::parse("parquet", ""),
            Ok(Format::Parquet(ParquetCompression::Zstd))
        );
        assert_eq!(
            Format::parse("parquet", "snappy"),
            Ok(Format::Parquet(ParquetCompression::Snappy))
        );
        assert!(Format::parse("parquet", "gzip")
            .unwrap_err()
            .contains("gzip"));
        assert!(Format::parse("csv", "zstd").unwrap_err().contains("zstd"));
        assert!(Format::parse("xml", "").unwrap_err().contains("xml"));
        assert_eq!(Format::Jsonl { gzip: true }.extension(), "jsonl.gz");
    }
}
