//! `S3Client`: the operations the controller needs (small puts, multipart create/complete/
//! abort, presigned part/GET/PUT URLs, HEAD, DELETE, ListObjectsV2) over HTTP/1.1.
//!
//! `http://` and `https://` endpoints (hyper with `ferry_tls::https`'s connector, which
//! trusts the system's CAs and `AWS_CA_BUNDLE`'s).
//!
//! Here the client itself (building it, its settings); the operations are split by concern:
//! `objects` (the bucket, single objects, listings), `multipart` (multipart uploads and their
//! presigned parts), `http` (signing, sending and reading one request) and `error` (`S3Error`).

mod error;
mod http;
mod multipart;
mod objects;
#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::location::S3Config;
use super::sigv4::Signer;

pub use error::S3Error;
pub use multipart::MAX_PART_NUMBER;
pub use objects::{ListPage, ListedObject, ObjectMeta};

/// How long one request (sending it and reading the whole answer) may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A client for one bucket (and prefix) of an S3-compatible store. Cheap to clone.
#[derive(Clone)]
pub struct S3Client {
    http: Client<ferry_tls::https::Connector, Full<Bytes>>,
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
        let connector = ferry_tls::https::connector(Duration::from_secs(10)).map_err(|source| {
            S3Error::Tls {
                endpoint: config.endpoint.to_string(),
                source,
            }
        })?;
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
}
