//! `ferry logs JOB TASK`: the attempt's standard output and error, as raw bytes, to ours.

use std::io::Write;

use ferry_proto::v1::{GetLogsRequest, LogStream};

use crate::{
    args::LogsArgs,
    client::Controller,
    exit::{CliError, Outcome},
    output,
};

pub async fn run(controller: &Controller, args: LogsArgs) -> Result<Outcome, CliError> {
    let mut client = controller.connect().await?;
    let request = GetLogsRequest {
        job_id: args.job,
        task_id: args.task,
        attempt: args.attempt.unwrap_or(0),
        follow: args.follow,
    };
    let mut stream = client
        .get_logs(request)
        .await
        .map_err(|status| controller.error("get logs", &status))?
        .into_inner();
    let mut noted = false;
    while let Some(event) = stream
        .message()
        .await
        .map_err(|status| controller.error("get logs", &status))?
    {
        if event.truncated_before && !noted {
            noted = true;
            eprintln!(
                "(earlier output was cut: the controller keeps only the last part of each \
                 attempt's output)"
            );
        }
        match event.stream() {
            LogStream::Stdout => output::write_stdout(&event.data)?,
            LogStream::Stderr => {
                let mut err = std::io::stderr().lock();
                err.write_all(&event.data)
                    .and_then(|()| err.flush())
                    .map_err(CliError::Output)?;
            }
        }
    }
    Ok(Outcome::Success)
}
