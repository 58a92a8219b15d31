//! `UploadOutput` decoded from the request's frames ([`Frames`]) instead of by tonic:
//! [`UploadPath`] sits inside the interceptor in front of the agent service and serves this one
//! method itself; every other call, and everything else about this one (the token check, the
//! handler, its statuses), is the agent service's.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, BytesMut};
use ferry_proto::v1 as pb;
use http_body_util::BodyExt;
use prost::Message;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

use super::super::upload_frames::{Frames, COMPRESSED, PREFIX};
use super::{AgentApi, Chunks, MAX_MESSAGE_BYTES};

/// The one method this layer serves itself.
const PATH: &str = "/ferry.v1.AgentService/UploadOutput";

/// The agent service, with `UploadOutput` decoded from the frames themselves.
#[derive(Clone)]
pub struct UploadPath<S> {
    inner: S,
    api: Arc<AgentApi>,
}

impl<S> UploadPath<S> {
    pub fn new(inner: S, api: Arc<AgentApi>) -> Self {
        Self { inner, api }
    }
}

impl<S: NamedService> NamedService for UploadPath<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for UploadPath<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<http::Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != PATH {
            return Box::pin(self.inner.call(request));
        }
        let api = Arc::clone(&self.api);
        Box::pin(async move {
            let compressed = request
                .headers()
                .get("grpc-encoding")
                .is_some_and(|e| e != "identity");
            let answer = if compressed {
                Err(Status::unimplemented(COMPRESSED))
            } else {
                let frames = Frames::new(request.into_body(), MAX_MESSAGE_BYTES);
                api.upload(Chunks::Frames(frames)).await
            };
            Ok(match answer {
                Ok(answer) => reply(&answer),
                Err(status) => status.into_http(),
            })
        })
    }
}

/// A unary gRPC answer: the message, then `grpc-status: 0` in the trailers.
fn reply(message: &pb::UploadOutputResponse) -> http::Response<Body> {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    message
        .encode(&mut buf)
        .expect("the buffer holds the encoded length");
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let body = http_body_util::Full::new(buf.freeze())
        .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) });
    let mut response = http::Response::new(Body::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}
