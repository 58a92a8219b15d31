//! A secret the agent holds — its token, a datasource's URL or password — as a value that
//! never shows in logs or `Debug` output; read by the config and the sql datasources alike.

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}
