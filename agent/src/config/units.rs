//! Byte counts and durations as people write them in the config (`10GiB`, `5s`): parsed,
//! deserialized and printed back.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A byte count: a TOML integer, or text such as `1048576`, `512MiB`, `10GiB`, `2G`.
pub(super) fn bytes_de<'de, D: Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Bytes {
        Number(u64),
        Text(String),
    }
    match Bytes::deserialize(de)? {
        Bytes::Number(n) => Ok(n),
        Bytes::Text(text) => parse_bytes(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "bad size {text:?}; use a number of bytes or e.g. 500MiB, 10GiB"
            ))
        }),
    }
}

/// Parses `123`, `123B`, `4KiB`/`4K`, `5MiB`/`5M`, `10GiB`/`10G`, `1TiB`/`1T` (powers of 1024).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// `10 GiB`, `512 MiB`, `1536 bytes`: a byte count for people, exact when it is a round unit.
pub fn format_bytes(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

pub(super) fn humantime_de<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    humantime::parse_duration(text.trim())
        .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?} ({e}); use e.g. 5s")))
}
