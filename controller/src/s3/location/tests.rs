//! Tests of where artifacts live in S3: the location and endpoint parsed, and the settings over
//! the AWS environment, with what is missing named and secrets never shown.

use std::collections::HashMap;

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

const KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "AKID"),
    ("AWS_SECRET_ACCESS_KEY", "sekrit-value"),
];

#[test]
fn s3_location_parses_bucket_and_prefix() {
    let loc = S3Location::parse("s3://my-bucket/runs/ferry/").unwrap();
    assert_eq!(loc.bucket, "my-bucket");
    assert_eq!(loc.prefix, "runs/ferry");
    assert_eq!(loc.key("job/task/out.bin"), "runs/ferry/job/task/out.bin");
    assert_eq!(loc.to_string(), "s3://my-bucket/runs/ferry");
    let bare = S3Location::parse("s3://my-bucket").unwrap();
    assert_eq!(bare.prefix, "");
    assert_eq!(bare.key("a"), "a");
    assert_eq!(S3Location::parse("s3://my-bucket/").unwrap().prefix, "");
}

#[test]
fn s3_location_refuses_bad_urls() {
    for (url, needle) in [
        ("file:///tmp", "must start with s3://"),
        ("s3://", "names no bucket"),
        ("s3:///prefix", "names no bucket"),
        ("s3://ab", "3 to 63"),
        ("s3://My_Bucket", "lowercase"),
        ("s3://-bucket", "start and end"),
        ("s3://bucket/a//b", "empty, `.` or `..`"),
        ("s3://bucket/a/../b", "empty, `.` or `..`"),
        ("s3://bucket/a?x=1", "query"),
    ] {
        let err = S3Location::parse(url).unwrap_err().to_string();
        assert!(err.contains(needle), "{url}: {err}");
    }
}

#[test]
fn s3_endpoint_parses_host_and_port() {
    let e = Endpoint::parse("http://127.0.0.1:9000/", "test").unwrap();
    assert_eq!(e.scheme, Scheme::Http);
    assert_eq!(e.host, "127.0.0.1");
    assert_eq!(e.port, Some(9000));
    assert_eq!(e.to_string(), "http://127.0.0.1:9000");
    let e = Endpoint::parse("http://[::1]:80", "test").unwrap();
    assert_eq!(e.host, "[::1]");
    assert_eq!(e.authority(&e.host), "[::1]");
    let e = Endpoint::parse("https://minio.internal", "test").unwrap();
    assert_eq!((e.scheme, e.port), (Scheme::Https, None));
    for bad in [
        "127.0.0.1:9000",
        "http://",
        "http://host:99999",
        "http://host/path",
    ] {
        let err = Endpoint::parse(bad, "AWS_ENDPOINT_URL").unwrap_err();
        assert!(err.to_string().contains("AWS_ENDPOINT_URL"), "{err}");
    }
}

#[test]
fn s3_config_defaults_to_aws_virtual_hosted() {
    let config = S3Config::resolve("s3://bucket/p", &S3Options::default(), &env_of(&KEYS)).unwrap();
    assert_eq!(config.region, "us-east-1");
    assert_eq!(
        config.endpoint.to_string(),
        "https://s3.us-east-1.amazonaws.com"
    );
    assert!(!config.path_style);
    assert!(config.credentials.session_token.is_none());
}

#[test]
fn s3_config_reads_the_aws_environment() {
    let mut pairs = KEYS.to_vec();
    pairs.extend([
        ("AWS_DEFAULT_REGION", "eu-west-1"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ("AWS_SESSION_TOKEN", "tok"),
    ]);
    let config = S3Config::resolve("s3://bucket", &S3Options::default(), &env_of(&pairs)).unwrap();
    assert_eq!(config.region, "eu-west-1");
    assert_eq!(config.endpoint.port, Some(5000));
    assert!(
        config.path_style,
        "a custom endpoint defaults to path style"
    );
    assert_eq!(config.credentials.access_key_id, "AKID");
    assert_eq!(config.credentials.secret_access_key.0, "sekrit-value");
    assert_eq!(config.credentials.session_token.unwrap().0, "tok");

    pairs.push(("AWS_REGION", "ap-south-1"));
    pairs.push(("AWS_ENDPOINT_URL_S3", "http://s3.local:9000"));
    let config = S3Config::resolve("s3://bucket", &S3Options::default(), &env_of(&pairs)).unwrap();
    assert_eq!(config.region, "ap-south-1", "AWS_REGION wins");
    assert_eq!(
        config.endpoint.host, "s3.local",
        "the S3-specific endpoint wins"
    );
}

#[test]
fn s3_config_settings_win_over_the_environment() {
    let mut pairs = KEYS.to_vec();
    pairs.extend([
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ENDPOINT_URL", "http://a:1"),
    ]);
    let options = S3Options {
        endpoint: Some("http://b:2".into()),
        region: Some("us-west-2".into()),
        access_key_id: Some("CONFIGKEY".into()),
        secret_access_key: Some(Secret("config-secret".into())),
        session_token: None,
        path_style: Some(false),
    };
    let config = S3Config::resolve("s3://bucket", &options, &env_of(&pairs)).unwrap();
    assert_eq!(config.endpoint.host, "b");
    assert_eq!(config.region, "us-west-2");
    assert_eq!(config.credentials.access_key_id, "CONFIGKEY");
    assert_eq!(config.credentials.secret_access_key.0, "config-secret");
    assert!(!config.path_style);
}

#[test]
fn s3_config_names_what_is_missing() {
    let err = S3Config::resolve("s3://bucket", &S3Options::default(), &env_of(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    assert!(err.contains("s3_access_key_id"), "{err}");
    let err = S3Config::resolve(
        "s3://bucket",
        &S3Options::default(),
        &env_of(&[("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    let err = S3Config::resolve(
        "s3://bucket",
        &S3Options {
            region: Some("us east".into()),
            ..S3Options::default()
        },
        &env_of(&KEYS),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("region"), "{err}");
}

#[test]
fn s3_secrets_never_show_in_debug() {
    let mut pairs = KEYS.to_vec();
    pairs.push(("AWS_SESSION_TOKEN", "session-tok-value"));
    let config = S3Config::resolve("s3://bucket", &S3Options::default(), &env_of(&pairs)).unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("sekrit-value"), "{shown}");
    assert!(!shown.contains("session-tok-value"), "{shown}");
    assert!(shown.contains("***"), "{shown}");
}
