//! Deterministic merge of a record's versions.
//!
//! [`resolve`] is the single code path every device uses to turn the set of versions of one
//! record into the value it shows. It depends only on the *set* of versions: the input is
//! deduplicated by version id and sorted, so arrival order and duplicates never matter
//! (CF-12). [`explain`] says, per version, why it won or lost (CF-13: every overwrite is
//! explained by HLC order).

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::VersionId;
use crate::policy::Policy;

mod fields;

use fields::{FieldState, explain_fields, fold_fields, object_json};

/// One version of a record, as carried by a mutation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// `u64be(hlc) || device_id`.
    pub id: VersionId,
    /// A tombstone.
    pub deleted: bool,
    /// The value (ignored when `deleted`).
    pub value: Vec<u8>,
    /// Versions the author had seen when writing this one (used by the manual policy).
    pub supersedes: Vec<VersionId>,
}

/// The merged state of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The record reads as absent.
    pub deleted: bool,
    /// Merged value (empty when deleted).
    pub value: Vec<u8>,
    /// Version whose value is shown (lww/manual) or latest contributing version (fields).
    pub winner: VersionId,
    /// Manual: versions not superseded by any other present version (sorted). Otherwise
    /// `[winner]`.
    pub heads: Vec<VersionId>,
}

impl Resolved {
    /// True when the manual policy left more than one head.
    pub fn conflict(&self) -> bool {
        self.heads.len() > 1
    }
}

/// Sorts by id and drops duplicate ids. If two entries share an id but differ (which a
/// correct device never produces), the smaller content is kept, so the choice still does not
/// depend on arrival order.
fn canonical(versions: &[Version]) -> Vec<&Version> {
    let mut v: Vec<&Version> = versions.iter().collect();
    v.sort_by(|a, b| {
        a.id.cmp(&b.id).then_with(|| {
            (a.deleted, &a.value, &a.supersedes).cmp(&(b.deleted, &b.value, &b.supersedes))
        })
    });
    v.dedup_by(|later, kept| later.id == kept.id);
    v
}

/// Merges `versions` (any order; duplicate ids ignored) under `policy`; `None` when empty.
///
/// - `lww`: the max id wins.
/// - `fields`: fold in id order; a put of a JSON object sets its (top-level) fields, a put of
///   anything else replaces the whole record, a delete clears it. An object result is emitted
///   as canonical JSON (keys sorted, no whitespace).
/// - `manual`: heads are the versions no other present version supersedes; the shown value
///   is the max-id head; more than one head is a conflict. (If a malformed history
///   supersedes every version, the max id is the only head.)
pub fn resolve(policy: Policy, versions: &[Version]) -> Option<Resolved> {
    let vs = canonical(versions);
    let last = *vs.last()?;
    Some(match policy {
        Policy::Lww => shown(last, vec![last.id]),
        Policy::Fields => {
            let fold = fold_fields(&vs);
            let (deleted, value) = match fold.state {
                FieldState::Absent => (true, Vec::new()),
                FieldState::Object(map) => (false, object_json(&map).into_bytes()),
                FieldState::Opaque(j) => (false, vs[j].value.clone()),
            };
            Resolved {
                deleted,
                value,
                winner: last.id,
                heads: vec![last.id],
            }
        }
        Policy::Manual => {
            let heads = manual_heads(&vs);
            // `manual_heads` never returns an empty list; fall back to `last` regardless.
            let top = heads
                .last()
                .and_then(|h| vs.iter().find(|v| v.id == *h))
                .copied()
                .unwrap_or(last);
            shown(top, heads)
        }
    })
}

fn shown(v: &Version, heads: Vec<VersionId>) -> Resolved {
    Resolved {
        deleted: v.deleted,
        value: if v.deleted {
            Vec::new()
        } else {
            v.value.clone()
        },
        winner: v.id,
        heads,
    }
}

/// Heads of a sorted, deduplicated version list (sorted; never empty for non-empty input).
fn manual_heads(vs: &[&Version]) -> Vec<VersionId> {
    let superseded = superseded_by(vs);
    let heads: Vec<VersionId> = vs
        .iter()
        .map(|v| v.id)
        .filter(|id| !superseded.contains_key(id))
        .collect();
    if heads.is_empty() {
        return vs.last().map(|v| vec![v.id]).unwrap_or_default();
    }
    heads
}

/// For each present version superseded by another present version: the smallest such other.
fn superseded_by(vs: &[&Version]) -> BTreeMap<VersionId, VersionId> {
    let present: BTreeSet<VersionId> = vs.iter().map(|v| v.id).collect();
    let mut out = BTreeMap::new();
    for v in vs {
        for s in &v.supersedes {
            if *s != v.id && present.contains(s) {
                out.entry(*s).or_insert(v.id);
            }
        }
    }
    out
}

/// One line per version (deduplicated, in id order) saying whether it won and why.
pub fn explain(policy: Policy, versions: &[Version]) -> Vec<(VersionId, String)> {
    let vs = canonical(versions);
    let Some(last) = vs.last() else {
        return Vec::new();
    };
    match policy {
        Policy::Lww => vs
            .iter()
            .map(|v| {
                let text = if v.id == last.id {
                    let what = if v.deleted { ", a delete" } else { "" };
                    format!("won: latest (hlc, device){what}")
                } else if v.id.hlc() < last.id.hlc() {
                    format!("lost to {}: earlier hlc", last.id)
                } else {
                    format!("lost to {}: same hlc, smaller device id", last.id)
                };
                (v.id, text)
            })
            .collect(),
        Policy::Fields => explain_fields(&vs),
        Policy::Manual => {
            let heads = manual_heads(&vs);
            let superseded = superseded_by(&vs);
            let top = heads.last().copied();
            vs.iter()
                .map(|v| {
                    let text = if Some(v.id) == top {
                        let what = if v.deleted { ", a delete" } else { "" };
                        match heads.len() {
                            1 => format!("won: latest head (hlc, device){what}"),
                            n => format!(
                                "won: latest head (hlc, device){what}; conflict with {} sibling(s)",
                                n - 1
                            ),
                        }
                    } else if heads.contains(&v.id) {
                        "conflict sibling".to_owned()
                    } else if let Some(by) = superseded.get(&v.id) {
                        format!("superseded by {by}")
                    } else {
                        // Only reachable when a cycle superseded every version.
                        format!("lost to {}: all versions superseded", last.id)
                    };
                    (v.id, text)
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::ids::DeviceId;

    fn vid(hlc: u64, dev: u8) -> VersionId {
        VersionId::new(Hlc(hlc), DeviceId([dev; 16]))
    }

    fn put(hlc: u64, dev: u8, value: &str) -> Version {
        Version {
            id: vid(hlc, dev),
            deleted: false,
            value: value.as_bytes().to_vec(),
            supersedes: vec![],
        }
    }

    fn del(hlc: u64, dev: u8) -> Version {
        Version {
            id: vid(hlc, dev),
            deleted: true,
            value: vec![],
            supersedes: vec![],
        }
    }

    fn sup(mut v: Version, ids: &[VersionId]) -> Version {
        v.supersedes = ids.to_vec();
        v
    }

    fn all_orders(vs: &[Version]) -> Vec<Vec<Version>> {
        // Rotations, reversals and a duplicated copy: enough to catch order dependence.
        let mut out = Vec::new();
        for r in 0..vs.len() {
            let mut v = vs.to_vec();
            v.rotate_left(r);
            out.push(v.clone());
            v.reverse();
            out.push(v.clone());
            v.extend_from_slice(vs);
            out.push(v);
        }
        out
    }

    #[test]
    fn empty_is_none() {
        for p in Policy::ALL {
            assert_eq!(resolve(p, &[]), None);
            assert!(explain(p, &[]).is_empty());
        }
    }

    #[test]
    fn lww_max_id_wins_any_order() {
        let vs = vec![
            put(5, 1, "a"),
            put(7, 1, "b"),
            put(7, 2, "c"),
            put(6, 3, "d"),
        ];
        for order in all_orders(&vs) {
            let r = resolve(Policy::Lww, &order).unwrap();
            assert_eq!(r.value, b"c");
            assert_eq!(r.winner, vid(7, 2));
            assert_eq!(r.heads, vec![vid(7, 2)]);
            assert!(!r.deleted && !r.conflict());
        }
        let e = explain(Policy::Lww, &vs);
        assert_eq!(e.len(), 4);
        assert_eq!(
            e[0],
            (vid(5, 1), format!("lost to {}: earlier hlc", vid(7, 2)))
        );
        assert_eq!(
            e[2],
            (
                vid(7, 1),
                format!("lost to {}: same hlc, smaller device id", vid(7, 2))
            )
        );
        assert_eq!(e[3], (vid(7, 2), "won: latest (hlc, device)".to_owned()));
    }

    #[test]
    fn lww_delete_wins_when_latest() {
        // CF-14: a delete racing an edit is decided by HLC order, never silently.
        let r = resolve(Policy::Lww, &[put(5, 1, "a"), del(6, 2)]).unwrap();
        assert!(r.deleted);
        assert!(r.value.is_empty());
        let r = resolve(Policy::Lww, &[put(7, 1, "a"), del(6, 2)]).unwrap();
        assert!(!r.deleted);
        assert_eq!(r.value, b"a");
        let e = explain(Policy::Lww, &[put(5, 1, "a"), del(6, 2)]);
        assert_eq!(e[1].1, "won: latest (hlc, device), a delete");
    }

    #[test]
    fn duplicates_with_different_content_are_order_independent() {
        let a = put(5, 1, "a");
        let b = put(5, 1, "b");
        let r1 = resolve(Policy::Lww, &[a.clone(), b.clone()]).unwrap();
        let r2 = resolve(Policy::Lww, &[b, a]).unwrap();
        assert_eq!(r1, r2);
        assert_eq!(r1.value, b"a");
    }

    #[test]
    fn fields_merge_per_field() {
        let vs = vec![
            put(1, 1, r#"{"b": 1, "a": {"z": 1, "y": 2}}"#),
            put(2, 2, r#"{"c": "x"}"#),
            put(3, 1, r#"{"b": 2}"#),
        ];
        for order in all_orders(&vs) {
            let r = resolve(Policy::Fields, &order).unwrap();
            assert_eq!(
                String::from_utf8(r.value).unwrap(),
                r#"{"a":{"y":2,"z":1},"b":2,"c":"x"}"#
            );
            assert_eq!(r.winner, vid(3, 1));
            assert_eq!(r.heads, vec![vid(3, 1)]);
            assert!(!r.deleted);
        }
        let e = explain(Policy::Fields, &vs);
        assert_eq!(e[0].1, "merged fields a");
        assert_eq!(e[1].1, "merged fields c");
        assert_eq!(e[2].1, "merged fields b");
    }

    #[test]
    fn fields_delete_clears_and_non_object_replaces() {
        let vs = vec![put(1, 1, r#"{"a":1}"#), del(2, 1), put(3, 2, r#"{"b":2}"#)];
        let r = resolve(Policy::Fields, &vs).unwrap();
        assert_eq!(r.value, br#"{"b":2}"#);
        let e = explain(Policy::Fields, &vs);
        assert_eq!(e[0].1, format!("cleared by {}", vid(2, 1)));
        assert_eq!(e[1].1, format!("overridden by {}", vid(3, 2)));
        assert_eq!(e[2].1, "merged fields b");

        let vs = vec![put(1, 1, r#"{"a":1}"#), del(2, 1)];
        let r = resolve(Policy::Fields, &vs).unwrap();
        assert!(r.deleted && r.value.is_empty());
        assert_eq!(explain(Policy::Fields, &vs)[1].1, "won: deleted (latest)");

        let vs = vec![put(1, 1, r#"{"a":1}"#), put(2, 2, "[1, 2]")];
        let r = resolve(Policy::Fields, &vs).unwrap();
        assert_eq!(
            r.value, b"[1, 2]",
            "a non-object replaces the record, bytes kept"
        );
        let e = explain(Policy::Fields, &vs);
        assert_eq!(e[0].1, format!("cleared by {}", vid(2, 2)));
        assert_eq!(e[1].1, "won: replaces the record (not a JSON object)");

        // An object after a non-object starts a new record.
        let vs = vec![put(1, 1, "not json"), put(2, 2, r#"{"x":true}"#)];
        let r = resolve(Policy::Fields, &vs).unwrap();
        assert_eq!(r.value, br#"{"x":true}"#);
        assert_eq!(
            explain(Policy::Fields, &vs)[0].1,
            format!("cleared by {}", vid(2, 2))
        );
    }

    #[test]
    fn fields_overwritten_and_empty_object() {
        let vs = vec![
            put(1, 1, r#"{"a":1}"#),
            put(2, 2, r#"{"a":2}"#),
            put(3, 3, "{}"),
        ];
        let r = resolve(Policy::Fields, &vs).unwrap();
        assert_eq!(r.value, br#"{"a":2}"#);
        let e = explain(Policy::Fields, &vs);
        assert_eq!(e[0].1, "fields overwritten by later versions");
        assert_eq!(e[1].1, "merged fields a");
        assert_eq!(e[2].1, "merged fields (none)");
    }

    #[test]
    fn fields_canonical_json_escapes_and_sorts() {
        let r = resolve(
            Policy::Fields,
            &[put(
                1,
                1,
                "{\"\u{e9}\":\"\\\"q\", \"B\":[{\"y\":1,\"x\":null}]}",
            )],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(r.value).unwrap(),
            "{\"B\":[{\"x\":null,\"y\":1}],\"\u{e9}\":\"\\\"q\"}"
        );
    }

    #[test]
    fn manual_siblings_and_supersedes() {
        let a = put(1, 1, "base");
        let b = sup(put(2, 1, "mine"), &[vid(1, 1)]);
        let c = sup(put(3, 2, "theirs"), &[vid(1, 1)]);
        let vs = vec![a, b, c];
        for order in all_orders(&vs) {
            let r = resolve(Policy::Manual, &order).unwrap();
            assert!(r.conflict());
            assert_eq!(r.heads, vec![vid(2, 1), vid(3, 2)]);
            assert_eq!(r.winner, vid(3, 2));
            assert_eq!(r.value, b"theirs");
        }
        let e = explain(Policy::Manual, &vs);
        assert_eq!(e[0].1, format!("superseded by {}", vid(2, 1)));
        assert_eq!(e[1].1, "conflict sibling");
        assert_eq!(
            e[2].1,
            "won: latest head (hlc, device); conflict with 1 sibling(s)"
        );

        // A resolution supersedes both heads.
        let mut vs = vs;
        vs.push(sup(put(4, 1, "merged"), &[vid(2, 1), vid(3, 2)]));
        let r = resolve(Policy::Manual, &vs).unwrap();
        assert!(!r.conflict());
        assert_eq!(r.heads, vec![vid(4, 1)]);
        assert_eq!(r.value, b"merged");
        assert_eq!(
            explain(Policy::Manual, &vs)[3].1,
            "won: latest head (hlc, device)"
        );
    }

    #[test]
    fn manual_cycle_and_self_reference_are_deterministic() {
        let a = sup(put(1, 1, "a"), &[vid(2, 1), vid(1, 1)]);
        let b = sup(put(2, 1, "b"), &[vid(1, 1)]);
        let r = resolve(Policy::Manual, &[a.clone(), b.clone()]).unwrap();
        assert_eq!(r, resolve(Policy::Manual, &[b, a]).unwrap());
        assert_eq!(r.heads, vec![vid(2, 1)]);
        assert_eq!(r.value, b"b");
        // A self reference alone does not supersede.
        let r = resolve(Policy::Manual, &[sup(put(1, 1, "x"), &[vid(1, 1)])]).unwrap();
        assert_eq!(r.heads, vec![vid(1, 1)]);
    }

    #[test]
    fn manual_delete_head() {
        let a = put(1, 1, "a");
        let b = sup(del(2, 2), &[vid(1, 1)]);
        let r = resolve(Policy::Manual, &[a, b]).unwrap();
        assert!(r.deleted && !r.conflict());
        assert_eq!(
            explain(
                Policy::Manual,
                &[put(1, 1, "a"), sup(del(2, 2), &[vid(1, 1)])]
            )[1]
            .1,
            "won: latest head (hlc, device), a delete"
        );
    }
}
