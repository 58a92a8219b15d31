//! What an attempt's transfers share — its inputs staged, its outputs uploaded, through the
//! controller or straight to an object store: [`Stop`], why one stopped short, and [`hex`],
//! the form of the SHA-256 digests they check.

/// Why the transfers stopped short.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The attempt fails with this message.
    Failed(String),
    /// The attempt fails with this message, and no retry can fix it (an input that is gone, an
    /// input's name that cannot be staged): the task fails without using its other attempts.
    Final(String),
    /// The attempt was stopped or fenced: report nothing.
    Aborted,
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
