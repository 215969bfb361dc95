//! Test kit: a real server on 127.0.0.1 in a temporary directory, and a raw HTTP/2-over-TLS
//! client with hand-made keys, so tests can send what a well-behaved client never would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::SupportedProtocolVersion;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sealsync_core::{BatchDraft, CollectionId, DeviceId, Hlc, NewMember, Roster, SealedBatch};
use sealsync_crypto::{KdfParams, KxSecretKey, RecoveryKeys, SigningKey, SymmetricKey};
use sealsync_proto::{Message, SignedRosterEntry};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

pub(crate) struct TestServer {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), sealsync_server::ServerError>>>,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("server");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        sealsync_server::init(&data, &format!("https://{addr}")).unwrap();
        let server = sealsync_server::Server::from_listener(&data, listener)
            .await
            .unwrap();
        assert_eq!(server.local_addr(), addr);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestServer {
            dir,
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("server")
    }

    pub(crate) fn bundle(&self, account: &str) -> sealsync_proto::EnrollmentBundle {
        let line = sealsync_server::enroll_ticket(
            &self.data_dir(),
            account,
            Duration::from_secs(900),
            None,
        )
        .unwrap();
        parse_bundle(&line)
    }

    pub(crate) fn ca_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(self.data_dir().join("ca.pem")).unwrap()
    }

    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(40), task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }
}

pub(crate) fn parse_bundle(line: &str) -> sealsync_proto::EnrollmentBundle {
    let b64 = line.strip_prefix("sealsync-enroll:").unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .unwrap();
    sealsync_proto::decode(&bytes).unwrap()
}

pub(crate) type Identity = (CertificateDer<'static>, PrivateKeyDer<'static>);

pub(crate) fn client_config(
    ca: &CertificateDer<'static>,
    identity: Option<Identity>,
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(config)
}

pub(crate) const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

pub(crate) async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// One HTTP/2 connection.
pub(crate) struct H2 {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl H2 {
    pub(crate) async fn over(tls: TlsStream<TcpStream>) -> Result<Self, String> {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(H2 { sender })
    }

    pub(crate) async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Self, String> {
        let tls = tls_connect(addr, config).await.map_err(|e| e.to_string())?;
        Self::over(tls).await
    }

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

/// Checks an error body is the generic `ErrorResponse` and returns it.
pub(crate) fn generic_error(body: &[u8]) -> sealsync_proto::ErrorResponse {
    let err: sealsync_proto::ErrorResponse = sealsync_proto::decode(body).unwrap();
    assert!(!err.code.is_empty());
    assert_eq!(err.error_id.len(), 32, "{err:?}");
    assert!(!err.message.is_empty());
    err
}

pub(crate) fn tls_key_and_csr() -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    (key, csr.der().to_vec())
}

pub(crate) fn key_der(key: &rcgen::KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// Posts an `EnrollRequest` over a `sealsync-enroll` connection.
pub(crate) async fn post_enroll(
    server: &TestServer,
    req: &sealsync_proto::EnrollRequest,
) -> (u16, Vec<u8>) {
    let config = client_config(
        &server.ca_der(),
        None,
        &[sealsync_proto::ALPN_ENROLL],
        TLS13,
    );
    let mut h2 = H2::connect(server.addr, config).await.unwrap();
    h2.request("POST", "/v1/enroll", req.encode_to_vec())
        .await
        .unwrap()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A recovery key pair made by the test (no secret derives it: tests never recover).
pub(crate) fn recovery_keys() -> RecoveryKeys {
    RecoveryKeys {
        signing: SigningKey::generate(),
        blob_key: SymmetricKey::generate(),
    }
}

/// The genesis of `dev`'s account with `dev` (its enrolled keys) as the first member.
pub(crate) fn genesis(dev: &Device, rk: &RecoveryKeys) -> SignedRosterEntry {
    Roster::make_genesis(sealsync_core::GenesisParams {
        account: &dev.account,
        signing: &dev.sign,
        kx_pk: &dev.kx.public_key(),
        name: &dev.name,
        recovery_pk: &rk.signing.verifying_key(),
        recovery_salt: &[7; 16],
        recovery_kdf: KdfParams::DEFAULT,
        now_ms: now_ms(),
    })
}

/// An `ADD` entry for `new` (its enrolled keys) as the next entry of `roster`, signed by
/// `signer`.
pub(crate) fn add_entry(roster: &Roster, signer: &Device, new: &Device) -> SignedRosterEntry {
    roster.make_add(
        &signer.sign,
        signer.id,
        NewMember {
            device_id: new.id,
            sign_pk: &new.sign.verifying_key(),
            kx_pk: &new.kx.public_key(),
            name: &new.name,
        },
        now_ms(),
    )
}

/// A device enrolled with keys made by the test, connected over mutual TLS.
pub(crate) struct Device {
    pub(crate) account: String,
    pub(crate) name: String,
    pub(crate) sign: SigningKey,
    pub(crate) kx: KxSecretKey,
    pub(crate) id: DeviceId,
    pub(crate) tls_key: rcgen::KeyPair,
    pub(crate) cert_der: Vec<u8>,
    pub(crate) enrolled: sealsync_proto::EnrollResponse,
    pub(crate) h2: H2,
}

impl Device {
    pub(crate) async fn enroll(server: &TestServer, account: &str, name: &str) -> Device {
        let bundle = server.bundle(account);
        let sign = SigningKey::generate();
        let kx = KxSecretKey::generate();
        let (tls_key, csr) = tls_key_and_csr();
        let req = sealsync_proto::EnrollRequest {
            ticket: bundle.ticket,
            name: name.into(),
            csr_der: csr,
            sign_pk: sign.verifying_key().to_bytes().to_vec(),
            kx_pk: kx.public_key().to_bytes().to_vec(),
        };
        let (status, body) = post_enroll(server, &req).await;
        assert_eq!(
            status,
            200,
            "enroll refused: {:?}",
            sealsync_proto::decode::<sealsync_proto::ErrorResponse>(&body)
        );
        let enrolled: sealsync_proto::EnrollResponse = sealsync_proto::decode(&body).unwrap();
        let config = client_config(
            &server.ca_der(),
            Some((
                CertificateDer::from(enrolled.cert_der.clone()),
                key_der(&tls_key),
            )),
            &[sealsync_proto::ALPN_H2],
            TLS13,
        );
        let h2 = H2::connect(server.addr, config).await.unwrap();
        let id = DeviceId(sealsync_crypto::device_id(&sign.verifying_key()));
        Device {
            account: account.into(),
            name: name.into(),
            sign,
            kx,
            id,
            tls_key,
            cert_der: enrolled.cert_der.clone(),
            enrolled,
            h2,
        }
    }

    /// Makes this device the first roster member of its account (which must have no roster
    /// yet) by posting a genesis for its enrolled keys; returns the verified roster. Pushing
    /// batches and posting descriptors need roster membership.
    pub(crate) async fn post_genesis(&mut self) -> Roster {
        let g = genesis(self, &recovery_keys());
        let (status, body) = self.send("POST", "/v1/roster", &g).await;
        assert_eq!(
            status,
            200,
            "genesis refused: {:?}",
            sealsync_proto::decode::<sealsync_proto::ErrorResponse>(&body)
        );
        Roster::from_genesis(&g, &self.account).unwrap()
    }

    /// Adds `new` (enrolled in this device's account) to `roster` with an `ADD` signed and
    /// posted by this member.
    pub(crate) async fn add_member(&mut self, roster: &mut Roster, new: &Device) {
        let entry = add_entry(roster, self, new);
        let (status, body) = self.send("POST", "/v1/roster", &entry).await;
        assert_eq!(
            status,
            200,
            "ADD refused: {:?}",
            sealsync_proto::decode::<sealsync_proto::ErrorResponse>(&body)
        );
        roster.apply(&entry).unwrap();
    }

    pub(crate) async fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        self.h2.request("GET", path, Vec::new()).await.unwrap()
    }

    pub(crate) async fn send<M: Message>(
        &mut self,
        method: &str,
        path: &str,
        msg: &M,
    ) -> (u16, Vec<u8>) {
        self.h2
            .request(method, path, msg.encode_to_vec())
            .await
            .unwrap()
    }

    pub(crate) fn batch(
        &self,
        collection: CollectionId,
        seq: u64,
        prev: [u8; 32],
        value: &[u8],
    ) -> SealedBatch {
        let draft = BatchDraft {
            account: self.account.clone(),
            collection,
            device: self.id,
            seq,
            prev_hash: prev,
            epoch: 1,
            // The server does not check roster heads; a device would refuse this one (MS-12).
            roster_head: [0; 32],
            mutations: vec![sealsync_proto::Mutation {
                key: format!("k{seq}"),
                hlc: Hlc::from_parts(now_ms(), seq as u16).0,
                deleted: false,
                value: value.to_vec(),
                supersedes: vec![],
            }],
        };
        sealsync_core::seal_batch(draft, &self.sign, &SymmetricKey::generate()).unwrap()
    }
}
