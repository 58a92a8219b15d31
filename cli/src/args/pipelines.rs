//! Arguments of `ferry pipelines …`: named, versioned job templates and their runs.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};

use super::parse_param;

#[derive(Debug, Subcommand)]
pub enum PipelinesCommand {
    /// Store a job file as the pipeline of its name: a new version, unless the file equals
    /// the latest version; prints the name, the version and whether it changed
    Apply {
        /// The job file (TOML), with typed [params] if any
        file: PathBuf,
    },
    /// List the pipelines with their latest version and last run
    List,
    /// Show a pipeline: its state, parameters, versions and last runs
    Show { name: String },
    /// List a pipeline's runs, newest first: job id, version, state, times
    History {
        name: String,
        /// How many runs to list (the controller's default is 20)
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Start a run of the pipeline's latest version and print its job id
    Run(PipelineRunArgs),
    /// Pause a pipeline: its schedule and triggers start no run (a run by hand still starts)
    Pause { name: String },
    /// Resume a paused pipeline
    Resume { name: String },
    /// Delete a pipeline; its runs stay jobs, and applying the name again continues its
    /// versions
    Delete { name: String },
    /// Start the runs of the schedule's ticks from --from to --to (RFC 3339, both included),
    /// one per tick ever; prints each tick's job id
    Backfill(BackfillArgs),
}

#[derive(Debug, ClapArgs)]
pub struct BackfillArgs {
    pub name: String,
    /// The first scheduled time (RFC 3339, e.g. 2026-11-01T00:00:00Z)
    #[arg(long, value_name = "T")]
    pub from: String,
    /// The last scheduled time (RFC 3339), not in the future
    #[arg(long, value_name = "T")]
    pub to: String,
    /// Run at most N at a time: start N, wait for them to end, start the next N
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<u32>,
}

#[derive(Debug, ClapArgs)]
pub struct PipelineRunArgs {
    pub name: String,
    /// Set a parameter, checked against the pipeline's declaration (type, required)
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Running again with the same key returns the first run's job id
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Wait for the job to end, showing progress on standard error; exit 0 only if it succeeded
    #[arg(long)]
    pub wait: bool,
}
