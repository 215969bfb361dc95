//! `sealsync device scan`, `index` and `find`: the output of `list` for a part of a
//! collection, field lookups through an index, and one-line errors.

use crate::cli_kit::{fails, ok};
use crate::cli_ux::one_device;

#[test]
fn scan_index_and_find_over_the_cli() {
    let (_tmp, _server, _data, home) = one_device();
    let dev = |args: &[&str]| -> String {
        let mut all = vec!["device", "--home", home.as_str()];
        all.extend_from_slice(args);
        ok(&all)
    };
    dev(&["put", "notes", "a/1", r#"{"tag":"red","n":1}"#]);
    dev(&["put", "notes", "a/2", r#"{"tag":"blue","n":-1}"#]);
    dev(&["put", "notes", "b/1", r#"{"tag":"red"}"#]);
    dev(&["put", "notes", "plain", "line\none"]);

    assert_eq!(
        dev(&["scan", "notes", "--prefix", "a/"]),
        "a/1\t{\"tag\":\"red\",\"n\":1}\na/2\t{\"tag\":\"blue\",\"n\":-1}\n"
    );
    let keys = |out: &str| -> Vec<String> {
        out.lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        keys(&dev(&["scan", "notes", "--start", "a/2", "--limit", "2"])),
        ["a/2", "b/1"]
    );
    assert_eq!(keys(&dev(&["scan", "notes", "--end", "b"])), ["a/1", "a/2"]);
    assert_eq!(
        keys(&dev(&["scan", "notes", "--reverse", "--limit", "2"])),
        ["plain", "b/1"]
    );
    // Same formats as `list`: escaped lines, or one JSON array.
    let last: serde_json::Value = serde_json::from_str(&dev(&[
        "scan",
        "notes",
        "--reverse",
        "--limit",
        "1",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        last,
        serde_json::json!([{"key": "plain", "value": "line\none"}])
    );
    assert_eq!(
        dev(&["scan", "notes", "--prefix", "p"]),
        "plain\tline\\none\n"
    );
    assert_eq!(dev(&["scan", "unknown"]), "");
    assert_eq!(dev(&["scan", "notes"]), dev(&["list", "notes"]));

    // No index yet: one clear line, exit 2.
    let err = fails(
        &["device", "--home", &home, "find", "notes", "tag", "red"],
        2,
    );
    assert!(err.contains("no index on field \"tag\""), "{err}");
    assert!(
        err.contains(&format!("sealsync device --home {home} index notes tag")),
        "{err}"
    );

    let out = dev(&["index", "notes", "tag"]);
    assert!(out.contains("indexed field \"tag\""), "{out}");
    dev(&["index", "notes", "tag"]); // idempotent
    dev(&["index", "notes", "n"]);
    // VALUE is JSON, else a string.
    assert_eq!(keys(&dev(&["find", "notes", "tag", "red"])), ["a/1", "b/1"]);
    assert_eq!(
        keys(&dev(&["find", "notes", "tag", "\"red\""])),
        ["a/1", "b/1"]
    );
    assert_eq!(keys(&dev(&["find", "notes", "n", "1"])), ["a/1"]);
    assert_eq!(keys(&dev(&["find", "notes", "n", "-1"])), ["a/2"]);
    assert_eq!(dev(&["find", "notes", "n", "\"1\""]), "");
    let found: serde_json::Value =
        serde_json::from_str(&dev(&["find", "notes", "tag", "blue", "--json"])).unwrap();
    assert_eq!(
        found,
        serde_json::json!([{"key": "a/2", "value": "{\"tag\":\"blue\",\"n\":-1}"}])
    );
    // Later edits keep the index current.
    dev(&["put", "notes", "b/1", r#"{"tag":"blue"}"#]);
    dev(&["delete", "notes", "a/1"]);
    assert_eq!(dev(&["find", "notes", "tag", "red"]), "");
    assert_eq!(
        keys(&dev(&["find", "notes", "tag", "blue"])),
        ["a/2", "b/1"]
    );

    let err = fails(
        &[
            "device", "--home", &home, "scan", "notes", "--limit", "many",
        ],
        2,
    );
    assert!(err.contains("--limit"), "{err}");
    let err = fails(&["device", "--home", &home, "index", "notes", ""], 2);
    assert!(err.contains("invalid field name"), "{err}");
}
