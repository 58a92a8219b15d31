//! The controller stops on SIGTERM whatever its standard output and error are (issue 19, item
//! 10): a pipe nobody reads, full before it starts, and a pipe whose reader has left
//! (`ferry-controller 2>&1 | head -1`). Before, the first blocked its only async thread on a log
//! write, so it never served and ignored every SIGTERM; the second made it panic.

use std::{
    io::Write,
    net::TcpStream,
    os::fd::{AsFd, OwnedFd},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ferry_tests::{
    bin_path, free_port, test_store, StoreDatabase, TestDir, TestStore, CONTROLLER_BIN,
};
use nix::{
    fcntl::{fcntl, FcntlArg, OFlag},
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// How long the controller gets to listen, and then to stop after SIGTERM.
const LIMIT: Duration = Duration::from_secs(20);

/// A controller whose standard output and error are both `out`, logging everything
/// (`RUST_LOG=debug`, so that it has plenty to write).
async fn spawn(dir: &TestDir, out: OwnedFd) -> Result<(Child, u16, Option<StoreDatabase>)> {
    let port = free_port()?;
    let database = match test_store() {
        TestStore::Sqlite => None,
        TestStore::Postgres => Some(StoreDatabase::create().await?),
    };
    let mut command = Command::new(bin_path(CONTROLLER_BIN));
    command
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out));
    if let Some(database) = &database {
        command.arg("--store").arg(database.url());
    }
    let child = command.spawn().context("spawning ferry-controller")?;
    Ok((child, port, database))
}

/// Waits until the controller accepts connections on `port`, or fails naming why.
async fn listening(child: &mut Child, port: u16) -> Result<()> {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the controller exited ({status}) instead of serving");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the controller never listened on {port}: blocked on its output?");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One SIGTERM, then the controller must exit 0 within `LIMIT`.
async fn stops_on_one_sigterm(mut child: Child) -> Result<()> {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM)?;
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait()? {
            assert!(status.success(), "the controller exited with {status}");
            return Ok(());
        }
        if Instant::now() > deadline {
            child.kill()?;
            bail!("the controller ignored SIGTERM for {LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_controller_whose_output_nobody_reads_still_stops_on_sigterm() -> Result<()> {
    let dir = TestDir::new("signals-full-pipe")?;
    let (reader, writer) = std::io::pipe()?;
    let writer = OwnedFd::from(writer);
    // Fill the pipe: every write of the controller would block from its first line.
    let flags = OFlag::from_bits_truncate(fcntl(writer.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(writer.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let mut file = std::fs::File::from(writer.try_clone()?);
    let chunk = [b'x'; 4096];
    let mut filled = 0;
    loop {
        match file.write(&chunk) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e.into()),
        }
    }
    assert!(filled >= 4096, "the pipe took {filled} bytes");
    fcntl(writer.as_fd(), FcntlArg::F_SETFL(flags))?;
    drop(file);
    let (mut child, port, _database) = spawn(&dir, writer).await?;
    listening(&mut child, port).await?;
    stops_on_one_sigterm(child).await?;
    drop(reader); // held open, never read, until the controller is gone
    Ok(())
}

#[tokio::test]
async fn a_controller_whose_output_reader_left_serves_and_stops_on_sigterm() -> Result<()> {
    let dir = TestDir::new("signals-closed-pipe")?;
    let (reader, writer) = std::io::pipe()?;
    drop(reader); // `| head -1` after its line: every write fails with EPIPE
    let (mut child, port, _database) = spawn(&dir, OwnedFd::from(writer)).await?;
    listening(&mut child, port).await?;
    // It keeps serving while it logs into the void (RUST_LOG=debug logs every connection).
    for _ in 0..5 {
        TcpStream::connect(("127.0.0.1", port)).context("connecting again")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        child.try_wait()?.is_none(),
        "the controller died of its closed output"
    );
    stops_on_one_sigterm(child).await
}
