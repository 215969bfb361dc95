//! Sealsync cryptography: the only crate that touches primitives.
//!
//! Pure functions and key types, no I/O except the OS RNG. Suite 1 ([`SUITE_V1`]) is
//! Ed25519 (`verify_strict`), X25519 HPKE (RFC 9180 base mode with HKDF-SHA256 and
//! ChaCha20-Poly1305), HKDF-SHA256, HMAC-SHA256, AES-256-GCM (aws-lc-rs) and Argon2id.
//! Every secret type is zeroized on drop and prints no key material in `Debug`.
#![forbid(unsafe_code)]

mod code;
mod error;
mod hash;
mod kdf;
mod kx;
pub mod pake;
mod sign;
mod symmetric;
#[cfg(test)]
mod vectors;

pub use code::{PAIRING_CODE_BYTES, PAIRING_CODE_CHARS, PairingCode};
pub use error::CryptoError;
pub use hash::{Hash32, lp, random_array, sha256, sha256_parts};
pub use kdf::{
    KdfParams, RecoveryKeys, RecoverySecret, argon2id, derive_recovery_keys, passphrase_key,
};
pub use kx::{KxPublicKey, KxSecretKey, hpke_open, hpke_seal, hpke_seal_with_ikm_for_vectors};
pub use sign::{SigContext, SigningKey, VerifyingKey, device_id, signed_message};
pub use symmetric::{
    MAX_OBJECT_SALT_LEN, MIN_OBJECT_SALT_LEN, OBJECT_SALT_LEN, ObjectKey, ObjectLabel,
    SymmetricKey, check_object_salt, collection_id, collection_key, index_term, local_index_key,
    object_salt, open_random_nonce, seal_random_nonce,
};

/// The only cipher suite of protocol version 1.
pub const SUITE_V1: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::ZeroizeOnDrop;

    fn zeroized_on_drop<T: ZeroizeOnDrop>() {}

    #[test]
    fn every_secret_type_is_zeroize_on_drop() {
        zeroized_on_drop::<SigningKey>();
        zeroized_on_drop::<KxSecretKey>();
        zeroized_on_drop::<SymmetricKey>();
        zeroized_on_drop::<ObjectKey>();
        zeroized_on_drop::<RecoverySecret>();
        zeroized_on_drop::<RecoveryKeys>();
        zeroized_on_drop::<PairingCode>();
        zeroized_on_drop::<pake::PairingKeys>();
    }

    #[test]
    fn public_keys_debug_as_hex() {
        let vk = SigningKey::from_seed(&[1; 32]).verifying_key();
        assert_eq!(
            format!("{vk:?}"),
            format!("VerifyingKey({})", hex::encode(vk.to_bytes()))
        );
        let kx = KxSecretKey::from_bytes(&[1; 32]).public_key();
        assert_eq!(
            format!("{kx:?}"),
            format!("KxPublicKey({})", hex::encode(kx.to_bytes()))
        );
    }
}
