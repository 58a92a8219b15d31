//! Direct transfers with an S3-compatible artifact store: the controller grants short-lived
//! presigned URLs for the current attempt (`GrantUpload`, `GrantDownload`), and the agent
//! moves the bytes itself over plain HTTP/1.1, so gigabytes never pass through the controller.
//!
//! Uploads: a single PUT for a small file; otherwise multipart, one part read (and hashed,
//! SHA-256, in file order) while the previous two are sent, the parts the store already holds
//! (a resumed upload) read for the hash but not sent again, then `CompleteUpload`. Downloads:
//! a GET resumed with `Range` from the bytes written. A URL refused as expired is asked for
//! again; a fenced attempt stops.

use std::{
    collections::BTreeMap, collections::HashMap, fs::File, os::unix::fs::FileExt, sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use ferry_proto::v1::{
    AttemptRef, CompleteUploadRequest, FetchInputRequest, GrantDownloadResponse,
    GrantUploadRequest, GrantUploadResponse, ResultFile, UploadedPart,
};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client as HttpClient},
    rt::TokioExecutor,
};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tracing::{debug, info};

use crate::{
    client::{Backoff, Client, FailureLog, TransferError},
    running::KillSwitch,
    upload::{hex, Stop},
};

/// One request (a part's PUT, the start of a GET) with no answer for this long is retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// A GET that delivers nothing for this long is dropped and resumed.
const STALL: Duration = Duration::from_secs(60);
/// Bytes written to disk at a time by a download.
const WRITE_BATCH: usize = 1 << 20;

/// Why one HTTP request failed.
#[derive(Debug)]
enum HttpFailure {
    /// 403: the URL expired (or its signature no longer holds): ask for a new one.
    Forbidden(String),
    /// Unreachable, reset, timed out, 5xx: try again.
    Transient(String),
    /// Any other refusal: retrying will not help.
    Refused(String),
}

fn http() -> HttpClient<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    HttpClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Where a URL points, without its query (which carries the signature): for messages.
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn failure(status: u16, what: &str, body: &[u8]) -> HttpFailure {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    let message = format!("{what}: HTTP {status}: {}", text.trim());
    match status {
        403 => HttpFailure::Forbidden(message),
        408 | 429 | 500..=599 => HttpFailure::Transient(message),
        _ => HttpFailure::Refused(message),
    }
}

/// PUTs `data` to a presigned URL; the answer's ETag.
async fn put(
    http: &HttpClient<HttpConnector, Full<Bytes>>,
    url: &str,
    data: Bytes,
) -> Result<String, HttpFailure> {
    let what = format!("PUT {}", redact(url));
    let request = Request::builder()
        .method(Method::PUT)
        .uri(url)
        .header("content-length", data.len())
        .body(Full::new(data))
        .map_err(|e| HttpFailure::Refused(format!("{what}: {e}")))?;
    let exchange = async {
        let response = http
            .request(request)
            .await
            .map_err(|e| HttpFailure::Transient(format!("{what}: {e}")))?;
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| HttpFailure::Transient(format!("{what}: reading the answer: {e}")))?
            .to_bytes();
        if !(200..300).contains(&status) {
            return Err(failure(status, &what, &body));
        }
        Ok(etag.unwrap_or_default())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            HttpFailure::Transient(format!("{what}: no answer within {REQUEST_TIMEOUT:?}"))
        })?
}

/// Retries a grant-like call while it fails transiently; stops on a fenced attempt.
async fn ask<T, F, Fut>(
    kill: &KillSwitch,
    what: &'static str,
    label: &str,
    mut call: F,
) -> Result<T, Stop>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, TransferError>>,
{
    let mut backoff = Backoff::default();
    let mut failures = FailureLog::new(what);
    loop {
        let result = tokio::select! {
            r = call() => r,
            () = kill.abort.cancelled() => return Err(Stop::Aborted),
        };
        match result {
            Ok(v) => {
                failures.recovered();
                return Ok(v);
            }
            Err(TransferError::Fenced(e)) => {
                info!(file = %label, error = %e, "attempt fenced during a transfer; stopping it");
                return Err(Stop::Aborted);
            }
            Err(TransferError::Refused(m)) => {
                return Err(Stop::Failed(if m.contains(label) {
                    m
                } else {
                    format!("{label}: {m}")
                }))
            }
            Err(e) => failures.failed(&e),
        }
        if !backoff.sleep(&kill.abort).await {
            return Err(Stop::Aborted);
        }
    }
}

/// Uploads one output straight to the object store; `None` when the controller keeps
/// artifacts itself (stream it). The file's SHA-256 otherwise.
pub(crate) async fn upload(
    client: &Client,
    attempt: &AttemptRef,
    kill: &KillSwitch,
    name: &str,
    size: u64,
    file: Arc<File>,
) -> Result<Option<String>, Stop> {
    let label = format!("output {name}");
    let request = |first_part: u32| GrantUploadRequest {
        agent: None,
        attempt: Some(attempt.clone()),
        name: name.to_owned(),
        size,
        first_part,
    };
    let grant = ask(kill, "grant_upload", &label, || {
        client.grant_upload(request(0))
    })
    .await?;
    if !grant.direct {
        return Ok(None);
    }
    let http = http();
    if grant.upload_id.is_empty() {
        return single(client, &http, kill, &label, request(0), grant, file, size)
            .await
            .map(Some);
    }
    let part_size = grant.part_size.max(1);
    let part_count = grant.part_count;
    if u64::from(part_count) != size.div_ceil(part_size) {
        return Err(Stop::Failed(format!(
            "{label}: the controller granted {part_count} parts of {part_size} bytes for {size} bytes"
        )));
    }
    let expected = |n: u32| (size - u64::from(n - 1) * part_size).min(part_size);
    // Parts the store already holds, whole: read for the hash, not sent again.
    let mut etags: BTreeMap<u32, String> = grant
        .done
        .iter()
        .filter(|p| p.number >= 1 && p.number <= part_count && p.size == expected(p.number))
        .map(|p| (p.number, p.etag.clone()))
        .collect();
    if !etags.is_empty() {
        info!(output = %name, held = etags.len(), parts = part_count, "resuming a multipart upload: parts the store holds are not sent again");
    }
    let mut urls: HashMap<u32, String> =
        grant.parts.into_iter().map(|p| (p.number, p.url)).collect();
    let upload_id = grant.upload_id;
    let read = |n: u32, hasher: Sha256| {
        let file = Arc::clone(&file);
        let (at, len) = (u64::from(n - 1) * part_size, expected(n) as usize);
        tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, Sha256)> {
            let mut hasher = hasher;
            let mut buf = vec![0; len];
            file.read_exact_at(&mut buf, at)?;
            hasher.update(&buf);
            Ok((buf, hasher))
        })
    };
    let unreadable = |e: String| Stop::Failed(format!("{label}: cannot read: {e}"));
    // Parts being sent, owned here: dropped (aborted) with this function.
    let mut sending: JoinSet<Result<(u32, String), Stop>> = JoinSet::new();
    let mut next = Some(read(1, Sha256::new()));
    let mut sha256 = String::new();
    let mut sent = 0u32;
    for n in 1..=part_count {
        let reading = next.take().expect("a read per part");
        let (data, hasher) = tokio::select! {
            r = reading => r.map_err(|e| unreadable(e.to_string()))?.map_err(|e| unreadable(e.to_string()))?,
            () = kill.abort.cancelled() => return Err(Stop::Aborted),
        };
        if etags.contains_key(&n) {
            if n < part_count {
                next = Some(read(n + 1, hasher));
            } else {
                sha256 = hex(&hasher.finalize());
            }
            continue;
        }
        // Room for this part: at most PARALLEL_PARTS in flight (memory stays bounded).
        while sending.len() >= PARALLEL_PARTS {
            let (number, etag) = joined(&mut sending, kill).await?;
            etags.insert(number, etag);
            sent += 1;
        }
        if n < part_count {
            next = Some(read(n + 1, hasher));
        } else {
            sha256 = hex(&hasher.finalize());
        }
        let url = match urls.remove(&n) {
            Some(url) => url,
            None => {
                let more = ask(kill, "grant_upload", &label, || {
                    client.grant_upload(request(n))
                })
                .await?;
                if more.upload_id != upload_id {
                    // The controller started the upload over (its size changed?): fail
                    // rather than mix two uploads.
                    return Err(Stop::Failed(format!(
                        "{label}: the controller changed the upload under way"
                    )));
                }
                urls.extend(more.parts.into_iter().map(|p| (p.number, p.url)));
                urls.remove(&n).ok_or_else(|| {
                    Stop::Failed(format!(
                        "{label}: the controller granted no URL for part {n}"
                    ))
                })?
            }
        };
        let part = Part {
            client: client.clone(),
            http: http.clone(),
            kill: kill.clone(),
            label: label.clone(),
            request: request(n),
            number: n,
            data: Bytes::from(data),
        };
        sending.spawn(part.send(url));
    }
    while !sending.is_empty() {
        let (number, etag) = joined(&mut sending, kill).await?;
        etags.insert(number, etag);
        sent += 1;
    }
    let parts: Vec<UploadedPart> = etags
        .into_iter()
        .map(|(number, etag)| UploadedPart {
            number,
            etag,
            size: expected(number),
        })
        .collect();
    let complete = CompleteUploadRequest {
        agent: None,
        attempt: Some(attempt.clone()),
        name: name.to_owned(),
        upload_id,
        parts,
    };
    let stored = ask(kill, "complete_upload", &label, || {
        client.complete_upload(complete.clone())
    })
    .await?;
    if stored != size {
        return Err(Stop::Failed(format!(
            "{label}: the store assembled {stored} bytes of {size}"
        )));
    }
    debug!(output = %name, parts = part_count, sent, "multipart upload complete");
    Ok(Some(sha256))
}

/// Parts of a multipart upload sent at once.
const PARALLEL_PARTS: usize = 2;

/// The next part sent, or why the upload stops.
async fn joined(
    sending: &mut JoinSet<Result<(u32, String), Stop>>,
    kill: &KillSwitch,
) -> Result<(u32, String), Stop> {
    let joined = tokio::select! {
        j = sending.join_next() => j,
        () = kill.abort.cancelled() => return Err(Stop::Aborted),
    };
    match joined {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(Stop::Failed(format!("sending a part failed: {e}"))),
        None => Err(Stop::Failed("no part in flight".to_owned())),
    }
}

/// One part of a multipart upload and what it takes to send it again.
struct Part {
    client: Client,
    http: HttpClient<HttpConnector, Full<Bytes>>,
    kill: KillSwitch,
    label: String,
    /// Asks for this part's URL again when one expires.
    request: GrantUploadRequest,
    number: u32,
    data: Bytes,
}

impl Part {
    /// PUTs the part, again while it fails transiently, with a new URL when one is refused
    /// (expired); the part's number and ETag.
    async fn send(self, url: String) -> Result<(u32, String), Stop> {
        let n = self.number;
        let mut url = Some(url);
        let mut backoff = Backoff::default();
        let mut failures = FailureLog::new("upload part");
        loop {
            let target = match url.take() {
                Some(url) => url,
                None => {
                    let more = ask(&self.kill, "grant_upload", &self.label, || {
                        self.client.grant_upload(self.request.clone())
                    })
                    .await?;
                    more.parts
                        .into_iter()
                        .find(|p| p.number == n)
                        .map(|p| p.url)
                        .ok_or_else(|| {
                            Stop::Failed(format!(
                                "{}: the controller granted no URL for part {n}",
                                self.label
                            ))
                        })?
                }
            };
            let result = tokio::select! {
                r = put(&self.http, &target, self.data.clone()) => r,
                () = self.kill.abort.cancelled() => return Err(Stop::Aborted),
            };
            match result {
                Ok(etag) if !etag.is_empty() => {
                    failures.recovered();
                    return Ok((n, etag));
                }
                Ok(_) => {
                    failures.failed(&format!("part {n}: the store answered no ETag"));
                    url = Some(target);
                }
                // The URL is dropped: the next turn asks for a fresh one.
                Err(HttpFailure::Forbidden(e)) => failures.failed(&e),
                Err(HttpFailure::Transient(e)) => {
                    failures.failed(&e);
                    url = Some(target);
                }
                Err(HttpFailure::Refused(e)) => {
                    return Err(Stop::Failed(format!("{}: {e}", self.label)))
                }
            }
            if !backoff.sleep(&self.kill.abort).await {
                return Err(Stop::Aborted);
            }
        }
    }
}

/// A file small enough for one PUT: read whole, hashed, sent (again while it fails).
#[allow(clippy::too_many_arguments)]
async fn single(
    client: &Client,
    http: &HttpClient<HttpConnector, Full<Bytes>>,
    kill: &KillSwitch,
    label: &str,
    request: GrantUploadRequest,
    grant: GrantUploadResponse,
    file: Arc<File>,
    size: u64,
) -> Result<String, Stop> {
    let len = usize::try_from(size).map_err(|_| Stop::Failed(format!("{label}: too large")))?;
    let (data, sha256) =
        tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, String)> {
            let mut buf = vec![0; len];
            file.read_exact_at(&mut buf, 0)?;
            let sha = hex(&Sha256::digest(&buf));
            Ok((buf, sha))
        })
        .await
        .map_err(|e| Stop::Failed(format!("{label}: cannot read: {e}")))?
        .map_err(|e| Stop::Failed(format!("{label}: cannot read: {e}")))?;
    let data = Bytes::from(data);
    let mut url = Some(grant.put_url);
    let mut backoff = Backoff::default();
    let mut failures = FailureLog::new("upload");
    loop {
        let target = match url.take() {
            Some(u) => u,
            None => {
                let again = ask(kill, "grant_upload", label, || {
                    client.grant_upload(request.clone())
                })
                .await?;
                again.put_url
            }
        };
        let result = tokio::select! {
            r = put(http, &target, data.clone()) => r,
            () = kill.abort.cancelled() => return Err(Stop::Aborted),
        };
        match result {
            Ok(_) => return Ok(sha256),
            Err(HttpFailure::Forbidden(e)) => failures.failed(&e),
            Err(HttpFailure::Transient(e)) => {
                failures.failed(&e);
                url = Some(target);
            }
            Err(HttpFailure::Refused(e)) => return Err(Stop::Failed(format!("{label}: {e}"))),
        }
        if !backoff.sleep(&kill.abort).await {
            return Err(Stop::Aborted);
        }
    }
}

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
    let http = http();
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
    http: &HttpClient<HttpConnector, Full<Bytes>>,
    url: &str,
    mut sink: Sink,
    size: u64,
    kill: &KillSwitch,
) -> Result<(Sink, Result<(), HttpFailure>), Stop> {
    let what = format!("GET {}", redact(url));
    if sink.written >= size {
        return Ok((sink, Ok(())));
    }
    let mut request = Request::builder().method(Method::GET).uri(url);
    if sink.written > 0 {
        request = request.header("range", format!("bytes={}-", sink.written));
    }
    let request = match request.body(Full::new(Bytes::new())) {
        Ok(r) => r,
        Err(e) => return Ok((sink, Err(HttpFailure::Refused(format!("{what}: {e}"))))),
    };
    let response = tokio::select! {
        r = tokio::time::timeout(REQUEST_TIMEOUT, http.request(request)) => r,
        () = kill.abort.cancelled() => return Err(Stop::Aborted),
    };
    let response = match response {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Ok((sink, Err(HttpFailure::Transient(format!("{what}: {e}"))))),
        Err(_) => {
            return Ok((
                sink,
                Err(HttpFailure::Transient(format!(
                    "{what}: no answer within {REQUEST_TIMEOUT:?}"
                ))),
            ))
        }
    };
    let status = response.status().as_u16();
    let expected = if sink.written > 0 { 206 } else { 200 };
    if status != expected {
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let fail = if (200..300).contains(&status) {
            HttpFailure::Refused(format!(
                "{what}: HTTP {status} where {expected} was expected"
            ))
        } else {
            failure(status, &what, &body)
        };
        return Ok((sink, Err(fail)));
    }
    let mut body = response.into_body();
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    loop {
        let frame = tokio::select! {
            f = tokio::time::timeout(STALL, body.frame()) => f,
            () = kill.abort.cancelled() => return Err(Stop::Aborted),
        };
        let (data, end) = match frame {
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => (data, false),
                Err(_) => continue,
            },
            Ok(None) => (Bytes::new(), true),
            Ok(Some(Err(e))) => {
                sink = flush(sink, std::mem::take(&mut batch), size).await?;
                return Ok((sink, Err(HttpFailure::Transient(format!("{what}: {e}")))));
            }
            Err(_) => {
                sink = flush(sink, std::mem::take(&mut batch), size).await?;
                return Ok((
                    sink,
                    Err(HttpFailure::Transient(format!(
                        "{what}: no data for {}s",
                        STALL.as_secs()
                    ))),
                ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_signature_in_messages() {
        assert_eq!(
            redact("http://127.0.0.1:9000/b/k?X-Amz-Signature=abc"),
            "http://127.0.0.1:9000/b/k"
        );
        assert!(matches!(
            failure(403, "PUT x", b"expired"),
            HttpFailure::Forbidden(_)
        ));
        assert!(matches!(
            failure(503, "PUT x", b""),
            HttpFailure::Transient(_)
        ));
        assert!(matches!(
            failure(400, "PUT x", b"<Error/>"),
            HttpFailure::Refused(_)
        ));
    }
}
