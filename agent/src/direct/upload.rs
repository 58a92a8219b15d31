//! Uploads straight to the object store: a single PUT for a small file; otherwise multipart,
//! each part read (and hashed, SHA-256, in file order) while up to two are sent, the parts the
//! store already holds read for the hash but not sent again, then `CompleteUpload`.

use std::{
    collections::BTreeMap, collections::HashMap, fs::File, os::unix::fs::FileExt, sync::Arc,
};

use bytes::Bytes;
use ferry_proto::v1::{
    AttemptRef, CompleteUploadRequest, GrantUploadRequest, GrantUploadResponse, UploadedPart,
};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tracing::{debug, info};

use super::{ask, http, put, Http, HttpFailure};
use crate::{
    client::{Backoff, Client, FailureLog},
    running::KillSwitch,
    transfer::{hex, Stop},
};

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
    let http = http()?;
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
    http: Http,
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
    http: &Http,
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
