//! CF-12: any delivery order and chunking of hand-made pulled batches (arbitrary supersedes,
//! applied without verification) gives the root `sealsync_core` computes. The end-to-end
//! version with real devices, sealed batches and the pull checks is [`super::replicas`].

use proptest::prelude::*;
use sealsync_core::{DeviceId, Hlc, Policy, Version, VersionId, collection_root};

use super::{PulledBatch, apply, hlc, remote};
use crate::testutil::offline_replica;

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
