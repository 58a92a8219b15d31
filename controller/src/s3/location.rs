//! Where artifacts live in S3: `s3://bucket/prefix`, the endpoint, region, credentials and
//! addressing style, from explicit settings (config) over the usual AWS environment variables.

use std::fmt;

pub use crate::config::Secret;

/// The region used when neither a setting nor `AWS_REGION`/`AWS_DEFAULT_REGION` names one.
pub const DEFAULT_REGION: &str = "us-east-1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum S3ConfigError {
    #[error("artifact location {url:?}: {problem}")]
    Url { url: String, problem: String },
    #[error("S3 bucket {bucket:?}: {problem}")]
    Bucket { bucket: String, problem: String },
    #[error("S3 endpoint {endpoint:?} (from {source_name}): {problem}")]
    Endpoint {
        endpoint: String,
        source_name: &'static str,
        problem: String,
    },
    #[error("S3 region {region:?}: {problem}")]
    Region { region: String, problem: String },
    #[error("S3 credentials: no {what}: set {env} or the config key {key}")]
    MissingCredential {
        what: &'static str,
        env: &'static str,
        key: &'static str,
    },
}

/// A bucket and a key prefix (without leading or trailing `/`; may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket` or `s3://bucket/some/prefix[/]`.
    pub fn parse(url: &str) -> Result<Self, S3ConfigError> {
        let bad = |problem: &str| S3ConfigError::Url {
            url: url.to_string(),
            problem: problem.to_string(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("must start with s3://"))?;
        if rest.contains(['?', '#']) {
            return Err(bad("must not have a query or fragment"));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("names no bucket (s3://bucket/prefix)"));
        }
        check_bucket(bucket)?;
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            for segment in prefix.split('/') {
                if segment.is_empty() || segment == "." || segment == ".." {
                    return Err(bad(
                        "the prefix has an empty, `.` or `..` segment (URLs to it would be rewritten)",
                    ));
                }
            }
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The object key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        let name = name.trim_start_matches('/');
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{}", self.prefix, name)
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// S3's bucket naming rules (3–63 of `a-z 0-9 . -`, starting and ending with a letter or
/// digit), which every S3-compatible server accepts.
fn check_bucket(bucket: &str) -> Result<(), S3ConfigError> {
    let bad = |problem: &str| S3ConfigError::Bucket {
        bucket: bucket.to_string(),
        problem: problem.to_string(),
    };
    if !(3..=63).contains(&bucket.len()) {
        return Err(bad("must be 3 to 63 characters long"));
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(bad("may hold only lowercase letters, digits, `.` and `-`"));
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bucket.as_bytes()[0]) || !alnum(bucket.as_bytes()[bucket.len() - 1]) {
        return Err(bad("must start and end with a letter or digit"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// The server to talk to: scheme, host and optional port (no path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// A name, an IPv4 address, or an IPv6 address in brackets (`[::1]`).
    pub host: String,
    pub port: Option<u16>,
}

impl Endpoint {
    /// Parses `http://host[:port][/]` or `https://…`.
    pub fn parse(endpoint: &str, source_name: &'static str) -> Result<Self, S3ConfigError> {
        let bad = |problem: &str| S3ConfigError::Endpoint {
            endpoint: endpoint.to_string(),
            source_name,
            problem: problem.to_string(),
        };
        let (scheme, rest) = if let Some(rest) = endpoint.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = endpoint.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            return Err(bad("must start with http:// or https://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(bad(
                "must be scheme://host[:port] without path, query or user",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed `[` in the host"))?;
            (format!("[{addr}]"), after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("names no host"));
        }
        let port = match port {
            Some(port) => Some(
                port.parse::<u16>()
                    .map_err(|_| bad("the port is not a number from 0 to 65535"))?,
            ),
            None => None,
        };
        Ok(Endpoint { scheme, host, port })
    }

    fn default_port(&self) -> u16 {
        match self.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// `host[:port]` as sent in the `Host` header (the port only when not the default).
    pub fn authority(&self, host: &str) -> String {
        match self.port {
            Some(port) if port != self.default_port() => format!("{host}:{port}"),
            _ => host.to_string(),
        }
    }

    pub fn scheme_str(&self) -> &'static str {
        match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme_str(), self.authority(&self.host))
    }
}

/// Access key, secret and optional session token. `Debug` hides the secret parts.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// Explicit settings (from the controller's config); each one left `None` falls back to the
/// environment, then to the default. Config keys: `s3_endpoint`, `s3_region`,
/// `s3_access_key_id`, `s3_secret_access_key`, `s3_session_token`, `s3_path_style`.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    /// `bucket` in the path (`http://host/bucket/key`) rather than the host name
    /// (`http://bucket.host/key`). Default: on with a custom endpoint (moto, MinIO), off for AWS.
    pub path_style: Option<bool>,
}

/// Everything the client needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub location: S3Location,
    pub endpoint: Endpoint,
    pub region: String,
    pub credentials: Credentials,
    pub path_style: bool,
}

impl S3Config {
    /// Resolves `url` and `options` over the process environment.
    pub fn from_env(url: &str, options: &S3Options) -> Result<Self, S3ConfigError> {
        Self::resolve(url, options, &|name| std::env::var(name).ok())
    }

    /// Resolves `url` and `options` over `env` (a look-up of environment variables; empty
    /// values count as unset).
    pub fn resolve(
        url: &str,
        options: &S3Options,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, S3ConfigError> {
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let location = S3Location::parse(url)?;

        let region = match options.region.clone().filter(|r| !r.is_empty()) {
            Some(region) => region,
            None => env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| DEFAULT_REGION.to_string()),
        };
        let region = region.trim().to_string();
        if !region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(S3ConfigError::Region {
                region,
                problem: "may hold only letters, digits and `-`".into(),
            });
        }

        let endpoint_setting = match options.endpoint.clone().filter(|e| !e.is_empty()) {
            Some(endpoint) => Some((endpoint, "config s3_endpoint")),
            None => env("AWS_ENDPOINT_URL_S3")
                .map(|e| (e, "AWS_ENDPOINT_URL_S3"))
                .or_else(|| env("AWS_ENDPOINT_URL").map(|e| (e, "AWS_ENDPOINT_URL"))),
        };
        let custom_endpoint = endpoint_setting.is_some();
        let endpoint = match endpoint_setting {
            Some((endpoint, source_name)) => Endpoint::parse(endpoint.trim(), source_name)?,
            None => Endpoint {
                scheme: Scheme::Https,
                host: format!("s3.{region}.amazonaws.com"),
                port: None,
            },
        };

        let access_key_id = options
            .access_key_id
            .clone()
            .filter(|k| !k.is_empty())
            .or_else(|| env("AWS_ACCESS_KEY_ID"))
            .ok_or(S3ConfigError::MissingCredential {
                what: "access key id",
                env: "AWS_ACCESS_KEY_ID",
                key: "s3_access_key_id",
            })?;
        let secret_access_key = options
            .secret_access_key
            .clone()
            .filter(|s| !s.0.is_empty())
            .or_else(|| env("AWS_SECRET_ACCESS_KEY").map(Secret))
            .ok_or(S3ConfigError::MissingCredential {
                what: "secret access key",
                env: "AWS_SECRET_ACCESS_KEY",
                key: "s3_secret_access_key",
            })?;
        let session_token = options
            .session_token
            .clone()
            .filter(|s| !s.0.is_empty())
            .or_else(|| env("AWS_SESSION_TOKEN").map(Secret));

        Ok(S3Config {
            location,
            endpoint,
            region,
            credentials: Credentials {
                access_key_id: access_key_id.trim().to_string(),
                secret_access_key,
                session_token,
            },
            path_style: options.path_style.unwrap_or(custom_endpoint),
        })
    }
}

#[cfg(test)]
mod tests {
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
        let config =
            S3Config::resolve("s3://bucket/p", &S3Options::default(), &env_of(&KEYS)).unwrap();
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
        let config =
            S3Config::resolve("s3://bucket", &S3Options::default(), &env_of(&pairs)).unwrap();
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
        let config =
            S3Config::resolve("s3://bucket", &S3Options::default(), &env_of(&pairs)).unwrap();
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
        let config =
            S3Config::resolve("s3://bucket", &S3Options::default(), &env_of(&pairs)).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("sekrit-value"), "{shown}");
        assert!(!shown.contains("session-tok-value"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }
}
