//! Where artifacts live in S3: `s3://bucket/prefix`, the endpoint, region, credentials and
//! addressing style, from explicit settings (config) over the usual AWS environment variables.

use std::fmt;

pub use crate::secret::Secret;

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
mod tests;
