//! Test-only support for Sealsync's test suites; never a dependency of shipped code.
//!
//! It holds what the `sealsync-server` and `sealsync` integration tests share and that needs
//! no server (so no dev-dependency cycle): a raw HTTP/2-over-TLS protocol client with
//! hand-made keys (so tests can send what a well-behaved client never would), and small
//! fixtures: TLS keys and CSRs, sealed one-mutation batches, enrollment-bundle parsing, the
//! success and generic-error checks, and a plaintext scan of files.
//!
//! Failures panic: every helper is meant to run inside a test, where a panic is a failed
//! test.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::SupportedProtocolVersion;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sealsync_core::{BatchDraft, CollectionId, DeviceId, Hlc, SealedBatch};
use sealsync_crypto::{SigningKey, SymmetricKey};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A client certificate and its private key, for mutual TLS.
pub type Identity = (CertificateDer<'static>, PrivateKeyDer<'static>);

/// TLS 1.3 only: the one version the server accepts.
pub const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// TLS client settings for the raw client: trusts only `ca`, offers the `alpn` protocols
/// and `versions`, and presents `identity` when given.
pub fn client_config(
    ca: &CertificateDer<'static>,
    identity: Option<Identity>,
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("protocol versions")
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert], key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(config)
}

/// Opens a TCP connection to `addr` (no Nagle delay) and runs the TLS handshake with
/// `config`, naming the server by its IP address.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// One raw HTTP/2 connection over TLS.
#[derive(Debug)]
pub struct RawClient {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl RawClient {
    /// Runs the HTTP/2 handshake over an established TLS stream; the connection is driven
    /// by a spawned task. Errors are rendered as text.
    pub async fn over(tls: TlsStream<TcpStream>) -> Result<Self, String> {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    /// Connects to `addr` with `config` ([`tls_connect`]) and runs the HTTP/2 handshake.
    /// Errors (TCP, TLS or HTTP/2) are rendered as text.
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Self, String> {
        let tls = tls_connect(addr, config).await.map_err(|e| e.to_string())?;
        Self::over(tls).await
    }

    /// Sends one request with the protocol's content type; returns the status and body, or
    /// an error if the connection failed.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), String> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("https://127.0.0.1{path}"))
            .header("content-type", sealsync_proto::CONTENT_TYPE)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body.to_vec()))
    }
}

/// Connects to `addr` in enrollment mode: ALPN `sealsync-enroll`, TLS 1.3, trusting `ca`, no
/// client certificate.
pub async fn connect_enroll(addr: SocketAddr, ca: &CertificateDer<'static>) -> RawClient {
    let config = client_config(ca, None, &[sealsync_proto::ALPN_ENROLL], TLS13);
    RawClient::connect(addr, config)
        .await
        .expect("enroll connect")
}

/// Seals a batch by the device whose signing key is `sign`, in `account` and `collection`,
/// with an explicit `seq` and previous hash: one live mutation `key` = `value` stamped now
/// (HLC counter `seq`), epoch 1, under a throwaway collection key.
///
/// Its roster head is zero: such batches are only for the server, which does not check
/// roster heads; a device would refuse it (MS-12), and the random collection key anyway.
pub fn seal_one_mutation(
    sign: &SigningKey,
    account: &str,
    collection: CollectionId,
    seq: u64,
    prev: [u8; 32],
    key: &str,
    value: &[u8],
) -> SealedBatch {
    let draft = BatchDraft {
        account: account.into(),
        collection,
        device: DeviceId(sealsync_crypto::device_id(&sign.verifying_key())),
        seq,
        prev_hash: prev,
        epoch: 1,
        roster_head: [0; 32],
        mutations: vec![sealsync_proto::Mutation {
            key: key.into(),
            hlc: Hlc::from_parts(
                now_ms(),
                u16::try_from(seq).expect("seq fits an HLC counter"),
            )
            .0,
            deleted: false,
            value: value.to_vec(),
            supersedes: vec![],
        }],
    };
    sealsync_core::seal_batch(draft, sign, &SymmetricKey::generate()).expect("seal")
}

/// A new P-256 TLS key and a DER certificate signing request for it (no names: the server
/// decides the certificate's subject).
pub fn tls_key_and_csr() -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .expect("csr");
    (key, csr.der().to_vec())
}

/// The PKCS#8 DER form of `key`, for [`Identity`].
pub fn key_der(key: &rcgen::KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// Decodes an enrollment bundle line (`sealsync-enroll:` and unpadded URL-safe base64).
pub fn parse_bundle(line: &str) -> sealsync_proto::EnrollmentBundle {
    let b64 = line
        .strip_prefix("sealsync-enroll:")
        .expect("bundle prefix");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .expect("base64");
    sealsync_proto::decode(&bytes).expect("bundle")
}

/// Decodes an error body and checks it is the generic `ErrorResponse`: a code, a 32-char
/// error id and a message, no details; returns it.
pub fn generic_error(body: &[u8]) -> sealsync_proto::ErrorResponse {
    let err: sealsync_proto::ErrorResponse =
        sealsync_proto::decode(body).expect("ErrorResponse body");
    assert!(!err.code.is_empty(), "error without a code: {err:?}");
    assert_eq!(err.error_id.len(), 32, "{err:?}");
    assert!(!err.message.is_empty(), "error without a message: {err:?}");
    err
}

/// Asserts a response is a success (200), showing the decoded error body when it is not;
/// `what` names the refused request in the message.
#[track_caller]
pub fn assert_ok(status: u16, body: &[u8], what: &str) {
    assert_eq!(
        status,
        200,
        "{what} refused: {:?}",
        sealsync_proto::decode::<sealsync_proto::ErrorResponse>(body)
    );
}

/// Every file under `dir` (recursively) whose bytes contain `needle`: for checking that
/// plaintext never reaches disk.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).expect("read_dir") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(p);
                }
            }
        }
    }
    found
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    u64::try_from(since.as_millis()).expect("millis fit in u64")
}
