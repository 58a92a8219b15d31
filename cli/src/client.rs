//! The connection to the controller's `JobService`, and naming its failures.

use std::time::Duration;

use ferry_proto::v1::job_service_client::JobServiceClient;
use tonic::{
    transport::{Channel, Endpoint},
    Status,
};

use crate::exit::CliError;

pub type Client = JobServiceClient<Channel>;

/// Where the controller is; `connect` opens a fresh connection each time it is called.
pub struct Controller {
    url: String,
    endpoint: Endpoint,
}

impl Controller {
    /// Accepts `http://HOST:PORT`, or `HOST:PORT` meaning the same.
    pub fn new(url: &str) -> Result<Self, CliError> {
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let bad = |why: &str| CliError::BadInput(format!("bad controller url {url:?}: {why}"));
        if !url.starts_with("http://") {
            return Err(bad("only http:// is supported"));
        }
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|_| bad("expected http://HOST:PORT"))?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(Controller { url, endpoint })
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
        Ok(JobServiceClient::new(channel))
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
            "bad controller url \"ftp://x\": only http:// is supported"
        );
        assert_eq!(err.exit_code(), 2);
    }
}
