//! What the artifact stores (data directory and object store) can refuse or fail with.

use crate::model::AttemptKey;

/// An error of either artifact store; `service/status.rs` maps each to a gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("invalid output name {name:?}: {problem}")]
    InvalidName { name: String, problem: &'static str },
    #[error("output {name}: sha256 {sha256:?} is not 64 hex digits")]
    InvalidSha256 { name: String, sha256: String },
    #[error("invalid {what} {value:?}: not usable as a path component")]
    InvalidId { what: &'static str, value: String },
    #[error("chunk at offset {offset} of {name}: crc32c does not match its data, send it again")]
    Crc { name: String, offset: u64 },
    #[error("{name}: expected offset {expected}, got {got}")]
    Offset {
        name: String,
        expected: u64,
        got: u64,
    },
    #[error("{name}: chunk at offset {offset} runs past the declared size of {size} bytes")]
    PastSize {
        name: String,
        offset: u64,
        size: u64,
    },
    #[error("outputs of attempt {attempt} exceed the limit of {limit} bytes (max_output_bytes)")]
    TooLarge { attempt: AttemptKey, limit: u64 },
    #[error(
        "the controller's data directory has {} free{}, keeps {} in reserve: output {name} ({}) does not fit",
        mib(*.free), promised_to_others(*.promised), mib(*.reserve), mib(*.size)
    )]
    NoSpace {
        name: String,
        size: u64,
        /// Free on the data directory's filesystem.
        free: u64,
        /// Of which promised to other uploads in flight.
        promised: u64,
        /// Kept free (`disk_reserve`).
        reserve: u64,
    },
    #[error("upload of {name} is closed: its attempt has completed")]
    Closed { name: String },
    #[error("output {name} is declared twice")]
    Duplicate { name: String },
    #[error("output {name} was not uploaded")]
    NotStaged { name: String },
    #[error("output {name}: received {received} of {size} bytes")]
    Incomplete {
        name: String,
        received: u64,
        size: u64,
    },
    #[error("output {name}: received bytes have sha256 {actual}, the completion says {expected}")]
    Mismatch {
        name: String,
        actual: String,
        expected: String,
    },
    #[error(
        "output {name}: its upload declared sha256 {uploaded}, the completion says {completed}"
    )]
    Disagrees {
        name: String,
        uploaded: String,
        completed: String,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("offset {offset} is past the end of {name} ({size} bytes)")]
    PastEnd {
        name: String,
        offset: u64,
        size: u64,
    },
    #[error("{0}")]
    Object(crate::s3::S3Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Bytes as MiB with one decimal, for a person.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

fn promised_to_others(bytes: u64) -> String {
    if bytes == 0 {
        String::new()
    } else {
        format!(
            " ({} of it promised to other uploads in flight)",
            mib(bytes)
        )
    }
}
