//! `WatchJob` from a test or a benchmark: a reader that puts the stream's events together
//! (`ferry_proto::watch::JobView`) and keeps what it saw, on a connection of its own or one
//! with narrow HTTP/2 windows (to play a client that stops reading).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{
    job_service_client::JobServiceClient, watch_job_event::Kind, Job, WatchJobEvent,
    WatchJobRequest,
};
use ferry_proto::watch::JobView;
use tonic::Streaming;

use crate::grpc::{endpoint, job_client};

/// What one event carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// A snapshot part (`first`, `resync`) or a delta (`None`).
    pub snapshot: Option<(bool, bool)>,
    pub tasks: usize,
    pub complete: bool,
}

/// A reading watcher.
pub struct Watcher {
    stream: Streaming<WatchJobEvent>,
    view: JobView,
    seen: Vec<Seen>,
}

impl Watcher {
    /// Opens a watch of `job_id` on the controller at `addr`, on a connection of its own.
    pub async fn open(addr: &str, job_id: &str) -> Result<Self> {
        let client = job_client(addr).await?;
        Self::open_with(client, job_id).await
    }

    /// Opens a watch on `client`'s connection.
    pub async fn open_with(
        mut client: JobServiceClient<tonic::transport::Channel>,
        job_id: &str,
    ) -> Result<Self> {
        let stream = client
            .watch_job(WatchJobRequest {
                job_id: job_id.to_owned(),
            })
            .await
            .with_context(|| format!("WatchJob {job_id}"))?
            .into_inner();
        Ok(Self {
            stream,
            view: JobView::new(),
            seen: Vec::new(),
        })
    }

    /// The next whole view of the job, or `None` when the stream ended.
    pub async fn next_whole(&mut self) -> Result<Option<Job>> {
        loop {
            let Some(event) = self.stream.message().await.context("WatchJob stream")? else {
                return Ok(None);
            };
            self.seen.push(Seen {
                snapshot: match &event.kind {
                    Some(Kind::Snapshot(p)) => Some((p.first, p.resync)),
                    _ => None,
                },
                tasks: event.job.as_ref().map_or(0, |j| j.tasks.len()),
                complete: event.complete,
            });
            if let Some(job) = self.view.apply(event)? {
                return Ok(Some(job.clone()));
            }
        }
    }

    /// Reads until the job has ended (the stream's last whole view), within `limit`.
    pub async fn until_ended(&mut self, limit: Duration) -> Result<Job> {
        let mut last = None;
        let read = async {
            while let Some(job) = self.next_whole().await? {
                last = Some(job);
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(limit, read)
            .await
            .context("the watch did not end in time")??;
        let Some(job) = last else {
            bail!("the watch ended without a whole view of the job");
        };
        Ok(job)
    }

    /// Every event seen so far, in order.
    pub fn seen(&self) -> &[Seen] {
        &self.seen
    }

    /// Fresh snapshots received because this watcher fell behind.
    pub fn resyncs(&self) -> u64 {
        self.view.resyncs()
    }
}

/// A watch whose HTTP/2 windows are 64 KiB, on a connection of its own: once its client
/// stops reading, the controller soon cannot send it anything more.
pub async fn open_narrow(addr: &str, job_id: &str) -> Result<Watcher> {
    let channel = endpoint(addr)?
        .initial_stream_window_size(Some(64 * 1024))
        .initial_connection_window_size(Some(64 * 1024))
        .timeout(Duration::from_secs(3600))
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Watcher::open_with(JobServiceClient::new(channel), job_id).await
}
