//! `ferry results list JOB [TASK]` and `ferry results get JOB TASK [-o DIR] [--name NAME]…`.
//!
//! `get` writes each file to `NAME.part`, resumes from that file's length when the stream
//! breaks, verifies size and SHA-256, then renames it into place. On any failure (or Ctrl-C)
//! the `.part` file is removed; files already saved and verified stay. With an S3-compatible
//! artifact store the bytes come straight from the store through a presigned URL (`direct`).

mod direct;

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

use ferry_proto::v1::{DownloadResultRequest, ListResultsRequest, ResultFile, TaskExtract};

use crate::{
    args::ResultsGetArgs,
    client::Controller,
    download::{part_path, safe_relative, verify, PartFile, Progress, Receiver, Sink},
    exit::{io_reason, CliError, Outcome},
    output::{self, Format, ResultView, SavedView},
};

/// Larger than any chunk a controller sends (tonic's default limit is 4 MiB).
const MAX_MESSAGE: usize = 64 << 20;
/// A broken download is retried until this long has passed without a byte arriving.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub async fn list(
    controller: &Controller,
    format: Format,
    job: &str,
    task: Option<&str>,
) -> Result<Outcome, CliError> {
    let (files, extracts) = list_with_extracts(controller, job, task.unwrap_or_default()).await?;
    let views = ResultView::list(&files, &extracts);
    output::emit(format, views.as_slice(), ResultView::table)?;
    Ok(Outcome::Success)
}

async fn list_files(
    controller: &Controller,
    job: &str,
    task: &str,
) -> Result<Vec<ResultFile>, CliError> {
    Ok(list_with_extracts(controller, job, task).await?.0)
}

/// The published files of a job (or task), by task and name, with the extracts among them.
async fn list_with_extracts(
    controller: &Controller,
    job: &str,
    task: &str,
) -> Result<(Vec<ResultFile>, Vec<TaskExtract>), CliError> {
    let mut client = controller.connect().await?;
    let response = client
        .list_results(ListResultsRequest {
            job_id: job.to_owned(),
            task_id: task.to_owned(),
        })
        .await
        .map_err(|status| controller.error("list results", &status))?
        .into_inner();
    let mut files = response.files;
    if !task.is_empty() {
        files.retain(|f| f.task_id == task);
    }
    files.sort_by(|a, b| (&a.task_id, &a.name).cmp(&(&b.task_id, &b.name)));
    Ok((files, response.extracts))
}

pub async fn get(
    controller: &Controller,
    format: Format,
    args: ResultsGetArgs,
) -> Result<Outcome, CliError> {
    prepare_dir(&args.dir)?;
    let files = list_files(controller, &args.job, &args.task).await?;
    let files = choose(&files, &args.names, &args.job, &args.task)?;
    // Every name is checked before anything is written.
    let mut plan = Vec::with_capacity(files.len());
    for file in files {
        let relative = safe_relative(&file.name).map_err(|why| {
            CliError::Protocol(format!(
                "controller at {} listed output {:?} of task {}: {why}; nothing saved",
                controller.url(),
                file.name,
                args.task
            ))
        })?;
        plan.push((file, args.dir.join(relative)));
    }

    let mut saved = Vec::with_capacity(plan.len());
    for (file, dest) in &plan {
        tokio::select! {
            result = fetch(controller, &args.job, file, &args.dir, dest) => result?,
            _ = tokio::signal::ctrl_c() => {
                // Dropping the download removed its .part file.
                eprintln!("\ninterrupted: {} not saved", file.name);
                return Err(CliError::Interrupted);
            }
        }
        saved.push(SavedView {
            task: file.task_id.clone(),
            attempt: file.attempt,
            name: file.name.clone(),
            size: file.size,
            sha256: file.sha256.clone(),
            path: dest.display().to_string(),
        });
    }
    output::emit(format, saved.as_slice(), SavedView::table)?;
    Ok(Outcome::Success)
}

/// Creates the download folder if needed and checks that files can be created in it.
fn prepare_dir(dir: &Path) -> Result<(), CliError> {
    let shown = dir.display();
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::BadInput(format!("{shown} is not a folder")));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        CliError::BadInput(format!("cannot create folder {shown}: {}", io_reason(&e)))
    })?;
    let probe = dir.join(format!(".ferry-write-test-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| {
            CliError::BadInput(format!("cannot write in folder {shown}: {}", io_reason(&e)))
        })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The outputs to download: all of the task's, or those `names` names (each must exist).
fn choose<'a>(
    files: &'a [ResultFile],
    names: &[String],
    job: &str,
    task: &str,
) -> Result<Vec<&'a ResultFile>, CliError> {
    if names.is_empty() {
        if files.is_empty() {
            return Err(CliError::Failed(format!(
                "task {task} of job {job} has no published results (has it succeeded, and \
                 does it declare outputs?)"
            )));
        }
        return Ok(files.iter().collect());
    }
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let unknown: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|name| !files.iter().any(|f| f.name == *name))
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        return Err(CliError::BadInput(format!(
            "task {task} of job {job} has no published output named {}; it has: {}",
            unknown
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    }
    Ok(files
        .iter()
        .filter(|f| wanted.contains(f.name.as_str()))
        .collect())
}

/// Downloads one output to `dest` (under `dir`), resuming when the stream breaks.
async fn fetch(
    controller: &Controller,
    job: &str,
    file: &ResultFile,
    dir: &Path,
    dest: &Path,
) -> Result<(), CliError> {
    let name = file.name.as_str();
    let local = |what: &str, path: &Path, e: std::io::Error| {
        CliError::Failed(format!(
            "{what} {}: {}; {name} not saved",
            path.display(),
            io_reason(&e)
        ))
    };
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| local("cannot create folder", parent, e))?;
        // A symlink already in the folder must not lead the file elsewhere.
        let inside = match (parent.canonicalize(), dir.canonicalize()) {
            (Ok(parent), Ok(dir)) => parent.starts_with(dir),
            _ => false,
        };
        if !inside {
            return Err(CliError::Failed(format!(
                "{} leads outside {} (a symlink?); {name} not saved",
                parent.display(),
                dir.display()
            )));
        }
    }
    let (part, out) = PartFile::create(part_path(dest))
        .map_err(|e| local("cannot create", &part_path(dest), e))?;
    let mut sink = Sink::start(out);
    let mut receiver = Receiver::new(file.size);
    let mut progress = Progress::new(name, file.size);
    let mut retry = Retry::new();
    // From the object store when the controller grants a URL; else streamed by it.
    let mut url = direct::grant(controller, job, file).await?;
    let mut expired = false;

    loop {
        let offset = receiver.resume_offset();
        if expired {
            url = direct::grant(controller, job, file).await?;
            expired = false;
        }
        let result = match &url {
            Some(url) => {
                direct::get_from(
                    url,
                    offset,
                    &mut receiver,
                    &mut sink,
                    &mut progress,
                    &mut expired,
                )
                .await
            }
            None => {
                stream_from(
                    controller,
                    job,
                    file,
                    offset,
                    &mut receiver,
                    &mut sink,
                    &mut progress,
                )
                .await
            }
        };
        let err = match result {
            Ok(()) if receiver.is_complete() => break,
            Ok(()) => CliError::Unreachable {
                url: controller.url().to_owned(),
                reason: format!(
                    "the download stream of {name} ended after {} of {} bytes",
                    receiver.received(),
                    file.size
                ),
            },
            // Everything arrived; only the end of the stream was lost.
            Err(Stop::Retry(_)) if receiver.is_complete() => break,
            Err(Stop::Retry(err)) => err,
            // `finish` below names the write error.
            Err(Stop::WriterFailed) => break,
            Err(Stop::Fatal(err)) => {
                progress.abandon();
                return Err(err);
            }
        };
        let Some(delay) = retry.next_delay(receiver.received()) else {
            progress.abandon();
            return Err(err);
        };
        progress.note(&format!(
            "download of {name} broke at byte {} of {} ({err}); resuming from byte {} in {}",
            receiver.received(),
            file.size,
            receiver.resume_offset(),
            output::duration(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
        ));
        tokio::time::sleep(delay).await;
    }

    let saved = sink.finish().map_err(|e| {
        progress.abandon();
        local("cannot write", part.path(), e)
    })?;
    verify(name, &saved, file.size, &file.sha256).map_err(|message| {
        progress.abandon();
        CliError::Failed(message)
    })?;
    part.commit(dest).map_err(|e| {
        progress.abandon();
        local("cannot rename the download to", dest, e)
    })?;
    progress.done(file.size);
    Ok(())
}

/// Why one request of a download stopped before the file was whole.
enum Stop {
    /// The connection or the controller went away: ask again from where it broke.
    Retry(CliError),
    /// Anything else: give up.
    Fatal(CliError),
    /// Writing the `.part` file failed.
    WriterFailed,
}

impl Stop {
    fn of(err: CliError) -> Self {
        if err.is_retryable() {
            Stop::Retry(err)
        } else {
            Stop::Fatal(err)
        }
    }
}

/// One `DownloadResult` request from `offset`, feeding the writer until the stream ends.
async fn stream_from(
    controller: &Controller,
    job: &str,
    file: &ResultFile,
    offset: u64,
    receiver: &mut Receiver,
    sink: &mut Sink,
    progress: &mut Progress,
) -> Result<(), Stop> {
    let mut client = controller
        .connect()
        .await
        .map_err(Stop::of)?
        .max_decoding_message_size(MAX_MESSAGE);
    let mut stream = client
        .download_result(DownloadResultRequest {
            job_id: job.to_owned(),
            task_id: file.task_id.clone(),
            name: file.name.clone(),
            offset,
        })
        .await
        .map_err(|status| Stop::of(controller.error("download result", &status)))?
        .into_inner();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|status| Stop::of(controller.error("download result", &status)))?
    {
        receiver
            .accept(chunk.offset, chunk.data.len())
            .map_err(|why| {
                Stop::Fatal(CliError::Protocol(format!(
                    "controller at {} sent a bad download of {}: {why}; not saved",
                    controller.url(),
                    file.name
                )))
            })?;
        if !sink.push(chunk.data) {
            return Err(Stop::WriterFailed);
        }
        progress.update(receiver.received());
    }
    Ok(())
}

/// Backoff between the requests of a broken download, reset whenever bytes arrived.
struct Retry {
    last_received: u64,
    since: Instant,
    attempts: u32,
}

impl Retry {
    fn new() -> Self {
        Retry {
            last_received: 0,
            since: Instant::now(),
            attempts: 0,
        }
    }

    /// The pause before asking again, or `None` after [`GIVE_UP_AFTER`] without progress.
    fn next_delay(&mut self, received: u64) -> Option<Duration> {
        if received > self.last_received {
            self.last_received = received;
            self.since = Instant::now();
            self.attempts = 0;
        }
        if self.since.elapsed() >= GIVE_UP_AFTER {
            return None;
        }
        let delay = FIRST_BACKOFF
            .saturating_mul(2u32.saturating_pow(self.attempts))
            .min(MAX_BACKOFF);
        self.attempts += 1;
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(task: &str, name: &str) -> ResultFile {
        ResultFile {
            task_id: task.into(),
            attempt: 1,
            name: name.into(),
            size: 1,
            sha256: String::new(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn every_output_or_the_named_ones() {
        let files = [file("t", "a.csv"), file("t", "parts/b.csv")];
        assert_eq!(choose(&files, &[], "j", "t").unwrap().len(), 2);
        let picked = choose(&files, &["parts/b.csv".into()], "j", "t").unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].name, "parts/b.csv");
        let err = choose(&files, &["a.csv".into(), "nope".into()], "j", "t").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "task t of job j has no published output named \"nope\"; it has: a.csv, parts/b.csv"
        );
        let err = choose(&[], &[], "j", "t").unwrap_err();
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn the_folder_must_be_writable() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        prepare_dir(&nested).unwrap();
        assert!(nested.is_dir());
        assert_eq!(
            std::fs::read_dir(&nested).unwrap().count(),
            0,
            "probe left behind"
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = prepare_dir(&file.join("sub")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().starts_with("cannot create folder"), "{err}");
        let err = prepare_dir(&file).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is not a folder", file.display())
        );
    }

    #[test]
    fn backoff_grows_and_resets_on_progress() {
        let mut retry = Retry::new();
        assert_eq!(retry.next_delay(0), Some(Duration::from_millis(200)));
        assert_eq!(retry.next_delay(0), Some(Duration::from_millis(400)));
        assert_eq!(retry.next_delay(0), Some(Duration::from_millis(800)));
        assert_eq!(retry.next_delay(10), Some(Duration::from_millis(200)));
        retry.since -= GIVE_UP_AFTER;
        assert_eq!(retry.next_delay(10), None);
    }
}
