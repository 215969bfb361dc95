//! Sealed objects in the current format: two chained batches, a collection descriptor, and
//! a recovery blob.
//!
//! Every object carries a fresh random salt in its signed header when the code seals it;
//! the vectors use the code's explicit-salt entry points (`seal_batch_with_salt`,
//! `seal_descriptor_with_salt`, `seal_recovery_blob_with_salt`) with fixed salts, so the
//! output is deterministic (the AEAD nonce is all zero, Ed25519 is deterministic). For
//! each object the generator also derives the object key and commitment from the formula
//! (HKDF-SHA256, `info = label || lp(identity) || lp(salt)`), seals with AES-256-GCM itself
//! and asserts that the code's header and ciphertext agree, and that the code opens it.

use serde_json::json;

use sealsync_core::{
    AccountKeys, BatchDraft, DeviceId, GenesisParams, Hlc, Policy, Roster, batch_hash,
    open_descriptor, open_recovery_blob, seal_batch_with_salt, seal_descriptor_with_salt,
    seal_recovery_blob_with_salt,
};
use sealsync_crypto::{
    KdfParams, KxSecretKey, RecoverySecret, SigContext, SigningKey, derive_recovery_keys,
    device_id, signed_message,
};
use sealsync_proto::{CollectionHeader, Mutation, MutationList, RecoveryHeader};

use crate::derivations::hkdf;
use crate::{Family, counting, h, lp, vector};

/// The object key from the formula: `(aes_key, commitment, hkdf_info)`.
fn object_key(
    ikm: &[u8],
    label: &str,
    identity: &[u8],
    salt: &[u8],
) -> ([u8; 32], [u8; 32], Vec<u8>) {
    let info = [label.as_bytes(), &lp(identity), &lp(salt)].concat();
    let mut okm = [0u8; 64];
    hkdf(ikm, &info, &mut okm);
    let (mut key, mut commitment) = ([0u8; 32], [0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    commitment.copy_from_slice(&okm[32..]);
    (key, commitment, info)
}

/// AES-256-GCM with the all-zero nonce, built from aws-lc-rs directly: ciphertext || tag.
fn aes_gcm_zero_nonce(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let aes = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, key).expect("32"),
    );
    let mut ct = plaintext.to_vec();
    aes.seal_in_place_append_tag(
        aws_lc_rs::aead::Nonce::assume_unique_for_key([0; 12]),
        aws_lc_rs::aead::Aad::from(aad),
        &mut ct,
    )
    .expect("small input");
    ct
}

const ACCOUNT: &str = "alice";

fn account_keys() -> (sealsync_proto::AccountKeys, AccountKeys) {
    let msg = sealsync_proto::AccountKeys {
        naming_key: vec![0x22; 32],
        epochs: vec![sealsync_proto::EpochKey {
            epoch: 1,
            root_key: vec![0x11; 32],
        }],
    };
    let keys = AccountKeys::decode(&sealsync_proto::encode(&msg)).expect("valid keys");
    (msg, keys)
}

/// The family.
pub fn family() -> Family {
    let (keys_msg, keys) = account_keys();
    let sk = SigningKey::from_seed(&counting::<32>(0));
    let dev = DeviceId(device_id(&sk.verifying_key()));
    let cid = keys.collection_id(ACCOUNT, "notes");
    let ck = keys.collection_key(ACCOUNT, &cid, 1).expect("epoch 1");
    let t = Hlc::from_parts(1_700_000_000_000, 0).0;
    let roster_head = [0x55; 32];
    let keys_json = json!({ "naming_key": h(&keys_msg.naming_key), "root_key_epoch_1": h(&keys_msg.epochs[0].root_key) });
    let mut vectors = Vec::new();

    let mut prev = [0u8; 32];
    let batches: [Vec<Mutation>; 2] = [
        vec![
            Mutation {
                key: "a".into(),
                hlc: t,
                deleted: false,
                value: b"hello".to_vec(),
                supersedes: vec![],
            },
            Mutation {
                key: "b".into(),
                hlc: t + 1,
                deleted: true,
                value: vec![],
                supersedes: vec![],
            },
        ],
        vec![Mutation {
            key: "a".into(),
            hlc: t + 2,
            deleted: false,
            value: b"{\"x\":1}".to_vec(),
            supersedes: vec![[t.to_be_bytes().as_slice(), &dev.0].concat()],
        }],
    ];
    for (i, mutations) in batches.into_iter().enumerate() {
        let seq = i as u64 + 1;
        let salt = counting::<32>(0x60 + 0x20 * i as u8);
        let plaintext = sealsync_proto::encode(&MutationList {
            mutations: mutations.clone(),
        });
        let sb = seal_batch_with_salt(
            BatchDraft {
                account: ACCOUNT.into(),
                collection: cid,
                device: dev,
                seq,
                prev_hash: prev,
                epoch: 1,
                roster_head,
                mutations: mutations.clone(),
            },
            &sk,
            &ck,
            &salt,
        )
        .expect("valid draft");
        let identity = [
            lp(ACCOUNT.as_bytes()),
            cid.0.to_vec(),
            dev.0.to_vec(),
            seq.to_be_bytes().to_vec(),
            1u32.to_be_bytes().to_vec(),
        ]
        .concat();
        let (aes_key, commitment, info) = object_key(ck.expose(), "batch", &identity, &salt);
        assert_eq!(sb.header.salt, salt.to_vec());
        assert_eq!(commitment.to_vec(), sb.header.key_commitment);
        assert_eq!(
            aes_gcm_zero_nonce(&aes_key, &sb.sealed.header, &plaintext),
            sb.sealed.ciphertext
        );
        let msg = signed_message(SigContext::Batch, &sb.sealed.header, &sb.sealed.ciphertext);
        assert_eq!(sb.hash, sealsync_crypto::sha256(&msg));
        assert_eq!(sb.hash, batch_hash(&sb.sealed));
        vectors.push(vector(
            &format!("batch-seq-{seq}"),
            json!({ "account": ACCOUNT, "account_keys": keys_json, "collection_name": "notes",
                    "ed25519_seed": h(counting::<32>(0)), "seq": seq, "prev_batch_hash": h(prev),
                    "key_epoch": 1, "roster_head": h(roster_head), "salt": h(salt),
                    "mutations": mutations.iter().map(|m| json!({ "key": m.key, "hlc": m.hlc,
                        "deleted": m.deleted, "value": h(&m.value),
                        "supersedes": m.supersedes.iter().map(h).collect::<Vec<_>>() })).collect::<Vec<_>>() }),
            json!({ "device_id": h(dev.0), "collection_id": h(cid.0), "collection_key": h(ck.expose()),
                    "object_key_identity": h(&identity), "object_key_hkdf_info": h(&info),
                    "object_key": h(aes_key), "key_commitment": h(commitment),
                    "hlc_max": sb.header.hlc_max, "header": h(&sb.sealed.header),
                    "mutation_list_plaintext": h(&plaintext), "aead_nonce": h([0u8; 12]),
                    "aead_aad": "header", "signed_message": h(&msg) }),
            json!({ "ciphertext": h(&sb.sealed.ciphertext), "signature": h(&sb.sealed.signature),
                    "sealed": h(sealsync_proto::encode(&sb.sealed)), "batch_hash": h(sb.hash) }),
        ));
        prev = sb.hash;
    }

    // Collection descriptor.
    let hlc = Hlc(t);
    let dsalt = counting::<32>(0xb0);
    let (_, sealed) = seal_descriptor_with_salt(
        &sk,
        dev,
        ACCOUNT,
        &keys,
        "notes",
        Policy::Fields,
        hlc,
        &dsalt,
    )
    .expect("seals");
    let genesis = Roster::make_genesis(GenesisParams {
        account: ACCOUNT,
        signing: &sk,
        kx_pk: &KxSecretKey::from_bytes(&[0x40; 32]).public_key(),
        name: "laptop",
        recovery_pk: &SigningKey::from_seed(&[0x77; 32]).verifying_key(),
        recovery_salt: &[0xc0; 16],
        recovery_kdf: KdfParams::DEFAULT,
        now_ms: 1,
    });
    let roster = Roster::from_genesis(&genesis, ACCOUNT).expect("genesis");
    let d = open_descriptor(&sealed, &roster, &keys, ACCOUNT).expect("opens");
    assert_eq!((d.name.as_str(), d.policy), ("notes", Policy::Fields));
    let identity = [
        lp(ACCOUNT.as_bytes()),
        cid.0.to_vec(),
        dev.0.to_vec(),
        hlc.0.to_be_bytes().to_vec(),
        1u32.to_be_bytes().to_vec(),
    ]
    .concat();
    let plaintext = sealsync_proto::encode(&sealsync_proto::CollectionInfo {
        name: "notes".into(),
        policy: "fields".into(),
    });
    let (aes_key, commitment, info) = object_key(ck.expose(), "collection", &identity, &dsalt);
    let dheader: CollectionHeader = sealsync_proto::decode(&sealed.header).expect("decodes");
    assert_eq!(dheader.salt, dsalt.to_vec());
    assert_eq!(dheader.key_commitment, commitment.to_vec());
    assert_eq!(
        aes_gcm_zero_nonce(&aes_key, &sealed.header, &plaintext),
        sealed.ciphertext
    );
    vectors.push(vector(
        "collection-descriptor",
        json!({ "account": ACCOUNT, "account_keys": keys_json, "name": "notes", "policy": "fields",
                "hlc": hlc.0, "ed25519_seed": h(counting::<32>(0)), "salt": h(dsalt) }),
        json!({ "collection_id": h(cid.0), "collection_key": h(ck.expose()),
                "object_key_identity": h(&identity), "object_key_hkdf_info": h(&info),
                "object_key": h(aes_key), "key_commitment": h(commitment), "header": h(&sealed.header),
                "collection_info_plaintext": h(&plaintext), "aead_nonce": h([0u8; 12]),
                "signed_message": h(signed_message(SigContext::Collection, &sealed.header, &sealed.ciphertext)) }),
        json!({ "ciphertext": h(&sealed.ciphertext), "signature": h(&sealed.signature),
                "sealed": h(sealsync_proto::encode(&sealed)) }),
    ));

    // Recovery blob with a fixed salt, opened by the code.
    let secret = RecoverySecret::parse("000G-40R4-0M30-E209-185G-R38E-1W81-24GK").expect("valid");
    let argon_salt = b"sealsync-salt-16";
    let rk = derive_recovery_keys(&secret, argon_salt, KdfParams::DEFAULT).expect("derives");
    let genesis_hash = roster.genesis_hash();
    let rsalt = counting::<32>(0xe0);
    let blob = seal_recovery_blob_with_salt(&keys, &rk, ACCOUNT, genesis_hash, &rsalt)
        .expect("valid salt");
    let identity = [lp(ACCOUNT.as_bytes()), genesis_hash.to_vec()].concat();
    let (aes_key, commitment, info) =
        object_key(rk.blob_key.expose(), "recovery", &identity, &rsalt);
    let header = sealsync_proto::encode(&RecoveryHeader {
        suite: sealsync_crypto::SUITE_V1,
        account: ACCOUNT.into(),
        genesis_hash: genesis_hash.to_vec(),
        salt: rsalt.to_vec(),
        key_commitment: commitment.to_vec(),
    });
    assert_eq!(blob.header, header);
    let plaintext = keys.encode();
    assert_eq!(
        aes_gcm_zero_nonce(&aes_key, &header, &plaintext),
        blob.ciphertext
    );
    let opened = open_recovery_blob(&blob, &rk, ACCOUNT, genesis_hash).expect("the code opens it");
    assert_eq!(opened.encode().as_slice(), plaintext.as_slice());
    vectors.push(vector(
        "recovery-blob",
        json!({ "account": ACCOUNT, "genesis_hash": h(genesis_hash),
                "recovery_secret_text": "000G-40R4-0M30-E209-185G-R38E-1W81-24GK",
                "argon2_salt": h(argon_salt), "account_keys": keys_json, "salt": h(rsalt) }),
        json!({ "recovery_blob_key": h(rk.blob_key.expose()), "object_key_identity": h(&identity),
                "object_key_hkdf_info": h(&info), "object_key": h(aes_key),
                "key_commitment": h(commitment), "header": h(&header),
                "account_keys_plaintext": h(plaintext.as_slice()), "aead_nonce": h([0u8; 12]),
                "aead_aad": "header" }),
        json!({ "ciphertext": h(&blob.ciphertext), "ciphertext_layout": "AES-256-GCM ciphertext || tag (16)",
                "recovery_blob": h(sealsync_proto::encode(&blob)) }),
    ));

    Family {
        name: "sealed",
        description: "Sealed objects in the format of this version: two chained batches, a \
                      collection descriptor and a recovery blob. docs/protocol.md, sections \
                      Keys, Signed objects and Recovery.",
        vectors,
    }
}
