//! A roster chain from fixed seeds: the genesis, `ADD` entries (one signed by a member,
//! one by the recovery key) and a `COLLECTION` entry pinning a collection's descriptor
//! (sealed with a fixed salt), each with its encoded body, signature input, signature and
//! entry hash.

use serde_json::json;

use sealsync_core::{
    AccountKeys, DeviceId, GenesisParams, Hlc, NewMember, Policy, Roster, descriptor_hash,
    roster_entry_hash, seal_descriptor_with_salt,
};
use sealsync_crypto::{
    KdfParams, KxSecretKey, SigContext, SigningKey, device_id, sha256, signed_message,
};
use sealsync_proto::{RosterEntryBody, RosterOp, SignedRosterEntry};

use crate::{Family, counting, h, lp, vector};

const ACCOUNT: &str = "alice";

fn entry_vector(
    name: &str,
    e: &SignedRosterEntry,
    signer: &str,
    inputs: serde_json::Value,
) -> serde_json::Value {
    let msg = signed_message(SigContext::Roster, &e.body, &[]);
    let hash_input = [
        b"sealsync/v1/roster-entry".as_slice(),
        &lp(&e.body),
        &e.signature,
    ]
    .concat();
    assert_eq!(sha256(&hash_input), roster_entry_hash(e));
    vector(
        name,
        inputs,
        json!({ "body": h(&e.body), "signed_message": h(&msg), "signer": signer,
                "entry_hash_input": h(&hash_input) }),
        json!({ "signature": h(&e.signature), "signed_roster_entry": h(sealsync_proto::encode(e)),
                "entry_hash": h(roster_entry_hash(e)) }),
    )
}

/// The family.
pub fn family() -> Family {
    let dev = |i: u8| SigningKey::from_seed(&counting::<32>(i * 32));
    let kx = |i: u8| KxSecretKey::from_bytes(&[0x40 + i; 32]);
    let (d0, d1, d2) = (dev(0), dev(1), dev(2));
    let recovery = SigningKey::from_seed(&[0x77; 32]);
    let salt = counting::<16>(0xc0);
    let genesis = Roster::make_genesis(GenesisParams {
        account: ACCOUNT,
        signing: &d0,
        kx_pk: &kx(0).public_key(),
        name: "laptop",
        recovery_pk: &recovery.verifying_key(),
        recovery_salt: &salt,
        recovery_kdf: KdfParams::DEFAULT,
        now_ms: 1_700_000_000_000,
    });
    let mut roster = Roster::from_genesis(&genesis, ACCOUNT).expect("valid genesis");
    let key_inputs = |i: u8, s: &SigningKey| {
        json!({ "ed25519_seed": h(counting::<32>(i * 32)), "x25519_secret": h([0x40 + i; 32]),
                "sign_pk": h(s.verifying_key().to_bytes()), "kx_pk": h(kx(i).public_key().to_bytes()),
                "device_id": h(device_id(&s.verifying_key())) })
    };
    let mut vectors = vec![entry_vector(
        "genesis",
        &genesis,
        "subject (self-signed)",
        json!({ "account": ACCOUNT, "seq": 0, "op": "GENESIS (1)", "subject": key_inputs(0, &d0),
                "subject_name": "laptop", "recovery_pk": h(recovery.verifying_key().to_bytes()),
                "recovery_ed25519_seed": h([0x77; 32]), "recovery_salt": h(salt),
                "recovery_kdf": { "m_kib": KdfParams::DEFAULT.m_kib, "t_cost": KdfParams::DEFAULT.t_cost, "p_cost": KdfParams::DEFAULT.p_cost },
                "epoch": 1, "created_ms": 1_700_000_000_000u64, "prev_hash": h([0u8; 32]) }),
    )];

    let head = roster.head_hash();
    let add1 = roster.make_add(
        &d0,
        DeviceId(device_id(&d0.verifying_key())),
        NewMember {
            device_id: DeviceId(device_id(&d1.verifying_key())),
            sign_pk: &d1.verifying_key(),
            kx_pk: &kx(1).public_key(),
            name: "phone",
        },
        1_700_000_100_000,
    );
    roster.apply(&add1).expect("valid add");
    vectors.push(entry_vector(
        "add-by-member",
        &add1,
        "device 0 (a member)",
        json!({ "account": ACCOUNT, "seq": 1, "op": "ADD (2)", "prev_hash": h(head),
                "subject": key_inputs(1, &d1), "subject_name": "phone",
                "signer_device_id": h(device_id(&d0.verifying_key())), "epoch": 1,
                "created_ms": 1_700_000_100_000u64 }),
    ));

    let head = roster.head_hash();
    let add2 = roster.make_add_by_recovery(
        &recovery,
        NewMember {
            device_id: DeviceId(device_id(&d2.verifying_key())),
            sign_pk: &d2.verifying_key(),
            kx_pk: &kx(2).public_key(),
            name: "tablet",
        },
        1_700_000_200_000,
    );
    roster.apply(&add2).expect("valid recovery add");
    vectors.push(entry_vector(
        "add-by-recovery-key",
        &add2,
        "the recovery key (signer_device_id empty)",
        json!({ "account": ACCOUNT, "seq": 2, "op": "ADD (2)", "prev_hash": h(head),
                "subject": key_inputs(2, &d2), "subject_name": "tablet", "signer_device_id": "",
                "epoch": 1, "created_ms": 1_700_000_200_000u64 }),
    ));
    // COLLECTION: device 0 pins its descriptor of "notes".
    let keys_msg = sealsync_proto::AccountKeys {
        naming_key: vec![0x22; 32],
        epochs: vec![sealsync_proto::EpochKey {
            epoch: 1,
            root_key: vec![0x11; 32],
        }],
    };
    let keys = AccountKeys::decode(&sealsync_proto::encode(&keys_msg)).expect("valid keys");
    let d0_id = DeviceId(device_id(&d0.verifying_key()));
    let dsalt = counting::<32>(0xb0);
    let hlc = Hlc(1_700_000_000_000u64 << 16);
    let (_, descriptor) = seal_descriptor_with_salt(
        &d0,
        d0_id,
        ACCOUNT,
        &keys,
        "notes",
        Policy::Fields,
        hlc,
        &dsalt,
    )
    .expect("seals");
    let cid = keys.collection_id(ACCOUNT, "notes");
    let head = roster.head_hash();
    let pin = roster
        .make_collection_pin(&d0, d0_id, &descriptor, 1_700_000_300_000)
        .expect("descriptor decodes");
    roster.apply(&pin).expect("valid pin");
    let body: RosterEntryBody = sealsync_proto::decode(&pin.body).expect("decodes");
    assert_eq!(body.op, RosterOp::Collection as i32);
    assert_eq!(body.seq, 3);
    assert_eq!(body.prev_hash, head.to_vec());
    assert_eq!(body.collection_id, cid.0.to_vec());
    assert_eq!(body.descriptor, sealsync_proto::encode(&descriptor));
    assert!(body.subject_device_id.is_empty() && body.subject_sign_pk.is_empty());
    let pinned = roster.collection_pin(&cid).expect("pinned");
    assert_eq!(pinned.author, d0_id);
    assert_eq!(pinned.descriptor_hash, descriptor_hash(&descriptor));
    let dmsg = signed_message(
        SigContext::Collection,
        &descriptor.header,
        &descriptor.ciphertext,
    );
    assert_eq!(pinned.descriptor_hash, sha256(&dmsg));
    vectors.push(entry_vector(
        "collection-pin",
        &pin,
        "device 0 (a member, the descriptor's author)",
        json!({ "account": ACCOUNT, "seq": 3, "op": "COLLECTION (3)", "prev_hash": h(head),
                "signer_device_id": h(d0_id.0), "epoch": 1, "created_ms": 1_700_000_300_000u64,
                "collection_id": h(cid.0),
                "descriptor": { "name": "notes", "policy": "fields", "hlc": hlc.0,
                                "salt": h(dsalt), "ed25519_seed": h(counting::<32>(0)),
                                "account_keys": { "naming_key": h(&keys_msg.naming_key),
                                                  "root_key_epoch_1": h(&keys_msg.epochs[0].root_key) },
                                "sealed": h(sealsync_proto::encode(&descriptor)),
                                "descriptor_hash": h(descriptor_hash(&descriptor)) } }),
    ));

    vectors.push(vector(
        "chain-head",
        json!({ "entries": ["genesis", "add-by-member", "add-by-recovery-key", "collection-pin"] }),
        json!({ "genesis_hash": h(roster.genesis_hash()) }),
        json!({ "head_hash": h(roster.head_hash()), "members": roster.members().count(),
                "pinned_collections": [h(cid.0)] }),
    ));

    Family {
        name: "roster",
        description: "A roster chain from fixed seeds: genesis, an ADD signed by a member, \
                      an ADD signed by the recovery key and a COLLECTION entry pinning a \
                      collection descriptor. Signature input: \"sealsync/v1/roster\" \
                      || 0x00 || u64be(len(body)) || body; entry hash: SHA-256(\
                      \"sealsync/v1/roster-entry\" || lp(body) || signature). docs/protocol.md, \
                      section Roster.",
        vectors,
    }
}
