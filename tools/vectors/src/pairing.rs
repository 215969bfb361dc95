//! The pairing transcript: one honest SPAKE2 pairing between an approver (side A) and a new
//! device (side B) with fixed seeds, from `sealsync_core::pairing::pairing_vector`.
//!
//! Independently of the code's wrappers, the generator runs RustCrypto `spake2` itself with
//! the seed stream of docs/protocol.md (`SHA-256("sealsync/v1/pairing/scalar" || seed ||
//! u64be(i))`), so it learns the SPAKE2 output `K`; it derives the MAC keys with HKDF-SHA256
//! (`hkdf` crate), builds both transcripts from the formulas, computes the HMAC-SHA256 tags
//! with aws-lc-rs and asserts that messages, transcripts and MACs equal the code's.

use core::convert::Infallible;

use hkdf::Hkdf;
use serde_json::json;
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};

use sealsync_core::DeviceKeys;
use sealsync_core::pairing::{VectorInputs, pairing_vector};
use sealsync_crypto::{KxSecretKey, PairingCode, SigningKey, sha256};

use crate::{Family, counting, h, lp, vector};

const ACCOUNT: &str = "alice";

/// The seed stream of the protocol, rebuilt here.
struct SeedStream {
    seed: [u8; 32],
    buf: Vec<u8>,
    counter: u64,
}

impl rand::TryRng for SeedStream {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        while self.buf.len() < dst.len() {
            let block = [
                b"sealsync/v1/pairing/scalar".as_slice(),
                &self.seed,
                &self.counter.to_be_bytes(),
            ]
            .concat();
            self.buf.extend_from_slice(&sha256(&block));
            self.counter += 1;
        }
        let rest = self.buf.split_off(dst.len());
        dst.copy_from_slice(&self.buf);
        self.buf = rest;
        Ok(())
    }
}

impl rand::TryCryptoRng for SeedStream {}

fn stream(seed: [u8; 32]) -> SeedStream {
    SeedStream {
        seed,
        buf: Vec::new(),
        counter: 0,
    }
}

fn mac_key(k: &[u8], label: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(None, k)
        .expand(label, &mut out)
        .expect("32 bytes");
    out
}

fn hmac(key: &[u8; 32], msg: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::sign(&key, msg).as_ref().to_vec()
}

/// The family.
pub fn family() -> Family {
    let code_bytes = [0x12, 0x34, 0x56, 0x78, 0x9a];
    let code = PairingCode::from_bytes(code_bytes);
    let dev = |i: u8| {
        let sk = SigningKey::from_seed(&counting::<32>(i * 32));
        let kx = KxSecretKey::from_bytes(&[0x40 + i; 32]);
        (DeviceKeys::new(sk.verifying_key(), kx.public_key()), i)
    };
    let ((approver, ia), (device, ib)) = (dev(0), dev(1));
    let attempt_id = counting::<16>(0x70);
    let (seed_a, seed_b) = ([0xa1; 32], [0xb2; 32]);
    let genesis_hash = counting::<32>(0x10);
    let roster_head = counting::<32>(0x30);
    let out = pairing_vector(&VectorInputs {
        code: &code,
        account: ACCOUNT,
        attempt_id,
        approver: &approver,
        device: &device,
        device_name: "phone",
        seed_a,
        seed_b,
        genesis_hash,
        roster_head,
    })
    .expect("an honest pairing succeeds");

    // SPAKE2 from the formulas.
    let password_bytes = [b"sealsync/v1/pairing-code".as_slice(), &code_bytes].concat();
    let password = Password::new(&password_bytes);
    let id_a = Identity::new(&approver.device_id.0);
    let id_b = Identity::new(&device.device_id.0);
    let (sa, msg_a) =
        Spake2::<Ed25519Group>::start_a_with_rng(&password, &id_a, &id_b, stream(seed_a));
    let (sb, msg_b) =
        Spake2::<Ed25519Group>::start_b_with_rng(&password, &id_a, &id_b, stream(seed_b));
    assert_eq!(msg_a, out.pake_msg_a);
    assert_eq!(msg_b, out.pake_msg_b);
    assert_eq!((msg_a.len(), msg_a[0], msg_b[0]), (33, 0x41, 0x42));
    let k = sa.finish(&msg_b).expect("SPAKE2 A finishes");
    assert_eq!(k, sb.finish(&msg_a).expect("SPAKE2 B finishes"));
    let mac_a_key = mac_key(&k, b"sealsync/v1/pairing/mac-a");
    let mac_b_key = mac_key(&k, b"sealsync/v1/pairing/mac-b");

    let mut transcript_b = b"sealsync/v1/pairing/transcript-b\0".to_vec();
    transcript_b.extend_from_slice(&lp(ACCOUNT.as_bytes()));
    transcript_b.extend_from_slice(&attempt_id);
    for d in [&approver, &device] {
        transcript_b.extend_from_slice(&d.device_id.0);
        transcript_b.extend_from_slice(&d.sign_pk.to_bytes());
        transcript_b.extend_from_slice(&d.kx_pk.to_bytes());
    }
    transcript_b.extend_from_slice(&lp(b"phone"));
    transcript_b.extend_from_slice(&lp(&msg_a));
    transcript_b.extend_from_slice(&lp(&msg_b));
    let transcript_a = [
        b"sealsync/v1/pairing/transcript-a\0".as_slice(),
        &lp(&transcript_b),
        &genesis_hash,
        &roster_head,
    ]
    .concat();
    assert_eq!(transcript_b, out.transcript_b);
    assert_eq!(transcript_a, out.transcript_a);
    let mac_b = hmac(&mac_b_key, &transcript_b);
    let mac_a = hmac(&mac_a_key, &transcript_a);
    assert_eq!(mac_b, out.mac_b);
    assert_eq!(mac_a, out.mac_a);
    let transcript_d = [
        b"sealsync/v1/pairing/transcript-d\0".as_slice(),
        &lp(&transcript_a),
    ]
    .concat();
    assert_eq!(transcript_d, out.transcript_d);
    let mac_d = hmac(&mac_b_key, &transcript_d);
    assert_eq!(mac_d, out.mac_d);

    let keys_json = |d: &DeviceKeys, i: u8| {
        json!({ "ed25519_seed": h(counting::<32>(i * 32)), "x25519_secret": h([0x40 + i; 32]),
                "device_id": h(d.device_id.0), "sign_pk": h(d.sign_pk.to_bytes()),
                "kx_pk": h(d.kx_pk.to_bytes()) })
    };
    let vectors = vec![vector(
        "honest-pairing",
        json!({ "account": ACCOUNT, "code": h(code_bytes), "code_text": code.display().as_str(),
                "attempt_id": h(attempt_id), "approver": keys_json(&approver, ia),
                "device": keys_json(&device, ib), "device_name": "phone",
                "seed_a": h(seed_a), "seed_b": h(seed_b), "genesis_hash": h(genesis_hash),
                "roster_head": h(roster_head) }),
        json!({ "spake2": "RustCrypto spake2 0.5, Ed25519 group, A/B mode; idA = approver id, idB = device id",
                "spake2_password": h(&password_bytes),
                "scalar_stream_seed_a_block_0": h(sha256(&[b"sealsync/v1/pairing/scalar".as_slice(), &seed_a, &0u64.to_be_bytes()].concat())),
                "spake2_output_k": h(&k), "mac_a_key": h(mac_a_key), "mac_b_key": h(mac_b_key),
                "transcript_b": h(&transcript_b), "transcript_a": h(&transcript_a),
                "transcript_d": h(&transcript_d) }),
        json!({ "pake_msg_a": h(&msg_a), "pake_msg_b": h(&msg_b), "mac_b": h(&mac_b),
                "mac_a": h(&mac_a), "mac_d": h(&mac_d) }),
    )];

    Family {
        name: "pairing",
        description: "One honest pairing with fixed seeds: SPAKE2 messages (side A = approver, \
                      B = new device), the SPAKE2 output K, the MAC keys (HKDF-SHA256, no \
                      salt), the three transcripts and MAC_B / MAC_A / MAC_D (HMAC-SHA256). \
                      docs/protocol.md, section Pairing.",
        vectors,
    }
}
