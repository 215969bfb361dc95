//! X25519 key-exchange keys and HPKE (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305) for key envelopes.

use core::fmt;

use aws_lc_rs::agreement;
use hpke::{Deserializable as _, Kem as _, OpModeR, OpModeS, Serializable as _};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::CryptoError;
use crate::hash::random_array;

type HpkeKem = hpke::kem::X25519HkdfSha256;
type HpkeKdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::ChaCha20Poly1305;

/// An X25519 secret key (32 bytes, clamped by HPKE on use). Zeroized on drop; `Debug` prints
/// no key material.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KxSecretKey {
    bytes: [u8; 32],
}

impl fmt::Debug for KxSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KxSecretKey(..)")
    }
}

impl KxSecretKey {
    /// A fresh key from the OS RNG.
    pub fn generate() -> Self {
        Self {
            bytes: random_array(),
        }
    }

    /// The key with these 32 secret bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self { bytes: *bytes }
    }

    /// The 32 secret bytes, for storing the key.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.bytes)
    }

    fn hpke_key(&self) -> <HpkeKem as hpke::Kem>::PrivateKey {
        // Invariant: HPKE's X25519 private-key deserialisation accepts any 32 bytes (it
        // clamps them) and fails only on a length mismatch; `self.bytes` is exactly 32 bytes.
        <HpkeKem as hpke::Kem>::PrivateKey::from_bytes(&self.bytes)
            .expect("32-byte X25519 private key always deserialises")
    }

    /// The matching public key.
    pub fn public_key(&self) -> KxPublicKey {
        let pk = HpkeKem::sk_to_pk(&self.hpke_key());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&pk.to_bytes());
        KxPublicKey { bytes }
    }
}

/// An X25519 public key that is canonical and not of low order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KxPublicKey {
    bytes: [u8; 32],
}

impl fmt::Debug for KxPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KxPublicKey({})", hex::encode(self.bytes))
    }
}

/// Whether the little-endian field element `u` (top bit already known clear) is `>= p`,
/// p = 2^255 - 19.
fn is_non_canonical_u(u: &[u8; 32]) -> bool {
    u[31] == 0x7f && u[1..31].iter().all(|&b| b == 0xff) && u[0] >= 0xed
}

/// Whether `u` is a low-order point (order 1, 2, 4 or 8): a clamped scalar is a multiple of
/// the cofactor 8, so X25519 with any clamped scalar maps exactly the low-order points to the
/// all-zero output, which aws-lc refuses (RFC 7748 section 6.1).
fn is_low_order(u: &[u8; 32]) -> bool {
    // Any fixed scalar works: clamping makes it a multiple of 8 and never zero mod the
    // prime-order subgroup's order.
    const PROBE_SCALAR: [u8; 32] = [0x42; 32];
    let Ok(probe) = agreement::PrivateKey::from_private_key(&agreement::X25519, &PROBE_SCALAR)
    else {
        return true; // fail closed
    };
    let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, u);
    agreement::agree(&probe, peer, (), |_| Ok(())).is_err()
}

impl KxPublicKey {
    /// Refuses wrong length, a set top bit, non-canonical (u >= p) encodings and all-zero /
    /// low-order points (BI-20).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::InvalidKey)?;
        if arr[31] & 0x80 != 0 || is_non_canonical_u(&arr) || is_low_order(&arr) {
            return Err(CryptoError::InvalidKey);
        }
        Ok(Self { bytes: arr })
    }

    /// The 32-byte u-coordinate.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.bytes
    }
}

/// HPKE base-mode seal to `recipient`. Returns `(encapsulated_key, ciphertext)`.
pub fn hpke_seal(
    recipient: &KxPublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let pk = <HpkeKem as hpke::Kem>::PublicKey::from_bytes(&recipient.bytes)
        .map_err(|_| CryptoError::InvalidKey)?;
    let (enc, ct) = hpke::single_shot_seal::<HpkeAead, HpkeKdf, HpkeKem>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        aad,
    )
    .map_err(|_| CryptoError::Hpke)?;
    Ok((enc.to_bytes().to_vec(), ct))
}

/// HPKE base-mode open. Any failure (bad encapsulated key, wrong key, altered info, AAD or
/// ciphertext) is the single [`CryptoError::Decrypt`] (MS-05).
pub fn hpke_open(
    sk: &KxSecretKey,
    enc: &[u8],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let sk = sk.hpke_key();
    let enc =
        <HpkeKem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| CryptoError::Decrypt)?;
    let pt = hpke::single_shot_open::<HpkeAead, HpkeKdf, HpkeKem>(
        &OpModeR::Base,
        &sk,
        &enc,
        info,
        ciphertext,
        aad,
    )
    .map_err(|_| CryptoError::Decrypt)?;
    Ok(Zeroizing::new(pt))
}
