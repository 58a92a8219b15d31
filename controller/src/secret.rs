//! A secret the controller holds — the agents' and clients' tokens, the store's password, the
//! object store's keys — as a value that never shows in logs or `Debug` output.

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}
