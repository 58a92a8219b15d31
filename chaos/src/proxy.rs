//! The fault-injecting TCP proxy the suite owns: one per agent, with a listener for each
//! controller, so that the agent's every connection (polls, heartbeats, uploads) passes
//! through it. Its mode applies to all of them at once: `Pass`; `Cut` (every connection closed,
//! new ones closed on accept); `Blackhole` (connections stay open, nothing is forwarded until
//! the mode changes — then the held bytes go on, as TCP retransmits after a partition heals);
//! `Delay(d)` (each chunk waits `d` before it is forwarded).

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};

/// What the proxy does to the traffic it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Cut,
    Blackhole,
    Delay(Duration),
}

/// How long connecting to a controller may take before the client's connection is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Proxy {
    mode: watch::Sender<Mode>,
    addrs: Vec<SocketAddr>,
    // Aborted on drop: the listeners, and with them every connection's task.
    _tasks: JoinSet<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 for each upstream port (controllers on this host).
    pub async fn start(upstreams: &[u16]) -> Result<Self> {
        let (mode, _) = watch::channel(Mode::Pass);
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::with_capacity(upstreams.len());
        for &port in upstreams {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding the proxy's listener")?;
            addrs.push(listener.local_addr()?);
            let rx = mode.subscribe();
            tasks.spawn(accept_loop(listener, port, rx));
        }
        Ok(Self {
            mode,
            addrs,
            _tasks: tasks,
        })
    }

    /// `http://127.0.0.1:PORT` of each listener, in the order of the upstreams.
    pub fn urls(&self) -> Vec<String> {
        self.addrs.iter().map(|a| format!("http://{a}")).collect()
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn accept_loop(listener: TcpListener, upstream: u16, mode: watch::Receiver<Mode>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Reap finished connections' tasks as we go.
        while connections.try_join_next().is_some() {}
        if *mode.borrow() == Mode::Cut {
            drop(client);
            continue;
        }
        connections.spawn(connection(client, upstream, mode.clone()));
    }
}

/// Carries one connection until either side closes it or the mode becomes `Cut`.
async fn connection(client: TcpStream, upstream: u16, mut mode: watch::Receiver<Mode>) {
    let server =
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(("127.0.0.1", upstream)))
            .await
        {
            Ok(Ok(server)) => server,
            _ => return,
        };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut pumps = JoinSet::new();
    pumps.spawn(pump(client_read, server_write, mode.clone()));
    pumps.spawn(pump(server_read, client_write, mode.clone()));
    loop {
        tokio::select! {
            done = pumps.join_next() => {
                // One direction ended (EOF, error or cut): the other finishes by itself
                // (its write half was shut down), unless cut.
                if done.is_none() {
                    return;
                }
            }
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow() == Mode::Cut {
                    // Dropping the set aborts both pumps and closes both sockets.
                    return;
                }
            }
        }
    }
}

/// Copies `from` to `to` chunk by chunk, each chunk waiting for the mode to let it pass.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        loop {
            let current = *mode.borrow_and_update();
            match current {
                Mode::Pass => break,
                Mode::Delay(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Mode::Cut => return,
                Mode::Blackhole => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a free port.
    async fn echo() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port
    }

    async fn roundtrip(s: &mut TcpStream, timeout: Duration) -> Option<Vec<u8>> {
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(timeout, s.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn pass_blackhole_cut_and_delay_do_what_they_say() {
        let proxy = Proxy::start(&[echo().await]).await.unwrap();
        let addr = proxy.addrs[0];
        let mut s = TcpStream::connect(addr).await.unwrap();
        let short = Duration::from_millis(300);
        assert_eq!(
            roundtrip(&mut s, short).await.as_deref(),
            Some(&b"ping"[..])
        );

        proxy.set(Mode::Blackhole);
        assert_eq!(roundtrip(&mut s, short).await, None);
        // Healed: the held bytes go through.
        proxy.set(Mode::Pass);
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"ping");

        proxy.set(Mode::Delay(Duration::from_millis(200)));
        let started = std::time::Instant::now();
        assert!(roundtrip(&mut s, Duration::from_secs(3)).await.is_some());
        assert!(started.elapsed() >= Duration::from_millis(400));

        proxy.set(Mode::Cut);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        // New connections are closed at once while cut.
        let mut again = TcpStream::connect(addr).await.unwrap();
        assert_eq!(roundtrip(&mut again, short).await, None);

        proxy.set(Mode::Pass);
        let mut fresh = TcpStream::connect(addr).await.unwrap();
        assert!(roundtrip(&mut fresh, short).await.is_some());
    }
}
