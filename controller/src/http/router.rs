//! The HTTP listener's routes: a handler per path prefix (`/hooks/` today; `/metrics` and a
//! console later add theirs with `Router::route`), JSON answers, and a request body read
//! under the listener's size and time limits, refused by name (413, 408).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Request, Response, StatusCode};

/// What every handler answers.
pub type Reply = Response<Full<Bytes>>;

/// A handler of the requests under its prefix; `rest` is the path after it.
#[async_trait]
pub trait Route: Send + Sync {
    async fn handle(&self, request: Request<Incoming>, rest: &str, limits: &BodyLimits) -> Reply;
}

/// How much of a request body a handler may read, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub read_timeout: Duration,
}

/// Handlers by path prefix; the longest prefix that matches takes the request.
#[derive(Default, Clone)]
pub struct Router {
    routes: Vec<(&'static str, Arc<dyn Route>)>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends the requests whose path starts with `prefix` to `handler`.
    pub fn route(mut self, prefix: &'static str, handler: Arc<dyn Route>) -> Self {
        self.routes.push((prefix, handler));
        self.routes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub async fn dispatch(&self, request: Request<Incoming>, limits: &BodyLimits) -> Reply {
        let path = request.uri().path().to_string();
        for (prefix, handler) in &self.routes {
            if let Some(rest) = path.strip_prefix(prefix) {
                return handler.handle(request, rest, limits).await;
            }
        }
        error(StatusCode::NOT_FOUND, format!("no route for {path:?}"))
    }
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(value.to_string())));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    reply
}

/// A refusal: `{"error": message}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// The whole body, or the refusal to answer: 413 past `max_bytes` (by its `Content-Length`
/// before reading, or as it arrives), 408 when it is not all there within `read_timeout`.
pub async fn read_body(request: Request<Incoming>, limits: &BodyLimits) -> Result<Bytes, Reply> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body too large: the limit is {} bytes",
                limits.max_bytes
            ),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return Err(too_large());
    }
    let body = Limited::new(request.into_body(), limits.max_bytes);
    match tokio::time::timeout(limits.read_timeout, body.collect()).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {:?}", limits.read_timeout),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("reading the request body: {e}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}
