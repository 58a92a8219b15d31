//! The connection to the controllers' `JobService` — the first of them that can be reached,
//! in the order given — and naming its failures.

use std::{
    path::Path,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use ferry_proto::v1::job_service_client::JobServiceClient;
use ferry_proto::v1::pipeline_service_client::PipelineServiceClient;
use ferry_proto::v1::trigger_service_client::TriggerServiceClient;
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{interceptor::InterceptedService, Interceptor},
    transport::{Channel, Endpoint},
    Request, Status,
};

use crate::exit::CliError;

pub type Client = JobServiceClient<InterceptedService<Channel, Authorization>>;
/// A `PipelineService` client, on the connection a `Client` uses.
pub type PipelineClient = PipelineServiceClient<InterceptedService<Channel, Authorization>>;
/// A `TriggerService` client, on the connection a `Client` uses.
pub type TriggerClient = TriggerServiceClient<InterceptedService<Channel, Authorization>>;

/// Adds `authorization: Bearer <token>` to every call when the user has a token.
#[derive(Clone, Default)]
pub struct Authorization(Option<MetadataValue<Ascii>>);

impl Interceptor for Authorization {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The client token: from `--token-file` (or `FERRY_TOKEN_FILE`), else `FERRY_TOKEN`.
pub fn token(file: Option<&std::path::Path>) -> Result<Option<String>, CliError> {
    let text = match file {
        Some(path) => {
            use std::os::unix::fs::PermissionsExt;
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::BadInput(format!("cannot read token file {}: {e}", path.display()))
            })?;
            let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777);
            if mode & 0o077 != 0 {
                eprintln!(
                    "warning: the token file {} is readable by other users (mode {mode:03o}); \
                     make it yours alone: chmod 600 {}",
                    path.display(),
                    path.display()
                );
            }
            text
        }
        None => match std::env::var("FERRY_TOKEN") {
            Ok(token) => token,
            Err(_) => return Ok(None),
        },
    };
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CliError::BadInput(
            "the client token must be one word of printable ASCII".into(),
        ));
    }
    Ok(Some(token.to_owned()))
}

/// Where the controllers are; `connect` opens a fresh connection each time it is called, to
/// the controller last reached or, when that one cannot be reached, to the next in turn.
pub struct Controller {
    targets: Vec<Target>,
    /// The index of the controller calls go to (the last one reached).
    current: AtomicUsize,
    /// The connection last made, to the controller at that index: the calls of one command
    /// (a submit, then its watch) share it, until `move_on`.
    connected: std::sync::Mutex<Option<(usize, Channel)>>,
    authorization: Authorization,
}

/// One controller.
struct Target {
    url: String,
    endpoint: Endpoint,
}

/// How long reaching one controller may take (TCP, TLS and HTTP/2 handshakes) before the next
/// one is tried.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

impl Controller {
    /// Accepts `http://HOST:PORT` or `https://HOST:PORT`, or `HOST:PORT` meaning the first; at
    /// least one, all of one scheme.
    pub fn new<S: AsRef<str>>(urls: &[S]) -> Result<Self, CliError> {
        let mut targets: Vec<Target> = Vec::with_capacity(urls.len());
        for url in urls {
            let target = Target::new(url.as_ref().trim())?;
            if targets.iter().any(|t| t.url == target.url) {
                return Err(CliError::BadInput(format!(
                    "controller url {:?} is given twice",
                    target.url
                )));
            }
            if let Some(first) = targets.first() {
                if first.is_https() != target.is_https() {
                    return Err(CliError::BadInput(format!(
                        "controller urls {:?} and {:?} differ in scheme: use http:// for every \
                         controller or https:// for every one",
                        first.url, target.url
                    )));
                }
            }
            targets.push(target);
        }
        if targets.is_empty() {
            return Err(CliError::BadInput("no controller url given".into()));
        }
        Ok(Controller {
            targets,
            current: AtomicUsize::new(0),
            connected: std::sync::Mutex::new(None),
            authorization: Authorization::default(),
        })
    }

    /// Presents `token` on every call.
    pub fn with_token(mut self, token: Option<String>) -> Result<Self, CliError> {
        if let Some(token) = token {
            let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
                .parse()
                .map_err(|_| CliError::BadInput("the client token is not valid ASCII".into()))?;
            value.set_sensitive(true);
            self.authorization = Authorization(Some(value));
        }
        Ok(self)
    }

    /// Secures an https:// controller's connection: trusts `ca` (else the system's trust
    /// store) and presents `cert` with `key` when given. TLS files with an http:// controller
    /// are a mistake, not something to ignore.
    pub fn with_tls(
        mut self,
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Self, CliError> {
        let bad = |e: ferry_tls::TlsFileError| match e {
            ferry_tls::TlsFileError::NoSystemRoots => {
                CliError::BadInput(format!("{e} with --tls-ca"))
            }
            e => CliError::BadInput(e.to_string()),
        };
        let identity = ferry_tls::pair(cert, key, ("--tls-cert", "--tls-key")).map_err(bad)?;
        // Every controller has the same scheme (`new`).
        if !self.targets[0].is_https() {
            if ca.is_some() || identity.is_some() {
                return Err(CliError::BadInput(format!(
                    "TLS settings (--tls-ca, --tls-cert, --tls-key) need an https:// controller, \
                     not {:?}",
                    self.targets[0].url
                )));
            }
            return Ok(self);
        }
        let tls = ferry_tls::ClientTls::load(ca, identity).map_err(bad)?;
        for target in &mut self.targets {
            target.endpoint = target
                .endpoint
                .clone()
                .tls_config(tls.config())
                .map_err(|e| {
                    CliError::BadInput(format!("TLS settings: {}", ferry_tls::error_chain(&e)))
                })?;
        }
        Ok(self)
    }

    /// The URL of the controller calls go to (the last one reached).
    pub fn url(&self) -> &str {
        &self.targets[self.current.load(Ordering::Relaxed)].url
    }

    /// Every controller's URL, in the order given.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.url.as_str())
    }

    /// A connection to the controller last reached (the one this command already made, when
    /// there is one), or else to the first of the others, in turn, that can be reached; when
    /// none can, an error naming every one and why.
    pub async fn connect(&self) -> Result<Client, CliError> {
        let n = self.targets.len();
        let start = self.current.load(Ordering::Relaxed);
        if let Some((at, channel)) = self.reused() {
            if at == start {
                return Ok(JobServiceClient::with_interceptor(
                    channel,
                    self.authorization.clone(),
                ));
            }
        }
        let mut failures = Vec::new();
        for at in (start..start + n).map(|i| i % n) {
            let target = &self.targets[at];
            let error = match tokio::time::timeout(REACH_TIMEOUT, target.endpoint.connect()).await {
                Ok(Ok(channel)) => {
                    self.current.store(at, Ordering::Relaxed);
                    *self.connected.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((at, channel.clone()));
                    return Ok(JobServiceClient::with_interceptor(
                        channel,
                        self.authorization.clone(),
                    ));
                }
                Ok(Err(err)) => CliError::unreachable(&target.url, &err),
                Err(_) => CliError::Unreachable {
                    url: target.url.clone(),
                    reason: format!("no connection within {}s", REACH_TIMEOUT.as_secs()),
                },
            };
            failures.push(error);
        }
        Err(CliError::none_reachable(failures))
    }

    /// A `PipelineService` client on the connection `connect` makes (or reuses).
    pub async fn connect_pipelines(&self) -> Result<PipelineClient, CliError> {
        self.connect().await?;
        let (_, channel) = self
            .reused()
            .ok_or_else(|| CliError::Failed("the connection to the controller was lost".into()))?;
        Ok(PipelineServiceClient::with_interceptor(
            channel,
            self.authorization.clone(),
        ))
    }

    /// A `TriggerService` client on the connection `connect` makes (or reuses).
    pub async fn connect_triggers(&self) -> Result<TriggerClient, CliError> {
        self.connect().await?;
        let (_, channel) = self
            .reused()
            .ok_or_else(|| CliError::Failed("the connection to the controller was lost".into()))?;
        Ok(TriggerServiceClient::with_interceptor(
            channel,
            self.authorization.clone(),
        ))
    }

    /// The controller calls go to was lost (a watch's stream broke): the next connection tries
    /// the next controller first.
    pub fn move_on(&self) {
        self.connected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let n = self.targets.len();
        let at = self.current.load(Ordering::Relaxed);
        self.current.store((at + 1) % n, Ordering::Relaxed);
    }

    /// The connection last made, if any.
    fn reused(&self) -> Option<(usize, Channel)> {
        self.connected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Several controllers to choose from.
    pub fn has_several(&self) -> bool {
        self.targets.len() > 1
    }

    /// The error for a failed call; `call` names it in messages ("submit job").
    pub fn error(&self, call: &'static str, status: &Status) -> CliError {
        CliError::from_status(self.url(), call, status)
    }
}

impl Target {
    fn new(url: &str) -> Result<Target, CliError> {
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let bad = |why: &str| CliError::BadInput(format!("bad controller url {url:?}: {why}"));
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(bad("expected http:// or https://"));
        }
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|_| bad("expected http://HOST:PORT or https://HOST:PORT"))?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(Target { url, endpoint })
    }

    fn is_https(&self) -> bool {
        self.url.starts_with("https://")
    }
}

#[cfg(test)]
mod tests {
    use super::Controller;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            Controller::new(&["127.0.0.1:7070"]).unwrap().url(),
            "http://127.0.0.1:7070"
        );
        let err = Controller::new(&["ftp://x"]).err().unwrap();
        assert_eq!(
            err.to_string(),
            "bad controller url \"ftp://x\": expected http:// or https://"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn several_urls_are_checked_each() {
        let c = Controller::new(&["http://a:1", " b:2 "]).unwrap();
        assert_eq!(c.urls().collect::<Vec<_>>(), ["http://a:1", "http://b:2"]);
        assert_eq!(c.url(), "http://a:1");
        c.move_on();
        assert_eq!(c.url(), "http://b:2");
        c.move_on();
        assert_eq!(c.url(), "http://a:1", "cycles");
        let err = Controller::new(&["http://a:1", "ftp://bad"]).err().unwrap();
        assert_eq!(
            err.to_string(),
            "bad controller url \"ftp://bad\": expected http:// or https://"
        );
        let err = Controller::new(&["http://a:1", "https://b:1"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("differ in scheme"), "{err}");
        let err = Controller::new(&["a:1", "http://a:1"]).err().unwrap();
        assert!(
            err.to_string().contains("\"http://a:1\" is given twice"),
            "{err}"
        );
        assert!(Controller::new::<&str>(&[]).is_err());
        let ca = std::path::Path::new("/nonexistent/ca.pem");
        let err = Controller::new(&["http://a:1", "http://b:1"])
            .unwrap()
            .with_tls(Some(ca), None, None)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("need an https:// controller"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_controller_is_skipped_and_all_are_named_when_none_answers() {
        // Two ports, both closed once their URLs are known.
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let (la, lb) = (bind().await.unwrap(), bind().await.unwrap());
        let url = |l: &tokio::net::TcpListener| format!("http://{}", l.local_addr().unwrap());
        let (a, b) = (url(&la), url(&lb));
        drop((la, lb));
        let c = Controller::new(&[a.clone(), b.clone()]).unwrap();
        let err = c.connect().await.err().unwrap();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot reach any controller: ")
                && text.contains(&format!("{a} (connection refused)"))
                && text.contains(&format!("{b} (connection refused)")),
            "{text}"
        );
        assert_eq!(err.exit_code(), 3);
    }

    #[test]
    fn tls_files_need_an_https_controller_and_name_what_is_wrong() {
        let http = || Controller::new(&["http://127.0.0.1:7070"]).unwrap();
        let ca = std::path::Path::new("/nonexistent/ca.pem");
        let err = http().with_tls(Some(ca), None, None).err().unwrap();
        assert!(
            err.to_string().contains("need an https:// controller"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 2);
        let https = || Controller::new(&["https://127.0.0.1:7070"]).unwrap();
        let err = https().with_tls(Some(ca), None, None).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/ca.pem"),
            "{err}"
        );
        let err = https().with_tls(None, Some(ca), None).err().unwrap();
        assert_eq!(
            err.to_string(),
            "a certificate and its key go together: --tls-cert is set but --tls-key is not"
        );
        // Without files an https:// controller is checked against the system's trust store.
        assert!(https().with_tls(None, None, None).is_ok());
    }
}
