//! A PostgreSQL server of a test's own, for what the shared one must not suffer (a restart):
//! `initdb` in a temp dir, `postgres` on a free port of 127.0.0.1 with trust auth and its
//! socket in that dir, run as the `postgres` OS user when the tests run as root; stopped
//! (`fast`, like `pg_ctl stop -m fast`) and started again on demand, killed on drop.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;

use crate::{
    controller::free_port,
    process::{log_tail, Proc, TestDir},
    wait::eventually,
};

/// How long the server gets to accept connections after being started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct PgServer {
    bin: PathBuf,
    /// The OS user and group the server runs as, when not ours.
    owner: Option<(u32, u32)>,
    port: u16,
    proc: Option<Proc>,
    // Dropped after `proc`, so that the log tail is printed before the dir is kept.
    dir: TestDir,
    /// Whether the server speaks TLS too (`start_with_tls`).
    tls: bool,
}

impl PgServer {
    /// Makes a cluster with `initdb` and starts it; returns once it accepts connections.
    pub async fn start() -> Result<Self> {
        Self::start_with(None).await
    }

    /// `start`, the server also speaking TLS with this certificate and key (copied into its
    /// directory, readable by the server's OS user only); plain connections stay allowed.
    pub async fn start_with_tls(cert: &std::path::Path, key: &std::path::Path) -> Result<Self> {
        Self::start_with(Some((cert.to_owned(), key.to_owned()))).await
    }

    async fn start_with(tls: Option<(PathBuf, PathBuf)>) -> Result<Self> {
        let dir = TestDir::new("postgres")?;
        let owner = if running_as_root() {
            let owner = (os_id("-u")?, os_id("-g")?);
            std::os::unix::fs::chown(dir.path(), Some(owner.0), Some(owner.1))
                .with_context(|| format!("giving {} to postgres", dir.path().display()))?;
            Some(owner)
        } else {
            None
        };
        let mut server = Self {
            bin: bin_dir()?,
            owner,
            port: 0,
            proc: None,
            dir,
            tls: false,
        };
        server.initdb()?;
        if let Some((cert, key)) = tls {
            for (from, name) in [(&cert, "server.crt"), (&key, "server.key")] {
                let to = server.data().join(name);
                std::fs::copy(from, &to)
                    .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
                std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                if let Some((uid, gid)) = server.owner {
                    std::os::unix::fs::chown(&to, Some(uid), Some(gid))?;
                }
            }
            server.tls = true;
        }
        let mut tries = 0;
        loop {
            tries += 1;
            server.port = free_port()?;
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(e) if tries < 3 && server.log_tail(20).contains("could not bind") => {
                    eprintln!(
                        "postgres could not bind port {}, retrying: {e:#}",
                        server.port
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the superuser on its admin database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }

    /// A fast shutdown (SIGINT: sessions are ended, the data written out), waited for.
    pub async fn stop(&mut self) -> Result<()> {
        let mut proc = self.proc.take().context("postgres is not running")?;
        proc.signal(Signal::SIGINT)?;
        let status = proc.wait_exit(STOP_TIMEOUT).await?;
        if !status.success() {
            bail!("postgres exited with {status} on a fast shutdown");
        }
        Ok(())
    }

    /// Starts the stopped server again, on the same port and data.
    pub async fn start_again(&mut self) -> Result<()> {
        if self.proc.is_some() {
            bail!("postgres is already running");
        }
        self.spawn_and_wait().await
    }

    /// `pg_ctl restart -m fast`: [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.start_again().await
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A command running `bin` of the server's binaries as the server's OS user.
    fn command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(bin));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(self.dir.path()).env_remove("PGDATA");
        cmd
    }

    fn initdb(&self) -> Result<()> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(self.dir.path())
            // A test server: nothing here must survive a power loss.
            .args(["-c", "fsync=off"]);
        if self.tls {
            // server.crt and server.key in the data directory: the defaults of ssl_*_file.
            cmd.args(["-c", "ssl=on"]);
        }
        self.proc = Some(Proc::spawn("postgres", cmd, &self.log_path())?);
        let url = self.admin_url();
        let ready = eventually("postgres to accept connections", READY_TIMEOUT, || {
            let url = url.clone();
            async move {
                let (client, connection) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.simple_query("SELECT 1").await?;
                Ok(Some(()))
            }
        })
        .await;
        if let Err(e) = ready {
            bail!("{e:#}; log tail:\n{}", self.log_tail(30));
        }
        Ok(())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // An immediate shutdown: the backends go with the postmaster.
        if let Some(proc) = self.proc.as_mut() {
            let _ = proc.signal(Signal::SIGQUIT);
        }
    }
}

/// Whether this process runs as root (`postgres` refuses to).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // `/proc/self` belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The `postgres` OS user's uid (`-u`) or gid (`-g`).
fn os_id(which: &str) -> Result<u32> {
    let out = Command::new("id")
        .args([which, "postgres"])
        .output()
        .context("running id")?;
    if !out.status.success() {
        bail!(
            "no postgres OS user to run the server as: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("reading the postgres user's id")
}

/// The newest `/usr/lib/postgresql/*/bin` holding `initdb`, else the folder of `initdb` on the
/// `PATH`.
fn bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| Path::new(dir).join("initdb").is_file())
        .context("no initdb: install PostgreSQL's server binaries (/usr/lib/postgresql/*/bin)")
}
