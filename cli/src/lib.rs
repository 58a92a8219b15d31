//! The `ferry` command line: parses job files, talks gRPC to the controller, prints tables or
//! JSON, and maps every ending to an exit code (see `exit`).

pub mod args;
pub mod client;
pub mod commands;
pub mod download;
pub mod exit;
pub mod jobfile;
pub mod output;
pub mod reason;
pub mod watch;

use anyhow::Context;

use crate::{args::Args, exit::Outcome};

/// Runs one parsed command line to its outcome.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(commands::run(args))?)
}
