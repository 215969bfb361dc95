//! Key and id derivations: device id, blinded collection id, collection key, object keys
//! with their key commitment, and the Argon2id recovery and passphrase keys.

use hkdf::Hkdf;
use serde_json::json;
use sha2::Sha256;

use sealsync_crypto::{
    KdfParams, ObjectKey, ObjectLabel, RecoverySecret, SigningKey, SymmetricKey, argon2id,
    collection_id, collection_key, derive_recovery_keys, device_id, passphrase_key, sha256,
};

use crate::{Family, counting, h, lp, vector};

/// HKDF-SHA256 salt of every HKDF derivation.
const SALT: &[u8] = b"sealsync/v1";

/// HKDF-SHA256 with the protocol salt, built from the `hkdf` crate (not the code's helper).
pub(crate) fn hkdf(ikm: &[u8], info: &[u8], out: &mut [u8]) {
    Hkdf::<Sha256>::new(Some(SALT), ikm)
        .expand(info, out)
        .expect("short HKDF output");
}

/// The family.
pub fn family() -> Family {
    let mut vectors = Vec::new();

    // Device id.
    for seed in [counting::<32>(0), [0xa5; 32]] {
        let pk = SigningKey::from_seed(&seed).verifying_key().to_bytes();
        let input = [b"sealsync/v1/device-id".as_slice(), &pk].concat();
        let id = device_id(&SigningKey::from_seed(&seed).verifying_key());
        assert_eq!(id[..], sha256(&input)[..16]);
        vectors.push(vector(
            "device-id",
            json!({ "ed25519_seed": h(seed) }),
            json!({ "sign_pk": h(pk), "sha256_input": h(&input), "sha256": h(sha256(&input)) }),
            json!({ "device_id": h(id) }),
        ));
    }

    // Blinded collection id.
    let naming = [0x22; 32];
    for (account, name) in [("alice", "notes"), ("acme", "orders/2026"), ("acme", "é")] {
        let msg = [
            b"sealsync/v1/collection-id".as_slice(),
            &lp(account.as_bytes()),
            &lp(name.as_bytes()),
        ]
        .concat();
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &naming),
            &msg,
        );
        let cid = collection_id(
            &SymmetricKey::from_bytes(&naming).expect("32"),
            account,
            name,
        );
        assert_eq!(cid[..], tag.as_ref()[..16]);
        vectors.push(vector(
            "collection-id",
            json!({ "naming_key": h(naming), "account": account, "name": name }),
            json!({ "hmac_sha256_message": h(&msg), "hmac_sha256": h(tag.as_ref()) }),
            json!({ "collection_id": h(cid) }),
        ));
    }

    // Collection key.
    let root = [0x11; 32];
    for (account, cid, epoch) in [
        ("alice", counting::<16>(0x40), 1u32),
        ("alice", counting::<16>(0x40), 2),
        ("acme", [0xff; 16], 1),
    ] {
        let info = [
            b"collection-key".as_slice(),
            &lp(account.as_bytes()),
            &cid,
            &epoch.to_be_bytes(),
        ]
        .concat();
        let mut want = [0u8; 32];
        hkdf(&root, &info, &mut want);
        let got = collection_key(
            &SymmetricKey::from_bytes(&root).expect("32"),
            account,
            &cid,
            epoch,
        );
        assert_eq!(got.expose(), &want);
        vectors.push(vector(
            "collection-key",
            json!({ "root_key": h(root), "account": account, "collection_id": h(cid), "epoch": epoch }),
            json!({ "hkdf_salt": h(SALT), "hkdf_ikm": h(root), "hkdf_info": h(&info) }),
            json!({ "collection_key": h(got.expose()) }),
        ));
    }

    // Object keys and key commitments.
    let ck = [0x33; 32];
    let identity = [
        lp(b"alice"),
        counting::<16>(0x40).to_vec(),
        counting::<16>(0x80).to_vec(),
        7u64.to_be_bytes().to_vec(),
        1u32.to_be_bytes().to_vec(),
    ]
    .concat();
    let salt = counting::<32>(0xd0);
    for (label, which) in [
        ("batch", ObjectLabel::Batch),
        ("collection", ObjectLabel::Collection),
    ] {
        let info = [label.as_bytes(), &lp(&identity), &lp(&salt)].concat();
        let mut okm = [0u8; 64];
        hkdf(&ck, &info, &mut okm);
        let key = ObjectKey::derive(
            &SymmetricKey::from_bytes(&ck).expect("32"),
            which,
            &identity,
            &salt,
        )
        .expect("valid salt");
        assert_eq!(key.commitment()[..], okm[32..]);
        // The AES-256-GCM key is okm[..32]: sealing under it with the all-zero nonce gives the
        // code's ciphertext.
        let (aad, plaintext) = (b"header bytes".as_slice(), b"hello".as_slice());
        let ct = key.seal(aad, plaintext);
        let aes = aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &okm[..32])
                .expect("32"),
        );
        let mut buf = plaintext.to_vec();
        aes.seal_in_place_append_tag(
            aws_lc_rs::aead::Nonce::assume_unique_for_key([0; 12]),
            aws_lc_rs::aead::Aad::from(aad),
            &mut buf,
        )
        .expect("small input");
        assert_eq!(buf, ct);
        vectors.push(vector(
            &format!("object-key-{label}"),
            json!({ "collection_key": h(ck), "label": label, "identity": h(&identity),
                    "identity_layout": "lp(account) || collection_id || device_id || u64be(seq) || u32be(epoch)",
                    "salt": h(salt), "aead_aad": h(aad), "aead_plaintext": h(plaintext) }),
            json!({ "hkdf_salt": h(SALT), "hkdf_info": h(&info), "hkdf_okm_64": h(okm) }),
            json!({ "aes_256_gcm_key": h(&okm[..32]), "key_commitment": h(key.commitment()),
                    "aead_nonce": h([0u8; 12]), "aead_ciphertext_and_tag": h(&ct) }),
        ));
    }

    // Argon2id recovery keys and the key store passphrase key.
    let p = KdfParams::DEFAULT;
    let params = json!({ "m_kib": p.m_kib, "t_cost": p.t_cost, "p_cost": p.p_cost,
                         "version": "0x13", "variant": "argon2id", "secret_key": "", "associated_data": "" });
    let text = "000G-40R4-0M30-E209-185G-R38E-1W81-24GK";
    let secret = RecoverySecret::parse(text).expect("valid secret");
    let salt = b"sealsync-salt-16";
    let mut okm = [0u8; 64];
    argon2id(secret.expose(), salt, p, &mut okm).expect("valid params");
    let rk = derive_recovery_keys(&secret, salt, p).expect("valid params");
    assert_eq!(rk.signing.to_seed()[..], okm[..32]);
    assert_eq!(rk.blob_key.expose()[..], okm[32..]);
    vectors.push(vector(
        "recovery-keys",
        json!({ "recovery_secret_text": text, "argon2_password": h(secret.expose()),
                "argon2_salt": h(salt), "argon2_params": params, "argon2_output_len": 64 }),
        json!({ "argon2id_output": h(okm) }),
        json!({ "recovery_ed25519_seed": h(&okm[..32]),
                "recovery_pk": h(rk.signing.verifying_key().to_bytes()),
                "recovery_blob_key": h(&okm[32..]) }),
    ));
    let pass = b"correct horse";
    let pk = passphrase_key(pass, salt, p).expect("valid params");
    vectors.push(vector(
        "keystore-passphrase-key",
        json!({ "argon2_password": h(pass), "argon2_salt": h(salt), "argon2_params": params,
                "argon2_output_len": 32 }),
        json!({}),
        json!({ "wrapping_key": h(pk.expose()) }),
    ));

    Family {
        name: "derivations",
        description: "Device id, blinded collection id (HMAC-SHA256), collection key and \
                      object keys with key commitment (HKDF-SHA256, salt \"sealsync/v1\"), \
                      Argon2id recovery keys and key store passphrase key. docs/protocol.md, \
                      sections Identifiers, Keys and Recovery.",
        vectors,
    }
}
