//! `ferry logs JOB TASK`: the attempt's standard output and error, as raw bytes, to ours. With
//! `--follow`, a broken stream is picked up again — on the next controller first when several
//! are given — without printing twice what was already printed.

use std::io::Write;

use ferry_proto::v1::{GetLogsRequest, LogEvent, LogStream};

use crate::{
    args::LogsArgs,
    client::Controller,
    exit::{CliError, Outcome},
    output,
    watch::Retry,
};

pub async fn run(controller: &Controller, args: LogsArgs) -> Result<Outcome, CliError> {
    let mut request = GetLogsRequest {
        job_id: args.job,
        task_id: args.task,
        attempt: args.attempt.unwrap_or(0),
        follow: args.follow,
    };
    let mut printed = Printed::default();
    let mut retry = Retry::default();
    loop {
        let err = match stream(controller, &mut request, &mut printed, &mut retry).await {
            Ok(()) => return Ok(Outcome::Success),
            Err(err) => err,
        };
        if !args.follow || !err.is_retryable() {
            return Err(err);
        }
        controller.move_on();
        let first = !retry.is_retrying();
        match retry.next_delay() {
            Some(delay) => {
                if first {
                    eprintln!("{err}; reconnecting");
                }
                tokio::time::sleep(delay).await;
            }
            None => {
                eprintln!("gave up without hearing from a controller");
                return Err(err);
            }
        }
    }
}

/// What has been written so far, across reconnections.
#[derive(Default)]
struct Printed {
    /// Bytes of the attempt's output written, both streams, in the controller's order.
    bytes: u64,
    /// The note about cut output has been shown.
    noted: bool,
}

/// One `GetLogs` stream; `Ok` once it ends. The attempt is pinned once known (a retry of the
/// task must not switch a reconnected `--follow` to another attempt), and the bytes already
/// printed are skipped on a reconnection, which resends the attempt's output from its start.
async fn stream(
    controller: &Controller,
    request: &mut GetLogsRequest,
    printed: &mut Printed,
    retry: &mut Retry,
) -> Result<(), CliError> {
    let mut client = controller.connect().await?;
    let mut stream = client
        .get_logs(request.clone())
        .await
        .map_err(|status| controller.error("get logs", &status))?
        .into_inner();
    let mut skip = printed.bytes;
    while let Some(event) = stream
        .message()
        .await
        .map_err(|status| controller.error("get logs", &status))?
    {
        if retry.is_retrying() {
            eprintln!("(reconnected to the controller at {})", controller.url());
            *retry = Retry::default();
        }
        if event.attempt != 0 {
            request.attempt = event.attempt;
        }
        if event.truncated_before {
            if skip > 0 {
                // Cut since it was printed: where the resent output meets ours is unknown.
                skip = 0;
                eprintln!(
                    "(reconnected after the controller cut older output: some of what follows \
                     may repeat)"
                );
            } else if !printed.noted {
                printed.noted = true;
                eprintln!(
                    "(earlier output was cut: the controller keeps only the last part of each \
                     attempt's output)"
                );
            }
        }
        let already = usize::try_from(skip)
            .unwrap_or(usize::MAX)
            .min(event.data.len());
        skip -= already as u64;
        write(&event, &event.data[already..])?;
        printed.bytes += (event.data.len() - already) as u64;
    }
    Ok(())
}

fn write(event: &LogEvent, data: &[u8]) -> Result<(), CliError> {
    if data.is_empty() {
        return Ok(());
    }
    match event.stream() {
        LogStream::Stdout => output::write_stdout(data),
        LogStream::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(data)
                .and_then(|()| err.flush())
                .map_err(CliError::Output)
        }
    }
}
