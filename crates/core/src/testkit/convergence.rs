//! Convergence property tests (CF-12, CF-13, CF-14): random devices, offline edits, clock
//! skew, partial syncs, and delivery in any order with duplicates; every replica must end
//! with the same state root as a replica that received everything in canonical order, and
//! no written version may be lost or duplicated.

use proptest::prelude::*;

use super::{Replica, World, delivery_order};
use crate::merge::{Version, explain, resolve};
use crate::policy::Policy;

const START_MS: u64 = 1_700_000_000_000;
const MAX_DEVICES: usize = 5;

#[derive(Clone, Debug)]
enum Val {
    /// Opaque bytes `v<n>` (not JSON).
    Bytes(u8),
    /// A small JSON object: (field index, value) pairs.
    Object(Vec<(u8, i8)>),
    /// A JSON scalar (replaces the whole record under `fields`).
    Scalar(i8),
}

#[derive(Clone, Debug)]
enum Op {
    Put { dev: usize, key: u8, val: Val },
    Delete { dev: usize, key: u8 },
    Flush { dev: usize },
    Pull { dev: usize, from: usize },
    Wait(u16),
}

fn render(v: &Val) -> Vec<u8> {
    match v {
        Val::Bytes(n) => format!("v{n}").into_bytes(),
        Val::Object(fields) => {
            let mut m = serde_json::Map::new();
            for (f, x) in fields {
                m.insert(format!("f{f}"), serde_json::Value::from(*x));
            }
            serde_json::Value::Object(m).to_string().into_bytes()
        }
        Val::Scalar(x) => x.to_string().into_bytes(),
    }
}

fn val_strategy(policy: Policy) -> BoxedStrategy<Val> {
    match policy {
        Policy::Fields => prop_oneof![
            6 => prop::collection::vec((0..4u8, -3..3i8), 0..3).prop_map(Val::Object),
            1 => (-2..2i8).prop_map(Val::Scalar),
            1 => (0..4u8).prop_map(Val::Bytes),
        ]
        .boxed(),
        _ => (0..8u8).prop_map(Val::Bytes).boxed(),
    }
}

fn op_strategy(policy: Policy) -> impl Strategy<Value = Op> {
    let d = 0..MAX_DEVICES;
    prop_oneof![
        5 => (d.clone(), 0..3u8, val_strategy(policy)).prop_map(|(dev, key, val)| Op::Put { dev, key, val }),
        1 => (d.clone(), 0..3u8).prop_map(|(dev, key)| Op::Delete { dev, key }),
        2 => d.clone().prop_map(|dev| Op::Flush { dev }),
        1 => (d.clone(), d).prop_map(|(dev, from)| Op::Pull { dev, from }),
        1 => (0..3000u16).prop_map(Op::Wait),
    ]
}

/// Inputs of one run: devices, per-device clock skew, edits, delivery seeds.
fn case(policy: Policy) -> impl Strategy<Value = (usize, Vec<i64>, Vec<Op>, Vec<u64>)> {
    (
        2..=MAX_DEVICES,
        prop::collection::vec(-2000i64..2000, MAX_DEVICES),
        prop::collection::vec(op_strategy(policy), 3..24),
        prop::collection::vec(any::<u64>(), MAX_DEVICES + 1),
    )
}

fn key_name(k: u8) -> String {
    format!("k{k}")
}

fn deliver(
    r: &mut Replica,
    pool: &[(usize, sealsync_proto::Sealed)],
    seed: u64,
) -> Result<(), TestCaseError> {
    for i in delivery_order(pool.len(), pool.len() / 2 + 1, seed) {
        let out = r.receive(&pool[i].1);
        prop_assert!(out.is_ok(), "honest batch refused: {out:?}");
    }
    Ok(())
}

fn run(
    policy: Policy,
    n: usize,
    skews: &[i64],
    ops: &[Op],
    seeds: &[u64],
) -> Result<(), TestCaseError> {
    let mut w = World::new(policy, n, skews);
    let mut t = START_MS;
    for op in ops {
        t += 1;
        match op {
            Op::Put { dev, key, val } => w.write(dev % n, &key_name(*key), Some(render(val)), t),
            Op::Delete { dev, key } => w.write(dev % n, &key_name(*key), None, t),
            Op::Flush { dev } => w.flush(dev % n),
            Op::Pull { dev, from } if dev % n != from % n => w.pull(dev % n, from % n, t),
            Op::Pull { .. } => {}
            Op::Wait(ms) => t += u64::from(*ms),
        }
    }
    w.flush_all();

    // The reference: everything in canonical order (never holds anything back).
    let mut reference = w.observer();
    for s in w.canonical() {
        prop_assert_eq!(reference.receive(&s).ok(), Some(super::Outcome::Applied));
    }
    prop_assert_eq!(
        reference.version_count(),
        w.written,
        "no edit lost or duplicated"
    );
    let root = reference.root();

    // Every device, plus a fresh observer, in its own random order with duplicates.
    let pool = w.pool.clone();
    let mut replicas: Vec<Replica> = w.devices.iter().map(|d| d.replica.clone()).collect();
    replicas.push(w.observer());
    for (r, seed) in replicas.iter_mut().zip(seeds) {
        deliver(r, &pool, *seed)?;
        prop_assert_eq!(r.held(), 0);
        prop_assert_eq!(r.version_count(), w.written);
        prop_assert_eq!(r.root(), root, "replica diverged from the canonical order");
    }
    for d in &w.devices {
        prop_assert_eq!(
            reference.chain(&d.id).last_seq,
            replicas[0].chain(&d.id).last_seq
        );
    }
    check_explanations(policy, &reference)
}

/// CF-13: every overwrite is explained by HLC order: exactly one version wins (lww, manual)
/// and it is the max-id (lww) or max-id head (manual); all others say whom they lost to.
fn check_explanations(policy: Policy, r: &Replica) -> Result<(), TestCaseError> {
    for versions in r.records.values() {
        let resolved = resolve(policy, versions).expect("records are non-empty");
        let lines = explain(policy, versions);
        let max = versions
            .iter()
            .map(|v: &Version| v.id)
            .max()
            .expect("non-empty");
        prop_assert_eq!(
            lines.last().map(|l| l.0),
            Some(max),
            "explain is in id order"
        );
        match policy {
            Policy::Lww => {
                prop_assert_eq!(resolved.winner, max);
                for (id, text) in &lines {
                    if *id == max {
                        prop_assert!(text.starts_with("won: latest"), "{}", text);
                    } else {
                        prop_assert!(text.starts_with(&format!("lost to {max}")), "{}", text);
                    }
                }
            }
            Policy::Manual => {
                let winners: Vec<_> = lines.iter().filter(|(_, t)| t.starts_with("won")).collect();
                prop_assert_eq!(winners.len(), 1);
                prop_assert_eq!(winners[0].0, resolved.winner);
                let siblings = lines
                    .iter()
                    .filter(|(_, t)| t == "conflict sibling")
                    .count();
                prop_assert_eq!(siblings + 1, resolved.heads.len());
            }
            Policy::Fields => {
                prop_assert_eq!(resolved.winner, max);
                if resolved.deleted {
                    prop_assert_eq!(&lines.last().expect("non-empty").1, "won: deleted (latest)");
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(350))]

    // CF-12, CF-13: LWW under random devices, skewed clocks and delivery orders.
    #[test]
    fn lww_converges((n, skews, ops, seeds) in case(Policy::Lww)) {
        run(Policy::Lww, n, &skews, &ops, &seeds)?;
    }

    // CF-12: per-field merge of random JSON objects (and non-object replacements).
    #[test]
    fn fields_converges((n, skews, ops, seeds) in case(Policy::Fields)) {
        run(Policy::Fields, n, &skews, &ops, &seeds)?;
    }

    // CF-12, CF-14: manual policy, siblings kept until superseded, deletes racing edits.
    #[test]
    fn manual_converges((n, skews, ops, seeds) in case(Policy::Manual)) {
        run(Policy::Manual, n, &skews, &ops, &seeds)?;
    }
}

fn version_strategy() -> impl Strategy<Value = Version> {
    (
        1..6u64,
        0..3u8,
        any::<bool>(),
        val_strategy(Policy::Fields),
        prop::collection::vec((1..6u64, 0..3u8), 0..3),
    )
        .prop_map(|(hlc, dev, deleted, val, sup)| {
            let id = |h, d| {
                crate::ids::VersionId::new(crate::hlc::Hlc(h), crate::ids::DeviceId([d; 16]))
            };
            Version {
                id: id(hlc, dev),
                deleted,
                value: if deleted { Vec::new() } else { render(&val) },
                supersedes: sup.into_iter().map(|(h, d)| id(h, d)).collect(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // CF-12: resolve and explain depend only on the set of versions (order, duplicates).
    #[test]
    fn merge_is_order_independent(
        vs in prop::collection::vec(version_strategy(), 1..8),
        seed in any::<u64>(),
    ) {
        let mut shuffled: Vec<Version> = delivery_order(vs.len(), vs.len(), seed).into_iter().map(|i| vs[i].clone()).collect();
        shuffled.reverse();
        for p in Policy::ALL {
            prop_assert_eq!(resolve(p, &vs), resolve(p, &shuffled));
            prop_assert_eq!(explain(p, &vs), explain(p, &shuffled));
        }
    }
}
