//! `ferry`: parse the command line, run it, exit with its code.

use std::process::ExitCode;

use clap::Parser;
use ferry_cli::{args::Args, exit};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => return exit::report_usage(&err),
    };
    match ferry_cli::run(args) {
        Ok(outcome) => outcome.into(),
        Err(err) => exit::report(&err),
    }
}
