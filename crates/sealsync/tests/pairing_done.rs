//! The end of a pairing: the approver finishes only when the new device reports, under
//! its MAC, that it is trusted; a report forged by the server is ignored.

use std::time::Duration;

use sealsync_client::ClientError;
use sealsync_core::pairing::Joiner;
use sealsync_crypto::PairingCode;
use sealsync_proto::{Message as _, PairingConfirm, PairingStart};

use crate::kit::TestServer;
use crate::pairing::{devices, enrolled_keys, mailbox, set_mailbox};

/// Waits (bounded) until the approver's confirmation is in the mailbox.
async fn confirm_arrives(server: &TestServer, device: sealsync_core::DeviceId) -> PairingConfirm {
    for _ in 0..600 {
        if let (_, _, Some(confirm), _) = mailbox(server, device) {
            return sealsync_proto::decode(&confirm).expect("confirm");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the approver never confirmed");
}

/// Runs a pairing whose new device is played by the test (as the server could, with the
/// device's public keys), up to the done message, which is forged when `forge` is set.
async fn approve_with_done(forge: bool) -> Result<(), ClientError> {
    let server = TestServer::start().await;
    let (mut a, b) = devices(&server).await;
    let b_id = b.device_id();
    let approval = a
        .begin_approval(&b_id.to_string(), Duration::from_secs(3))
        .await
        .expect("begin");
    let code = PairingCode::parse(approval.code()).expect("code");
    let start: PairingStart = sealsync_proto::decode(&mailbox(&server, b_id).0).expect("start");
    let (joiner, reply) = Joiner::on_start(
        &code,
        "acme",
        &enrolled_keys(&server, b_id),
        "second",
        &start,
        &[7; 32],
    )
    .expect("reply");
    set_mailbox(&server, b_id, "reply", &reply.encode_to_vec());
    let device = async {
        let confirm = confirm_arrives(&server, b_id).await;
        let mut done = joiner.on_confirm(&confirm).expect("confirmation").done;
        if forge {
            done.mac[31] ^= 1;
        }
        set_mailbox(&server, b_id, "done", &done.encode_to_vec());
    };
    let (approved, ()) = tokio::join!(a.finish_approval(approval), device);
    server.stop().await;
    approved
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approver_finishes_on_the_new_devices_done_message() {
    // MS-10: the done message made with the pairing's key ends the approval.
    approve_with_done(false).await.expect("approve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_message_forged_by_the_server_is_ignored() {
    // MS-10: the server cannot tell the approver that a device joined: a done message
    // with a wrong MAC is ignored and the approval ends at its timeout, not in success.
    let approved = approve_with_done(true).await;
    assert!(
        matches!(approved, Err(ClientError::PairingUnconfirmed { .. })),
        "{approved:?}"
    );
}
