//! The `[datasources.NAME]` tables of the config file (url, `password_env` or `password_file`,
//! `read_only`): as written, kept out of `Debug` output, and resolved into the
//! `sql::Datasource`s of sql tasks.

use std::{collections::BTreeMap, path::PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::sql::Datasource;

/// One `[datasources.NAME]` table as written in the config file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatasource {
    pub url: String,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub read_only: bool,
}

impl std::fmt::Debug for RawDatasource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawDatasource")
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// The datasources of sql tasks, by name, from their tables: each checked and its password
/// read; the first that fails names itself in the error.
pub(super) fn resolve(
    tables: &BTreeMap<String, RawDatasource>,
) -> Result<BTreeMap<String, Datasource>, ConfigError> {
    let mut datasources = BTreeMap::new();
    for (name, raw) in tables {
        let ds = Datasource::new(
            name,
            &raw.url,
            raw.password_env.as_deref(),
            raw.password_file.as_deref(),
            raw.read_only,
            |var| std::env::var(var).ok(),
        )
        .map_err(|message| ConfigError::Datasource {
            name: name.clone(),
            message,
        })?;
        datasources.insert(name.clone(), ds);
    }
    Ok(datasources)
}
