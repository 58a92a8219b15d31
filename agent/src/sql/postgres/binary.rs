//! Decoding of PostgreSQL's binary COPY stream (`COPY … TO STDOUT WITH (FORMAT binary)`):
//! the header, then tuples of length-prefixed fields in each type's binary send format.

use std::borrow::Cow;

use crate::sql::value::{Kind, Value};

/// How one column's binary value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    /// A `numeric(p,s)` read straight into its unscaled integer at scale `s`.
    NumericScaled(u8),
    Text,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    Jsonb,
}

/// Days and microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

/// A `numeric` in its plain text form (`-12.50`, `NaN`, `Infinity`).
pub fn numeric_text(b: &[u8]) -> Result<String, String> {
    if b.len() < 8 {
        return Err("short numeric value".into());
    }
    let ndigits = usize::try_from(be_i16(b)).map_err(|_| "bad numeric digit count")?;
    let weight = i32::from(be_i16(&b[2..]));
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = i32::from(be_i16(&b[6..]));
    if b.len() < 8 + 2 * ndigits {
        return Err("short numeric value".into());
    }
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digit = |i: i32| -> i16 {
        if i < 0 || i as usize >= ndigits {
            0
        } else {
            be_i16(&b[8 + 2 * i as usize..])
        }
    };
    let mut out = String::with_capacity(16);
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            let d = digit(i);
            if i == 0 {
                out.push_str(&d.to_string());
            } else {
                out.push_str(&format!("{d:04}"));
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut written = 0;
        let mut i = weight + 1;
        while written < dscale {
            let group = format!("{:04}", digit(i));
            for c in group.chars() {
                if written < dscale {
                    out.push(c);
                    written += 1;
                }
            }
            i += 1;
        }
    }
    Ok(out)
}

/// A `numeric` as its unscaled integer at `scale`; `None` for NaN, infinities, values that do
/// not fit, or more decimals than `scale` (the text path then names the problem).
pub fn numeric_scaled(b: &[u8], scale: u8) -> Option<i128> {
    if b.len() < 8 {
        return None;
    }
    let ndigits = usize::try_from(be_i16(b)).ok()?;
    let weight = i32::from(be_i16(&b[2..]));
    let sign = u16::from_be_bytes([b[4], b[5]]);
    if b.len() < 8 + 2 * ndigits || !(sign == 0 || sign == 0x4000) {
        return None;
    }
    let mut d: i128 = 0;
    for i in 0..ndigits {
        d = d
            .checked_mul(10_000)?
            .checked_add(i128::from(be_i16(&b[8 + 2 * i..])))?;
    }
    // d × 10^(4 × (weight − ndigits + 1)) is the value; × 10^scale is the unscaled integer.
    let exp = 4 * (weight - ndigits as i32 + 1) + i32::from(scale);
    let value = if exp >= 0 {
        d.checked_mul(10i128.checked_pow(u32::try_from(exp).ok()?)?)?
    } else {
        let div = 10i128.checked_pow(u32::try_from(-exp).ok()?)?;
        if d % div != 0 {
            return None;
        }
        d / div
    };
    Some(if sign == 0x4000 { -value } else { value })
}

fn time_value(micros: i64, make: fn(i64) -> Value<'static>) -> Value<'static> {
    match micros {
        i64::MAX => Value::Infinity(true),
        i64::MIN => Value::Infinity(false),
        m => make(m + PG_EPOCH_MICROS),
    }
}

impl Decode {
    /// The file type of a column decoded this way; `numeric` gets its own (see `postgres.rs`).
    pub fn kind(self) -> Kind {
        match self {
            Decode::Bool => Kind::Bool,
            Decode::Int2 | Decode::Int4 => Kind::Int32,
            Decode::Int8 | Decode::Oid => Kind::Int64,
            Decode::Float4 => Kind::Float,
            Decode::Float8 => Kind::Double,
            Decode::Numeric | Decode::Text => Kind::Text,
            Decode::NumericScaled(scale) => Kind::Decimal {
                precision: 38,
                scale,
            },
            Decode::Bytea => Kind::Bytes,
            Decode::Date => Kind::Date,
            Decode::Time => Kind::Time,
            Decode::Timestamp => Kind::Timestamp,
            Decode::TimestampTz => Kind::TimestampTz,
            Decode::Uuid => Kind::Uuid,
            Decode::Json | Decode::Jsonb => Kind::Json,
        }
    }

    /// One field's value.
    pub fn value<'a>(self, b: &'a [u8]) -> Result<Value<'a>, String> {
        let need = |n: usize| {
            if b.len() == n {
                Ok(())
            } else {
                Err(format!("{self:?} value of {} bytes", b.len()))
            }
        };
        let text = |b: &'a [u8]| {
            std::str::from_utf8(b)
                .map(Cow::Borrowed)
                .map_err(|e| format!("text is not UTF-8: {e}"))
        };
        Ok(match self {
            Decode::Bool => {
                need(1)?;
                Value::Bool(b[0] != 0)
            }
            Decode::Int2 => {
                need(2)?;
                Value::Int(i64::from(be_i16(b)))
            }
            Decode::Int4 => {
                need(4)?;
                Value::Int(i64::from(be_i32(b)))
            }
            Decode::Oid => {
                need(4)?;
                Value::Int(i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
            }
            Decode::Int8 => {
                need(8)?;
                Value::Int(be_i64(b))
            }
            Decode::Float4 => {
                need(4)?;
                Value::Float(f32::from_bits(be_i32(b) as u32))
            }
            Decode::Float8 => {
                need(8)?;
                Value::Double(f64::from_bits(be_i64(b) as u64))
            }
            Decode::Numeric => Value::Decimal(Cow::Owned(numeric_text(b)?)),
            Decode::NumericScaled(scale) => match numeric_scaled(b, scale) {
                Some(unscaled) => Value::Scaled { unscaled, scale },
                None => Value::Decimal(Cow::Owned(numeric_text(b)?)),
            },
            Decode::Text => Value::Text(text(b)?),
            Decode::Json => Value::Json(text(b)?),
            Decode::Jsonb => match b.split_first() {
                Some((1, rest)) => Value::Json(text(rest)?),
                _ => return Err("unknown jsonb version".into()),
            },
            Decode::Bytea => Value::Bytes(b),
            Decode::Date => {
                need(4)?;
                match be_i32(b) {
                    i32::MAX => Value::Infinity(true),
                    i32::MIN => Value::Infinity(false),
                    d => Value::Date(d + PG_EPOCH_DAYS),
                }
            }
            Decode::Time => {
                need(8)?;
                Value::Time(be_i64(b))
            }
            Decode::Timestamp => {
                need(8)?;
                time_value(be_i64(b), Value::Timestamp)
            }
            Decode::TimestampTz => {
                need(8)?;
                time_value(be_i64(b), Value::TimestampTz)
            }
            Decode::Uuid => {
                need(16)?;
                Value::Uuid(b.try_into().expect("16 bytes"))
            }
        })
    }
}

/// Where the parser is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Tuples,
    Done,
}

/// Parses the stream chunk by chunk; a tuple split across chunks is carried over.
pub struct Parser {
    decoders: Vec<Decode>,
    state: State,
    carry: Vec<u8>,
}

/// What one complete tuple starting at `b` spans: `Ok(None)` when more bytes are needed.
fn tuple_len(b: &[u8]) -> Result<Option<usize>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    let fields = be_i16(b);
    if fields == -1 {
        return Ok(Some(2));
    }
    let mut at = 2;
    for _ in 0..fields {
        if b.len() < at + 4 {
            return Ok(None);
        }
        let len = be_i32(&b[at..]);
        at += 4;
        if len > 0 {
            at += len as usize;
        } else if len < -1 {
            return Err(format!("bad field length {len}"));
        }
    }
    Ok((b.len() >= at).then_some(at))
}

impl Parser {
    pub fn new(decoders: Vec<Decode>) -> Parser {
        Parser {
            decoders,
            state: State::Header,
            carry: Vec::new(),
        }
    }

    /// Whether the trailer has been read.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds a chunk; `row` is called with every complete tuple.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        row: &mut dyn FnMut(&[Value<'_>]) -> Result<(), crate::sql::format::WriteError>,
    ) -> Result<(), crate::sql::SqlError> {
        if self.carry.is_empty() {
            let used = self.parse(chunk, row)?;
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.carry);
            buf.extend_from_slice(chunk);
            let used = self.parse(&buf, row)?;
            buf.drain(..used);
            self.carry = buf;
        }
        Ok(())
    }

    fn parse(
        &mut self,
        b: &[u8],
        row: &mut dyn FnMut(&[Value<'_>]) -> Result<(), crate::sql::format::WriteError>,
    ) -> Result<usize, crate::sql::SqlError> {
        let bad = |m: String| crate::sql::SqlError::Internal(format!("binary COPY stream: {m}"));
        let mut at = 0;
        if self.state == State::Header {
            if b.len() < SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if &b[..SIGNATURE.len()] != SIGNATURE {
                return Err(bad("bad signature".into()));
            }
            let ext = be_i32(&b[SIGNATURE.len() + 4..]) as usize;
            if b.len() < SIGNATURE.len() + 8 + ext {
                return Ok(0);
            }
            at = SIGNATURE.len() + 8 + ext;
            self.state = State::Tuples;
        }
        let mut values: Vec<Value<'_>> = Vec::with_capacity(self.decoders.len());
        while self.state == State::Tuples {
            let Some(len) = tuple_len(&b[at..]).map_err(bad)? else {
                break;
            };
            let t = &b[at..at + len];
            at += len;
            let fields = be_i16(t);
            if fields == -1 {
                self.state = State::Done;
                break;
            }
            if fields as usize != self.decoders.len() {
                return Err(bad(format!(
                    "tuple of {fields} fields, expected {}",
                    self.decoders.len()
                )));
            }
            values.clear();
            let mut p = 2;
            for d in &self.decoders {
                let len = be_i32(&t[p..]);
                p += 4;
                if len < 0 {
                    values.push(Value::Null);
                } else {
                    let field = &t[p..p + len as usize];
                    p += len as usize;
                    values.push(d.value(field).map_err(bad)?);
                }
            }
            row(&values)?;
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&ndigits.to_be_bytes());
        b.extend_from_slice(&weight.to_be_bytes());
        b.extend_from_slice(&sign.to_be_bytes());
        b.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics() {
        // 12345.678 = [1, 2345, 6780] weight 1, dscale 3
        assert_eq!(
            numeric_text(&numeric(3, 1, 0, 3, &[1, 2345, 6780])).unwrap(),
            "12345.678"
        );
        // -0.0001 = [1] weight -1, dscale 4
        assert_eq!(
            numeric_text(&numeric(1, -1, 0x4000, 4, &[1])).unwrap(),
            "-0.0001"
        );
        // 0.00000001 = [1] weight -2 dscale 8
        assert_eq!(
            numeric_text(&numeric(1, -2, 0, 8, &[100])).unwrap(),
            "0.00000100"
        );
        // 10000 = [1] weight 1, dscale 0 (trailing zero groups omitted)
        assert_eq!(numeric_text(&numeric(1, 1, 0, 0, &[1])).unwrap(), "10000");
        assert_eq!(numeric_text(&numeric(0, 0, 0, 2, &[])).unwrap(), "0.00");
        assert_eq!(numeric_text(&numeric(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
        assert!(numeric_text(&[0, 5]).is_err());
        let n = numeric(3, 1, 0, 3, &[1, 2345, 6780]);
        assert_eq!(numeric_scaled(&n, 3), Some(12_345_678));
        assert_eq!(numeric_scaled(&n, 5), Some(1_234_567_800));
        assert_eq!(numeric_scaled(&n, 2), None, "12345.678 has 3 decimals");
        assert_eq!(
            numeric_scaled(&numeric(1, -1, 0x4000, 4, &[1]), 4),
            Some(-1)
        );
        assert_eq!(
            numeric_scaled(&numeric(1, 1, 0, 0, &[1]), 2),
            Some(1_000_000)
        );
        assert_eq!(numeric_scaled(&numeric(0, 0, 0, 2, &[]), 2), Some(0));
        assert_eq!(numeric_scaled(&numeric(0, 0, 0xC000, 0, &[]), 2), None);
    }

    #[test]
    fn stream_split_anywhere() {
        let mut s = SIGNATURE.to_vec();
        s.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        for i in 0..3i64 {
            s.extend_from_slice(&2i16.to_be_bytes());
            s.extend_from_slice(&8i32.to_be_bytes());
            s.extend_from_slice(&i.to_be_bytes());
            if i == 1 {
                s.extend_from_slice(&(-1i32).to_be_bytes());
            } else {
                s.extend_from_slice(&2i32.to_be_bytes());
                s.extend_from_slice(b"ab");
            }
        }
        s.extend_from_slice(&(-1i16).to_be_bytes());
        for split in 0..s.len() {
            let mut p = Parser::new(vec![Decode::Int8, Decode::Text]);
            let mut rows = Vec::new();
            let mut take = |r: &[Value<'_>]| {
                rows.push(format!("{r:?}"));
                Ok(())
            };
            p.feed(&s[..split], &mut take).unwrap();
            p.feed(&s[split..], &mut take).unwrap();
            assert!(p.done());
            assert_eq!(rows.len(), 3);
            assert_eq!(rows[1], "[Int(1), Null]");
        }
    }
}
