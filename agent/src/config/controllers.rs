//! The controllers an agent may talk to: where the list comes from (`--controller` repeated,
//! `FERRY_CONTROLLER` comma separated, `controllers = [...]` or `controller = "..."` in the
//! file), and its checks — every URL http:// or https://, one scheme for all, TLS settings
//! only with https://.

use ferry_tls::ClientTls;

use super::{invalid, ConfigError, RawConfig};

/// The controller when none is named.
pub(super) const DEFAULT_CONTROLLER: &str = "http://127.0.0.1:7070";

/// Splits a comma-separated list (`FERRY_CONTROLLER`), dropping empty items.
pub(super) fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl RawConfig {
    /// The file's list, or one given by a higher layer (environment, flags), which replaces
    /// whatever the file said under either key.
    pub(super) fn take_controllers(&mut self, given: Option<Vec<String>>) {
        if let Some(list) = given {
            self.controller = None;
            self.controllers = Some(list);
        }
    }

    /// The checked controller URLs, in the order given, and the TLS settings for them.
    pub(super) fn controller_urls(&self) -> Result<(Vec<String>, Option<ClientTls>), ConfigError> {
        let urls: Vec<String> = match (&self.controller, &self.controllers) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "controllers",
                    "set controller or controllers, not both",
                ))
            }
            (Some(one), None) => vec![one.trim().to_owned()],
            (None, Some(list)) => list.iter().map(|u| u.trim().to_owned()).collect(),
            (None, None) => vec![DEFAULT_CONTROLLER.to_owned()],
        };
        if urls.is_empty() {
            return Err(invalid("controllers", "name at least one controller"));
        }
        let mut https = None;
        for (i, url) in urls.iter().enumerate() {
            if urls[..i].contains(url) {
                return Err(invalid("controller", format!("{url:?} is listed twice")));
            }
            let is_https = scheme_is_https(url)?;
            match https {
                None => https = Some((is_https, url)),
                Some((first, first_url)) if first != is_https => {
                    return Err(invalid(
                        "controller",
                        format!(
                            "{url:?} and {first_url:?} differ in scheme; use http:// for every \
                             controller or https:// for every one"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let tls = if https.is_some_and(|(h, _)| h) {
            Some(self.client_tls()?)
        } else {
            if let Some(key) = [
                ("tls_ca", &self.tls_ca),
                ("tls_cert", &self.tls_cert),
                ("tls_key", &self.tls_key),
            ]
            .iter()
            .find_map(|(key, value)| value.as_ref().map(|_| *key))
            {
                return Err(invalid(
                    key,
                    format!(
                        "TLS settings need an https:// controller, not {:?}",
                        urls[0]
                    ),
                ));
            }
            None
        };
        Ok((urls, tls))
    }
}

/// Whether `url` is https:// (else http://); an error naming it when it is neither or does not
/// parse.
fn scheme_is_https(url: &str) -> Result<bool, ConfigError> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| invalid("controller", format!("{url:?} is not a url ({e})")))?;
    match endpoint.uri().scheme_str() {
        Some("http") => Ok(false),
        Some("https") => Ok(true),
        _ => Err(invalid(
            "controller",
            format!("{url:?} must start with http:// or https://"),
        )),
    }
}

/// `url` without the user and password it may carry (`http://user:pw@host` → `http://host`),
/// for logs.
pub fn redacted(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]).into(),
        None => url.into(),
    }
}
