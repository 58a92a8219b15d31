//! Parquet through the crate's low-level column writers: one optional column per result
//! column with its physical and logical type, values buffered per column for one row group
//! (bounded in rows and bytes, so memory does not grow with the extract) and then written.

use std::{fs::File, sync::Arc};

use bytes::Bytes;
use parquet::{
    basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel},
    data_type::{
        BoolType, ByteArray, ByteArrayType, DoubleType, FixedLenByteArray, FixedLenByteArrayType,
        FloatType, Int32Type, Int64Type,
    },
    file::{properties::WriterProperties, writer::SerializedFileWriter},
    format::MicroSeconds,
    schema::types::Type,
};

use super::{ParquetCompression, RowWriter, WriteError};
use crate::sql::value::{unscaled, Column, Kind, Value};

/// Rows per row group at most.
const GROUP_ROWS: usize = 128 * 1024;
/// Dictionary page size past which a column chunk is written plain.
const DICTIONARY_BYTES: usize = 64 << 10;
/// Buffered bytes (all columns) that close a row group early: wide text columns.
const GROUP_BYTES: usize = 64 << 20;

/// One column's values of the current row group.
enum Buf {
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Variable-length values, concatenated, with the end offset of each.
    Var {
        data: Vec<u8>,
        ends: Vec<usize>,
    },
    /// 16-byte values (uuid, decimals of more than 18 digits).
    Fixed16(Vec<u8>),
}

struct Col {
    name: String,
    kind: Kind,
    buf: Buf,
    defs: Vec<i16>,
    text: String,
}

pub struct ParquetWriter {
    writer: SerializedFileWriter<File>,
    cols: Vec<Col>,
    rows: usize,
}

fn field(column: &Column) -> Result<Type, WriteError> {
    let micros = || TimeUnit::MICROS(MicroSeconds {});
    let (physical, logical, length) = match column.kind {
        Kind::Bool => (Physical::BOOLEAN, None, None),
        Kind::Int32 => (Physical::INT32, None, None),
        Kind::Int64 => (Physical::INT64, None, None),
        Kind::Float => (Physical::FLOAT, None, None),
        Kind::Double => (Physical::DOUBLE, None, None),
        Kind::Decimal { precision, scale } => {
            let logical = Some(LogicalType::Decimal {
                scale: i32::from(scale),
                precision: i32::from(precision),
            });
            match precision {
                0..=9 => (Physical::INT32, logical, None),
                10..=18 => (Physical::INT64, logical, None),
                _ => (Physical::FIXED_LEN_BYTE_ARRAY, logical, Some(16)),
            }
        }
        Kind::Text => (Physical::BYTE_ARRAY, Some(LogicalType::String), None),
        Kind::Json => (Physical::BYTE_ARRAY, Some(LogicalType::Json), None),
        Kind::Bytes => (Physical::BYTE_ARRAY, None, None),
        Kind::Date => (Physical::INT32, Some(LogicalType::Date), None),
        Kind::Time => (
            Physical::INT64,
            Some(LogicalType::Time {
                is_adjusted_to_u_t_c: false,
                unit: micros(),
            }),
            None,
        ),
        Kind::Timestamp | Kind::TimestampTz => (
            Physical::INT64,
            Some(LogicalType::Timestamp {
                is_adjusted_to_u_t_c: column.kind == Kind::TimestampTz,
                unit: micros(),
            }),
            None,
        ),
        Kind::Uuid => (
            Physical::FIXED_LEN_BYTE_ARRAY,
            Some(LogicalType::Uuid),
            Some(16),
        ),
    };
    let mut builder = Type::primitive_type_builder(&column.name, physical)
        .with_repetition(Repetition::OPTIONAL)
        .with_logical_type(logical);
    if let Some(length) = length {
        builder = builder.with_length(length);
    }
    if let Kind::Decimal { precision, scale } = column.kind {
        builder = builder
            .with_precision(i32::from(precision))
            .with_scale(i32::from(scale));
    }
    Ok(builder.build()?)
}

fn buf_for(kind: Kind) -> Buf {
    match kind {
        Kind::Bool => Buf::Bool(Vec::new()),
        Kind::Int32 | Kind::Date => Buf::I32(Vec::new()),
        Kind::Int64 | Kind::Time | Kind::Timestamp | Kind::TimestampTz => Buf::I64(Vec::new()),
        Kind::Float => Buf::F32(Vec::new()),
        Kind::Double => Buf::F64(Vec::new()),
        Kind::Decimal { precision, .. } => match precision {
            0..=9 => Buf::I32(Vec::new()),
            10..=18 => Buf::I64(Vec::new()),
            _ => Buf::Fixed16(Vec::new()),
        },
        Kind::Text | Kind::Json | Kind::Bytes => Buf::Var {
            data: Vec::new(),
            ends: Vec::new(),
        },
        Kind::Uuid => Buf::Fixed16(Vec::new()),
    }
}

impl ParquetWriter {
    pub fn new(
        file: File,
        columns: &[Column],
        compression: ParquetCompression,
    ) -> Result<ParquetWriter, WriteError> {
        let fields = columns
            .iter()
            .map(|c| field(c).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let schema = Type::group_type_builder("schema")
            .with_fields(fields)
            .build()?;
        let props = WriterProperties::builder()
            .set_compression(match compression {
                ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
                ParquetCompression::Snappy => Compression::SNAPPY,
                ParquetCompression::None => Compression::UNCOMPRESSED,
            })
            .set_created_by(format!("ferry-agent {}", env!("CARGO_PKG_VERSION")))
            // A column whose dictionary passes this falls back to plain encoding: columns of
            // unique values (ids, hashes) stop paying for hashing early, while low-cardinality
            // ones keep their dictionary.
            .set_dictionary_page_size_limit(DICTIONARY_BYTES)
            .build();
        let writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props))?;
        let cols = columns
            .iter()
            .map(|c| Col {
                name: c.name.clone(),
                kind: c.kind,
                buf: buf_for(c.kind),
                defs: Vec::with_capacity(GROUP_ROWS),
                text: String::new(),
            })
            .collect();
        Ok(ParquetWriter {
            writer,
            cols,
            rows: 0,
        })
    }

    fn buffered_bytes(&self) -> usize {
        self.cols
            .iter()
            .map(|c| match &c.buf {
                Buf::Var { data, ends } => data.len() + ends.len() * 8,
                Buf::Fixed16(v) => v.len(),
                _ => self.rows * 8,
            })
            .sum()
    }

    fn flush_group(&mut self) -> Result<(), WriteError> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        let mut cols = self.cols.iter_mut();
        while let Some(mut writer) = group.next_column()? {
            let col = cols.next().ok_or_else(|| {
                WriteError::Io(std::io::Error::other("parquet schema has more columns"))
            })?;
            let defs = Some(&col.defs[..]);
            match &mut col.buf {
                Buf::Bool(v) => {
                    writer.typed::<BoolType>().write_batch(v, defs, None)?;
                    v.clear();
                }
                Buf::I32(v) => {
                    writer.typed::<Int32Type>().write_batch(v, defs, None)?;
                    v.clear();
                }
                Buf::I64(v) => {
                    writer.typed::<Int64Type>().write_batch(v, defs, None)?;
                    v.clear();
                }
                Buf::F32(v) => {
                    writer.typed::<FloatType>().write_batch(v, defs, None)?;
                    v.clear();
                }
                Buf::F64(v) => {
                    writer.typed::<DoubleType>().write_batch(v, defs, None)?;
                    v.clear();
                }
                Buf::Var { data, ends } => {
                    let all = Bytes::from(std::mem::take(data));
                    let mut start = 0;
                    let values: Vec<ByteArray> = ends
                        .iter()
                        .map(|&end| {
                            let v = ByteArray::from(all.slice(start..end));
                            start = end;
                            v
                        })
                        .collect();
                    writer
                        .typed::<ByteArrayType>()
                        .write_batch(&values, defs, None)?;
                    ends.clear();
                }
                Buf::Fixed16(v) => {
                    let all = Bytes::from(std::mem::take(v));
                    let values: Vec<FixedLenByteArray> = (0..all.len() / 16)
                        .map(|i| {
                            FixedLenByteArray::from(ByteArray::from(all.slice(i * 16..i * 16 + 16)))
                        })
                        .collect();
                    writer
                        .typed::<FixedLenByteArrayType>()
                        .write_batch(&values, defs, None)?;
                }
            }
            col.defs.clear();
            writer.close()?;
        }
        group.close()?;
        self.rows = 0;
        Ok(())
    }
}

fn mismatch(col: &Col, value: &Value<'_>) -> WriteError {
    WriteError::Value {
        column: col.name.clone(),
        message: format!(
            "value {value:?} cannot be written as parquet {}",
            col.kind.file_type()
        ),
    }
}

impl Col {
    fn push(&mut self, value: &Value<'_>) -> Result<(), WriteError> {
        if value.is_null() {
            self.defs.push(0);
            return Ok(());
        }
        self.defs.push(1);
        let kind = self.kind;
        match (&mut self.buf, kind, value) {
            (Buf::Bool(v), _, Value::Bool(b)) => v.push(*b),
            (Buf::Bool(v), _, Value::Int(i)) => v.push(*i != 0),
            (Buf::I32(v), Kind::Int32, Value::Int(i)) => match i32::try_from(*i) {
                Ok(i) => v.push(i),
                Err(_) => return Err(mismatch(self, value)),
            },
            (Buf::I32(v), Kind::Date, Value::Date(d)) => v.push(*d),
            (Buf::I64(v), Kind::Int64, Value::Int(i)) => v.push(*i),
            (Buf::I64(v), Kind::Int64, Value::UInt(u)) => match i64::try_from(*u) {
                Ok(i) => v.push(i),
                Err(_) => return Err(mismatch(self, value)),
            },
            (Buf::I64(v), Kind::Time, Value::Time(t))
            | (Buf::I64(v), Kind::Timestamp, Value::Timestamp(t))
            | (Buf::I64(v), Kind::TimestampTz, Value::TimestampTz(t)) => v.push(*t),
            (Buf::F32(v), _, Value::Float(f)) => v.push(*f),
            (Buf::F64(v), _, Value::Double(f)) => v.push(*f),
            (Buf::F64(v), _, Value::Float(f)) => v.push(f64::from(*f)),
            (Buf::F64(v), _, Value::Int(i)) => v.push(*i as f64),
            (buf, Kind::Decimal { scale, .. }, Value::Scaled { unscaled, scale: s })
                if *s == scale =>
            {
                match buf {
                    Buf::I32(v) => v.push(*unscaled as i32),
                    Buf::I64(v) => v.push(*unscaled as i64),
                    Buf::Fixed16(v) => v.extend_from_slice(&unscaled.to_be_bytes()),
                    _ => return Err(mismatch(self, value)),
                }
            }
            (buf, Kind::Decimal { scale, .. }, _) => {
                let text: &str = match value {
                    Value::Decimal(s) | Value::Text(s) => s,
                    Value::Int(_) | Value::UInt(_) | Value::Scaled { .. } => {
                        self.text.clear();
                        value.write_text(&mut self.text);
                        &self.text
                    }
                    _ => return Err(mismatch(self, value)),
                };
                let Some(n) = unscaled(text, scale) else {
                    return Err(mismatch(self, value));
                };
                match buf {
                    Buf::I32(v) => v.push(n as i32),
                    Buf::I64(v) => v.push(n as i64),
                    Buf::Fixed16(v) => v.extend_from_slice(&n.to_be_bytes()),
                    _ => return Err(mismatch(self, value)),
                }
            }
            (Buf::Fixed16(v), Kind::Uuid, Value::Uuid(u)) => v.extend_from_slice(u),
            (Buf::Var { data, ends }, Kind::Bytes, Value::Bytes(b)) => {
                data.extend_from_slice(b);
                ends.push(data.len());
            }
            (Buf::Var { data, ends }, _, Value::Text(s) | Value::Json(s) | Value::Decimal(s)) => {
                data.extend_from_slice(s.as_bytes());
                ends.push(data.len());
            }
            (Buf::Var { data, ends }, Kind::Text, other) if !matches!(other, Value::Bytes(_)) => {
                self.text.clear();
                other.write_text(&mut self.text);
                data.extend_from_slice(self.text.as_bytes());
                ends.push(data.len());
            }
            _ => return Err(mismatch(self, value)),
        }
        Ok(())
    }
}

impl RowWriter for ParquetWriter {
    fn write_row(&mut self, row: &[Value<'_>]) -> Result<(), WriteError> {
        for (col, value) in self.cols.iter_mut().zip(row) {
            if let Err(e) = col.push(value) {
                // Keep the columns aligned; the extract fails anyway.
                col.defs.pop();
                return Err(e);
            }
        }
        self.rows += 1;
        if self.rows >= GROUP_ROWS
            || (self.rows.is_multiple_of(1024) && self.buffered_bytes() >= GROUP_BYTES)
        {
            self.flush_group()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), WriteError> {
        self.flush_group()?;
        self.writer.into_inner()?;
        Ok(())
    }
}
