//! The pairing state machines: honest runs, wrong codes and substituted keys.

use sealsync_crypto::{KxSecretKey, SigningKey};

use super::*;

fn keys(seed: u8) -> DeviceKeys {
    DeviceKeys::new(
        SigningKey::from_seed(&[seed; 32]).verifying_key(),
        KxSecretKey::from_bytes(&[seed.wrapping_add(100); 32]).public_key(),
    )
}

const ACCOUNT: &str = "acme";

fn code() -> PairingCode {
    PairingCode::from_bytes([1, 2, 3, 4, 5])
}

fn begin(code_a: &PairingCode) -> (Approver, PairingStart) {
    Approver::start(
        code_a,
        ACCOUNT,
        [7; 16],
        keys(1),
        keys(2).device_id,
        60_000,
        &[11; 32],
    )
}

fn answer(code_b: &PairingCode, start: &PairingStart) -> (Joiner, PairingReply) {
    Joiner::on_start(code_b, ACCOUNT, &keys(2), "phone", start, &[12; 32]).unwrap()
}

#[test]
fn honest_pairing_confirms_keys_and_genesis() {
    let (a, start) = begin(&code());
    let (j, reply) = answer(&code(), &start);
    let approved = a.on_reply(&reply).unwrap();
    assert_eq!(approved.keys, keys(2));
    assert_eq!(approved.name, "phone");
    let confirm = approved.confirm(&[0x33; 32], &[0x44; 32]);
    let confirmed = j.on_confirm(&confirm).unwrap();
    assert_eq!(confirmed.genesis_hash, [0x33; 32]);
    assert_eq!(confirmed.roster_head, [0x44; 32]);
    assert_eq!(confirmed.approver, keys(1));
}

#[test]
fn wrong_code_is_found_by_the_approver_before_anything_is_sealed() {
    // MS-10: a reply made with another code fails MAC_B, so on_reply yields no keys.
    let (a, start) = begin(&code());
    let (_, reply) = answer(&PairingCode::from_bytes([1, 2, 3, 4, 6]), &start);
    assert_eq!(a.on_reply(&reply).unwrap_err(), PairingError::WrongCode);
}

#[test]
fn substituted_device_keys_are_refused() {
    // MS-10, MS-15: the server swaps the new device's kx key (it keeps the signing key,
    // so the device id still matches): MAC_B no longer verifies.
    let (a, start) = begin(&code());
    let (_, mut reply) = answer(&code(), &start);
    reply.kx_pk = keys(9).kx_pk.to_bytes().to_vec();
    assert_eq!(a.on_reply(&reply).unwrap_err(), PairingError::WrongCode);
    // Swapping the signing key changes the device id: refused before the MAC.
    let (a, start) = begin(&code());
    let (_, mut reply) = answer(&code(), &start);
    reply.sign_pk = keys(9).sign_pk.to_bytes().to_vec();
    assert!(matches!(
        a.on_reply(&reply).unwrap_err(),
        PairingError::Mismatch(_)
    ));
    // The name and the PAKE message are bound too.
    let (a, start) = begin(&code());
    let (_, mut reply) = answer(&code(), &start);
    reply.name = "evil".into();
    assert_eq!(a.on_reply(&reply).unwrap_err(), PairingError::WrongCode);
}

#[test]
fn substituted_approver_keys_are_refused() {
    // MS-10, MS-15: the server swaps the approver's kx key in the start message: the new
    // device's MAC_B covers the swapped key and the approver refuses it.
    let (a, mut start) = begin(&code());
    start.approver_kx_pk = keys(9).kx_pk.to_bytes().to_vec();
    let (_, reply) = answer(&code(), &start);
    assert_eq!(a.on_reply(&reply).unwrap_err(), PairingError::WrongCode);
}

#[test]
fn a_server_in_the_middle_on_both_sides_is_refused() {
    // MS-10, MS-15: the server runs its own SPAKE2 with each side, with a guessed code and
    // its own keys. Each honest side's MAC check fails.
    let guess = PairingCode::from_bytes([9, 9, 9, 9, 9]);
    let (a, start) = begin(&code());
    // Towards the approver: a reply from the server's SPAKE2 with the device's real
    // signing key (so the id matches) and its own kx key.
    let evil = DeviceKeys {
        kx_pk: keys(9).kx_pk,
        ..keys(2)
    };
    let (_, forged_reply) =
        Joiner::on_start(&guess, ACCOUNT, &evil, "phone", &start, &[13; 32]).unwrap();
    assert_eq!(
        a.on_reply(&forged_reply).unwrap_err(),
        PairingError::WrongCode
    );
    // Towards the new device: a start from the server's own approver keys.
    let (evil_a, evil_start) = Approver::start(
        &guess,
        ACCOUNT,
        [7; 16],
        keys(8),
        keys(2).device_id,
        0,
        &[14; 32],
    );
    let (j, reply) = answer(&code(), &evil_start);
    // The server cannot make MAC_B verify under its guess...
    assert_eq!(
        evil_a.on_reply(&reply).unwrap_err(),
        PairingError::WrongCode
    );
    // ...and a confirmation it makes with its own keys fails MAC_A on the device.
    let (evil_a, evil_start2) = Approver::start(
        &guess,
        ACCOUNT,
        [7; 16],
        keys(8),
        keys(2).device_id,
        0,
        &[14; 32],
    );
    assert_eq!(evil_start2.pake_msg, evil_start.pake_msg);
    let (_, guess_reply) =
        Joiner::on_start(&guess, ACCOUNT, &keys(2), "phone", &evil_start2, &[15; 32]).unwrap();
    let approved_by_evil = evil_a.on_reply(&guess_reply).unwrap();
    let forged = approved_by_evil.confirm(&[0x66; 32], &[0x77; 32]);
    assert_eq!(j.on_confirm(&forged).unwrap_err(), PairingError::WrongCode);
}

#[test]
fn confirmation_binds_genesis_and_head() {
    // MS-10, MS-11: the server cannot swap the confirmed genesis or head (a shadow
    // account) without breaking MAC_A.
    for (g, h) in [([0x34; 32], [0x44; 32]), ([0x33; 32], [0x45; 32])] {
        let (a, start) = begin(&code());
        let (j, reply) = answer(&code(), &start);
        let approved = a.on_reply(&reply).unwrap();
        let mut confirm = approved.confirm(&[0x33; 32], &[0x44; 32]);
        confirm.genesis_hash = g.to_vec();
        confirm.roster_head = h.to_vec();
        assert_eq!(j.on_confirm(&confirm).unwrap_err(), PairingError::WrongCode);
    }
}

#[test]
fn done_message_proves_the_new_device_confirmed_and_cannot_be_forged() {
    // MS-10: the approver reports a finished pairing only on the new device's MAC_D over
    // the genesis and head it confirmed; the server (which lacks mac_b) cannot make one.
    let (a, start) = begin(&code());
    let (j, reply) = answer(&code(), &start);
    let approved = a.on_reply(&reply).unwrap();
    let confirm = approved.confirm(&[0x33; 32], &[0x44; 32]);
    let confirmed = j.on_confirm(&confirm).unwrap();
    approved
        .verify_done(&[0x33; 32], &[0x44; 32], &confirmed.done)
        .unwrap();
    // For another head, another attempt, or with any other MAC, it fails.
    assert!(
        approved
            .verify_done(&[0x33; 32], &[0x45; 32], &confirmed.done)
            .is_err()
    );
    let mut other_attempt = confirmed.done.clone();
    other_attempt.attempt_id = vec![8; 16];
    assert_eq!(
        approved.verify_done(&[0x33; 32], &[0x44; 32], &other_attempt),
        Err(PairingError::Mismatch("done message of another attempt"))
    );
    // MAC_B itself (the reply's tag, which the server has seen) is not a valid MAC_D.
    let replayed = PairingDone {
        attempt_id: confirmed.done.attempt_id.clone(),
        mac: reply.mac,
    };
    assert_eq!(
        approved.verify_done(&[0x33; 32], &[0x44; 32], &replayed),
        Err(PairingError::Mismatch("done message with a wrong MAC"))
    );
    let mut flipped = confirmed.done;
    flipped.mac[0] ^= 1;
    assert!(
        approved
            .verify_done(&[0x33; 32], &[0x44; 32], &flipped)
            .is_err()
    );
}

#[test]
fn start_for_another_device_or_forged_approver_id_is_refused() {
    let (_, mut start) = begin(&code());
    start.device_id = keys(3).device_id.0.to_vec();
    assert!(matches!(
        Joiner::on_start(&code(), ACCOUNT, &keys(2), "phone", &start, &[1; 32]).unwrap_err(),
        PairingError::Mismatch(_)
    ));
    let (_, mut start) = begin(&code());
    start.approver_id = keys(3).device_id.0.to_vec();
    assert!(matches!(
        Joiner::on_start(&code(), ACCOUNT, &keys(2), "phone", &start, &[1; 32]).unwrap_err(),
        PairingError::Mismatch(_)
    ));
    let (_, mut start) = begin(&code());
    start.pake_msg.truncate(10);
    assert_eq!(
        Joiner::on_start(&code(), ACCOUNT, &keys(2), "phone", &start, &[1; 32]).unwrap_err(),
        PairingError::Malformed("PAKE message")
    );
}

#[test]
fn transcripts_are_length_prefixed_and_labelled() {
    let (a, d) = (keys(1), keys(2));
    let t = transcript_b(&TranscriptInputs {
        account: "ab",
        attempt_id: &[7; 16],
        approver: &a,
        device: &d,
        device_name: "n",
        pake_msg_a: b"A",
        pake_msg_b: b"B",
    });
    assert!(t.starts_with(b"sealsync/v1/pairing/transcript-b\0\0\0\0\x02ab"));
    assert_eq!(t.len(), 33 + 6 + 16 + 2 * 80 + 5 + 5 + 5);
    let ta = transcript_a(&t, &[1; 32], &[2; 32]);
    assert!(ta.starts_with(b"sealsync/v1/pairing/transcript-a\0"));
    assert_eq!(ta.len(), 33 + 4 + t.len() + 64);
}

#[test]
fn vectors_are_deterministic() {
    let (a, d) = (keys(1), keys(2));
    let inputs = VectorInputs {
        code: &code(),
        account: ACCOUNT,
        attempt_id: [7; 16],
        approver: &a,
        device: &d,
        device_name: "phone",
        seed_a: [11; 32],
        seed_b: [12; 32],
        genesis_hash: [0x33; 32],
        roster_head: [0x44; 32],
    };
    let one = pairing_vector(&inputs).unwrap();
    assert_eq!(one, pairing_vector(&inputs).unwrap());
    assert_eq!(one.mac_a.len(), 32);
    assert_ne!(one.mac_a, one.mac_b);
}
