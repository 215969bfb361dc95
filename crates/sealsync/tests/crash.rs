//! Killed processes and data at rest: a `sealsync device sync` killed at arbitrary points
//! must lose nothing and duplicate nothing, and values never sit on the device in clear.

use std::process::{Command, Stdio};
use std::time::Duration;

use sealsync_client::{EnrollOptions, Replica};

use crate::kit::{TestServer, approved_pair, files_containing};

const BIN: &str = env!("CARGO_BIN_EXE_sealsync");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_syncs_lose_and_duplicate_nothing() {
    // CF-05, CF-11, NA-11: push interrupted at many points, then resumed.
    let server = TestServer::start().await;
    let (a, b, _) = approved_pair(&server, "acme").await;

    let records: Vec<(String, Vec<u8>)> = (0..6000)
        .map(|i| (format!("rec-{i:05}"), vec![(i % 251) as u8; 1024]))
        .collect();
    a.put_many("bulk", &records).expect("put_many");
    let expected_root = a.state_root().expect("root");
    drop(a);

    let home = server.home("first");
    let home = home.to_str().expect("path").to_string();
    for delay_ms in [5u64, 20, 40, 80, 120, 200, 300] {
        let mut child = Command::new(BIN)
            .args(["device", "--home", &home, "sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sync");
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = Command::new(BIN)
        .args(["device", "--home", &home, "sync"])
        .output()
        .expect("final sync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let a = Replica::open(std::path::Path::new(&home)).expect("reopen");
    assert_eq!(
        a.state_root().expect("root"),
        expected_root,
        "killed syncs changed the writer's state"
    );
    let status = a.status().expect("status");
    let bulk = status
        .collections
        .iter()
        .find(|c| c.name == "bulk")
        .expect("bulk");
    assert_eq!(bulk.pending_batches, 0, "outbox not drained");
    b.sync().await.expect("sync");
    assert_eq!(b.list("bulk").expect("list").len(), records.len());
    assert_eq!(b.state_root().expect("root"), expected_root);

    // Every (device, seq) is stored once, whatever the kills did.
    let db = rusqlite::Connection::open(server.data_dir().join("sealsync.db")).expect("db");
    let dupes: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM (SELECT device_id, cid, seq FROM batches GROUP BY device_id, cid, seq HAVING COUNT(*) > 1)",
            [],
            |r| r.get(0),
        )
        .expect("query");
    assert_eq!(dupes, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_encrypted_at_rest_on_the_device() {
    // CD-09: the local database and key store never hold a value or key material in clear.
    let server = TestServer::start().await;
    let a = Replica::enroll(
        &server.home("a"),
        &server.bundle("acme"),
        EnrollOptions::new("a").new_account(true),
    )
    .await
    .expect("a");
    let a = a.replica;
    a.put("notes", "k", b"at-rest-canary-value-31337")
        .expect("put");
    a.sync().await.expect("sync");
    drop(a);
    let hits = files_containing(&server.home("a"), b"at-rest-canary-value-31337");
    assert!(
        hits.is_empty(),
        "value stored in clear on the device: {hits:?}"
    );
    server.stop().await;
}
