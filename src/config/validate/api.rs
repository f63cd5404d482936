//! `guardian.api`: where the HTTP API listens, and what off loopback it needs.

use super::*;

/// `guardian.api`: an address, and off loopback a token and TLS (SPEC §10).
pub(super) fn api(c: &mut Check, a: RawApi) -> ApiSpec {
    let listen = a
        .listen
        .as_deref()
        .and_then(|l| match l.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                c.fail(
                    "guardian.api.listen",
                    format!("`{l}` is not an address; write IP:PORT such as `127.0.0.1:9090`"),
                );
                None
            }
        });
    let token_file = a.token_file.map(PathBuf::from);
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && token_file.is_none()
    {
        c.fail(
                "guardian.api.listen",
                format!("`{addr}` is not a loopback address, so `guardian.api.token_file` is required; set it, or listen on 127.0.0.1"),
            );
    }
    let (tls_cert, tls_key) = (a.tls_cert.map(PathBuf::from), a.tls_key.map(PathBuf::from));
    match (&tls_cert, &tls_key) {
        (Some(_), None) => c.fail(
            "guardian.api.tls_key",
            "is required with tls_cert: the certificate's private key (PEM)",
        ),
        (None, Some(_)) => c.fail(
            "guardian.api.tls_cert",
            "is required with tls_key: the certificate chain (PEM)",
        ),
        _ => {}
    }
    let allow_plaintext = a.allow_plaintext.unwrap_or(false);
    // Asked only once the token is there: one missing piece at a time.
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && token_file.is_some()
        && tls_cert.is_none()
        && !allow_plaintext
    {
        c.fail(
                "guardian.api.listen",
                format!("`{addr}` is not a loopback address, so the API needs TLS: set tls_cert and tls_key (openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj /CN=guardian -keyout key.pem -out cert.pem), or allow_plaintext = true to send the token in clear"),
            );
    }
    ApiSpec {
        listen,
        token_file,
        tls_cert,
        tls_key,
        allow_plaintext,
    }
}
