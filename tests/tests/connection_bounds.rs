//! Clients that connect and never speak cannot wedge the controller: past `--max-connections`
//! new connections are closed at once, a connection that has not sent the HTTP/2 preface by
//! `--handshake-timeout` is closed, the controller does not spin at the cap nor when accept
//! runs out of file descriptors, and the CLI is answered again once the silent ones are gone;
//! a connection that speaks promptly is served and kept past the deadline.

use std::process::Command;
use std::time::{Duration, Instant};

use ferry_tests::{Controller, ControllerOpts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The HTTP/2 client preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// A fraction of one core the controller may use while it holds silent connections.
const MAX_CPU_SHARE: f64 = 0.20;

fn controller_opts(max_connections: usize, handshake_timeout: &str) -> ControllerOpts {
    ControllerOpts::default()
        .sqlite()
        .arg("--max-connections")
        .arg(max_connections.to_string())
        .arg("--handshake-timeout")
        .arg(handshake_timeout)
}

async fn open_silent(port: u16, n: usize) -> Vec<TcpStream> {
    let mut silent = Vec::with_capacity(n);
    for _ in 0..n {
        silent.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    silent
}

/// Whether the controller closed `stream` by `deadline`: its read returned end of file (or an
/// error) rather than waiting.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 64];
    let wait = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("a silent connection was sent {n} bytes"),
        Err(_) => false,
    }
}

/// CPU seconds (user + system) the process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // Clock ticks: USER_HZ, 100 on Linux whatever the kernel's own HZ.
    ticks as f64 / 100.0
}

/// The controller's CPU share of one core over `window`.
async fn cpu_share(pid: u32, window: Duration) -> f64 {
    let before = cpu_seconds(pid);
    tokio::time::sleep(window).await;
    let share = (cpu_seconds(pid) - before) / window.as_secs_f64();
    eprintln!(
        "controller CPU over {window:?}: {:.1}% of a core",
        share * 100.0
    );
    share
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_new_connections_are_closed_silent_ones_at_the_deadline_without_spinning() {
    let timeout = Duration::from_secs(4);
    let controller = Controller::start(controller_opts(20, "4s")).await.unwrap();
    let pid = controller.pid().unwrap();
    // The harness's readiness probe has gone away.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let opened = Instant::now();
    let mut silent = open_silent(controller.port(), 30).await;

    // Those past the cap are closed at once; the others are held.
    let mut refused = 0;
    let mut held = Vec::new();
    let soon = Instant::now() + Duration::from_millis(1000);
    for mut stream in silent.drain(..) {
        if closed_by(&mut stream, soon).await {
            refused += 1;
        } else {
            held.push(stream);
        }
    }
    assert!(refused >= 10, "{refused} of 30 refused at a cap of 20");
    assert!(held.len() <= 20, "{} held at a cap of 20", held.len());
    assert!(opened.elapsed() < timeout, "too slow to measure at the cap");

    // At the cap, the controller waits rather than spins.
    let share = cpu_share(pid, Duration::from_millis(2000)).await;
    assert!(
        share < MAX_CPU_SHARE,
        "the controller used {:.0}% of a core at the cap",
        share * 100.0
    );

    // The silent ones are closed at the deadline, not before.
    let late = opened + timeout + Duration::from_secs(5);
    for stream in &mut held {
        assert!(
            closed_by(stream, late).await,
            "a silent connection was held past {timeout:?}"
        );
    }
    let closed_after = opened.elapsed();
    assert!(
        closed_after >= timeout - Duration::from_millis(500),
        "silent connections closed after {closed_after:?}, before the deadline"
    );

    let out = controller.cli().run(["jobs", "list"]).await.unwrap();
    assert_eq!(
        out.code, 0,
        "not answered once the silent ones were gone: {out}"
    );
    let log = controller.log_tail(400);
    assert!(log.contains("at the connection cap"), "{log}");
    assert!(
        log.contains("did not start speaking HTTP/2 in time"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_speaks_is_served_and_kept_while_silent_ones_are_closed() {
    let controller = Controller::start(controller_opts(20, "1s")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Speaks at once: HTTP/2 preface and SETTINGS, answered with the server's SETTINGS.
    let mut speaker = TcpStream::connect(("127.0.0.1", controller.port()))
        .await
        .unwrap();
    speaker.write_all(PREFACE).await.unwrap();
    speaker.write_all(&SETTINGS).await.unwrap();
    let mut header = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), speaker.read_exact(&mut header))
        .await
        .expect("no answer to the preface")
        .unwrap();
    assert_eq!(
        header[3], 4,
        "the server's first frame is SETTINGS: {header:?}"
    );

    let opened = Instant::now();
    let mut silent = open_silent(controller.port(), 25).await;
    let late = opened + Duration::from_secs(6);
    for stream in &mut silent {
        assert!(
            closed_by(stream, late).await,
            "a silent connection outlived the 1s handshake timeout"
        );
    }
    let out = controller.cli().run(["jobs", "list"]).await.unwrap();
    assert_eq!(
        out.code, 0,
        "not answered once the silent ones were gone: {out}"
    );

    // Still open well past the deadline: it spoke. Whatever the server sends is HTTP/2 frames
    // (the SETTINGS' rest, its ACK), never the end of the connection.
    let mut buf = [0u8; 1024];
    let until = Instant::now() + Duration::from_millis(2500);
    loop {
        let wait = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, speaker.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) => panic!("the connection that spoke was closed"),
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("the connection that spoke failed: {e}"),
        }
    }
    assert!(opened.elapsed() >= Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_accept_backs_off_and_recovers() {
    // A cap above the open-file limit: accept itself runs out of descriptors.
    let controller = Controller::start(controller_opts(500, "1s")).await.unwrap();
    let pid = controller.pid().unwrap();
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg("--nofile=96:96")
        .status()
        .expect("running prlimit");
    assert!(status.success(), "prlimit: {status}");

    let opened = Instant::now();
    let mut silent = open_silent(controller.port(), 150).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let share = cpu_share(pid, Duration::from_millis(1500)).await;
    assert!(
        share < MAX_CPU_SHARE,
        "the controller used {:.0}% of a core out of descriptors",
        share * 100.0
    );

    // The held ones time out, those waiting in the backlog get their turn and time out too.
    let late = opened + Duration::from_secs(20);
    for stream in &mut silent {
        assert!(
            closed_by(stream, late).await,
            "a silent connection was held"
        );
    }
    let out = controller.cli().run(["jobs", "list"]).await.unwrap();
    assert_eq!(
        out.code, 0,
        "not answered once the silent ones were gone: {out}"
    );
    let log = controller.log_tail(400);
    assert!(log.contains("cannot accept connections"), "{log}");
}
