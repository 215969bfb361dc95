//! Typed values (`put_json`, `get_json`, `patch`): serde round trips in `lww` and `fields`
//! collections, the patch semantics of `fields` (what stays, what `null` does, how to drop a
//! field) and typed errors.

use std::collections::BTreeMap;

use sealsync_core::Policy;
use serde::{Deserialize, Serialize};

use crate::testutil::offline_replica;
use crate::{ReadError, Replica, WriteError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Address {
    street: String,
    city: String,
    geo: Option<(f64, f64)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Person {
    name: String,
    age: u32,
    nickname: Option<String>,
    tags: Vec<String>,
    address: Address,
    previous: Vec<Address>,
    scores: BTreeMap<String, i64>,
}

fn ada() -> Person {
    Person {
        name: "Ada Lovelace — 𝔄𝔡𝔞, 阿达, Zoë \"the\" \\ first\n".into(),
        age: 36,
        nickname: None,
        tags: vec!["math".into(), "🧮".into(), String::new()],
        address: Address {
            street: "12 St James's Square".into(),
            city: "Londres, Ελλάδα? no: London".into(),
            geo: Some((51.507_4, -0.134_5)),
        },
        previous: vec![Address {
            street: "Ockham Park".into(),
            city: "Surrey".into(),
            geo: None,
        }],
        scores: BTreeMap::from([("b".into(), -3), ("a".into(), i64::MAX)]),
    }
}

fn replica(home: &std::path::Path) -> Replica {
    Replica::from_core(offline_replica(home), None)
}

#[test]
fn json_values_round_trip_in_lww_and_fields_collections() {
    let dir = tempfile::tempdir().unwrap();
    let r = replica(dir.path());
    r.create_collection("people", Policy::Fields).unwrap();
    let mut person = ada();
    for coll in ["notes", "people"] {
        r.put_json(coll, "ada", &person).unwrap();
        assert_eq!(
            r.get_json::<Person>(coll, "ada").unwrap(),
            Some(person.clone())
        );
        assert_eq!(r.get_json::<Person>(coll, "absent").unwrap(), None);
    }
    person.nickname = Some("Enchantress of Numbers ✨".into());
    person.tags.clear();
    for coll in ["notes", "people"] {
        r.put_json(coll, "ada", &person).unwrap();
        assert_eq!(
            r.get_json::<Person>(coll, "ada").unwrap(),
            Some(person.clone())
        );
    }
    // Plain values in lww: a string, a list, a number.
    r.put_json("notes", "s", "ünïcødé ☃").unwrap();
    assert_eq!(
        r.get_json::<String>("notes", "s").unwrap().unwrap(),
        "ünïcødé ☃"
    );
    r.put_json("notes", "v", &[1u8, 2, 3][..]).unwrap();
    assert_eq!(
        r.get_json::<Vec<u8>>("notes", "v").unwrap(),
        Some(vec![1, 2, 3])
    );
    // Inside a transaction too, reading its own typed write.
    r.transaction(|tx| {
        tx.put_json("people", "bob", &person)?;
        assert_eq!(
            tx.get_json::<Person>("people", "bob")?,
            Some(person.clone())
        );
        Ok::<_, WriteError>(())
    })
    .unwrap();
    assert_eq!(r.get_json::<Person>("people", "bob").unwrap(), Some(person));
    // Deleted: None.
    r.delete("people", "bob").unwrap();
    assert_eq!(r.get_json::<Person>("people", "bob").unwrap(), None);
}

#[test]
fn patch_and_put_merge_top_level_fields_in_a_fields_collection() {
    let dir = tempfile::tempdir().unwrap();
    let r = replica(dir.path());
    r.create_collection("people", Policy::Fields).unwrap();
    let read = |k: &str| r.get_json::<serde_json::Value>("people", k).unwrap();
    // A patch of an absent record creates it with just those fields.
    let mut m = serde_json::Map::new();
    m.insert("phone".into(), "1".into());
    m.insert(
        "address".into(),
        serde_json::json!({"city": "Paris", "zip": "75001"}),
    );
    r.patch("people", "ada", &m).unwrap();
    // Fields not given stay; a nested object is replaced whole, never merged.
    r.patch(
        "people",
        "ada",
        &serde_json::json!({"mail": "ada@x", "address": {"city": "Lyon"}}),
    )
    .unwrap();
    assert_eq!(
        read("ada"),
        Some(serde_json::json!({"phone": "1", "mail": "ada@x", "address": {"city": "Lyon"}}))
    );
    // A plain put of an object, and put_json of a struct, are the same patch.
    r.put("people", "ada", br#"{"phone":"2"}"#).unwrap();
    #[derive(Serialize)]
    struct Mail<'a> {
        mail: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        nickname: Option<&'a str>,
    }
    r.put_json(
        "people",
        "ada",
        &Mail {
            mail: "new@x",
            nickname: None,
        },
    )
    .unwrap();
    assert_eq!(
        read("ada"),
        Some(serde_json::json!({"phone": "2", "mail": "new@x", "address": {"city": "Lyon"}}))
    );
    // `null` is stored as null: the field stays, it is not removed.
    r.patch("people", "ada", &serde_json::json!({"phone": null}))
        .unwrap();
    assert_eq!(
        read("ada"),
        Some(serde_json::json!({"phone": null, "mail": "new@x", "address": {"city": "Lyon"}}))
    );
    // An empty patch changes no field.
    r.patch("people", "ada", &serde_json::Map::new()).unwrap();
    assert_eq!(read("ada").unwrap()["mail"], "new@x");
    // To drop fields: delete and write again, in one transaction.
    r.transaction(|tx| {
        tx.delete("people", "ada")?;
        tx.patch("people", "ada", &serde_json::json!({"mail": "only@x"}))
    })
    .unwrap();
    assert_eq!(read("ada"), Some(serde_json::json!({"mail": "only@x"})));
}

#[test]
fn patch_is_refused_outside_fields_collections_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let r = replica(dir.path());
    r.put("notes", "k", b"v").unwrap();
    r.create_collection("tasks", Policy::Manual).unwrap();
    let patch = serde_json::json!({"a": 1});
    for (coll, policy) in [
        ("notes", Some("lww")),
        ("tasks", Some("manual")),
        ("nope", None),
    ] {
        let err = r.patch(coll, "k", &patch).unwrap_err();
        match &err {
            WriteError::NotFieldsCollection {
                collection,
                policy: p,
            } => {
                assert_eq!(collection, coll);
                assert_eq!(p.as_deref(), policy);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("fields policy"), "{err}");
    }
    assert_eq!(r.get("notes", "k").unwrap().as_deref(), Some(&b"v"[..]));
    let names: Vec<_> = r
        .status()
        .unwrap()
        .collections
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(
        names,
        ["notes", "tasks"],
        "patch never creates a collection"
    );
    // Inside a transaction the refusal is an error of that operation only.
    r.create_collection("people", Policy::Fields).unwrap();
    r.transaction(|tx| {
        assert!(tx.patch("notes", "k", &patch).is_err());
        tx.patch("people", "k", &patch)
    })
    .unwrap();
    assert_eq!(
        r.get_json::<serde_json::Value>("people", "k").unwrap(),
        Some(patch)
    );
}

#[test]
fn json_errors_are_typed_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = replica(dir.path());
    r.create_collection("people", Policy::Fields).unwrap();
    r.put("notes", "raw", b"\xff not json").unwrap();
    r.put_json("notes", "num", &7).unwrap();
    // Not JSON, or JSON of another type.
    let err = r.get_json::<Person>("notes", "raw").unwrap_err();
    assert!(matches!(err, ReadError::Json(_)), "{err:?}");
    let err = r.get_json::<String>("notes", "num").unwrap_err();
    match &err {
        ReadError::Json(m) => assert!(m.contains("\"num\"") && m.contains("notes"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A value serde_json cannot serialize (a map with non-string keys).
    let bad: BTreeMap<Vec<u8>, u8> = BTreeMap::from([(vec![1], 1)]);
    let before = r.state_root().unwrap();
    assert!(matches!(
        r.put_json("notes", "bad", &bad),
        Err(WriteError::Json(_))
    ));
    assert!(matches!(
        r.patch("people", "bad", &bad),
        Err(WriteError::Json(_))
    ));
    // A patch or typed put into `fields` that is not an object.
    let err = r.patch("people", "ada", &vec![1, 2]).unwrap_err();
    assert!(
        matches!(&err, WriteError::InvalidInput(m) if m.contains("an array")),
        "{err:?}"
    );
    assert!(matches!(
        r.put_json("people", "ada", "just a string"),
        Err(WriteError::InvalidInput(_))
    ));
    assert_eq!(r.state_root().unwrap(), before);
    assert_eq!(r.get("people", "ada").unwrap(), None);
}
