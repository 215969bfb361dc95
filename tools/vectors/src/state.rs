//! State roots and merge outcomes: the leaf encoding of a resolved record, the RFC 9162
//! Merkle tree hash per collection, the combined root over collections, and what `lww`,
//! `fields` and `manual` resolve from a set of versions.

use serde_json::{Value, json};

use sealsync_core::{
    DeviceId, Hlc, Policy, Resolved, Version, VersionId, collection_root, combined_root, leaf_hash,
    resolve, state_root,
};
use sealsync_crypto::sha256;

use crate::{Family, h, lp, vector};

fn vid(ms: u64, dev: u8) -> VersionId {
    VersionId::new(Hlc::from_parts(ms, 0), DeviceId([dev; 16]))
}

fn put(ms: u64, dev: u8, value: &str, supersedes: &[VersionId]) -> Version {
    Version {
        id: vid(ms, dev),
        deleted: false,
        value: value.as_bytes().to_vec(),
        supersedes: supersedes.to_vec(),
    }
}

fn del(ms: u64, dev: u8, supersedes: &[VersionId]) -> Version {
    Version {
        id: vid(ms, dev),
        deleted: true,
        value: Vec::new(),
        supersedes: supersedes.to_vec(),
    }
}

fn version_json(v: &Version) -> Value {
    json!({ "version_id": h(v.id.0), "deleted": v.deleted, "value": h(&v.value),
            "value_text": String::from_utf8_lossy(&v.value),
            "supersedes": v.supersedes.iter().map(|s| h(s.0)).collect::<Vec<_>>() })
}

/// The leaf preimage, from the specification.
fn leaf_input(key: &str, r: &Resolved) -> Vec<u8> {
    let mut b = vec![0x00];
    b.extend_from_slice(&lp(key.as_bytes()));
    b.push(u8::from(r.deleted));
    b.extend_from_slice(&lp(&r.value));
    for head in &r.heads {
        b.extend_from_slice(&head.0);
    }
    b
}

fn resolved_json(key: &str, r: &Resolved) -> Value {
    let input = leaf_input(key, r);
    assert_eq!(sha256(&input), leaf_hash(key, r));
    json!({ "deleted": r.deleted, "value": h(&r.value), "value_text": String::from_utf8_lossy(&r.value),
            "winner": h(r.winner.0), "heads": r.heads.iter().map(|x| h(x.0)).collect::<Vec<_>>(),
            "leaf_input": h(&input), "leaf_hash": h(leaf_hash(key, r)) })
}

fn merge(name: &str, policy: Policy, key: &str, versions: Vec<Version>) -> Value {
    let r = resolve(policy, &versions).expect("non-empty");
    // The order of arrival never matters.
    let mut reversed = versions.clone();
    reversed.reverse();
    assert_eq!(resolve(policy, &reversed), Some(r.clone()));
    vector(
        name,
        json!({ "policy": policy.as_str(), "key": key,
                "versions": versions.iter().map(version_json).collect::<Vec<_>>() }),
        json!({}),
        resolved_json(key, &r),
    )
}

/// The family.
pub fn family() -> Family {
    let t = 1_700_000_000_000u64;
    let mut vectors = vec![
        merge(
            "lww-latest-wins",
            Policy::Lww,
            "k",
            vec![
                put(t, 1, "a", &[]),
                put(t + 1, 2, "b", &[]),
                put(t + 1, 1, "c", &[]),
            ],
        ),
        merge(
            "lww-delete-latest",
            Policy::Lww,
            "k",
            vec![put(t, 1, "a", &[]), del(t + 5, 2, &[])],
        ),
        merge(
            "lww-same-hlc-larger-device-wins",
            Policy::Lww,
            "k",
            vec![put(t, 9, "nine", &[]), put(t, 3, "three", &[])],
        ),
        merge(
            "fields-per-field",
            Policy::Fields,
            "k",
            vec![
                put(t, 1, r#"{"b": 1, "a": {"z": 1, "y": 2}}"#, &[]),
                put(t + 1, 2, r#"{"c": "x\u00e9\n"}"#, &[]),
                put(t + 2, 1, r#"{"b": 2.5e3}"#, &[]),
            ],
        ),
        merge(
            "fields-delete-clears",
            Policy::Fields,
            "k",
            vec![
                put(t, 1, r#"{"a":1}"#, &[]),
                del(t + 1, 2, &[]),
                put(t + 2, 3, r#"{"b":2}"#, &[]),
            ],
        ),
        merge(
            "fields-non-object-replaces",
            Policy::Fields,
            "k",
            vec![put(t, 1, r#"{"a":1}"#, &[]), put(t + 1, 2, "[1, 2]", &[])],
        ),
        merge(
            "fields-deleted",
            Policy::Fields,
            "k",
            vec![put(t, 1, r#"{"a":1}"#, &[]), del(t + 1, 1, &[])],
        ),
        merge(
            "fields-canonical-json",
            Policy::Fields,
            "k",
            vec![put(
                t,
                1,
                r#"{ "z": [3, {"b": true, "a": null}], "n": -0, "i": -12, "u": 18446744073709551615,
                     "big": 18446744073709551616, "e": 1E100, "f": 0.1, "s": "q\"\\/\u0001\u007f\t\u00e9",
                     "A": 1, "a": 1, "dup": 1, "dup": 2 }"#,
                &[],
            )],
        ),
    ];
    let base = vid(t, 1);
    let (mine, theirs) = (vid(t + 1, 1), vid(t + 2, 2));
    vectors.push(merge(
        "manual-siblings",
        Policy::Manual,
        "k",
        vec![
            put(t, 1, "base", &[]),
            put(t + 1, 1, "mine", &[base]),
            put(t + 2, 2, "theirs", &[base]),
        ],
    ));
    vectors.push(merge(
        "manual-resolved",
        Policy::Manual,
        "k",
        vec![
            put(t, 1, "base", &[]),
            put(t + 1, 1, "mine", &[base]),
            put(t + 2, 2, "theirs", &[base]),
            put(t + 3, 1, "merged", &[mine, theirs]),
        ],
    ));
    vectors.push(merge(
        "manual-cycle",
        Policy::Manual,
        "k",
        vec![
            put(t, 1, "a", &[vid(t + 1, 1)]),
            put(t + 1, 1, "b", &[base]),
        ],
    ));

    // Merkle tree hash over leaves (RFC 9162 2.1.1).
    for n in [0usize, 1, 2, 3, 5] {
        let leaves: Vec<[u8; 32]> = (0..n).map(|i| sha256(&[0x00, i as u8])).collect();
        vectors.push(vector(
            &format!("tree-{n}-leaves"),
            json!({ "leaf_hashes": leaves.iter().map(h).collect::<Vec<_>>() }),
            json!({ "rule": "MTH({}) = SHA-256(\"\"); MTH({d}) = d; MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power of two < n" }),
            json!({ "root": h(state_root(&leaves)) }),
        ));
    }

    // A collection root over records in key order, then the combined root.
    let records: Vec<(&str, Vec<Version>)> = vec![
        ("b", vec![put(t, 1, "x", &[])]),
        ("a", vec![put(t, 1, "old", &[]), put(t + 1, 2, "new", &[])]),
        ("c", vec![put(t, 1, "gone", &[]), del(t + 1, 1, &[])]),
    ];
    let mut sorted = records.clone();
    sorted.sort_by(|x, y| x.0.cmp(y.0));
    let leaves: Vec<[u8; 32]> = sorted
        .iter()
        .map(|(k, vs)| leaf_hash(k, &resolve(Policy::Lww, vs).expect("non-empty")))
        .collect();
    let root = collection_root(Policy::Lww, records.iter().map(|(k, v)| (*k, v.as_slice())));
    assert_eq!(root, state_root(&leaves));
    vectors.push(vector(
        "collection-root",
        json!({ "policy": "lww", "records": records.iter().map(|(k, vs)| json!({ "key": k,
                "versions": vs.iter().map(version_json).collect::<Vec<_>>() })).collect::<Vec<_>>() }),
        json!({ "keys_in_order": sorted.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
                "leaf_hashes": leaves.iter().map(h).collect::<Vec<_>>(),
                "note": "tombstones are leaves too; keys ordered by their UTF-8 bytes" }),
        json!({ "collection_root": h(root) }),
    ));
    let other = [0x5a; 32];
    let colls = vec![("notes".to_string(), root), ("contacts".to_string(), other)];
    let mut named: Vec<&(String, [u8; 32])> = colls.iter().collect();
    named.sort();
    let cleaves: Vec<[u8; 32]> = named
        .iter()
        .map(|(n, r)| sha256(&[lp(n.as_bytes()), r.to_vec()].concat()))
        .collect();
    assert_eq!(state_root(&cleaves), combined_root(&colls));
    vectors.push(vector(
        "combined-root",
        json!({ "collections": colls.iter().map(|(n, r)| json!({ "name": n, "root": h(r) })).collect::<Vec<_>>() }),
        json!({ "names_in_order": named.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
                "leaf_inputs": named.iter().map(|(n, r)| h([lp(n.as_bytes()), r.to_vec()].concat())).collect::<Vec<_>>(),
                "leaf_hashes": cleaves.iter().map(h).collect::<Vec<_>>() }),
        json!({ "state_root": h(combined_root(&colls)) }),
    ));
    vectors.push(vector(
        "combined-root-empty",
        json!({ "collections": [] }),
        json!({}),
        json!({ "state_root": h(combined_root(&[])) }),
    ));

    Family {
        name: "state",
        description: "Merge outcomes of lww, fields and manual, the leaf encoding of a \
                      resolved record, RFC 9162 tree hashes, collection roots and the combined \
                      state root. docs/protocol.md, section State roots and merge rules.",
        vectors,
    }
}
