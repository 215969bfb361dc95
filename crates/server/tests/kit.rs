//! Test kit: a real server on 127.0.0.1 in a temporary directory, and devices enrolled with
//! hand-made keys over the raw HTTP/2-over-TLS client of `sealsync-testkit` (re-exported
//! here), so tests can send what a well-behaved client never would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use sealsync_core::{
    AccountKeys, CollectionId, DeviceId, Hlc, NewMember, Policy, Roster, SealedBatch,
};
use sealsync_crypto::{KdfParams, KxSecretKey, RecoveryKeys, SigningKey, SymmetricKey};
use sealsync_proto::{Message, SignedRosterEntry};
pub(crate) use sealsync_testkit::{
    RawClient as H2, TLS13, assert_ok, client_config, connect_enroll, files_containing,
    generic_error, key_der, now_ms, parse_bundle, seal_one_mutation, tls_connect, tls_key_and_csr,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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

/// Posts an `EnrollRequest` over a `sealsync-enroll` connection.
pub(crate) async fn post_enroll(
    server: &TestServer,
    req: &sealsync_proto::EnrollRequest,
) -> (u16, Vec<u8>) {
    let mut h2 = connect_enroll(server.addr, &server.ca_der()).await;
    h2.request("POST", "/v1/enroll", req.encode_to_vec())
        .await
        .unwrap()
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
        // Into an existing account, or as the first device when the account has none (the
        // server refuses the mismatch with 409 before spending the ticket).
        let mut answer = None;
        for new_account in [false, true] {
            let mut req = sealsync_proto::EnrollRequest {
                ticket: bundle.ticket.clone(),
                name: name.into(),
                csr_der: csr.clone(),
                sign_pk: sign.verifying_key().to_bytes().to_vec(),
                kx_pk: kx.public_key().to_bytes().to_vec(),
                new_account,
                pop_signature: Vec::new(),
            };
            sealsync_core::sign_enroll_request(&sign, &mut req);
            let (status, body) = post_enroll(server, &req).await;
            if status != 409 {
                answer = Some((status, body));
                break;
            }
        }
        let (status, body) = answer.expect("enrollment answered");
        assert_ok(status, &body, "enroll");
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
        assert_ok(status, &body, "genesis");
        Roster::from_genesis(&g, &self.account).unwrap()
    }

    /// Adds `new` (enrolled in this device's account) to `roster` with an `ADD` signed and
    /// posted by this member.
    pub(crate) async fn add_member(&mut self, roster: &mut Roster, new: &Device) {
        let entry = add_entry(roster, self, new);
        let (status, body) = self.send("POST", "/v1/roster", &entry).await;
        assert_ok(status, &body, "ADD");
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

    /// The sealed descriptor of the account's "notes" collection under `keys`, with `policy`,
    /// signed by this device at HLC counter `counter`.
    pub(crate) fn notes_descriptor(
        &self,
        keys: &AccountKeys,
        policy: Policy,
        counter: u16,
    ) -> sealsync_proto::Sealed {
        let (_, sealed) = sealsync_core::seal_descriptor(
            &self.sign,
            self.id,
            &self.account,
            keys,
            "notes",
            policy,
            Hlc::from_parts(now_ms(), counter),
        )
        .unwrap();
        sealed
    }

    pub(crate) fn batch(
        &self,
        collection: CollectionId,
        seq: u64,
        prev: [u8; 32],
        value: &[u8],
    ) -> SealedBatch {
        seal_one_mutation(
            &self.sign,
            &self.account,
            collection,
            seq,
            prev,
            &format!("k{seq}"),
            value,
        )
    }
}
