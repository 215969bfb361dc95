//! The sync driver against a real server: live updates, pushes after local writes,
//! backoff while the server is away and recovery when it comes back.

use std::time::Duration;

use sealsync_client::{Backoff, ChangeFilter, Origin, SyncOptions, SyncStatus, Timeouts};
use tokio::sync::watch;

use super::{TestServer, pair};

/// Waits (up to 30 s) until the status satisfies `f`.
async fn until(
    status: &mut watch::Receiver<SyncStatus>,
    what: &str,
    f: impl Fn(&SyncStatus) -> bool,
) {
    let waited = tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| f(s)))
        .await
        .map(|r| r.is_ok());
    assert!(
        waited == Ok(true),
        "timed out waiting for: {what}; status {:?}",
        *status.borrow()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_drivers_carry_a_write_to_the_other_device_without_an_explicit_sync() {
    let server = TestServer::start().await;
    let (a, b) = pair(&server).await;
    // A collection both devices already sync, so that b's live request watches it.
    a.put("notes", "seed", b"0").unwrap();
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    let opts = SyncOptions::new().interval(Duration::from_secs(3600));
    let da = a.start_sync(opts.clone()).unwrap();
    let db = b.start_sync(opts).unwrap();
    let mut sa = da.status();
    let mut sb = db.status();
    until(&mut sa, "a's first sync", |s| s.syncs >= 1 && !s.syncing).await;
    until(&mut sb, "b connected", |s| s.syncs >= 1 && s.connected).await;
    let mut on_b = b
        .subscribe(ChangeFilter::all().collection("notes"))
        .unwrap();
    for i in 0..3 {
        let key = format!("live{i}");
        a.put("notes", &key, b"x").unwrap();
        let change = tokio::time::timeout(Duration::from_secs(20), on_b.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "b never received a's write; a {:?}; b {:?}",
                    *sa.borrow(),
                    *sb.borrow()
                )
            })
            .unwrap()
            .unwrap();
        assert_eq!(change.key, key);
        assert_eq!(change.origin, Origin::Remote(a.device_id()));
        assert_eq!(b.get("notes", &key).unwrap().as_deref(), Some(&b"x"[..]));
    }
    until(&mut sa, "a has nothing pending", |s| {
        s.pending_batches == 0 && s.pending_edits == 0
    })
    .await;
    assert!(sa.borrow().last_error.is_none());
    // sync_now answers with a report of a sync that ran after the ask.
    let report = db.sync_now().await.unwrap();
    assert!(report.errors.is_empty());
    da.stop().await;
    db.stop().await;
    assert!(sb.borrow().stopped);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_backs_off_while_the_server_is_away_and_recovers_when_it_returns() {
    let mut server = TestServer::start().await;
    let first = server.enroll("first").await;
    let a = first.replica;
    a.put("notes", "before", b"1").unwrap();
    a.sync().await.unwrap();
    server.halt().await;
    let driver = a
        .start_sync(
            SyncOptions::new()
                .interval(Duration::from_secs(3600))
                .backoff(Backoff::new(
                    Duration::from_millis(200),
                    Duration::from_millis(800),
                ))
                .timeouts(Timeouts::new(
                    Duration::from_secs(3),
                    Duration::from_secs(10),
                )),
        )
        .unwrap();
    let mut st = driver.status();
    // Edits made while the server is away are kept and counted as pending.
    a.put("notes", "offline", b"2").unwrap();
    until(&mut st, "failed syncs", |s| s.syncs >= 3).await;
    {
        let s = st.borrow();
        let err = s.last_error.as_ref().expect("no error recorded");
        assert!(err.is_retryable(), "{err}");
        assert!(!s.stopped, "the driver gave up on a retryable error");
        assert!(!s.connected);
        assert!(s.retry_at.is_some());
        assert!(s.pending_edits + s.pending_batches > 0);
    }
    // Backoff: failures are spaced out, not a busy loop.
    let at = st.borrow().syncs;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(st.borrow().syncs <= at + 1, "retries are not spaced out");

    server.restart().await;
    until(&mut st, "recovery", |s| {
        s.last_error.is_none() && s.last_synced.is_some()
    })
    .await;
    until(&mut st, "the offline edit pushed", |s| {
        s.pending_batches == 0 && s.pending_edits == 0
    })
    .await;
    assert!(st.borrow().connected);
    // The edit reached the server: a new device sees it.
    let report = driver.sync_now().await.unwrap();
    assert!(report.errors.is_empty());
    driver.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_at_every_pull_does_not_make_the_live_driver_spin() {
    // MS-05 (no retry loop). Review finding, fixed: a pulled batch that fails verification is reported in
    // `SyncReport.errors` and the sync returns Ok, leaving the cursor before the bad batch.
    // The server (honest or not) then answers every watch at once (its log is past the
    // cursor), the driver syncs at once, is refused again, and so on: no backoff, a tight
    // loop of full syncs that hammers the server. A malicious server gets the same loop by
    // answering every watch at once naming a collection.
    let server = TestServer::start().await;
    let (a, b) = pair(&server).await;
    a.put("notes", "seed", b"0").unwrap();
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    a.put("notes", "x", b"1").unwrap();
    a.sync().await.unwrap();
    super::tamper_last_batch(&server, true);
    let db = b
        .start_sync(SyncOptions::new().interval(Duration::from_secs(3600)))
        .unwrap();
    let mut sb = db.status();
    until(&mut sb, "b's first sync", |s| s.syncs >= 1 && !s.syncing).await;
    let first = sb.borrow().syncs;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = sb.borrow().syncs;
    let report = sb.borrow().last_report.clone();
    db.stop().await;
    server.stop().await;
    assert!(
        report.is_some_and(|r| !r.errors.is_empty()),
        "the refused batch was reported"
    );
    // With a 1 s initial backoff, at most ~3 syncs could run in 3 s.
    assert!(
        after - first <= 3,
        "the driver ran {} syncs in 3 s against one refused batch",
        after - first
    );
}

/// A malicious server on `addr` with the real server's TLS identity: answers every
/// `POST /v1/watch` at once with an empty list, every other request with 503 `busy`.
/// Returns the count of watch requests it answered.
async fn lying_watch_server(
    data: &std::path::Path,
    addr: &str,
) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let leaf = CertificateDer::from_pem_file(data.join("server.pem")).unwrap();
    let ca = CertificateDer::from_pem_file(data.join("ca.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_file(data.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf, ca], key)
        .unwrap();
    config.alpn_protocols = vec![sealsync_proto::ALPN_H2.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let watches = Arc::new(AtomicU64::new(0));
    let count = watches.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let count = count.clone();
                        async move {
                            let resp = if req.uri().path() == "/v1/watch" {
                                count.fetch_add(1, Ordering::Relaxed);
                                http::Response::builder()
                                    .status(200)
                                    .header("content-type", "application/x-protobuf")
                                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                            } else {
                                let body = sealsync_proto::Message::encode_to_vec(
                                    &sealsync_proto::ErrorResponse {
                                        code: "busy".into(),
                                        error_id: "x".into(),
                                        message: "busy".into(),
                                    },
                                );
                                http::Response::builder()
                                    .status(503)
                                    .header("content-type", "application/x-protobuf")
                                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                            };
                            Ok::<_, std::convert::Infallible>(resp.unwrap())
                        }
                    });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
            });
        }
    });
    watches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_every_watch_at_once_does_not_make_live_updates_spin() {
    // MS-36 (a lying server's fast answers). Review finding, fixed: the watch loop sends the next watch as soon as an empty answer
    // arrives, with no floor on the time between requests. A malicious (or broken) server
    // that answers at once turns live updates into a busy loop of requests.
    let mut server = TestServer::start().await;
    let first = server.enroll("first").await;
    let a = first.replica;
    a.put("notes", "seed", b"0").unwrap();
    a.sync().await.unwrap();
    server.halt().await;
    let addr = server.url().trim_start_matches("https://").to_string();
    let watches = lying_watch_server(&server.data(), &addr).await;
    let driver = a
        .start_sync(SyncOptions::new().interval(Duration::from_secs(3600)))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = watches.load(std::sync::atomic::Ordering::Relaxed);
    driver.stop().await;
    // An honest server holds each watch at least 1 s (WATCH_WAIT_MIN_MS).
    assert!(n >= 1, "the lying server was never asked");
    assert!(n <= 5, "{n} watch requests in 3 s: the client spins");
}
