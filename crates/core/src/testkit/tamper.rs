//! Tamper tests for batches: every refusal asserts the specific `BatchError`.

use proptest::prelude::*;
use sealsync_crypto::{ObjectKey, ObjectLabel, SigContext, SigningKey, SymmetricKey, VerifyingKey};
use sealsync_proto::{BatchHeader, Message, Mutation, MutationList, Sealed};

use super::{ACCOUNT, Outcome, World, device_key, id_of};
use crate::batch::{
    BatchDraft, ChainCheck, ChainState, MAX_BATCH_BYTES, MAX_BATCH_MUTATIONS, MAX_KEY_BYTES,
    MAX_VALUE_BYTES, SealedBatch, batch_identity, check_chain, open_batch, open_batch_with_keys,
    seal_batch,
};
use crate::error::BatchError;
use crate::hlc::{Hlc, MAX_DRIFT_MS};
use crate::ids::{CollectionId, DeviceId};
use crate::keys::AccountKeys;
use crate::policy::Policy;
use crate::verify::{VerifiedHeader, batch_hash, verify_batch};

/// An edit applied to a batch header.
type HeaderEdit = dyn Fn(&mut BatchHeader);

struct Fx {
    keys: AccountKeys,
    cid: CollectionId,
    ck: SymmetricKey,
    a: SigningKey,
    a_id: DeviceId,
    b: SigningKey,
    b_id: DeviceId,
}

fn fx() -> Fx {
    let keys = AccountKeys::generate();
    let cid = keys.collection_id(ACCOUNT, "things");
    let ck = keys.collection_key(ACCOUNT, &cid, 1).unwrap();
    let (a, b) = (device_key(0), device_key(1));
    Fx {
        a_id: id_of(&a),
        b_id: id_of(&b),
        keys,
        cid,
        ck,
        a,
        b,
    }
}

impl Fx {
    fn key_for(&self) -> impl Fn(&DeviceId) -> Option<VerifyingKey> + '_ {
        move |d| {
            if *d == self.a_id {
                Some(self.a.verifying_key())
            } else if *d == self.b_id {
                Some(self.b.verifying_key())
            } else {
                None
            }
        }
    }

    fn draft(&self, seq: u64, prev: [u8; 32], hlcs: &[u64]) -> BatchDraft {
        BatchDraft {
            account: ACCOUNT.into(),
            collection: self.cid,
            device: self.a_id,
            seq,
            prev_hash: prev,
            epoch: 1,
            roster_head: [4; 32],
            mutations: muts(hlcs),
        }
    }

    fn seal(&self, seq: u64, prev: [u8; 32], hlcs: &[u64]) -> SealedBatch {
        seal_batch(self.draft(seq, prev, hlcs), &self.a, &self.ck).unwrap()
    }

    fn verify(&self, s: &Sealed) -> Result<VerifiedHeader, BatchError> {
        verify_batch(s, self.key_for())
    }

    /// Verify, then open against a fresh chain.
    fn verify_open(&self, s: &Sealed) -> Result<Vec<Mutation>, BatchError> {
        let v = self.verify(s)?;
        open_batch_with_keys(&v, s, &self.keys, &ChainState::default())
    }
}

fn muts(hlcs: &[u64]) -> Vec<Mutation> {
    hlcs.iter()
        .map(|h| Mutation {
            key: format!("k{h}"),
            hlc: *h,
            deleted: false,
            value: b"v".to_vec(),
            supersedes: vec![],
        })
        .collect()
}

/// Signs `header` + `ciphertext` as given (a header moved onto another ciphertext).
fn resign(header: &BatchHeader, ciphertext: Vec<u8>, signer: &SigningKey) -> Sealed {
    let header = sealsync_proto::encode(header);
    let signature = signer
        .sign(SigContext::Batch, &header, &ciphertext)
        .to_vec();
    Sealed {
        header,
        ciphertext,
        signature,
    }
}

/// Encrypts `plaintext` under the key derived for `header` (fixing the commitment), as a
/// device holding the collection key would, and signs it.
fn reseal(
    header: &BatchHeader,
    plaintext: &[u8],
    ck: &SymmetricKey,
    signer: &SigningKey,
) -> Sealed {
    let mut h = header.clone();
    let id = batch_identity(
        &h.account,
        &h.collection_id,
        &h.device_id,
        h.seq,
        h.key_epoch,
    );
    let key = ObjectKey::derive(ck, ObjectLabel::Batch, &id);
    h.key_commitment = key.commitment().to_vec();
    let hb = sealsync_proto::encode(&h);
    let ciphertext = key.seal(&hb, plaintext);
    let signature = signer.sign(SigContext::Batch, &hb, &ciphertext).to_vec();
    Sealed {
        header: hb,
        ciphertext,
        signature,
    }
}

fn plain(hlcs: &[u64]) -> Vec<u8> {
    sealsync_proto::encode(&MutationList {
        mutations: muts(hlcs),
    })
}

#[test]
fn honest_batch_round_trips() {
    let f = fx();
    let sb = f.seal(1, [0; 32], &[5, 6]);
    let v = f.verify(&sb.sealed).unwrap();
    assert_eq!((v.device, v.collection, v.hash), (f.a_id, f.cid, sb.hash));
    assert_eq!(v.header, sb.header);
    assert_eq!(sb.header.hlc_max, 6, "hlc_max is the last mutation's");
    assert_eq!(
        check_chain(&ChainState::default(), &v, |_| None),
        ChainCheck::Next
    );
    assert_eq!(
        open_batch(&v, &sb.sealed, &f.ck, &ChainState::default()).unwrap(),
        muts(&[5, 6])
    );
    v.check_log(ACCOUNT, &f.cid).unwrap();
}

#[test]
fn flipped_ciphertext_byte_is_refused() {
    // MS-16: stored ciphertext altered.
    let f = fx();
    let sb = f.seal(1, [0; 32], &[5]);
    let mut t = sb.sealed.clone();
    t.ciphertext[3] ^= 0x40;
    assert_eq!(f.verify(&t).unwrap_err(), BatchError::Signature);
    // Even re-signed by the author, the AEAD refuses it.
    let t = resign(&sb.header, t.ciphertext, &f.a);
    assert_eq!(f.verify_open(&t).unwrap_err(), BatchError::Decrypt);
    assert_eq!(BatchError::Decrypt.check(), "decrypt");
}

#[test]
fn header_moved_to_another_collection_device_seq_or_epoch_is_refused() {
    // MS-17 / MS-18: a valid ciphertext served under another identity.
    let mut f = fx();
    f.keys.rotate();
    let sb = f.seal(1, [0; 32], &[5]);
    let other_cid = f.keys.collection_id(ACCOUNT, "other");
    let moves: Vec<(&str, Box<HeaderEdit>, &SigningKey)> = vec![
        (
            "collection",
            Box::new(move |h| h.collection_id = other_cid.0.to_vec()),
            &f.a,
        ),
        (
            "account",
            Box::new(move |h| h.account = "other".into()),
            &f.a,
        ),
        (
            "device",
            Box::new(move |h| h.device_id = f.b_id.0.to_vec()),
            &f.b,
        ),
        ("seq", Box::new(move |h| h.seq = 2), &f.a),
        ("epoch", Box::new(move |h| h.key_epoch = 2), &f.a),
    ];
    for (what, edit, signer) in moves {
        let mut h = sb.header.clone();
        edit(&mut h);
        // As served by the server: the signature no longer matches.
        let hb = sealsync_proto::encode(&h);
        let served = Sealed {
            header: hb,
            ..sb.sealed.clone()
        };
        assert_eq!(
            f.verify(&served).unwrap_err(),
            BatchError::Signature,
            "{what}"
        );
        // Re-signed by a device: the derived key's commitment differs (MS-42).
        let moved = resign(&h, sb.sealed.ciphertext.clone(), signer);
        let v = f.verify(&moved).unwrap();
        let ck = f
            .keys
            .collection_key(&h.account, &v.collection, h.key_epoch)
            .unwrap();
        assert_eq!(
            open_batch(&v, &moved, &ck, &ChainState::default()).unwrap_err(),
            BatchError::Commitment,
            "{what}"
        );
        // With a matching commitment forged by a key holder: the AEAD (header as AAD) refuses.
        let key = ObjectKey::derive(
            &ck,
            ObjectLabel::Batch,
            &batch_identity(
                &h.account,
                &h.collection_id,
                &h.device_id,
                h.seq,
                h.key_epoch,
            ),
        );
        h.key_commitment = key.commitment().to_vec();
        let moved = resign(&h, sb.sealed.ciphertext.clone(), signer);
        let v = f.verify(&moved).unwrap();
        assert_eq!(
            open_batch(&v, &moved, &ck, &ChainState::default()).unwrap_err(),
            BatchError::Decrypt,
            "{what}"
        );
    }
    // Served in another log: refused by the log check.
    let v = f.verify(&sb.sealed).unwrap();
    assert_eq!(
        v.check_log("other", &f.cid).unwrap_err(),
        BatchError::WrongAccount
    );
    assert_eq!(
        v.check_log(ACCOUNT, &other_cid).unwrap_err(),
        BatchError::WrongCollection
    );
}

#[test]
fn wrong_signer_or_unknown_device_is_refused() {
    // MS-23: server-forged batch (injection, framing).
    let f = fx();
    let sb = f.seal(1, [0; 32], &[5]);
    let framed = resign(&sb.header, sb.sealed.ciphertext.clone(), &f.b);
    assert_eq!(f.verify(&framed).unwrap_err(), BatchError::Signature);
    assert_eq!(
        verify_batch(&sb.sealed, |_| None).unwrap_err(),
        BatchError::UnknownDevice(f.a_id)
    );
    let outsider = device_key(9);
    let mut d = f.draft(1, [0; 32], &[5]);
    d.device = id_of(&outsider);
    let forged = seal_batch(d, &outsider, &f.ck).unwrap();
    assert_eq!(
        f.verify(&forged.sealed).unwrap_err(),
        BatchError::UnknownDevice(id_of(&outsider))
    );
    assert_eq!(BatchError::UnknownDevice(f.a_id).check(), "author");
    // A signature of the wrong length.
    let mut t = sb.sealed;
    t.signature.pop();
    assert_eq!(f.verify(&t).unwrap_err(), BatchError::Signature);
    // CD-07: sealing under another device's id is refused.
    assert_eq!(
        seal_batch(f.draft(1, [0; 32], &[5]), &f.b, &f.ck).unwrap_err(),
        BatchError::KeyMismatch
    );
}

#[test]
fn replay_gap_and_fork_are_detected() {
    // MS-25 (replay), MS-26 and BI-07 (gap), CD-05 / BI-08 (equivocation).
    let f = fx();
    let b1 = f.seal(1, [0; 32], &[5]);
    let b2 = f.seal(2, b1.hash, &[6]);
    let b3 = f.seal(3, b2.hash, &[7]);
    let v = |s: &SealedBatch| f.verify(&s.sealed).unwrap();
    let s0 = ChainState::default();
    let s1 = s0.advance(&v(&b1));
    let s2 = s1.advance(&v(&b2));
    assert_eq!(check_chain(&s1, &v(&b1), |_| None), ChainCheck::Duplicate);
    assert_eq!(
        check_chain(&s1, &v(&b3), |_| None),
        ChainCheck::Gap {
            expected: 2,
            got: 3
        }
    );
    assert_eq!(
        check_chain(&s0, &v(&b2), |_| None),
        ChainCheck::Gap {
            expected: 1,
            got: 2
        }
    );
    assert_eq!(
        check_chain(&s2, &v(&b1), |s| (s == 1).then_some(b1.hash)),
        ChainCheck::Duplicate
    );
    assert_eq!(
        check_chain(&s2, &v(&b1), |_| None),
        ChainCheck::Fork { seq: 1 },
        "unknown old hash"
    );
    let b2x = f.seal(2, b1.hash, &[6, 8]);
    assert_eq!(
        check_chain(&s2, &v(&b2x), |_| None),
        ChainCheck::Fork { seq: 2 }
    );
    let b2y = f.seal(2, [9; 32], &[6]);
    assert_eq!(
        check_chain(&s1, &v(&b2y), |_| None),
        ChainCheck::Fork { seq: 2 },
        "wrong prev hash"
    );

    // Through the model: held until the gap fills, replay is a no-op, fork refused.
    let mut w = World::new(Policy::Lww, 2, &[]);
    w.write(0, "k", Some(b"one".to_vec()), 1_000);
    w.flush(0);
    w.write(0, "k", None, 2_000);
    w.flush(0);
    w.write(0, "j", Some(b"x".to_vec()), 3_000);
    w.flush(0);
    let pool: Vec<Sealed> = w.pool.iter().map(|(_, s)| s.clone()).collect();
    let mut r = w.observer();
    assert_eq!(r.receive(&pool[2]).unwrap(), Outcome::Held);
    assert_eq!(r.receive(&pool[2]).unwrap(), Outcome::Held);
    assert_eq!(r.held(), 1);
    assert_eq!(r.receive(&pool[0]).unwrap(), Outcome::Applied);
    assert_eq!(r.receive(&pool[1]).unwrap(), Outcome::Applied);
    assert_eq!(
        r.held(),
        0,
        "held batch applied once its predecessor arrived"
    );
    let root = r.root();
    assert_eq!(
        r.receive(&pool[0]).unwrap(),
        Outcome::Duplicate,
        "replay never resurrects"
    );
    assert_eq!(r.root(), root);
    assert_eq!(r.version_count(), 3);
    let equivocation = {
        let dev = &w.devices[0];
        let ck = w.keys.collection_key(ACCOUNT, &w.collection, 1).unwrap();
        // Seq 2 again, on top of batch 1, with other content.
        let mut d = f.draft(2, batch_hash(&pool[0]), &[9_999_999_999]);
        (d.collection, d.device) = (w.collection, dev.id);
        seal_batch(d, &device_key(0), &ck).unwrap()
    };
    let err = r.receive(&equivocation.sealed).unwrap_err();
    assert_eq!(err, BatchError::Chain(ChainCheck::Fork { seq: 2 }));
    assert_eq!(err.check(), "chain");
    assert_eq!(r.root(), root, "state unchanged");
}

#[test]
fn seq_zero_and_max_are_refused_without_overflow() {
    // BI-07, MS-31: only signed, chained numbers count; u64::MAX cannot lock a log.
    let f = fx();
    for bad in [0, u64::MAX] {
        assert_eq!(
            seal_batch(f.draft(bad, [0; 32], &[5]), &f.a, &f.ck).unwrap_err(),
            BatchError::Seq(bad)
        );
        let mut h = f.seal(1, [0; 32], &[5]).header;
        h.seq = bad;
        let s = reseal(&h, &plain(&[5]), &f.ck, &f.a);
        assert_eq!(f.verify(&s).unwrap_err(), BatchError::Seq(bad));
    }
    let sb = f.seal(1, [0; 32], &[5]);
    let mut v = f.verify(&sb.sealed).unwrap();
    v.header.seq = u64::MAX;
    assert_eq!(
        check_chain(&ChainState::default(), &v, |_| None),
        ChainCheck::Gap {
            expected: 1,
            got: u64::MAX
        }
    );
    v.header.seq = 0;
    assert_eq!(
        check_chain(&ChainState::default(), &v, |_| None),
        ChainCheck::Gap {
            expected: 1,
            got: 0
        }
    );
    let full = ChainState {
        last_seq: u64::MAX,
        ..ChainState::default()
    };
    v.header.seq = 5;
    assert_eq!(
        check_chain(&full, &v, |_| None),
        ChainCheck::Fork { seq: 5 }
    );
    v.header.seq = u64::MAX;
    assert_eq!(
        check_chain(&full, &v, |_| None),
        ChainCheck::Fork { seq: u64::MAX }
    );
}

#[test]
fn clocks_beyond_hlc_max_or_out_of_order_are_refused() {
    // CD-08: a mutation later than the signed hlc_max.
    let f = fx();
    let mut h = f.seal(1, [0; 32], &[10, 20]).header;
    h.hlc_max = 15;
    let s = reseal(&h, &plain(&[10, 20]), &f.ck, &f.a);
    assert_eq!(
        f.verify_open(&s).unwrap_err(),
        BatchError::ClockAhead {
            hlc: Hlc(20),
            limit: Hlc(15)
        }
    );
    assert_eq!(
        BatchError::ClockAhead {
            hlc: Hlc(1),
            limit: Hlc(0)
        }
        .check(),
        "clock"
    );

    // hlc_max itself beyond the drift bound (the server's check on push).
    let now = 1_700_000_000_000;
    let mut h = f.seal(1, [0; 32], &[10]).header;
    h.hlc_max = Hlc::from_parts(now + MAX_DRIFT_MS + 1, 0).0;
    let v = f.verify(&reseal(&h, &plain(&[10]), &f.ck, &f.a)).unwrap();
    assert!(matches!(
        v.check_clock(now),
        Err(BatchError::ClockAhead { .. })
    ));
    h.hlc_max = Hlc::from_parts(now + MAX_DRIFT_MS, 0).0;
    let v = f.verify(&reseal(&h, &plain(&[10]), &f.ck, &f.a)).unwrap();
    v.check_clock(now).unwrap();

    // BI-19: non-increasing clocks inside a batch, or not after the previous batch.
    let mut h = f.seal(1, [0; 32], &[10]).header;
    h.hlc_max = 30;
    let s = reseal(&h, &plain(&[20, 20]), &f.ck, &f.a);
    assert_eq!(
        f.verify_open(&s).unwrap_err(),
        BatchError::ClockOrder {
            hlc: Hlc(20),
            after: Hlc(20)
        }
    );
    let sb = f.seal(1, [0; 32], &[10, 20]);
    let v = f.verify(&sb.sealed).unwrap();
    let chain = ChainState {
        last_hlc: Hlc(10),
        ..ChainState::default()
    };
    assert_eq!(
        open_batch(&v, &sb.sealed, &f.ck, &chain).unwrap_err(),
        BatchError::ClockOrder {
            hlc: Hlc(10),
            after: Hlc(10)
        }
    );
    assert_eq!(
        seal_batch(f.draft(1, [0; 32], &[7, 3]), &f.a, &f.ck).unwrap_err(),
        BatchError::ClockOrder {
            hlc: Hlc(3),
            after: Hlc(7)
        }
    );
}

/// A `Sealed` with a valid header whose encoding is exactly `target` bytes.
fn sealed_of_len(f: &Fx, target: usize) -> Sealed {
    let sb = f.seal(1, [0; 32], &[5]);
    let mut s = Sealed {
        ciphertext: vec![0; target - sb.sealed.header.len() - 200],
        ..sb.sealed
    };
    while s.encoded_len() < target {
        s.ciphertext.push(0);
    }
    s
}

#[test]
fn oversized_batches_are_refused() {
    // BI-01: tested at limit - 1, limit, limit + 1.
    let f = fx();
    for len in [MAX_BATCH_BYTES - 1, MAX_BATCH_BYTES] {
        let s = sealed_of_len(&f, len);
        assert_eq!(s.encoded_len(), len);
        assert_eq!(
            f.verify(&s).unwrap_err(),
            BatchError::Signature,
            "{len} bytes passes the size check"
        );
    }
    let s = sealed_of_len(&f, MAX_BATCH_BYTES + 1);
    assert_eq!(s.encoded_len(), MAX_BATCH_BYTES + 1);
    assert_eq!(
        f.verify(&s).unwrap_err(),
        BatchError::TooLarge {
            len: MAX_BATCH_BYTES + 1,
            limit: MAX_BATCH_BYTES
        }
    );

    // Sealing refuses before encoding.
    let mut d = f.draft(1, [0; 32], &[1, 2, 3, 4, 5]);
    for m in &mut d.mutations {
        m.value = vec![0; MAX_VALUE_BYTES];
    }
    assert!(matches!(
        seal_batch(d, &f.a, &f.ck),
        Err(BatchError::TooLarge { .. })
    ));
    let mut d = f.draft(1, [0; 32], &[1]);
    d.mutations[0].value = vec![0; MAX_VALUE_BYTES + 1];
    assert!(matches!(
        seal_batch(d, &f.a, &f.ck),
        Err(BatchError::BadMutation(_))
    ));
    let mut d = f.draft(1, [0; 32], &[1]);
    d.mutations[0].key = "k".repeat(MAX_KEY_BYTES + 1);
    assert!(matches!(
        seal_batch(d, &f.a, &f.ck),
        Err(BatchError::BadMutation(_))
    ));
    let hlcs: Vec<u64> = (1..=MAX_BATCH_MUTATIONS as u64 + 1).collect();
    assert!(matches!(
        seal_batch(f.draft(1, [0; 32], &hlcs), &f.a, &f.ck),
        Err(BatchError::BadMutation(_))
    ));
    assert!(
        seal_batch(
            f.draft(1, [0; 32], &hlcs[..MAX_BATCH_MUTATIONS]),
            &f.a,
            &f.ck
        )
        .is_ok()
    );
}

#[test]
fn malformed_bytes_are_refused() {
    // BI-03: malformed protobuf anywhere is an error, never a panic.
    let f = fx();
    let sb = f.seal(1, [0; 32], &[5]);
    let garbage = Sealed {
        header: vec![0x0a, 0xff, 0xff],
        ..sb.sealed.clone()
    };
    assert_eq!(
        f.verify(&garbage).unwrap_err(),
        BatchError::Malformed("header does not decode")
    );
    assert_eq!(BatchError::Malformed("x").check(), "decode");
    let mut h = sb.header.clone();
    h.device_id.pop();
    assert_eq!(
        f.verify(&resign(&h, vec![], &f.a)).unwrap_err(),
        BatchError::Malformed("device id length")
    );
    let mut h = sb.header.clone();
    h.prev_batch_hash = vec![];
    assert_eq!(
        f.verify(&resign(&h, vec![], &f.a)).unwrap_err(),
        BatchError::Malformed("prev batch hash length")
    );
    let mut h = sb.header.clone();
    h.suite = 2;
    assert_eq!(
        f.verify(&resign(&h, vec![], &f.a)).unwrap_err(),
        BatchError::Suite(2)
    );

    // A well-formed, signed, decryptable batch whose plaintext is garbage or empty.
    let s = reseal(&sb.header, &[0xff, 0xff, 0xff], &f.ck, &f.a);
    assert!(matches!(f.verify_open(&s), Err(BatchError::BadMutation(_))));
    let s = reseal(&sb.header, &[], &f.ck, &f.a);
    assert_eq!(
        f.verify_open(&s).unwrap_err(),
        BatchError::BadMutation("empty batch".into())
    );
    let mut bad = muts(&[5]);
    bad[0].supersedes = vec![vec![1; 23]];
    let s = reseal(
        &sb.header,
        &sealsync_proto::encode(&MutationList { mutations: bad }),
        &f.ck,
        &f.a,
    );
    assert!(matches!(f.verify_open(&s), Err(BatchError::BadMutation(_))));
}

#[test]
fn unknown_epoch_and_unverified_batch_are_refused() {
    let f = fx();
    let mut h = f.seal(1, [0; 32], &[5]).header;
    h.key_epoch = 7;
    let s = reseal(&h, &plain(&[5]), &f.ck, &f.a);
    assert_eq!(f.verify_open(&s).unwrap_err(), BatchError::UnknownEpoch(7));
    let b1 = f.seal(1, [0; 32], &[5]);
    let b2 = f.seal(2, b1.hash, &[6]);
    let v1 = f.verify(&b1.sealed).unwrap();
    assert_eq!(
        open_batch(&v1, &b2.sealed, &f.ck, &ChainState::default()).unwrap_err(),
        BatchError::NotVerified
    );
    assert_eq!(batch_hash(&b1.sealed), b1.hash);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    // BI-03: arbitrary bytes never panic the verification path.
    #[test]
    fn garbage_never_panics(header in prop::collection::vec(any::<u8>(), 0..200), ct in prop::collection::vec(any::<u8>(), 0..64), sig in prop::collection::vec(any::<u8>(), 0..80)) {
        let f = fx();
        let s = Sealed { header, ciphertext: ct, signature: sig };
        prop_assert!(f.verify(&s).is_err());
        let _ = sealsync_proto::decode::<Sealed>(&s.ciphertext);
    }
}
