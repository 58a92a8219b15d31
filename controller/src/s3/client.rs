//! `S3Client`: the operations the controller needs (small puts, multipart create/complete/
//! abort, presigned part/GET/PUT URLs, HEAD, DELETE, ListObjectsV2) over HTTP/1.1.
//!
//! Plain `http://` endpoints only for now (hyper's HTTP connector); an `https://` endpoint is
//! refused by `new` until a TLS connector is added.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::location::{S3Config, Scheme};
use super::sigv4::{self, PresignError, Signer};
use super::time::Timestamp;
use super::xml;

/// How long one request (sending it and reading the whole answer) may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// S3 numbers parts from 1 to 10000.
pub const MAX_PART_NUMBER: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The server answered with an error (`code` and `message` from its XML body, or the
    /// status's name when it sent none, as for HEAD).
    #[error("S3 {op} {target}: HTTP {status} {code}: {message}")]
    Service {
        op: &'static str,
        target: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("S3 {op} {target}: {detail}")]
    Transport {
        op: &'static str,
        target: String,
        detail: String,
    },
    #[error("S3 {op} {target}: no complete answer within {timeout:?}")]
    Timeout {
        op: &'static str,
        target: String,
        timeout: Duration,
    },
    #[error("S3 {op} {target}: unexpected answer: {detail}")]
    Malformed {
        op: &'static str,
        target: String,
        detail: String,
    },
    #[error("S3 {op} {target}: {detail}")]
    Invalid {
        op: &'static str,
        target: String,
        detail: String,
    },
    #[error("S3 endpoint {endpoint}: https is not supported yet; use an http:// endpoint")]
    UnsupportedScheme { endpoint: String },
}

impl S3Error {
    /// S3's error code (`NoSuchKey`, `SignatureDoesNotMatch`…), for a server's refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            S3Error::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, for a server's refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            S3Error::Service { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What HEAD tells of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// As S3 sends it, quotes included.
    pub etag: String,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub etag: String,
}

/// One page of ListObjectsV2 and the token of the next, if any.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    pub next: Option<String>,
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

/// A client for one bucket (and prefix) of an S3-compatible store. Cheap to clone.
#[derive(Clone)]
pub struct S3Client {
    http: Client<HttpConnector, Full<Bytes>>,
    config: S3Config,
    signer: Signer,
    timeout: Duration,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("config", &self.config)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl S3Client {
    pub fn new(config: S3Config) -> Result<Self, S3Error> {
        if config.endpoint.scheme == Scheme::Https {
            return Err(S3Error::UnsupportedScheme {
                endpoint: config.endpoint.to_string(),
            });
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let signer = Signer::new(config.credentials.clone(), config.region.clone());
        Ok(S3Client {
            http,
            config,
            signer,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Bounds each request, answer included.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// The full object key of `name` under the configured prefix.
    pub fn key(&self, name: &str) -> String {
        self.config.location.key(name)
    }

    fn target(&self, key: Option<&str>) -> String {
        match key {
            Some(key) => format!("s3://{}/{}", self.config.location.bucket, key),
            None => format!("s3://{}", self.config.location.bucket),
        }
    }

    /// The `Host` value and the URI-encoded path of `key` (or of the bucket for `None`).
    fn host_and_path(&self, key: Option<&str>) -> (String, String) {
        let endpoint = &self.config.endpoint;
        let bucket = &self.config.location.bucket;
        let encoded_key = key.map(|k| sigv4::uri_encode(k, false));
        if self.config.path_style {
            let path = match encoded_key {
                Some(k) => format!("/{bucket}/{k}"),
                None => format!("/{bucket}"),
            };
            (endpoint.authority(&endpoint.host), path)
        } else {
            let host = endpoint.authority(&format!("{bucket}.{}", endpoint.host));
            (host, format!("/{}", encoded_key.unwrap_or_default()))
        }
    }

    fn url(&self, host: &str, path: &str, query: &str) -> String {
        let scheme = self.config.endpoint.scheme_str();
        if query.is_empty() {
            format!("{scheme}://{host}{path}")
        } else {
            format!("{scheme}://{host}{path}?{query}")
        }
    }

    /// Sends one signed request and reads the whole answer; a status outside 2xx becomes
    /// `S3Error::Service`.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        op: &'static str,
        method: Method,
        key: Option<&str>,
        query: &[(String, String)],
        extra_headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, S3Error> {
        let target = self.target(key);
        let (host, path) = self.host_and_path(key);
        let url = self.url(&host, &path, &sigv4::canonical_query(query));
        let payload_hash = if body.is_empty() {
            sigv4::EMPTY_SHA256.to_string()
        } else {
            sigv4::sha256_hex(&body)
        };
        let mut headers: Vec<(String, String)> = vec![("host".into(), host)];
        headers.extend(
            extra_headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone())),
        );
        self.signer.sign_headers(
            method.as_str(),
            &path,
            query,
            &mut headers,
            &payload_hash,
            Timestamp::now(),
        );
        let mut request = Request::builder().method(method.clone()).uri(&url);
        for (name, value) in &headers {
            let name = HeaderName::from_bytes(name.as_bytes());
            let value = HeaderValue::from_str(value);
            let (Ok(name), Ok(value)) = (name, value) else {
                return Err(S3Error::Invalid {
                    op,
                    target,
                    detail: "a header is not valid HTTP".into(),
                });
            };
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| S3Error::Invalid {
                op,
                target: target.clone(),
                detail: format!("building the request: {e}"),
            })?;

        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| S3Error::Transport {
                    op,
                    target: target.clone(),
                    detail: error_chain(&e),
                })?;
            let status = response.status().as_u16();
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| S3Error::Transport {
                    op,
                    target: target.clone(),
                    detail: format!("reading the answer: {}", error_chain(&e)),
                })?
                .to_bytes();
            Ok::<_, S3Error>(Answer {
                status,
                headers: parts.headers,
                body,
            })
        };
        let answer = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| S3Error::Timeout {
                op,
                target: target.clone(),
                timeout: self.timeout,
            })??;
        if !(200..300).contains(&answer.status) {
            return Err(service_error(op, target, answer.status, &answer.body));
        }
        Ok(answer)
    }

    fn presign(
        &self,
        op: &'static str,
        method: &str,
        key: &str,
        query: &[(String, String)],
        expires: Duration,
    ) -> Result<String, S3Error> {
        let (host, path) = self.host_and_path(Some(key));
        let signed = self
            .signer
            .presign_query(
                method,
                &host,
                &path,
                query,
                expires.as_secs(),
                Timestamp::now(),
            )
            .map_err(|e: PresignError| S3Error::Invalid {
                op,
                target: self.target(Some(key)),
                detail: e.to_string(),
            })?;
        Ok(self.url(&host, &path, &signed))
    }

    /// Creates the configured bucket (in the configured region).
    pub async fn create_bucket(&self) -> Result<(), S3Error> {
        let body = if self.config.region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                xml::escape(&self.config.region)
            ))
        };
        self.send("CreateBucket", Method::PUT, None, &[], &[], body)
            .await?;
        Ok(())
    }

    /// Stores a small object in one request; returns its ETag.
    pub async fn put_object(&self, key: &str, body: Bytes) -> Result<String, S3Error> {
        let answer = self
            .send("PutObject", Method::PUT, Some(key), &[], &[], body)
            .await?;
        Ok(header(&answer.headers, "etag").unwrap_or_default())
    }

    /// Reads a whole object into memory (for small objects: manifests, tests).
    pub async fn get_object(&self, key: &str) -> Result<Bytes, S3Error> {
        let answer = self
            .send("GetObject", Method::GET, Some(key), &[], &[], Bytes::new())
            .await?;
        Ok(answer.body)
    }

    /// Size and ETag of `key`, or `None` if there is no such object.
    pub async fn head_object(&self, key: &str) -> Result<Option<ObjectMeta>, S3Error> {
        let op = "HeadObject";
        let answer = match self
            .send(op, Method::HEAD, Some(key), &[], &[], Bytes::new())
            .await
        {
            Ok(answer) => answer,
            Err(S3Error::Service { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = header(&answer.headers, "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| S3Error::Malformed {
                op,
                target: self.target(Some(key)),
                detail: "no Content-Length".into(),
            })?;
        Ok(Some(ObjectMeta {
            size,
            etag: header(&answer.headers, "etag").unwrap_or_default(),
        }))
    }

    /// Starts a multipart upload of `key`; returns its upload id.
    pub async fn create_multipart_upload(&self, key: &str) -> Result<String, S3Error> {
        let op = "CreateMultipartUpload";
        let query = [("uploads".to_string(), String::new())];
        let answer = self
            .send(op, Method::POST, Some(key), &query, &[], Bytes::new())
            .await?;
        let text = String::from_utf8_lossy(&answer.body);
        xml::tag(&text, "UploadId")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| S3Error::Malformed {
                op,
                target: self.target(Some(key)),
                detail: "no UploadId".into(),
            })
    }

    /// A URL the holder can `PUT` part `part_number` (1 to 10000) of the upload to, for
    /// `expires`. The answer's `ETag` header names the part for `complete_multipart_upload`.
    pub fn presign_upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        expires: Duration,
    ) -> Result<String, S3Error> {
        let op = "UploadPart";
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(S3Error::Invalid {
                op,
                target: self.target(Some(key)),
                detail: format!("part number {part_number} is not from 1 to {MAX_PART_NUMBER}"),
            });
        }
        let query = [
            ("partNumber".to_string(), part_number.to_string()),
            ("uploadId".to_string(), upload_id.to_string()),
        ];
        self.presign(op, "PUT", key, &query, expires)
    }

    /// Assembles the object from `parts` (number, ETag as returned by each part's PUT), in
    /// ascending part order; returns the object's ETag.
    pub async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<String, S3Error> {
        let op = "CompleteMultipartUpload";
        let mut sorted: Vec<&(u32, String)> = parts.iter().collect();
        sorted.sort_by_key(|(number, _)| *number);
        let mut body = String::from("<CompleteMultipartUpload>");
        for (number, etag) in sorted {
            body.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                xml::escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let query = [("uploadId".to_string(), upload_id.to_string())];
        let answer = self
            .send(op, Method::POST, Some(key), &query, &[], Bytes::from(body))
            .await?;
        // S3 may answer 200 and still fail: the error is then in the body.
        let text = String::from_utf8_lossy(&answer.body);
        if text.contains("<Error>") {
            return Err(service_error(
                op,
                self.target(Some(key)),
                answer.status,
                &answer.body,
            ));
        }
        Ok(xml::tag(&text, "ETag")
            .or_else(|| header(&answer.headers, "etag"))
            .unwrap_or_default())
    }

    /// Abandons a multipart upload and frees its parts.
    pub async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let query = [("uploadId".to_string(), upload_id.to_string())];
        self.send(
            "AbortMultipartUpload",
            Method::DELETE,
            Some(key),
            &query,
            &[],
            Bytes::new(),
        )
        .await?;
        Ok(())
    }

    /// A URL the holder can `GET` `key` from, for `expires`.
    pub fn presign_get(&self, key: &str, expires: Duration) -> Result<String, S3Error> {
        self.presign("GetObject", "GET", key, &[], expires)
    }

    /// A URL the holder can `PUT` `key` to in one request, for `expires`.
    pub fn presign_put(&self, key: &str, expires: Duration) -> Result<String, S3Error> {
        self.presign("PutObject", "PUT", key, &[], expires)
    }

    /// Deletes `key` (no error if it does not exist).
    pub async fn delete_object(&self, key: &str) -> Result<(), S3Error> {
        self.send(
            "DeleteObject",
            Method::DELETE,
            Some(key),
            &[],
            &[],
            Bytes::new(),
        )
        .await?;
        Ok(())
    }

    /// Deletes every key, one DELETE each (DeleteObjects would need a Content-MD5), stopping
    /// at the first failure.
    pub async fn delete_objects(&self, keys: &[String]) -> Result<(), S3Error> {
        for key in keys {
            self.delete_object(key).await?;
        }
        Ok(())
    }

    /// One page of the keys starting with `prefix`, after `continuation` (from the previous
    /// page's `next`), at most `max_keys` (1 to 1000).
    pub async fn list_objects_v2_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, S3Error> {
        let op = "ListObjectsV2";
        let mut query = vec![
            ("list-type".to_string(), "2".to_string()),
            ("max-keys".to_string(), max_keys.clamp(1, 1000).to_string()),
            ("prefix".to_string(), prefix.to_string()),
        ];
        if let Some(token) = continuation {
            query.push(("continuation-token".to_string(), token.to_string()));
        }
        let answer = self
            .send(op, Method::GET, None, &query, &[], Bytes::new())
            .await?;
        let text = String::from_utf8_lossy(&answer.body);
        let malformed = |detail: String| S3Error::Malformed {
            op,
            target: self.target(None),
            detail,
        };
        let mut objects = Vec::new();
        for block in xml::blocks(&text, "Contents") {
            let key =
                xml::tag(block, "Key").ok_or_else(|| malformed("an entry has no Key".into()))?;
            let size = xml::tag(block, "Size")
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| malformed(format!("{key:?} has no Size")))?;
            objects.push(ListedObject {
                key,
                size,
                etag: xml::tag(block, "ETag").unwrap_or_default(),
            });
        }
        let truncated = xml::tag(&text, "IsTruncated").is_some_and(|t| t.trim() == "true");
        let next = if truncated {
            Some(
                xml::tag(&text, "NextContinuationToken")
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| malformed("truncated without NextContinuationToken".into()))?,
            )
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }

    /// The parts of a multipart upload the store holds: (number, ETag, size), in order.
    /// `NoSuchUpload` when the upload was completed or aborted.
    pub async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<(u32, String, u64)>, S3Error> {
        let op = "ListParts";
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut query = vec![
                ("max-parts".to_string(), "1000".to_string()),
                ("uploadId".to_string(), upload_id.to_string()),
            ];
            if let Some(marker) = &marker {
                query.push(("part-number-marker".to_string(), marker.clone()));
            }
            let answer = self
                .send(op, Method::GET, Some(key), &query, &[], Bytes::new())
                .await?;
            let text = String::from_utf8_lossy(&answer.body);
            let malformed = |detail: &str| S3Error::Malformed {
                op,
                target: self.target(Some(key)),
                detail: detail.to_string(),
            };
            for block in xml::blocks(&text, "Part") {
                let number = xml::tag(block, "PartNumber")
                    .and_then(|n| n.trim().parse().ok())
                    .ok_or_else(|| malformed("a part has no PartNumber"))?;
                let size = xml::tag(block, "Size")
                    .and_then(|n| n.trim().parse().ok())
                    .ok_or_else(|| malformed("a part has no Size"))?;
                let etag =
                    xml::tag(block, "ETag").ok_or_else(|| malformed("a part has no ETag"))?;
                parts.push((number, etag, size));
            }
            let truncated = xml::tag(&text, "IsTruncated").is_some_and(|t| t.trim() == "true");
            match xml::tag(&text, "NextPartNumberMarker").filter(|m| !m.is_empty()) {
                Some(next) if truncated => marker = Some(next),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.0);
        Ok(parts)
    }

    /// The multipart uploads in progress whose keys start with `prefix`: (key, upload id),
    /// oldest first within a key.
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, S3Error> {
        let op = "ListMultipartUploads";
        let mut uploads = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![
                ("prefix".to_string(), prefix.to_string()),
                ("uploads".to_string(), String::new()),
            ];
            if let Some((key, id)) = &markers {
                query.push(("key-marker".to_string(), key.clone()));
                query.push(("upload-id-marker".to_string(), id.clone()));
            }
            let answer = self
                .send(op, Method::GET, None, &query, &[], Bytes::new())
                .await?;
            let text = String::from_utf8_lossy(&answer.body);
            for block in xml::blocks(&text, "Upload") {
                if let (Some(key), Some(id)) = (xml::tag(block, "Key"), xml::tag(block, "UploadId"))
                {
                    // Some servers ignore `prefix` here: filter again.
                    if key.starts_with(prefix) {
                        uploads.push((key, id));
                    }
                }
            }
            let truncated = xml::tag(&text, "IsTruncated").is_some_and(|t| t.trim() == "true");
            let next = (
                xml::tag(&text, "NextKeyMarker").unwrap_or_default(),
                xml::tag(&text, "NextUploadIdMarker").unwrap_or_default(),
            );
            if !truncated || next.0.is_empty() {
                return Ok(uploads);
            }
            markers = Some(next);
        }
    }

    /// Every object whose key starts with `prefix`, following continuation tokens.
    pub async fn list_objects_v2(&self, prefix: &str) -> Result<Vec<ListedObject>, S3Error> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_objects_v2_page(prefix, token.as_deref(), 1000)
                .await?;
            all.extend(page.objects);
            match page.next {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `S3Error::Service` from an error answer: `<Code>` and `<Message>` when the body has them,
/// else the status's name.
pub(crate) fn service_error(op: &'static str, target: String, status: u16, body: &[u8]) -> S3Error {
    let text = String::from_utf8_lossy(body);
    let code = xml::tag(&text, "Code").filter(|c| !c.is_empty());
    let message = xml::tag(&text, "Message").filter(|m| !m.is_empty());
    let reason = hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error");
    S3Error::Service {
        op,
        target,
        status,
        code: code.unwrap_or_else(|| reason.replace(' ', "")),
        message: message.unwrap_or_else(|| "(no message)".to_string()),
    }
}

/// An error and its causes, `: `-separated (hyper's own text is terse).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::location::{S3Options, Secret};

    fn client(url: &str, endpoint: &str, path_style: bool) -> S3Client {
        let options = S3Options {
            endpoint: Some(endpoint.into()),
            access_key_id: Some("AKID".into()),
            secret_access_key: Some(Secret("secret".into())),
            path_style: Some(path_style),
            ..S3Options::default()
        };
        S3Client::new(S3Config::resolve(url, &options, &|_| None).unwrap()).unwrap()
    }

    #[test]
    fn s3_client_builds_path_style_and_virtual_hosted_urls() {
        let c = client("s3://bkt/pre", "http://127.0.0.1:9000", true);
        assert_eq!(c.key("a b/c"), "pre/a b/c");
        let (host, path) = c.host_and_path(Some("pre/a b/c"));
        assert_eq!(
            (host.as_str(), path.as_str()),
            ("127.0.0.1:9000", "/bkt/pre/a%20b/c")
        );
        let url = c.presign_get("pre/a b/c", Duration::from_secs(60)).unwrap();
        assert!(
            url.starts_with("http://127.0.0.1:9000/bkt/pre/a%20b/c?X-Amz-Algorithm="),
            "{url}"
        );

        let c = client("s3://bkt", "http://s3.local", false);
        let (host, path) = c.host_and_path(Some("k"));
        assert_eq!((host.as_str(), path.as_str()), ("bkt.s3.local", "/k"));
    }

    #[test]
    fn s3_client_refuses_https_and_bad_arguments() {
        let options = S3Options {
            endpoint: Some("https://s3.example.com".into()),
            access_key_id: Some("AKID".into()),
            secret_access_key: Some(Secret("secret".into())),
            ..S3Options::default()
        };
        let config = S3Config::resolve("s3://bkt", &options, &|_| None).unwrap();
        let err = S3Client::new(config).unwrap_err().to_string();
        assert!(err.contains("https is not supported yet"), "{err}");

        let c = client("s3://bkt", "http://127.0.0.1:9000", true);
        let err = c
            .presign_upload_part("k", "id", 0, Duration::from_secs(60))
            .unwrap_err()
            .to_string();
        assert!(err.contains("part number 0"), "{err}");
        let err = c.presign_get("k", Duration::ZERO).unwrap_err().to_string();
        assert!(err.contains("1 to 604800 seconds"), "{err}");
    }

    #[test]
    fn s3_client_reads_error_answers() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code>\
                     <Message>The key &quot;k&quot; does not exist</Message></Error>";
        let err = service_error("GetObject", "s3://b/k".into(), 404, body);
        assert_eq!(err.code(), Some("NoSuchKey"));
        assert_eq!(err.status(), Some(404));
        assert_eq!(
            err.to_string(),
            "S3 GetObject s3://b/k: HTTP 404 NoSuchKey: The key \"k\" does not exist"
        );
        let err = service_error("HeadObject", "s3://b/k".into(), 403, b"");
        assert_eq!(err.code(), Some("Forbidden"));
    }
}
