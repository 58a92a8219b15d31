//! The HTTP plumbing of `S3Client`: where a key lives (host and path, path-style or virtual
//! hosted), signing and sending one request and reading its whole answer within the timeout,
//! and presigning a URL.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};

use super::error::service_error;
use super::{S3Client, S3Error};
use crate::s3::sigv4::{self, PresignError};
use crate::s3::time::Timestamp;
use ferry_tls::error_chain;

/// A whole answer of the store.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl S3Client {
    pub(super) fn target(&self, key: Option<&str>) -> String {
        match key {
            Some(key) => format!("s3://{}/{}", self.config.location.bucket, key),
            None => format!("s3://{}", self.config.location.bucket),
        }
    }

    /// The `Host` value and the URI-encoded path of `key` (or of the bucket for `None`).
    pub(super) fn host_and_path(&self, key: Option<&str>) -> (String, String) {
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
    pub(super) async fn send(
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

    pub(super) fn presign(
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
}

pub(super) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
