//! The real databases the SQL tests and benchmarks use, and agent config files naming them as
//! datasources. URLs come from `FERRY_TEST_POSTGRES_URL` / `FERRY_TEST_MYSQL_URL`; without
//! them CI fails (never skips) and a developer's machine gets the local defaults.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use anyhow::{Context, Result};

const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
const LOCAL_MYSQL: &str = "mysql://root@127.0.0.1:3306/test";

fn url(var: &str, local: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: CI must name the test database (see .ci/run)")
        }
        _ => local.to_owned(),
    }
}

/// The PostgreSQL test database (`FERRY_TEST_POSTGRES_URL`).
pub fn postgres_url() -> String {
    url("FERRY_TEST_POSTGRES_URL", LOCAL_POSTGRES)
}

/// The MySQL/MariaDB test database (`FERRY_TEST_MYSQL_URL`).
pub fn mysql_url() -> String {
    url("FERRY_TEST_MYSQL_URL", LOCAL_MYSQL)
}

/// A connected PostgreSQL client; its connection is driven by a task of the test's runtime
/// that ends when the client is dropped.
pub async fn postgres() -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .context("connecting to the PostgreSQL test database")?;
    tokio::spawn(connection);
    Ok(client)
}

/// A MySQL/MariaDB connection to the test database.
pub async fn mysql() -> Result<mysql_async::Conn> {
    mysql_async::Conn::from_url(mysql_url())
        .await
        .context("connecting to the MySQL/MariaDB test database")
}

/// A table name no other test (or process) uses: `prefix_<pid>_<n>`.
pub fn unique_table(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One `[datasources.NAME]` entry of an agent config.
#[derive(Clone, Debug)]
pub struct DatasourceConfig {
    pub name: String,
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub read_only: bool,
}

impl DatasourceConfig {
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            password_file: None,
            password_env: None,
            read_only: false,
        }
    }

    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    pub fn password_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.password_file = Some(path.into());
        self
    }
}

/// TOML text of a string.
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Writes an agent config file holding `datasources`; pass it with
/// `AgentOpts::arg("--config").arg(path)`.
pub fn write_agent_config(path: &Path, datasources: &[DatasourceConfig]) -> Result<()> {
    let mut text = String::new();
    for ds in datasources {
        text.push_str(&format!("[datasources.{}]\n", toml_str(&ds.name)));
        text.push_str(&format!("url = {}\n", toml_str(&ds.url)));
        if let Some(file) = &ds.password_file {
            text.push_str(&format!(
                "password_file = {}\n",
                toml_str(&file.display().to_string())
            ));
        }
        if let Some(var) = &ds.password_env {
            text.push_str(&format!("password_env = {}\n", toml_str(var)));
        }
        text.push_str(&format!("read_only = {}\n\n", ds.read_only));
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
