//! Unit tests of `S3Client` that need no server: URLs, refusals, error answers.

use std::time::Duration;

use super::error::service_error;
use super::S3Client;
use crate::s3::location::{S3Config, S3Options, Secret};

fn client(url: &str, endpoint: &str, path_style: bool) -> S3Client {
    let options = S3Options {
        endpoint: Some(endpoint.into()),
        access_key_id: Some("AKID".into()),
        secret_access_key: Some(Secret("secret".into())),
        path_style: Some(path_style),
        ..S3Options::default()
    };
    S3Client::new(S3Config::resolve(url, &options, &|_| None).unwrap()).unwrap()
}

#[test]
fn s3_client_builds_path_style_and_virtual_hosted_urls() {
    let c = client("s3://bkt/pre", "http://127.0.0.1:9000", true);
    assert_eq!(c.key("a b/c"), "pre/a b/c");
    let (host, path) = c.host_and_path(Some("pre/a b/c"));
    assert_eq!(
        (host.as_str(), path.as_str()),
        ("127.0.0.1:9000", "/bkt/pre/a%20b/c")
    );
    let url = c.presign_get("pre/a b/c", Duration::from_secs(60)).unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:9000/bkt/pre/a%20b/c?X-Amz-Algorithm="),
        "{url}"
    );

    let c = client("s3://bkt", "http://s3.local", false);
    let (host, path) = c.host_and_path(Some("k"));
    assert_eq!((host.as_str(), path.as_str()), ("bkt.s3.local", "/k"));
}

#[test]
fn s3_client_takes_https_and_refuses_bad_arguments() {
    let options = S3Options {
        endpoint: Some("https://s3.example.com".into()),
        access_key_id: Some("AKID".into()),
        secret_access_key: Some(Secret("secret".into())),
        ..S3Options::default()
    };
    let config = S3Config::resolve("s3://bkt", &options, &|_| None).unwrap();
    assert!(S3Client::new(config).is_ok());

    let c = client("s3://bkt", "http://127.0.0.1:9000", true);
    let err = c
        .presign_upload_part("k", "id", 0, Duration::from_secs(60))
        .unwrap_err()
        .to_string();
    assert!(err.contains("part number 0"), "{err}");
    let err = c.presign_get("k", Duration::ZERO).unwrap_err().to_string();
    assert!(err.contains("1 to 604800 seconds"), "{err}");
}

#[test]
fn s3_client_reads_error_answers() {
    let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code>\
                 <Message>The key &quot;k&quot; does not exist</Message></Error>";
    let err = service_error("GetObject", "s3://b/k".into(), 404, body);
    assert_eq!(err.code(), Some("NoSuchKey"));
    assert_eq!(err.status(), Some(404));
    assert_eq!(
        err.to_string(),
        "S3 GetObject s3://b/k: HTTP 404 NoSuchKey: The key \"k\" does not exist"
    );
    let err = service_error("HeadObject", "s3://b/k".into(), 403, b"");
    assert_eq!(err.code(), Some("Forbidden"));
}
