//! How a failed connection or request is told: whether it failed on the peer's certificate
//! (final: trying again cannot help) or otherwise (a refused or dropped connection, retried),
//! and its whole chain of causes for the message.

/// Whether a failed request failed on the peer's certificate (unknown issuer, wrong name,
/// expired): trying again cannot help, unlike a refused or dropped connection.
pub fn is_certificate_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(cause) = next {
        if matches!(
            rustls_error(cause),
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        ) {
            return true;
        }
        next = cause.source();
    }
    false
}

/// The rustls error `error` is or wraps: I/O errors carry it inside, sometimes twice over
/// (and an I/O error's `source` skips what it wraps).
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = error.downcast_ref::<std::io::Error>()?.get_ref()?;
    rustls_error(inner)
}

/// An error with its causes, `outer: inner: …` (hyper's and tonic's own texts, "client error
/// (Connect)", "transport error", hide which: a refused connection, an unknown issuer…).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
