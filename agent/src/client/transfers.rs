//! The bulk transfers' calls: an output streamed or granted presigned URLs and assembled, the
//! bytes the controller holds of one, and an input streamed or granted a presigned URL; their
//! failures classed as `TransferError`.

use std::time::Duration;

use ferry_proto::v1::{
    AttemptRef, CompleteUploadRequest, DataChunk, FetchInputRequest, GrantDownloadResponse,
    GrantUploadRequest, GrantUploadResponse, UploadChunk, UploadOutputResponse,
    UploadStatusRequest,
};
use tonic::{Code, Status};

use super::{Client, TransferError, RPC_TIMEOUT};

impl Client {
    /// Streams one output. No deadline: a large file takes what it takes; the caller watches
    /// the stream's progress and drops the call when it stalls.
    pub async fn upload_output(
        &self,
        chunks: impl tokio_stream::Stream<Item = UploadChunk> + Send + 'static,
    ) -> Result<UploadOutputResponse, TransferError> {
        let mut request = tonic::Request::new(chunks);
        self.authorize(&mut request);
        let (at, target) = self.target();
        let mut client = target.bulk.clone();
        let result = client.upload_output(request).await;
        self.heard(at, &result);
        result
            .map(tonic::Response::into_inner)
            .map_err(|s| TransferError::from_status(&s))
    }

    /// Bytes of `name` the controller holds for the attempt.
    pub async fn upload_status(
        &self,
        attempt: &AttemptRef,
        name: &str,
    ) -> Result<u64, TransferError> {
        let mut request = tonic::Request::new(UploadStatusRequest {
            agent: self.identity(),
            attempt: Some(attempt.clone()),
            name: name.to_owned(),
        });
        request.set_timeout(RPC_TIMEOUT);
        self.authorize(&mut request);
        let (at, target) = self.target();
        let mut client = target.bulk.clone();
        match self
            .answer(at, RPC_TIMEOUT, client.upload_status(request))
            .await
        {
            Ok(response) => Ok(response.received),
            // Nothing of that name yet (how a controller may say so): resume from the start.
            Err(Some(status)) if status.code() == Code::NotFound => Ok(0),
            Err(e) => Err(transfer_error(e, RPC_TIMEOUT)),
        }
    }

    /// Opens the stream of one input file from `req.offset`. No deadline: the caller watches
    /// the stream for stalls.
    pub async fn fetch_input(
        &self,
        mut req: FetchInputRequest,
    ) -> Result<tonic::Streaming<DataChunk>, TransferError> {
        req.agent = self.identity();
        let mut request = tonic::Request::new(req);
        self.authorize(&mut request);
        let (at, target) = self.target();
        let mut client = target.bulk.clone();
        self.answer(at, RPC_TIMEOUT, client.fetch_input(request))
            .await
            .map_err(|e| transfer_error(e, RPC_TIMEOUT))
    }

    /// URLs to PUT one output straight to the object store (`direct = false`: stream it).
    pub async fn grant_upload(
        &self,
        mut req: GrantUploadRequest,
    ) -> Result<GrantUploadResponse, TransferError> {
        req.agent = self.identity();
        let mut request = tonic::Request::new(req);
        request.set_timeout(RPC_TIMEOUT);
        self.authorize(&mut request);
        let (at, target) = self.target();
        let mut client = target.inner.clone();
        match self
            .answer(at, RPC_TIMEOUT, client.grant_upload(request))
            .await
        {
            Ok(response) => Ok(response),
            // A controller from before object stores: stream to it.
            Err(Some(status)) if status.code() == Code::Unimplemented => {
                Ok(GrantUploadResponse::default())
            }
            Err(e) => Err(transfer_error(e, RPC_TIMEOUT)),
        }
    }

    /// Assembles a multipart upload; the object's size.
    pub async fn complete_upload(
        &self,
        mut req: CompleteUploadRequest,
    ) -> Result<u64, TransferError> {
        req.agent = self.identity();
        let mut request = tonic::Request::new(req);
        // Assembling gigabytes takes the store a while.
        let timeout = RPC_TIMEOUT * 12;
        request.set_timeout(timeout);
        self.authorize(&mut request);
        let (at, target) = self.target();
        let mut client = target.inner.clone();
        self.answer(at, timeout, client.complete_upload(request))
            .await
            .map(|response| response.size)
            .map_err(|e| transfer_error(e, timeout))
    }

    /// A presigned URL of one input (`direct = false`: fetch it with `fetch_input`).
    pub async fn grant_download(
        &self,
        mut req: FetchInputRequest,
    ) -> Result<GrantDownloadResponse, TransferError> {
        req.agent = self.identity();
        let mut request = tonic::Request::new(req);
        request.set_timeout(RPC_TIMEOUT);
        self.authorize(&mut request);
        let (at, target) = self.target();
        let mut client = target.inner.clone();
        match self
            .answer(at, RPC_TIMEOUT, client.grant_download(request))
            .await
        {
            Ok(response) => Ok(response),
            Err(Some(status)) if status.code() == Code::Unimplemented => {
                Ok(GrantDownloadResponse::default())
            }
            Err(e) => Err(transfer_error(e, RPC_TIMEOUT)),
        }
    }
}

/// A transfer call's failure (`None`: no answer within `timeout`), classed for its caller.
fn transfer_error(error: Option<Status>, timeout: Duration) -> TransferError {
    match error {
        Some(status) => TransferError::from_status(&status),
        None => TransferError::Transient(format!("no answer within {timeout:?}")),
    }
}
