//! Transactions (`crate::txn`) through the public handle: all or nothing when the closure
//! fails, panics or the process is killed half-way; reads see the transaction's own writes
//! and nobody else does before the commit; a failed operation inside is undone alone; and a
//! transaction seals into one batch per collection.

use std::path::Path;

use sealsync_core::Policy;

use crate::testutil::offline_replica;
use crate::{Core, Replica, WriteError};

/// An application's own error type, as `Replica::transaction` lets the closure use.
#[derive(Debug)]
enum AppError {
    OutOfStock,
    Client(WriteError),
}

impl From<WriteError> for AppError {
    fn from(e: WriteError) -> Self {
        AppError::Client(e)
    }
}

fn replica(home: &Path) -> Replica {
    Replica::from_core(offline_replica(home), None)
}

/// Versions stored, as a separate read-only connection (another process) sees them.
fn versions_seen_outside(home: &Path) -> i64 {
    let conn = super::super::changes::open_reader(&home.join(crate::store::DB_FILE)).unwrap();
    conn.query_row("SELECT count(*) FROM versions", [], |r| r.get(0))
        .unwrap()
}

/// What a test compares before and after a transaction that must leave nothing: the state
/// root, the versions stored and the collections.
fn snapshot(r: &Replica) -> ([u8; 32], i64, Vec<String>) {
    let names = r.status().unwrap().collections.into_iter().map(|c| c.name);
    (
        r.state_root().unwrap(),
        versions_seen_outside(r.home()),
        names.collect(),
    )
}

#[test]
fn a_transaction_commits_puts_and_deletes_across_collections_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let r = replica(dir.path());
    r.put("carts", "c1", b"tea x2").unwrap();
    let before = versions_seen_outside(dir.path());
    let start = before as u64;
    let out = r
        .transaction(|tx| {
            let v1 = tx.put("orders", "o1", b"tea x2")?;
            let v2 = tx.put("stock", "tea", b"41")?;
            let gone = tx.delete("carts", "c1")?;
            // Nothing is visible outside before the commit.
            assert_eq!(versions_seen_outside(dir.path()), before);
            Ok::<_, WriteError>((v1, v2, gone))
        })
        .unwrap();
    assert!(out.0 < out.1, "versions are stamped in order");
    assert!(out.2.is_some());
    assert_eq!(versions_seen_outside(dir.path()), before + 3);
    assert_eq!(
        r.get("orders", "o1").unwrap().as_deref(),
        Some(&b"tea x2"[..])
    );
    assert_eq!(r.get("stock", "tea").unwrap().as_deref(), Some(&b"41"[..]));
    assert_eq!(r.get("carts", "c1").unwrap(), None);
    // The change log holds the transaction's versions consecutively, in write order.
    let reader =
        super::super::changes::open_reader(&dir.path().join(crate::store::DB_FILE)).unwrap();
    let changes = super::super::changes::changes_after(&reader, start, 10).unwrap();
    let seen: Vec<_> = changes
        .iter()
        .map(|c| {
            (
                c.seq - start,
                c.collection.as_str(),
                c.key.as_str(),
                c.deleted,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, "orders", "o1", false),
            (2, "stock", "tea", false),
            (3, "carts", "c1", true)
        ]
    );
    // Durable: a reopened replica has it all.
    drop(r);
    let core = Core::open(dir.path(), &Default::default()).unwrap();
    assert_eq!(
        core.get("stock", "tea").unwrap().as_deref(),
        Some(&b"41"[..])
    );
}

#[test]
fn a_closure_error_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = replica(dir.path());
    r.put("stock", "tea", b"1").unwrap();
    r.create_collection("people", Policy::Fields).unwrap();
    r.put("people", "ada", br#"{"phone":"1"}"#).unwrap();
    let before = snapshot(&r);
    let err = r
        .transaction(|tx| {
            tx.put("orders", "o1", b"tea")?; // creates "orders"
            tx.put("stock", "tea", b"0")?;
            tx.delete("stock", "tea")?;
            tx.patch("people", "ada", &serde_json::json!({"phone": "2"}))?;
            tx.put_json("orders", "o2", &vec!["a", "b"])?;
            if tx.get("stock", "tea").map_err(WriteError::from)?.is_none() {
                return Err(AppError::OutOfStock);
            }
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, AppError::OutOfStock), "{err:?}");
    assert_eq!(
        snapshot(&r),
        before,
        "no version, record or collection was kept"
    );
    assert_eq!(r.get("stock", "tea").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(r.get("orders", "o1").unwrap(), None);
    assert_eq!(
        r.get("people", "ada").unwrap().as_deref(),
        Some(&br#"{"phone":"1"}"#[..])
    );
    // An error of the store's own, returned through `?`, ends the transaction the same way.
    let err = r
        .transaction(|tx| {
            tx.put("orders", "o1", b"tea")?;
            tx.put("orders", "", b"no key")?;
            Ok::<_, AppError>(())
        })
        .unwrap_err();
    assert!(
        matches!(err, AppError::Client(WriteError::InvalidInput(_))),
        "{err:?}"
    );
    assert_eq!(snapshot(&r), before);
    // The replica goes on as before.
    r.put("stock", "tea", b"2").unwrap();
}

#[test]
fn a_panic_inside_writes_nothing_and_the_replica_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let r = replica(dir.path());
    r.put("stock", "tea", b"1").unwrap();
    let before = snapshot(&r);
    let clone = r.clone();
    let panicked = std::thread::spawn(move || {
        clone.transaction(|tx| {
            tx.put("orders", "o1", b"tea")?;
            tx.delete("stock", "tea")?;
            if tx.get("stock", "tea")?.is_none() {
                panic!("the app panicked mid-transaction");
            }
            Ok::<_, WriteError>(())
        })
    })
    .join();
    assert!(panicked.is_err(), "the panic goes on to the caller");
    assert_eq!(snapshot(&r), before);
    assert_eq!(versions_seen_outside(dir.path()), 1);
    // The local lock was poisoned by the panic; the replica still reads and writes, and
    // its clock continues above every stamp issued, even the rolled-back ones.
    assert_eq!(r.get("stock", "tea").unwrap().as_deref(), Some(&b"1"[..]));
    let v = r
        .transaction(|tx| {
            tx.put("orders", "o1", b"tea")?;
            tx.delete("stock", "tea")
        })
        .unwrap();
    assert!(v.is_some());
    assert_eq!(r.get("stock", "tea").unwrap(), None);
}

#[test]
fn reads_inside_see_the_transactions_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let r = replica(dir.path());
    r.create_collection("people", Policy::Fields).unwrap();
    r.put("people", "ada", br#"{"phone":"1","mail":"a@x"}"#)
        .unwrap();
    r.put("notes", "old", b"kept?").unwrap();
    r.transaction(|tx| {
        assert_eq!(tx.get("notes", "new")?, None);
        tx.put("notes", "new", b"one")?;
        assert_eq!(tx.get("notes", "new")?.as_deref(), Some(&b"one"[..]));
        tx.put("notes", "new", b"two")?;
        assert_eq!(tx.get("notes", "new")?.as_deref(), Some(&b"two"[..]));
        // A collection created inside is readable inside.
        tx.put("fresh", "k", b"v")?;
        assert_eq!(tx.get("fresh", "k")?.as_deref(), Some(&b"v"[..]));
        // Deletes, and deleting twice (the second finds no live record).
        assert!(tx.delete("notes", "old")?.is_some());
        assert_eq!(tx.get("notes", "old")?, None);
        assert_eq!(tx.delete("notes", "old")?, None);
        // Fields merge as they are written.
        tx.patch("people", "ada", &serde_json::json!({"phone": "2"}))?;
        let ada: serde_json::Value = tx.get_json("people", "ada")?.unwrap();
        assert_eq!(ada, serde_json::json!({"phone": "2", "mail": "a@x"}));
        // Nobody outside sees any of it yet.
        assert_eq!(versions_seen_outside(dir.path()), 2);
        Ok::<_, WriteError>(())
    })
    .unwrap();
    assert_eq!(r.get("notes", "new").unwrap().as_deref(), Some(&b"two"[..]));
    assert_eq!(r.get("notes", "old").unwrap(), None);
    assert_eq!(versions_seen_outside(dir.path()), 2 + 5);
}

#[test]
fn a_failed_operation_inside_is_undone_alone_and_the_transaction_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let r = replica(dir.path());
    r.create_collection("people", Policy::Fields).unwrap();
    r.transaction(|tx| {
        tx.put("notes", "a", b"1")?;
        let too_long = "k".repeat(crate::MAX_KEY_BYTES + 1);
        assert!(matches!(
            tx.put("other", &too_long, b"x"),
            Err(WriteError::InvalidInput(_))
        ));
        assert!(matches!(
            tx.put("people", "ada", b"[1,2]"),
            Err(WriteError::InvalidInput(_))
        ));
        assert!(matches!(
            tx.put("bad\ncollection", "k", b"x"),
            Err(WriteError::InvalidInput(_))
        ));
        assert!(matches!(
            tx.resolve("notes", "a", b"x"),
            Err(WriteError::InvalidInput(_))
        ));
        tx.put("notes", "b", b"2")?;
        Ok::<_, WriteError>(())
    })
    .unwrap();
    let (_, versions, names) = snapshot(&r);
    assert_eq!(
        names,
        ["notes", "people"],
        "no collection from a failed put"
    );
    assert_eq!(r.list("notes").unwrap().len(), 2);
    assert_eq!(versions, 2);
}

#[test]
fn manual_conflicts_are_resolved_inside_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let r = replica(dir.path());
    r.create_collection("tasks", Policy::Manual).unwrap();
    r.put("tasks", "t", b"plan").unwrap();
    r.transaction(|tx| {
        tx.resolve("tasks", "t", b"together")?;
        tx.put("log", "t", b"resolved")
    })
    .unwrap();
    assert_eq!(
        r.get("tasks", "t").unwrap().as_deref(),
        Some(&b"together"[..])
    );
    let h = r.history("tasks", "t").unwrap();
    assert_eq!(h[1].supersedes, vec![h[0].version]);
    let err = r
        .transaction(|tx| tx.resolve("tasks", "never", b"x"))
        .unwrap_err();
    assert!(matches!(err, WriteError::NotFound { .. }), "{err}");
}

#[test]
fn a_transaction_seals_into_one_batch_per_collection() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = offline_replica(dir.path());
    core.create_collection("lines", Policy::Fields).unwrap();
    core.transaction(|tx| {
        for i in 0..300 {
            tx.put("orders", &format!("o{i:03}"), b"tea")?;
            tx.patch("lines", &format!("o{i:03}"), &serde_json::json!({"qty": i}))?;
        }
        tx.delete("orders", "o000")?;
        Ok::<_, WriteError>(())
    })
    .unwrap();
    assert_eq!(core.seal_outbox().unwrap(), 2, "one batch per collection");
    for (name, mutations) in [("orders", 301), ("lines", 300)] {
        let c = core.store.collection(name).unwrap().unwrap();
        assert_eq!(core.store.outbox_count(c.id).unwrap(), 1, "{name}");
        let versions: i64 = core
            .store
            .conn
            .query_row(
                "SELECT count(*) FROM versions WHERE coll = ?1 AND batch_seq = 1",
                [c.id],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(versions, mutations, "{name}: all in batch 1");
    }
}

/// Set for the child process of the crash test: its home directory.
const CRASH_HOME: &str = "SEALSYNC_TEST_TXN_CRASH_HOME";
/// Puts the child makes before it is killed.
const CRASH_PUTS: usize = 300;

/// Not a test by itself: run by [`a_transaction_killed_half_way_leaves_nothing_visible`]
/// in a child process (with [`CRASH_HOME`] set), it writes part of a transaction and
/// aborts the process inside the closure. Without the variable it does nothing.
#[test]
fn crash_child() {
    let Some(home) = std::env::var_os(CRASH_HOME) else {
        return;
    };
    let home = std::path::PathBuf::from(home);
    let mut core = Core::open(&home, &Default::default()).unwrap();
    // A tiny page cache makes SQLite spill the transaction's pages into the WAL before the
    // commit, so the crash leaves uncommitted frames on disk.
    core.store
        .conn
        .pragma_update(None, "cache_size", 4)
        .unwrap();
    let _ = core.transaction(|tx| {
        tx.delete("keep", "k0")?;
        tx.put("keep", "k1", b"overwritten")?;
        for i in 0..CRASH_PUTS {
            tx.put("orders", &format!("o{i:04}"), &vec![b'x'; 4096])?;
        }
        std::fs::write(home.join("reached"), b"").unwrap();
        if home.join("reached").exists() {
            std::process::abort();
        }
        Ok::<_, WriteError>(())
    });
}

#[test]
fn a_transaction_killed_half_way_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut core = offline_replica(&home);
    core.put("keep", "k0", b"zero").unwrap();
    core.put("keep", "k1", b"one").unwrap();
    let root = core.state_root().unwrap();
    let seq = core.store.last_change_seq().unwrap();
    let hlc = core.store.clock.last();
    drop(core);

    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::txn::crash_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CRASH_HOME, &home)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die mid-transaction");
    assert!(
        home.join("reached").exists(),
        "the child did not reach the abort"
    );
    let wal = std::fs::metadata(home.join("replica.db-wal")).map_or(0, |m| m.len());
    assert!(
        wal > (CRASH_PUTS as u64) * 4096,
        "the uncommitted transaction reached the WAL ({wal} bytes)"
    );

    let mut core = Core::open(&home, &Default::default()).unwrap();
    assert_eq!(
        core.get("keep", "k0").unwrap().as_deref(),
        Some(&b"zero"[..])
    );
    assert_eq!(
        core.get("keep", "k1").unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(core.get("orders", "o0000").unwrap(), None);
    assert!(core.store.collection("orders").unwrap().is_none());
    assert_eq!(core.state_root().unwrap(), root);
    assert_eq!(core.store.last_change_seq().unwrap(), seq);
    let check: String = core
        .store
        .conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    // Every version has its record and the records match the versions (recomputed).
    let orphans: i64 = core
        .store
        .conn
        .query_row(
            "SELECT count(*) FROM versions v WHERE NOT EXISTS
             (SELECT 1 FROM records r WHERE r.coll = v.coll AND r.key = v.key)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    // The replica goes on; its stored clock is the last committed one.
    assert_eq!(core.store.clock.last(), hlc);
    core.put("orders", "o0000", b"after").unwrap();
    assert_eq!(core.seal_outbox().unwrap(), 2);
}
