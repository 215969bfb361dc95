//! Store tests: local operations, durability across reopen, merge through every policy, the
//! lww fast path against `sealsync_core`, sealing and the outbox, and pull refusals.

use sealsync_core::{
    BatchDraft, ChainState, DeviceId, Hlc, Policy, Version, VersionId, collection_root, seal_batch,
};
use sealsync_crypto::SigningKey;
use sealsync_proto::{LogEntry, Mutation};

use super::{PulledBatch, VerifiedPage};
use crate::testutil::offline_replica;
use crate::{ClientError, Replica};

type Mut<'a> = (&'a str, u64, Option<&'a [u8]>, Vec<VersionId>);

fn remote(author: DeviceId, seq: u64, muts: Vec<Mut<'_>>) -> PulledBatch {
    let hlc_max = muts.iter().map(|m| m.1).max().unwrap_or(0);
    PulledBatch {
        author,
        seq,
        hash: [seq as u8; 32],
        hlc_max: Hlc(hlc_max),
        mutations: muts
            .into_iter()
            .map(|(k, hlc, v, sup)| Mutation {
                key: k.into(),
                hlc,
                deleted: v.is_none(),
                value: v.unwrap_or_default().to_vec(),
                supersedes: sup.iter().map(|s| s.0.to_vec()).collect(),
            })
            .collect(),
    }
}

fn apply(r: &mut Replica, coll: &str, batches: Vec<PulledBatch>) -> usize {
    let c = r.store.collection(coll).unwrap().unwrap();
    r.store
        .apply_page(
            &c,
            VerifiedPage {
                batches,
                next: c.cursor + 1,
            },
        )
        .unwrap()
}

fn hlc(ms: u64) -> u64 {
    Hlc::from_parts(ms, 0).0
}

#[test]
fn put_get_delete_list_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    assert_eq!(r.get("notes", "a").unwrap(), None);
    let v1 = r.put("notes", "a", b"one").unwrap();
    let v2 = r.put("notes", "a", b"two").unwrap();
    assert!(v2 > v1);
    r.put("notes", "b", b"bee").unwrap();
    assert_eq!(r.get("notes", "a").unwrap().as_deref(), Some(&b"two"[..]));
    assert_eq!(
        r.list("notes").unwrap(),
        vec![
            ("a".to_string(), b"two".to_vec()),
            ("b".to_string(), b"bee".to_vec())
        ]
    );
    r.delete("notes", "a").unwrap();
    assert_eq!(r.get("notes", "a").unwrap(), None);
    assert!(matches!(
        r.delete("notes", "a"),
        Err(ClientError::NotFound { .. })
    ));
    assert!(matches!(
        r.delete("notes", "zzz"),
        Err(ClientError::NotFound { .. })
    ));
    assert!(matches!(
        r.delete("nope", "a"),
        Err(ClientError::NotFound { .. })
    ));
    assert_eq!(r.list("notes").unwrap().len(), 1);
    let h = r.history("notes", "a").unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].value, b"one");
    assert!(h[2].deleted);
    assert!(h[2].explanation.starts_with("won"), "{}", h[2].explanation);
    assert!(!h[0].synced);
    assert!(r.history("notes", "never").unwrap().is_empty());
    let st = r.status().unwrap();
    assert_eq!(st.collections[0].records, 1);
    assert_eq!(st.collections[0].pending_batches, 1);
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["state"], "trusted");
    assert!(json.get("approval_code").is_none());
    for f in ["device_id", "account", "name", "server_url", "collections"] {
        assert!(json.get(f).is_some(), "{f}");
    }
}

#[test]
fn input_limits_and_fields_objects() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    let long_key = "k".repeat(crate::MAX_KEY_BYTES + 1);
    assert!(matches!(
        r.put("c", &long_key, b"x"),
        Err(ClientError::InvalidInput(_))
    ));
    assert!(matches!(
        r.put("c", "", b"x"),
        Err(ClientError::InvalidInput(_))
    ));
    let big = vec![0u8; crate::MAX_VALUE_BYTES + 1];
    assert!(matches!(
        r.put("c", "k", &big),
        Err(ClientError::InvalidInput(_))
    ));
    r.put("c", &"k".repeat(crate::MAX_KEY_BYTES), &big[1..])
        .unwrap();
    r.create_collection("people", Policy::Fields).unwrap();
    let err = r.put("people", "ada", b"[1,2]").unwrap_err();
    assert!(err.to_string().contains("JSON objects"), "{err}");
    r.put("people", "ada", br#"{"a":1}"#).unwrap();
    // Policy changes are refused once data exists.
    assert!(r.create_collection("people", Policy::Manual).is_err());
    r.create_collection("people", Policy::Fields).unwrap();
    assert!(r.create_collection("bad\nname", Policy::Lww).is_err());
}

#[test]
fn edits_survive_reopen() {
    // CF-01: put returns only after its transaction committed.
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    let root;
    {
        r.put("notes", "a", b"one").unwrap();
        r.put("notes", "b", b"two").unwrap();
        r.delete("notes", "b").unwrap();
        root = r.state_root().unwrap();
    }
    let last = r.store.clock.last();
    drop(r);
    let mut r = Replica::open(dir.path()).unwrap();
    assert_eq!(r.get("notes", "a").unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(r.get("notes", "b").unwrap(), None);
    assert_eq!(r.state_root().unwrap(), root);
    // The clock continues above every version issued before the restart.
    let v = r.put("notes", "c", b"three").unwrap();
    assert!(v.hlc() > last);
}

#[test]
fn values_are_encrypted_at_rest() {
    // CD-09: the database file alone does not reveal values.
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.put("notes", "k", b"canary-plaintext-value").unwrap();
    drop(r);
    for f in ["replica.db", "replica.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(f)) {
            assert!(
                !bytes.windows(22).any(|w| w == b"canary-plaintext-value"),
                "{f}"
            );
        }
    }
}

#[test]
fn lww_merge_matches_core_in_any_order() {
    // CF-12, CF-13: the upsert fast path equals resolve() over the full set.
    let other = DeviceId([0xbb; 16]);
    let keys = ["x", "y", "z"];
    let mut all: Vec<(String, Version)> = Vec::new();
    let mut muts = Vec::new();
    for i in 0..30u64 {
        let k = keys[(i * 7 % 3) as usize];
        let h = hlc(1_000 + (i * 13) % 17) + i;
        let deleted = i % 5 == 0;
        let value = format!("v{i}");
        all.push((
            k.to_string(),
            Version {
                id: VersionId::new(Hlc(h), other),
                deleted,
                value: if deleted {
                    vec![]
                } else {
                    value.clone().into_bytes()
                },
                supersedes: vec![],
            },
        ));
        muts.push((k, h, (!deleted).then_some(value)));
    }
    let expected = {
        let mut grouped: std::collections::BTreeMap<&str, Vec<Version>> = Default::default();
        for (k, v) in &all {
            grouped.entry(k.as_str()).or_default().push(v.clone());
        }
        collection_root(Policy::Lww, grouped.iter().map(|(k, v)| (*k, v.as_slice())))
    };
    for rotation in [0usize, 7, 19] {
        let dir = tempfile::tempdir().unwrap();
        let mut r = offline_replica(dir.path());
        r.create_collection("c", Policy::Lww).unwrap();
        let mut order = muts.clone();
        order.rotate_left(rotation);
        order.reverse();
        for (n, chunk) in order.chunks(4).enumerate() {
            let b = remote(
                other,
                n as u64 + 1,
                chunk
                    .iter()
                    .map(|(k, h, v)| (*k, *h, v.as_deref().map(str::as_bytes), vec![]))
                    .collect(),
            );
            apply(&mut r, "c", vec![b]);
        }
        let c = r.store.collection("c").unwrap().unwrap();
        assert_eq!(
            r.store.collection_root(&c).unwrap(),
            expected,
            "rotation {rotation}"
        );
    }
}

#[test]
fn fields_policy_merges_json_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.create_collection("people", Policy::Fields).unwrap();
    r.put("people", "ada", br#"{"phone":"1","city":"x"}"#)
        .unwrap();
    let other = DeviceId([0xcc; 16]);
    let later = r.store.clock.last().0 + 10;
    apply(
        &mut r,
        "people",
        vec![remote(
            other,
            1,
            vec![("ada", later, Some(br#"{"email":"a@b","city":"y"}"#), vec![])],
        )],
    );
    let v: serde_json::Value =
        serde_json::from_slice(&r.get("people", "ada").unwrap().unwrap()).unwrap();
    assert_eq!(v, serde_json::json!({"phone":"1","email":"a@b","city":"y"}));
    let h = r.history("people", "ada").unwrap();
    assert_eq!(h.len(), 2);
}

#[test]
fn manual_policy_keeps_siblings_until_resolved() {
    // CF-14: concurrent writes become a conflict, never a silent clobber.
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.create_collection("tasks", Policy::Manual).unwrap();
    r.put("tasks", "plan", b"friday").unwrap();
    let other = DeviceId([0xdd; 16]);
    apply(
        &mut r,
        "tasks",
        vec![remote(
            other,
            1,
            vec![("plan", hlc(5), Some(b"monday"), vec![])],
        )],
    );
    let conflicts = r.conflicts("tasks").unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].versions.len(), 2);
    assert!(conflicts[0].to_string().contains("2 versions"));
    let v = r.resolve("tasks", "plan", b"tuesday").unwrap();
    assert!(r.conflicts("tasks").unwrap().is_empty());
    assert_eq!(
        r.get("tasks", "plan").unwrap().as_deref(),
        Some(&b"tuesday"[..])
    );
    let h = r.history("tasks", "plan").unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(
        h.iter().find(|e| e.version == v).unwrap().supersedes.len(),
        2
    );
    assert!(matches!(
        r.resolve("tasks", "nope", b"x"),
        Err(ClientError::NotFound { .. })
    ));
}

#[test]
fn policy_change_recomputes_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.put("c", "k", b"mine").unwrap();
    let other = DeviceId([0x01; 16]);
    apply(
        &mut r,
        "c",
        vec![remote(
            other,
            1,
            vec![("k", hlc(5), Some(b"theirs"), vec![])],
        )],
    );
    assert!(r.conflicts("c").unwrap().is_empty());
    let c = r.store.collection("c").unwrap().unwrap();
    r.store.change_policy(&c, Policy::Manual).unwrap();
    assert_eq!(r.conflicts("c").unwrap().len(), 1);
}

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

#[cfg(unix)]
#[test]
fn database_files_are_private() {
    // CD-09: the database and its WAL are readable by the owner only.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.put("notes", "k", b"v").unwrap();
    for f in ["replica.db", "replica.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
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

mod convergence {
    //! CF-12: any delivery order and chunking gives the root `sealsync_core` computes.
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    struct Op {
        key: u8,
        ms: u64,
        author: u8,
        deleted: bool,
        value: u8,
        supersede: Vec<usize>,
    }

    fn op() -> impl Strategy<Value = Op> {
        (
            0u8..3,
            1u64..50,
            0u8..3,
            any::<bool>(),
            0u8..6,
            proptest::collection::vec(0usize..20, 0..3),
        )
            .prop_map(|(key, ms, author, deleted, value, supersede)| Op {
                key,
                ms,
                author,
                deleted,
                value,
                supersede,
            })
    }

    fn value(v: u8) -> Vec<u8> {
        match v {
            0 => b"plain".to_vec(),
            1 => br#"{"a":1}"#.to_vec(),
            2 => br#"{"b":2,"a":3}"#.to_vec(),
            3 => br#"{"c":[1,2]}"#.to_vec(),
            4 => b"[1]".to_vec(),
            _ => br#"{"a":null}"#.to_vec(),
        }
    }

    fn run(policy: Policy, ops: &[Op], order: &[usize]) -> [u8; 32] {
        let dir = tempfile::tempdir().unwrap();
        let mut r = offline_replica(dir.path());
        r.create_collection("c", policy).unwrap();
        let ids: Vec<VersionId> = ops
            .iter()
            .enumerate()
            .map(|(i, o)| VersionId::new(Hlc(hlc(o.ms) + i as u64), DeviceId([o.author + 1; 16])))
            .collect();
        let batches: Vec<PulledBatch> = order
            .iter()
            .map(|&i| {
                let o = &ops[i];
                let sup: Vec<VersionId> = o
                    .supersede
                    .iter()
                    .filter(|&&j| j < i)
                    .map(|&j| ids[j])
                    .collect();
                let key = format!("k{}", o.key);
                let v = value(o.value);
                let mut b = remote(
                    ids[i].device(),
                    i as u64 + 1,
                    vec![(
                        &key,
                        ids[i].hlc().0,
                        (!o.deleted).then_some(v.as_slice()),
                        sup,
                    )],
                );
                b.hash = [i as u8; 32];
                b
            })
            .collect();
        for chunk in batches.chunks(3) {
            apply(&mut r, "c", chunk.to_vec());
        }
        let c = r.store.collection("c").unwrap().unwrap();
        r.store.collection_root(&c).unwrap()
    }

    fn expected(policy: Policy, ops: &[Op]) -> [u8; 32] {
        let ids: Vec<VersionId> = ops
            .iter()
            .enumerate()
            .map(|(i, o)| VersionId::new(Hlc(hlc(o.ms) + i as u64), DeviceId([o.author + 1; 16])))
            .collect();
        let mut grouped: std::collections::BTreeMap<String, Vec<Version>> = Default::default();
        for (i, o) in ops.iter().enumerate() {
            grouped
                .entry(format!("k{}", o.key))
                .or_default()
                .push(Version {
                    id: ids[i],
                    deleted: o.deleted,
                    value: if o.deleted { vec![] } else { value(o.value) },
                    supersedes: o
                        .supersede
                        .iter()
                        .filter(|&&j| j < i)
                        .map(|&j| ids[j])
                        .collect(),
                });
        }
        collection_root(
            policy,
            grouped.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
        #[test]
        fn any_order_gives_the_core_root(ops in proptest::collection::vec(op(), 1..20), seed in any::<u64>(), p in 0usize..3) {
            let policy = Policy::ALL[p];
            let mut order: Vec<usize> = (0..ops.len()).collect();
            let mut s = seed | 1;
            for i in (1..order.len()).rev() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                order.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let forward: Vec<usize> = (0..ops.len()).collect();
            let want = expected(policy, &ops);
            prop_assert_eq!(run(policy, &ops, &forward), want);
            prop_assert_eq!(run(policy, &ops, &order), want);
        }
    }
}
