//! Two handles on one home syncing at once: the second sync waits for the first, so their
//! seal, re-stamp, push and acknowledgement steps never interleave, and every edit made
//! through either handle reaches the server exactly once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sealsync_client::Replica;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::kit::{TestServer, first_opts, opts, pair};

/// A loopback TCP relay to the server that can hold the next connection before relaying
/// it (a device whose network stalls in the middle of a sync).
struct Gate {
    addr: SocketAddr,
    hold_next: Arc<AtomicBool>,
    held: Arc<Notify>,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hold_next = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (h, he, r) = (
            Arc::clone(&hold_next),
            Arc::clone(&held),
            Arc::clone(&release),
        );
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let hold = h.swap(false, Ordering::SeqCst);
                let (held, release) = (Arc::clone(&he), Arc::clone(&r));
                tokio::spawn(async move {
                    if hold {
                        held.notify_one();
                        release.notified().await;
                    }
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self {
            addr,
            hold_next,
            held,
            release,
            task,
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `(seq, count)` of every seq the server stores for `device`, in seq order.
fn stored_seqs(server: &TestServer, device: &Replica) -> Vec<(u64, u64)> {
    let db = rusqlite::Connection::open(server.data_dir().join("sealsync.db")).expect("db");
    let mut st = db
        .prepare("SELECT seq, count(*) FROM batches WHERE device_id = ?1 GROUP BY seq ORDER BY seq")
        .expect("prepare");
    st.query_map([device.device_id().0.to_vec()], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sync_on_one_home_waits_for_the_first() {
    // CF-12 (no acknowledged edit lost), CD-05, NA-11: the first handle's sync stalls on
    // the network after taking the home; the second handle's sync must not seal, re-stamp,
    // push or acknowledge in between (its acknowledgements could then mark batches the
    // other handle re-sealed): it waits, then runs. Local edits do not wait.
    let server = TestServer::start().await;
    let gate = Gate::start(server.addr).await;
    let bundle = sealsync_server::enroll_ticket(
        &server.data_dir(),
        "acme",
        Duration::from_secs(600),
        Some(&format!("https://{}", gate.addr)),
    )
    .expect("ticket");
    let mut one = Replica::enroll(&server.home("a"), &bundle, first_opts("a"))
        .await
        .expect("enroll")
        .replica;
    let mut b = Replica::enroll(&server.home("b"), &server.bundle("acme"), opts("b"))
        .await
        .expect("enroll b")
        .replica;
    let (approved, joined) = pair(&mut one, &mut b).await;
    approved.expect("approve");
    joined.expect("join");
    b.sync().await.expect("sync b");
    one.put("notes", "k1", b"through the first handle")
        .expect("put");
    let two = Replica::open(one.home()).expect("second handle");
    two.put("notes", "k2", b"through the second handle")
        .expect("put");

    gate.hold_next.store(true, Ordering::SeqCst);
    let first = tokio::spawn(async move {
        let report = one.sync().await;
        (one, report, Instant::now())
    });
    gate.held.notified().await;

    // The first sync holds the home and waits for the network: the second one waits too.
    let mut second = Box::pin(two.sync());
    tokio::select! {
        r = &mut second => panic!("the second sync ran beside the first: {r:?}"),
        () = tokio::time::sleep(Duration::from_millis(1500)) => {}
    }
    drop(second);
    // A local edit meanwhile does not wait for the sync.
    two.put("notes", "k3", b"while the first sync runs")
        .expect("put");
    let mut second = Box::pin(two.sync());
    tokio::select! {
        r = &mut second => panic!("the second sync ran beside the first: {r:?}"),
        () = tokio::time::sleep(Duration::from_millis(200)) => {}
    }
    gate.release.notify_one();
    let (one, first_report, first_done) = first.await.expect("first sync task");
    let second_report = second.await.expect("second sync");
    let second_done = Instant::now();
    let first_report = first_report.expect("first sync");
    assert!(first_done <= second_done);
    assert!(first_report.errors.is_empty(), "{first_report}");
    assert!(second_report.errors.is_empty(), "{second_report}");
    // Every edit reached the server, each seq once, nothing left pending.
    assert_eq!(
        first_report.pushed_batches + second_report.pushed_batches,
        stored_seqs(&server, &one).len() as u64
    );
    assert!(stored_seqs(&server, &one).iter().all(|&(_, n)| n == 1));
    let status = two.status().expect("status");
    assert_eq!(status.collections[0].pending_batches, 0, "{status:?}");
    let expected = vec![
        ("k1".to_string(), b"through the first handle".to_vec()),
        ("k2".to_string(), b"through the second handle".to_vec()),
        ("k3".to_string(), b"while the first sync runs".to_vec()),
    ];
    assert_eq!(one.list("notes").expect("list"), expected);
    let report = b.sync().await.expect("sync");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(b.list("notes").expect("list"), expected);
    assert_eq!(
        b.state_root().expect("root"),
        one.state_root().expect("root")
    );
    server.stop().await;
}

/// Runs the `sealsync` binary on `home` (another process on the same home).
fn cli(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::cli_kit::BIN)
        .arg("device")
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .expect("run sealsync")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_and_a_cli_process_on_one_home_lose_nothing_across_pending_to_trusted() {
    let server = TestServer::start().await;
    let mut a = Replica::enroll(&server.home("a"), &server.bundle("acme"), first_opts("a"))
        .await
        .expect("enroll a")
        .replica;
    let enrolled = Replica::enroll(&server.home("b"), &server.bundle("acme"), opts("b"))
        .await
        .expect("enroll b");
    let home = server.home("b");
    // Handle 1 (with a clone used from another thread) and handle 2, opened separately.
    let mut h1 = enrolled.replica;
    let h1_clone = h1.clone();
    let h2 = Replica::open(&home).expect("second handle");

    // While pending: every handle and the CLI write; syncs push nothing and lose nothing.
    h1.put("notes", "h1-pending", b"1").expect("put");
    std::thread::spawn(move || h1_clone.put("notes", "clone-pending", b"1").expect("put"))
        .join()
        .expect("thread");
    h2.put("notes", "h2-pending", b"1").expect("put");
    let out = cli(&home, &["put", "notes", "cli-pending", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(h2.sync().await.expect("pending sync").still_pending);
    let out = cli(&home, &["sync"]);
    assert!(
        !out.status.success(),
        "a pending device's CLI sync must say it is pending"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("pending"));

    // Pending → trusted, through handle 1, while handle 2 and the CLI keep writing.
    let (approved, joined) = pair(&mut a, &mut h1).await;
    approved.expect("approve");
    joined.expect("join");
    h2.put("notes", "h2-trusted", b"2")
        .expect("put after trust");
    let out = cli(&home, &["put", "notes", "cli-trusted", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Three syncs of one home at once: two handles and the CLI.
    let home_for_cli = home.clone();
    let cli_sync = tokio::task::spawn_blocking(move || cli(&home_for_cli, &["sync", "--quiet"]));
    let (r1, r2) = tokio::join!(h1.sync(), h2.sync());
    r1.expect("handle 1 sync");
    r2.expect("handle 2 sync");
    let out = cli_sync.await.expect("cli sync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h1.sync().await.expect("final sync");

    a.sync().await.expect("a sync");
    let keys: Vec<String> = a
        .list("notes")
        .expect("list")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        [
            "cli-pending",
            "cli-trusted",
            "clone-pending",
            "h1-pending",
            "h2-pending",
            "h2-trusted"
        ],
        "an edit made on b was lost"
    );
    // Every handle sees the same, trusted state, and nothing is left to push.
    assert_eq!(
        h1.list("notes").expect("list"),
        h2.list("notes").expect("list")
    );
    assert_eq!(
        h2.status().expect("status").state,
        sealsync_client::DeviceState::Trusted
    );
    let st = h2.status().expect("status");
    assert!(
        st.collections.iter().all(|c| c.pending_batches == 0),
        "{st:?}"
    );
    // Each edit reached the server exactly once.
    let seqs = stored_seqs(&server, &h1);
    assert!(!seqs.is_empty());
    assert!(
        seqs.iter().all(|(_, n)| *n == 1),
        "a batch was stored twice: {seqs:?}"
    );
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    let got: Vec<u64> = seqs.iter().map(|(s, _)| *s).collect();
    assert_eq!(got, expected, "a gap in b's chain on the server");
    server.stop().await;
}
