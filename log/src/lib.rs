//! How the controller and the agent log: `tracing` events formatted on the caller's thread,
//! then handed to one writer thread that owns standard error, so that no thread of the
//! binary ever blocks on its output.
//!
//! Standard error may be a pipe nobody reads (`ferry-controller 2>&1 | less`, paused) or one
//! whose reader left (`… | head -1`). Written directly, the first fills and blocks the writing
//! thread — the controller's only async thread, so it served nothing and never saw SIGTERM —
//! and the second made `tracing-subscriber` report the failed write with `eprintln!`, which
//! panics on a closed standard error. Here a line that cannot be queued at once (the writer
//! is stuck on a full pipe) is dropped and counted; once a write fails (the reader left),
//! the writer stops writing and every later line is dropped.
//!
//! `RUST_LOG` chooses what is logged (`info` by default), e.g. `RUST_LOG=ferry_controller=debug`.

use std::{
    io::{IsTerminal, Write},
    os::fd::AsFd,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{sync_channel, Receiver, SyncSender, TrySendError},
        Arc,
    },
    time::{Duration, Instant},
};

use tracing_subscriber::{fmt::MakeWriter, EnvFilter};

/// Lines waiting for the writer thread; past this, new lines are dropped.
const QUEUE_LINES: usize = 4096;

/// What `RUST_LOG` does, for each binary's `--help`.
pub const RUST_LOG_HELP: &str = "RUST_LOG: what is logged to standard error, e.g. \
    RUST_LOG=debug or RUST_LOG=ferry_controller=debug,info [default: info]";

/// The handle `init` returns: how many lines were dropped, and a bounded wait for the queue
/// to drain before the process exits.
#[derive(Clone)]
pub struct Logs {
    shared: Arc<Shared>,
}

struct Shared {
    /// Lines queued and not yet written (or given up).
    pending: AtomicU64,
    dropped: AtomicU64,
    /// Standard error failed (its reader left): nothing more is written.
    closed: AtomicBool,
}

/// Installs the global subscriber: `RUST_LOG` (default `info`), ANSI colours only on a
/// terminal, events written to standard error by the writer thread.
pub fn init() -> Logs {
    // A duplicate of descriptor 2, written without `Stderr`'s lock (which a thread blocked on
    // a full pipe would hold against every `eprintln!`).
    let out: Box<dyn Write + Send> = match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::fs::File::from(fd)),
        Err(_) => Box::new(std::io::sink()),
    };
    let (logs, writer) = Logs::start(out);
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    logs
}

impl Logs {
    /// The writer thread over `out`, and the `MakeWriter` that queues lines for it.
    pub fn start(out: impl Write + Send + 'static) -> (Logs, QueueWriter) {
        let shared = Arc::new(Shared {
            pending: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let (tx, rx) = sync_channel(QUEUE_LINES);
        let thread_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("ferry-log".into())
            .spawn(move || write_lines(rx, out, &thread_shared));
        if spawned.is_err() {
            shared.closed.store(true, Ordering::Relaxed);
        }
        let writer = QueueWriter {
            tx,
            shared: shared.clone(),
        };
        (Logs { shared }, writer)
    }

    /// Lines dropped so far (a full queue, or standard error gone).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every queued line is written, at most `timeout`: called before exiting,
    /// so that the last lines are not lost, yet a stuck pipe cannot hold the exit.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.shared.pending.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

fn write_lines(rx: Receiver<Vec<u8>>, mut out: impl Write, shared: &Shared) {
    for line in rx {
        if !shared.closed.load(Ordering::Relaxed) && out.write_all(&line).is_err() {
            shared.closed.store(true, Ordering::Relaxed);
        }
        if shared.closed.load(Ordering::Relaxed) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        shared.pending.fetch_sub(1, Ordering::Release);
    }
}

/// `tracing-subscriber`'s writer: each event is formatted into a `Line`, queued when dropped.
#[derive(Clone)]
pub struct QueueWriter {
    tx: SyncSender<Vec<u8>>,
    shared: Arc<Shared>,
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            buf: Vec::new(),
            writer: self.clone(),
        }
    }
}

/// One event's text, queued whole when the formatter is done with it.
pub struct Line {
    buf: Vec<u8>,
    writer: QueueWriter,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let shared = &self.writer.shared;
        if shared.closed.load(Ordering::Relaxed) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        shared.pending.fetch_add(1, Ordering::AcqRel);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.writer.tx.try_send(std::mem::take(&mut self.buf))
        {
            shared.pending.fetch_sub(1, Ordering::AcqRel);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A writer that blocks until the test lets it go, like a pipe nobody reads.
    struct Stuck(Arc<(Mutex<bool>, std::sync::Condvar)>, Arc<Mutex<Vec<u8>>>);

    impl Write for Stuck {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.0;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.1.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(writer: &QueueWriter, text: &str) {
        let mut line = writer.make_writer();
        line.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn a_stuck_output_drops_lines_and_never_blocks_the_caller() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let (logs, writer) = Logs::start(Stuck(gate.clone(), written.clone()));
        let started = Instant::now();
        for i in 0..QUEUE_LINES * 2 {
            line(&writer, &format!("line {i}\n"));
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            logs.dropped() >= QUEUE_LINES as u64 - 1,
            "{}",
            logs.dropped()
        );
        assert!(
            !logs.flush(Duration::from_millis(50)),
            "a stuck writer cannot be flushed"
        );
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        assert!(logs.flush(Duration::from_secs(5)));
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("line 0\nline 1\n"), "{text:.40}");
    }

    struct Gone;

    impl Write for Gone {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_output_stops_the_writing_not_the_program() {
        let (logs, writer) = Logs::start(Gone);
        line(&writer, "first\n");
        assert!(logs.flush(Duration::from_secs(5)));
        line(&writer, "second\n");
        assert!(logs.flush(Duration::from_secs(5)));
        assert_eq!(logs.dropped(), 2);
    }
}
