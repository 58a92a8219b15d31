//! The commands: each turns its arguments into calls to the controller and prints the answer.

mod agents;
mod jobs;
mod logs;
mod pipelines;
mod queues;
mod results;
mod submit;
mod triggers;
mod watermarks;

use crate::{
    args::{
        AgentsCommand, Args, Command, JobsCommand, QueuesCommand, ResultsCommand, WatermarksCommand,
    },
    client::Controller,
    exit::{CliError, Outcome},
};

pub async fn run(args: Args) -> Result<Outcome, CliError> {
    let token = crate::client::token(args.token_file.as_deref())?;
    let controller = Controller::new(&args.controllers)?
        .with_token(token)?
        .with_tls(
            args.tls_ca.as_deref(),
            args.tls_cert.as_deref(),
            args.tls_key.as_deref(),
        )?;
    let format = args.output;
    match args.command {
        Command::Submit(submit) => submit::run(&controller, format, submit).await,
        Command::Jobs(JobsCommand::List {
            limit,
            state,
            pipeline: Some(name),
        }) => pipelines::jobs(&controller, format, &name, limit, state).await,
        Command::Jobs(JobsCommand::List { limit, state, .. }) => {
            jobs::list(&controller, format, limit, state).await
        }
        Command::Jobs(JobsCommand::Show { id }) => jobs::show(&controller, format, &id).await,
        Command::Jobs(JobsCommand::Cancel { id }) => jobs::cancel(&controller, format, &id).await,
        Command::Jobs(JobsCommand::Watch { id }) => jobs::watch(&controller, format, &id).await,
        Command::Logs(logs) => logs::run(&controller, logs).await,
        Command::Agents(AgentsCommand::List { all }) => {
            agents::list(&controller, format, all).await
        }
        Command::Agents(AgentsCommand::Forget { name }) => {
            agents::forget(&controller, format, &name).await
        }
        Command::Agents(AgentsCommand::Drain { name }) => {
            agents::drain(&controller, format, &name).await
        }
        Command::Queues(QueuesCommand::List) => queues::list(&controller, format).await,
        Command::Results(ResultsCommand::List { job, task }) => {
            results::list(&controller, format, &job, task.as_deref()).await
        }
        Command::Results(ResultsCommand::Get(get)) => results::get(&controller, format, get).await,
        Command::Watermarks(WatermarksCommand::List { job_name }) => {
            watermarks::list(&controller, format, job_name.as_deref()).await
        }
        Command::Watermarks(WatermarksCommand::Set {
            job_name,
            task,
            value,
        }) => watermarks::set(&controller, format, &job_name, &task, &value).await,
        Command::Watermarks(WatermarksCommand::Reset { job_name, task }) => {
            watermarks::reset(&controller, format, &job_name, &task).await
        }
        Command::Pipelines(command) => pipelines::run(&controller, format, command).await,
        Command::Triggers(command) => triggers::run(&controller, format, command).await,
    }
}
