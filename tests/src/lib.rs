//! Harness for Ferry's process tests: starts the real `ferry-controller`, `ferry-agent` and
//! `ferry` binaries, each in its own temp dir with its own log file, on a free port, waits for
//! readiness over gRPC and kills everything on drop. Shared with the benchmarks crate.
//!
//! A controller's store is the SQLite file in its data dir, or with `FERRY_TEST_STORE=postgres`
//! a fresh PostgreSQL database of its own (`store_db.rs`); a [`Cluster`] is several controllers
//! on one database, and a [`PgServer`] a PostgreSQL server of a test's own.
//!
//! Temp dirs and logs are kept (and their paths printed with the tail of each log) when the
//! thread is panicking, so write tests that fail by panicking (`assert!`, `unwrap`), not by
//! returning `Err`.

mod agent;
mod bin;
mod cli;
mod cluster;
mod controller;
pub mod databases;
mod fake_agent;
mod grpc;
pub mod job;
pub mod moto;
mod pg_server;
mod process;
pub mod procs;
pub mod results_fixture;
mod store_db;
mod tls;
mod wait;
pub mod watch;

pub use agent::{Agent, AgentOpts, RefusedAgent};
pub use bin::{bin_dir, bin_path, AGENT_BIN, CLI_BIN, CONTROLLER_BIN};
pub use cli::{job_id_of, Cli, CliOutput, TERMINAL_JOB_STATES};
pub use cluster::Cluster;
pub use controller::{free_port, Controller, ControllerOpts};
pub use fake_agent::FakeAgent;
pub use grpc::{agent_client, connect, job_client};
pub use moto::Moto;
pub use pg_server::PgServer;
pub use process::{log_tail, TestDir};
pub use store_db::{test_store, with_database, StoreDatabase, TestStore};
pub use tls::{ClientCerts, DevCerts};
pub use wait::{eventually, POLL_INTERVAL};

/// Log filter handed to every process the harness starts, unless `FERRY_PROCESS_LOG` names
/// another (the benchmarks run with `warn`, so that logging does not weigh on the figures).
pub const RUST_LOG: &str = "info,ferry=debug,ferry_controller=debug,ferry_agent=debug";

/// The log filter for a process the harness starts: `FERRY_PROCESS_LOG`, else [`RUST_LOG`].
pub fn process_log_filter() -> String {
    std::env::var("FERRY_PROCESS_LOG").unwrap_or_else(|_| RUST_LOG.to_owned())
}

/// Milliseconds since the Unix epoch on this machine's clock, comparable with the controller's
/// `*_at_ms` fields (same host).
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock before 1970");
    i64::try_from(since.as_millis()).expect("time fits in i64")
}

/// A duration as the CLI flags take it (`humantime`): whole milliseconds, e.g. `300ms`.
pub fn flag_duration(d: std::time::Duration) -> String {
    format!("{}ms", d.as_millis())
}
