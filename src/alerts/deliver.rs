//! One delivery attempt: the body in the sink's format, signed; POSTed over HTTP or HTTPS
//! (hyper over tokio-rustls, no redirect followed), or handed to a command on stdin.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};

use crate::config::alerts::{AlertEvent, AlertFormat, AlertSpec, AlertTarget, WebhookUrl};

/// An alert as it leaves guardian (SPEC §15).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Body {
    pub event: AlertEvent,
    pub service: Option<String>,
    pub state: Option<String>,
    pub message: String,
    pub exit_code: Option<i32>,
    /// RFC 3339.
    pub time: String,
    pub host: String,
    pub guardian_pid: u32,
    /// How many of the same (service, event) `repeat_after` held back since the last sent.
    pub suppressed: u64,
    /// `recovered`: the problems it ends (Alertmanager resolves them).
    #[serde(skip)]
    pub resolves: Vec<AlertEvent>,
}

/// A sink ready to send: its spec, its signing key and TLS settings, read once.
pub struct Sender {
    pub spec: AlertSpec,
    key: Option<ring::hmac::Key>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Where an exec sink's alert waits for it (`STATE_DIR/alerts`).
    spool: std::path::PathBuf,
}

impl Sender {
    pub fn new(spec: AlertSpec, state_dir: &Path) -> Result<Sender, String> {
        let key = match &spec.secret_file {
            Some(f) => {
                let secret = crate::config::host::read_secret_file(f, "secret file")?;
                Some(ring::hmac::Key::new(
                    ring::hmac::HMAC_SHA256,
                    secret.as_bytes(),
                ))
            }
            None => None,
        };
        let tls = match &spec.target {
            AlertTarget::Webhook(u) if u.is_https() => {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS: {e}"))?
                    .with_root_certificates(crate::config::host::ca_roots(spec.ca_file.as_deref())?)
                    .with_no_client_auth();
                Some(Arc::new(config))
            }
            _ => None,
        };
        Ok(Sender {
            spec,
            key,
            tls,
            spool: state_dir.join("alerts"),
        })
    }

    /// One attempt, bounded by the sink's timeout: what the receiver said, or why not.
    pub async fn send(&self, body: &Body, seq: u64) -> Result<String, String> {
        let limit = self.spec.timeout;
        let attempt = async {
            match &self.spec.target {
                AlertTarget::Webhook(url) => self.post(url, body).await,
                AlertTarget::Exec(argv) => self.exec(argv, body, seq).await,
            }
        };
        tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within the timeout of {}",
                    crate::config::duration::Secs(limit)
                ))
            })
    }

    /// The webhook's body in the sink's format (`None`: nothing to send, an Alertmanager
    /// `recovered` with nothing open).
    pub fn payload(&self, body: &Body) -> Option<Vec<u8>> {
        let v = match self.spec.format {
            AlertFormat::Json => serde_json::to_value(body).ok()?,
            AlertFormat::Slack => {
                let who = body.service.as_deref().unwrap_or("guardian");
                let mut text = format!(
                    "guardian on {}: {who} {}: {}",
                    body.host,
                    body.event.as_str(),
                    body.message
                );
                if body.suppressed > 0 {
                    text.push_str(&format!(" ({} more held back)", body.suppressed));
                }
                json!({ "text": text })
            }
            AlertFormat::Alertmanager => {
                let who = body.service.as_deref().unwrap_or("guardian");
                let alert = |event: AlertEvent, ends: bool| {
                    let mut a = json!({
                        "labels": {
                            "alertname": format!("guardian_{}", event.as_str()),
                            "service": who,
                            "event": event.as_str(),
                            "host": body.host,
                        },
                        "annotations": { "summary": body.message },
                        "startsAt": body.time,
                    });
                    if ends {
                        a["endsAt"] = Value::String(body.time.clone());
                    }
                    a
                };
                if body.event == AlertEvent::Recovered {
                    if body.resolves.is_empty() {
                        return None;
                    }
                    Value::Array(body.resolves.iter().map(|e| alert(*e, true)).collect())
                } else {
                    Value::Array(vec![alert(body.event, false)])
                }
            }
        };
        serde_json::to_vec(&v).ok()
    }

    /// `sha256=HEX` of the body under the sink's key.
    pub fn signature(&self, bytes: &[u8]) -> Option<String> {
        let tag = ring::hmac::sign(self.key.as_ref()?, bytes);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("sha256={hex}"))
    }

    async fn post(&self, url: &WebhookUrl, body: &Body) -> Result<String, String> {
        let Some(bytes) = self.payload(body) else {
            return Ok("nothing to resolve".into());
        };
        let uri = &url.0;
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        let port = uri
            .port_u16()
            .unwrap_or(if url.is_https() { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut req = hyper::Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(hyper::header::HOST, url.host_port())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("guardian/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(sig) = self.signature(&bytes) {
            req = req.header("x-guardian-signature", sig);
        }
        if let Some(creds) = url.credentials() {
            use base64::Engine;
            let basic = base64::engine::general_purpose::STANDARD.encode(creds);
            req = req.header(hyper::header::AUTHORIZATION, format!("Basic {basic}"));
        }
        let req = req
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let status = match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| format!("`{host}` is not a TLS server name: {e}"))?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {host}:{port} failed: {e}"))?;
                exchange(stream, req).await?
            }
            None => exchange(tcp, req).await?,
        };
        let (code, location) = status;
        match code {
            200..=299 => Ok(format!("HTTP {code}")),
            300..=399 => Err(format!(
                "HTTP {code}, redirected to {}: redirects are not followed; give the final URL",
                location.as_deref().unwrap_or("?")
            )),
            _ => Err(format!("HTTP {code}")),
        }
    }

    /// The alert as a file on the command's stdin (the command runs from the spawning
    /// thread, whose descriptor table is its own, so a pipe cannot be handed over: a shell
    /// opens the file in the child).
    async fn exec(&self, argv: &[String], body: &Body, seq: u64) -> Result<String, String> {
        let json = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&self.spool)
            .map_err(|e| format!("cannot create {}: {e}", self.spool.display()))?;
        let file = self
            .spool
            .join(format!("{}-{seq}.json", std::process::id()));
        std::fs::write(&file, &json)
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("f=$1; shift; exec \"$@\" < \"$f\"")
            .arg("sh")
            .arg(&file)
            .args(argv)
            .env("GUARDIAN_ALERT_EVENT", body.event.as_str())
            .env(
                "GUARDIAN_ALERT_SERVICE",
                body.service.as_deref().unwrap_or(""),
            )
            .env("GUARDIAN_ALERT_MESSAGE", &body.message);
        // Long enough for the attempt's own timeout to decide first.
        let ran = crate::health::run_to_end(cmd, self.spec.timeout + Duration::from_secs(1)).await;
        let _ = std::fs::remove_file(&file);
        let program = argv.first().map_or("", String::as_str);
        match ran {
            crate::health::Ran::Exited { ok: true, .. } => Ok("exit 0".into()),
            crate::health::Ran::Exited { how, .. } => Err(format!("`{program}` failed: {how}")),
            crate::health::Ran::TimedOut => Err(format!(
                "`{program}` did not finish; its process group was killed"
            )),
            crate::health::Ran::CannotRun(e) => Err(format!("cannot run `{program}`: {e}")),
        }
    }
}

/// Sends `req` on `io` with HTTP/1.1: the status, and where a redirect points.
async fn exchange<T>(
    io: T,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(u16, Option<String>), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("the request failed: {e}"));
    let out = match resp {
        Ok(r) => {
            let code = r.status().as_u16();
            let location = r
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            // Read (and drop) the answer, at most what a receiver's note needs.
            let _ = http_body_util::Limited::new(r.into_body(), 64 * 1024)
                .collect()
                .await;
            Ok((code, location))
        }
        Err(e) => Err(e),
    };
    driver.abort();
    out
}
