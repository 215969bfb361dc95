//! Tamper tests for batch contents and identity: every refusal asserts the specific
//! `BatchError` (MS-16, MS-17, MS-18, MS-23, BI-01, BI-03).

use proptest::prelude::*;
use sealsync_crypto::{ObjectKey, ObjectLabel, SigningKey};
use sealsync_proto::{Message, MutationList, Sealed};

use super::fixture::{Fx, HeaderEdit, fx, muts, plain, reseal, resign};
use super::{ACCOUNT, device_key, id_of};
use crate::batch::{
    ChainCheck, ChainState, MAX_BATCH_BYTES, MAX_BATCH_MUTATIONS, MAX_KEY_BYTES, MAX_VALUE_BYTES,
    batch_identity, check_chain, open_batch, seal_batch,
};
use crate::error::BatchError;
use crate::verify::{batch_hash, verify_batch};

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
fn same_seq_sealed_twice_uses_two_keys() {
    // Issue 5 defect 3 (AES-GCM key and nonce reuse after a restore): a device restored from
    // a backup seals a different batch at a seq it already used. Each seal draws a fresh
    // salt, so the keys (and commitments) differ, and each opens only under its own.
    let f = fx();
    let one = f.seal(1, [0; 32], &[5]);
    let two = f.seal(1, [0; 32], &[6]);
    assert_eq!(one.header.salt.len(), sealsync_crypto::OBJECT_SALT_LEN);
    assert_ne!(one.header.salt, two.header.salt);
    assert_ne!(one.header.key_commitment, two.header.key_commitment);
    // Even the very same draft sealed twice differs.
    let again = f.seal(1, [0; 32], &[5]);
    assert_ne!(one.header.key_commitment, again.header.key_commitment);
    // The explicit-salt variant is deterministic, and refuses a short salt.
    let with = |salt: &[u8]| {
        crate::batch::seal_batch_with_salt(f.draft(1, [0; 32], &[5]), &f.a, &f.ck, salt)
    };
    assert_eq!(
        with(&[3; 32]).unwrap().sealed,
        with(&[3; 32]).unwrap().sealed
    );
    assert!(with(&[3; 15]).is_err());
    for sb in [&one, &two] {
        let v = f.verify(&sb.sealed).unwrap();
        assert!(open_batch(&v, &sb.sealed, &f.ck, &ChainState::default()).is_ok());
    }
}

#[test]
fn header_without_salt_is_refused() {
    // Issue 5 defect 3: the shared verification path refuses a header whose salt is missing
    // or shorter than 16 bytes (the server on push and devices on pull), even when signed by
    // the author's own key.
    let f = fx();
    let sb = f.seal(1, [0; 32], &[5]);
    for n in [0usize, 1, 15, 65] {
        let mut h = sb.header.clone();
        h.salt = vec![7; n];
        let t = resign(&h, sb.sealed.ciphertext.clone(), &f.a);
        assert_eq!(
            f.verify(&t).unwrap_err(),
            BatchError::Malformed("salt length"),
            "{n}"
        );
    }
    let mut h = sb.header.clone();
    h.salt = vec![7; 16];
    assert!(f.verify(&resign(&h, sb.sealed.ciphertext, &f.a)).is_ok());
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
            &h.salt,
        )
        .unwrap();
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
    // MS-08: a batch under a key epoch the device does not hold is refused, not guessed.
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
