//! Merging pulled batches through every policy: the lww fast path against `sealsync_core`,
//! field-wise JSON merge, manual siblings until resolved, and a policy change.

use sealsync_core::{DeviceId, Hlc, Policy, Version, VersionId, collection_root};

use super::{apply, hlc, remote};
use crate::error::ClientError;
use crate::testutil::offline_replica;

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
    // An lww collection never keeps conflicts: asking for them is refused.
    assert!(matches!(
        r.conflicts("c"),
        Err(ClientError::InvalidInput(_))
    ));
    let c = r.store.collection("c").unwrap().unwrap();
    r.store.change_policy(&c, Policy::Manual).unwrap();
    assert_eq!(r.conflicts("c").unwrap().len(), 1);
}
