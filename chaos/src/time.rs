//! The CLI's timestamps (`2026-11-18T11:06:40.500Z`, UTC) as milliseconds since the epoch.

use anyhow::{bail, Context, Result};

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn parse_ms(s: &str) -> Result<i64> {
    let bad = || format!("bad timestamp {s:?}");
    let Some(body) = s.strip_suffix('Z') else {
        bail!("{}: not UTC", bad());
    };
    let (date, clock) = body.split_once('T').with_context(bad)?;
    let num = |t: &str| -> Result<i64> { t.parse().with_context(bad) };
    let d: Vec<&str> = date.split('-').collect();
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    let c: Vec<&str> = hms.split(':').collect();
    if d.len() != 3 || c.len() != 3 || frac.is_empty() || frac.len() > 9 {
        bail!("{}", bad());
    }
    let ms = num(&format!("{frac:0<3}")[..3])?;
    let days = days_from_civil(num(d[0])?, num(d[1])?, num(d[2])?);
    let secs = days * 86_400 + num(c[0])? * 3600 + num(c[1])? * 60 + num(c[2])?;
    Ok(secs * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_read_as_epoch_milliseconds() {
        assert_eq!(parse_ms("1970-01-01T00:00:00.000Z").unwrap(), 0);
        assert_eq!(
            parse_ms("2026-11-18T11:06:40.500Z").unwrap(),
            1_795_000_000_500
        );
        assert_eq!(parse_ms("2000-02-29T23:59:59Z").unwrap(), 951_868_799_000);
        assert_eq!(parse_ms("2000-03-01T00:00:00.1Z").unwrap(), 951_868_800_100);
        assert!(parse_ms("2026-11-18 11:06:40").is_err());
        assert!(parse_ms("2026-11-18T11:06Z").is_err());
    }
}
