//! `ferry-controller`: parse config, install tracing, serve until SIGTERM or Ctrl-C.

use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> std::process::ExitCode {
    let flags = ferry_controller::config::Flags::parse();
    let config = match ferry_controller::Config::load(flags) {
        Ok(config) => config,
        Err(e) => {
            say(&format!("error: {e}"));
            return std::process::ExitCode::from(2);
        }
    };
    ferry_alloc::keep_freed_memory();
    // Never blocks on standard error, full or closed: SIGTERM is always heard (ferry-log).
    let logs = ferry_log::init();
    // One thread by default: see `async_threads` in config.rs.
    let runtime = match config.async_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    }
    .enable_all()
    .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("starting the runtime: {e}");
            say(&format!("error: starting the runtime: {e}"));
            logs.flush(LAST_LINES);
            return std::process::ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    let result = runtime.block_on(async {
        let signals = shutdown.clone();
        let watcher = tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down (signal again to exit at once)");
            signals.cancel();
            wait_for_signal().await;
            std::process::exit(130);
        });
        let result = ferry_controller::run(config, shutdown).await;
        watcher.abort();
        result
    });
    let code = match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "controller failed");
            // The plain line too, unless standard error is stuck (then the log has it).
            if logs.flush(LAST_LINES) {
                say(&format!("error: {e}"));
            }
            std::process::ExitCode::FAILURE
        }
    };
    logs.flush(LAST_LINES);
    code
}

/// How long the last log lines may hold the exit: a stuck pipe must not.
const LAST_LINES: std::time::Duration = std::time::Duration::from_secs(1);

/// A line on standard error before logging starts, ignoring a closed one (`eprintln!` panics).
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
