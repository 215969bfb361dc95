//! A device whose home directory is restored from an older backup: it has forgotten batches
//! it had pushed, and seals other batches at those seqs. Its next sync takes its own batches
//! back from the server (verified like pulled ones), seals its newer edits after them, and
//! every edit from before and after the restore reaches every device; server batches that
//! do not verify as the device's own chain stay a fork and change nothing.

use std::path::Path;

use sealsync_client::{Replica, SyncError};

use crate::kit::{TestServer, approved_pair};
use crate::rollback::{server_db, stored_batches};

fn set_batch_bytes(server: &TestServer, device: &Replica, seq: u64, bytes: &[u8]) {
    let n = server_db(server)
        .execute(
            "UPDATE batches SET bytes = ?1 WHERE device_id = ?2 AND seq = ?3",
            rusqlite::params![bytes, device.device_id().0.to_vec(), seq],
        )
        .expect("update batch");
    assert_eq!(n, 1);
}

/// Copies the directory tree `from` to `to` (which must not exist).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// Closes `replica`, replaces its home with `backup` and opens it again.
fn restore_home(replica: Replica, backup: &Path) -> Replica {
    let home = replica.home().to_path_buf();
    drop(replica);
    std::fs::remove_dir_all(&home).expect("remove home");
    copy_tree(backup, &home);
    Replica::open(&home).expect("open restored home")
}

/// A syncs edits (and, if `unsent`, makes one more that it has not sealed yet), its home is
/// backed up (closed), A syncs two more batches that B pulls, and A's home is restored from
/// the backup: returns A (restored), B and the backup.
async fn restored_after_two_lost_batches(
    server: &TestServer,
    unsent: bool,
) -> (Replica, Replica, tempfile::TempDir) {
    let (a, b, _) = approved_pair(server, "acme").await;
    a.put("notes", "k1", b"v1").expect("put");
    a.put("notes", "k2", b"v2").expect("put");
    a.sync().await.expect("sync");
    if unsent {
        // Not yet sealed when the backup is taken; sealed and pushed after it.
        a.put("notes", "unsent", b"put before the backup")
            .expect("put");
    }
    let backup = tempfile::tempdir().expect("tempdir");
    let home = a.home().to_path_buf();
    drop(a);
    copy_tree(&home, &backup.path().join("home"));
    let a = Replica::open(&home).expect("reopen");

    a.put("notes", "k1", b"v1 after the backup").expect("put");
    a.put("notes", "lost", b"written after the backup")
        .expect("put");
    assert_eq!(a.sync().await.expect("sync").pushed_batches, 1);
    a.delete("notes", "k2").expect("delete");
    assert_eq!(a.sync().await.expect("sync").pushed_batches, 1);
    let report = b.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(
        b.get("notes", "lost").expect("get").as_deref(),
        Some(&b"written after the backup"[..])
    );
    assert_eq!(stored_batches(server, &a).len(), 3);

    let a = restore_home(a, &backup.path().join("home"));
    // The restored home has forgotten seqs 2 and 3.
    assert_eq!(a.get("notes", "lost").expect("get"), None);
    assert_eq!(
        a.get("notes", "k2").expect("get").as_deref(),
        Some(&b"v2"[..])
    );
    (a, b, backup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_home_takes_back_its_own_batches_and_loses_no_edit() {
    // CF-12, CF-19: no edit lost and identical state roots after a device's home is
    // restored from an older backup; CD-05: the restored device never gets a second batch
    // at one of its seqs accepted (the server keeps one batch per seq).
    let server = TestServer::start().await;
    let (a, b, _backup) = restored_after_two_lost_batches(&server, true).await;
    let before = stored_batches(&server, &a);

    // Edits after the restore: sealed at seq 2, which the server holds with other content.
    a.put("notes", "k1", b"v1 after the restore").expect("put");
    a.put("notes", "new", b"written after the restore")
        .expect("put");
    let report = a.sync().await.expect("sync after the restore");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(
        (
            report.adopted_batches,
            report.resealed_versions,
            report.pushed_batches
        ),
        (2, 2, 1),
        "{report}"
    );
    assert!(report.to_string().contains("took back 2"), "{report}");
    assert_eq!(
        a.status().expect("status").collections[0].pending_batches,
        0
    );

    // The server kept its batches 1..=3 untouched and took the new one as seq 4.
    let after = stored_batches(&server, &a);
    assert_eq!(after.iter().map(|b| b.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(after[..3], before[..]);

    let report = b.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "B saw a fork: {report}");
    let report = a.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "{report}");

    let expected: Vec<(String, Vec<u8>)> = vec![
        ("k1".into(), b"v1 after the restore".to_vec()),
        ("lost".into(), b"written after the backup".to_vec()),
        ("new".into(), b"written after the restore".to_vec()),
        ("unsent".into(), b"put before the backup".to_vec()),
    ];
    for r in [&a, &b] {
        assert_eq!(r.list("notes").expect("list"), expected, "{r:?}");
        assert_eq!(r.get("notes", "k2").expect("get"), None, "{r:?}");
        // Every version from before and after the restore is there.
        let history = r.history("notes", "k1").expect("history");
        assert_eq!(history.len(), 3, "{r:?}: {history:?}");
        // The edit the backup held unsent and the lost batch 2 carried is one version.
        assert_eq!(r.history("notes", "unsent").expect("history").len(), 1);
    }
    assert_eq!(a.state_root().expect("root"), b.state_root().expect("root"));

    let report = a.sync().await.expect("sync");
    assert_eq!((report.pushed_batches, report.adopted_batches), (0, 0));

    // CF-10: A kept the exact bytes of the batch it took back, so a server restored to
    // before it gets them again, byte for byte.
    let kept = stored_batches(&server, &a);
    let (_, hash2, bytes2) = kept[1].clone();
    let sealed: sealsync_proto::Sealed = sealsync_proto::decode(&bytes2).expect("Sealed");
    let header: sealsync_proto::BatchHeader =
        sealsync_proto::decode(&sealed.header).expect("BatchHeader");
    let db = server_db(&server);
    let id = a.device_id().0.to_vec();
    db.execute(
        "DELETE FROM batches WHERE device_id = ?1 AND seq > 2",
        rusqlite::params![id],
    )
    .expect("delete");
    db.execute(
        "UPDATE chains SET last_seq = 2, last_hash = ?1, last_hlc = ?2 WHERE device_id = ?3",
        rusqlite::params![hash2, header.hlc_max, id],
    )
    .expect("chain row");
    a.put("notes", "after server restore", b"x").expect("put");
    let report = a.sync().await.expect("sync");
    assert_eq!(
        (report.resent_batches, report.pushed_batches),
        (2, 3),
        "{report}"
    );
    assert_eq!(stored_batches(&server, &a)[..4], kept[..]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_batches_that_do_not_verify_are_a_fork_and_change_nothing() {
    // MS-23, MS-26, MS-30, CD-07: a forged signature, a missing batch in the chain, or
    // another device's batch in its place is not this device's chain: refused, nothing
    // changes, and the genuine chain is taken back once the server serves it again.
    let server = TestServer::start().await;
    let (a, b, _backup) = restored_after_two_lost_batches(&server, true).await;
    a.put("notes", "new", b"written after the restore")
        .expect("put");
    let genuine = stored_batches(&server, &a);
    b.put("notes", "from-b", b"b").expect("put");
    b.sync().await.expect("sync");
    let b_batch = stored_batches(&server, &b).pop().expect("a batch of B").2;

    let mut bad_signature: sealsync_proto::Sealed =
        sealsync_proto::decode(&genuine[2].2).expect("Sealed");
    bad_signature.signature[5] ^= 1;
    let forgeries: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "signature",
            sealsync_proto::encode(&bad_signature),
            "fail the signature check",
        ),
        ("another device's batch", b_batch, "are incomplete"),
    ];
    let status = a.status().expect("status");
    let root = a.state_root().expect("root");
    let check_refused = |a: &Replica, err: SyncError, what: &str, why: &str, seqs: &[u64]| {
        assert!(
            matches!(&err, SyncError::ServerFork { collection, .. } if collection == "notes"),
            "{what}: {err}"
        );
        assert!(err.to_string().contains(why), "{what}: {err}");
        let mut now = a.status().expect("status");
        assert!(now.last_error.take().is_some(), "{what}");
        assert_eq!(now, status, "{what}: local state changed");
        assert_eq!(a.state_root().expect("root"), root, "{what}");
        assert_eq!(a.get("notes", "lost").expect("get"), None, "{what}");
        assert_eq!(
            stored_batches(&server, a)
                .iter()
                .map(|b| b.0)
                .collect::<Vec<_>>(),
            seqs,
            "{what}: something was pushed"
        );
    };
    for (what, bytes, why) in forgeries {
        set_batch_bytes(&server, &a, 3, &bytes);
        let err = a.sync().await.expect_err(what);
        check_refused(&a, err, what, why, &[1, 2, 3]);
        set_batch_bytes(&server, &a, 3, &genuine[2].2);
    }

    // A gap: the server's head is seq 3 but it no longer serves seq 2.
    let db = server_db(&server);
    let (index, hash, created): (i64, Vec<u8>, i64) = db
        .query_row(
            "SELECT log_index, hash, created_ms FROM batches WHERE device_id = ?1 AND seq = 2",
            [a.device_id().0.to_vec()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("seq 2");
    let (account, cid): (String, Vec<u8>) = db
        .query_row(
            "SELECT account, cid FROM batches WHERE device_id = ?1 AND seq = 2",
            [a.device_id().0.to_vec()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("seq 2");
    db.execute(
        "DELETE FROM batches WHERE device_id = ?1 AND seq = 2",
        [a.device_id().0.to_vec()],
    )
    .expect("delete");
    let err = a.sync().await.expect_err("gap");
    check_refused(&a, err, "gap", "fail the chain check", &[1, 3]);
    db.execute(
        "INSERT INTO batches (account, cid, log_index, device_id, seq, hash, created_ms, bytes)
         VALUES (?1, ?2, ?3, ?4, 2, ?5, ?6, ?7)",
        rusqlite::params![
            account,
            cid,
            index,
            a.device_id().0.to_vec(),
            hash,
            created,
            genuine[1].2
        ],
    )
    .expect("put seq 2 back");

    // The genuine chain is taken back: nothing was left half-done.
    let report = a.sync().await.expect("sync");
    assert_eq!((report.adopted_batches, report.pushed_batches), (2, 1));
    assert_eq!(
        a.get("notes", "lost").expect("get").as_deref(),
        Some(&b"written after the backup"[..])
    );
    b.sync().await.expect("sync");
    assert_eq!(a.state_root().expect("root"), b.state_root().expect("root"));
    server.stop().await;
}

/// The header of `bytes` (an encoded `Sealed` batch).
fn header_of(bytes: &[u8]) -> sealsync_proto::BatchHeader {
    let sealed: sealsync_proto::Sealed = sealsync_proto::decode(bytes).expect("Sealed");
    sealsync_proto::decode(&sealed.header).expect("BatchHeader")
}

/// `(bytes, acked)` of A's outbox row at `seq`, read from its database.
fn outbox_row(a: &Replica, seq: u64) -> (Vec<u8>, bool) {
    let db = rusqlite::Connection::open(a.home().join("replica.db")).expect("open replica db");
    db.query_row(
        "SELECT bytes, acked FROM outbox WHERE seq = ?1",
        [seq],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("outbox row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resealed_batch_at_a_used_seq_has_a_fresh_salt_and_key() {
    // CD-05, BI-08: the restored home seals another batch at seq 2, which the server holds
    // from before the restore. Same identity (account, collection, device, seq, epoch),
    // but a fresh salt, so another batch key (another key commitment): no key and nonce
    // pair repeats. The server refuses it, and it is dropped once the device takes its own
    // seq 2 back.
    let server = TestServer::start().await;
    let (a, _b, _backup) = restored_after_two_lost_batches(&server, true).await;
    a.put("notes", "new", b"written after the restore")
        .expect("put");
    // Keep the re-sealed batch in A's outbox: refuse the adoption once (a bad signature on
    // the server's seq 3), so the sync stops after sealing.
    let genuine = stored_batches(&server, &a);
    let mut forged: sealsync_proto::Sealed = sealsync_proto::decode(&genuine[2].2).expect("Sealed");
    forged.signature[0] ^= 1;
    set_batch_bytes(&server, &a, 3, &sealsync_proto::encode(&forged));
    let err = a.sync().await.expect_err("forged seq 3 was taken back");
    assert!(matches!(err, SyncError::ServerFork { .. }), "{err}");

    let (resealed, acked) = outbox_row(&a, 2);
    assert!(!acked, "the server never took the re-sealed batch");
    let original = header_of(&genuine[1].2);
    let again = header_of(&resealed);
    assert_ne!(resealed, genuine[1].2);
    assert_eq!(
        (
            &again.account,
            &again.collection_id,
            &again.device_id,
            again.seq,
            again.key_epoch,
            &again.prev_batch_hash
        ),
        (
            &original.account,
            &original.collection_id,
            &original.device_id,
            original.seq,
            original.key_epoch,
            &original.prev_batch_hash
        ),
        "not the same batch identity"
    );
    assert_eq!(again.salt.len(), 32);
    assert_ne!(again.salt, original.salt, "salt reused");
    assert_ne!(
        again.key_commitment, original.key_commitment,
        "same batch key"
    );

    // With the genuine seq 3 back, A takes back 2 and 3, and its outbox seq 2 is the
    // server's batch again, byte for byte.
    set_batch_bytes(&server, &a, 3, &genuine[2].2);
    let report = a.sync().await.expect("sync");
    assert_eq!((report.adopted_batches, report.pushed_batches), (2, 1));
    assert_eq!(outbox_row(&a, 2), (genuine[1].2.clone(), true));
    assert_eq!(outbox_row(&a, 3), (genuine[2].2.clone(), true));
    let new = header_of(&outbox_row(&a, 4).0);
    assert_eq!(
        new.prev_batch_hash, genuine[2].1,
        "not sealed after the server's head"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_home_without_new_edits_pulls_its_batches_and_keeps_their_bytes() {
    // CF-12, CF-10: a restored home that sealed nothing new pulls the batches it forgot as
    // the next ones of its own chain, and keeps their exact bytes to re-send them to a
    // server restored from before them.
    let server = TestServer::start().await;
    let (a, _b, _backup) = restored_after_two_lost_batches(&server, false).await;
    let genuine = stored_batches(&server, &a);
    let report = a.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(
        (report.pulled_batches, report.pushed_batches),
        (2, 0),
        "{report}"
    );
    assert_eq!(
        a.get("notes", "lost").expect("get").as_deref(),
        Some(&b"written after the backup"[..])
    );
    assert_eq!(outbox_row(&a, 2), (genuine[1].2.clone(), true));
    assert_eq!(outbox_row(&a, 3), (genuine[2].2.clone(), true));
    assert_eq!(
        a.status().expect("status").collections[0].pending_batches,
        0
    );
    server.stop().await;
}
