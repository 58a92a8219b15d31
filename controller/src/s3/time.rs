//! UTC timestamps in SigV4's formats (`20130524T000000Z`, `20130524`) without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    /// From a civil UTC date and time (for tests and fixed examples).
    pub fn from_utc(year: i64, month: u32, day: u32, h: u32, m: u32, s: u32) -> Self {
        let days = days_from_civil(year, month, day);
        Timestamp((days * 86_400) as u64 + u64::from(h * 3600 + m * 60 + s))
    }

    /// `YYYYMMDDTHHMMSSZ`.
    pub fn amz_date(self) -> String {
        let (y, mo, d) = civil_from_days((self.0 / 86_400) as i64);
        let secs = self.0 % 86_400;
        format!(
            "{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }

    /// `YYYYMMDD`.
    pub fn date(self) -> String {
        let (y, mo, d) = civil_from_days((self.0 / 86_400) as i64);
        format!("{y:04}{mo:02}{d:02}")
    }
}

// Howard Hinnant's algorithms (proleptic Gregorian calendar).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_time_formats_amz_dates() {
        assert_eq!(Timestamp(0).amz_date(), "19700101T000000Z");
        let t = Timestamp::from_utc(2013, 5, 24, 0, 0, 0);
        assert_eq!(t.0, 1_369_353_600);
        assert_eq!(t.amz_date(), "20130524T000000Z");
        assert_eq!(t.date(), "20130524");
        let leap = Timestamp::from_utc(2024, 2, 29, 23, 59, 58);
        assert_eq!(leap.amz_date(), "20240229T235958Z");
        assert_eq!(Timestamp(leap.0 + 2).amz_date(), "20240301T000000Z");
    }
}
