//! `ferry-agent` binary: parse config, install tracing, run the agent until it drains (or,
//! started as a guardian, be one).

use std::process::ExitCode;

use anyhow::Context;
use ferry_agent::{Config, Shutdown};

fn main() -> ExitCode {
    // A guardian (the agent's binary in helper mode) needs neither config nor runtime.
    if let Some(code) = ferry_agent::guard::helper_main() {
        return code;
    }
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => {
            use std::io::Write;
            // `error: …` as the CLI and the controller say it; never a panic on a closed stderr.
            let _ = writeln!(std::io::stderr(), "error: config: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any work; guardians above keep glibc's defaults (they move no data).
    ferry_alloc::keep_freed_memory();
    // Never blocks on standard error, full or closed (ferry-log).
    let logs = ferry_log::init();
    let code = match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    logs.flush(std::time::Duration::from_secs(1));
    code
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
