//! Devices whose clocks are wrong: a sync learns the server's clock, and a fast device's
//! edits are stamped (or re-stamped before they are sealed) at most half the drift bound
//! ahead of the server, so the server takes them.

use crate::kit::{TestServer, approved_pair, now_ms as real_now_ms};

const HOUR: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_an_hour_fast_syncs_once_then_pushes() {
    // NA-10: sync works with the client clock an hour off; CD-08: the server's drift check
    // still refuses what was stamped an hour ahead.
    let server = TestServer::start().await;
    let (a, b, _) = approved_pair(&server, "acme").await;
    a.set_clock_skew_for_tests(HOUR);
    a.sync().await.expect("sync learning the server's clock");
    a.put("notes", "k", b"from the fast device").expect("put");
    let report = a.sync().await.expect("push from the fast device");
    assert_eq!(report.pushed_batches, 1);
    let stamped = a.history("notes", "k").expect("history")[0].hlc >> 16;
    let half = sealsync_core::MAX_DRIFT_MS / 2;
    assert!(
        stamped <= real_now_ms() + half,
        "stamped {} ms ahead",
        stamped.saturating_sub(real_now_ms())
    );

    let report = b.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(
        b.get("notes", "k").expect("get").as_deref(),
        Some(&b"from the fast device"[..])
    );
    assert_eq!(a.state_root().expect("root"), b.state_root().expect("root"));

    // B's clock jumps an hour ahead and B writes before any sync taught it the new offset.
    // That edit is stamped an hour ahead; the sync re-stamps it from trusted time before
    // sealing it (it never left the device), so the server takes it (CD-08 still holds: what
    // the server stores is within the drift bound).
    b.set_clock_skew_for_tests(HOUR);
    b.put("notes", "late", b"stamped an hour ahead")
        .expect("put");
    assert!(b.history("notes", "late").expect("history")[0].hlc >> 16 > real_now_ms() + half);
    let report = b.sync().await.expect("the future stamp wedged the device");
    assert_eq!(report.restamped_versions, 1, "{report}");
    assert_eq!(report.pushed_batches, 1, "{report}");
    assert!(b.history("notes", "late").expect("history")[0].hlc >> 16 <= real_now_ms() + half);
    server.stop().await;
}
