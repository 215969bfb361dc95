//! Pairing mailboxes over real mutual TLS: who may start, read, answer, confirm and abort.

use sealsync_core::pairing::{Approver, DeviceKeys, Joiner};
use sealsync_crypto::PairingCode;
use sealsync_proto::{PairingAbort, PairingMailbox, PairingStart};

use crate::kit::{Device, TestServer, generic_error};

fn keys(d: &Device) -> DeviceKeys {
    DeviceKeys::new(d.sign.verifying_key(), d.kx.public_key())
}

fn start_for(approver: &Device, target: &Device, code: &PairingCode) -> PairingStart {
    Approver::start(
        code,
        "acme",
        [5; 16],
        keys(approver),
        target.id,
        60_000,
        &[1; 32],
    )
    .1
}

#[tokio::test]
async fn mailboxes_are_kept_to_their_two_devices() {
    // MS-10, MS-11, BI-16: only a roster member starts; only the target answers, once; only
    // the approver reads the target's mailbox or confirms.
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    a.post_genesis().await;
    let mut b = Device::enroll(&server, "acme", "b").await;
    let mut c = Device::enroll(&server, "acme", "c").await;
    let mut x = Device::enroll(&server, "globex", "x").await;
    x.post_genesis().await;
    let code = PairingCode::generate();

    // A pending device cannot start a pairing, nor a member of another account for b.
    let (status, body) = b
        .send("POST", "/v1/pairing/start", &start_for(&b, &c, &code))
        .await;
    assert_eq!(status, 403);
    generic_error(&body);
    let (status, _) = x
        .send("POST", "/v1/pairing/start", &start_for(&x, &b, &code))
        .await;
    assert_eq!(status, 404);
    // A start naming another approver, or keys other than the caller's, is refused.
    let mut forged = start_for(&a, &b, &code);
    forged.approver_kx_pk = c.kx.public_key().to_bytes().to_vec();
    assert_eq!(a.send("POST", "/v1/pairing/start", &forged).await.0, 400);
    let start = start_for(&a, &b, &code);
    assert_eq!(a.send("POST", "/v1/pairing/start", &start).await.0, 200);

    // b sees its start; c does not see b's mailbox, not even by asking for it.
    let (_, body) = b.get("/v1/pairing").await;
    let mb: PairingMailbox = sealsync_proto::decode(&body).unwrap();
    assert_eq!(mb.start.as_ref(), Some(&start));
    let (_, body) = c.get(&format!("/v1/pairing?device={}", b.id)).await;
    let mb: PairingMailbox = sealsync_proto::decode(&body).unwrap();
    assert!(mb.start.is_none());

    // Only b answers, with its enrolled keys, and only once.
    let (_, reply) = Joiner::on_start(&code, "acme", &keys(&b), "b", &start, &[2; 32]).unwrap();
    let (_, c_reply) = Joiner::on_start(
        &code,
        "acme",
        &keys(&c),
        "c",
        &start_for(&a, &c, &code),
        &[2; 32],
    )
    .unwrap();
    assert_eq!(b.send("POST", "/v1/pairing/reply", &c_reply).await.0, 400);
    assert_eq!(b.send("POST", "/v1/pairing/reply", &reply).await.0, 200);
    let (status, body) = b.send("POST", "/v1/pairing/reply", &reply).await;
    assert_eq!(status, 409, "a second reply (a second guess) was accepted");
    assert_eq!(generic_error(&body).code, "conflict");
    let (_, body) = a.get(&format!("/v1/pairing?device={}", b.id)).await;
    let mb: PairingMailbox = sealsync_proto::decode(&body).unwrap();
    assert_eq!(mb.reply, Some(reply));

    // c cannot abort b's attempt; b can, and then nothing more is taken.
    let abort = PairingAbort {
        attempt_id: vec![5; 16],
        device_id: b.id.0.to_vec(),
    };
    assert_eq!(c.send("POST", "/v1/pairing/abort", &abort).await.0, 404);
    assert_eq!(b.send("POST", "/v1/pairing/abort", &abort).await.0, 200);
    let (_, body) = a.get(&format!("/v1/pairing?device={}", b.id)).await;
    let mb: PairingMailbox = sealsync_proto::decode(&body).unwrap();
    assert!(mb.aborted);
    let confirm = sealsync_proto::PairingConfirm {
        attempt_id: vec![5; 16],
        genesis_hash: vec![0; 32],
        roster_head: vec![0; 32],
        mac: vec![0; 32],
        device_id: b.id.0.to_vec(),
    };
    assert_eq!(a.send("POST", "/v1/pairing/confirm", &confirm).await.0, 409);
    server.stop().await;
}
