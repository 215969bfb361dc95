//! The sync side of the store: sealing local edits into the outbox, and verifying pulled
//! pages (forged, tampered, misplaced and out-of-order batches, and batches whose roster head
//! this device does not know, are refused whole).

use sealsync_core::{BatchDraft, ChainState, DeviceId, NewMember, seal_batch};
use sealsync_crypto::SigningKey;
use sealsync_proto::{LogEntry, Mutation};

use super::{PulledBatch, apply, hlc};
use crate::testutil::offline_replica;
use crate::{Core, error::ClientError};

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
    let r = Core::open(dir.path(), &Default::default()).unwrap();
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

#[test]
fn acknowledged_batches_are_kept_and_can_be_requeued_byte_for_byte() {
    // CF-10: what the server acknowledged stays on the device, out of the pending count.
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    for i in 0..3 {
        r.put("notes", &format!("k{i}"), b"v").unwrap();
        r.seal_outbox().unwrap();
    }
    let sent = r.store.outbox().unwrap();
    assert_eq!(sent.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let coll = r.store.collection("notes").unwrap().unwrap();
    let acked: Vec<_> = sent.iter().map(|e| (e.coll, e.seq, e.hash)).collect();
    assert_eq!(r.store.ack_outbox(&acked).unwrap(), 3);
    r.store.set_cursor(coll.id, 7).unwrap();
    assert!(r.store.outbox().unwrap().is_empty());
    assert_eq!(r.store.outbox_count(coll.id).unwrap(), 0);
    let st = r.status().unwrap();
    assert_eq!(st.collections[0].pending_batches, 0);
    assert_eq!(r.store.kept_after(coll.id, 0).unwrap(), 3);
    assert_eq!(r.store.kept_after(coll.id, 2).unwrap(), 1);

    // The server lost everything after seq 1: seqs 2 and 3 go back, identical, and the pull
    // cursor restarts.
    assert_eq!(r.store.requeue_sent(&[(coll.id, 1)]).unwrap(), 2);
    let again = r.store.outbox().unwrap();
    assert_eq!(again.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(again[0].bytes, sent[1].bytes);
    assert_eq!(again[1].bytes, sent[2].bytes);
    assert_eq!(r.store.collection("notes").unwrap().unwrap().cursor, 0);
    assert_eq!(r.status().unwrap().collections[0].pending_batches, 2);
    // Nothing acknowledged is left to put back: no change, the cursor stays.
    r.store.set_cursor(coll.id, 7).unwrap();
    assert_eq!(r.store.requeue_sent(&[(coll.id, 1)]).unwrap(), 0);
    assert_eq!(r.store.collection("notes").unwrap().unwrap().cursor, 7);
}

#[test]
fn outbox_of_an_older_database_is_upgraded_as_unacknowledged() {
    // CF-18: a replica made before outbox rows were kept opens, its rows still pending.
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.put("notes", "k", b"v").unwrap();
    r.seal_outbox().unwrap();
    let before = r.store.outbox().unwrap();
    r.store
        .conn
        .execute_batch(
            "DROP INDEX outbox_unacked;
             CREATE TABLE old_outbox (coll INTEGER NOT NULL, seq INTEGER NOT NULL,
                 bytes BLOB NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (coll, seq));
             INSERT INTO old_outbox SELECT coll, seq, bytes, hash FROM outbox;
             DROP TABLE outbox;
             ALTER TABLE old_outbox RENAME TO outbox;",
        )
        .unwrap();
    drop(r);
    let r = Core::open(dir.path(), &Default::default()).unwrap();
    let after = r.store.outbox().unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].bytes, before[0].bytes);
    assert_eq!(r.status().unwrap().collections[0].pending_batches, 1);
    drop(r);
    // Opening again is a no-op.
    assert_eq!(
        Core::open(dir.path(), &Default::default())
            .unwrap()
            .store
            .outbox()
            .unwrap()
            .len(),
        1
    );
}

/// A batch sealed by `signing` (as device `author`) for collection `name` of `r`'s account,
/// carrying `r`'s roster head.
fn foreign_batch(
    r: &Core,
    signing: &SigningKey,
    name: &str,
    seq: u64,
    prev: [u8; 32],
    key: &str,
    ms: u64,
) -> sealsync_core::SealedBatch {
    let head = r.roster.as_ref().unwrap().head_hash();
    headed_batch(r, signing, name, (seq, prev), key, ms, head)
}

/// [`foreign_batch`] carrying `roster_head` instead of `r`'s roster head.
fn headed_batch(
    r: &Core,
    signing: &SigningKey,
    name: &str,
    (seq, prev): (u64, [u8; 32]),
    key: &str,
    ms: u64,
    roster_head: [u8; 32],
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
            roster_head,
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

fn verify(r: &Core, name: &str, e: &[LogEntry]) -> Result<Vec<PulledBatch>, ClientError> {
    let c = r.store.collection(name).unwrap().unwrap();
    let cid = c.cid.unwrap();
    r.verify_page(&c, cid, e, &mut Default::default())
}

fn check_of(e: ClientError) -> &'static str {
    match e {
        ClientError::Batch { check, .. } => check.as_str(),
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

#[test]
fn batch_with_a_roster_head_unknown_here_is_refused() {
    // MS-12: the server hid a roster entry (an ADD of C) from this device but showed it to
    // member B, whose batch then carries that entry's hash as its roster head. This device
    // synced its roster before pulling, so the head is unknown: refused with check "roster",
    // naming the author, nothing applied. Heads of entries this device knows are accepted.
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.put("notes", "local", b"v").unwrap();
    let me = r.secrets.signing.clone();
    let (b, c) = (SigningKey::generate(), SigningKey::generate());
    let b_id = DeviceId(sealsync_crypto::device_id(&b.verifying_key()));
    let add = |roster: &sealsync_core::Roster, new: &SigningKey| {
        let (vk, kx) = (
            new.verifying_key(),
            sealsync_crypto::KxSecretKey::generate(),
        );
        roster.make_add(
            &me,
            r.device_id,
            NewMember {
                device_id: DeviceId(sealsync_crypto::device_id(&vk)),
                sign_pk: &vk,
                kx_pk: &kx.public_key(),
                name: "new",
            },
            2,
        )
    };
    let add_b = add(r.roster.as_ref().unwrap(), &b);
    r.roster.as_mut().unwrap().apply(&add_b).unwrap();
    let mut authors = r.roster.clone().unwrap();
    let add_c = add(&authors, &c);
    authors.apply(&add_c).unwrap();
    let hidden = authors.head_hash();
    let genesis = r.roster.as_ref().unwrap().genesis_hash();
    let root = r.state_root().unwrap();

    for head in [hidden, [0; 32]] {
        let batch = headed_batch(&r, &b, "notes", (1, [0; 32]), "x", 10, head);
        match verify(&r, "notes", &entries(&[&batch.sealed])).unwrap_err() {
            ClientError::Batch {
                check,
                author,
                error,
                ..
            } => {
                assert_eq!(check, "roster");
                assert_eq!(author, b_id.to_string());
                assert_eq!(
                    error,
                    sealsync_core::BatchError::UnknownRosterHead(head).to_string()
                );
            }
            other => panic!("expected a roster refusal, got {other}"),
        }
        // A valid batch before it on the same page is not applied either (CF-06).
        let ok = headed_batch(&r, &me, "notes", (1, [0; 32]), "y", 10, genesis);
        assert_eq!(
            check_of(verify(&r, "notes", &entries(&[&ok.sealed, &batch.sealed])).unwrap_err()),
            "roster"
        );
    }
    assert_eq!(r.state_root().unwrap(), root);
    assert_eq!(r.get("notes", "x").unwrap(), None);

    // Once the device knows the entry (here: the roster it verified has it), the same batch
    // is accepted; older heads (the genesis) always are.
    let first = headed_batch(&r, &b, "notes", (1, [0; 32]), "x", 10, genesis);
    let second = headed_batch(&r, &b, "notes", (2, first.hash), "z", 11, hidden);
    r.roster.as_mut().unwrap().apply(&add_c).unwrap();
    let page = verify(&r, "notes", &entries(&[&first.sealed, &second.sealed])).unwrap();
    assert_eq!(page.len(), 2);
    apply(&mut r, "notes", page);
    assert_eq!(
        r.get("notes", "z").unwrap().as_deref(),
        Some(&b"remote"[..])
    );
}

fn forged_check() -> &'static str {
    sealsync_core::BatchError::UnknownDevice(DeviceId([0; 16])).check()
}

/// The sync future can move between threads (e.g. `tokio::spawn`).
#[allow(dead_code)]
fn futures_are_send(a: &mut Core, b: &mut Core, c: &mut Core) {
    fn is_send<T: Send>(_: &T) {}
    is_send(&a.sync());
    is_send(&b.begin_approval(DeviceId([0; 16]), std::time::Duration::ZERO));
    is_send(&b.join("", std::time::Duration::ZERO));
    is_send(&c.pending_devices());
    is_send(&Core::enroll(
        std::path::Path::new(""),
        "",
        crate::EnrollOptions::default(),
    ));
}

#[test]
fn pull_page_indices_must_match_the_cursor_and_next() {
    // MS-31, MS-36: the log indices and the `next` cursor of a pull page come from the
    // server. A page is usable only when its entries' indices strictly increase above the
    // cursor and `next` is the last one (or the cursor itself for an empty page): a `next`
    // beyond the entries would skip batches for good, and a bogus `u64::MAX` would lock the
    // log.
    use crate::pull::check_page_indices;
    let e = |index: u64| LogEntry { index, batch: None };
    assert!(check_page_indices(0, &[], 0).is_ok());
    assert!(check_page_indices(5, &[], 5).is_ok());
    assert!(check_page_indices(5, &[e(6), e(9)], 9).is_ok());
    for (cursor, page, next) in [
        (5, vec![], u64::MAX),
        (5, vec![], 6),
        (5, vec![e(6), e(7)], 9),
        (5, vec![e(6), e(7)], u64::MAX),
        (5, vec![e(6), e(7)], 6),
        (5, vec![e(5), e(7)], 7),
        (5, vec![e(7), e(6)], 6),
        (5, vec![e(6), e(6)], 6),
        (0, vec![e(0)], 0),
    ] {
        assert!(
            check_page_indices(cursor, &page, next).is_err(),
            "cursor {cursor}, next {next}, indices {:?}",
            page.iter().map(|e| e.index).collect::<Vec<_>>()
        );
    }
}

#[test]
fn skipping_own_batches_never_overflows_the_cursor() {
    // BI-07, MS-31: a cursor at u64::MAX (an index a server chose) must not panic.
    use crate::pull::skip_own;
    let own: std::collections::BTreeSet<u64> = [u64::MAX, 0, 4, 5, 7].into_iter().collect();
    assert_eq!(skip_own(u64::MAX, &own), u64::MAX);
    assert_eq!(skip_own(3, &own), 5);
    assert_eq!(skip_own(5, &own), 5);
    assert_eq!(skip_own(u64::MAX - 1, &own), u64::MAX);
}
