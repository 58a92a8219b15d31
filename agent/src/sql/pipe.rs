//! The hand-off between a database cursor (async, or a blocking SQLite loop) and the thread
//! that encodes and writes files: a bounded channel of batches, so that memory holds a few
//! batches whatever the row count, and an explicit end, so that a reader that stops early
//! (error, abort) can never have its partial files taken as complete.

use tokio::{sync::mpsc, task::JoinHandle};

use super::{sink::Written, SqlError};

/// Batches in flight between the reader and the writer.
const DEPTH: usize = 4;

pub enum Msg<T> {
    Data(T),
    End,
}

/// The reader's end.
pub struct Pipe<T> {
    tx: mpsc::Sender<Msg<T>>,
    writer: JoinHandle<Result<Written, SqlError>>,
}

/// The writer's end, on its blocking thread.
pub struct Batches<T> {
    rx: mpsc::Receiver<Msg<T>>,
}

impl<T> Batches<T> {
    /// The next batch; `Ok(None)` at the reader's clean end, `Err` when the reader stopped
    /// without one (its data is incomplete).
    pub fn recv(&mut self) -> Result<Option<T>, SqlError> {
        match self.rx.blocking_recv() {
            Some(Msg::Data(batch)) => Ok(Some(batch)),
            Some(Msg::End) => Ok(None),
            None => Err(SqlError::Interrupted),
        }
    }
}

impl<T: Send + 'static> Pipe<T> {
    /// Starts `write` on a blocking thread.
    pub fn spawn(
        write: impl FnOnce(Batches<T>) -> Result<Written, SqlError> + Send + 'static,
    ) -> Pipe<T> {
        let (tx, rx) = mpsc::channel(DEPTH);
        let writer = tokio::task::spawn_blocking(move || write(Batches { rx }));
        Pipe { tx, writer }
    }

    /// Hands a batch over; `false` when the writer has stopped (its error comes from
    /// [`Pipe::finish`] or [`Pipe::abandon`]).
    pub async fn send(&self, batch: T) -> bool {
        self.tx.send(Msg::Data(batch)).await.is_ok()
    }

    /// Ends the stream cleanly and waits for the files.
    pub async fn finish(self) -> Result<Written, SqlError> {
        let _ = self.tx.send(Msg::End).await;
        drop(self.tx);
        join(self.writer).await
    }

    /// Stops the writer without an end (its files are removed) and returns its own error if
    /// it failed first, so that a disk-full error is not reported as a broken stream.
    pub async fn abandon(self) -> Option<SqlError> {
        drop(self.tx);
        match join(self.writer).await {
            Err(SqlError::Interrupted) | Ok(_) => None,
            Err(e) => Some(e),
        }
    }
}

async fn join(handle: JoinHandle<Result<Written, SqlError>>) -> Result<Written, SqlError> {
    handle
        .await
        .map_err(|e| SqlError::Internal(format!("the file writer stopped: {e}")))?
}
