//! A webhook caller's proof that it holds its trigger's secret: `Authorization: Bearer
//! SECRET`, or `X-Ferry-Signature: sha256=HEX` of the body's HMAC-SHA256 keyed with the
//! secret. Both compared in constant time; nothing here logs or returns the secret.

use hmac::{Hmac, Mac};
use hyper::HeaderMap;
use sha2::{Digest, Sha256};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-ferry-signature";

/// Why a caller was refused, for the controller's log (never for the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoCredentials,
    WrongBearer,
    MalformedSignature,
    WrongSignature,
    UnknownTrigger,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NoCredentials => "no Authorization bearer and no X-Ferry-Signature",
            Refusal::WrongBearer => "wrong bearer secret",
            Refusal::MalformedSignature => "X-Ferry-Signature is not sha256=HEX",
            Refusal::WrongSignature => "signature does not match the body",
            Refusal::UnknownTrigger => "no such trigger",
        }
    }
}

/// Equal bytes, in a time that depends only on their lengths' digests: both sides hashed
/// first, so neither the length nor a prefix of the secret leaks through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Checks the request's credentials against `secret`: a bearer when there is an
/// `Authorization` header, else the signature of `body`.
pub fn verify(headers: &HeaderMap, body: &[u8], secret: &str) -> Result<(), Refusal> {
    if let Some(auth) = headers.get(hyper::header::AUTHORIZATION) {
        let given = auth
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .ok_or(Refusal::WrongBearer)?;
        return if same(given, secret.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::WrongBearer)
        };
    }
    let Some(signature) = headers.get(SIGNATURE_HEADER) else {
        return Err(Refusal::NoCredentials);
    };
    let hex = signature
        .as_bytes()
        .strip_prefix(b"sha256=")
        .ok_or(Refusal::MalformedSignature)?;
    let given = unhex(hex).ok_or(Refusal::MalformedSignature)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| Refusal::WrongSignature)?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| Refusal::WrongSignature)
}

/// Spends about the time of a real check, so that an unknown trigger's refusal does not
/// answer faster than a wrong secret's.
pub fn verify_nothing(headers: &HeaderMap, body: &[u8]) {
    let _ = verify(headers, body, "fwh_no-such-trigger");
}

fn unhex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    hex.chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

/// `sha256=HEX` of the body's HMAC-SHA256 keyed with `secret`, as a sender computes it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_bearer_or_a_signature_of_the_body_proves_the_secret() {
        let body = br#"{"day":"2026-12-07"}"#;
        assert_eq!(
            verify(&headers("authorization", "Bearer fwh_a"), body, "fwh_a"),
            Ok(())
        );
        assert_eq!(
            verify(&headers("authorization", "Bearer fwh_b"), body, "fwh_a"),
            Err(Refusal::WrongBearer)
        );
        assert_eq!(
            verify(&headers("authorization", "Basic fwh_a"), body, "fwh_a"),
            Err(Refusal::WrongBearer)
        );
        let good = signature("fwh_a", body);
        assert_eq!(
            verify(&headers(SIGNATURE_HEADER, &good), body, "fwh_a"),
            Ok(())
        );
        assert_eq!(
            verify(&headers(SIGNATURE_HEADER, &good), b"{}", "fwh_a"),
            Err(Refusal::WrongSignature),
            "another body"
        );
        assert_eq!(
            verify(&headers(SIGNATURE_HEADER, &good), body, "fwh_b"),
            Err(Refusal::WrongSignature),
            "another secret"
        );
        assert_eq!(
            verify(&headers(SIGNATURE_HEADER, "sha256=zz"), body, "fwh_a"),
            Err(Refusal::MalformedSignature)
        );
        assert_eq!(
            verify(&headers(SIGNATURE_HEADER, &good[7..]), body, "fwh_a"),
            Err(Refusal::MalformedSignature)
        );
        assert_eq!(
            verify(&HeaderMap::new(), body, "fwh_a"),
            Err(Refusal::NoCredentials)
        );
        // A known vector (RFC 4231 test case 2).
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
