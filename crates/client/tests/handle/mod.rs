//! The shared handle: writes never wait for a sync's network I/O, and the change feed sees
//! each local and remote change exactly once, in commit order.

use std::time::Duration;

use sealsync_client::{
    ChangeFilter, NetError, OpenOptions, Origin, Replica, SyncError, Timeouts, feed::BUFFER,
};

use super::{TestServer, pair};

/// Reads `n` changes (failing on a lag notice or a stall).
async fn take(sub: &mut sealsync_client::Changes, n: usize) -> Vec<sealsync_client::Change> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("the change feed stalled")
            .expect("the change feed ended");
        out.push(next.expect("the subscriber lagged"));
    }
    out
}

/// Nothing more arrives within a short while.
async fn quiet(sub: &mut sealsync_client::Changes) {
    let more = tokio::time::timeout(Duration::from_millis(700), sub.next()).await;
    assert!(more.is_err(), "an unexpected change: {more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_sees_every_local_and_remote_change_once_in_commit_order() {
    let server = TestServer::start().await;
    let (a, b) = pair(&server).await;
    let mut on_a = a.subscribe(ChangeFilter::all()).unwrap();
    let mut on_b = b.subscribe(ChangeFilter::all()).unwrap();
    let mut only_notes = b
        .subscribe(ChangeFilter::all().collection("notes"))
        .unwrap();

    // Writes through two clones (one on another thread), and through a second replica
    // opened separately on the same home (as another process would): the feed sees those
    // by polling the database.
    a.put("notes", "k1", b"one").unwrap();
    let clone = a.clone();
    std::thread::spawn(move || clone.put("tasks", "t1", b"task").unwrap())
        .join()
        .unwrap();
    let other = Replica::open(a.home()).unwrap();
    other.put("notes", "k2", b"two").unwrap();
    assert!(a.delete("notes", "k1").unwrap().is_some());
    // An idempotent delete of an absent record is no change.
    assert_eq!(a.delete("notes", "absent").unwrap(), None);

    let local = take(&mut on_a, 4).await;
    let seen: Vec<_> = local
        .iter()
        .map(|c| (c.collection.as_str(), c.key.as_str(), c.deleted, c.origin))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("notes", "k1", false, Origin::Local),
            ("tasks", "t1", false, Origin::Local),
            ("notes", "k2", false, Origin::Local),
            ("notes", "k1", true, Origin::Local),
        ]
    );
    assert!(local.windows(2).all(|w| w[0].seq < w[1].seq));
    quiet(&mut on_a).await;

    a.sync().await.unwrap();
    let report = b.sync().await.unwrap();
    let changed: Vec<_> = report
        .changed
        .iter()
        .map(|c| (c.collection.as_str(), c.key.as_str()))
        .collect();
    assert_eq!(
        changed,
        vec![("notes", "k1"), ("notes", "k2"), ("tasks", "t1")]
    );

    let remote = take(&mut on_b, 4).await;
    assert!(
        remote
            .iter()
            .all(|c| c.origin == Origin::Remote(a.device_id()))
    );
    assert!(remote.windows(2).all(|w| w[0].seq < w[1].seq));
    let mut got: Vec<_> = remote
        .iter()
        .map(|c| (c.collection.clone(), c.key.clone(), c.version))
        .collect();
    let mut want: Vec<_> = local
        .iter()
        .map(|c| (c.collection.clone(), c.key.clone(), c.version))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "b saw other versions than a wrote");
    quiet(&mut on_b).await;
    let notes = take(&mut only_notes, 3).await;
    assert!(notes.iter().all(|c| c.collection == "notes"));
    quiet(&mut only_notes).await;

    // A sync that brings nothing new reports and feeds nothing.
    assert!(b.sync().await.unwrap().changed.is_empty());
    quiet(&mut on_b).await;
    drop((a, b, other));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_told_it_lagged_and_never_blocks_a_write() {
    let server = TestServer::start().await;
    let first = server.enroll("first").await;
    let a = first.replica;
    let mut slow = a.subscribe(ChangeFilter::all()).unwrap();
    let mut fast = a.subscribe(ChangeFilter::all()).unwrap();
    let records: Vec<(String, Vec<u8>)> = (0..BUFFER + 200)
        .map(|i| (format!("k{i:05}"), b"v".to_vec()))
        .collect();
    // One transaction far larger than the subscriber's buffer commits without waiting.
    a.put_many("bulk", &records).unwrap();
    a.put("bulk", "last", b"v").unwrap();
    // Once another subscriber has seen the last write, the feed has sent everything (that
    // one may lag too on a busy machine: it only waits for the end).
    loop {
        let item = tokio::time::timeout(Duration::from_secs(20), fast.next())
            .await
            .expect("the change feed stalled")
            .expect("the change feed ended");
        if matches!(&item, Ok(c) if c.key == "last") {
            break;
        }
    }
    let first_item = tokio::time::timeout(Duration::from_secs(20), slow.next())
        .await
        .unwrap()
        .unwrap();
    let lag = first_item.expect_err("a subscriber that read nothing did not lag");
    assert!(lag.missed > 0);
    // After the notice it goes on with the newest changes, ending with the last write.
    let mut last = None;
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(700), slow.next()).await {
        last = Some(item.expect("lagged twice without new writes"));
    }
    assert_eq!(last.expect("no change after the lag notice").key, "last");
    drop(a);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_a_sync_with_a_server_that_never_answers_does_not_wait_for_it() {
    let mut server = TestServer::start().await;
    let first = server.enroll("first").await;
    let home = first.replica.home().to_path_buf();
    drop(first);
    // The server goes away; in its place, on the same address, something that accepts
    // connections and never says a word.
    let url = server.url();
    server.halt().await;
    let addr = url.trim_start_matches("https://").to_string();
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    let blackhole = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let a = Replica::open_with(
        &home,
        OpenOptions::new().timeouts(Timeouts::new(
            Duration::from_secs(4),
            Duration::from_secs(4),
        )),
    )
    .unwrap();
    let syncing = tokio::spawn({
        let a = a.clone();
        async move { a.sync().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !syncing.is_finished(),
        "the sync did not wait for the server"
    );
    // The UI writes and reads while the sync waits on the network.
    let ui = a.clone();
    tokio::task::spawn_blocking(move || {
        ui.put("notes", "written during the sync", b"kept").unwrap();
        assert_eq!(
            ui.get("notes", "written during the sync")
                .unwrap()
                .as_deref(),
            Some(&b"kept"[..])
        );
    })
    .await
    .unwrap();
    assert!(
        !syncing.is_finished(),
        "the write waited until the sync gave up"
    );
    let err = syncing.await.unwrap().unwrap_err();
    assert!(matches!(err, SyncError::Net(NetError::Network(_))), "{err}");
    assert_eq!(
        a.get("notes", "written during the sync")
            .unwrap()
            .as_deref(),
        Some(&b"kept"[..])
    );
    blackhole.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_comes_from_open_options_and_an_empty_one_is_refused_before_enrolling() {
    // CD-09: the library takes the passphrase from OpenOptions, never from the environment.
    let server = TestServer::start().await;
    let bundle = server.bundle();
    let home = server.home("first");
    let err = Replica::enroll(
        &home,
        &bundle,
        sealsync_client::EnrollOptions::new("first")
            .new_account(true)
            .open(OpenOptions::new().passphrase("")),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, sealsync_client::EnrollError::InvalidInput(_)),
        "{err}"
    );
    assert!(
        !home.join("replica.db").exists(),
        "a refused enrollment left files"
    );
    // The same bundle still works: the refusal came before the ticket was spent.
    let opts = OpenOptions::new().passphrase("correct horse");
    let first = Replica::enroll(
        &home,
        &bundle,
        sealsync_client::EnrollOptions::new("first")
            .new_account(true)
            .open(opts.clone()),
    )
    .await
    .unwrap();
    first.replica.put("notes", "k", b"v").unwrap();
    drop(first);
    let err = Replica::open(&home).unwrap_err();
    assert!(
        matches!(err, sealsync_client::OpenError::PassphraseRequired),
        "{err}"
    );
    let err = Replica::open_with(&home, OpenOptions::new().passphrase("wrong")).unwrap_err();
    assert!(
        matches!(err, sealsync_client::OpenError::WrongPassphrase(_)),
        "{err}"
    );
    let r = Replica::open_with(&home, opts).unwrap();
    assert_eq!(r.get("notes", "k").unwrap().as_deref(), Some(&b"v"[..]));
    // Debug never shows the passphrase.
    let shown = format!("{:?}", OpenOptions::new().passphrase("correct horse"));
    assert!(!shown.contains("horse"), "{shown}");
    drop(r);
    server.stop().await;
}
