//! Sealed objects in the current format: two chained batches, a collection descriptor, and
//! a recovery blob (sealed here with an explicit nonce, then opened by the code).
//!
//! Batches and descriptors are deterministic (object keys come from the identity, the nonce
//! is all zero, Ed25519 is deterministic). The recovery blob's nonce is random when the code
//! seals, so the vector fixes one and checks that `open_recovery_blob` opens the result.

use serde_json::json;

use sealsync_core::{
    AccountKeys, BatchDraft, DeviceId, GenesisParams, Hlc, Policy, Roster, batch_hash,
    open_descriptor, open_recovery_blob, seal_batch, seal_descriptor,
};
use sealsync_crypto::{
    KdfParams, KxSecretKey, ObjectKey, ObjectLabel, RecoverySecret, SigContext, SigningKey,
    derive_recovery_keys, device_id, signed_message,
};
use sealsync_proto::{Mutation, MutationList, RecoveryBlob, RecoveryHeader};

use crate::{Family, counting, h, lp, vector};

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
        let plaintext = sealsync_proto::encode(&MutationList {
            mutations: mutations.clone(),
        });
        let sb = seal_batch(
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
        let ok = ObjectKey::derive(&ck, ObjectLabel::Batch, &identity);
        assert_eq!(ok.commitment().to_vec(), sb.header.key_commitment);
        assert_eq!(ok.seal(&sb.sealed.header, &plaintext), sb.sealed.ciphertext);
        let msg = signed_message(SigContext::Batch, &sb.sealed.header, &sb.sealed.ciphertext);
        assert_eq!(sb.hash, sealsync_crypto::sha256(&msg));
        assert_eq!(sb.hash, batch_hash(&sb.sealed));
        vectors.push(vector(
            &format!("batch-seq-{seq}"),
            json!({ "account": ACCOUNT, "account_keys": keys_json, "collection_name": "notes",
                    "ed25519_seed": h(counting::<32>(0)), "seq": seq, "prev_batch_hash": h(prev),
                    "key_epoch": 1, "roster_head": h(roster_head),
                    "mutations": mutations.iter().map(|m| json!({ "key": m.key, "hlc": m.hlc,
                        "deleted": m.deleted, "value": h(&m.value),
                        "supersedes": m.supersedes.iter().map(h).collect::<Vec<_>>() })).collect::<Vec<_>>() }),
            json!({ "device_id": h(dev.0), "collection_id": h(cid.0), "collection_key": h(ck.expose()),
                    "object_key_identity": h(&identity), "key_commitment": h(ok.commitment()),
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
    let (_, sealed) =
        seal_descriptor(&sk, dev, ACCOUNT, &keys, "notes", Policy::Fields, hlc).expect("seals");
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
    let ok = ObjectKey::derive(&ck, ObjectLabel::Collection, &identity);
    assert_eq!(ok.seal(&sealed.header, &plaintext), sealed.ciphertext);
    vectors.push(vector(
        "collection-descriptor",
        json!({ "account": ACCOUNT, "account_keys": keys_json, "name": "notes", "policy": "fields",
                "hlc": hlc.0, "ed25519_seed": h(counting::<32>(0)) }),
        json!({ "collection_id": h(cid.0), "object_key_identity": h(&identity),
                "key_commitment": h(ok.commitment()), "header": h(&sealed.header),
                "collection_info_plaintext": h(&plaintext), "aead_nonce": h([0u8; 12]),
                "signed_message": h(signed_message(SigContext::Collection, &sealed.header, &sealed.ciphertext)) }),
        json!({ "ciphertext": h(&sealed.ciphertext), "signature": h(&sealed.signature),
                "sealed": h(sealsync_proto::encode(&sealed)) }),
    ));

    // Recovery blob with a fixed nonce, opened by the code.
    let secret = RecoverySecret::parse("000G-40R4-0M30-E209-185G-R38E-1W81-24GK").expect("valid");
    let salt = b"sealsync-salt-16";
    let rk = derive_recovery_keys(&secret, salt, KdfParams::DEFAULT).expect("derives");
    let genesis_hash = roster.genesis_hash();
    let header = sealsync_proto::encode(&RecoveryHeader {
        suite: sealsync_crypto::SUITE_V1,
        account: ACCOUNT.into(),
        genesis_hash: genesis_hash.to_vec(),
    });
    let nonce = counting::<12>(0xa0);
    let plaintext = keys.encode();
    let aes = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, rk.blob_key.expose())
            .expect("32"),
    );
    let mut ct = plaintext.to_vec();
    aes.seal_in_place_append_tag(
        aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
        aws_lc_rs::aead::Aad::from(&header),
        &mut ct,
    )
    .expect("small input");
    let blob = RecoveryBlob {
        header: header.clone(),
        ciphertext: [nonce.as_slice(), &ct].concat(),
    };
    let opened = open_recovery_blob(&blob, &rk, ACCOUNT, genesis_hash).expect("the code opens it");
    assert_eq!(opened.encode().as_slice(), plaintext.as_slice());
    vectors.push(vector(
        "recovery-blob",
        json!({ "account": ACCOUNT, "genesis_hash": h(genesis_hash),
                "recovery_secret_text": "000G-40R4-0M30-E209-185G-R38E-1W81-24GK",
                "argon2_salt": h(salt), "account_keys": keys_json, "nonce": h(nonce) }),
        json!({ "recovery_blob_key": h(rk.blob_key.expose()), "header": h(&header),
                "account_keys_plaintext": h(plaintext.as_slice()), "aead_aad": "header" }),
        json!({ "ciphertext": h(&blob.ciphertext), "ciphertext_layout": "nonce (12) || AES-256-GCM ciphertext || tag (16)",
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
