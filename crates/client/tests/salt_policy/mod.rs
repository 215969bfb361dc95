//! Fresh keys under a restored home (issue 5 defect 3) and the pinned collection policy
//! (defects 4 and 5), on real replicas against the real server. A breached server or a
//! malicious member is played by rewriting the server's SQLite database.

use std::path::Path;

use sealsync_client::{FileKeyStore, Policy, Replica};
use sealsync_core::{DeviceId, Hlc, Roster, seal_descriptor};
use sealsync_proto::{BatchHeader, Message as _, Sealed, SignedRosterEntry};

use super::{TestServer, copy_dir, pair, round};

/// The policy of local collection `name`.
pub(crate) fn policy(r: &Replica, name: &str) -> String {
    r.status()
        .unwrap()
        .collections
        .into_iter()
        .find(|c| c.name == name)
        .unwrap()
        .policy
        .to_string()
}

/// Header of the batch this device sealed last in `collection`, from its own outbox.
fn last_sealed_header(home: &Path, collection: &str) -> BatchHeader {
    let db = rusqlite::Connection::open(home.join("replica.db")).unwrap();
    let bytes: Vec<u8> = db
        .query_row(
            "SELECT o.bytes FROM outbox o JOIN collections c ON c.id = o.coll
             WHERE c.name = ?1 ORDER BY o.seq DESC LIMIT 1",
            [collection],
            |r| r.get(0),
        )
        .unwrap();
    let sealed = Sealed::decode(bytes.as_slice()).unwrap();
    BatchHeader::decode(sealed.header.as_slice()).unwrap()
}

fn restore(backup: &Path, home: &Path) {
    std::fs::remove_dir_all(home).unwrap();
    copy_dir(backup, home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_home_seals_under_a_new_key_and_takes_back_the_original_batch() {
    // Issue 5 defect 3 (AES-GCM key and nonce reuse after a restore); CD-05, CF-12 for the
    // second push. A copy of a device's home and the original each seal a different edit at
    // the same seq 2. The original pushes first; the server refuses the copy's seq 2
    // (equivocation), and the copy takes back the original's batch (its own device's chain,
    // verified) and seals its edit again at seq 3, under a fresh salt and key. Both end with
    // both edits. (The salts of the two batches sealed at seq 2 are compared in
    // crates/sealsync/tests/restored_home.rs.)
    let server = TestServer::start().await;
    let (mut a, _b) = pair(&server).await;
    a.put("notes", "k", b"base").unwrap();
    round(&mut [&mut a]).await;
    let home = a.home().to_path_buf();
    drop(a);
    let copy = server.home("copy");
    copy_dir(&home, &copy);
    let mut one = Replica::open(&home).unwrap();
    let two = Replica::open(&copy).unwrap();
    one.put("notes", "k", b"one").unwrap();
    two.put("notes", "k", b"two").unwrap();
    round(&mut [&mut one]).await;
    let report = two.sync().await.unwrap();
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(
        (
            report.adopted_batches,
            report.resealed_versions,
            report.pushed_batches
        ),
        (1, 1, 1),
        "{report}"
    );
    let (h1, h2) = (
        last_sealed_header(&home, "notes"),
        last_sealed_header(&copy, "notes"),
    );
    assert_eq!(
        (&h1.device_id, &h1.collection_id, h1.key_epoch),
        (&h2.device_id, &h2.collection_id, h2.key_epoch)
    );
    assert_eq!((h1.seq, h2.seq), (2, 3));
    assert_eq!(h2.salt.len(), 32);
    assert_ne!(h1.salt, h2.salt);
    assert_ne!(h1.key_commitment, h2.key_commitment);
    // The original pulls the copy's seq 3 as the next batch of its own chain.
    round(&mut [&mut one]).await;
    for r in [&one, &two] {
        assert_eq!(r.get("notes", "k").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(r.history("notes", "k").unwrap().len(), 3);
    }
    assert_eq!(one.state_root().unwrap(), two.state_root().unwrap());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_pin_acknowledgement_then_policy_change_does_not_wedge() {
    // Issue 5 defect 5 (the wedge), CF-05: the server stored the collection's pin but the
    // device lost the acknowledgement (its home is restored from before that sync). A local
    // policy change is then refused, never sent, and every later sync works.
    let server = TestServer::start().await;
    let (a, mut b) = pair(&server).await;
    a.create_collection("w", Policy::Lww).unwrap();
    let home = a.home().to_path_buf();
    drop(a);
    let backup = server.home("backup-w");
    copy_dir(&home, &backup);
    let mut a = Replica::open(&home).unwrap();
    round(&mut [&mut a]).await;
    drop(a);
    restore(&backup, &home);
    let a = Replica::open(&home).unwrap();
    let err = a.create_collection("w", Policy::Manual).unwrap_err();
    assert!(err.to_string().contains("cannot be changed"), "{err}");
    assert_eq!(policy(&a, "w"), "lww");
    a.put("w", "k", b"v").unwrap();
    for _ in 0..2 {
        let report = a.sync().await.unwrap();
        assert!(report.errors.is_empty(), "{report}");
        assert!(report.policy_changes.is_empty(), "{report}");
    }
    round(&mut [&mut b]).await;
    assert_eq!(policy(&b, "w"), "lww");
    assert_eq!(b.get("w", "k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(a.state_root().unwrap(), b.state_root().unwrap());
    // Same policy again is a no-op success.
    a.create_collection("w", Policy::Lww).unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_hidden_from_one_device_do_not_split_the_policy() {
    // MS-30-style split view, MS-22 (issue 5 defect 4): the server hides every descriptor
    // it holds from b, which created the same collection offline with another policy. The
    // policy comes from the roster pin, so both devices resolve under a's policy.
    let server = TestServer::start().await;
    let (mut a, b) = pair(&server).await;
    a.create_collection("h", Policy::Manual).unwrap();
    a.put("h", "k", b"a").unwrap();
    round(&mut [&mut a]).await;
    b.put("h", "k", b"b").unwrap(); // lww on b
    for _ in 0..2 {
        server.db().execute("DELETE FROM collections", []).unwrap();
        let report = b.sync().await.unwrap();
        assert!(report.errors.is_empty(), "{report}");
        round(&mut [&mut a]).await;
    }
    assert_eq!(policy(&a, "h"), "manual");
    assert_eq!(policy(&b, "h"), "manual");
    assert_eq!(a.conflicts("h").unwrap().len(), 1);
    assert_eq!(b.conflicts("h").unwrap().len(), 1);
    assert_eq!(a.state_root().unwrap(), b.state_root().unwrap());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backdated_descriptor_by_a_member_does_not_flip_the_policy() {
    // CD-12, MS-22 (issue 5 defect 4): member b seals a descriptor of a's collection with
    // another policy and an hlc far before a's, and (with the server's help) slips a second
    // pin for it into the roster. Devices refuse that roster entry and keep the pinned
    // policy; once it is gone, syncing resumes unchanged.
    let server = TestServer::start().await;
    let (mut a, mut b) = pair(&server).await;
    a.create_collection("p", Policy::Fields).unwrap();
    a.put("p", "ada", br#"{"x":1}"#).unwrap();
    round(&mut [&mut a, &mut b]).await;
    assert_eq!(policy(&b, "p"), "fields");

    let (_, secrets) = FileKeyStore::open_with(b.home(), None).unwrap();
    let b_id = DeviceId(sealsync_crypto::device_id(&secrets.signing.verifying_key()));
    let keys = secrets.account_keys.as_ref().unwrap();
    let (_, backdated) = seal_descriptor(
        &secrets.signing,
        b_id,
        "acme",
        keys,
        "p",
        Policy::Lww,
        Hlc(1),
    )
    .unwrap();
    let db = server.db();
    let entries: Vec<SignedRosterEntry> = {
        let mut st = db
            .prepare("SELECT entry FROM roster WHERE account = 'acme' ORDER BY seq")
            .unwrap();
        st.query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|e| SignedRosterEntry::decode(e.unwrap().as_slice()).unwrap())
            .collect()
    };
    let roster = Roster::from_entries(&entries, "acme").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let second = roster
        .make_collection_pin(&secrets.signing, b_id, &backdated, now)
        .unwrap();
    let seq = roster.len();
    db.execute(
        "INSERT INTO roster (account, seq, subject, hash, entry) VALUES ('acme', ?1, ?2, ?3, ?4)",
        rusqlite::params![
            seq as i64,
            b_id.0.to_vec(),
            sealsync_core::roster_entry_hash(&second).to_vec(),
            second.encode_to_vec()
        ],
    )
    .unwrap();
    let root = a.state_root().unwrap();
    for r in [&mut a, &mut b] {
        let err = r.sync().await.unwrap_err();
        assert!(err.to_string().contains("already pinned"), "{err}");
        assert_eq!(policy(r, "p"), "fields");
    }
    assert_eq!(a.state_root().unwrap(), root);
    db.execute(
        "DELETE FROM roster WHERE account = 'acme' AND seq = ?1",
        [seq as i64],
    )
    .unwrap();
    a.put("p", "ada", br#"{"y":2}"#).unwrap();
    round(&mut [&mut a, &mut b]).await;
    assert_eq!(policy(&a, "p"), "fields");
    assert_eq!(policy(&b, "p"), "fields");
    let merged: serde_json::Value =
        serde_json::from_slice(&b.get("p", "ada").unwrap().unwrap()).unwrap();
    assert_eq!(merged, serde_json::json!({"x": 1, "y": 2}));
    assert_eq!(a.state_root().unwrap(), b.state_root().unwrap());
    server.stop().await;
}
