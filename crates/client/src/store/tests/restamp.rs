//! Re-stamping edits a fast clock dated in the future (NA-10, CD-08): only what the server
//! does not hold is unsealed, the re-stamped edits keep their order against everything else,
//! and the HLC comes back from the future.

use sealsync_core::{Hlc, Policy};
use sealsync_proto::Sealed;

use crate::Core;
use crate::testutil::offline_replica;

const HOUR: i64 = 3_600_000;

/// `hlc_max` of every outbox batch of the replica not yet acknowledged.
fn unacked_hlc_max(r: &Core) -> Vec<(u64, u64)> {
    r.store
        .outbox()
        .unwrap()
        .iter()
        .map(|e| {
            let sealed: Sealed = sealsync_proto::decode(&e.bytes).unwrap();
            let h: sealsync_proto::BatchHeader = sealsync_proto::decode(&sealed.header).unwrap();
            (e.seq, h.hlc_max)
        })
        .collect()
}

/// Acknowledges every unacknowledged outbox batch, as the server's answer would.
fn ack_all(r: &mut Core) {
    let sent: Vec<_> = r
        .store
        .outbox()
        .unwrap()
        .iter()
        .map(|e| (e.coll, e.seq, e.hash))
        .collect();
    assert_eq!(r.store.ack_outbox(&sent).unwrap(), sent.len());
}

#[test]
fn an_acknowledgement_marks_only_the_batch_that_was_sent() {
    // CF-12 (no acknowledged edit lost), CD-05: batch 1 is sent; before its
    // acknowledgement comes back, it is unsealed and sealed again (another handle
    // re-stamping it, with a fresh salt). The acknowledgement names the batch sent, so it
    // must not mark the new batch 1, which the server never received.
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.put("notes", "k", b"v").unwrap();
    r.seal_outbox().unwrap();
    let sent = r.store.outbox().unwrap();
    assert_eq!(sent.len(), 1);
    let notes = r.store.collection("notes").unwrap().unwrap();
    assert_eq!(r.store.unseal_from(notes.id, 1).unwrap(), 1);
    r.put("notes", "k2", b"written in between").unwrap();
    assert_eq!(r.seal_outbox().unwrap(), 1);
    let resealed = r.store.outbox().unwrap();
    assert_eq!(resealed[0].seq, 1);
    assert_ne!(resealed[0].hash, sent[0].hash);

    let ack = [(sent[0].coll, sent[0].seq, sent[0].hash)];
    assert_eq!(r.store.ack_outbox(&ack).unwrap(), 0);
    let pending = r.store.outbox().unwrap();
    assert_eq!(pending.len(), 1, "the re-sealed batch was marked as sent");
    assert_eq!(pending[0].hash, resealed[0].hash);
    assert_eq!(r.status().unwrap().collections[0].pending_batches, 1);
    // Its own acknowledgement marks it.
    ack_all(&mut r);
    assert_eq!(r.status().unwrap().collections[0].pending_batches, 0);
}

#[test]
fn future_batches_are_unsealed_and_restamped_keeping_order() {
    // NA-10, CD-08: the wedge of a device whose clock ran an hour fast.
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.store.set_clock_offset(0).unwrap();
    r.put("notes", "k", b"old").unwrap();
    r.create_collection("m", Policy::Manual).unwrap();
    r.put("m", "x", b"base").unwrap();
    assert_eq!(r.seal_outbox().unwrap(), 2);
    let notes = r.store.collection("notes").unwrap().unwrap();
    // The server accepted both.
    ack_all(&mut r);
    let accepted = r.history("notes", "k").unwrap()[0].hlc;

    // The clock runs an hour fast: a sealed batch and unsent edits are dated in the future.
    r.set_clock_skew_for_tests(HOUR);
    r.put("notes", "k", b"new").unwrap();
    assert_eq!(r.seal_outbox().unwrap(), 1);
    r.put("notes", "k2", b"later").unwrap();
    r.put("m", "x", b"sibling").unwrap();
    r.resolve("m", "x", b"resolved").unwrap();
    let future = r.store.stored_hlc().unwrap();

    // The clock is right again.
    r.set_clock_skew_for_tests(0);
    let limit = r.store.time.stamp_limit().unwrap();
    assert!(future > limit, "the edits were not dated in the future");
    assert_eq!(r.store.future_outbox(limit).unwrap(), vec![(notes.id, 2)]);
    assert_eq!(r.store.unseal_from(notes.id, 2).unwrap(), 1);
    assert_eq!(r.store.chain(&r.device_id, notes.id).unwrap().last_seq, 1);
    let now = r.store.time.now();
    assert_eq!(r.store.restamp_future(limit, now).unwrap(), 4);

    // The HLC came back from the future, and nothing stamped remains beyond the limit.
    assert!(r.store.stored_hlc().unwrap() <= limit);
    for (c, k) in [("notes", "k"), ("notes", "k2"), ("m", "x")] {
        for v in r.history(c, k).unwrap() {
            assert!(Hlc(v.hlc) <= limit, "{c}/{k} still dated {}", v.hlc);
        }
    }
    // Nothing lost and the order kept: the later edit still beats the accepted one, and the
    // resolution still supersedes what it saw (its `supersedes` follows the new ids).
    assert_eq!(r.get("notes", "k").unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(
        r.get("notes", "k2").unwrap().as_deref(),
        Some(&b"later"[..])
    );
    assert_eq!(r.history("notes", "k").unwrap().len(), 2);
    assert!(r.history("notes", "k").unwrap()[1].hlc > accepted);
    assert_eq!(r.get("m", "x").unwrap().as_deref(), Some(&b"resolved"[..]));
    assert!(r.conflicts("m").unwrap().is_empty());
    let resolution = r
        .history("m", "x")
        .unwrap()
        .into_iter()
        .find(|h| h.value == b"resolved")
        .unwrap();
    // A local write in a manual collection supersedes the heads it saw: the resolution
    // names the re-stamped "sibling" under its new id.
    let sibling = r
        .history("m", "x")
        .unwrap()
        .into_iter()
        .find(|h| h.value == b"sibling")
        .unwrap();
    assert_eq!(resolution.supersedes, vec![sibling.version]);

    // Sealed afresh: seq 2 again in notes, after the accepted seq 1, within the limit.
    assert_eq!(r.seal_outbox().unwrap(), 2);
    let batches = unacked_hlc_max(&r);
    assert_eq!(batches.len(), 2);
    assert!(
        batches.iter().all(|(seq, h)| *seq == 2 && Hlc(*h) <= limit),
        "{batches:?}"
    );
    assert_eq!(r.store.chain(&r.device_id, notes.id).unwrap().last_seq, 2);

    // New edits do not inherit the future stamp.
    r.put("notes", "k3", b"after").unwrap();
    assert!(Hlc(r.history("notes", "k3").unwrap()[0].hlc) <= limit);
    // A reopened handle agrees.
    drop(r);
    let r = Core::open(dir.path(), &Default::default()).unwrap();
    assert_eq!(r.get("notes", "k").unwrap().as_deref(), Some(&b"new"[..]));
    assert!(r.store.stored_hlc().unwrap() <= limit);
}

#[test]
fn acknowledged_batches_are_never_unsealed() {
    // CD-05: a batch the server acknowledged may be on other devices; it keeps its bytes.
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.store.set_clock_offset(0).unwrap();
    r.put("notes", "k", b"v").unwrap();
    r.seal_outbox().unwrap();
    let notes = r.store.collection("notes").unwrap().unwrap();
    ack_all(&mut r);
    let before = r.store.kept_after(notes.id, 0).unwrap();
    assert!(r.store.unseal_from(notes.id, 1).is_err());
    assert_eq!(r.store.kept_after(notes.id, 0).unwrap(), before);
    assert!(r.history("notes", "k").unwrap()[0].synced);
}

#[test]
fn a_normal_clock_is_left_alone() {
    // NA-10: nothing is re-stamped and the HLC is not moved when no stamp is in the future.
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.store.set_clock_offset(0).unwrap();
    r.put("notes", "k", b"v").unwrap();
    let before = r.store.stored_hlc().unwrap();
    let limit = r.store.time.stamp_limit().unwrap();
    let now = r.store.time.now();
    assert_eq!(r.store.restamp_future(limit, now).unwrap(), 0);
    assert_eq!(r.store.stored_hlc().unwrap(), before);
    assert!(r.store.future_outbox(limit).unwrap().is_empty());
}
