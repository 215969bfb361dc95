//! Test kit: a real in-process server on 127.0.0.1, and raw devices that speak HTTP/2 over
//! (mutual) TLS with hand-made keys through the raw client of `sealsync-testkit` (re-exported
//! here), so tests can send what a well-behaved client never would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use sealsync_client::{DeviceState, EnrollOptions, PairingError, Replica};
use sealsync_core::{CollectionId, DeviceId, GenesisParams, Roster, SealedBatch};
use sealsync_crypto::{KdfParams, KxSecretKey, SigningKey};
use sealsync_proto::Message as _;
pub(crate) use sealsync_testkit::{
    RawClient, TLS13, assert_ok, client_config, connect_enroll, files_containing,
    generic_error as assert_generic_error, key_der, now_ms, parse_bundle, seal_one_mutation,
    tls_key_and_csr,
};
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

/// Enrollment options of a device joining an existing account, with no recovery secret.
pub(crate) fn opts(name: &str) -> EnrollOptions {
    EnrollOptions::new(name)
}

/// Enrollment options of the first device of a new account.
pub(crate) fn first_opts(name: &str) -> EnrollOptions {
    opts(name).new_account(true)
}

/// Pairs the pending `joiner` with the trusted `approver`, both running at once as two
/// people would (approve prints the code, join types it). Returns the two results.
pub(crate) async fn pair(
    approver: &mut Replica,
    joiner: &mut Replica,
) -> (Result<(), PairingError>, Result<(), PairingError>) {
    let timeout = Duration::from_secs(30);
    let approval = approver
        .begin_approval(joiner.device_id(), timeout)
        .await
        .expect("begin approval");
    let code = approval.code().to_string();
    tokio::join!(
        approver.finish_approval(approval),
        joiner.join(&code, timeout)
    )
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
        first_opts("first"),
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
    let pending = a.pending_devices().await.expect("pending");
    assert!(
        pending.iter().any(|p| p.device_id == second.device_id),
        "second device not listed as pending"
    );
    let mut b = second.replica;
    let (approved, joined) = pair(&mut a, &mut b).await;
    approved.expect("approve");
    joined.expect("join");
    b.sync().await.expect("sync after approval");
    assert_eq!(b.status().expect("status").state, DeviceState::Trusted);
    (a, b, secret)
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

/// Posts an enrollment request with `ticket` and the keys `sign` and `kx` (with a valid
/// proof of possession) into an existing account, or, when the server answers that the
/// account has no devices (409, ticket unspent), as its first device; returns the HTTP
/// status and body.
pub(crate) async fn raw_enroll(
    server: &TestServer,
    ticket: &[u8],
    sign: &SigningKey,
    kx: &KxSecretKey,
    csr: Vec<u8>,
) -> (u16, Vec<u8>) {
    let mut client = connect_enroll(server.addr, &server.ca_der()).await;
    for new_account in [false, true] {
        let mut req = sealsync_proto::EnrollRequest {
            ticket: ticket.to_vec(),
            name: RAW_NAME.into(),
            csr_der: csr.clone(),
            sign_pk: sign.verifying_key().to_bytes().to_vec(),
            kx_pk: kx.public_key().to_bytes().to_vec(),
            new_account,
            pop_signature: Vec::new(),
        };
        sealsync_core::sign_enroll_request(sign, &mut req);
        let (status, body) = client
            .request("POST", "/v1/enroll", req.encode_to_vec())
            .await
            .expect("enroll request");
        if status != 409 || new_account {
            return (status, body);
        }
    }
    unreachable!("the loop returns on its second pass")
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
        assert_ok(status, &body, "genesis");
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
        assert_ok(status, &body, "enroll");
        let resp: sealsync_proto::EnrollResponse =
            sealsync_proto::decode(&body).expect("EnrollResponse");
        let config = client_config(
            &server.ca_der(),
            Some((
                CertificateDer::from(resp.cert_der.clone()),
                key_der(&tls_key),
            )),
            &[sealsync_proto::ALPN_H2],
            TLS13,
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
        seal_one_mutation(&self.sign, &self.account, collection, seq, prev, key, value)
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
