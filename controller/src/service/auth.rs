//! Who may call: a bearer token per service (one for agents, one for clients), checked on every
//! call before any handler runs (a service without a configured token is open); and, under
//! mutual TLS, which name an agent may register under: one its certificate holds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::{service::Interceptor, Request, Status};

/// Checks `authorization: Bearer <token>` against the expected token, in constant time.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Option<Arc<[u8]>>,
    /// Who is expected to hold it, for the error message ("agent", "client").
    holder: &'static str,
    /// Refusals are logged at warn at most once per `REFUSAL_LOG_EVERY` (with how many were
    /// refused since), so that a flood of bad clients cannot flood the log.
    refusals: Arc<Mutex<RefusalLog>>,
}

/// How often refused calls are said in the log at most, per service.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    unsaid: u64,
}

impl TokenCheck {
    pub fn new(token: Option<String>, holder: &'static str) -> Self {
        Self {
            expected: token.map(|t| Arc::from(t.into_bytes())),
            holder,
            refusals: Arc::default(),
        }
    }

    /// The remedy for a caller of this service: which flag gives it the token.
    fn remedy(&self) -> &'static str {
        match self.holder {
            "agent" => "start the agent with --token-file FILE (or FERRY_TOKEN_FILE) holding the controller's --agent-token-file token",
            _ => "give the CLI --token-file FILE (or FERRY_TOKEN_FILE) holding the controller's --client-token-file token",
        }
    }

    /// Logs a refusal at warn unless one was logged lately (then counts it). Never the token.
    fn log_refusal(&self, why: &str, peer: Option<std::net::SocketAddr>) {
        let mut log = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if log
            .last
            .is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_EVERY)
        {
            log.unsaid += 1;
            return;
        }
        let also = std::mem::take(&mut log.unsaid);
        log.last = Some(now);
        drop(log);
        let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        tracing::warn!(
            service = self.holder,
            %peer,
            refused_since_last_line = also,
            "refused a call: {why}; {}",
            self.remedy()
        );
    }
}

fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let why = match presented {
            Some(token) if equal_in_constant_time(token.as_bytes(), expected) => {
                return Ok(request)
            }
            Some(_) => format!("the {} token presented is not valid", self.holder),
            None => format!(
                "this controller requires a {} token (authorization: Bearer …)",
                self.holder
            ),
        };
        self.log_refusal(&why, request.remote_addr());
        Err(Status::unauthenticated(why))
    }
}

/// Under mutual TLS, an agent registers only under a name its certificate holds as a DNS
/// subject alternative name, so that holding the agent token or some agent's certificate is
/// not enough to take over another agent's name (and its attempts). Not `bound` (no client
/// certificates asked for): any name goes.
pub fn check_agent_name<T>(request: &Request<T>, name: &str, bound: bool) -> Result<(), Status> {
    if !bound {
        return Ok(());
    }
    let certs = request
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("this controller requires a client certificate"))?;
    let cert = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("this controller requires a client certificate"))?;
    if certificate_holds_name(cert.as_ref(), name) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "agent name {name:?} is not in this agent's certificate: under mutual TLS an agent \
             registers only under a DNS name of its certificate's subject alternative names"
        )))
    }
}

/// Whether the DER certificate lists `name` among its DNS names.
fn certificate_holds_name(der: &[u8], name: &str) -> bool {
    let Ok(server_name) = rustls_pki_types::ServerName::try_from(name) else {
        return false;
    };
    if !matches!(server_name, rustls_pki_types::ServerName::DnsName(_)) {
        return false;
    }
    let der = rustls_pki_types::CertificateDer::from(der);
    webpki::EndEntityCert::try_from(&der)
        .and_then(|cert| cert.verify_is_valid_for_subject_name(&server_name))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(auth) = auth {
            r.metadata_mut()
                .insert("authorization", auth.parse().unwrap());
        }
        r
    }

    #[test]
    fn accepts_only_the_configured_token() {
        let mut check = TokenCheck::new(Some("s3cret".into()), "agent");
        assert!(check.call(request(Some("Bearer s3cret"))).is_ok());
        let wrong = check.call(request(Some("Bearer s3cre"))).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert_eq!(wrong.message(), "the agent token presented is not valid");
        assert!(check.call(request(None)).is_err());
        assert!(TokenCheck::new(None, "client").call(request(None)).is_ok());
    }
}
