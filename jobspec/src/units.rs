//! Byte sizes as people write them (`1048576`, `512MiB`, `10GiB`, `2G`): the one parser and
//! printer every binary uses for its flags, environment and config files.

/// What a bad size is told to look like.
pub const BYTES_HINT: &str = "a number of bytes or e.g. 500MiB, 10GiB";

/// Parses `123`, `123B`, `4KiB`/`4K`/`4KB`, `5MiB`/`5M`, `10GiB`/`10G`, `1TiB`/`1T` (powers
/// of 1024, any case, spaces allowed around the unit); `None` for anything else or an
/// overflow.
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

/// `parse_bytes`, or the problem in words: for clap's `value_parser` and config checks.
pub fn bytes_arg(text: &str) -> Result<u64, String> {
    parse_bytes(text).ok_or_else(|| format!("bad size {text:?}; use {BYTES_HINT}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_units() {
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("1MiB"), Some(1 << 20));
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes(" 7 kib"), Some(7 << 10));
        assert_eq!(parse_bytes("10GiB"), Some(10 << 30));
        assert_eq!(parse_bytes("1.5G"), None);
        assert_eq!(parse_bytes("-1"), None);
        assert_eq!(parse_bytes("MiB"), None);
        assert_eq!(parse_bytes("99999999999TiB"), None);
        assert_eq!(bytes_arg("1Mb"), Ok(1 << 20));
        let e = bytes_arg("lots").unwrap_err();
        assert!(e.contains("\"lots\"") && e.contains("10GiB"), "{e}");
        assert_eq!(format_bytes(10 << 30), "10 GiB");
        assert_eq!(format_bytes(1536), "1536 bytes");
        assert_eq!(format_bytes(3 << 20), "3 MiB");
    }
}
