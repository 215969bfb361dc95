//! Drives `sealsync_core::verify_batch` (the one verification path of servers and devices)
//! with hostile input (MS-23, MS-41, BI-03, BI-06):
//!
//! * the fuzz input decoded as a `Sealed`;
//! * a genuine, validly signed batch with the fuzz input XOR-ed over its encoding.
//!
//! Nothing may panic, and whatever verifies must be exactly the genuine batch (signature
//! covers the exact header and ciphertext bytes, `verify_strict` leaves no malleability);
//! a verified batch must then open to the genuine mutations.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sealsync_core::{
    BatchDraft, ChainState, CollectionId, DeviceId, open_batch, seal_batch, verify_batch,
};
use sealsync_crypto::{SigningKey, SymmetricKey, VerifyingKey, device_id};
use sealsync_proto::{Mutation, Sealed, decode, encode};

struct Fixture {
    vk: VerifyingKey,
    device: DeviceId,
    collection_key: SymmetricKey,
    sealed: Sealed,
    encoded: Vec<u8>,
    mutations: Vec<Mutation>,
}

fn fixture() -> &'static Fixture {
    static FIX: OnceLock<Fixture> = OnceLock::new();
    FIX.get_or_init(|| {
        let signing = SigningKey::from_seed(&[7u8; 32]);
        let vk = signing.verifying_key();
        let device = DeviceId(device_id(&vk));
        let collection_key = SymmetricKey::from_bytes(&[9u8; 32]).expect("32-byte key");
        let base = 1_700_000_000_000u64 << 16;
        let mutations = vec![
            Mutation {
                key: "a".into(),
                hlc: base + 1,
                deleted: false,
                value: b"1".to_vec(),
                supersedes: vec![],
            },
            Mutation {
                key: "b".into(),
                hlc: base + 2,
                deleted: true,
                value: vec![],
                supersedes: vec![],
            },
        ];
        let draft = BatchDraft {
            account: "acct".into(),
            collection: CollectionId([3u8; 16]),
            device,
            seq: 1,
            prev_hash: [0u8; 32],
            epoch: 1,
            roster_head: [5u8; 32],
            mutations: mutations.clone(),
        };
        let sealed = seal_batch(draft, &signing, &collection_key)
            .expect("fixture batch seals")
            .sealed;
        let encoded = encode(&sealed);
        Fixture {
            vk,
            device,
            collection_key,
            sealed,
            encoded,
            mutations,
        }
    })
}

fn check(fx: &Fixture, sealed: &Sealed) {
    let key_for = |d: &DeviceId| (*d == fx.device).then_some(fx.vk);
    let Ok(v) = verify_batch(sealed, key_for) else {
        return;
    };
    assert!(sealed.header == fx.sealed.header, "forged header verified");
    assert!(
        sealed.ciphertext == fx.sealed.ciphertext,
        "forged ciphertext verified"
    );
    assert!(
        sealed.signature == fx.sealed.signature,
        "malleated signature verified"
    );
    let opened = open_batch(&v, sealed, &fx.collection_key, &ChainState::default())
        .expect("genuine batch opens");
    assert!(
        opened == fx.mutations,
        "genuine batch opened to other mutations"
    );
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    if let Ok(sealed) = decode::<Sealed>(data) {
        check(fx, &sealed);
    }
    let mut bytes = fx.encoded.clone();
    for (i, x) in data.iter().enumerate() {
        let n = bytes.len();
        bytes[i % n] ^= x;
    }
    if let Ok(sealed) = decode::<Sealed>(&bytes) {
        check(fx, &sealed);
    }
});
