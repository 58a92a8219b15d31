//! SQL extraction against the real PostgreSQL and MariaDB on this machine (and SQLite files):
//! every format, type round trips read back (Parquet with the parquet crate's reader), file
//! splits and gzip, parameters bound as data, bad input named, read-only datasources, secrets
//! kept out of logs and the controller's database, a connection killed mid-extract, and
//! incremental runs across submissions.

#[path = "sql_extract/files.rs"]
mod files;
#[path = "sql_extract/setup.rs"]
mod setup;

#[path = "sql_extract/errors_and_secrets.rs"]
mod errors_and_secrets;
#[path = "sql_extract/incremental.rs"]
mod incremental;
#[path = "sql_extract/killed_connection.rs"]
mod killed_connection;
#[path = "sql_extract/split_and_params.rs"]
mod split_and_params;
#[path = "sql_extract/types.rs"]
mod types;
