//! A watermark set by hand must be of the stored one's type: the shape of a watermark's text
//! (the source's own text form of the column: an integer, a decimal, a date, a timestamp, or
//! other text), and the check both the CLI and the controller apply before storing one.

/// What a watermark's text looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Integer,
    Decimal,
    Date,
    Timestamp,
    Text,
}

impl Shape {
    /// The shape of `value`.
    pub fn of(value: &str) -> Shape {
        let v = value.trim();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let unsigned = v.strip_prefix('-').unwrap_or(v);
        if digits(unsigned) {
            return Shape::Integer;
        }
        if let Some((whole, frac)) = unsigned.split_once('.') {
            if digits(whole) && digits(frac) {
                return Shape::Decimal;
            }
        }
        if is_date(v) {
            return Shape::Date;
        }
        let date = v.get(..10).is_some_and(is_date);
        let sep = matches!(v.get(10..11), Some(" " | "T"));
        if date && sep && v.get(11..).is_some_and(is_time) {
            return Shape::Timestamp;
        }
        Shape::Text
    }

    fn described(self) -> &'static str {
        match self {
            Shape::Integer => "an integer such as 1042",
            Shape::Decimal => "a number such as 10.5",
            Shape::Date => "a date such as 2026-12-07",
            Shape::Timestamp => "a timestamp such as 2026-12-07 10:00:00+00",
            Shape::Text => "text",
        }
    }
}

/// `YYYY-MM-DD` with a month and day in range.
fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| v.get(r).and_then(|s| s.parse::<u32>().ok());
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && num(5..7).is_some_and(|m| (1..=12).contains(&m))
        && num(8..10).is_some_and(|d| (1..=31).contains(&d))
}

/// `HH:MM:SS`, then anything (a fraction, a zone).
fn is_time(v: &str) -> bool {
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| v.get(r).and_then(|s| s.parse::<u32>().ok());
    b.len() >= 8
        && b[2] == b':'
        && b[5] == b':'
        && num(0..2).is_some_and(|h| h < 24)
        && num(3..5).is_some_and(|m| m < 60)
        && num(6..8).is_some_and(|s| s < 61)
}

/// Why `new` cannot replace the stored watermark `stored` of `column`, if it cannot: it must
/// have the stored one's shape (an integer may replace a decimal, a date a timestamp).
pub fn replacement_problem(column: &str, stored: &str, new: &str) -> Option<String> {
    let (want, got) = (Shape::of(stored), Shape::of(new));
    let fits = match want {
        Shape::Text => true,
        Shape::Decimal => matches!(got, Shape::Integer | Shape::Decimal),
        Shape::Timestamp => matches!(got, Shape::Date | Shape::Timestamp),
        _ => got == want,
    };
    (!fits).then(|| {
        format!(
            "watermark {new:?} does not look like the stored one of column {column} \
             ({stored:?}): give {}",
            want.described()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_has_the_stored_shape() {
        assert_eq!(Shape::of("1042"), Shape::Integer);
        assert_eq!(Shape::of("-3.25"), Shape::Decimal);
        assert_eq!(Shape::of("2026-12-07"), Shape::Date);
        assert_eq!(Shape::of("2026-12-07 10:00:00.5+00"), Shape::Timestamp);
        assert_eq!(Shape::of("2026-12-07T10:00:00Z"), Shape::Timestamp);
        assert_eq!(Shape::of("2026-13-07"), Shape::Text);
        assert_eq!(Shape::of("abc"), Shape::Text);
        assert_eq!(Shape::of("2026-12-07é10:00:00"), Shape::Text);
        assert!(replacement_problem("id", "1042", "2000").is_none());
        assert!(replacement_problem("v", "10.5", "11").is_none());
        assert!(replacement_problem("at", "2026-12-07 10:00:00+00", "2026-12-08").is_none());
        assert!(replacement_problem("name", "abc", "2026-12-08").is_none());
        let e = replacement_problem("updated_at", "2026-12-07 10:00:00+00", "yesterday").unwrap();
        assert_eq!(
            e,
            "watermark \"yesterday\" does not look like the stored one of column updated_at \
             (\"2026-12-07 10:00:00+00\"): give a timestamp such as 2026-12-07 10:00:00+00"
        );
        assert!(replacement_problem("id", "1042", "10.5").is_some());
        assert!(replacement_problem("d", "2026-12-07", "2026-12-07 10:00:00").is_some());
    }
}
