//! Integration tests of the wire schema: encode/decode round trips for the main messages,
//! and the bounded decoder's behaviour on garbage, oversize and deeply nested input
//! (BI-01, BI-03, BI-04). One test binary for the crate.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use proptest::prelude::*;
use sealsync_proto::{
    AccountKeys, BatchHeader, CollectionHeader, CollectionInfo, DecodeError, EnrollRequest,
    EnrollResponse, EnrollmentBundle, EnvelopeHeader, EpochKey, ErrorResponse, KdfParams, LogEntry,
    MAX_MESSAGE_BYTES, Message, Mutation, MutationList, PendingDevice, PendingDevicesResponse,
    PullResponse, PushRequest, PushResponse, PushResult, RecoveryBlob, RecoveryHeader,
    RosterEntryBody, RosterResponse, Sealed, SealedList, SignedRosterEntry, StatusResponse,
    WatchCursor, WatchRequest, WatchResponse, decode, decode_limited, encode,
};

// ---------------------------------------------------------------------------------------
// Strategies

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn sealed() -> impl Strategy<Value = Sealed> {
    (bytes(64), bytes(128), bytes(80)).prop_map(|(header, ciphertext, signature)| Sealed {
        header,
        ciphertext,
        signature,
    })
}

fn batch_header() -> impl Strategy<Value = BatchHeader> {
    (
        (
            any::<u32>(),
            text(),
            bytes(20),
            bytes(20),
            any::<u64>(),
            bytes(40),
        ),
        (
            any::<u32>(),
            any::<u64>(),
            bytes(40),
            bytes(40),
            bytes(40),
            bytes(40),
        ),
    )
        .prop_map(
            |(
                (suite, account, collection_id, device_id, seq, prev_batch_hash),
                (key_epoch, hlc_max, witness, roster_head, key_commitment, salt),
            )| BatchHeader {
                suite,
                account,
                collection_id,
                device_id,
                seq,
                prev_batch_hash,
                key_epoch,
                hlc_max,
                witness,
                roster_head,
                key_commitment,
                salt,
            },
        )
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        text(),
        any::<u64>(),
        any::<bool>(),
        bytes(64),
        proptest::collection::vec(bytes(24), 0..4),
    )
        .prop_map(|(key, hlc, deleted, value, supersedes)| Mutation {
            key,
            hlc,
            deleted,
            value,
            supersedes,
        })
}

fn mutation_list() -> impl Strategy<Value = MutationList> {
    proptest::collection::vec(mutation(), 0..6).prop_map(|mutations| MutationList { mutations })
}

fn kdf_params() -> impl Strategy<Value = Option<KdfParams>> {
    proptest::option::of((any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(m_kib, t_cost, p_cost)| KdfParams {
            m_kib,
            t_cost,
            p_cost,
        },
    ))
}

fn roster_entry_body() -> impl Strategy<Value = RosterEntryBody> {
    (
        (
            any::<u32>(),
            text(),
            any::<u64>(),
            bytes(40),
            any::<i32>(),
            bytes(20),
        ),
        (
            bytes(40),
            bytes(40),
            text(),
            bytes(20),
            bytes(40),
            bytes(20),
        ),
        (
            kdf_params(),
            any::<u32>(),
            any::<u64>(),
            bytes(20),
            bytes(200),
        ),
    )
        .prop_map(
            |(
                (suite, account, seq, prev_hash, op, subject_device_id),
                (
                    subject_sign_pk,
                    subject_kx_pk,
                    subject_name,
                    signer_device_id,
                    recovery_pk,
                    recovery_salt,
                ),
                (recovery_kdf, epoch, created_ms, collection_id, descriptor),
            )| RosterEntryBody {
                suite,
                account,
                seq,
                prev_hash,
                op,
                subject_device_id,
                subject_sign_pk,
                subject_kx_pk,
                subject_name,
                signer_device_id,
                recovery_pk,
                recovery_salt,
                recovery_kdf,
                epoch,
                created_ms,
                collection_id,
                descriptor,
            },
        )
}

fn signed_roster_entry() -> impl Strategy<Value = SignedRosterEntry> {
    (bytes(200), bytes(80)).prop_map(|(body, signature)| SignedRosterEntry { body, signature })
}

fn enroll_request() -> impl Strategy<Value = EnrollRequest> {
    (
        bytes(40),
        text(),
        bytes(200),
        bytes(40),
        bytes(40),
        any::<bool>(),
        bytes(64),
    )
        .prop_map(
            |(ticket, name, csr_der, sign_pk, kx_pk, new_account, pop_signature)| EnrollRequest {
                ticket,
                name,
                csr_der,
                sign_pk,
                kx_pk,
                new_account,
                pop_signature,
            },
        )
}

fn enroll_response() -> impl Strategy<Value = EnrollResponse> {
    (
        bytes(20),
        text(),
        bytes(200),
        bytes(200),
        proptest::collection::vec(signed_roster_entry(), 0..4),
        any::<u64>(),
    )
        .prop_map(
            |(device_id, account, cert_der, ca_der, roster, server_time_ms)| EnrollResponse {
                device_id,
                account,
                cert_der,
                ca_der,
                roster,
                server_time_ms,
            },
        )
}

fn push_request() -> impl Strategy<Value = PushRequest> {
    proptest::collection::vec(sealed(), 0..4).prop_map(|batches| PushRequest { batches })
}

fn pull_response() -> impl Strategy<Value = PullResponse> {
    let entry = (any::<u64>(), proptest::option::of(sealed()))
        .prop_map(|(index, batch)| LogEntry { index, batch });
    (
        proptest::collection::vec(entry, 0..4),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(entries, next, more)| PullResponse {
            entries,
            next,
            more,
        })
}

fn watch_request() -> impl Strategy<Value = WatchRequest> {
    let cursor = (bytes(20), any::<u64>()).prop_map(|(collection_id, after)| WatchCursor {
        collection_id,
        after,
    });
    (proptest::collection::vec(cursor, 0..4), any::<u32>())
        .prop_map(|(cursors, wait_ms)| WatchRequest { cursors, wait_ms })
}

fn watch_response() -> impl Strategy<Value = WatchResponse> {
    proptest::collection::vec(bytes(20), 0..4).prop_map(|changed_collections| WatchResponse {
        changed_collections,
    })
}

fn envelope_header() -> impl Strategy<Value = EnvelopeHeader> {
    (
        any::<u32>(),
        text(),
        bytes(20),
        bytes(20),
        any::<u32>(),
        text(),
        bytes(40),
        bytes(40),
    )
        .prop_map(
            |(
                suite,
                account,
                sender_device_id,
                recipient_device_id,
                epoch,
                purpose,
                roster_head,
                salt,
            )| EnvelopeHeader {
                suite,
                account,
                sender_device_id,
                recipient_device_id,
                epoch,
                purpose,
                roster_head,
                salt,
            },
        )
}

fn account_keys() -> impl Strategy<Value = AccountKeys> {
    let epoch =
        (any::<u32>(), bytes(40)).prop_map(|(epoch, root_key)| EpochKey { epoch, root_key });
    (bytes(40), proptest::collection::vec(epoch, 0..4))
        .prop_map(|(naming_key, epochs)| AccountKeys { naming_key, epochs })
}

fn collection_info() -> impl Strategy<Value = CollectionInfo> {
    (text(), text()).prop_map(|(name, policy)| CollectionInfo { name, policy })
}

fn enrollment_bundle() -> impl Strategy<Value = EnrollmentBundle> {
    (text(), bytes(40), bytes(40), text()).prop_map(|(url, ca_pin, ticket, account)| {
        EnrollmentBundle {
            url,
            ca_pin,
            ticket,
            account,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Round trips

fn round_trips<M: Message + Default + PartialEq + core::fmt::Debug>(
    m: &M,
) -> Result<(), TestCaseError> {
    let bytes = encode(m);
    let back: M = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, m);
    // Encoding is deterministic for a given value.
    prop_assert_eq!(encode(&back), bytes);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn round_trip_sealed(m in sealed()) { round_trips(&m)?; }
    #[test]
    fn round_trip_batch_header(m in batch_header()) { round_trips(&m)?; }
    #[test]
    fn round_trip_mutation_list(m in mutation_list()) { round_trips(&m)?; }
    #[test]
    fn round_trip_roster_entry_body(m in roster_entry_body()) { round_trips(&m)?; }
    #[test]
    fn round_trip_signed_roster_entry(m in signed_roster_entry()) { round_trips(&m)?; }
    #[test]
    fn round_trip_enroll_request(m in enroll_request()) { round_trips(&m)?; }
    #[test]
    fn round_trip_enroll_response(m in enroll_response()) { round_trips(&m)?; }
    #[test]
    fn round_trip_push_request(m in push_request()) { round_trips(&m)?; }
    #[test]
    fn round_trip_pull_response(m in pull_response()) { round_trips(&m)?; }
    #[test]
    fn round_trip_watch_request(m in watch_request()) { round_trips(&m)?; }
    #[test]
    fn round_trip_watch_response(m in watch_response()) { round_trips(&m)?; }
    #[test]
    fn round_trip_envelope_header(m in envelope_header()) { round_trips(&m)?; }
    #[test]
    fn round_trip_account_keys(m in account_keys()) { round_trips(&m)?; }
    #[test]
    fn round_trip_collection_info(m in collection_info()) { round_trips(&m)?; }
    #[test]
    fn round_trip_enrollment_bundle(m in enrollment_bundle()) { round_trips(&m)?; }
}

// ---------------------------------------------------------------------------------------
// Garbage, size and depth

/// Decodes `bytes` as every message type of the schema; returns how many accepted it.
/// The point is that none of them panics.
fn decode_every_type(bytes: &[u8]) -> usize {
    fn ok<M: Message + Default>(b: &[u8]) -> usize {
        usize::from(decode::<M>(b).is_ok())
    }
    ok::<Sealed>(bytes)
        + ok::<BatchHeader>(bytes)
        + ok::<MutationList>(bytes)
        + ok::<Mutation>(bytes)
        + ok::<CollectionHeader>(bytes)
        + ok::<CollectionInfo>(bytes)
        + ok::<EnvelopeHeader>(bytes)
        + ok::<AccountKeys>(bytes)
        + ok::<EpochKey>(bytes)
        + ok::<KdfParams>(bytes)
        + ok::<RosterEntryBody>(bytes)
        + ok::<SignedRosterEntry>(bytes)
        + ok::<RecoveryHeader>(bytes)
        + ok::<RecoveryBlob>(bytes)
        + ok::<EnrollmentBundle>(bytes)
        + ok::<EnrollRequest>(bytes)
        + ok::<EnrollResponse>(bytes)
        + ok::<StatusResponse>(bytes)
        + ok::<RosterResponse>(bytes)
        + ok::<PendingDevice>(bytes)
        + ok::<PendingDevicesResponse>(bytes)
        + ok::<SealedList>(bytes)
        + ok::<PushRequest>(bytes)
        + ok::<PushResult>(bytes)
        + ok::<PushResponse>(bytes)
        + ok::<LogEntry>(bytes)
        + ok::<PullResponse>(bytes)
        + ok::<ErrorResponse>(bytes)
        + ok::<WatchCursor>(bytes)
        + ok::<WatchRequest>(bytes)
        + ok::<WatchResponse>(bytes)
}

/// Number of message types `decode_every_type` tries.
const TYPES: usize = 31;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn garbage_never_panics(input in bytes(512)) {
        // BI-03, MS-41: arbitrary bytes give Ok or Err, never a panic.
        let _ = decode_every_type(&input);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        m in pull_response(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        // BI-03, MS-41: near-valid input (bytes flipped, then truncated) reaches deeper
        // decoder paths than pure noise; still Ok or Err, never a panic.
        let mut b = encode(&m);
        if !b.is_empty() {
            for (i, v) in edits {
                let n = b.len();
                b[i % n] ^= v;
            }
            b.truncate(cut % (b.len() + 1));
        }
        let _ = decode_every_type(&b);
    }

    #[test]
    fn huge_declared_length_is_refused(len in 1u64 << 20..u64::MAX >> 1, field in 1u8..16) {
        // BI-02, CF-17: a length prefix beyond the buffer is an error, never an allocation.
        let mut b = vec![(field << 3) | 2];
        let mut v = len;
        while v >= 0x80 {
            b.push((v as u8) | 0x80);
            v >>= 7;
        }
        b.push(v as u8);
        b.extend_from_slice(b"short");
        prop_assert_eq!(decode_every_type(&b), 0);
    }
}

#[test]
fn empty_input_is_the_default_message() {
    assert_eq!(decode_every_type(&[]), TYPES);
    assert_eq!(decode::<Sealed>(&[]).unwrap(), Sealed::default());
}

#[test]
fn oversize_input_is_too_large() {
    // BI-01: limit - 1 and limit are decoded, limit + 1 is refused before parsing.
    let m = Sealed {
        header: vec![7; 20],
        ..Sealed::default()
    };
    let b = encode(&m);
    let n = b.len();
    assert!(decode_limited::<Sealed>(&b, n + 1).is_ok());
    assert!(decode_limited::<Sealed>(&b, n).is_ok());
    match decode_limited::<Sealed>(&b, n - 1) {
        Err(DecodeError::TooLarge { len, limit }) => assert_eq!((len, limit), (n, n - 1)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The default limit: one byte over MAX_MESSAGE_BYTES is refused whatever the content.
    let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
    match decode::<PushRequest>(&big) {
        Err(DecodeError::TooLarge { len, limit }) => {
            assert_eq!(len, MAX_MESSAGE_BYTES + 1);
            assert_eq!(limit, MAX_MESSAGE_BYTES);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // A valid message of exactly MAX_MESSAGE_BYTES is accepted.
    let payload = MAX_MESSAGE_BYTES - 1 - 4; // tag byte + 4-byte varint length
    let at_limit = encode(&Sealed {
        ciphertext: vec![1u8; payload],
        ..Sealed::default()
    });
    assert_eq!(at_limit.len(), MAX_MESSAGE_BYTES);
    assert_eq!(
        decode::<Sealed>(&at_limit).unwrap().ciphertext.len(),
        payload
    );
}

/// `depth` nested groups in unknown field 99 (used by no message): the only way to nest
/// arbitrarily deep in this schema, whose messages are not recursive.
fn nested_groups(depth: usize) -> Vec<u8> {
    // Keys are varints of (99 << 3) | wire type: 795 (start group), 796 (end group).
    let (start, end) = ([0x9b, 0x06], [0x9c, 0x06]);
    let mut b = Vec::with_capacity(depth * 4);
    for _ in 0..depth {
        b.extend_from_slice(&start);
    }
    for _ in 0..depth {
        b.extend_from_slice(&end);
    }
    b
}

#[test]
fn deep_nesting_is_refused() {
    // BI-04: nesting beyond prost's recursion limit (100) is an error for every type ...
    assert_eq!(decode_every_type(&nested_groups(150)), 0);
    assert_eq!(decode_every_type(&nested_groups(100_000)), 0);
    // ... while shallow unknown groups are skipped (forward compatibility).
    assert_eq!(decode_every_type(&nested_groups(10)), TYPES);
    assert_eq!(decode_every_type(&nested_groups(90)), TYPES);
}

#[test]
fn deep_known_nesting_round_trips() {
    // The deepest legitimate nesting of the schema: PullResponse -> LogEntry -> Sealed.
    let m = PullResponse {
        entries: vec![LogEntry {
            index: 3,
            batch: Some(Sealed {
                header: b"h".to_vec(),
                ciphertext: b"c".to_vec(),
                signature: b"s".to_vec(),
            }),
        }],
        next: 4,
        more: true,
    };
    assert_eq!(decode::<PullResponse>(&encode(&m)).unwrap(), m);
}

#[test]
fn wrong_wire_type_is_malformed() {
    // BI-03: field 1 of Sealed is bytes; a varint there is refused.
    let b = [0x08, 0x01];
    assert!(matches!(
        decode::<Sealed>(&b),
        Err(DecodeError::Malformed(_))
    ));
    // Invalid UTF-8 in a string field is refused.
    let b = [0x12, 0x02, 0xff, 0xfe]; // BatchHeader.account (tag 2) = ff fe
    assert!(matches!(
        decode::<BatchHeader>(&b),
        Err(DecodeError::Malformed(_))
    ));
}
