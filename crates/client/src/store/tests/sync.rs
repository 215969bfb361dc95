//! The sync side of the store: sealing local edits into the outbox, and verifying pulled
//! pages (forged, tampered, misplaced and out-of-order batches are refused whole).

use sealsync_core::{BatchDraft, ChainState, DeviceId, seal_batch};
use sealsync_crypto::SigningKey;
use sealsync_proto::{LogEntry, Mutation};

use super::{PulledBatch, apply, hlc};
use crate::testutil::offline_replica;
use crate::{ClientError, Replica};

#[test]
fn sealing_fills_the_outbox_once_and_marks_versions_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    let records: Vec<(String, Vec<u8>)> = (0..5000)
        .map(|i| (format!("k{i:05}"), vec![b'x'; 10]))
        .collect();
    r.put_many("bulk", &records).unwrap();
    r.put("small", "a", b"1").unwrap();
    let made = r.seal_outbox().unwrap();
    assert_eq!(
        made, 3,
        "5000 mutations need two batches, plus one for 'small'"
    );
    assert_eq!(r.seal_outbox().unwrap(), 0);
    let out = r.store.outbox().unwrap();
    assert_eq!(out.len(), 3);
    let bulk = r.store.collection("bulk").unwrap().unwrap();
    assert_eq!(r.store.outbox_count(bulk.id).unwrap(), 2);
    assert!(!r.store.has_unsent(bulk.id).unwrap());
    assert!(r.history("bulk", "k00001").unwrap()[0].synced);
    // Own chain advanced and bytes are stable for a retry (idempotent push).
    let me = r.device_id;
    assert_eq!(r.store.chain(&me, bulk.id).unwrap().last_seq, 2);
    drop(r);
    let r = Replica::open(dir.path()).unwrap();
    let again = r.store.outbox().unwrap();
    assert_eq!(
        again.iter().map(|e| e.bytes.clone()).collect::<Vec<_>>(),
        out.iter().map(|e| e.bytes.clone()).collect::<Vec<_>>()
    );
    r.store
        .known_hash(&me, bulk.id, 1)
        .unwrap()
        .expect("own batch hash recorded");
    let st = r.status().unwrap();
    let b = st.collections.iter().find(|c| c.name == "bulk").unwrap();
    assert_eq!((b.records, b.pending_batches), (5000, 2));
}

/// A batch sealed by `signing` (as device `author`) for collection `name` of `r`'s account.
fn foreign_batch(
    r: &Replica,
    signing: &SigningKey,
    name: &str,
    seq: u64,
    prev: [u8; 32],
    key: &str,
    ms: u64,
) -> sealsync_core::SealedBatch {
    let keys = r.secrets.account_keys.as_ref().unwrap();
    let cid = keys.collection_id("acme", name);
    let ck = keys
        .collection_key("acme", &cid, keys.current_epoch())
        .unwrap();
    let author = DeviceId(sealsync_crypto::device_id(&signing.verifying_key()));
    seal_batch(
        BatchDraft {
            account: "acme".into(),
            collection: cid,
            device: author,
            seq,
            prev_hash: prev,
            epoch: keys.current_epoch(),
            roster_head: r.roster.head_hash(),
            mutations: vec![Mutation {
                key: key.into(),
                hlc: hlc(ms),
                deleted: false,
                value: b"remote".to_vec(),
                supersedes: vec![],
            }],
        },
        signing,
        &ck,
    )
    .unwrap()
}

fn entries(batches: &[&sealsync_proto::Sealed]) -> Vec<LogEntry> {
    batches
        .iter()
        .enumerate()
        .map(|(i, b)| LogEntry {
            index: i as u64 + 1,
            batch: Some((*b).clone()),
        })
        .collect()
}

fn verify(r: &Replica, name: &str, e: &[LogEntry]) -> Result<Vec<PulledBatch>, ClientError> {
    let c = r.store.collection(name).unwrap().unwrap();
    let cid = c.cid.unwrap();
    r.verify_page(&c, cid, e, &mut Default::default())
}

fn check_of(e: ClientError) -> &'static str {
    match e {
        ClientError::Batch { check, .. } => check,
        other => panic!("expected a batch refusal, got {other}"),
    }
}

#[test]
fn forged_and_tampered_batches_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.put("notes", "local", b"v").unwrap();
    let root = r.state_root().unwrap();
    let me = r.secrets.signing.clone();

    // MS-23: a batch signed by a device outside the roster.
    let stranger = SigningKey::generate();
    let forged = foreign_batch(&r, &stranger, "notes", 1, [0; 32], "x", 10);
    assert_eq!(
        check_of(verify(&r, "notes", &entries(&[&forged.sealed])).unwrap_err()),
        forged_check()
    );

    // MS-16: ciphertext altered (signature re-made would need the key; here the signature breaks).
    let good = foreign_batch(&r, &me, "notes", 1, [0; 32], "x", 10);
    let mut bad = good.sealed.clone();
    let last = bad.ciphertext.len() - 1;
    bad.ciphertext[last] ^= 1;
    assert_eq!(
        check_of(verify(&r, "notes", &entries(&[&good.sealed, &bad])).unwrap_err()),
        "signature"
    );

    // MS-18: a batch from another collection's log.
    let other_coll = foreign_batch(&r, &me, "other", 1, [0; 32], "x", 10);
    assert!(verify(&r, "notes", &entries(&[&other_coll.sealed])).is_err());

    // MS-26: a gap (seq 2 without seq 1).
    let second = foreign_batch(&r, &me, "notes", 2, good.hash, "y", 11);
    assert_eq!(
        check_of(verify(&r, "notes", &entries(&[&second.sealed])).unwrap_err()),
        "chain"
    );

    // Nothing of the refused pages was applied (CF-06).
    assert_eq!(r.state_root().unwrap(), root);
    assert_eq!(r.get("notes", "x").unwrap(), None);

    // A valid page applies; a replay of it is a no-op (MS-25).
    let page = verify(&r, "notes", &entries(&[&good.sealed, &second.sealed])).unwrap();
    assert_eq!(page.len(), 2);
    apply(&mut r, "notes", page);
    assert_eq!(
        r.get("notes", "y").unwrap().as_deref(),
        Some(&b"remote"[..])
    );
    assert!(
        verify(&r, "notes", &entries(&[&good.sealed, &second.sealed]))
            .unwrap()
            .is_empty()
    );
    let _ = ChainState::default();
}

fn forged_check() -> &'static str {
    sealsync_core::BatchError::UnknownDevice(DeviceId([0; 16])).check()
}

/// The sync future can move between threads (e.g. `tokio::spawn`).
#[allow(dead_code)]
fn futures_are_send(a: &mut Replica, b: &mut Replica, c: &mut Replica) {
    fn is_send<T: Send>(_: &T) {}
    is_send(&a.sync());
    is_send(&b.approve("", ""));
    is_send(&c.pending_devices());
    is_send(&Replica::enroll(
        std::path::Path::new(""),
        "",
        crate::EnrollOptions::default(),
    ));
}
