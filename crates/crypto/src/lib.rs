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
mod sign;
mod symmetric;
#[cfg(test)]
mod vectors;

pub use code::{approval_code, approval_code_matches};
pub use error::CryptoError;
pub use hash::{Hash32, lp, random_array, sha256, sha256_parts};
pub use kdf::{
    KdfParams, RecoveryKeys, RecoverySecret, argon2id, derive_recovery_keys, passphrase_key,
};
pub use kx::{KxPublicKey, KxSecretKey, hpke_open, hpke_seal};
pub use sign::{SigContext, SigningKey, VerifyingKey, device_id, signed_message};
pub use symmetric::{
    ObjectKey, ObjectLabel, SymmetricKey, collection_id, collection_key, open_random_nonce,
    seal_random_nonce,
};

/// The only cipher suite of protocol version 1.
pub const SUITE_V1: u32 = 1;
