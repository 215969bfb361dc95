//! Queries: `scan` and `find` agree with a filter over `list` under random local edits and
//! pulled batches in every policy; scans decrypt only what they return; field indexes are
//! built from existing data, survive a reopen, follow re-stamping, and hold no plaintext
//! field value.

use std::ops::Bound;

use proptest::prelude::*;
use sealsync_core::{DeviceId, Hlc, Policy};
use serde_json::{Value, json};

use super::{apply, remote};
use crate::testutil::offline_replica;
use crate::{Core, ScanOptions, error::ClientError};

/// Number of index terms stored for collection `name`.
fn term_count(r: &Core, name: &str) -> i64 {
    let c = r.store.collection(name).unwrap().unwrap();
    r.store
        .conn
        .query_row(
            "SELECT count(*) FROM index_terms WHERE coll = ?1",
            [c.id],
            |row| row.get(0),
        )
        .unwrap()
}

/// Records of `list` whose JSON `field` equals `value`.
fn filter_list(r: &Core, coll: &str, field: &str, value: &Value) -> Vec<(String, Vec<u8>)> {
    r.list(coll)
        .unwrap()
        .into_iter()
        .filter(|(_, v)| {
            matches!(serde_json::from_slice::<Value>(v),
                Ok(Value::Object(o)) if o.get(field) == Some(value))
        })
        .collect()
}

/// Records of `list` selected by `opts` (the model of `scan`).
fn scan_model(r: &Core, coll: &str, opts: &ScanOptions) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = r
        .list(coll)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| opts.matches(k))
        .collect();
    if opts.reverse {
        all.reverse();
    }
    all.truncate(opts.limit.unwrap_or(usize::MAX));
    all
}

/// Live records holding each indexed field (the number of terms the index must hold).
fn expected_terms(r: &Core, coll: &str, fields: &[&str]) -> i64 {
    r.list(coll)
        .unwrap()
        .iter()
        .map(|(_, v)| match serde_json::from_slice::<Value>(v) {
            Ok(Value::Object(o)) => fields.iter().filter(|f| o.contains_key(**f)).count() as i64,
            _ => 0,
        })
        .sum()
}

#[derive(Clone, Debug)]
enum Op {
    Put(String, u8, u8),
    Delete(String),
    /// A pulled batch of one mutation by remote author 0..2, `ms` around now, `None` =
    /// tombstone.
    Pull(String, u8, i64, Option<(u8, u8)>),
    /// A pulled batch writing one key twice, the later version first.
    PullTwice(String, i64, (u8, u8), (u8, u8)),
    /// Creates the index on "n" in the middle of the run (the one on "tag" exists from the
    /// start).
    IndexN,
}

fn key() -> impl Strategy<Value = String> {
    "[ab\u{e9}]{1,3}"
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), 0u8..4, 0u8..3).prop_map(|(k, t, n)| Op::Put(k, t, n)),
        2 => key().prop_map(Op::Delete),
        3 => (key(), 0u8..2, -3000i64..3000, proptest::option::of((0u8..4, 0u8..3)))
            .prop_map(|(k, a, ms, v)| Op::Pull(k, a, ms, v)),
        1 => (key(), -3000i64..3000, (0u8..4, 0u8..3), (0u8..4, 0u8..3))
            .prop_map(|(k, ms, v1, v2)| Op::PullTwice(k, ms, v1, v2)),
        1 => Just(Op::IndexN),
    ]
}

/// A value: a JSON object with "tag" and "n" (some of them missing), or not JSON at all
/// (except in `fields` collections, which hold only objects).
fn value(tag: u8, n: u8, policy: Policy) -> Vec<u8> {
    let tags = [json!("red"), json!("blue"), json!(1), Value::Null];
    match (tag, n) {
        (3, 2) if policy != Policy::Fields => b"not json".to_vec(),
        (_, 2) => json!({ "tag": tags[tag as usize] })
            .to_string()
            .into_bytes(),
        (3, n) => json!({ "n": n }).to_string().into_bytes(),
        (t, n) => json!({ "tag": tags[t as usize], "n": n, "x": [t, n] })
            .to_string()
            .into_bytes(),
    }
}

fn bound() -> impl Strategy<Value = Bound<String>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

fn scan_opts() -> impl Strategy<Value = ScanOptions> {
    (
        proptest::option::of("[ab\u{e9}]{0,2}"),
        bound(),
        bound(),
        proptest::option::of(0usize..6),
        any::<bool>(),
    )
        .prop_map(|(prefix, start, end, limit, reverse)| {
            let mut o = ScanOptions::new().range(start, end).reverse(reverse);
            if let Some(p) = prefix {
                o = o.prefix(p);
            }
            if let Some(n) = limit {
                o = o.limit(n);
            }
            o
        })
}

fn run(policy: Policy, ops: &[Op], scans: &[ScanOptions]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.create_index("c", "tag").unwrap();
    r.create_collection("c", policy).unwrap();
    let mut fields = vec!["tag"];
    let mut seqs = [0u64; 2];
    let now = crate::store::now_ms() as i64;
    for (i, o) in ops.iter().enumerate() {
        match o {
            Op::Put(k, t, n) => {
                r.put("c", k, &value(*t, *n, policy)).unwrap();
            }
            Op::Delete(k) => {
                r.delete("c", k).unwrap();
            }
            Op::Pull(k, a, ms, v) => {
                let a = *a as usize;
                seqs[a] += 1;
                let hlc = Hlc::from_parts((now + ms) as u64, 0).0 + i as u64;
                let bytes = v.map(|(t, n)| value(t, n, policy));
                let mut b = remote(
                    DeviceId([a as u8 + 1; 16]),
                    seqs[a],
                    vec![(k, hlc, bytes.as_deref(), vec![])],
                );
                b.hash = [i as u8; 32];
                apply(&mut r, "c", vec![b]);
            }
            Op::PullTwice(k, ms, (t1, n1), (t2, n2)) => {
                seqs[1] += 1;
                let hlc = Hlc::from_parts((now + ms) as u64, 0).0 + i as u64;
                let (v1, v2) = (value(*t1, *n1, policy), value(*t2, *n2, policy));
                let mut b = remote(
                    DeviceId([2; 16]),
                    seqs[1],
                    vec![
                        (k, hlc, Some(v1.as_slice()), vec![]),
                        (k, hlc - 1, Some(v2.as_slice()), vec![]),
                    ],
                );
                b.hash = [i as u8; 32];
                apply(&mut r, "c", vec![b]);
            }
            Op::IndexN => {
                r.create_index("c", "n").unwrap();
                if !fields.contains(&"n") {
                    fields.push("n");
                }
            }
        }
    }
    for opts in scans {
        prop_assert_eq!(
            r.scan("c", opts).unwrap(),
            scan_model(&r, "c", opts),
            "{:?}",
            opts
        );
    }
    for v in [
        json!("red"),
        json!("blue"),
        json!(1),
        Value::Null,
        json!(1.0),
    ] {
        prop_assert_eq!(
            r.find("c", "tag", &v).unwrap(),
            filter_list(&r, "c", "tag", &v)
        );
    }
    if fields.contains(&"n") {
        for n in 0..3 {
            let v = json!(n);
            prop_assert_eq!(r.find("c", "n", &v).unwrap(), filter_list(&r, "c", "n", &v));
        }
    } else {
        let no_index = matches!(
            r.find("c", "n", &json!(0)),
            Err(ClientError::NoIndex { .. })
        );
        prop_assert!(no_index);
    }
    prop_assert_eq!(term_count(&r, "c"), expected_terms(&r, "c", &fields));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn scan_and_find_agree_with_list(
        p in 0usize..3,
        ops in proptest::collection::vec(op(), 1..30),
        scans in proptest::collection::vec(scan_opts(), 1..8),
    ) {
        run(Policy::ALL[p], &ops, &scans)?;
    }
}

#[test]
fn scan_decrypts_only_the_rows_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    for k in ["a", "b", "c", "d", "e"] {
        r.put("notes", k, k.as_bytes()).unwrap();
    }
    // Spoil the ciphertext of "e" only.
    r.store
        .conn
        .execute("UPDATE versions SET value = x'00' WHERE key = 'e'", [])
        .unwrap();
    assert!(matches!(r.list("notes"), Err(ClientError::Corrupt(_))));
    let first = r.scan("notes", &ScanOptions::new().limit(2)).unwrap();
    assert_eq!(
        first,
        vec![("a".into(), b"a".to_vec()), ("b".into(), b"b".to_vec())]
    );
    let page = r
        .scan("notes", &ScanOptions::new().start_after("b").end("e"))
        .unwrap();
    assert_eq!(
        page.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["c", "d"]
    );
    assert!(matches!(
        r.scan("notes", &ScanOptions::new().reverse(true).limit(1)),
        Err(ClientError::Corrupt(_))
    ));
    let last_good = r
        .scan("notes", &ScanOptions::new().end("e").reverse(true).limit(1))
        .unwrap();
    assert_eq!(last_good, vec![("d".into(), b"d".to_vec())]);
    assert!(r.scan("unknown", &ScanOptions::new()).unwrap().is_empty());
    assert!(
        r.scan("notes", &ScanOptions::new().limit(0))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn scan_prefixes_and_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    for k in ["user/1", "user/2", "user0", "users", "user/\u{10ffff}", "v"] {
        r.put("c", k, b"x").unwrap();
    }
    r.delete("c", "user/2").unwrap();
    let keys = |o: ScanOptions| -> Vec<String> {
        r.scan("c", &o)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(
        keys(ScanOptions::new().prefix("user/")),
        ["user/1", "user/\u{10ffff}"]
    );
    assert_eq!(
        keys(ScanOptions::new().prefix("user").reverse(true)),
        ["users", "user0", "user/\u{10ffff}", "user/1"]
    );
    assert_eq!(
        keys(ScanOptions::new().start("user0").end_inclusive("v")),
        ["user0", "users", "v"]
    );
    assert!(keys(ScanOptions::new().start("v").end("a")).is_empty());
}

#[test]
fn an_index_is_built_from_existing_data_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.put("notes", "a", br#"{"tag":"red","n":1}"#).unwrap();
    r.put("notes", "b", br#"{"tag":"blue"}"#).unwrap();
    r.put("notes", "c", br#"{"tag":"red"}"#).unwrap();
    r.put("notes", "d", b"not json").unwrap();
    r.put("notes", "e", br#"{"tag":"red"}"#).unwrap();
    r.delete("notes", "e").unwrap();
    let err = r.find("notes", "tag", &json!("red")).unwrap_err();
    assert!(matches!(err, ClientError::NoIndex { .. }), "{err}");
    assert!(
        err.to_string().contains("no index on field \"tag\""),
        "{err}"
    );

    r.create_index("notes", "tag").unwrap();
    r.create_index("notes", "tag").unwrap(); // idempotent
    assert_eq!(term_count(&r, "notes"), 3);
    let red = r.find("notes", "tag", &json!("red")).unwrap();
    assert_eq!(
        red.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(red[0].1, br#"{"tag":"red","n":1}"#);
    assert!(r.find("notes", "tag", &json!("green")).unwrap().is_empty());
    drop(r);

    let mut r = Core::open(dir.path(), &Default::default()).unwrap();
    r.put("notes", "c", br#"{"tag":"blue"}"#).unwrap();
    r.put("notes", "f", br#"{"tag":"red","other":{"b":1,"a":2}}"#)
        .unwrap();
    let red = r.find("notes", "tag", &json!("red")).unwrap();
    assert_eq!(
        red.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["a", "f"]
    );
    assert_eq!(r.find("notes", "tag", &json!("blue")).unwrap().len(), 2);
    assert!(matches!(
        r.find("notes", "n", &json!(1)),
        Err(ClientError::NoIndex { .. })
    ));
    // Bad field names are refused; an index may precede its collection.
    assert!(matches!(
        r.create_index("notes", ""),
        Err(ClientError::InvalidInput(_))
    ));
    r.create_index("later", "tag").unwrap();
    assert!(r.store.collection("later").unwrap().is_none());
    assert!(r.find("later", "tag", &json!("red")).unwrap().is_empty());
    r.put("later", "k", br#"{"tag":"red"}"#).unwrap();
    assert_eq!(r.find("later", "tag", &json!("red")).unwrap().len(), 1);
}

#[test]
fn the_index_holds_no_plaintext_field_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.create_index("notes", "secret").unwrap();
    r.put("notes", "k", br#"{"secret":"hunter2-horse-battery"}"#)
        .unwrap();
    assert_eq!(term_count(&r, "notes"), 1);
    r.store
        .conn
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    drop(r);
    for f in ["replica.db", "replica.db-wal"] {
        let Ok(bytes) = std::fs::read(dir.path().join(f)) else {
            continue;
        };
        assert!(
            !bytes.windows(7).any(|w| w == b"hunter2"),
            "plaintext field value in {f}"
        );
    }
}

#[test]
fn a_restamped_edit_stays_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.create_index("notes", "tag").unwrap();
    r.set_clock_skew_for_tests(2 * 3_600_000);
    r.put("notes", "k", br#"{"tag":"red"}"#).unwrap();
    r.set_clock_skew_for_tests(0);
    let now = crate::store::now_ms();
    assert_eq!(
        r.store
            .restamp_future(Hlc::from_parts(now, 0), now)
            .unwrap(),
        1
    );
    assert_eq!(r.find("notes", "tag", &json!("red")).unwrap().len(), 1);
    assert_eq!(term_count(&r, "notes"), 1);
    r.delete("notes", "k").unwrap();
    assert!(r.find("notes", "tag", &json!("red")).unwrap().is_empty());
    assert_eq!(term_count(&r, "notes"), 0);
}

#[test]
fn a_policy_change_reindexes() {
    // Pinning a collection to another policy re-resolves its records: their terms follow.
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.create_index("c", "tag").unwrap();
    r.put("c", "a", br#"{"tag":"red","n":1}"#).unwrap();
    r.put("c", "a", br#"{"n":2}"#).unwrap();
    assert!(r.find("c", "tag", &json!("red")).unwrap().is_empty());
    let c = r.store.collection("c").unwrap().unwrap();
    r.store.change_policy(&c, Policy::Fields).unwrap();
    assert_eq!(
        r.find("c", "tag", &json!("red")).unwrap(),
        vec![("a".to_string(), br#"{"n":2,"tag":"red"}"#.to_vec())]
    );
    assert_eq!(term_count(&r, "c"), 1);
}

#[test]
fn find_and_scan_use_the_indexes() {
    // The queries `find` and `scan` run: searches of a key range, no sort, no full scan.
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.create_index("c", "tag").unwrap();
    r.put("c", "k", br#"{"tag":"red"}"#).unwrap();
    let plan = |sql: &str, args: Vec<rusqlite::types::Value>| -> String {
        let mut st = r
            .store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = st
            .query_map(rusqlite::params_from_iter(args), |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    };
    use rusqlite::types::Value as Sql;
    let find = plan(
        crate::store::index::FIND_SQL,
        vec![Sql::Integer(1), Sql::Blob(vec![0; 32])],
    );
    assert!(
        find.starts_with("SEARCH t USING PRIMARY KEY (coll=? AND term=?)"),
        "{find}"
    );
    assert!(
        !find.contains("TEMP B-TREE") && !find.contains("SCAN"),
        "{find}"
    );
    let opts = ScanOptions::new()
        .prefix("a")
        .end("ab")
        .reverse(true)
        .limit(3);
    let (sql, args) = crate::store::scan::scan_query(1, &opts);
    let scan = plan(&sql, args);
    assert!(
        scan.starts_with(
            "SEARCH r USING INDEX sqlite_autoindex_records_1 (coll=? AND key>? AND key<?)"
        ),
        "{scan}"
    );
    assert!(
        !scan.contains("TEMP B-TREE") && !scan.contains("SCAN"),
        "{scan}"
    );
}

#[test]
fn adopted_batches_and_the_edits_they_restamp_are_indexed() {
    // A home restored from a backup takes its own later batches back from the server
    // (`adopt`), and re-stamps its unsent edits above them: both change live records.
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    r.create_index("c", "tag").unwrap();
    r.put("c", "local", br#"{"tag":"red"}"#).unwrap();
    let coll = r.store.collection("c").unwrap().unwrap();
    let common = r.store.own_chain_at(coll.id, 0).unwrap();
    let hlc = Hlc::from_parts(crate::store::now_ms() - 1000, 0).0;
    let batch = remote(
        r.device_id,
        1,
        vec![("lost", hlc, Some(br#"{"tag":"red"}"#), vec![])],
    );
    let adopted = r
        .store
        .adopt_own_batches(
            &coll,
            &common,
            vec![crate::store::AdoptedBatch {
                batch,
                bytes: vec![1],
            }],
        )
        .unwrap();
    assert_eq!((adopted.batches, adopted.restamped), (1, 1));
    let red = r.find("c", "tag", &json!("red")).unwrap();
    assert_eq!(keys_of(&red), ["local", "lost"]);
    assert_eq!(term_count(&r, "c"), 2);
}

fn keys_of(records: &[(String, Vec<u8>)]) -> Vec<&str> {
    records.iter().map(|(k, _)| k.as_str()).collect()
}
