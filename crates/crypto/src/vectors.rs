//! Fixed test vectors pinning every derivation of suite 1.
//!
//! The expected values were computed independently with Python's `cryptography` 48.0
//! (Ed25519, X25519, HKDF, HMAC, AES-GCM, Argon2id) from the formulas in
//! `docs/protocol.md`; a change in any derivation breaks these tests.

use crate::*;

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn seed() -> [u8; 32] {
    core::array::from_fn(|i| i as u8)
}

#[test]
fn device_id_and_signature_vector() {
    let sk = SigningKey::from_seed(&seed());
    let vk = sk.verifying_key();
    assert_eq!(
        h(&vk.to_bytes()),
        "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    );
    assert_eq!(h(&device_id(&vk)), "cbfc99b3259907a61125f3691443bcf7");
    let sig = sk.sign(SigContext::Batch, b"header", b"body");
    assert_eq!(
        h(&sig),
        "682fdc37496348a3da77708b9faf9f2870ef59f5e898a8766c0b51def1f145dd\
         7c26e8929e4def017bfbe86d1666dab0d88513b70b672c09bba3be644a0cab05"
    );
    assert!(
        vk.verify(SigContext::Batch, b"header", b"body", &sig)
            .is_ok()
    );
}

#[test]
fn collection_id_and_key_vector() {
    let naming = SymmetricKey::from_bytes(&[0x22; 32]).unwrap();
    let root = SymmetricKey::from_bytes(&[0x11; 32]).unwrap();
    let cid = collection_id(&naming, "alice", "notes");
    assert_eq!(h(&cid), "2877e2a02461159cbc116ea073997706");
    let ck = collection_key(&root, "alice", &cid, 1);
    assert_eq!(
        h(ck.expose()),
        "185dc01446858281ae8fc63d8081a6aec9767f321b6ba6126e5dd29bbb466326"
    );
}

#[test]
fn object_key_vector() {
    let ck = SymmetricKey::from_bytes(
        &hex::decode("185dc01446858281ae8fc63d8081a6aec9767f321b6ba6126e5dd29bbb466326").unwrap(),
    )
    .unwrap();
    // Salt 0x33 * 32; values cross-checked with Python (hmac/hashlib HKDF, `cryptography`
    // AES-GCM).
    let salt = [0x33u8; 32];
    let ok = ObjectKey::derive(&ck, ObjectLabel::Batch, b"identity", &salt).unwrap();
    assert_eq!(
        h(&ok.commitment()),
        "6b0e86940a2d4b02d634cf9a80c25b658a7496cbbb6863cda6bed62cc1f18fcc"
    );
    let ct = ok.seal(b"hdr", b"hello");
    assert_eq!(h(&ct), "ee7a2b6d1dc0345c9d0c1ac715f9846caa93ed3540");
    assert_eq!(ok.open(&ok.commitment(), b"hdr", &ct).unwrap(), b"hello");
    let oc = ObjectKey::derive(&ck, ObjectLabel::Collection, b"identity", &salt).unwrap();
    assert_eq!(
        h(&oc.commitment()),
        "31f3480c7d51abcd375b096eef35b9bc7904af8724cee88d1f69c50316a684d3"
    );
}

#[test]
fn recovery_and_passphrase_vectors() {
    let text = "000G-40R4-0M30-E209-185G-R38E-1W81-24GK";
    let secret = RecoverySecret::parse(text).unwrap();
    assert_eq!(
        secret.expose(),
        &core::array::from_fn::<u8, 20, _>(|i| i as u8)
    );
    let rk = derive_recovery_keys(&secret, b"sealsync-salt-16", KdfParams::FLOOR).unwrap();
    assert_eq!(
        h(&rk.signing.verifying_key().to_bytes()),
        "7a7a29c0263415403d4e838c4cbbfc16c03d486847b1e7301bd4b22449d698f8"
    );
    assert_eq!(
        h(rk.blob_key.expose()),
        "5b7d4abc6a5ed8d8873ada8904e7dc22b114202114c15a3321780a326beea2f7"
    );
    let pk = passphrase_key(b"correct horse", b"sealsync-salt-16", KdfParams::FLOOR).unwrap();
    assert_eq!(
        h(pk.expose()),
        "5fcf0b45d10f3fd9469248fc1648ae2a9e4bef73c92877db729eb20e183ccfa5"
    );
}

#[test]
fn kx_public_key_vector() {
    let kx = KxSecretKey::from_bytes(&[0x44; 32]).public_key();
    assert_eq!(
        h(&kx.to_bytes()),
        "ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c1fff3e6b"
    );
}
