//! Who may call: a bearer token per service (one for agents, one for clients), checked on every
//! call before any handler runs. A service without a configured token is open.

use std::sync::Arc;

use tonic::{service::Interceptor, Request, Status};

/// Checks `authorization: Bearer <token>` against the expected token, in constant time.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Option<Arc<[u8]>>,
    /// Who is expected to hold it, for the error message ("agent", "client").
    holder: &'static str,
}

impl TokenCheck {
    pub fn new(token: Option<String>, holder: &'static str) -> Self {
        Self {
            expected: token.map(|t| Arc::from(t.into_bytes())),
            holder,
        }
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
        match presented {
            Some(token) if equal_in_constant_time(token.as_bytes(), expected) => Ok(request),
            Some(_) => Err(Status::unauthenticated(format!(
                "the {} token presented is not valid",
                self.holder
            ))),
            None => Err(Status::unauthenticated(format!(
                "this controller requires a {} token (authorization: Bearer …)",
                self.holder
            ))),
        }
    }
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
