//! Each refusal the server must make, over the real transport, and proof that refused input
//! changed no stored data. Every test names its case in the security catalogue.

use sealsync_core::{CollectionId, MAX_DRIFT_MS};
use sealsync_proto::Message as _;

use crate::kit::{
    RawDevice, TestServer, assert_generic_error, parse_bundle, raw_enroll, tls_key_and_csr,
};

const COLLECTION: CollectionId = CollectionId([7; 16]);

fn push_results(body: &[u8]) -> sealsync_proto::PushResponse {
    sealsync_proto::decode(body).expect("PushResponse")
}

#[tokio::test]
async fn malformed_protobuf_is_refused_without_change() {
    // BI-03
    let server = TestServer::start().await;
    let mut dev = RawDevice::enroll(&server, "acme").await;
    let (status, body) = dev
        .client
        .request(
            "POST",
            "/v1/batches",
            vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x80],
        )
        .await
        .expect("request");
    assert_eq!(status, 400);
    assert_generic_error(&body);
    assert!(
        dev.pull_all(COLLECTION).await.is_empty(),
        "garbage left something in the log"
    );
    // The device's chain is untouched: seq 1 is still the next one accepted.
    let first = dev.next_batch(COLLECTION, "k", b"v");
    let (status, body) = dev.push(&[&first]).await;
    assert_eq!(status, 200);
    assert_eq!(push_results(&body).results[0].log_index, 1);
    server.stop().await;
}

#[tokio::test]
async fn oversized_body_is_refused_before_buffering() {
    // BI-01: limit+1 is refused with 413; a body at the limit is not refused for its size.
    let server = TestServer::start().await;
    let mut dev = RawDevice::enroll(&server, "acme").await;
    let limit = sealsync_proto::MAX_MESSAGE_BYTES;
    let (status, body) = dev
        .client
        .request("POST", "/v1/batches", vec![0u8; limit + 1])
        .await
        .expect("request");
    assert_eq!(status, 413);
    assert_generic_error(&body);
    let (status, _) = dev
        .client
        .request("POST", "/v1/batches", vec![0u8; limit])
        .await
        .expect("request");
    assert_ne!(
        status, 413,
        "a body at the limit must not be refused for its size"
    );
    assert!(dev.pull_all(COLLECTION).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn wrong_signature_is_refused_without_change() {
    // MS-23, BI-06
    let server = TestServer::start().await;
    let mut dev = RawDevice::enroll(&server, "acme").await;
    let mut batch = dev.next_batch(COLLECTION, "k", b"v");
    batch.sealed.signature[10] ^= 0x01;
    let (status, body) = dev.push(&[&batch]).await;
    assert!(
        (400..500).contains(&status),
        "forged signature accepted: {status}"
    );
    assert_generic_error(&body);
    assert!(dev.pull_all(COLLECTION).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn batch_signed_by_another_key_is_refused() {
    // CD-07: the author is the key that verifies, not a claimed field.
    let server = TestServer::start().await;
    let mut dev = RawDevice::enroll(&server, "acme").await;
    let honest = dev.next_batch(COLLECTION, "k", b"v");
    let impostor_key = sealsync_crypto::SigningKey::generate();
    let mut forged = honest.clone();
    forged.sealed.signature = impostor_key
        .sign(
            sealsync_crypto::SigContext::Batch,
            &forged.sealed.header,
            &forged.sealed.ciphertext,
        )
        .to_vec();
    let (status, body) = dev.push(&[&forged]).await;
    assert!((400..500).contains(&status));
    assert_generic_error(&body);
    assert!(dev.pull_all(COLLECTION).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn sequence_gap_is_refused_without_change() {
    // BI-07, MS-26
    let server = TestServer::start().await;
    let mut dev = RawDevice::enroll(&server, "acme").await;
    let gap = dev.batch_at(COLLECTION, 2, [9; 32], "k", b"v");
    let (status, body) = dev.push(&[&gap]).await;
    assert_eq!(status, 409);
    assert_generic_error(&body);
    assert!(dev.pull_all(COLLECTION).await.is_empty());
    // A request whose second batch has a gap is refused whole: the first is not kept either.
    let first = dev.batch_at(COLLECTION, 1, [0; 32], "a", b"1");
    let third = dev.batch_at(COLLECTION, 3, first.hash, "b", b"2");
    let (status, _) = dev.push(&[&first, &third]).await;
    assert_eq!(status, 409);
    assert!(
        dev.pull_all(COLLECTION).await.is_empty(),
        "part of a refused push was stored"
    );
    server.stop().await;
}

#[tokio::test]
async fn replayed_batch_is_a_no_op() {
    // NA-08, MS-25, CF-05: the same batch again is acknowledged once, stored once.
    let server = TestServer::start().await;
    let mut dev = RawDevice::enroll(&server, "acme").await;
    let batch = dev.next_batch(COLLECTION, "k", b"v");
    let (status, body) = dev.push(&[&batch]).await;
    assert_eq!(status, 200);
    let first = push_results(&body).results[0].clone();
    assert!(!first.duplicate);
    let (status, body) = dev.push(&[&batch]).await;
    assert_eq!(status, 200);
    let again = push_results(&body).results[0].clone();
    assert!(again.duplicate, "replay not recognised as a duplicate");
    assert_eq!(again.log_index, first.log_index);
    assert_eq!(dev.pull_all(COLLECTION).await.len(), 1);
}

#[tokio::test]
async fn equivocating_batch_is_refused() {
    // BI-08, CD-05: different bytes for a stored (device, collection, seq).
    let server = TestServer::start().await;
    let mut dev = RawDevice::enroll(&server, "acme").await;
    let batch = dev.next_batch(COLLECTION, "k", b"v");
    assert_eq!(dev.push(&[&batch]).await.0, 200);
    let other = dev.batch_at(COLLECTION, 1, [0; 32], "k", b"something else");
    let (status, body) = dev.push(&[&other]).await;
    assert_eq!(status, 409);
    assert_generic_error(&body);
    let log = dev.pull_all(COLLECTION).await;
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].batch.as_ref().expect("batch").signature,
        batch.sealed.signature
    );
    server.stop().await;
}

#[tokio::test]
async fn clock_far_ahead_is_refused() {
    // CD-08: a batch stamped beyond the drift bound cannot be used to win every conflict.
    let server = TestServer::start().await;
    let mut dev = RawDevice::enroll(&server, "acme").await;
    let now = crate::kit::now_ms();
    // A batch stamped with a future clock.
    let future = sealsync_core::Hlc::from_parts(now + MAX_DRIFT_MS + 60_000, 0).0;
    let draft = sealsync_core::BatchDraft {
        account: dev.account.clone(),
        collection: COLLECTION,
        device: dev.device_id,
        seq: 1,
        prev_hash: [0; 32],
        epoch: 1,
        roster_head: [0; 32],
        mutations: vec![sealsync_proto::Mutation {
            key: "k".into(),
            hlc: future,
            deleted: false,
            value: b"v".to_vec(),
            supersedes: vec![],
        }],
    };
    let draft_batch =
        sealsync_core::seal_batch(draft, &dev.sign, &sealsync_crypto::SymmetricKey::generate())
            .expect("seal");
    let (status, body) = dev.push(&[&draft_batch]).await;
    assert!(
        (400..500).contains(&status),
        "future clock accepted: {status}"
    );
    assert_generic_error(&body);
    assert!(dev.pull_all(COLLECTION).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn unknown_device_is_refused() {
    // NA-04 (unknown status denied), CD-01: a certificate from the right CA for a device the
    // server never enrolled gets no access.
    let server = TestServer::start().await;
    let config = ca_issued_client(&server, |_| {});
    let mut client = crate::kit::RawClient::connect(server.addr, config)
        .await
        .expect("handshake");
    for path in ["/v1/status", "/v1/roster?after=0", "/v1/devices/pending"] {
        let (status, body) = client
            .request("GET", path, Vec::new())
            .await
            .expect("request");
        assert!(
            status == 401 || status == 403,
            "{path}: unknown device got {status}"
        );
        assert_generic_error(&body);
    }
    server.stop().await;
}

#[tokio::test]
async fn ticket_used_twice_is_refused() {
    // BI-13: single-use tickets.
    let server = TestServer::start().await;
    // The account's first device (with its genesis), which lists the pending devices.
    let mut founder = RawDevice::enroll(&server, "acme").await;
    let bundle = parse_bundle(&server.bundle("acme"));
    let sign = sealsync_crypto::SigningKey::generate();
    let kx = sealsync_crypto::KxSecretKey::generate();
    let (_key, csr) = tls_key_and_csr();
    let (status, _) = raw_enroll(&server, &bundle.ticket, &sign, &kx, csr).await;
    assert_eq!(status, 200);
    let second = sealsync_crypto::SigningKey::generate();
    let (_key2, csr2) = tls_key_and_csr();
    let second_kx = sealsync_crypto::KxSecretKey::generate();
    let (status, body) = raw_enroll(&server, &bundle.ticket, &second, &second_kx, csr2).await;
    assert_eq!(status, 401, "a used ticket enrolled a second device");
    assert_generic_error(&body);
    // The refused device does not exist on the server: the one enrolled with the ticket is
    // the only device waiting for approval.
    let (status, body) = founder
        .client
        .request("GET", "/v1/devices/pending", Vec::new())
        .await
        .expect("pending");
    assert_eq!(status, 200);
    let pending: sealsync_proto::PendingDevicesResponse =
        sealsync_proto::decode(&body).expect("pending");
    let first_id = sealsync_crypto::device_id(&sign.verifying_key()).to_vec();
    let ids: Vec<_> = pending
        .devices
        .iter()
        .map(|d| d.device_id.clone())
        .collect();
    assert_eq!(ids, vec![first_id], "expected the one enrolled device only");
    server.stop().await;
}

#[tokio::test]
async fn forged_ticket_is_refused() {
    // BI-13
    let server = TestServer::start().await;
    let (_key, csr) = tls_key_and_csr();
    let (status, body) = raw_enroll(
        &server,
        &[0x42; 32],
        &sealsync_crypto::SigningKey::generate(),
        &sealsync_crypto::KxSecretKey::generate(),
        csr,
    )
    .await;
    assert_eq!(status, 401);
    assert_generic_error(&body);
    server.stop().await;
}

#[tokio::test]
async fn other_accounts_logs_are_invisible() {
    // BI-16
    let server = TestServer::start().await;
    let mut a = RawDevice::enroll(&server, "acme").await;
    let mut b = RawDevice::enroll(&server, "globex").await;
    let batch = a.next_batch(COLLECTION, "k", b"v");
    assert_eq!(a.push(&[&batch]).await.0, 200);
    assert_eq!(a.pull_all(COLLECTION).await.len(), 1);
    assert!(
        b.pull_all(COLLECTION).await.is_empty(),
        "globex read acme's log"
    );
    // A batch naming another account is refused.
    let mut foreign = b.next_batch(COLLECTION, "k", b"v");
    let mut header: sealsync_proto::BatchHeader =
        sealsync_proto::decode(&foreign.sealed.header).expect("header");
    header.account = "acme".into();
    foreign.sealed.header = header.encode_to_vec();
    foreign.sealed.signature = b
        .sign
        .sign(
            sealsync_crypto::SigContext::Batch,
            &foreign.sealed.header,
            &foreign.sealed.ciphertext,
        )
        .to_vec();
    let (status, _) = b.push(&[&foreign]).await;
    assert!(
        (400..500).contains(&status),
        "batch for another account accepted"
    );
    assert_eq!(a.pull_all(COLLECTION).await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn garbage_to_every_endpoint_gets_a_client_error_never_a_crash() {
    // BI-03, BI-15: seeded random and truncated bodies at every endpoint; the server answers
    // each with a generic 4xx and keeps serving.
    let server = TestServer::start().await;
    let mut dev = RawDevice::enroll(&server, "acme").await;
    let valid = dev.next_batch(COLLECTION, "k", b"v");
    let valid_push = sealsync_proto::PushRequest {
        batches: vec![valid.sealed.clone()],
    }
    .encode_to_vec();
    let endpoints = [
        ("POST", "/v1/batches"),
        ("POST", "/v1/roster"),
        ("POST", "/v1/envelopes"),
        ("PUT", "/v1/recovery"),
        ("POST", "/v1/collections"),
        ("GET", "/v1/batches?collection=zz&after=-1"),
        ("GET", "/v1/batches?collection=0707&after=0"),
        ("GET", "/v1/roster?after=banana"),
        ("GET", "/v1/chain?collection=zz"),
        ("GET", "/v1/chain?collection=0707"),
        ("GET", "/v1/chain"),
    ];
    let mut state: u64 = 0x00C0_FFEE;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (method, path) in endpoints {
        for round in 0..25 {
            let body: Vec<u8> = match round % 3 {
                0 => (0..(next() % 300)).map(|_| next() as u8).collect(),
                1 => valid_push[..(next() as usize % valid_push.len())].to_vec(),
                _ => {
                    let mut b = valid_push.clone();
                    let i = next() as usize % b.len();
                    b[i] ^= 1 << (next() % 8);
                    b
                }
            };
            let (status, body) = dev
                .client
                .request(method, path, body)
                .await
                .expect("request");
            assert!(
                (400..500).contains(&status) || status == 200,
                "{method} {path}: status {status}"
            );
            if status != 200 {
                assert_generic_error(&body);
            }
        }
    }
    let (status, _) = dev
        .client
        .request("GET", "/v1/status", Vec::new())
        .await
        .expect("status");
    assert_eq!(status, 200, "server stopped answering");
    // Whatever was accepted, the log holds only genuine, chained batches of this device.
    for entry in dev.pull_all(COLLECTION).await {
        let sealed = entry.batch.expect("batch");
        let v = sealsync_core::verify_batch(&sealed, |id| {
            (*id == dev.device_id).then(|| dev.sign.verifying_key())
        });
        assert!(v.is_ok(), "the log holds an unverifiable batch");
    }
    server.stop().await;
}

/// A client certificate issued by the server's own CA for a device id the server never
/// enrolled, after `customize` adjusts its parameters (validity, usages).
fn ca_issued_client(
    server: &TestServer,
    customize: impl FnOnce(&mut rcgen::CertificateParams),
) -> std::sync::Arc<rustls::ClientConfig> {
    let ca_pem = std::fs::read_to_string(server.data_dir().join("ca.pem")).expect("ca.pem");
    let ca_key = rcgen::KeyPair::from_pem(
        &std::fs::read_to_string(server.data_dir().join("ca.key")).expect("ca.key"),
    )
    .expect("ca key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer");
    let ghost_id =
        sealsync_crypto::device_id(&sealsync_crypto::SigningKey::generate().verifying_key());
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hex::encode(ghost_id));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    customize(&mut params);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = params.signed_by(&key, &issuer).expect("cert");
    crate::kit::client_config(
        &server.ca_der(),
        Some((cert.der().clone(), crate::kit::key_der(&key))),
        &[sealsync_proto::ALPN_H2],
        crate::kit::TLS13,
    )
}

/// True when the TLS layer refused the client: the handshake or the first request fails,
/// so no HTTP status ever comes back.
async fn tls_refuses(server: &TestServer, config: std::sync::Arc<rustls::ClientConfig>) -> bool {
    match crate::kit::RawClient::connect(server.addr, config).await {
        Err(_) => true,
        Ok(mut client) => client
            .request("GET", "/v1/status", Vec::new())
            .await
            .is_err(),
    }
}

#[tokio::test]
async fn expired_or_not_yet_valid_certificates_fail_the_handshake() {
    // NA-03: validity is checked by TLS, before any HTTP; a minute past either edge.
    let server = TestServer::start().await;
    let now = time::OffsetDateTime::now_utc();
    let expired = ca_issued_client(&server, |p| {
        p.not_before = now - time::Duration::days(2);
        p.not_after = now - time::Duration::minutes(1);
    });
    assert!(
        tls_refuses(&server, expired).await,
        "expired certificate accepted"
    );
    let early = ca_issued_client(&server, |p| {
        p.not_before = now + time::Duration::minutes(1);
        p.not_after = now + time::Duration::days(2);
    });
    assert!(
        tls_refuses(&server, early).await,
        "not-yet-valid certificate accepted"
    );
    let server_auth_only = ca_issued_client(&server, |p| {
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    });
    assert!(
        tls_refuses(&server, server_auth_only).await,
        "certificate without client-auth EKU accepted"
    );
    // Control: the same CA and shape, valid now, passes TLS (and is then refused by HTTP).
    let valid = ca_issued_client(&server, |_| {});
    assert!(
        !tls_refuses(&server, valid).await,
        "control certificate should pass TLS"
    );
    server.stop().await;
}

#[tokio::test]
async fn wrong_server_name_is_refused_by_the_device() {
    // NA-06: the bundle names a host the server certificate was not issued for.
    let server = TestServer::start().await;
    let bundle = sealsync_server::enroll_ticket(
        &server.data_dir(),
        "acme",
        std::time::Duration::from_secs(600),
        Some(&format!("https://localhost:{}", server.addr.port())),
    )
    .expect("ticket");
    let result = sealsync_client::Replica::enroll(
        &server.home("misnamed"),
        &bundle,
        crate::kit::opts("misnamed"),
    )
    .await;
    let err = result.expect_err("a certificate for 127.0.0.1 was accepted for localhost");
    assert!(
        err.to_string().to_lowercase().contains("tls") || err.to_string().contains("certificate"),
        "{err}"
    );
    server.stop().await;
}
