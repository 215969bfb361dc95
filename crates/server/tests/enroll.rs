//! `POST /v1/enroll`: tickets (single use, expiry), key and CSR validation, duplicates.

use std::time::Duration;

use sealsync_core::sign_enroll_request;
use sealsync_crypto::{KxSecretKey, SigningKey};
use sealsync_proto::{EnrollRequest, EnrollResponse, Message as _};

use crate::kit::{Device, TestServer, generic_error, parse_bundle, post_enroll, tls_key_and_csr};

/// A request for the first device of a new account, with a valid proof of possession.
fn request(ticket: &[u8], sign: &SigningKey) -> EnrollRequest {
    let mut req = EnrollRequest {
        ticket: ticket.to_vec(),
        name: "dev".into(),
        csr_der: tls_key_and_csr().1,
        sign_pk: sign.verifying_key().to_bytes().to_vec(),
        kx_pk: KxSecretKey::generate().public_key().to_bytes().to_vec(),
        new_account: true,
        pop_signature: Vec::new(),
    };
    sign_enroll_request(sign, &mut req);
    req
}

/// Whether the ticket is still unspent: a valid preview answers only for such a ticket.
async fn ticket_unspent(server: &TestServer, ticket: &[u8]) -> bool {
    let mut client = crate::kit::connect_enroll(server.addr, &server.ca_der()).await;
    let req = sealsync_proto::EnrollPreviewRequest {
        ticket: ticket.to_vec(),
    };
    let (status, _) = client
        .request("POST", "/v1/enroll/preview", req.encode_to_vec())
        .await
        .unwrap();
    status == 200
}

#[tokio::test]
async fn the_ticket_is_checked_before_anything_is_issued() {
    // BI-13, MS-10: a used ticket is refused (401) whatever the rest of the request holds,
    // even a garbage CSR and no proof of possession: nothing is parsed or issued first.
    let server = TestServer::start().await;
    let bundle = server.bundle("acme");
    let (status, _) = post_enroll(&server, &request(&bundle.ticket, &SigningKey::generate())).await;
    assert_eq!(status, 200);
    let mut r = request(&bundle.ticket, &SigningKey::generate());
    r.csr_der = b"garbage".to_vec();
    r.pop_signature.clear();
    let (status, body) = post_enroll(&server, &r).await;
    assert_eq!(status, 401);
    assert_eq!(generic_error(&body).code, "unauthorized");
    assert!(!ticket_unspent(&server, &bundle.ticket).await);
    server.stop().await;
}

#[tokio::test]
async fn forged_proof_of_possession_is_refused() {
    // MS-10: the request must be signed by the signing key it enrolls, over every field.
    let server = TestServer::start().await;
    let bundle = server.bundle("acme");
    let victim = SigningKey::generate();
    let attacker = SigningKey::generate();
    // Signed by another key than the one it names.
    let mut r = request(&bundle.ticket, &attacker);
    r.sign_pk = victim.verifying_key().to_bytes().to_vec();
    let mut cases = vec![r];
    // Signed correctly, then a field swapped (the kx key, the CSR, the account intent).
    let mut r = request(&bundle.ticket, &victim);
    r.kx_pk = KxSecretKey::generate().public_key().to_bytes().to_vec();
    cases.push(r);
    let mut r = request(&bundle.ticket, &victim);
    r.csr_der = tls_key_and_csr().1;
    cases.push(r);
    let mut r = request(&bundle.ticket, &victim);
    r.pop_signature.clear();
    cases.push(r);
    for (i, r) in cases.iter().enumerate() {
        let (status, body) = post_enroll(&server, r).await;
        assert_eq!(status, 400, "case {i}");
        assert_eq!(generic_error(&body).code, "bad_request");
    }
    assert!(ticket_unspent(&server, &bundle.ticket).await);
    let (status, _) = post_enroll(&server, &request(&bundle.ticket, &victim)).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn new_account_must_match_the_account_state_before_the_ticket_is_spent() {
    // MS-09: no silent new account. An empty account refuses a device that expects to
    // join one, and the ticket stays usable.
    let server = TestServer::start().await;
    let bundle = server.bundle("acme");
    let sign = SigningKey::generate();
    let mut r = request(&bundle.ticket, &sign);
    r.new_account = false;
    sign_enroll_request(&sign, &mut r);
    let (status, body) = post_enroll(&server, &r).await;
    assert_eq!(status, 409);
    assert_eq!(generic_error(&body).code, "conflict");
    assert!(ticket_unspent(&server, &bundle.ticket).await);
    let (status, _) = post_enroll(&server, &request(&bundle.ticket, &sign)).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn ticket_is_single_use() {
    // BI-13
    let server = TestServer::start().await;
    let bundle = server.bundle("acme");
    let first = SigningKey::generate();
    let (status, body) = post_enroll(&server, &request(&bundle.ticket, &first)).await;
    assert_eq!(status, 200);
    let resp: EnrollResponse = sealsync_proto::decode(&body).unwrap();
    assert_eq!(resp.account, "acme");
    assert_eq!(
        resp.device_id,
        sealsync_crypto::device_id(&first.verifying_key()).to_vec()
    );
    assert!(resp.server_time_ms > 0);
    let (status, body) =
        post_enroll(&server, &request(&bundle.ticket, &SigningKey::generate())).await;
    assert_eq!(status, 401);
    assert_eq!(generic_error(&body).code, "unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn forged_short_and_expired_tickets_are_refused_alike() {
    // BI-13
    let server = TestServer::start().await;
    for ticket in [vec![0x42; 32], vec![1; 5], Vec::new()] {
        let (status, body) = post_enroll(&server, &request(&ticket, &SigningKey::generate())).await;
        assert_eq!(status, 401);
        assert_eq!(generic_error(&body).message, "authentication failed");
    }
    let line =
        sealsync_server::enroll_ticket(&server.data_dir(), "acme", Duration::from_secs(1), None)
            .unwrap();
    let bundle = parse_bundle(&line);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = post_enroll(&server, &request(&bundle.ticket, &SigningKey::generate())).await;
    assert_eq!(status, 401, "an expired ticket was accepted");
    server.stop().await;
}

#[tokio::test]
async fn invalid_keys_names_and_csrs_are_refused_without_consuming_the_ticket() {
    // BI-06, BI-20, BI-10
    let server = TestServer::start().await;
    let bundle = server.bundle("acme");
    let sign = SigningKey::generate();
    let mut bad = Vec::new();
    let mut r = request(&bundle.ticket, &sign);
    r.sign_pk = vec![0; 32]; // small-order point
    bad.push(r);
    let mut r = request(&bundle.ticket, &sign);
    r.sign_pk.pop();
    bad.push(r);
    let mut r = request(&bundle.ticket, &sign);
    r.kx_pk = vec![0; 32]; // all-zero X25519 key
    bad.push(r);
    let mut r = request(&bundle.ticket, &sign);
    r.csr_der = b"not a csr".to_vec();
    sign_enroll_request(&sign, &mut r); // a valid proof over a CSR that is not one
    bad.push(r);
    let mut r = request(&bundle.ticket, &sign);
    let last = r.csr_der.len() - 3;
    r.csr_der[last] ^= 1; // signature of the CSR broken
    sign_enroll_request(&sign, &mut r);
    bad.push(r);
    for name in ["", "two\nlines", &"n".repeat(129)] {
        let mut r = request(&bundle.ticket, &sign);
        r.name = name.to_string();
        bad.push(r);
    }
    for (i, r) in bad.iter().enumerate() {
        let (status, body) = post_enroll(&server, r).await;
        assert_eq!(status, 400, "case {i}");
        assert_eq!(generic_error(&body).code, "bad_request");
    }
    let (status, _) = post_enroll(&server, &request(&bundle.ticket, &sign)).await;
    assert_eq!(status, 200, "a refused request consumed the ticket");
    server.stop().await;
}

#[tokio::test]
async fn a_device_id_cannot_enroll_twice() {
    // CD-11
    let server = TestServer::start().await;
    let sign = SigningKey::generate();
    let (status, _) = post_enroll(&server, &request(&server.bundle("acme").ticket, &sign)).await;
    assert_eq!(status, 200);
    let second = server.bundle("globex");
    let (status, body) = post_enroll(&server, &request(&second.ticket, &sign)).await;
    assert_eq!(status, 409);
    generic_error(&body);
    // The refused attempt left the second ticket usable.
    let (status, _) = post_enroll(&server, &request(&second.ticket, &SigningKey::generate())).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_second_founder_is_refused_while_the_first_has_no_genesis() {
    // MS-09: the founder check runs in the enrollment transaction: while the account's
    // first device has not posted its genesis, another `new_account` enrollment is refused
    // (409) and its ticket stays unspent.
    let server = TestServer::start().await;
    let (status, _) = post_enroll(
        &server,
        &request(&server.bundle("acme").ticket, &SigningKey::generate()),
    )
    .await;
    assert_eq!(status, 200);
    let second = server.bundle("acme");
    let (status, body) =
        post_enroll(&server, &request(&second.ticket, &SigningKey::generate())).await;
    assert_eq!(status, 409);
    assert_eq!(generic_error(&body).code, "conflict");
    assert!(ticket_unspent(&server, &second.ticket).await);
    server.stop().await;
}

#[tokio::test]
async fn issued_certificate_names_the_device() {
    let server = TestServer::start().await;
    let dev = Device::enroll(&server, "acme", "laptop").await;
    let (_, cert) = x509_parser::parse_x509_certificate(&dev.cert_der).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cn, dev.id.to_string());
    let (_, ca) = x509_parser::parse_x509_certificate(&dev.enrolled.ca_der).unwrap();
    assert_eq!(cert.issuer(), ca.subject());
    server.stop().await;
}
