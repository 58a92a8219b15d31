//! Per-attempt log shipper: a bounded buffer of output that drops the oldest bytes when full,
//! flushed with `AppendLogs`; whatever is left at the end travels inside `Complete`. Output
//! enters it through a [`Redactor`] per stream: the agent's secrets never reach the buffer.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use ferry_proto::v1::{AppendLogsRequest, AttemptRef, LogChunk, LogStream};
use tokio::{sync::Notify, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    client::{Client, ClientError, FailureLog},
    redact::{Redactor, Secrets},
    running::KillSwitch,
    Session,
};

/// Most bytes held waiting to be sent; older bytes are dropped beyond this.
pub const MAX_PENDING: usize = 256 * 1024;
/// Pending bytes that trigger a flush before the next tick.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Flush period.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Largest chunk the buffer builds by joining writes of one stream.
const CHUNK_BYTES: usize = 64 * 1024;

/// Output not yet sent, oldest first, never more than [`MAX_PENDING`] bytes.
#[derive(Default)]
pub struct LogBuffer {
    chunks: VecDeque<LogChunk>,
    pending: usize,
    dropped: u64,
}

impl LogBuffer {
    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn push(&mut self, stream: LogStream, mut data: &[u8]) {
        if data.len() > MAX_PENDING {
            self.dropped += (data.len() - MAX_PENDING) as u64;
            data = &data[data.len() - MAX_PENDING..];
        }
        let stream = stream as i32;
        match self.chunks.back_mut() {
            Some(last) if last.stream == stream && last.data.len() + data.len() <= CHUNK_BYTES => {
                last.data.extend_from_slice(data);
            }
            _ => self.chunks.push_back(LogChunk {
                stream,
                data: data.to_vec(),
            }),
        }
        self.pending += data.len();
        self.trim();
    }

    /// Drops the oldest bytes until the buffer fits.
    fn trim(&mut self) {
        while self.pending > MAX_PENDING {
            let excess = self.pending - MAX_PENDING;
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let cut = excess.min(front.data.len());
            if cut == front.data.len() {
                self.chunks.pop_front();
            } else {
                front.data.drain(..cut);
            }
            self.pending -= cut;
            self.dropped += cut as u64;
        }
    }

    /// Everything pending and the bytes dropped since the last take.
    pub fn take(&mut self) -> (Vec<LogChunk>, u64) {
        self.pending = 0;
        (
            self.chunks.drain(..).collect(),
            std::mem::take(&mut self.dropped),
        )
    }

    /// Puts back what a failed send took, ahead of anything newer.
    pub fn restore(&mut self, chunks: Vec<LogChunk>, dropped: u64) {
        for chunk in chunks.into_iter().rev() {
            self.pending += chunk.data.len();
            self.chunks.push_front(chunk);
        }
        self.dropped += dropped;
        self.trim();
    }
}

/// Shared between the output readers (`push`) and the flush loop of one attempt.
#[derive(Default)]
pub struct LogShipper {
    state: Mutex<Shipping>,
    wake: Notify,
}

/// The buffer, and what each stream's redactor holds back.
#[derive(Default)]
struct Shipping {
    buf: LogBuffer,
    stdout: Redactor,
    stderr: Redactor,
}

impl LogShipper {
    /// A shipper that redacts `secrets`.
    pub fn new(secrets: Arc<Secrets>) -> LogShipper {
        LogShipper {
            state: Mutex::new(Shipping {
                buf: LogBuffer::default(),
                stdout: Redactor::new(Arc::clone(&secrets)),
                stderr: Redactor::new(secrets),
            }),
            wake: Notify::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shipping> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, stream: LogStream, data: &[u8]) {
        let pending = {
            let mut state = self.lock();
            let Shipping {
                buf,
                stdout,
                stderr,
            } = &mut *state;
            let redactor = if stream == LogStream::Stderr {
                stderr
            } else {
                stdout
            };
            let data = redactor.feed(data);
            if !data.is_empty() {
                buf.push(stream, &data);
            }
            buf.pending()
        };
        if pending >= FLUSH_BYTES {
            self.wake.notify_one();
        }
    }

    /// What is left for `Complete`: pending chunks (with what the redactors held back) and the
    /// bytes dropped since the last send.
    pub fn finish(&self) -> (Vec<LogChunk>, u64) {
        let mut state = self.lock();
        let Shipping {
            buf,
            stdout,
            stderr,
        } = &mut *state;
        for (stream, redactor) in [(LogStream::Stdout, stdout), (LogStream::Stderr, stderr)] {
            let held = redactor.finish();
            if !held.is_empty() {
                buf.push(stream, &held);
            }
        }
        buf.take()
    }

    /// Sends pending output every [`FLUSH_EVERY`] or at [`FLUSH_BYTES`] until `stop`. On
    /// `ABORTED` the attempt is fenced: it is told to stop and nothing more is sent.
    pub(crate) async fn flush_loop(
        &self,
        client: &Client,
        attempt: &AttemptRef,
        stop: &CancellationToken,
        kill: &KillSwitch,
        session: &Session,
    ) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut failures = FailureLog::new("append_logs");
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = kill.abort.cancelled() => return,
                _ = tick.tick() => {}
                () = self.wake.notified() => {}
            }
            let (chunks, dropped) = self.lock().buf.take();
            if chunks.is_empty() && dropped == 0 {
                continue;
            }
            let req = AppendLogsRequest {
                agent: None,
                attempt: Some(attempt.clone()),
                chunks,
                dropped_bytes: dropped,
            };
            match client.append_logs(req.clone()).await {
                Ok(()) => failures.recovered(),
                Err(ClientError::Fenced(e)) => {
                    info!(error = %e, "attempt fenced by the controller; stopping it");
                    kill.abort.cancel();
                    return;
                }
                Err(e @ ClientError::SessionLost(_)) => {
                    session.lose(&e);
                    return;
                }
                Err(e @ ClientError::Transient(_)) => {
                    failures.failed(&e);
                    self.lock().buf.restore(req.chunks, req.dropped_bytes);
                }
                Err(e @ (ClientError::Rejected(_) | ClientError::Precondition(_))) => {
                    let bytes: usize = req.chunks.iter().map(|c| c.data.len()).sum();
                    warn!(error = %e, bytes, "controller refused log output; dropped it");
                    self.lock().buf.dropped += req.dropped_bytes + bytes as u64;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(chunks: &[LogChunk]) -> usize {
        chunks.iter().map(|c| c.data.len()).sum()
    }

    #[test]
    fn shipped_output_is_redacted_across_reads() {
        let shipper = LogShipper::new(Arc::new(Secrets::new(["hunter2-secret", "tok"])));
        shipper.push(LogStream::Stdout, b"ORDERS_PASSWORD=hunt");
        shipper.push(LogStream::Stderr, b"tok: no\n");
        shipper.push(LogStream::Stdout, b"er2-secret\nlast: hunter2");
        let (chunks, dropped) = shipper.finish();
        assert_eq!(dropped, 0);
        let text = |stream: LogStream| -> String {
            chunks
                .iter()
                .filter(|c| c.stream == stream as i32)
                .map(|c| String::from_utf8_lossy(&c.data).into_owned())
                .collect()
        };
        assert_eq!(
            text(LogStream::Stdout),
            "ORDERS_PASSWORD=[redacted]\nlast: hunter2"
        );
        assert_eq!(text(LogStream::Stderr), "tok: no\n");
    }

    #[test]
    fn joins_writes_of_one_stream() {
        let mut b = LogBuffer::default();
        b.push(LogStream::Stdout, b"a");
        b.push(LogStream::Stdout, b"b");
        b.push(LogStream::Stderr, b"c");
        let (chunks, dropped) = b.take();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].data, b"ab");
        assert_eq!(chunks[1].stream, LogStream::Stderr as i32);
        assert_eq!(dropped, 0);
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn bounded_drops_oldest_bytes() {
        let mut b = LogBuffer::default();
        for i in 0..100u8 {
            b.push(LogStream::Stdout, &[i; 10 * 1024]);
        }
        assert_eq!(b.pending(), MAX_PENDING);
        let (chunks, dropped) = b.take();
        assert_eq!(total(&chunks), MAX_PENDING);
        assert_eq!(dropped as usize, 100 * 10 * 1024 - MAX_PENDING);
        // The newest bytes survive.
        assert_eq!(*chunks.last().unwrap().data.last().unwrap(), 99);
        assert_eq!(chunks[0].data[0], 74);
    }

    #[test]
    fn huge_write_keeps_its_tail() {
        let mut b = LogBuffer::default();
        b.push(LogStream::Stderr, b"old");
        let mut big = vec![0u8; MAX_PENDING + 10];
        *big.last_mut().unwrap() = 7;
        b.push(LogStream::Stdout, &big);
        let (chunks, dropped) = b.take();
        assert_eq!(total(&chunks), MAX_PENDING);
        assert_eq!(dropped, 13);
        assert_eq!(*chunks.last().unwrap().data.last().unwrap(), 7);
    }

    #[test]
    fn restore_goes_in_front_and_stays_bounded() {
        let mut b = LogBuffer::default();
        b.push(LogStream::Stdout, b"first");
        let (chunks, dropped) = b.take();
        b.push(LogStream::Stderr, b"second");
        b.restore(chunks, dropped + 2);
        let (chunks, dropped) = b.take();
        assert_eq!(chunks[0].data, b"first");
        assert_eq!(chunks[1].data, b"second");
        assert_eq!(dropped, 2);

        b.push(LogStream::Stdout, &vec![1u8; MAX_PENDING]);
        b.restore(
            vec![LogChunk {
                stream: 0,
                data: vec![2u8; 100],
            }],
            0,
        );
        assert_eq!(b.pending(), MAX_PENDING);
        let (_, dropped) = b.take();
        assert_eq!(dropped, 100);
    }
}
