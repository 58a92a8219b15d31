//! Upload of an attempt's outputs: a client stream of CRC32C-checked chunks of about 1 MiB, read
//! with bounded memory by a thread that hashes the file (SHA-256) as it reads it, so each file
//! is read once; the last chunk declares the SHA-256. Resumed from `UploadStatus` after an
//! interruption (the skipped prefix is hashed, not sent), while the attempt's lease holds.
//!
//! Here the stream and resume protocol; `reader` reads, hashes and chunks the file.

mod reader;
#[cfg(test)]
mod tests;

use std::{
    fs::File,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use ferry_proto::v1::{AttemptRef, OutputFile, UploadChunk, UploadHeader};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use reader::CHUNK;
use reader::{open_checked, produce};

use crate::{
    client::{Backoff, Client, FailureLog, TransferError},
    outputs::Output,
    running::KillSwitch,
    transfer::Stop,
};

/// Chunks read ahead of the transport, at most: with the one being read and the one being
/// encoded, an upload holds about 10 MiB whatever the file's size. Eight rather than two
/// keeps the reader busy while the transport takes its chunks in bursts (as HTTP/2 flow
/// control opens); measured in `docs/decisions/0004-upload-path.md`.
const IN_FLIGHT: usize = 8;
/// An upload whose chunks the transport has not taken for this long (or, once all are sent,
/// that has no answer) is dropped and resumed.
const STALL: Duration = Duration::from_secs(60);
/// Damaged-chunk refusals in a row, with no progress between them, before giving up.
const MAX_DAMAGED: u32 = 5;

/// What to send: one output, its checksum, and where it goes.
#[derive(Clone)]
struct Upload {
    header: UploadHeader,
    file: Arc<File>,
}

impl Upload {
    fn name(&self) -> &str {
        &self.header.name
    }
    fn size(&self) -> u64 {
        self.header.size
    }
}

/// Uploads every output in turn; the list to put in `CompleteRequest.outputs`.
pub(crate) async fn upload_all(
    client: &Client,
    attempt: &AttemptRef,
    kill: &KillSwitch,
    outputs: &[Output],
) -> Result<Vec<OutputFile>, Stop> {
    let mut done = Vec::with_capacity(outputs.len());
    for output in outputs {
        done.push(upload_one(client, attempt, kill, output).await?);
    }
    Ok(done)
}

async fn upload_one(
    client: &Client,
    attempt: &AttemptRef,
    kill: &KillSwitch,
    output: &Output,
) -> Result<OutputFile, Stop> {
    let started = Instant::now();
    let file = {
        let checked = output.clone();
        let opening = tokio::task::spawn_blocking(move || open_checked(&checked));
        tokio::select! {
            r = opening => match r {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err(Stop::Failed(format!("output {}: {e}", output.name))),
                Err(e) => return Err(Stop::Failed(format!("output {}: opening failed: {e}", output.name))),
            },
            () = kill.abort.cancelled() => return Err(Stop::Aborted),
        }
    };
    let file = Arc::new(file);
    // With an object store, straight there; otherwise streamed to the controller.
    let direct = crate::direct::upload(
        client,
        attempt,
        kill,
        &output.name,
        output.size,
        Arc::clone(&file),
    )
    .await?;
    if let Some(sha256) = direct {
        let elapsed = started.elapsed();
        info!(
            output = %output.name,
            size = output.size,
            mb_per_s = format!("{:.1}", mb_per_s(output.size, elapsed)),
            elapsed_ms = elapsed.as_millis() as u64,
            "output uploaded to the object store"
        );
        return Ok(OutputFile {
            name: output.name.clone(),
            size: output.size,
            sha256,
        });
    }
    let upload = Upload {
        header: UploadHeader {
            agent: client.agent_identity(),
            attempt: Some(attempt.clone()),
            name: output.name.clone(),
            size: output.size,
            // Declared by the last chunk: known once the file is read.
            sha256: String::new(),
        },
        file,
    };
    let sha256 = send_resuming(client, attempt, kill, &upload).await?;
    let elapsed = started.elapsed();
    info!(
        output = %output.name,
        size = output.size,
        mb_per_s = format!("{:.1}", mb_per_s(output.size, elapsed)),
        elapsed_ms = elapsed.as_millis() as u64,
        "output uploaded"
    );
    Ok(OutputFile {
        name: output.name.clone(),
        size: output.size,
        sha256,
    })
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-6)
}

/// Sends the file, resuming from what the controller holds after each interruption, until the
/// controller holds it whole, refuses it, or the attempt stops; the file's SHA-256.
async fn send_resuming(
    client: &Client,
    attempt: &AttemptRef,
    kill: &KillSwitch,
    upload: &Upload,
) -> Result<String, Stop> {
    let name = upload.name();
    let refused = |message: String| Stop::Failed(refusal(name, &message));
    let mut backoff = Backoff::default();
    let mut failures = FailureLog::new("upload_output");
    let mut damaged = 0;
    // A new attempt's upload starts from nothing; afterwards the controller says where.
    let mut offset = 0;
    loop {
        let failure = match send_from(client, upload, offset, kill).await {
            Ok((received, sha256)) if received == upload.size() => {
                failures.recovered();
                return Ok(sha256);
            }
            Ok((received, _)) => TransferError::Transient(format!(
                "the controller holds {received} of {} bytes after the stream",
                upload.size()
            )),
            Err(Sent::Transfer(e)) => e,
            Err(Sent::Local(message)) => {
                return Err(Stop::Failed(format!("output {name}: {message}")))
            }
            Err(Sent::Aborted) => return Err(Stop::Aborted),
        };
        match failure {
            TransferError::Fenced(e) => {
                info!(output = %name, error = %e, "attempt fenced during upload; stopping it");
                return Err(Stop::Aborted);
            }
            TransferError::Refused(message) | TransferError::Missing(message) => {
                return Err(refused(message))
            }
            TransferError::Damaged(e) => {
                damaged += 1;
                warn!(output = %name, offset, error = %e, "controller refused a damaged chunk; sending again");
                if damaged > MAX_DAMAGED {
                    return Err(Stop::Failed(format!(
                        "output {name}: the controller refused damaged chunks {MAX_DAMAGED} times in a row ({e})"
                    )));
                }
            }
            TransferError::Transient(e) => failures.failed(&e),
        }
        // Resume from what the controller holds, asking until it answers.
        let received = loop {
            if !backoff.sleep(&kill.abort).await {
                return Err(Stop::Aborted);
            }
            let status = tokio::select! {
                r = client.upload_status(attempt, name) => r,
                () = kill.abort.cancelled() => return Err(Stop::Aborted),
            };
            match status {
                Ok(received) => break received,
                Err(TransferError::Fenced(e)) => {
                    info!(output = %name, error = %e, "attempt fenced during upload; stopping it");
                    return Err(Stop::Aborted);
                }
                Err(TransferError::Refused(message) | TransferError::Missing(message)) => {
                    return Err(refused(message))
                }
                Err(e) => failures.failed(&e),
            }
        };
        match next_offset(offset, received, upload.size()) {
            Resume::From {
                offset: next,
                progress,
            } => {
                if progress {
                    backoff.reset();
                    damaged = 0;
                }
                debug!(output = %name, from = next, "resuming upload");
                offset = next;
            }
            Resume::Invalid(message) => {
                return Err(Stop::Failed(format!("output {name}: {message}")))
            }
        }
    }
}

/// The controller's message, naming the output unless it already does.
fn refusal(name: &str, message: &str) -> String {
    if message.contains(name) {
        message.to_owned()
    } else {
        format!("output {name}: {message}")
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Resume {
    /// Send from `offset`; `progress` when the controller holds more than at the last try.
    From {
        offset: u64,
        progress: bool,
    },
    Invalid(String),
}

/// Where to resume, given where the last stream started and what the controller now holds.
/// Never before what the controller holds, never past the end of the file.
fn next_offset(last_start: u64, received: u64, size: u64) -> Resume {
    if received > size {
        return Resume::Invalid(format!(
            "the controller reports {received} bytes received of a {size}-byte file"
        ));
    }
    Resume::From {
        offset: received,
        progress: received > last_start,
    }
}

enum Sent {
    Transfer(TransferError),
    /// Reading the file failed: the attempt fails.
    Local(String),
    Aborted,
}

/// One `UploadOutput` stream from `offset` to the end; the bytes the controller then holds,
/// and the file's SHA-256.
async fn send_from(
    client: &Client,
    upload: &Upload,
    offset: u64,
    kill: &KillSwitch,
) -> Result<(u64, String), Sent> {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let base = Instant::now();
    // Milliseconds after `base` at which the transport last took a chunk.
    let last_taken = Arc::new(AtomicU64::new(0));
    let stream = {
        let last_taken = Arc::clone(&last_taken);
        ReceiverStream::new(rx).map(move |chunk: UploadChunk| {
            last_taken.store(base.elapsed().as_millis() as u64, Ordering::Relaxed);
            chunk
        })
    };
    let call = client.upload_output(stream);
    // The reader thread stops when this stream is given up, whatever the reason.
    let stop = CancellationToken::new();
    let _stop_reading = stop.clone().drop_guard();
    let reader = {
        let (upload, stop) = (upload.clone(), stop.clone());
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || produce(&upload, offset, &tx, &stop, &runtime))
    };
    tokio::pin!(call, reader);
    // The SHA-256, once the reader has read the whole file.
    let mut sha256 = None;
    let mut produced = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = &mut call => {
                let received = r.map(|resp| resp.received).map_err(Sent::Transfer)?;
                if !produced {
                    // The stream ended, so the reader has returned or is about to.
                    sha256 = match (&mut reader).await {
                        Ok(Ok(sha)) => sha,
                        Ok(Err(e)) => return Err(Sent::Local(e)),
                        Err(e) => return Err(Sent::Local(format!("reading failed: {e}"))),
                    };
                }
                return match sha256 {
                    Some(sha) => Ok((received, sha)),
                    None => Err(Sent::Transfer(TransferError::Transient(
                        "the upload stream ended before the whole file was read".to_owned(),
                    ))),
                };
            }
            r = &mut reader, if !produced => {
                produced = true;
                sha256 = match r {
                    Ok(Ok(sha)) => sha,
                    Ok(Err(e)) => return Err(Sent::Local(e)),
                    Err(e) => return Err(Sent::Local(format!("reading failed: {e}"))),
                };
            }
            _ = tick.tick() => {
                let idle = base.elapsed().saturating_sub(Duration::from_millis(last_taken.load(Ordering::Relaxed)));
                if idle >= STALL {
                    return Err(Sent::Transfer(TransferError::Transient(format!(
                        "upload made no progress for {}s", idle.as_secs()
                    ))));
                }
            }
            () = kill.abort.cancelled() => return Err(Sent::Aborted),
        }
    }
}
