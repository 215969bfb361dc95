//! End-to-end tests of `sealsync_client::Replica` against a real `sealsync_server` on
//! 127.0.0.1 (real TLS 1.3, real SQLite on both sides). Attacks by a breached server are
//! simulated by rewriting the server's database between syncs.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::time::Duration;

use sealsync_client::{
    DeviceState, EnrollError, EnrollOptions, Enrolled, NetError, Policy, Replica, SyncError,
};
use sealsync_core::{DeviceId, NewMember, Roster};
use sealsync_crypto::{KxSecretKey, SigningKey};
use sealsync_proto::{Message as _, Sealed};
use tokio::sync::oneshot;

struct TestServer {
    dir: tempfile::TempDir,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), sealsync_server::ServerError>>>,
}

impl TestServer {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data = dir.path().join("server");
        sealsync_server::init(&data, &format!("https://{addr}")).unwrap();
        let server = sealsync_server::Server::from_listener(&data, listener)
            .await
            .unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            dir,
            url: format!("https://{addr}"),
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The server's URL (`https://127.0.0.1:PORT`).
    fn url(&self) -> String {
        self.url.clone()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("server")
    }

    fn bundle(&self) -> String {
        sealsync_server::enroll_ticket(&self.data(), "acme", Duration::from_secs(600), None)
            .unwrap()
    }

    fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A connection to the server's database, for simulating a breached server.
    fn db(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.data().join("sealsync.db")).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    async fn enroll(&self, name: &str) -> Enrolled {
        Replica::enroll(
            &self.home(name),
            &self.bundle(),
            EnrollOptions::new(name).new_account(name == "first"),
        )
        .await
        .unwrap()
    }

    async fn stop(mut self) {
        self.halt().await;
    }

    /// Starts the server again on the same address and data (after [`TestServer::halt`]).
    async fn restart(&mut self) {
        let addr = self.url.trim_start_matches("https://").to_string();
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        let server = sealsync_server::Server::from_listener(&self.data(), listener)
            .await
            .unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(server.run(async move {
            let _ = rx.await;
        })));
        self.stop = Some(tx);
    }

    /// Stops the server, keeping its directory (and the homes in it).
    async fn halt(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Pairs pending `b` with trusted `a`: approve and join at once, as two people would.
async fn join_pair(a: &mut Replica, b: &mut Replica) {
    let timeout = Duration::from_secs(30);
    let approval = a.begin_approval(b.device_id(), timeout).await.unwrap();
    let code = approval.code().to_string();
    let (approved, joined) = tokio::join!(a.finish_approval(approval), b.join(&code, timeout));
    approved.unwrap();
    joined.unwrap();
}

/// First device plus an approved second device, both trusted.
async fn pair(server: &TestServer) -> (Replica, Replica) {
    let first = server.enroll("first").await;
    assert_eq!(first.state, DeviceState::Trusted);
    assert!(first.recovery_secret.is_some());
    let mut a = first.replica;
    let second = server.enroll("second").await;
    assert_eq!(second.state, DeviceState::Pending);
    let mut b = second.replica;
    let status = serde_json::to_value(b.status().unwrap()).unwrap();
    assert_eq!(status["state"], "pending");
    // A pending device syncs without error and stays pending.
    b.sync().await.unwrap();
    assert_eq!(b.status().unwrap().state, DeviceState::Pending);
    let pending = a.pending_devices().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].device_id, second.device_id);
    join_pair(&mut a, &mut b).await;
    assert_eq!(b.status().unwrap().state, DeviceState::Trusted);
    b.sync().await.unwrap();
    (a, b)
}

async fn round(replicas: &mut [&mut Replica]) {
    for r in replicas.iter_mut() {
        let report = r.sync().await.unwrap();
        assert!(report.errors.is_empty(), "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_converge_under_every_policy() {
    // CF-12, CF-13, CF-14
    let server = TestServer::start().await;
    let (mut a, mut b) = pair(&server).await;
    a.create_collection("people", Policy::Fields).unwrap();
    a.create_collection("tasks", Policy::Manual).unwrap();
    round(&mut [&mut a, &mut b]).await;
    a.put("notes", "n1", b"from a").unwrap();
    b.put("notes", "n2", b"from b").unwrap();
    a.put("people", "ada", br#"{"phone":"1"}"#).unwrap();
    b.put("people", "ada", br#"{"mail":"m"}"#).unwrap();
    a.put("tasks", "t", b"a's plan").unwrap();
    b.put("tasks", "t", b"b's plan").unwrap();
    let big = vec![0x5a; sealsync_client::MAX_VALUE_BYTES];
    a.put("blobs", "big", &big).unwrap();
    round(&mut [&mut a, &mut b]).await;
    round(&mut [&mut a, &mut b]).await;
    assert_eq!(a.state_root().unwrap(), b.state_root().unwrap());
    assert_eq!(
        b.get("notes", "n1").unwrap().as_deref(),
        Some(&b"from a"[..])
    );
    assert_eq!(
        b.get("blobs", "big").unwrap().as_deref(),
        Some(big.as_slice())
    );
    let merged: serde_json::Value =
        serde_json::from_slice(&a.get("people", "ada").unwrap().unwrap()).unwrap();
    assert_eq!(merged, serde_json::json!({"phone":"1","mail":"m"}));
    assert_eq!(a.conflicts("tasks").unwrap().len(), 1);
    b.resolve("tasks", "t", b"together").unwrap();
    round(&mut [&mut b, &mut a]).await;
    assert!(a.conflicts("tasks").unwrap().is_empty());
    assert_eq!(
        a.get("tasks", "t").unwrap().as_deref(),
        Some(&b"together"[..])
    );
    assert_eq!(a.history("tasks", "t").unwrap().len(), 3);
    assert_eq!(a.state_root().unwrap(), b.state_root().unwrap());
    let st = a.status().unwrap();
    assert!(st.collections.iter().all(|c| c.pending_batches == 0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_pinned_descriptor_decides_the_policy() {
    // CD-12 (issue 5 defect 4): one collection created offline on two devices with two
    // policies. The first to pin it in the roster (b, syncing first) fixes the policy; the
    // other adopts it, re-resolves its records and says so in its sync report.
    let server = TestServer::start().await;
    let (mut a, mut b) = pair(&server).await;
    a.create_collection("shared", Policy::Manual).unwrap();
    a.put("shared", "k", b"a").unwrap();
    b.put("shared", "k", b"b").unwrap(); // creates it as lww
    round(&mut [&mut b]).await;
    let report = a.sync().await.unwrap();
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.policy_changes.len(), 1, "{report}");
    assert_eq!(
        (
            report.policy_changes[0].from.as_str(),
            report.policy_changes[0].to.as_str()
        ),
        ("manual", "lww")
    );
    assert!(report.to_string().contains("uses policy lww"));
    round(&mut [&mut b, &mut a]).await;
    assert_eq!(salt_policy::policy(&a, "shared"), "lww");
    assert_eq!(salt_policy::policy(&b, "shared"), "lww");
    // No manual conflicts are kept once the policy is lww (conflicts is refused there).
    assert!(a.conflicts("shared").is_err());
    assert_eq!(a.state_root().unwrap(), b.state_root().unwrap());
    // Later syncs report nothing more.
    let report = a.sync().await.unwrap();
    assert!(report.policy_changes.is_empty());
    server.stop().await;
}

fn tamper_last_batch(server: &TestServer, flip: bool) -> Vec<u8> {
    let db = server.db();
    let (id, bytes): (i64, Vec<u8>) = db
        .query_row(
            "SELECT id, bytes FROM batches ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut sealed = Sealed::decode(bytes.as_slice()).unwrap();
    if flip {
        let n = sealed.ciphertext.len() - 1;
        sealed.ciphertext[n] ^= 0x01;
    }
    db.execute(
        "UPDATE batches SET bytes = ?1 WHERE id = ?2",
        rusqlite::params![sealed.encode_to_vec(), id],
    )
    .unwrap();
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_batch_is_refused_whole_and_later_applied_when_intact() {
    // MS-16, MS-23, CF-06: refused with the failed check named; state and cursor unchanged.
    let server = TestServer::start().await;
    let (a, b) = pair(&server).await;
    a.put("notes", "x", b"1").unwrap();
    a.put("notes", "y", b"2").unwrap();
    a.sync().await.unwrap();
    let root = b.state_root().unwrap();
    let original = tamper_last_batch(&server, true);
    let report = b.sync().await.unwrap();
    assert_eq!(report.errors.len(), 1, "{report}");
    assert_eq!(report.errors[0].check, "signature");
    assert_eq!(report.errors[0].collection, "notes");
    assert_eq!(
        report.errors[0].author.as_deref(),
        Some(a.device_id().to_string().as_str())
    );
    assert_eq!(b.get("notes", "x").unwrap(), None);
    assert_eq!(b.state_root().unwrap(), root);
    // The server repairs the row: the batch is pulled again from the same cursor.
    server
        .db()
        .execute(
            "UPDATE batches SET bytes = ?1 WHERE id = (SELECT max(id) FROM batches)",
            [original],
        )
        .unwrap();
    let report = b.sync().await.unwrap();
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.applied_mutations, 2);
    assert_eq!(a.state_root().unwrap(), b.state_root().unwrap());
    server.stop().await;
}

mod driver;
mod handle;
mod salt_policy;
mod txn;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acknowledgement_is_repushed_without_duplicates() {
    // CF-05, NA-08: the same sealed bytes are pushed again and acknowledged as a duplicate.
    let server = TestServer::start().await;
    let (a, b) = pair(&server).await;
    a.put("notes", "once", b"v").unwrap();
    let report = a.sync().await.unwrap();
    assert_eq!(report.pushed_batches, 1);
    let home = a.home().to_path_buf();
    drop(a);
    // "Crash" after the server's acknowledgement, before it was recorded (the sealed bytes
    // were committed before the push). Batches carry a fresh salt each, so the retry must
    // re-send the stored bytes, never re-seal.
    let db = rusqlite::Connection::open(home.join("replica.db")).unwrap();
    assert_eq!(db.execute("UPDATE outbox SET acked = 0", []).unwrap(), 1);
    drop(db);
    let a = Replica::open(&home).unwrap();
    let report = a.sync().await.unwrap();
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.pushed_batches, 1);
    let status = a.status().unwrap();
    assert!(status.collections.iter().all(|c| c.pending_batches == 0));
    let report = b.sync().await.unwrap();
    assert_eq!(report.applied_mutations, 1);
    assert_eq!(b.history("notes", "once").unwrap().len(), 1);
    assert_eq!(a.state_root().unwrap(), b.state_root().unwrap());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_a_listed_device_name_are_never_shown_or_signed() {
    // MS-22, BI-10: device names listed by the server are untrusted display text. A name
    // with terminal escapes (which the server itself never accepts at enrollment) must not
    // reach the user's terminal through `pending`, nor be signed into the roster by
    // `approve`, where every device would show it.
    let server = TestServer::start().await;
    let mut a = server.enroll("first").await.replica;
    let second = server.enroll("second").await;
    let evil = "ok\u{1b}[2K\r0123456789abcdef0123456789abcdef\tphone";
    server
        .db()
        .execute(
            "UPDATE devices SET name = ?1 WHERE device_id = ?2",
            rusqlite::params![evil, second.device_id.0.to_vec()],
        )
        .unwrap();
    let pending = a.pending_devices().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].device_id, second.device_id);
    assert!(
        !pending[0].name.chars().any(char::is_control),
        "{:?}",
        pending[0].name
    );
    // The name signed into the roster is the one the device itself sent under MAC_B, never
    // the server's listing.
    let mut b = second.replica;
    join_pair(&mut a, &mut b).await;
    let roster: Vec<Vec<u8>> = server
        .db()
        .prepare("SELECT entry FROM roster WHERE account = 'acme' ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let add: sealsync_proto::SignedRosterEntry = sealsync_proto::decode(&roster[1]).unwrap();
    let body: sealsync_proto::RosterEntryBody = sealsync_proto::decode(&add.body).unwrap();
    assert_eq!(body.subject_name, "second");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_entry_injected_by_the_server_is_refused() {
    // MS-11, MS-12: an ADD signed by a non-member is refused and nothing changes locally.
    let server = TestServer::start().await;
    let (a, _b) = pair(&server).await;
    a.put("notes", "k", b"v").unwrap();
    let root = a.state_root().unwrap();
    let db = server.db();
    let entries: Vec<Vec<u8>> = db
        .prepare("SELECT entry FROM roster WHERE account = 'acme' ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let entries: Vec<_> = entries
        .iter()
        .map(|e| sealsync_proto::SignedRosterEntry::decode(e.as_slice()).unwrap())
        .collect();
    let roster = Roster::from_entries(&entries, "acme").unwrap();
    let stranger = SigningKey::generate();
    let stranger_id = DeviceId(sealsync_crypto::device_id(&stranger.verifying_key()));
    let kx = KxSecretKey::generate().public_key();
    let forged = roster.make_add(
        &stranger,
        stranger_id,
        NewMember {
            device_id: stranger_id,
            sign_pk: &stranger.verifying_key(),
            kx_pk: &kx,
            name: "intruder",
        },
        1,
    );
    db.execute(
        "INSERT INTO roster (account, seq, subject, hash, entry) VALUES ('acme', ?1, ?2, ?3, ?4)",
        rusqlite::params![
            entries.len() as i64,
            stranger_id.0.to_vec(),
            sealsync_core::roster_entry_hash(&forged).to_vec(),
            forged.encode_to_vec()
        ],
    )
    .unwrap();
    let err = a.sync().await.unwrap_err();
    assert!(matches!(err, SyncError::Roster(_)), "{err}");
    assert_eq!(a.state_root().unwrap(), root);
    // The same replica reopens with its verified roster intact.
    let home = a.home().to_path_buf();
    drop(a);
    let a = Replica::open(&home).unwrap();
    assert_eq!(a.status().unwrap().state, DeviceState::Trusted);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_and_bad_bundles() {
    // MS-09: the recovery secret admits a device; a mangled bundle or pin is refused.
    let server = TestServer::start().await;
    let first = server.enroll("first").await;
    let secret = first.recovery_secret.clone().unwrap().to_string();
    let a = first.replica;
    a.put("notes", "k", b"v").unwrap();
    a.sync().await.unwrap();
    let c = Replica::enroll(
        &server.home("third"),
        &server.bundle(),
        EnrollOptions::new("third").recovery(secret.to_lowercase()),
    )
    .await
    .unwrap();
    assert_eq!(c.state, DeviceState::Trusted);
    let c = c.replica;
    c.sync().await.unwrap();
    assert_eq!(c.get("notes", "k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(c.state_root().unwrap(), a.state_root().unwrap());

    let err = Replica::enroll(
        &server.home("x"),
        "sealsync-enroll:!!!",
        EnrollOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EnrollError::Bundle(_)), "{err}");
    // NA-05: a bundle whose pin names another CA is refused at the TLS handshake.
    use base64::Engine as _;
    let b64 = server
        .bundle()
        .trim_start_matches("sealsync-enroll:")
        .to_string();
    let mut bundle = sealsync_proto::EnrollmentBundle::decode(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    bundle.ca_pin = vec![0x11; 32];
    let text = format!(
        "sealsync-enroll:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bundle.encode_to_vec())
    );
    let err = Replica::enroll(&server.home("y"), &text, EnrollOptions::new("y"))
        .await
        .unwrap_err();
    assert!(matches!(err, EnrollError::Net(NetError::Tls(_))), "{err}");
    // Enrolling twice into one home is refused.
    let err = Replica::enroll(
        &server.home("first"),
        &server.bundle(),
        EnrollOptions::new("again"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EnrollError::AlreadyEnrolled(_)), "{err}");
    server.stop().await;
}
