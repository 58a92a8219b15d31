//! Test support: a moto S3 server (`python3 -m moto.server`) on a free loopback port, started
//! per test and killed on drop. Missing moto fails the test, naming the install command.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::s3::location::{S3Options, Secret};
use crate::s3::{S3Client, S3Config};

pub const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

pub struct Moto {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn missing(why: &str) -> ! {
    let ci = if std::env::var_os("CI").is_some() {
        " (CI must install it before the tests)"
    } else {
        ""
    };
    panic!(
        "the S3 tests need moto's server: pip install 'moto[server]'{ci}; \
         `python3 -c 'import moto.server'` said: {why}"
    );
}

impl Moto {
    /// Starts moto with `env` added to its environment (e.g. `INITIAL_NO_AUTH_ACTION_COUNT`)
    /// and waits until it accepts connections.
    pub async fn start(env: &[(&str, &str)]) -> Moto {
        match Command::new("python3")
            .args(["-c", "import moto.server"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => missing(String::from_utf8_lossy(&out.stderr).trim()),
            Err(e) => missing(&format!("python3 could not run: {e}")),
        }
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = dir.path().join("moto.log");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let out = std::fs::File::create(&log).expect("log file");
            let err = out.try_clone().expect("log file");
            let child = Command::new("python3")
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .env("PYTHONUNBUFFERED", "1")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("spawning python3 -m moto.server");
            let mut moto = Moto {
                child,
                port,
                log,
                _dir: dir,
            };
            if moto.wait_listening().await {
                return moto;
            }
            // Lost the race for the port: `moto` is killed on drop; try another.
        }
        panic!("moto could not get a free port in 3 tries");
    }

    /// True once moto accepts connections; false if it exited because the port was taken.
    async fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                if text.contains("Address already in use") {
                    return false;
                }
                panic!("moto exited ({status}) before listening:\n{text}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "moto did not listen on port {} within 30 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client of `s3://bucket/prefix` on this server with the given secret.
    pub fn client(&self, url: &str, access_key: &str, secret: &str) -> S3Client {
        let options = S3Options {
            endpoint: Some(self.endpoint()),
            access_key_id: Some(access_key.into()),
            secret_access_key: Some(Secret(secret.into())),
            ..S3Options::default()
        };
        let config = S3Config::resolve(url, &options, &|_| None).expect("config");
        S3Client::new(config)
            .expect("client")
            .with_timeout(Duration::from_secs(30))
    }

    /// Like `client`, after creating the bucket with a signed `PUT /bucket`.
    pub async fn bucket(&self, url: &str) -> S3Client {
        let client = self.client(url, ACCESS_KEY, SECRET_KEY);
        client.create_bucket().await.expect("creating the bucket");
        client
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
