//! Test kit: a real in-process server on 127.0.0.1, and a raw protocol client that speaks
//! HTTP/2 over (mutual) TLS with hand-made keys, so tests can send what a well-behaved client
//! never would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sealsync_client::{DeviceState, EnrollOptions, Replica};
use sealsync_core::{BatchDraft, CollectionId, DeviceId, GenesisParams, Hlc, Roster, SealedBatch};
use sealsync_crypto::{KdfParams, KxSecretKey, SigningKey, SymmetricKey};
use sealsync_proto::Message as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A real server in a temporary directory, serving on a free loopback port.
pub(crate) struct TestServer {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), sealsync_server::ServerError>>>,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        sealsync_server::init(&dir.path().join("server"), &format!("https://{addr}"))
            .expect("init");
        let server = sealsync_server::Server::from_listener(&dir.path().join("server"), listener)
            .await
            .expect("server");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            dir,
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("server")
    }

    /// A fresh enrollment bundle for `account`.
    pub(crate) fn bundle(&self, account: &str) -> String {
        sealsync_server::enroll_ticket(&self.data_dir(), account, Duration::from_secs(900), None)
            .expect("ticket")
    }

    /// A directory for a device's home inside this test's temporary directory.
    pub(crate) fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn ca_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(self.data_dir().join("ca.pem")).expect("ca.pem")
    }

    pub(crate) async fn stop(mut self) {
        self.halt().await;
    }

    /// Stops serving but keeps the temporary directory (and the devices' homes in it).
    pub(crate) async fn halt(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Enrollment options with no recovery secret.
pub(crate) fn opts(name: &str) -> EnrollOptions {
    EnrollOptions {
        name: name.into(),
        recovery: None,
    }
}

/// The first device of `account` ("first") and a second one ("second") approved by it,
/// both trusted; with the account's recovery secret.
pub(crate) async fn approved_pair(
    server: &TestServer,
    account: &str,
) -> (Replica, Replica, String) {
    let first = Replica::enroll(
        &server.home("first"),
        &server.bundle(account),
        opts("first"),
    )
    .await
    .expect("enroll first");
    assert_eq!(first.state, DeviceState::Trusted);
    let secret = first
        .recovery_secret
        .as_ref()
        .expect("recovery secret for the first device")
        .to_string();
    let mut a = first.replica;
    let second = Replica::enroll(
        &server.home("second"),
        &server.bundle(account),
        opts("second"),
    )
    .await
    .expect("enroll second");
    assert_eq!(second.state, DeviceState::Pending);
    let code = second
        .approval_code
        .clone()
        .expect("approval code while pending");
    let pending = a.pending_devices().await.expect("pending");
    assert!(
        pending
            .iter()
            .any(|p| p.device_id == second.device_id.to_string()),
        "second device not listed as pending"
    );
    a.approve(&second.device_id.to_string(), &code)
        .await
        .expect("approve");
    let mut b = second.replica;
    b.sync().await.expect("sync after approval");
    assert_eq!(b.status().expect("status").state, DeviceState::Trusted);
    (a, b, secret)
}

/// Every file under `dir` that contains `needle`.
pub(crate) fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).expect("read_dir") {
            let entry = entry.expect("entry");
            let p = entry.path();
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

/// Decodes a bundle printed by `sealsync admin enroll`.
pub(crate) fn parse_bundle(bundle: &str) -> sealsync_proto::EnrollmentBundle {
    let b64 = bundle
        .strip_prefix("sealsync-enroll:")
        .expect("bundle prefix");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .expect("base64");
    sealsync_proto::decode(&bytes).expect("bundle")
}

/// TLS client settings for the raw client.
pub(crate) fn client_config(
    ca: &CertificateDer<'static>,
    identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    alpn: &[u8],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls13")
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert], key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// One HTTP/2 connection over TLS.
pub(crate) struct RawClient {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl RawClient {
    pub(crate) async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(addr.ip().into());
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    /// Sends one request; returns the status and body, or an error if the connection failed.
    pub(crate) async fn request(
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

/// A device enrolled through the raw protocol with keys made by the test.
pub(crate) struct RawDevice {
    pub(crate) account: String,
    pub(crate) sign: SigningKey,
    pub(crate) kx: KxSecretKey,
    pub(crate) device_id: DeviceId,
    pub(crate) client: RawClient,
    pub(crate) chain: (u64, [u8; 32]),
}

/// The device name every raw enrollment uses.
const RAW_NAME: &str = "raw";

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// A new TLS key and a CSR for it.
pub(crate) fn tls_key_and_csr() -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    let csr = params.serialize_request(&key).expect("csr");
    (key, csr.der().to_vec())
}

/// Posts an enrollment request with `ticket` and the keys `sign` and `kx`; returns the HTTP
/// status and body.
pub(crate) async fn raw_enroll(
    server: &TestServer,
    ticket: &[u8],
    sign: &SigningKey,
    kx: &KxSecretKey,
    csr: Vec<u8>,
) -> (u16, Vec<u8>) {
    let config = client_config(&server.ca_der(), None, sealsync_proto::ALPN_ENROLL);
    let mut client = RawClient::connect(server.addr, config)
        .await
        .expect("enroll connect");
    let req = sealsync_proto::EnrollRequest {
        ticket: ticket.to_vec(),
        name: RAW_NAME.into(),
        csr_der: csr,
        sign_pk: sign.verifying_key().to_bytes().to_vec(),
        kx_pk: kx.public_key().to_bytes().to_vec(),
    };
    client
        .request("POST", "/v1/enroll", req.encode_to_vec())
        .await
        .expect("enroll request")
}

impl RawDevice {
    /// Enrolls a raw device in `account` and makes it a roster member: when the account has
    /// no roster yet (the device is its first), it posts a genesis for its enrolled keys.
    /// Pushing batches and posting descriptors need roster membership. An account that
    /// already has a roster is not touched (the device then stays pending).
    pub(crate) async fn enroll(server: &TestServer, account: &str) -> Self {
        let (mut dev, roster) = Self::enroll_inner(server, account).await;
        if roster.is_empty() {
            dev.post_genesis().await;
        }
        dev
    }

    /// Enrolls a raw device in `account` and leaves it pending: admitted by the operator,
    /// never added to the account's roster.
    pub(crate) async fn enroll_pending(server: &TestServer, account: &str) -> Self {
        Self::enroll_inner(server, account).await.0
    }

    /// Posts a genesis naming this device (its enrolled keys) as the account's first member,
    /// with a throwaway recovery key (raw devices never recover).
    async fn post_genesis(&mut self) {
        let recovery = SigningKey::generate();
        let genesis = Roster::make_genesis(GenesisParams {
            account: &self.account,
            signing: &self.sign,
            kx_pk: &self.kx.public_key(),
            name: RAW_NAME,
            recovery_pk: &recovery.verifying_key(),
            recovery_salt: &sealsync_crypto::random_array::<16>(),
            recovery_kdf: KdfParams::DEFAULT,
            now_ms: now_ms(),
        });
        Roster::from_genesis(&genesis, &self.account).expect("own genesis verifies");
        let (status, body) = self
            .client
            .request("POST", "/v1/roster", genesis.encode_to_vec())
            .await
            .expect("post genesis");
        assert_eq!(
            status,
            200,
            "genesis refused: {:?}",
            sealsync_proto::decode::<sealsync_proto::ErrorResponse>(&body)
        );
    }

    /// Enrolls and connects; returns the device and the roster sent at enrollment.
    async fn enroll_inner(
        server: &TestServer,
        account: &str,
    ) -> (Self, Vec<sealsync_proto::SignedRosterEntry>) {
        let bundle = parse_bundle(&server.bundle(account));
        let sign = SigningKey::generate();
        let kx = KxSecretKey::generate();
        let (tls_key, csr) = tls_key_and_csr();
        let (status, body) = raw_enroll(server, &bundle.ticket, &sign, &kx, csr).await;
        assert_eq!(status, 200, "enroll refused");
        let resp: sealsync_proto::EnrollResponse =
            sealsync_proto::decode(&body).expect("EnrollResponse");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(tls_key.serialize_der()));
        let config = client_config(
            &server.ca_der(),
            Some((CertificateDer::from(resp.cert_der.clone()), key)),
            sealsync_proto::ALPN_H2,
        );
        let client = RawClient::connect(server.addr, config)
            .await
            .expect("mTLS connect");
        let device_id = DeviceId(sealsync_crypto::device_id(&sign.verifying_key()));
        assert_eq!(resp.device_id, device_id.0.to_vec());
        let dev = Self {
            account: account.into(),
            sign,
            kx,
            device_id,
            client,
            chain: (0, [0; 32]),
        };
        (dev, resp.roster)
    }

    /// Seals the next batch of this device in `collection` (not yet sent) with one mutation.
    pub(crate) fn next_batch(
        &mut self,
        collection: CollectionId,
        key: &str,
        value: &[u8],
    ) -> SealedBatch {
        self.batch_at(collection, self.chain.0 + 1, self.chain.1, key, value)
    }

    /// Seals a batch with an explicit seq and previous hash.
    pub(crate) fn batch_at(
        &self,
        collection: CollectionId,
        seq: u64,
        prev: [u8; 32],
        key: &str,
        value: &[u8],
    ) -> SealedBatch {
        let now = now_ms();
        let draft = BatchDraft {
            account: self.account.clone(),
            collection,
            device: self.device_id,
            seq,
            prev_hash: prev,
            epoch: 1,
            // Raw-device batches only go to the server, which does not check roster heads; a
            // device would refuse this zero head (MS-12), and the random collection key anyway.
            roster_head: [0; 32],
            mutations: vec![sealsync_proto::Mutation {
                key: key.into(),
                hlc: Hlc::from_parts(now, seq as u16).0,
                deleted: false,
                value: value.to_vec(),
                supersedes: vec![],
            }],
        };
        sealsync_core::seal_batch(draft, &self.sign, &SymmetricKey::generate()).expect("seal")
    }

    /// Pushes sealed batches; on success records the chain head.
    pub(crate) async fn push(&mut self, batches: &[&SealedBatch]) -> (u16, Vec<u8>) {
        let req = sealsync_proto::PushRequest {
            batches: batches.iter().map(|b| b.sealed.clone()).collect(),
        };
        let (status, body) = self
            .client
            .request("POST", "/v1/batches", req.encode_to_vec())
            .await
            .expect("push");
        if let Some(last) = batches.last()
            && status == 200
            && last.header.seq > self.chain.0
        {
            self.chain = (last.header.seq, last.hash);
        }
        (status, body)
    }

    /// Every log entry of `collection` visible to this device.
    pub(crate) async fn pull_all(
        &mut self,
        collection: CollectionId,
    ) -> Vec<sealsync_proto::LogEntry> {
        let mut after = 0;
        let mut all = Vec::new();
        loop {
            let path = format!(
                "/v1/batches?collection={}&after={after}&limit=1000",
                hex::encode(collection.0)
            );
            let (status, body) = self
                .client
                .request("GET", &path, Vec::new())
                .await
                .expect("pull");
            assert_eq!(status, 200, "pull refused");
            let page: sealsync_proto::PullResponse =
                sealsync_proto::decode(&body).expect("PullResponse");
            all.extend(page.entries);
            after = page.next;
            if !page.more {
                return all;
            }
        }
    }
}

/// Decodes an error body and checks it is generic: a code and an error id, no details.
pub(crate) fn assert_generic_error(body: &[u8]) -> sealsync_proto::ErrorResponse {
    let err: sealsync_proto::ErrorResponse =
        sealsync_proto::decode(body).expect("ErrorResponse body");
    assert!(!err.code.is_empty(), "error without a code");
    assert!(err.error_id.len() >= 8, "error id missing: {err:?}");
    err
}
