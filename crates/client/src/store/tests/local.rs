//! Local operations without a server: put, get, delete, list, history and status, input
//! limits, durability across reopen, and the database at rest (encrypted values, private
//! files).

use sealsync_core::Policy;

use crate::testutil::offline_replica;
use crate::{Core, error::ClientError};

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
    // Deleting is idempotent: an absent record (already deleted, never written, unknown
    // collection) writes nothing and says so.
    let before = r.store.last_change_seq().unwrap();
    assert_eq!(r.delete("notes", "a").unwrap(), None);
    assert_eq!(r.delete("notes", "zzz").unwrap(), None);
    assert_eq!(r.delete("nope", "a").unwrap(), None);
    assert_eq!(r.store.last_change_seq().unwrap(), before);
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
    let mut r = Core::open(dir.path(), &Default::default()).unwrap();
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

#[test]
fn learned_clock_offset_is_durable_and_pulls_fast_ticks_back() {
    // NA-10, CD-08: a device an hour fast stamps edits near the server's time once it knows
    // the offset; the offset survives a restart; the HLC never goes backwards.
    const HOUR: i64 = 3_600_000;
    let half = sealsync_core::MAX_DRIFT_MS / 2;
    let real_now = crate::store::now_ms;
    let dir = tempfile::tempdir().unwrap();
    let mut r = offline_replica(dir.path());
    assert_eq!(r.store.time.offset_ms, None);
    r.set_clock_skew_for_tests(HOUR);
    let fast = r.put("notes", "a", b"fast").unwrap();
    assert!(fast.hlc().physical_ms() >= real_now() + HOUR as u64 - 1000);

    r.store.set_clock_offset(-HOUR).unwrap();
    let before = real_now();
    let v = r.put("notes", "b", b"trusted").unwrap();
    // Still above the fast version already issued: the HLC never goes backwards.
    assert!(v.hlc() > fast.hlc());
    // Ticks now read trusted time: half the drift bound ahead of the real clock, not an hour.
    let clock = r.store.time;
    assert!(clock.now() <= real_now() + half + 1000);
    assert!(clock.now() + 1000 >= before + half);

    drop(r);
    let r = Core::open(dir.path(), &Default::default()).unwrap();
    assert_eq!(r.store.time.offset_ms, Some(-HOUR));
    assert_eq!(r.store.time.skew_ms, 0, "the test skew is not persisted");
}

#[test]
fn two_handles_on_one_replica_never_issue_the_same_version_id() {
    // CF-01, CF-13: two processes on one home directory (a `put` while a `sync` runs) each
    // keep the HLC in memory. A version id issued by one must never be issued again by the
    // other: on the same key the second put would be silently dropped (INSERT OR IGNORE),
    // on another key two mutations with one HLC could never be sealed into a batch.
    let dir = tempfile::tempdir().unwrap();
    let mut a = offline_replica(dir.path());
    a.put("notes", "seed", b"0").unwrap();
    let mut b = Core::open(dir.path(), &Default::default()).unwrap();
    // Wall clocks behind the last HLC (e.g. pulled back by trusted time): ticks are last + 1.
    a.set_clock_skew_for_tests(-3_600_000);
    b.set_clock_skew_for_tests(-3_600_000);
    let va = a.put("notes", "k", b"from a").unwrap();
    let vb = b.put("notes", "k", b"from b").unwrap();
    assert_ne!(va, vb);
    b.put("notes", "other", b"b").unwrap();
    a.put("notes", "third", b"a").unwrap();
    assert_eq!(a.history("notes", "k").unwrap().len(), 2, "a put was lost");
    assert_eq!(
        a.get("notes", "k").unwrap().as_deref(),
        Some(&b"from b"[..])
    );
    assert_eq!(a.seal_outbox().unwrap(), 1);
    // And a handle that reopens later continues above every id issued.
    drop(b);
    let mut c = Core::open(dir.path(), &Default::default()).unwrap();
    c.set_clock_skew_for_tests(-3_600_000);
    let vc = c.put("notes", "k", b"from c").unwrap();
    assert!(vc > va && vc > vb);
}
