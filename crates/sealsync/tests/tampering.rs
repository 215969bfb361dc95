//! A malicious server: the test rewrites the server's own database (the attacker owns it),
//! for example to store a batch of an admitted-but-unapproved device that an honest server
//! refuses, and real devices must refuse what they pull, keep their local state exactly as
//! it was, and say which check failed.

use sealsync_client::Replica;
use sealsync_core::CollectionId;
use sealsync_proto::Message as _;

use crate::kit::{RawDevice, TestServer, approved_pair, assert_generic_error, opts};

async fn trusted_pair(server: &TestServer) -> (Replica, Replica) {
    let (a, b, _) = approved_pair(server, "acme").await;
    (a, b)
}

fn server_db(server: &TestServer) -> rusqlite::Connection {
    rusqlite::Connection::open(server.data_dir().join("sealsync.db")).expect("open server db")
}

/// `(log_index, device_id, bytes)` of every stored batch, in log order.
fn stored_batches(server: &TestServer) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    server_db(server)
        .prepare("SELECT log_index, device_id, bytes FROM batches ORDER BY account, cid, log_index")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Snapshot of what a device shows: its root and the records of `notes`.
fn snapshot(r: &Replica) -> ([u8; 32], Vec<(String, Vec<u8>)>) {
    (
        r.state_root().expect("root"),
        r.list("notes").expect("list"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_stored_batch_is_refused_and_state_kept() {
    // MS-16, MS-23: the server flips a byte of a stored ciphertext.
    let server = TestServer::start().await;
    let (a, b) = trusted_pair(&server).await;
    a.put("notes", "k", b"v1").expect("put");
    a.sync().await.expect("sync");
    b.sync().await.expect("sync");
    a.put("notes", "k", b"v2").expect("put");
    a.sync().await.expect("sync");

    let db = server_db(&server);
    let (id, bytes): (i64, Vec<u8>) = db
        .query_row(
            "SELECT id, bytes FROM batches ORDER BY log_index DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("latest batch");
    let mut sealed: sealsync_proto::Sealed = sealsync_proto::decode(&bytes).expect("stored Sealed");
    let last = sealed.ciphertext.len() - 1;
    sealed.ciphertext[last] ^= 0x80;
    db.execute(
        "UPDATE batches SET bytes = ?1 WHERE id = ?2",
        rusqlite::params![sealed.encode_to_vec(), id],
    )
    .expect("tamper");

    let before = snapshot(&b);
    let report = b.sync().await.expect("sync completes and reports");
    assert_eq!(
        report.errors.len(),
        1,
        "tampered batch not reported: {report}"
    );
    assert_eq!(report.errors[0].check, "signature");
    assert_eq!(report.errors[0].collection, "notes");
    assert_eq!(snapshot(&b), before, "a refused batch changed local state");
    assert_eq!(
        b.get("notes", "k").expect("get").as_deref(),
        Some(&b"v1"[..])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_from_a_device_outside_the_roster_is_refused() {
    // MS-11, MS-23, CD-12: the operator admitted a device the users never approved and it
    // writes into the account's collection. An honest server refuses the push (the device is
    // not in the roster); a malicious server stores the batch anyway, and every member must
    // refuse it on pull.
    let server = TestServer::start().await;
    let (mut a, mut b) = trusted_pair(&server).await;
    a.put("notes", "k", b"genuine").expect("put");
    a.sync().await.expect("sync");
    b.sync().await.expect("sync");
    let cid: Vec<u8> = server_db(&server)
        .query_row("SELECT cid FROM batches LIMIT 1", [], |r| r.get(0))
        .expect("cid");
    let cid = CollectionId(cid.try_into().expect("16 bytes"));

    let mut rogue = RawDevice::enroll_pending(&server, "acme").await;
    let forged = rogue.next_batch(cid, "k", b"forged by an unapproved device");
    let stored_before = stored_batches(&server);
    let (status, body) = rogue.push(&[&forged]).await;
    assert_eq!(
        status, 403,
        "the server accepted a push from outside the roster"
    );
    assert_eq!(assert_generic_error(&body).code, "forbidden");
    assert_eq!(
        stored_batches(&server),
        stored_before,
        "a refused push changed the stored log"
    );

    // The malicious server stores it anyway, as the next entry of the collection's log.
    {
        let db = server_db(&server);
        let next_index: i64 = db
            .query_row(
                "SELECT coalesce(max(log_index), 0) + 1 FROM batches WHERE account = ?1 AND cid = ?2",
                rusqlite::params!["acme", cid.0],
                |r| r.get(0),
            )
            .expect("next log index");
        let now_ms = i64::try_from(crate::kit::now_ms()).expect("millis fit in i64");
        db.execute(
            "INSERT INTO batches (account, cid, log_index, device_id, seq, hash, created_ms, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                "acme",
                cid.0,
                next_index,
                rogue.device_id.0,
                forged.header.seq as i64,
                forged.hash,
                now_ms,
                forged.sealed.encode_to_vec(),
            ],
        )
        .expect("inject");
    }

    for device in [&mut a, &mut b] {
        let before = snapshot(device);
        let report = device.sync().await.expect("sync completes and reports");
        assert_eq!(
            report.errors.len(),
            1,
            "injected batch not reported: {report}"
        );
        assert_eq!(report.errors[0].check, "author");
        assert_eq!(
            report.errors[0].author.as_deref(),
            Some(rogue.device_id.to_string().as_str())
        );
        assert_eq!(snapshot(device), before);
        assert_eq!(
            device.get("notes", "k").expect("get").as_deref(),
            Some(&b"genuine"[..])
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_log_is_refused() {
    // MS-26: the server serves a device's batches out of order.
    let server = TestServer::start().await;
    let (a, b) = trusted_pair(&server).await;
    a.put("notes", "one", b"1").expect("put");
    a.sync().await.expect("sync");
    a.put("notes", "two", b"2").expect("put");
    a.sync().await.expect("sync");
    {
        let db = server_db(&server);
        let mut rows: Vec<(i64, i64)> = db
            .prepare("SELECT id, log_index FROM batches ORDER BY log_index")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert!(rows.len() >= 2);
        let (x, y) = (rows.remove(0), rows.remove(0));
        db.execute("UPDATE batches SET log_index = -1 WHERE id = ?1", [x.0])
            .expect("swap");
        db.execute(
            "UPDATE batches SET log_index = ?1 WHERE id = ?2",
            [x.1, y.0],
        )
        .expect("swap");
        db.execute(
            "UPDATE batches SET log_index = ?1 WHERE id = ?2",
            [y.1, x.0],
        )
        .expect("swap");
    }
    let before = snapshot(&b);
    let report = b.sync().await.expect("sync completes and reports");
    assert_eq!(report.errors.len(), 1, "reordering not reported: {report}");
    assert_eq!(report.errors[0].check, "chain");
    assert_eq!(snapshot(&b), before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_entry_hidden_from_one_device_is_detected_by_its_batches() {
    // MS-12 (roster fork): A approves C (roster seq 3) and syncs it, then the malicious
    // server deletes that entry so that B never sees it. A's next batch carries the hash of
    // seq 2 as its roster head; B, whose roster fetch lacks that entry, refuses the batch
    // with check "roster", names A, and keeps its state. The limit: the fork shows only once
    // B pulls a batch written after the hidden entry.
    let server = TestServer::start().await;
    let (mut a, b) = trusted_pair(&server).await;
    a.put("notes", "k", b"before").expect("put");
    a.sync().await.expect("sync");
    b.sync().await.expect("sync");
    assert_eq!(
        b.get("notes", "k").expect("get").as_deref(),
        Some(&b"before"[..])
    );

    let third = Replica::enroll(&server.home("third"), &server.bundle("acme"), opts("third"))
        .await
        .expect("enroll third");
    let mut c = third.replica;
    let (approved, joined) = crate::kit::pair(&mut a, &mut c).await;
    approved.expect("approve");
    joined.expect("join");
    a.sync().await.expect("sync");

    // The server hides the newest roster entry (A's ADD of C; seq 3, after the pin of
    // "notes" at seq 2) from now on.
    let hidden: (i64, Vec<u8>, Vec<u8>, Vec<u8>) = {
        let db = server_db(&server);
        let row = db
            .query_row(
                "SELECT seq, subject, hash, entry FROM roster WHERE account = 'acme'
                 ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .expect("newest roster entry");
        assert_eq!(row.0, 3);
        db.execute(
            "DELETE FROM roster WHERE account = 'acme' AND seq = ?1",
            [row.0],
        )
        .expect("hide roster entry");
        row
    };

    // Nothing to detect yet: B pulls no batch written after the hidden entry.
    let report = b.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "{report}");

    a.put("notes", "k", b"after").expect("put");
    let report = a.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.pushed_batches, 1);

    let before = snapshot(&b);
    let report = b.sync().await.expect("sync completes and reports");
    assert_eq!(report.errors.len(), 1, "roster fork not reported: {report}");
    assert_eq!(report.errors[0].check, "roster");
    assert_eq!(report.errors[0].collection, "notes");
    assert_eq!(
        report.errors[0].author.as_deref(),
        Some(a.device_id().to_string().as_str())
    );
    assert_eq!(snapshot(&b), before, "a refused batch changed local state");
    assert_eq!(
        b.get("notes", "k").expect("get").as_deref(),
        Some(&b"before"[..])
    );

    // Once the server serves the entry again, B verifies it and accepts the batch.
    server_db(&server)
        .execute(
            "INSERT INTO roster (account, seq, subject, hash, entry) VALUES ('acme', ?1, ?2, ?3, ?4)",
            rusqlite::params![hidden.0, hidden.1, hidden.2, hidden.3],
        )
        .expect("restore roster entry");
    let report = b.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(
        b.get("notes", "k").expect("get").as_deref(),
        Some(&b"after"[..])
    );
    server.stop().await;
}
