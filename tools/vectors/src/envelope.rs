//! Key envelopes: the account keys HPKE-sealed to a roster device and signed by the sender.
//!
//! The code draws a fresh salt and a fresh HPKE ephemeral key for every envelope; the vector
//! uses `seal_envelope_for_vectors`, the code's deterministic entry point (fixed salt, and
//! the ephemeral key `DeriveKeyPair(ikmE)` of RFC 9180 from a fixed `ikmE`). The generator
//! rebuilds the header, the HPKE info, the ephemeral key pair (RFC 9180 section 7.1.3 with
//! HKDF-SHA256 from the `hkdf` crate) and the signed message from the formulas, asserts that
//! the code agrees, and checks that the recipient opens the envelope with `open_envelope`.

use hkdf::Hkdf;
use serde_json::json;
use sha2::Sha256;

use sealsync_core::{
    AccountKeys, DeviceId, GenesisParams, NewMember, PURPOSE_ACCOUNT_KEYS, Roster, open_envelope,
    seal_envelope_for_vectors,
};
use sealsync_crypto::{
    KdfParams, KxSecretKey, SUITE_V1, SigContext, SigningKey, device_id, hpke_open, signed_message,
};
use sealsync_proto::EnvelopeHeader;

use crate::{Family, counting, h, lp, vector};

const ACCOUNT: &str = "alice";

/// RFC 9180 `DeriveKeyPair(ikm)` for DHKEM(X25519, HKDF-SHA256): the 32-byte secret key.
fn derive_x25519_sk(ikm: &[u8]) -> [u8; 32] {
    let suite_id = [b"KEM".as_slice(), &0x0020u16.to_be_bytes()].concat();
    let labeled_ikm = [b"HPKE-v1".as_slice(), &suite_id, b"dkp_prk", ikm].concat();
    let prk = Hkdf::<Sha256>::new(Some(&[]), &labeled_ikm);
    let labeled_info = [&32u16.to_be_bytes()[..], b"HPKE-v1", &suite_id, b"sk"].concat();
    let mut sk = [0u8; 32];
    prk.expand(&labeled_info, &mut sk).expect("32 bytes");
    sk
}

/// The family.
pub fn family() -> Family {
    let keys_msg = sealsync_proto::AccountKeys {
        naming_key: vec![0x22; 32],
        epochs: vec![sealsync_proto::EpochKey {
            epoch: 1,
            root_key: vec![0x11; 32],
        }],
    };
    let keys = AccountKeys::decode(&sealsync_proto::encode(&keys_msg)).expect("valid keys");
    let sender_sk = SigningKey::from_seed(&counting::<32>(0));
    let recipient_sk = SigningKey::from_seed(&counting::<32>(32));
    let sender_kx = KxSecretKey::from_bytes(&[0x40; 32]);
    let recipient_kx = KxSecretKey::from_bytes(&[0x41; 32]);
    let sender = DeviceId(device_id(&sender_sk.verifying_key()));
    let recipient = DeviceId(device_id(&recipient_sk.verifying_key()));
    let genesis = Roster::make_genesis(GenesisParams {
        account: ACCOUNT,
        signing: &sender_sk,
        kx_pk: &sender_kx.public_key(),
        name: "laptop",
        recovery_pk: &SigningKey::from_seed(&[0x77; 32]).verifying_key(),
        recovery_salt: &counting::<16>(0xc0),
        recovery_kdf: KdfParams::DEFAULT,
        now_ms: 1_700_000_000_000,
    });
    let mut roster = Roster::from_genesis(&genesis, ACCOUNT).expect("valid genesis");
    let add = roster.make_add(
        &sender_sk,
        sender,
        NewMember {
            device_id: recipient,
            sign_pk: &recipient_sk.verifying_key(),
            kx_pk: &recipient_kx.public_key(),
            name: "phone",
        },
        1_700_000_100_000,
    );
    roster.apply(&add).expect("valid add");
    let roster_head = roster.head_hash();
    let member = roster.member(&recipient).expect("added").clone();
    let salt = counting::<32>(0x90);
    let ikm_e = counting::<32>(0xf0);
    let sealed = seal_envelope_for_vectors(
        &sender_sk,
        sender,
        &member,
        ACCOUNT,
        roster_head,
        &keys,
        &salt,
        &ikm_e,
    )
    .expect("seals");

    // Rebuild from the formulas.
    let header = sealsync_proto::encode(&EnvelopeHeader {
        suite: SUITE_V1,
        account: ACCOUNT.into(),
        sender_device_id: sender.0.to_vec(),
        recipient_device_id: recipient.0.to_vec(),
        epoch: 1,
        purpose: PURPOSE_ACCOUNT_KEYS.into(),
        roster_head: roster_head.to_vec(),
        salt: salt.to_vec(),
    });
    assert_eq!(sealed.header, header);
    let info = [
        b"sealsync/v1/envelope".as_slice(),
        &lp(ACCOUNT.as_bytes()),
        &recipient.0,
        &1u32.to_be_bytes(),
        &lp(&salt),
    ]
    .concat();
    let eph_sk = derive_x25519_sk(&ikm_e);
    let enc = KxSecretKey::from_bytes(&eph_sk).public_key().to_bytes();
    assert_eq!(sealed.ciphertext[..32], enc);
    let ct = &sealed.ciphertext[32..];
    let plaintext = keys.encode();
    let opened = hpke_open(&recipient_kx, &enc, &info, &header, ct).expect("HPKE opens");
    assert_eq!(opened.as_slice(), plaintext.as_slice());
    let msg = signed_message(SigContext::Envelope, &header, &sealed.ciphertext);
    sender_sk
        .verifying_key()
        .verify(
            SigContext::Envelope,
            &header,
            &sealed.ciphertext,
            &sealed.signature,
        )
        .expect("signature verifies");
    let keys_out = open_envelope(&sealed, recipient, &recipient_kx, &roster).expect("opens");
    assert_eq!(keys_out.encode().as_slice(), plaintext.as_slice());

    let vectors = vec![vector(
        "account-keys-envelope",
        json!({ "account": ACCOUNT,
                "account_keys": { "naming_key": h(&keys_msg.naming_key), "root_key_epoch_1": h(&keys_msg.epochs[0].root_key) },
                "sender_ed25519_seed": h(counting::<32>(0)), "sender_device_id": h(sender.0),
                "recipient_ed25519_seed": h(counting::<32>(32)), "recipient_device_id": h(recipient.0),
                "recipient_x25519_secret": h([0x41; 32]),
                "recipient_kx_pk": h(recipient_kx.public_key().to_bytes()),
                "epoch": 1, "purpose": PURPOSE_ACCOUNT_KEYS, "roster_head": h(roster_head),
                "roster_head_is": "hash of the ADD entry of the recipient (seq 1) after the sender's genesis",
                "salt": h(salt), "hpke_ikm_e": h(ikm_e) }),
        json!({ "header": h(&header), "hpke_mode": "base (0x00)",
                "hpke_suite": "DHKEM(X25519, HKDF-SHA256) 0x0020, HKDF-SHA256 0x0001, ChaCha20-Poly1305 0x0003",
                "hpke_info": h(&info), "hpke_aad": "header",
                "hpke_ephemeral_secret": h(eph_sk), "hpke_ephemeral_derivation": "RFC 9180 DeriveKeyPair(ikm_e)",
                "enc": h(enc), "account_keys_plaintext": h(plaintext.as_slice()),
                "signed_message": h(&msg) }),
        json!({ "hpke_ciphertext": h(ct), "ciphertext": h(&sealed.ciphertext),
                "ciphertext_layout": "enc (32) || HPKE ciphertext", "signature": h(&sealed.signature),
                "sealed": h(sealsync_proto::encode(&sealed)) }),
    )];

    Family {
        name: "envelope",
        description: "A key envelope (account keys HPKE-sealed to a roster device, signed by the \
                      sender) with a fixed salt and a fixed HPKE ephemeral ikmE; the recipient \
                      opens it. docs/protocol.md, section Key envelope.",
        vectors,
    }
}
