//! Found by using Sealsync as a new user would (issue 5, defect 7), against a real server:
//! a fast clock must not wedge a device, a refused push must stop neither pulls nor other
//! collections (and shows in `status`), and a second handle on one home must not lose data.

use sealsync_client::{DeviceState, Replica};

use crate::kit::{TestServer, approved_pair, first_opts, now_ms as real_now_ms, opts, pair};

const HOUR: i64 = 3_600_000;

/// Physical ms of the HLC of the newest version of `key`.
fn stamped(r: &Replica, coll: &str, key: &str) -> u64 {
    r.history(coll, key)
        .expect("history")
        .iter()
        .map(|h| h.hlc >> 16)
        .max()
        .expect("a version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_clock_does_not_wedge_the_device() {
    // NA-10, CD-08: `faketime -f '+1h' sealsync device ... put`, then sync with the clock
    // right again: the edits are re-stamped from trusted time and pushed, pulls go on, new
    // edits do not inherit the future stamp. The device clock really moves (injected skew).
    let server = TestServer::start().await;
    let (a, b, _) = approved_pair(&server, "acme").await;
    a.put("notes", "k", b"before").expect("put");
    a.sync().await.expect("sync with a right clock");
    b.put("inbox", "from-b", b"hello").expect("put");
    b.sync().await.expect("sync");

    a.set_clock_skew_for_tests(HOUR);
    a.put("notes", "k", b"written an hour fast").expect("put");
    a.put("other", "k", b"another collection").expect("put");
    let half = sealsync_core::MAX_DRIFT_MS / 2;
    assert!(
        stamped(&a, "notes", "k") > real_now_ms() + half,
        "the clock did not move"
    );

    a.set_clock_skew_for_tests(0);
    let report = a.sync().await.expect("sync after the clock was fast");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.restamped_versions, 2, "{report}");
    assert_eq!(report.pushed_batches, 2, "{report}");
    assert_eq!(
        a.get("inbox", "from-b").expect("get").as_deref(),
        Some(&b"hello"[..]),
        "the pull ran"
    );
    for (c, k) in [("notes", "k"), ("other", "k")] {
        assert!(
            stamped(&a, c, k) <= real_now_ms() + half,
            "{c}/{k} still in the future"
        );
    }
    a.put("notes", "after", b"new edit").expect("put");
    assert!(
        stamped(&a, "notes", "after") <= real_now_ms() + half,
        "a new edit inherited the future stamp"
    );
    assert!(a.status().expect("status").last_error.is_none());
    a.sync().await.expect("sync");

    b.sync().await.expect("sync");
    // Nothing lost: the edit made under the fast clock still beats the earlier one.
    assert_eq!(
        b.get("notes", "k").expect("get").as_deref(),
        Some(&b"written an hour fast"[..])
    );
    assert_eq!(
        b.get("other", "k").expect("get").as_deref(),
        Some(&b"another collection"[..])
    );
    assert_eq!(
        b.get("notes", "after").expect("get").as_deref(),
        Some(&b"new edit"[..])
    );
    assert_eq!(a.state_root().expect("root"), b.state_root().expect("root"));

    // Still fast at sync time: the sync learns the offset first and stamps within the bound.
    b.set_clock_skew_for_tests(HOUR);
    b.put("notes", "late", b"stamped an hour ahead")
        .expect("put");
    let report = b.sync().await.expect("sync with the clock still fast");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.restamped_versions, 1);
    a.sync().await.expect("sync");
    assert_eq!(
        a.get("notes", "late").expect("get").as_deref(),
        Some(&b"stamped an hour ahead"[..])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_push_stops_neither_pulls_nor_other_collections() {
    // MS-16 (a batch the server refuses), NA-11: the refusal is reported for its collection
    // only; the other collections push, the pulls run, and `status` shows the error.
    let server = TestServer::start().await;
    let (a, b, _) = approved_pair(&server, "acme").await;
    a.put("bad", "k", b"v").expect("put");
    a.sync().await.expect("sync");
    assert!(a.status().expect("status").last_sync.is_some());
    // Damage the signature of a's sent batch and make it unsent again: the server refuses
    // it (400) at the next push.
    {
        let db = rusqlite::Connection::open(server.home("first").join("replica.db")).expect("db");
        let coll = "(SELECT id FROM collections WHERE name = 'bad')";
        let mut bytes: Vec<u8> = db
            .query_row(
                &format!("SELECT bytes FROM outbox WHERE coll = {coll}"),
                [],
                |r| r.get(0),
            )
            .expect("the sent batch");
        *bytes.last_mut().expect("bytes") ^= 0x01;
        let n = db
            .execute(
                &format!("UPDATE outbox SET acked = 0, bytes = ?1 WHERE coll = {coll}"),
                [bytes],
            )
            .expect("tamper");
        assert_eq!(n, 1);
    }
    a.put("good", "k", b"pushed anyway").expect("put");
    b.put("notes", "k", b"pulled anyway").expect("put");
    b.sync().await.expect("sync");

    let report = a.sync().await.expect("a refused push is not a failed sync");
    assert_eq!(report.errors.len(), 1, "{report}");
    assert_eq!(report.errors[0].collection, "bad");
    assert_eq!(report.errors[0].check, "push");
    assert_eq!(report.pushed_batches, 1, "{report}");
    assert_eq!(
        a.get("notes", "k").expect("get").as_deref(),
        Some(&b"pulled anyway"[..])
    );
    let status = a.status().expect("status");
    let err = status.last_error.expect("the refusal shows in status");
    assert!(err.message.contains("bad"), "{}", err.message);
    assert!(
        status
            .collections
            .iter()
            .any(|c| c.name == "bad" && c.pending_batches == 1)
    );
    b.sync().await.expect("sync");
    assert_eq!(
        b.get("good", "k").expect("get").as_deref(),
        Some(&b"pushed anyway"[..])
    );
    server.stop().await;
}

/// The first device of account "acme" (trusted) and a second one, still pending.
async fn trusted_and_pending(server: &TestServer) -> (Replica, sealsync_client::Enrolled) {
    let first = Replica::enroll(
        &server.home("first"),
        &server.bundle("acme"),
        first_opts("first"),
    )
    .await
    .expect("enroll first");
    let second = Replica::enroll(
        &server.home("second"),
        &server.bundle("acme"),
        opts("second"),
    )
    .await
    .expect("enroll second");
    (first.replica, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_handle_opened_while_pending_loses_nothing() {
    // Two handles on one home (a UI beside a sync task), both opened while the device is
    // pending. It becomes trusted through one; the other creates a collection and writes.
    // The data must reach the account's other device, through either handle's sync.
    let server = TestServer::start().await;
    let (mut a, second) = trusted_and_pending(&server).await;
    assert_eq!(second.state, DeviceState::Pending);
    let mut sync_task = second.replica;
    let ui = Replica::open(&server.home("second")).expect("second handle");

    let (approved, joined) = pair(&mut a, &mut sync_task).await;
    approved.expect("approve");
    joined.expect("join");
    assert_eq!(
        sync_task.status().expect("status").state,
        DeviceState::Trusted
    );
    assert_eq!(ui.status().expect("status").state, DeviceState::Trusted);

    ui.create_collection("shared", sealsync_client::Policy::Lww)
        .expect("create");
    ui.put("shared", "k", b"from the ui handle").expect("put");
    ui.put("more", "k", b"another one").expect("put");
    // The sync task pushes what the UI handle wrote.
    let report = sync_task.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.pushed_batches, 2, "{report}");
    // And the UI handle itself can sync (it knows it is trusted now).
    ui.put("shared", "k2", b"second write").expect("put");
    let report = ui.sync().await.expect("sync");
    assert!(!report.became_trusted && !report.still_pending, "{report}");
    assert_eq!(report.pushed_batches, 1, "{report}");

    a.sync().await.expect("sync");
    assert_eq!(
        a.get("shared", "k").expect("get").as_deref(),
        Some(&b"from the ui handle"[..])
    );
    assert_eq!(
        a.get("shared", "k2").expect("get").as_deref(),
        Some(&b"second write"[..])
    );
    assert_eq!(
        a.get("more", "k").expect("get").as_deref(),
        Some(&b"another one"[..])
    );
    // A writer on the first handle after the other handle synced: no HLC reuse, no loss.
    sync_task.put("shared", "k", b"newest").expect("put");
    ui.sync().await.expect("sync");
    a.sync().await.expect("sync");
    assert_eq!(
        a.get("shared", "k").expect("get").as_deref(),
        Some(&b"newest"[..])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_beside_the_cli_in_another_process_loses_nothing() {
    // The CLI (another process) makes the pending device trusted while an app holds a handle
    // opened while pending; the app's writes reach the account's other device through the
    // CLI's next sync.
    let server = TestServer::start().await;
    let (a, second) = trusted_and_pending(&server).await;
    let app = second.replica;
    let approval = a
        .begin_approval(second.device_id, std::time::Duration::from_secs(30))
        .await
        .expect("begin approval");
    let code = approval.code().to_string();
    let home = server.home("second");
    let home = home.to_str().expect("path").to_string();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealsync"))
            .args(["device", "--home", &home])
            .args(args)
            .output()
            .expect("run sealsync");
        assert!(
            out.status.success(),
            "sealsync {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The CLI's join (another process) pairs, opens the key envelope and stores the keys:
    // trusted.
    let joined = tokio::task::spawn_blocking({
        let home = home.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_sealsync"))
                .args(["device", "--home", &home, "join", &code])
                .output()
                .expect("run sealsync join")
        }
    });
    a.finish_approval(approval).await.expect("approve");
    let out = joined.await.expect("join task");
    assert!(
        out.status.success(),
        "sealsync join: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.status().expect("status").state, DeviceState::Trusted);
    app.put("from-app", "k", b"written by the app")
        .expect("put");
    tokio::task::block_in_place(|| cli(&["sync"]));
    a.sync().await.expect("sync");
    assert_eq!(
        a.get("from-app", "k").expect("get").as_deref(),
        Some(&b"written by the app"[..])
    );
    // And the app's own handle syncs as a trusted device.
    app.put("from-app", "k2", b"again").expect("put");
    let report = app.sync().await.expect("sync");
    assert_eq!(report.pushed_batches, 1, "{report}");
    server.stop().await;
}
