//! The device's HTTP/2 client: one TLS 1.3 connection (tokio-rustls) carrying protobuf
//! requests to the `/v1` endpoints of `docs/protocol.md`.
//!
//! A [`Connection`] is opened per operation (enroll, sync, approve); HTTP/2 multiplexes every
//! request of that operation over it. Every response body is read with a size cap and decoded
//! with `sealsync_proto::decode_limited`; any non-2xx status is turned into
//! [`ClientError::Server`] from the server's `ErrorResponse`.

pub(crate) mod tls;
pub(crate) mod watch;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use sealsync_proto::Message;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::ClientError;
use crate::options::Timeouts;

/// Largest response body the client reads (responses are refused above it: MS-36).
pub(crate) const MAX_RESPONSE_BYTES: usize = sealsync_proto::MAX_MESSAGE_BYTES;

/// A parsed `https://host[:port]` server URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerUrl {
    /// Host as written (DNS name or IP address, without IPv6 brackets).
    pub(crate) host: String,
    /// TCP port (443 when the URL names none).
    pub(crate) port: u16,
}

impl ServerUrl {
    /// Parses `https://HOST[:PORT][/]`; anything else (other schemes, paths, user info) is
    /// refused.
    pub(crate) fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = |why: &str| ClientError::InvalidInput(format!("server URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| bad("must start with https://"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
            return Err(bad("expected https://HOST[:PORT]"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after ']'")),
            };
            (h.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad("invalid port"))?,
            None => 443,
        };
        Ok(Self { host, port })
    }

    /// `host:port` for the request URI authority (IPv6 hosts bracketed).
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn server_name(&self) -> Result<ServerName<'static>, ClientError> {
        ServerName::try_from(self.host.clone())
            .map_err(|_| ClientError::InvalidInput(format!("invalid server host {:?}", self.host)))
    }
}

/// One HTTP/2 connection to the server.
#[derive(Debug)]
pub(crate) struct Connection {
    sender: http2::SendRequest<Full<Bytes>>,
    authority: String,
    driver: tokio::task::JoinHandle<()>,
    /// Time allowed for one request, from sending it to the last byte of the response.
    request_timeout: Duration,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    /// Whether the connection can still carry requests (the server has not closed it, nor
    /// sent GOAWAY).
    pub(crate) fn usable(&self) -> bool {
        !self.sender.is_closed() && !self.driver.is_finished()
    }

    /// Connects (TCP + TLS 1.3 + HTTP/2) within `timeouts.connect`.
    pub(crate) async fn connect(
        url: &ServerUrl,
        config: ClientConfig,
        timeouts: Timeouts,
    ) -> Result<Self, ClientError> {
        tokio::time::timeout(timeouts.connect, Self::connect_inner(url, config, timeouts))
            .await
            .map_err(|_| {
                ClientError::Network(format!(
                    "timed out connecting to {} after {} s; is the server running?",
                    url.authority(),
                    timeouts.connect.as_secs_f32()
                ))
            })?
    }

    async fn connect_inner(
        url: &ServerUrl,
        config: ClientConfig,
        timeouts: Timeouts,
    ) -> Result<Self, ClientError> {
        let name = url.server_name()?;
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| {
                ClientError::Network(format!("cannot connect to {}: {e}", url.authority()))
            })?;
        // Small requests and responses: do not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let connector = TlsConnector::from(Arc::new(config));
        let tls = connector.connect(name, tcp).await.map_err(|e| {
            let hint = tls_hint(&e).map(|h| format!(": {h}")).unwrap_or_default();
            ClientError::Tls(format!(
                "TLS handshake with {} failed ({e}){hint}",
                url.authority()
            ))
        })?;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .initial_stream_window_size(8 * 1024 * 1024)
            .initial_connection_window_size(16 * 1024 * 1024)
            .max_frame_size(1024 * 1024)
            .max_send_buf_size(4 * 1024 * 1024);
        let (sender, conn) = builder
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ClientError::Network(format!("HTTP/2 handshake failed: {e}")))?;
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed");
            }
        });
        Ok(Self {
            sender,
            authority: url.authority(),
            driver,
            request_timeout: timeouts.request,
        })
    }

    /// Sends one request and returns the raw 2xx body; non-2xx becomes
    /// [`ClientError::Server`].
    pub(crate) async fn call_raw(
        &mut self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        let what = format!("{method} {path}");
        let limit = self.request_timeout;
        tokio::time::timeout(limit, self.call_inner(method, path, body))
            .await
            .map_err(|_| {
                ClientError::Network(format!("{what} timed out after {} s", limit.as_secs_f32()))
            })?
    }

    async fn call_inner(
        &mut self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        request(self.sender.clone(), &self.authority, method, path, body).await
    }

    /// Starts `GET path` on its own task (so the caller can work meanwhile); the task is
    /// aborted when the returned handle is dropped.
    pub(crate) fn spawn_get<R: Message + Default + Send + 'static>(
        &self,
        path: String,
    ) -> Prefetch<R> {
        let sender = self.sender.clone();
        let authority = self.authority.clone();
        let limit = self.request_timeout;
        Prefetch(tokio::spawn(async move {
            let bytes = tokio::time::timeout(
                limit,
                request(sender, &authority, http::Method::GET, &path, None),
            )
            .await
            .map_err(|_| {
                ClientError::Network(format!(
                    "GET {path} timed out after {} s",
                    limit.as_secs_f32()
                ))
            })??;
            sealsync_proto::decode_limited(&bytes, MAX_RESPONSE_BYTES)
                .map_err(|e| ClientError::Protocol(format!("GET {path}: malformed response: {e}")))
        }))
    }

    /// Sends `body` (if any) and decodes a `R` from the 2xx response.
    pub(crate) async fn call<R: Message + Default>(
        &mut self,
        method: http::Method,
        path: &str,
        body: Option<&dyn ErasedMessage>,
    ) -> Result<R, ClientError> {
        let bytes = self
            .call_raw(method.clone(), path, body.map(ErasedMessage::to_bytes))
            .await?;
        sealsync_proto::decode_limited(&bytes, MAX_RESPONSE_BYTES)
            .map_err(|e| ClientError::Protocol(format!("{method} {path}: malformed response: {e}")))
    }

    /// `GET path` decoded as `R`.
    pub(crate) async fn get<R: Message + Default>(&mut self, path: &str) -> Result<R, ClientError> {
        self.call(http::Method::GET, path, None).await
    }

    /// `POST path` with a protobuf body, decoded as `R`.
    pub(crate) async fn post<R: Message + Default>(
        &mut self,
        path: &str,
        body: &dyn ErasedMessage,
    ) -> Result<R, ClientError> {
        self.call(http::Method::POST, path, Some(body)).await
    }

    /// `POST`/`PUT` with a protobuf body whose response body is ignored.
    pub(crate) async fn send(
        &mut self,
        method: http::Method,
        path: &str,
        body: &dyn ErasedMessage,
    ) -> Result<(), ClientError> {
        self.call_raw(method, path, Some(body.to_bytes())).await?;
        Ok(())
    }
}

/// A request running on its own task; aborted on drop.
#[derive(Debug)]
pub(crate) struct Prefetch<R>(tokio::task::JoinHandle<Result<R, ClientError>>);

impl<R> Prefetch<R> {
    /// Waits for the response.
    pub(crate) async fn wait(mut self) -> Result<R, ClientError> {
        (&mut self.0)
            .await
            .map_err(|e| ClientError::Network(format!("request task failed: {e}")))?
    }
}

impl<R> Drop for Prefetch<R> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends one request on `sender` and returns the 2xx body (non-2xx becomes
/// [`ClientError::Server`]).
async fn request(
    mut sender: http2::SendRequest<Full<Bytes>>,
    authority: &str,
    method: http::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Bytes, ClientError> {
    let uri = format!("https://{authority}{path}");
    let mut builder = http::Request::builder().method(method.clone()).uri(uri);
    if body.is_some() {
        builder = builder.header(http::header::CONTENT_TYPE, sealsync_proto::CONTENT_TYPE);
    }
    builder = builder.header(http::header::ACCEPT, sealsync_proto::CONTENT_TYPE);
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| ClientError::InvalidInput(format!("bad request {method} {path}: {e}")))?;
    sender
        .ready()
        .await
        .map_err(|e| ClientError::Network(format!("connection lost: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ClientError::Network(format!("{method} {path} failed: {e}")))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| {
            ClientError::Protocol(format!(
                "{method} {path}: response body unreadable or larger than {MAX_RESPONSE_BYTES} bytes: {e}"
            ))
        })?
        .to_bytes();
    if status.is_success() {
        return Ok(body);
    }
    Err(server_error(status, &body, &method, path))
}

/// [`ClientError::Server`] from a non-2xx response. `code` and `error_id` are the server's
/// text, printed to the user: control characters (terminal escapes) are replaced.
fn server_error(
    status: http::StatusCode,
    body: &[u8],
    method: &http::Method,
    path: &str,
) -> ClientError {
    let err: sealsync_proto::ErrorResponse =
        sealsync_proto::decode_limited(body, 64 * 1024).unwrap_or_default();
    let clean = |s: String| -> String {
        s.chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect()
    };
    let code = if err.code.is_empty() {
        status.as_str().to_string()
    } else {
        clean(err.code)
    };
    ClientError::Server {
        status: status.as_u16(),
        code,
        error_id: clean(err.error_id),
        request: format!("{method} {path}"),
    }
}

/// Object-safe view of a protobuf message (so request helpers take `&dyn`).
pub(crate) trait ErasedMessage: Send + Sync {
    /// The message's protobuf encoding.
    fn to_bytes(&self) -> Vec<u8>;
}

impl<M: Message> ErasedMessage for M {
    fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

/// What a failed handshake most likely means and what to do, for the certificate errors a
/// user can fix.
fn tls_hint(e: &std::io::Error) -> Option<&'static str> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(cert) = e.get_ref()?.downcast_ref::<rustls::Error>()?
    else {
        return None;
    };
    Some(match cert {
        // Raised by the pinned-CA verifier of enrollment.
        C::ApplicationVerificationFailure => {
            "the server's certificate does not match the CA pin in the enrollment bundle; the bundle is damaged or was made from another server's data directory: get a new bundle from this server's operator"
        }
        C::BadSignature | C::UnknownIssuer => {
            "the server's certificate is not from the CA this device enrolled with; the server may be running from another data directory, or the connection is being intercepted: check the server's data directory with its operator"
        }
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet by this device's clock; check this device's date, time and time zone"
        }
        C::Expired | C::ExpiredContext { .. } => {
            "the server's certificate has expired by this device's clock; check this device's date and time, else ask the operator to renew the certificate"
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "the server's certificate is not for this host name; use the address the server was initialised with"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_failures_get_a_hint() {
        // NA-10: a clock two days behind sees the server's certificate as not valid yet; the
        // message must say to check the clock. NA-02/NA-05: a wrong CA or pin names the fix.
        use rustls::CertificateError as C;
        let io = |c: C| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(c),
            )
        };
        let hint = |c: C| tls_hint(&io(c)).unwrap_or_default();
        assert!(hint(C::NotValidYet).contains("clock"));
        assert!(hint(C::Expired).contains("clock"));
        assert!(hint(C::ApplicationVerificationFailure).contains("CA pin"));
        assert!(hint(C::BadSignature).contains("data directory"));
        assert!(hint(C::UnknownIssuer).contains("data directory"));
        assert!(tls_hint(&std::io::Error::other("plain")).is_none());
    }

    #[test]
    fn server_error_text_has_no_control_characters() {
        // MS-41, BI-18: `code` and `error_id` come from the server and end up in the one-line
        // error the CLI prints; terminal escapes in them must not reach the terminal.
        let body = sealsync_proto::ErrorResponse {
            code: "conflict\u{1b}[2K\rall good".into(),
            error_id: "id\n\u{7}".into(),
            message: String::new(),
        }
        .encode_to_vec();
        let err = server_error(
            http::StatusCode::CONFLICT,
            &body,
            &http::Method::POST,
            "/v1/batches",
        );
        let text = err.to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(
            matches!(&err, ClientError::Server { status: 409, code, .. } if code.starts_with("conflict")),
            "{err:?}"
        );
        // Without an ErrorResponse body, the status code stands in.
        let err = server_error(
            http::StatusCode::BAD_GATEWAY,
            b"\xff",
            &http::Method::GET,
            "/v1/status",
        );
        assert!(
            matches!(&err, ClientError::Server { code, .. } if code == "502"),
            "{err:?}"
        );
    }

    #[test]
    fn parses_urls() {
        let u = ServerUrl::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8443));
        assert_eq!(u.authority(), "127.0.0.1:8443");
        let u = ServerUrl::parse("https://sync.example.com/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("sync.example.com", 443));
        let u = ServerUrl::parse("https://[::1]:9000").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert_eq!(u.authority(), "[::1]:9000");
        for bad in [
            "http://x",
            "https://",
            "https://x/path",
            "https://u@x",
            "https://x:99999",
            "https://[::1",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
