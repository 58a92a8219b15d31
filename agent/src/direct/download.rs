//! Downloads of inputs straight from the object store: a GET of the presigned URL
//! (`ferry_tls::presigned`, shared with the CLI), resumed with `Range` from the bytes
//! written, written and hashed as it arrives.

use std::{fs::File, time::Duration};

use bytes::Bytes;
use ferry_proto::v1::{AttemptRef, FetchInputRequest, GrantDownloadResponse, ResultFile};
use ferry_tls::presigned;
use sha2::{Digest, Sha256};
use tracing::debug;

use super::{ask, http, redact, Http, HttpFailure, REQUEST_TIMEOUT};
use crate::{
    client::{Backoff, Client, FailureLog},
    running::KillSwitch,
    transfer::Stop,
};

/// A GET that delivers nothing for this long is dropped and resumed.
const STALL: Duration = Duration::from_secs(60);
/// Bytes written to disk at a time by a download.
const WRITE_BATCH: usize = 1 << 20;

/// The file an input is written to, and the hash of what it holds.
pub(crate) struct Sink {
    pub file: File,
    pub hasher: Sha256,
    pub written: u64,
}

/// Downloads one input from the object store into `sink`; `Err(sink)` untouched when the
/// controller keeps artifacts itself (fetch it with `FetchInput`).
pub(crate) async fn download(
    client: &Client,
    attempt: &AttemptRef,
    kill: &KillSwitch,
    input: &ResultFile,
    sink: Sink,
) -> Result<Result<Sink, Sink>, Stop> {
    let label = format!("input {}/{}", input.task_id, input.name);
    let request = FetchInputRequest {
        agent: None,
        attempt: Some(attempt.clone()),
        task_id: input.task_id.clone(),
        name: input.name.clone(),
        offset: 0,
    };
    let grant: GrantDownloadResponse = ask(kill, "grant_download", &label, || {
        client.grant_download(request.clone())
    })
    .await?;
    if !grant.direct {
        return Ok(Err(sink));
    }
    let http = http()?;
    let mut url = Some(grant.url);
    let mut sink = Some(sink);
    let mut backoff = Backoff::default();
    let mut failures = FailureLog::new("download");
    loop {
        let target = match url.take() {
            Some(u) => u,
            None => {
                ask(kill, "grant_download", &label, || {
                    client.grant_download(request.clone())
                })
                .await?
                .url
            }
        };
        let s = sink.take().expect("kept between requests");
        let before = s.written;
        let (s, result) = get_into(&http, &target, s, input.size, kill).await?;
        match result {
            Ok(()) => {
                failures.recovered();
                return Ok(Ok(s));
            }
            Err(HttpFailure::Forbidden(e)) => failures.failed(&e),
            Err(HttpFailure::Transient(e)) => {
                failures.failed(&e);
                url = Some(target);
            }
            Err(HttpFailure::Refused(e)) => return Err(Stop::Failed(format!("{label}: {e}"))),
        }
        if s.written > before {
            backoff.reset();
        }
        debug!(input = %label, from = s.written, "resuming input download");
        sink = Some(s);
        if !backoff.sleep(&kill.abort).await {
            return Err(Stop::Aborted);
        }
    }
}

/// One GET from `sink.written` to the end, written as it arrives. The sink always comes back
/// (holding what was written) with how the request ended.
async fn get_into(
    http: &Http,
    url: &str,
    mut sink: Sink,
    size: u64,
    kill: &KillSwitch,
) -> Result<(Sink, Result<(), HttpFailure>), Stop> {
    let what = format!("GET {}", redact(url));
    if sink.written >= size {
        return Ok((sink, Ok(())));
    }
    let response = tokio::select! {
        r = presigned::get(http, url, sink.written, REQUEST_TIMEOUT) => r,
        () = kill.abort.cancelled() => return Err(Stop::Aborted),
    };
    let mut body = match response {
        Ok(body) => body,
        Err(e) => return Ok((sink, Err(HttpFailure::of(&what, e)))),
    };
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    loop {
        let data = tokio::select! {
            d = presigned::next(&mut body, STALL) => d,
            () = kill.abort.cancelled() => return Err(Stop::Aborted),
        };
        let (data, end) = match data {
            Ok(Some(data)) => (data, false),
            Ok(None) => (Bytes::new(), true),
            Err(e) => {
                sink = flush(sink, std::mem::take(&mut batch), size).await?;
                return Ok((sink, Err(HttpFailure::of(&what, e))));
            }
        };
        batch.extend_from_slice(&data);
        if batch.len() >= WRITE_BATCH || end {
            sink = flush(
                sink,
                std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BATCH)),
                size,
            )
            .await?;
        }
        if end {
            return Ok((sink, Ok(())));
        }
    }
}

/// Appends `data` to the sink's file and hash, off the async workers.
async fn flush(mut sink: Sink, data: Vec<u8>, size: u64) -> Result<Sink, Stop> {
    if data.is_empty() {
        return Ok(sink);
    }
    if sink.written + data.len() as u64 > size {
        return Err(Stop::Failed(format!(
            "the store sent more than its size of {size} bytes"
        )));
    }
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        sink.file.write_all(&data)?;
        sink.hasher.update(&data);
        sink.written += data.len() as u64;
        Ok::<_, std::io::Error>(sink)
    })
    .await
    .map_err(|e| Stop::Failed(e.to_string()))?
    .map_err(|e| Stop::Failed(format!("cannot write: {e}")))
}
