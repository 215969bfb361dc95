//! `POST /v1/watch` over real mutual TLS: answers at once, wakes on another device's push,
//! ends empty after its wait or at shutdown, its bounds, its admission and its account scope.

use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use sealsync_core::CollectionId;
use sealsync_proto::{
    MAX_WATCH_CURSORS, MAX_WATCHES_PER_DEVICE, PushRequest, WatchCursor, WatchRequest,
    WatchResponse,
};

use crate::kit::{
    Device, H2, TLS13, TestServer, assert_ok, client_config, connect_enroll, generic_error, key_der,
};

const CID: CollectionId = CollectionId([3; 16]);

fn request(cursors: &[(CollectionId, u64)], wait_ms: u32) -> WatchRequest {
    WatchRequest {
        cursors: cursors
            .iter()
            .map(|(c, after)| WatchCursor {
                collection_id: c.0.to_vec(),
                after: *after,
            })
            .collect(),
        wait_ms,
    }
}

/// Posts a watch on `h2`; returns the status and the decoded answer (empty on refusal).
async fn watch_on(h2: &mut H2, req: &WatchRequest) -> (u16, Vec<u8>) {
    use sealsync_proto::Message as _;
    h2.request("POST", "/v1/watch", req.encode_to_vec())
        .await
        .unwrap()
}

fn changed(status: u16, body: &[u8]) -> Vec<Vec<u8>> {
    assert_ok(status, body, "watch");
    sealsync_proto::decode::<WatchResponse>(body)
        .unwrap()
        .changed_collections
}

/// Pushes `n` chained batches of `dev` to `cid` starting at `seq` after `prev`; returns the
/// last hash.
async fn push(dev: &mut Device, cid: CollectionId, seq: u64, prev: [u8; 32]) -> [u8; 32] {
    let batch = dev.batch(cid, seq, prev, b"v");
    let req = PushRequest {
        batches: vec![batch.sealed],
    };
    let (status, body) = dev.send("POST", "/v1/batches", &req).await;
    assert_ok(status, &body, "push");
    batch.hash
}

/// Another mutual-TLS connection as `dev`.
async fn connect_as(server: &TestServer, dev: &Device) -> H2 {
    let config = client_config(
        &server.ca_der(),
        Some((
            CertificateDer::from(dev.cert_der.clone()),
            key_der(&dev.tls_key),
        )),
        &[sealsync_proto::ALPN_H2],
        TLS13,
    );
    H2::connect(server.addr, config).await.unwrap()
}

#[tokio::test]
async fn watch_answers_at_once_when_a_log_is_already_past_the_cursor() {
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    a.post_genesis().await;
    let h1 = push(&mut a, CID, 1, [0; 32]).await;
    push(&mut a, CID, 2, h1).await;
    let quiet = CollectionId([4; 16]);
    // A pending device may watch, as it may pull.
    let mut b = Device::enroll(&server, "acme", "b").await;
    let started = Instant::now();
    let (status, body) = watch_on(&mut b.h2, &request(&[(quiet, 0), (CID, 1)], 25_000)).await;
    assert_eq!(changed(status, &body), vec![CID.0.to_vec()]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered before the 25 s wait"
    );
    // With no cursors there is nothing to wait for.
    let (status, body) = watch_on(&mut b.h2, &request(&[], 25_000)).await;
    assert!(changed(status, &body).is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_blocked_watch_returns_when_another_device_pushes() {
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    a.post_genesis().await;
    let h1 = push(&mut a, CID, 1, [0; 32]).await;
    let mut b = Device::enroll(&server, "acme", "b").await;
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        let answer = watch_on(&mut b.h2, &request(&[(CID, 1)], 25_000)).await;
        (answer, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the watch answered with nothing new"
    );
    push(&mut a, CID, 2, h1).await;
    let ((status, body), took) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the watch answered before its 25 s wait")
        .unwrap();
    assert_eq!(changed(status, &body), vec![CID.0.to_vec()]);
    assert!(took < Duration::from_secs(20), "{took:?}");
    server.stop().await;
}

#[tokio::test]
async fn watch_answers_empty_after_its_wait() {
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    a.post_genesis().await;
    push(&mut a, CID, 1, [0; 32]).await;
    let started = Instant::now();
    // wait_ms below the floor is raised to 1 s.
    let (status, body) = watch_on(&mut a.h2, &request(&[(CID, 1)], 10)).await;
    assert!(changed(status, &body).is_empty());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    server.stop().await;
}

#[tokio::test]
async fn watch_refuses_too_many_cursors_bad_ids_and_repeats() {
    // BI-11, BI-17: a watch is bounded in what it names (and its body, BI-01).
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    let many: Vec<(CollectionId, u64)> = (0..=MAX_WATCH_CURSORS)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            (CollectionId(id), 0)
        })
        .collect();
    let (status, body) = watch_on(&mut a.h2, &request(&many, 1_000)).await;
    assert_eq!(status, 400, "{} cursors were accepted", many.len());
    assert_eq!(generic_error(&body).code, "bad_request");
    let (status, body) = watch_on(&mut a.h2, &request(&many[..MAX_WATCH_CURSORS], 1_000)).await;
    assert!(
        changed(status, &body).is_empty(),
        "the limit itself is fine"
    );

    let mut short = request(&[(CID, 0)], 1_000);
    short.cursors[0].collection_id.pop();
    let (status, body) = watch_on(&mut a.h2, &short).await;
    assert_eq!(status, 400);
    generic_error(&body);
    let (status, body) = watch_on(&mut a.h2, &request(&[(CID, 0), (CID, 5)], 1_000)).await;
    assert_eq!(status, 400, "a collection named twice");
    generic_error(&body);
    let (status, body) =
        a.h2.request("POST", "/v1/watch", vec![0xff; 3])
            .await
            .unwrap();
    assert_eq!(status, 400, "garbage");
    generic_error(&body);
    let (status, body) =
        a.h2.request("POST", "/v1/watch", vec![0u8; 1024 * 1024 + 1])
            .await
            .unwrap();
    assert_eq!(status, 413);
    assert_eq!(generic_error(&body).code, "too_large");
    server.stop().await;
}

#[tokio::test]
async fn watch_needs_an_active_device_with_its_issued_certificate() {
    // CD-01, NA-04: admission is checked on a watch like on every request.
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    a.post_genesis().await;
    push(&mut a, CID, 1, [0; 32]).await;
    let req = request(&[(CID, 0)], 1_000);

    // No client certificate: only the enrollment mode answers, and not this path.
    let mut anonymous = connect_enroll(server.addr, &server.ca_der()).await;
    let (status, body) = watch_on(&mut anonymous, &req).await;
    assert_eq!(status, 404);
    generic_error(&body);

    // A certificate of our CA naming A, but not the one issued to A.
    let ca_pem = std::fs::read_to_string(server.data_dir().join("ca.pem")).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(
        &std::fs::read_to_string(server.data_dir().join("ca.key")).unwrap(),
    )
    .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, a.id.to_string());
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let twin = params.signed_by(&key, &issuer).unwrap();
    let config = client_config(
        &server.ca_der(),
        Some((twin.der().clone(), key_der(&key))),
        &[sealsync_proto::ALPN_H2],
        TLS13,
    );
    let mut h2 = H2::connect(server.addr, config).await.unwrap();
    let (status, body) = watch_on(&mut h2, &req).await;
    assert_eq!(status, 401);
    assert_eq!(generic_error(&body).code, "unauthorized");

    // Revoked: refused on the next request of an open connection.
    let (status, body) = watch_on(&mut a.h2, &req).await;
    assert_eq!(changed(status, &body), vec![CID.0.to_vec()]);
    let db = rusqlite::Connection::open(server.data_dir().join("sealsync.db")).unwrap();
    db.execute(
        "UPDATE devices SET state = 'revoked' WHERE device_id = ?1",
        [a.id.0],
    )
    .unwrap();
    drop(db);
    let (status, body) = watch_on(&mut a.h2, &req).await;
    assert_eq!(status, 403);
    assert_eq!(generic_error(&body).code, "forbidden");
    server.stop().await;
}

#[tokio::test]
async fn a_device_revoked_while_watching_is_refused_when_woken() {
    // CD-01: revocation also ends what a watch would tell.
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    a.post_genesis().await;
    let h1 = push(&mut a, CID, 1, [0; 32]).await;
    let mut b = Device::enroll(&server, "acme", "b").await;
    let b_id = b.id;
    let waiting =
        tokio::spawn(async move { watch_on(&mut b.h2, &request(&[(CID, 1)], 25_000)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the watch is not waiting");
    let db = rusqlite::Connection::open(server.data_dir().join("sealsync.db")).unwrap();
    db.execute(
        "UPDATE devices SET state = 'revoked' WHERE device_id = ?1",
        [b_id.0],
    )
    .unwrap();
    drop(db);
    push(&mut a, CID, 2, h1).await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the watch answered before its 25 s wait")
        .unwrap();
    assert_eq!(status, 403);
    assert_eq!(generic_error(&body).code, "forbidden");
    server.stop().await;
}

#[tokio::test]
async fn a_watch_on_another_accounts_collection_never_fires() {
    // BI-16: account globex names acme's collection id. It is answered as a log that never
    // changes, whether acme's log already has entries or gains one during the watch: no
    // existence leak, and acme's pushes wake only acme's watches.
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    a.post_genesis().await;
    let h1 = push(&mut a, CID, 1, [0; 32]).await;
    let mut x = Device::enroll(&server, "globex", "x").await;
    x.post_genesis().await;
    let (status, body) = watch_on(&mut x.h2, &request(&[(CID, 0)], 1_000)).await;
    assert!(changed(status, &body).is_empty(), "acme's log leaked");

    let mut b = Device::enroll(&server, "acme", "b").await;
    let outsider = tokio::spawn(async move {
        let (status, body) = watch_on(&mut x.h2, &request(&[(CID, 0)], 3_000)).await;
        changed(status, &body)
    });
    let insider = tokio::spawn(async move {
        let (status, body) = watch_on(&mut b.h2, &request(&[(CID, 1)], 25_000)).await;
        changed(status, &body)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    push(&mut a, CID, 2, h1).await;
    assert_eq!(insider.await.unwrap(), vec![CID.0.to_vec()]);
    assert!(
        outsider.await.unwrap().is_empty(),
        "a push to acme woke globex"
    );
    server.stop().await;
}

#[tokio::test]
async fn watches_are_capped_per_device_and_end_at_shutdown() {
    // NA-14: a per-certificate cap on open watches; shutdown does not wait for them.
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    a.post_genesis().await;
    let mut open = Vec::new();
    for _ in 0..MAX_WATCHES_PER_DEVICE {
        let mut h2 = connect_as(&server, &a).await;
        open.push(tokio::spawn(async move {
            // The probe below may hold a slot for a moment: retry until held.
            loop {
                let answer = watch_on(&mut h2, &request(&[(CID, 0)], 30_000)).await;
                if answer.0 != 503 {
                    return answer;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    // Wait until all of them are held in the server: one more is then refused.
    let mut refused = None;
    for _ in 0..100 {
        let (status, body) = watch_on(&mut a.h2, &request(&[(CID, 0)], 1_000)).await;
        if status == 503 {
            refused = Some(body);
            break;
        }
        assert_ok(status, &body, "watch below the cap");
    }
    let body = refused.expect("a fifth watch was accepted");
    assert_eq!(generic_error(&body).code, "busy");
    // Another device of the account has its own slots.
    let mut b = Device::enroll(&server, "acme", "b").await;
    let (status, body) = watch_on(&mut b.h2, &request(&[(CID, 0)], 1_000)).await;
    assert!(changed(status, &body).is_empty());

    let started = Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shutdown waited for the 30 s watches"
    );
    for w in open {
        let (status, body) = tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("the watch ended with the server")
            .unwrap();
        assert!(changed(status, &body).is_empty());
    }
}
