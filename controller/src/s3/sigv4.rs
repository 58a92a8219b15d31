//! AWS Signature Version 4 for S3: `Authorization` header signing (the controller's own
//! requests) and query-string presigning (URLs handed to agents, valid `X-Amz-Expires` seconds).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::location::Credentials;
use super::time::Timestamp;

/// The payload hash of a presigned URL, or of a request whose body is not hashed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// SHA-256 of the empty string: the payload hash of a request without a body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The longest validity S3 accepts for a presigned URL (7 days).
pub const MAX_PRESIGN_SECS: u64 = 604_800;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Signs requests for one set of credentials, region and service (`s3`).
#[derive(Debug, Clone)]
pub struct Signer {
    credentials: Credentials,
    region: String,
    service: String,
}

impl Signer {
    pub fn new(credentials: Credentials, region: impl Into<String>) -> Self {
        Signer {
            credentials,
            region: region.into(),
            service: "s3".to_string(),
        }
    }

    /// The same credentials for another service (`iam`, `sts`…); tests set up moto with it.
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    fn scope(&self, at: Timestamp) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            at.date(),
            self.region,
            self.service
        )
    }

    fn signature(&self, at: Timestamp, canonical_request: &str) -> String {
        let string_to_sign = format!(
            "{ALGORITHM}\n{}\n{}\n{}",
            at.amz_date(),
            self.scope(at),
            sha256_hex(canonical_request.as_bytes())
        );
        let secret = format!("AWS4{}", self.credentials.secret_access_key.0);
        let k_date = hmac(secret.as_bytes(), at.date().as_bytes());
        let k_region = hmac(&k_date, self.region.as_bytes());
        let k_service = hmac(&k_region, self.service.as_bytes());
        let k_signing = hmac(&k_service, b"aws4_request");
        hex(&hmac(&k_signing, string_to_sign.as_bytes()))
    }

    /// Signs a request in place: adds `x-amz-date`, `x-amz-content-sha256`,
    /// `x-amz-security-token` (with a session token) and `authorization` to `headers`.
    /// `headers` must hold `host`; every header in it is signed. `path` is the URI-encoded
    /// path; `query` holds decoded pairs.
    pub fn sign_headers(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        headers: &mut Vec<(String, String)>,
        payload_hash: &str,
        at: Timestamp,
    ) {
        headers.push(("x-amz-date".into(), at.amz_date()));
        headers.push(("x-amz-content-sha256".into(), payload_hash.into()));
        if let Some(token) = &self.credentials.session_token {
            headers.push(("x-amz-security-token".into(), token.0.clone()));
        }
        let (canonical_headers, signed_headers) = canonical_headers(headers);
        let canonical = canonical_request(
            method,
            path,
            &canonical_query(query),
            &canonical_headers,
            &signed_headers,
            payload_hash,
        );
        let authorization = format!(
            "{ALGORITHM} Credential={}/{},SignedHeaders={signed_headers},Signature={}",
            self.credentials.access_key_id,
            self.scope(at),
            self.signature(at, &canonical)
        );
        headers.push(("authorization".into(), authorization));
    }

    /// The query string of a presigned URL for `method` on `path` (URI-encoded) at `host`
    /// (`name[:port]`), valid `expires_secs` (1 to 604800) from `at`, signing only `host`
    /// and leaving the payload unsigned. `query` (decoded pairs) is signed and included.
    pub fn presign_query(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: &[(String, String)],
        expires_secs: u64,
        at: Timestamp,
    ) -> Result<String, PresignError> {
        if !(1..=MAX_PRESIGN_SECS).contains(&expires_secs) {
            return Err(PresignError::Expiry(expires_secs));
        }
        let mut all: Vec<(String, String)> = query.to_vec();
        all.push(("X-Amz-Algorithm".into(), ALGORITHM.into()));
        all.push((
            "X-Amz-Credential".into(),
            format!("{}/{}", self.credentials.access_key_id, self.scope(at)),
        ));
        all.push(("X-Amz-Date".into(), at.amz_date()));
        all.push(("X-Amz-Expires".into(), expires_secs.to_string()));
        if let Some(token) = &self.credentials.session_token {
            all.push(("X-Amz-Security-Token".into(), token.0.clone()));
        }
        all.push(("X-Amz-SignedHeaders".into(), "host".into()));
        let query = canonical_query(&all);
        let canonical = canonical_request(
            method,
            path,
            &query,
            &format!("host:{host}\n"),
            "host",
            UNSIGNED_PAYLOAD,
        );
        Ok(format!(
            "{query}&X-Amz-Signature={}",
            self.signature(at, &canonical)
        ))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PresignError {
    #[error("a presigned URL must expire in 1 to {MAX_PRESIGN_SECS} seconds, not {0}")]
    Expiry(u64),
}

/// The canonical request: method, path, query, headers (each ending in `\n`), an empty line,
/// the signed header names and the payload hash.
pub fn canonical_request(
    method: &str,
    path: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    format!("{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}")
}

/// `name:value\n` lines sorted by lower-case name (values trimmed, inner runs of spaces made
/// one), and the `;`-joined names.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut lines: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            (name.to_ascii_lowercase(), value)
        })
        .collect();
    lines.sort();
    let canonical = lines
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let signed = lines
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (canonical, signed)
}

/// Pairs URI-encoded (`/` too), sorted by name then value, joined with `&`; a pair with an
/// empty value is `name=`.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// S3's URI encoding: every byte but `A-Z a-z 0-9 - _ . ~` (and `/` unless `encode_slash`)
/// as `%XX` with upper-case hex.
pub fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (b == b'/' && !encode_slash) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    //! The examples of AWS's S3 API reference ("Signature Calculations for the Authorization
    //! Header" and "Authenticating Requests: Using Query Parameters"): bucket `examplebucket`,
    //! key id `AKIAIOSFODNN7EXAMPLE`, 2013-05-24 00:00:00 UTC, region us-east-1.

    use super::*;
    use crate::s3::location::Secret;

    fn example_signer(token: Option<&str>) -> Signer {
        Signer::new(
            Credentials {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_access_key: Secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
                session_token: token.map(|t| Secret(t.into())),
            },
            "us-east-1",
        )
    }

    fn example_time() -> Timestamp {
        Timestamp::from_utc(2013, 5, 24, 0, 0, 0)
    }

    const HOST: &str = "examplebucket.s3.amazonaws.com";

    fn signed(
        path: &str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> (String, Vec<(String, String)>) {
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut headers = vec![("host".to_string(), HOST.to_string())];
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        example_signer(None).sign_headers(
            "GET",
            path,
            &query,
            &mut headers,
            EMPTY_SHA256,
            example_time(),
        );
        let auth = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1
            .clone();
        (auth, headers)
    }

    #[test]
    fn s3_sigv4_get_object_with_range_matches_aws_example() {
        let expected_canonical = "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\n\
             range:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\n\
             host;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let headers: Vec<(String, String)> = [
            ("host", HOST),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (canonical_hdrs, signed_hdrs) = canonical_headers(&headers);
        assert_eq!(
            canonical_request(
                "GET",
                "/test.txt",
                "",
                &canonical_hdrs,
                &signed_hdrs,
                EMPTY_SHA256
            ),
            expected_canonical
        );
        let (auth, headers) = signed("/test.txt", &[], &[("Range", "bytes=0-9")]);
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert!(headers.contains(&("x-amz-date".into(), "20130524T000000Z".into())));
    }

    #[test]
    fn s3_sigv4_get_bucket_lifecycle_matches_aws_example() {
        let (auth, _) = signed("/", &[("lifecycle", "")], &[]);
        assert!(
            auth.ends_with(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date,\
                 Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
            ),
            "{auth}"
        );
    }

    #[test]
    fn s3_sigv4_list_objects_matches_aws_example() {
        let (auth, _) = signed("/", &[("prefix", "J"), ("max-keys", "2")], &[]);
        assert!(
            auth.ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{auth}"
        );
    }

    #[test]
    fn s3_sigv4_presigned_get_matches_aws_example() {
        let query = example_signer(None)
            .presign_query("GET", HOST, "/test.txt", &[], 86_400, example_time())
            .unwrap();
        assert_eq!(
            query,
            "X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn s3_sigv4_presign_signs_part_params_and_session_token() {
        let signer = example_signer(Some("the/token+="));
        let query = signer
            .presign_query(
                "PUT",
                HOST,
                "/a%20b/part",
                &[
                    ("partNumber".into(), "3".into()),
                    ("uploadId".into(), "up/id+1".into()),
                ],
                600,
                example_time(),
            )
            .unwrap();
        assert!(query.contains("&partNumber=3&"), "{query}");
        assert!(query.contains("uploadId=up%2Fid%2B1"), "{query}");
        assert!(
            query.contains("X-Amz-Security-Token=the%2Ftoken%2B%3D"),
            "{query}"
        );
        // Another part number is another signature.
        let other = signer
            .presign_query(
                "PUT",
                HOST,
                "/a%20b/part",
                &[
                    ("partNumber".into(), "4".into()),
                    ("uploadId".into(), "up/id+1".into()),
                ],
                600,
                example_time(),
            )
            .unwrap();
        let sig = |q: &str| q.rsplit_once("X-Amz-Signature=").unwrap().1.to_string();
        assert_ne!(sig(&query), sig(&other));
        assert_eq!(sig(&query).len(), 64);
    }

    #[test]
    fn s3_sigv4_presign_refuses_bad_expiry() {
        let signer = example_signer(None);
        for secs in [0, MAX_PRESIGN_SECS + 1] {
            assert_eq!(
                signer.presign_query("GET", HOST, "/k", &[], secs, example_time()),
                Err(PresignError::Expiry(secs))
            );
        }
    }

    #[test]
    fn s3_sigv4_session_token_is_a_signed_header() {
        let mut headers = vec![("host".to_string(), HOST.to_string())];
        example_signer(Some("tok")).sign_headers(
            "GET",
            "/k",
            &[],
            &mut headers,
            EMPTY_SHA256,
            example_time(),
        );
        let auth = &headers.last().unwrap().1;
        assert!(
            auth.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
            ),
            "{auth}"
        );
    }

    #[test]
    fn s3_sigv4_uri_encoding() {
        assert_eq!(uri_encode("a b/c~d_e.f-g", false), "a%20b/c~d_e.f-g");
        assert_eq!(uri_encode("a/b+c=", true), "a%2Fb%2Bc%3D");
        assert_eq!(uri_encode("é", true), "%C3%A9");
        assert_eq!(
            canonical_query(&[("b".into(), "2".into()), ("a".into(), "".into())]),
            "a=&b=2"
        );
    }
}
