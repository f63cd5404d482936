//! One HTTP/1.1 request over any stream (TCP to a service, the Unix socket to guardian), with
//! the answer's body read up to a limit. Used by the http check, clear_connections and clients.

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Bodies above this are cut off: a health answer is small.
pub const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the connection failed: {0}")]
    Connect(String),
    #[error("no answer: {0}")]
    Request(String),
    #[error("the answer's body was cut off: {0}")]
    Body(String),
}

/// Sends `method path` with an empty body and returns the status and body.
pub async fn request<S>(
    stream: S,
    method: &str,
    path: &str,
    host: &str,
    bearer: Option<&str>,
    body_limit: usize,
) -> Result<(u16, Bytes), HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let resp = open(stream, method, path, host, bearer, &[]).await?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), body_limit)
        .collect()
        .await
        .map_err(|e| HttpError::Body(e.to_string()))?
        .to_bytes();
    Ok((status, body))
}

/// Sends `method path` with an empty body and these extra headers; the answer's body is
/// read by the caller as it comes (a stream of Server-Sent Events).
pub async fn open<S>(
    stream: S,
    method: &str,
    path: &str,
    host: &str,
    bearer: Option<&str>,
    headers: &[(&str, String)],
) -> Result<hyper::Response<hyper::body::Incoming>, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| HttpError::Connect(e.to_string()))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header(
            "user-agent",
            concat!("guardian/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| HttpError::Request(e.to_string()))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| HttpError::Request(e.to_string()))
}

/// The same over TCP to `host:port`.
pub async fn request_tcp(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
) -> Result<(u16, Bytes), HttpError> {
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| HttpError::Connect(format!("{host}:{port}: {e}")))?;
    request(
        stream,
        method,
        path,
        &format!("{host}:{port}"),
        None,
        BODY_LIMIT,
    )
    .await
}
