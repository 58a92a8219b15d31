//! Byte counts and durations as people write them in the config (`10GiB`, `5s`), deserialized;
//! byte counts are parsed and printed by `ferry_jobspec::units`, as every binary does.

use std::time::Duration;

pub use ferry_jobspec::units::{format_bytes, parse_bytes};
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
        Bytes::Text(text) => {
            ferry_jobspec::units::bytes_arg(&text).map_err(serde::de::Error::custom)
        }
    }
}

pub(super) fn humantime_de<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    humantime::parse_duration(text.trim())
        .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?} ({e}); use e.g. 5s")))
}
