//! Fresh PostgreSQL databases for controllers' stores: which backend the process tests run on
//! (`FERRY_TEST_STORE`), and a database made for one test (`ferry_p_<pid>_<n>`), dropped with
//! `WITH (FORCE)` when the test is done with it.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::databases;

/// The store the process tests give a controller whose options name none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestStore {
    /// The default: the SQLite file in the controller's data dir.
    Sqlite,
    /// A fresh PostgreSQL database per controller, on `FERRY_TEST_POSTGRES_URL`'s server.
    Postgres,
}

/// `FERRY_TEST_STORE`: `sqlite` (or unset) or `postgres`; anything else is a mistake that
/// fails the test rather than silently testing SQLite.
pub fn test_store() -> TestStore {
    match std::env::var("FERRY_TEST_STORE") {
        Err(_) => TestStore::Sqlite,
        Ok(v) => match v.trim() {
            "" | "sqlite" => TestStore::Sqlite,
            "postgres" | "postgresql" => TestStore::Postgres,
            other => panic!("FERRY_TEST_STORE={other:?}: use sqlite or postgres"),
        },
    }
}

/// How long reaching the server may take before a create or drop fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A database of its own for one controller (or a cluster of them). Dropped when this is,
/// unless the thread is panicking: then it is kept for a look, and its name printed.
pub struct StoreDatabase {
    /// The server's admin URL it was created through (and is dropped through).
    admin_url: String,
    name: String,
    url: String,
}

impl StoreDatabase {
    /// Creates `ferry_p_<pid>_<n>` on the server of `databases::postgres_url()`.
    pub async fn create() -> Result<Self> {
        Self::create_on(&databases::postgres_url()).await
    }

    /// Creates `ferry_p_<pid>_<n>` through `admin_url` (a `postgres://` URL whose user may
    /// create databases).
    pub async fn create_on(admin_url: &str) -> Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "ferry_p_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let url = with_database(admin_url, &name)?;
        let admin = connect(admin_url).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    /// `postgres://…/ferry_p_…`, for `--store`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A client connected to this database.
    pub async fn client(&self) -> Result<tokio_postgres::Client> {
        connect(&self.url).await
    }
}

impl Drop for StoreDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept database {} ({})", self.name, self.url);
            return;
        }
        // Drop may run on an async thread: the drop gets a thread and a runtime of its own.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || -> Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let admin = connect(&admin_url).await?;
                    admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await
                        .with_context(|| format!("dropping database {name}"))
                })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop database {}: {e:#}", self.name),
            Err(_) => eprintln!("dropping database {} panicked", self.name),
        }
    }
}

/// A client on `url` whose connection is driven by a task of the current runtime, ending when
/// the client is dropped.
async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("bad PostgreSQL url {url}"))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// `url` (`postgres://user@host:port/db?options`) naming database `name` instead.
pub fn with_database(url: &str, name: &str) -> Result<String> {
    let Some(scheme_end) = url.find("://") else {
        bail!("{url:?} is not a postgres:// url");
    };
    let authority_start = scheme_end + 3;
    let (before, query) = match url[authority_start..].find('?') {
        Some(q) => url.split_at(authority_start + q),
        None => (url, ""),
    };
    let base = match before[authority_start..].find('/') {
        Some(slash) => &before[..authority_start + slash],
        None => before,
    };
    Ok(format!("{base}/{name}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced_and_its_options_kept() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/test",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p@h/test?sslmode=disable",
                "postgres://u:p@h/x?sslmode=disable",
            ),
            ("postgresql://h:5", "postgresql://h:5/x"),
            ("postgres://h/", "postgres://h/x"),
        ];
        for (url, want) in cases {
            assert_eq!(with_database(url, "x").unwrap(), want, "{url}");
        }
        assert!(with_database("host=h dbname=test", "x").is_err());
    }
}
