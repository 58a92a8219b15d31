//! The values that flow from a database cursor to a file, the column types they are written
//! as, and their text forms (csv and jsonl): one place, so every source prints alike.

use std::{borrow::Cow, fmt::Write as _};

use base64::Engine as _;

/// The type a column is written as; `file_type` in the extract's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int32,
    Int64,
    Float,
    Double,
    /// Exact decimal with known precision (≤ 38) and scale.
    Decimal {
        precision: u8,
        scale: u8,
    },
    Text,
    Bytes,
    /// JSON text: raw JSON in jsonl, a string elsewhere.
    Json,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
}

impl Kind {
    /// The name reported as `ExtractColumn.file_type`.
    pub fn file_type(self) -> String {
        match self {
            Kind::Bool => "bool".into(),
            Kind::Int32 => "int32".into(),
            Kind::Int64 => "int64".into(),
            Kind::Float => "float".into(),
            Kind::Double => "double".into(),
            Kind::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            Kind::Text => "string".into(),
            Kind::Bytes => "binary".into(),
            Kind::Json => "json".into(),
            Kind::Date => "date".into(),
            Kind::Time => "time[us]".into(),
            Kind::Timestamp => "timestamp[us]".into(),
            Kind::TimestampTz => "timestamp[us, UTC]".into(),
            Kind::Uuid => "uuid".into(),
        }
    }
}

/// One column of an extract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub source_type: String,
    pub kind: Kind,
    pub nullable: bool,
}

/// One value of a row, borrowed from the driver's buffer where it can be.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// Unsigned integers beyond `i64` (MySQL `BIGINT UNSIGNED`).
    UInt(u64),
    Float(f32),
    Double(f64),
    /// A decimal in plain text form (`-12.50`, `NaN`): exact.
    Decimal(Cow<'a, str>),
    /// A decimal as its unscaled integer: `unscaled × 10^-scale`.
    Scaled {
        unscaled: i128,
        scale: u8,
    },
    Text(Cow<'a, str>),
    Bytes(&'a [u8]),
    Json(Cow<'a, str>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since 1970-01-01 00:00, no time zone.
    Timestamp(i64),
    /// Microseconds since 1970-01-01 00:00 UTC.
    TimestampTz(i64),
    Uuid([u8; 16]),
    /// PostgreSQL's `infinity` / `-infinity` dates and timestamps.
    Infinity(bool),
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date (inverse of [`civil_from_days`]).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn write_date(out: &mut String, days: i64) {
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
    } else if y < 0 {
        // ISO 8601 expanded years; PostgreSQL itself prints "BC".
        let _ = write!(out, "-{:04}-{m:02}-{d:02}", -y);
    } else {
        let _ = write!(out, "+{y}-{m:02}-{d:02}");
    }
}

fn write_time(out: &mut String, micros: i64) {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if frac != 0 {
        let _ = write!(out, ".{frac:06}");
    }
}

fn write_timestamp(out: &mut String, micros: i64) {
    let days = micros.div_euclid(MICROS_PER_DAY);
    write_date(out, days);
    out.push('T');
    write_time(out, micros.rem_euclid(MICROS_PER_DAY));
}

/// Lowercase hyphenated form of a UUID.
pub fn write_uuid(out: &mut String, u: &[u8; 16]) {
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{b:02x}");
    }
}

/// `unscaled × 10^-scale` in plain notation with exactly `scale` decimals.
fn write_scaled(out: &mut String, unscaled: i128, scale: u8) {
    let digits = unscaled.unsigned_abs().to_string();
    if unscaled < 0 {
        out.push('-');
    }
    let scale = usize::from(scale);
    if scale == 0 {
        out.push_str(&digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(&digits);
    }
}

fn write_f64(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        // Rust prints the shortest text that reads back to the same value.
        let _ = write!(out, "{f}");
    }
}

impl Value<'_> {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Appends the text form (csv fields, jsonl strings); `Null` appends nothing.
    pub fn write_text(&self, out: &mut String) {
        match self {
            Value::Null => {}
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::UInt(u) => {
                let _ = write!(out, "{u}");
            }
            Value::Float(f) => {
                if f.is_finite() {
                    let _ = write!(out, "{f}");
                } else {
                    write_f64(out, f64::from(*f));
                }
            }
            Value::Double(f) => write_f64(out, *f),
            Value::Decimal(s) | Value::Text(s) | Value::Json(s) => out.push_str(s),
            Value::Scaled { unscaled, scale } => write_scaled(out, *unscaled, *scale),
            Value::Bytes(b) => base64::engine::general_purpose::STANDARD.encode_string(b, out),
            Value::Date(d) => write_date(out, i64::from(*d)),
            Value::Time(t) => write_time(out, *t),
            Value::Timestamp(t) => write_timestamp(out, *t),
            Value::TimestampTz(t) => {
                write_timestamp(out, *t);
                out.push('Z');
            }
            Value::Uuid(u) => write_uuid(out, u),
            Value::Infinity(positive) => {
                out.push_str(if *positive { "infinity" } else { "-infinity" })
            }
        }
    }

    /// Whether jsonl writes it bare (a JSON number, boolean or document) rather than quoted.
    pub fn json_bare(&self) -> bool {
        match self {
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::UInt(_) | Value::Json(_) => true,
            Value::Float(f) => f.is_finite(),
            Value::Double(f) => f.is_finite(),
            _ => false,
        }
    }
}

/// Parses a plain decimal text (`-12.5`, `3`, `.25`) into its unscaled integer at `scale`;
/// `None` when it is not a number or does not fit 38 digits at that scale.
pub fn unscaled(text: &str, scale: u8) -> Option<i128> {
    let text = text.trim();
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut value: i128 = 0;
    for b in int.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    let scale = usize::from(scale);
    for (i, b) in frac.bytes().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        if i >= scale {
            // More digits than the column's scale: only zeros may be dropped.
            if b != b'0' {
                return None;
            }
            continue;
        }
        value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    for _ in frac.len()..scale {
        value = value.checked_mul(10)?;
    }
    if value >= 10i128.pow(38) {
        return None;
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Value<'_>) -> String {
        let mut s = String::new();
        v.write_text(&mut s);
        s
    }

    #[test]
    fn dates_round_trip_through_civil() {
        for days in [-719_528, -1, 0, 1, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(10_957), (2000, 1, 1));
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    }

    #[test]
    fn text_forms() {
        assert_eq!(text(Value::Date(19_782)), "2024-02-29");
        assert_eq!(text(Value::Time(3_723_000_001)), "01:02:03.000001");
        assert_eq!(text(Value::Time(0)), "00:00:00");
        assert_eq!(
            text(Value::Timestamp(1_700_000_000_123_456)),
            "2023-11-14T22:13:20.123456"
        );
        assert_eq!(text(Value::TimestampTz(-1)), "1969-12-31T23:59:59.999999Z");
        assert_eq!(text(Value::Bytes(b"\x00\xffab")), "AP9hYg==");
        assert_eq!(text(Value::Double(0.1)), "0.1");
        assert_eq!(text(Value::Double(f64::NAN)), "NaN");
        assert_eq!(text(Value::Double(-f64::INFINITY)), "-Infinity");
        assert_eq!(text(Value::Float(1.5)), "1.5");
        assert_eq!(text(Value::Bool(true)), "true");
        assert_eq!(text(Value::UInt(u64::MAX)), "18446744073709551615");
        let mut u = [0u8; 16];
        u[0] = 0xab;
        u[15] = 1;
        assert_eq!(text(Value::Uuid(u)), "ab000000-0000-0000-0000-000000000001");
        assert_eq!(text(Value::Null), "");
        assert_eq!(text(Value::Infinity(false)), "-infinity");
        let scaled = |unscaled, scale| text(Value::Scaled { unscaled, scale });
        assert_eq!(scaled(12345, 2), "123.45");
        assert_eq!(scaled(-5, 3), "-0.005");
        assert_eq!(scaled(7, 0), "7");
        assert_eq!(scaled(0, 2), "0.00");
        assert_eq!(scaled(-120, 2), "-1.20");
    }

    #[test]
    fn decimals_scale_exactly() {
        assert_eq!(unscaled("12.5", 2), Some(1250));
        assert_eq!(unscaled("-0.01", 2), Some(-1));
        assert_eq!(unscaled("7", 3), Some(7000));
        assert_eq!(unscaled("1.230", 2), Some(123));
        assert_eq!(unscaled("1.234", 2), None);
        assert_eq!(unscaled("NaN", 2), None);
        assert_eq!(unscaled("", 0), None);
        assert_eq!(
            unscaled("99999999999999999999999999999999999999", 0),
            Some(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        assert_eq!(unscaled("999999999999999999999999999999999999999", 0), None);
    }
}
