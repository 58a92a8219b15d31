//! `POST /hooks/NAME` (decision 0017): a webhook delivery. The caller proves it holds the
//! trigger's secret (`auth`), else 401 and nothing starts (an unknown trigger answers the
//! same, so an unauthenticated caller learns nothing of which exist); the JSON body's fields
//! are the run's parameters, checked against the pipeline's declarations (400 naming each);
//! `Idempotency-Key` makes a replay answer the first delivery's job (200) instead of a new
//! one (201); a paused pipeline answers 409 naming it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::auth::{self, Refusal};
use super::router::{error, json as reply, read_body, BodyLimits, Reply, Route};
use crate::engine::{Engine, EngineError};
use crate::store::StoreError;

/// The idempotency header.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

pub struct Hooks {
    engine: Arc<Engine>,
}

impl Hooks {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

const UNAUTHORIZED: &str = "missing or wrong credentials: send `Authorization: Bearer SECRET` or `X-Ferry-Signature: sha256=HEX` (the body's HMAC-SHA256 keyed with the trigger's secret)";

fn unauthorized() -> Reply {
    let mut r = error(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
    r.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer realm=\"ferry hooks\""),
    );
    r
}

/// The body's fields as parameters: a string as is, a number or a boolean as JSON writes it;
/// anything else refused naming the field. An empty body is no parameters.
fn params(body: &[u8]) -> Result<BTreeMap<String, String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(BTreeMap::new());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err(
            "the body must be a JSON object of parameters, e.g. {\"day\": \"2026-12-07\"}".into(),
        );
    };
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, v) in fields {
        let text = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                let kind = match other {
                    Value::Null => "null",
                    Value::Array(_) => "an array",
                    _ => "an object",
                };
                problems.push(format!(
                    "parameter {} is {kind}: give a string, a number or a boolean",
                    ferry_jobspec::check::shown(&name)
                ));
                continue;
            }
        };
        if let Some(problem) = ferry_jobspec::check::param_name(&name) {
            problems.push(format!(
                "parameter name {} {problem}",
                ferry_jobspec::check::shown(&name)
            ));
            continue;
        }
        if let Some(problem) = ferry_jobspec::fields::param_value(&text) {
            problems.push(format!(
                "parameter {} {problem}",
                ferry_jobspec::check::shown(&name)
            ));
            continue;
        }
        out.insert(name, text);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

/// The `Idempotency-Key`, if any: visible ASCII, at most `IDEMPOTENCY_KEY_MAX` bytes.
fn idempotency_key(request: &Request<Incoming>) -> Result<Option<String>, String> {
    let Some(value) = request.headers().get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let max = ferry_jobspec::limits::IDEMPOTENCY_KEY_MAX;
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > max || !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "Idempotency-Key must be 1 to {max} visible ASCII characters"
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// A refused run's answer.
fn refused(e: EngineError) -> Reply {
    match e {
        EngineError::InvalidArgument(m) => error(StatusCode::BAD_REQUEST, m),
        EngineError::InvalidJob(problems) => error(StatusCode::BAD_REQUEST, problems.join("; ")),
        EngineError::NotFound(m) | EngineError::Store(StoreError::NotFound(m)) => error(
            StatusCode::NOT_FOUND,
            format!("{m} not found: the trigger's pipeline was deleted (apply it again, or delete the trigger)"),
        ),
        // The one refusal of an automatic run: its pipeline is paused.
        EngineError::Store(StoreError::Invalid(m)) => error(StatusCode::CONFLICT, m),
        other => {
            tracing::error!(error = %other, "webhook run failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the controller could not start the run: try again",
            )
        }
    }
}

#[async_trait]
impl Route for Hooks {
    async fn handle(&self, request: Request<Incoming>, rest: &str, limits: &BodyLimits) -> Reply {
        let name = rest.to_string();
        if request.method() != Method::POST {
            let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "a webhook takes POST only");
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("POST"),
            );
            return r;
        }
        let key = match idempotency_key(&request) {
            Ok(key) => key,
            Err(m) => return error(StatusCode::BAD_REQUEST, m),
        };
        let headers = request.headers().clone();
        let body = match read_body(request, limits).await {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let trigger = match self.engine.hook_trigger(&name).await {
            Ok(found) => found,
            Err(e) => return refused(e),
        };
        let checked = match &trigger {
            Some(t) => auth::verify(&headers, &body, &t.secret),
            None => {
                auth::verify_nothing(&headers, &body);
                Err(Refusal::UnknownTrigger)
            }
        };
        let trigger = match (checked, trigger) {
            (Ok(()), Some(t)) => t,
            (result, _) => {
                let why = result.err().unwrap_or(Refusal::UnknownTrigger);
                tracing::warn!(trigger = %ferry_jobspec::check::shown(&name), reason = why.reason(), "webhook refused");
                return unauthorized();
            }
        };
        let given = match params(&body) {
            Ok(p) => p,
            Err(m) => return error(StatusCode::BAD_REQUEST, m),
        };
        match self
            .engine
            .fire_trigger(&trigger, given, key.as_deref())
            .await
        {
            Ok(started) => {
                let status = if started.existing {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                reply(
                    status,
                    &json!({
                        "job_id": started.job_id,
                        "pipeline": trigger.pipeline,
                        "version": started.version,
                        "existing": started.existing,
                    }),
                )
            }
            Err(e) => refused(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::params;

    #[test]
    fn body_fields_become_parameters_or_are_refused_by_name() {
        let p = params(br#"{"day":"2026-12-07","n":3,"full":true}"#).unwrap();
        assert_eq!(p["day"], "2026-12-07");
        assert_eq!(p["n"], "3");
        assert_eq!(p["full"], "true");
        assert!(params(b"").unwrap().is_empty());
        assert!(params(b" \n").unwrap().is_empty());
        let e = params(br#"{"day":null,"ids":[1]}"#).unwrap_err();
        assert!(
            e.contains("\"day\" is null") && e.contains("\"ids\" is an array"),
            "{e}"
        );
        assert!(params(b"[1]").unwrap_err().contains("JSON object"));
        assert!(params(b"{").unwrap_err().contains("not JSON"));
    }
}
