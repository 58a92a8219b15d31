//! `ferry-agent` binary: parse config, install tracing, run the agent until it drains (or,
//! started as a guardian, be one).

use std::{io::IsTerminal, process::ExitCode};

use anyhow::Context;
use ferry_agent::{Config, Shutdown};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // A guardian (the agent's binary in helper mode) needs neither config nor runtime.
    if let Some(code) = ferry_agent::guard::helper_main() {
        return code;
    }
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferry-agent: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any work; guardians above keep glibc's defaults (they move no data).
    ferry_alloc::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let shutdown = Shutdown::default();
    runtime.block_on(async {
        tokio::select! {
            result = ferry_agent::run(config, shutdown.clone()) => result.context("running the agent"),
            error = shutdown.on_signals() => Err(error).context("installing signal handlers"),
        }
    })
}
