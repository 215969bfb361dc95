//! A server restored from an older backup: it lost a device's latest acknowledged batches.
//! The device re-sends the exact bytes it kept, in the same sync, and every device ends with
//! all edits; a restored head that is not a point of the device's own chain is refused as a
//! fork and changes nothing.

use sealsync_client::{EnrollOptions, Replica, SyncError};

use crate::kit::{TestServer, approved_pair};

pub(crate) fn server_db(server: &TestServer) -> rusqlite::Connection {
    rusqlite::Connection::open(server.data_dir().join("sealsync.db")).expect("open server db")
}

/// `(seq, hash, bytes)` of every batch `device` has on the server, in seq order.
pub(crate) fn stored_batches(
    server: &TestServer,
    device: &Replica,
) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    let db = server_db(server);
    let mut st = db
        .prepare("SELECT seq, hash, bytes FROM batches WHERE device_id = ?1 ORDER BY seq")
        .expect("prepare");
    st.query_map([device.device_id().0.to_vec()], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// The server's chain row of `device`: `(last_seq, last_hash, last_hlc)`.
fn chain_row(server: &TestServer, device: &Replica) -> (u64, Vec<u8>, u64) {
    server_db(server)
        .query_row(
            "SELECT last_seq, last_hash, last_hlc FROM chains WHERE device_id = ?1",
            [device.device_id().0.to_vec()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("chain row")
}

fn set_chain_row(server: &TestServer, device: &Replica, row: &(u64, Vec<u8>, u64)) {
    server_db(server)
        .execute(
            "UPDATE chains SET last_seq = ?1, last_hash = ?2, last_hlc = ?3 WHERE device_id = ?4",
            rusqlite::params![row.0, row.1, row.2, device.device_id().0.to_vec()],
        )
        .expect("update chain row");
}

/// What a restore of a backup taken when `device` had pushed up to `keep` leaves: its later
/// batches are gone and its chain row points at batch `keep` again.
fn restore_backup(server: &TestServer, device: &Replica, keep: u64) {
    let (_, hash, bytes) = stored_batches(server, device)
        .into_iter()
        .find(|b| b.0 == keep)
        .expect("kept batch");
    let sealed: sealsync_proto::Sealed = sealsync_proto::decode(&bytes).expect("Sealed");
    let header: sealsync_proto::BatchHeader =
        sealsync_proto::decode(&sealed.header).expect("BatchHeader");
    let db = server_db(server);
    let id = device.device_id().0.to_vec();
    let lost = db
        .execute(
            "DELETE FROM batches WHERE device_id = ?1 AND seq > ?2",
            rusqlite::params![id, keep],
        )
        .expect("delete batches");
    assert!(lost > 0, "nothing to lose");
    set_chain_row(server, device, &(keep, hash, header.hlc_max));
}

/// Seqs stored more than once for one (device, collection).
fn duplicate_seqs(server: &TestServer) -> i64 {
    server_db(server)
        .query_row(
            "SELECT count(*) FROM (SELECT device_id, cid, seq FROM batches
             GROUP BY device_id, cid, seq HAVING count(*) > 1)",
            [],
            |r| r.get(0),
        )
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_lost_by_a_restored_server_are_resent_and_reach_every_device() {
    // CF-10, CF-12: every acknowledged edit survives a restore from an older backup;
    // NA-08, MS-25: devices that already had the re-sent batches skip them as duplicates.
    let server = TestServer::start().await;
    let (a, b, secret) = approved_pair(&server, "acme").await;
    for i in 1..=4 {
        a.put("notes", &format!("k{i}"), format!("v{i}").as_bytes())
            .expect("put");
        let report = a.sync().await.expect("sync");
        assert_eq!(report.pushed_batches, 1);
    }
    let report = b.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(b.list("notes").expect("list").len(), 4);
    let before = stored_batches(&server, &a);

    restore_backup(&server, &a, 2);
    assert_eq!(stored_batches(&server, &a).len(), 2);

    // B writes after the restore: its batch takes a log index that A had seen before.
    b.put("notes", "from-b", b"after the restore").expect("put");
    let report = b.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "{report}");

    // A's next batch (seq 5) is a gap for the restored server; the same sync re-sends 3, 4.
    a.put("notes", "k5", b"v5").expect("put");
    let report = a.sync().await.expect("sync after the restore");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!((report.pushed_batches, report.resent_batches), (3, 2));
    assert!(report.to_string().contains("re-sent 2 batches"), "{report}");
    assert_eq!(
        a.status().expect("status").collections[0].pending_batches,
        0
    );

    // The server holds A's batches 1..=5 once each, 3 and 4 with the very bytes sent first.
    let after = stored_batches(&server, &a);
    assert_eq!(
        after.iter().map(|b| b.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(after[..4], before[..]);
    assert_eq!(duplicate_seqs(&server), 0);

    let report = b.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "B saw a fork: {report}");
    let c = Replica::enroll(
        &server.home("third"),
        &server.bundle("acme"),
        EnrollOptions::new("third").recovery(secret),
    )
    .await
    .expect("enroll third");
    let c = c.replica;
    let report = c.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "{report}");

    let mut expected: Vec<(String, Vec<u8>)> = (1..=5)
        .map(|i| (format!("k{i}"), format!("v{i}").into_bytes()))
        .collect();
    expected.insert(0, ("from-b".into(), b"after the restore".to_vec()));
    for r in [&a, &b, &c] {
        assert_eq!(r.list("notes").expect("list"), expected, "{r:?}");
    }
    let root = a.state_root().expect("root");
    assert_eq!(b.state_root().expect("root"), root);
    assert_eq!(c.state_root().expect("root"), root);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_head_off_the_devices_chain_is_a_fork_and_changes_nothing() {
    // MS-30, BI-08: the server's head for A is not a point of A's own chain.
    let server = TestServer::start().await;
    let (a, b, _) = approved_pair(&server, "acme").await;
    for i in 1..=3 {
        a.put("notes", &format!("k{i}"), b"v").expect("put");
        a.sync().await.expect("sync");
    }
    let genuine = chain_row(&server, &a);
    let stored = stored_batches(&server, &a);
    a.put("notes", "k4", b"v").expect("put");
    let status = a.status().expect("status");
    let root = a.state_root().expect("root");

    let forged = [
        // Another hash at a seq A sealed.
        (genuine.0, vec![0xAB; 32], genuine.2),
        // A seq A never sealed.
        (9, genuine.1.clone(), genuine.2),
    ];
    for row in forged {
        set_chain_row(&server, &a, &row);
        let err = a.sync().await.expect_err("a forked head was accepted");
        assert!(
            matches!(&err, SyncError::ServerFork { collection, .. } if collection == "notes"),
            "{err}"
        );
        assert!(err.to_string().contains("forked"), "{err}");
        let mut now = a.status().expect("status");
        // The only change: the failure is kept for `status`.
        let kept = now.last_error.take().expect("last_error");
        assert!(kept.message.contains("forked"), "{}", kept.message);
        assert_eq!(now, status, "local state changed");
        assert_eq!(a.state_root().expect("root"), root);
        assert_eq!(stored_batches(&server, &a), stored, "something was re-sent");
        assert_eq!(chain_row(&server, &a), row);
    }

    // Nothing was left half-done: with the genuine head back, the edit goes through.
    set_chain_row(&server, &a, &genuine);
    let report = a.sync().await.expect("sync");
    assert_eq!((report.pushed_batches, report.resent_batches), (1, 0));
    b.sync().await.expect("sync");
    assert_eq!(
        b.get("notes", "k4").expect("get").as_deref(),
        Some(&b"v"[..])
    );
    server.stop().await;
}
