//! The end of a pairing: the approver finishes only when the new device reports, under
//! its MAC, that it is trusted; a report forged by the server is ignored; the new device
//! takes the account keys from the approver's envelope only.

use std::time::Duration;

use sealsync_client::{DeviceState, PairingError, Replica};
use sealsync_core::pairing::{Approver, DeviceKeys, Joiner};
use sealsync_core::{
    AccountKeys, DeviceId, GenesisParams, NewMember, Roster, roster_entry_hash, seal_envelope,
};
use sealsync_crypto::{KdfParams, KxSecretKey, PairingCode, SigningKey};
use sealsync_proto::{Message as _, PairingConfirm, PairingStart, SignedRosterEntry};

use crate::kit::{TestServer, now_ms, opts};
use crate::pairing::{db, devices, enrolled_keys, hex, mailbox, reply_arrives, set_mailbox};

/// Waits (bounded) until the approver's confirmation is in the mailbox.
async fn confirm_arrives(server: &TestServer, device: DeviceId) -> PairingConfirm {
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
async fn approve_with_done(forge: bool) -> Result<(), PairingError> {
    let server = TestServer::start().await;
    let (a, b) = devices(&server).await;
    let b_id = b.device_id();
    let approval = a
        .begin_approval(b_id, Duration::from_secs(3))
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
        matches!(approved, Err(PairingError::Unconfirmed { .. })),
        "{approved:?}"
    );
}

/// A member of the test-made account: its keys, held by the test.
struct Member {
    sign: SigningKey,
    kx: KxSecretKey,
    id: DeviceId,
}

impl Member {
    fn new() -> Self {
        let sign = SigningKey::generate();
        let id = DeviceId(sealsync_crypto::device_id(&sign.verifying_key()));
        Member {
            sign,
            kx: KxSecretKey::generate(),
            id,
        }
    }

    fn keys(&self) -> DeviceKeys {
        DeviceKeys::new(self.sign.verifying_key(), self.kx.public_key())
    }
}

/// Stores `entry` as roster row `seq` of "acme" in the server's database.
fn store_entry(server: &TestServer, seq: u64, subject: DeviceId, entry: &SignedRosterEntry) {
    db(server)
        .execute(
            "INSERT INTO roster (account, seq, subject, hash, entry) VALUES ('acme', ?1, ?2, ?3, ?4)",
            rusqlite::params![
                seq,
                subject.0.to_vec(),
                roster_entry_hash(entry).to_vec(),
                entry.encode_to_vec()
            ],
        )
        .expect("store roster entry");
}

fn add(
    roster: &mut Roster,
    by: &Member,
    who: DeviceId,
    keys: &DeviceKeys,
    name: &str,
) -> SignedRosterEntry {
    let entry = roster.make_add(
        &by.sign,
        by.id,
        NewMember {
            device_id: who,
            sign_pk: &keys.sign_pk,
            kx_pk: &keys.kx_pk,
            name,
        },
        now_ms(),
    );
    roster.apply(&entry).expect("apply add");
    entry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_device_takes_the_keys_from_the_approvers_envelope_only() {
    // MS-15: another member of the account (here colluding with the server, which lists
    // its envelope first) seals other account keys to the new device. The new device
    // must take the keys of the approver it paired with, never the first envelope that
    // opens. The account (approver E, member C) is made by the test, which plays E.
    let server = TestServer::start().await;
    let (e, c) = (Member::new(), Member::new());
    let genesis = Roster::make_genesis(GenesisParams {
        account: "acme",
        signing: &e.sign,
        kx_pk: &e.kx.public_key(),
        name: "approver",
        recovery_pk: &SigningKey::generate().verifying_key(),
        recovery_salt: &[3; 16],
        recovery_kdf: KdfParams::FLOOR,
        now_ms: now_ms(),
    });
    let mut roster = Roster::from_genesis(&genesis, "acme").expect("genesis");
    store_entry(&server, 0, e.id, &genesis);
    let add_c = add(&mut roster, &e, c.id, &c.keys(), "other");
    store_entry(&server, 1, c.id, &add_c);

    let b = Replica::enroll(&server.home("b"), &server.bundle("acme"), opts("second"))
        .await
        .expect("enroll b")
        .replica;
    assert_eq!(b.status().expect("status").state, DeviceState::Pending);
    let b_id = b.device_id();
    let b_keys = enrolled_keys(&server, b_id);

    // E opens an attempt (the server would accept it from a member; the test writes it).
    let code = PairingCode::generate();
    let attempt = [5; 16];
    let (approver, start) =
        Approver::start(&code, "acme", attempt, e.keys(), b_id, 60_000, &[1; 32]);
    db(&server)
        .execute(
            "INSERT INTO pairings (account, device_id, attempt_id, approver, start, created_ms, expires_ms)
             VALUES ('acme', ?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                b_id.0.to_vec(),
                attempt.to_vec(),
                e.id.0.to_vec(),
                start.encode_to_vec(),
                now_ms(),
                now_ms() + 60_000
            ],
        )
        .expect("open attempt");

    let (good, bad) = (AccountKeys::generate(), AccountKeys::generate());
    let play_approver = async {
        let reply = reply_arrives(&server, b_id).await;
        let approved = approver.on_reply(&reply).expect("MAC_B verifies");
        let mut roster = roster.clone();
        let add_b = add(&mut roster, &e, b_id, &b_keys, "second");
        store_entry(&server, 2, b_id, &add_b);
        let member = roster.member(&b_id).expect("b is a member");
        let head = roster.head_hash();
        // C's envelope (other keys) is stored, and listed, before E's.
        for (by, keys) in [(&c, &bad), (&e, &good)] {
            let sealed = seal_envelope(&by.sign, by.id, member, "acme", head, keys)
                .expect("seal")
                .encode_to_vec();
            db(&server)
                .execute_batch(&format!(
                    "INSERT INTO envelopes (account, recipient, sender, hash, sealed, created_ms) VALUES ('acme', X'{}', X'{}', X'{}', X'{}', 0);",
                    hex(&b_id.0),
                    hex(&by.id.0),
                    hex(&sealsync_crypto::sha256(&sealed)),
                    hex(&sealed)
                ))
                .expect("store envelope");
        }
        let confirm = approved.confirm(&roster.genesis_hash(), &head);
        set_mailbox(&server, b_id, "confirm", &confirm.encode_to_vec());
    };
    let typed = code.display();
    let (joined, ()) = tokio::join!(b.join(&typed, Duration::from_secs(30)), play_approver);
    joined.expect("join");
    assert_eq!(b.status().expect("status").state, DeviceState::Trusted);

    // The collection id derives from the account keys the device took.
    b.put("notes", "k", b"v").expect("put");
    let cid: Vec<u8> = rusqlite::Connection::open(server.home("b").join("replica.db"))
        .expect("open replica db")
        .query_row(
            "SELECT cid FROM collections WHERE name = 'notes'",
            [],
            |r| r.get(0),
        )
        .expect("collection id");
    assert_eq!(cid, good.collection_id("acme", "notes").0.to_vec());
    assert_ne!(cid, bad.collection_id("acme", "notes").0.to_vec());
    server.stop().await;
}
