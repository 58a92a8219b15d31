//! The connection to the controller's `JobService`, and naming its failures.

use std::{path::Path, time::Duration};

use ferry_proto::v1::job_service_client::JobServiceClient;
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{interceptor::InterceptedService, Interceptor},
    transport::{Channel, Endpoint},
    Request, Status,
};

use crate::exit::CliError;

pub type Client = JobServiceClient<InterceptedService<Channel, Authorization>>;

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
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            CliError::BadInput(format!("cannot read token file {}: {e}", path.display()))
        })?,
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

/// Where the controller is; `connect` opens a fresh connection each time it is called.
pub struct Controller {
    url: String,
    endpoint: Endpoint,
    authorization: Authorization,
}

impl Controller {
    /// Accepts `http://HOST:PORT` or `https://HOST:PORT`, or `HOST:PORT` meaning the first.
    pub fn new(url: &str) -> Result<Self, CliError> {
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
        Ok(Controller {
            url,
            endpoint,
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
        let bad = |e: ferry_proto::tls::TlsFileError| match e {
            ferry_proto::tls::TlsFileError::NoSystemRoots => {
                CliError::BadInput(format!("{e} with --tls-ca"))
            }
            e => CliError::BadInput(e.to_string()),
        };
        let identity =
            ferry_proto::tls::pair(cert, key, ("--tls-cert", "--tls-key")).map_err(bad)?;
        if !self.url.starts_with("https://") {
            if ca.is_some() || identity.is_some() {
                return Err(CliError::BadInput(format!(
                    "TLS settings (--tls-ca, --tls-cert, --tls-key) need an https:// controller, \
                     not {:?}",
                    self.url
                )));
            }
            return Ok(self);
        }
        let tls = ferry_proto::tls::ClientTls::load(ca, identity).map_err(bad)?;
        self.endpoint = self.endpoint.tls_config(tls.config()).map_err(|e| {
            CliError::BadInput(format!(
                "TLS settings: {}",
                ferry_proto::https::error_chain(&e)
            ))
        })?;
        Ok(self)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn connect(&self) -> Result<Client, CliError> {
        let channel = self
            .endpoint
            .connect()
            .await
            .map_err(|err| CliError::unreachable(&self.url, &err))?;
        Ok(JobServiceClient::with_interceptor(
            channel,
            self.authorization.clone(),
        ))
    }

    /// The error for a failed call; `call` names it in messages ("submit job").
    pub fn error(&self, call: &'static str, status: &Status) -> CliError {
        CliError::from_status(&self.url, call, status)
    }
}

#[cfg(test)]
mod tests {
    use super::Controller;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            Controller::new("127.0.0.1:7070").unwrap().url(),
            "http://127.0.0.1:7070"
        );
        let err = Controller::new("ftp://x").err().unwrap();
        assert_eq!(
            err.to_string(),
            "bad controller url \"ftp://x\": expected http:// or https://"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn tls_files_need_an_https_controller_and_name_what_is_wrong() {
        let http = || Controller::new("http://127.0.0.1:7070").unwrap();
        let ca = std::path::Path::new("/nonexistent/ca.pem");
        let err = http().with_tls(Some(ca), None, None).err().unwrap();
        assert!(
            err.to_string().contains("need an https:// controller"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 2);
        let https = || Controller::new("https://127.0.0.1:7070").unwrap();
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
