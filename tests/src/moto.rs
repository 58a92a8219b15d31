//! A real S3-compatible server for the tests: moto's server mode (`python3 -m moto.server`,
//! installed by `.ci/run` with pip) on a free loopback port, its request log in a file, killed
//! on drop; with `start_tls`, serving HTTPS with a certificate of a private CA. Unsigned
//! requests (moto checks no signature by default) create buckets and look at what the store
//! holds, independently of Ferry's own S3 client.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{controller::free_port, process::TestDir, ControllerOpts, DevCerts};

/// Credentials moto accepts (any pair works; these are AWS's documentation examples).
pub const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    /// With HTTPS: the CA file that signed its certificate.
    ca: Option<PathBuf>,
    dir: TestDir,
}

impl Moto {
    /// Starts moto and waits until it accepts connections.
    pub async fn start() -> Result<Moto> {
        Self::start_with(None).await
    }

    /// Starts moto serving HTTPS with the set's `controller` certificate (valid for
    /// 127.0.0.1), signed by the set's CA.
    pub async fn start_tls(certs: &DevCerts) -> Result<Moto> {
        Self::start_with(Some(certs)).await
    }

    async fn start_with(tls: Option<&DevCerts>) -> Result<Moto> {
        let check = Command::new("python3")
            .args(["-c", "import moto.server"])
            .stdin(Stdio::null())
            .output()
            .context("running python3")?;
        if !check.status.success() {
            bail!(
                "the S3 tests need moto's server: pip install 'moto[server]'; python3 said: {}",
                String::from_utf8_lossy(&check.stderr).trim()
            );
        }
        for _ in 0..3 {
            let dir = TestDir::new("moto")?;
            let log = dir.path().join("moto.log");
            let port = free_port()?;
            let out = std::fs::File::create(&log)?;
            let child = Command::new("python3")
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .args(tls.iter().flat_map(|certs| {
                    [
                        "-c".into(),
                        certs.file("controller.pem"),
                        "-k".into(),
                        certs.file("controller.key"),
                    ]
                }))
                .env("PYTHONUNBUFFERED", "1")
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .context("spawning python3 -m moto.server")?;
            let mut moto = Moto {
                child,
                port,
                log,
                ca: tls.map(DevCerts::ca),
                dir,
            };
            if moto.wait_listening().await? {
                return Ok(moto);
            }
        }
        bail!("moto could not get a free port in 3 tries")
    }

    async fn wait_listening(&mut self) -> Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                if text.contains("Address already in use") {
                    return Ok(false);
                }
                bail!("moto exited ({status}) before listening:\n{text}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(true);
            }
            if Instant::now() > deadline {
                bail!("moto did not listen on port {} within 30 s", self.port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:PORT`, or `https://…`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// moto's request log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One HTTP/1.1 request (over TLS trusting the CA, with HTTPS); the status and the body.
    pub async fn request(&self, method: &str, path: &str) -> Result<(u16, String)> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        let answer = match &self.ca {
            None => exchange(stream, &head).await?,
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca)? {
                    roots.add(cert?)?;
                }
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(ServerName::try_from("127.0.0.1")?, stream)
                    .await?;
                exchange(stream, &head).await?
            }
        };
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no HTTP status in {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let (status, body) = self.request("PUT", &format!("/{bucket}")).await?;
        if status != 200 {
            bail!("creating bucket {bucket}: HTTP {status}: {body}");
        }
        Ok(())
    }

    /// Keys (and sizes) of the bucket's objects under `prefix`, sorted (up to 1000).
    pub async fn objects(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>> {
        let (status, body) = self
            .request("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"))
            .await?;
        if status != 200 {
            bail!("listing {bucket}: HTTP {status}: {body}");
        }
        let mut found = Vec::new();
        for block in body.split("<Contents>").skip(1) {
            let key = between(block, "<Key>", "</Key>").context("an entry has no Key")?;
            let size = between(block, "<Size>", "</Size>")
                .and_then(|s| s.parse().ok())
                .context("an entry has no Size")?;
            found.push((key.to_owned(), size));
        }
        found.sort();
        Ok(found)
    }

    /// Multipart uploads in progress in the bucket (their keys).
    pub async fn uploads(&self, bucket: &str) -> Result<Vec<String>> {
        let (status, body) = self.request("GET", &format!("/{bucket}?uploads")).await?;
        if status != 200 {
            bail!("listing uploads of {bucket}: HTTP {status}: {body}");
        }
        Ok(body
            .split("<Upload>")
            .skip(1)
            .filter_map(|b| between(b, "<Key>", "</Key>").map(str::to_owned))
            .collect())
    }

    /// Part numbers of every successful part PUT moto logged, in order.
    pub fn part_puts(&self) -> Vec<u32> {
        self.log()
            .lines()
            .filter(|l| l.contains("\"PUT ") && l.contains("\" 200"))
            .filter_map(|l| {
                let at = l.find("partNumber=")? + "partNumber=".len();
                let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect()
    }

    /// Controller options storing artifacts in `s3://bucket/prefix` on this server, the
    /// credentials in a config file (`dir` holds it).
    pub fn controller_opts(&self, bucket: &str, prefix: &str, dir: &TestDir) -> ControllerOpts {
        let config = dir.path().join("s3.toml");
        std::fs::write(
            &config,
            format!(
                "s3_access_key_id = \"{ACCESS_KEY}\"\ns3_secret_access_key = \"{SECRET_KEY}\"\n"
            ),
        )
        .expect("writing the controller's S3 config");
        ControllerOpts::default()
            .arg("--config")
            .arg(config.display().to_string())
            .arg("--artifacts")
            .arg(format!("s3://{bucket}/{prefix}"))
            .arg("--s3-endpoint")
            .arg(self.endpoint())
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// Writes `head`, reads the answer to the end (a server that closes TLS without notice has
/// still answered).
async fn exchange(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    head: &str,
) -> std::io::Result<Vec<u8>> {
    stream.write_all(head.as_bytes()).await?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer).await {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        other => {
            other?;
        }
    }
    Ok(answer)
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
