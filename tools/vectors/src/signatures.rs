//! Signature inputs (`context || 0x00 || u64be(len(header)) || header || body`) for each
//! context, Ed25519 signatures from fixed seeds, and the strict verification rules:
//! non-canonical `S`, small-order and non-canonical public keys are refused.

use serde_json::json;

use sealsync_crypto::{SigContext, SigningKey, VerifyingKey, signed_message};

use crate::{Family, counting, h, vector};

/// The group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// `a + b` over 256-bit little-endian numbers (no overflow for S + L with S < L).
fn add_le(a: &[u8], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = s as u8;
        carry = s >> 8;
    }
    out
}

/// The family.
pub fn family() -> Family {
    let mut vectors = Vec::new();
    let sk = SigningKey::from_seed(&counting::<32>(0));
    let vk = sk.verifying_key();
    let cases: [(SigContext, &[u8], &[u8]); 5] = [
        (SigContext::Batch, b"\x08\x01\x12\x05alice", b"ciphertext"),
        (SigContext::Collection, b"collection header", b"ciphertext"),
        (SigContext::Envelope, b"envelope header", b"hpke ciphertext"),
        (SigContext::Roster, b"\x08\x01\x12\x05alice\x18\x00", b""),
        (SigContext::Batch, b"", b""),
    ];
    for (ctx, header, body) in cases {
        let msg = signed_message(ctx, header, body);
        let layout = [
            ctx.label().as_bytes(),
            &[0],
            &(header.len() as u64).to_be_bytes(),
            header,
            body,
        ]
        .concat();
        assert_eq!(msg, layout);
        let sig = sk.sign(ctx, header, body);
        assert!(vk.verify(ctx, header, body, &sig).is_ok());
        vectors.push(vector(
            &format!("sign-{}", ctx.label().rsplit('/').next().unwrap_or("")),
            json!({ "ed25519_seed": h(counting::<32>(0)), "context": ctx.label(),
                    "header": h(header), "body": h(body) }),
            json!({ "sign_pk": h(vk.to_bytes()), "signed_message": h(&msg) }),
            json!({ "signature": h(sig), "valid": true }),
        ));
    }

    // A signature never verifies under another context (domain separation).
    let (header, body) = (b"same bytes".as_slice(), b"same body".as_slice());
    let sig = sk.sign(SigContext::Batch, header, body);
    assert!(
        vk.verify(SigContext::Collection, header, body, &sig)
            .is_err()
    );
    vectors.push(vector(
        "wrong-context",
        json!({ "sign_pk": h(vk.to_bytes()), "signed_as": SigContext::Batch.label(),
                "verified_as": SigContext::Collection.label(), "header": h(header), "body": h(body),
                "signature": h(sig) }),
        json!({ "signed_message_as_verified": h(signed_message(SigContext::Collection, header, body)) }),
        json!({ "valid": false }),
    ));

    // Non-canonical S: S + L is the same scalar mod L, and must be refused.
    let mut malleable = sig;
    malleable[32..].copy_from_slice(&add_le(&sig[32..], &L));
    assert!(
        vk.verify(SigContext::Batch, header, body, &malleable)
            .is_err()
    );
    vectors.push(vector(
        "non-canonical-s",
        json!({ "sign_pk": h(vk.to_bytes()), "context": SigContext::Batch.label(),
                "header": h(header), "body": h(body), "signature": h(malleable) }),
        json!({ "original_signature": h(sig), "s_plus_l": h(&malleable[32..]),
                "rule": "S (bytes 32..64, little-endian) must be < L = 2^252 + 27742317777372353535851937790883648493" }),
        json!({ "valid": false }),
    ));

    // Public keys that are refused: small order (identity, order 2, order 4, order 8) and a
    // non-canonical encoding (y >= p).
    let mut p_plus_1 = [0xff; 32];
    p_plus_1[0] = 0xee;
    p_plus_1[31] = 0x7f;
    let mut minus_one = [0xff; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    let order8 = hex::decode("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
        .expect("hex");
    for (name, key, why) in [
        (
            "identity",
            counting::<1>(1)
                .iter()
                .copied()
                .chain([0u8; 31])
                .collect::<Vec<u8>>(),
            "small order (1)",
        ),
        (
            "order-2",
            minus_one.to_vec(),
            "small order (2): the point (0, -1)",
        ),
        ("order-8", order8, "small order (8)"),
        (
            "non-canonical-y",
            p_plus_1.to_vec(),
            "y = p + 1 is not reduced mod p = 2^255 - 19",
        ),
    ] {
        assert!(VerifyingKey::from_bytes(&key).is_err(), "{name}");
        vectors.push(vector(
            &format!("public-key-{name}"),
            json!({ "sign_pk": h(&key) }),
            json!({ "reason": why }),
            json!({ "valid_public_key": false }),
        ));
    }
    vectors.push(vector(
        "public-key-valid",
        json!({ "sign_pk": h(vk.to_bytes()) }),
        json!({ "reason": "canonical encoding of a point of large order" }),
        json!({ "valid_public_key": VerifyingKey::from_bytes(&vk.to_bytes()).is_ok() }),
    ));

    Family {
        name: "signatures",
        description: "Ed25519 (RFC 8032) over context || 0x00 || u64be(len(header)) || header \
                      || body, one context per object kind, with strict verification: S < L, \
                      public keys canonical and not of small order, and the cofactorless check \
                      [S]B = R + [k]A with R also canonical and not of small order. \
                      docs/protocol.md, section Signatures.",
        vectors,
    }
}
