//! An sql task's options: its formats, the compressions each takes, and what it gets when it
//! names neither — for the CLI's job file and the controller's requests alike.

/// The formats of an sql task's extract files.
pub const FORMATS: &[&str] = &["csv", "jsonl", "parquet"];
/// The format of an sql task that names none.
pub const FORMAT_DEFAULT: &str = "csv";

/// The compressions a format takes (its default, the empty string, aside); `None` for an
/// unknown format.
pub fn compressions(format: &str) -> Option<&'static [&'static str]> {
    match format {
        "csv" | "jsonl" => Some(&["none", "gzip"]),
        "parquet" => Some(&["zstd", "snappy", "none"]),
        _ => None,
    }
}

/// The format an sql task names, `csv` when it names none.
pub fn format(format: String) -> String {
    if format.is_empty() {
        FORMAT_DEFAULT.to_owned()
    } else {
        format
    }
}

/// A compression as it is kept: `none` is the empty (default, uncompressed) compression of
/// csv and jsonl, as the wire contract spells it; parquet's `none` stays (its default is zstd).
pub fn compression(format: &str, compression: String) -> String {
    if compression == "none" && format != "parquet" {
        String::new()
    } else {
        compression
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_known_format_takes_its_compressions() {
        for f in FORMATS {
            assert!(compressions(f).is_some(), "{f}");
        }
        assert_eq!(compressions("xml"), None);
        assert_eq!(format(String::new()), "csv");
        assert_eq!(compression("csv", "none".into()), "");
        assert_eq!(compression("jsonl", "gzip".into()), "gzip");
        assert_eq!(compression("parquet", "none".into()), "none");
    }
}
