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

/// Hands out the 32 bytes of an HPKE ephemeral `ikmE`, then zeros. DHKEM(X25519) encap
/// draws exactly 32 bytes (one `DeriveKeyPair(ikmE)`), so the zeros are never used.
#[derive(Zeroize, ZeroizeOnDrop)]
struct FixedIkm {
    ikm: [u8; 32],
    used: usize,
}

impl rand::TryRng for FixedIkm {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for byte in dst {
            *byte = self.ikm.get(self.used).copied().unwrap_or(0);
            self.used = self.used.saturating_add(1);
        }
        Ok(())
    }
}

impl rand::TryCryptoRng for FixedIkm {}

/// [`hpke_seal`] with the ephemeral key `DeriveKeyPair(ikm_e)` (RFC 9180 section 7.1.3)
/// instead of a fresh one: deterministic, for conformance test vectors only. Reusing an
/// `ikm_e` reuses the ephemeral key; devices never call this.
pub fn hpke_seal_with_ikm_for_vectors(
    recipient: &KxPublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    ikm_e: &[u8; 32],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let pk = <HpkeKem as hpke::Kem>::PublicKey::from_bytes(&recipient.bytes)
        .map_err(|_| CryptoError::InvalidKey)?;
    let mut rng = FixedIkm {
        ikm: *ikm_e,
        used: 0,
    };
    let (enc, ct) = hpke::single_shot_seal_with_rng::<HpkeAead, HpkeKdf, HpkeKem>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        aad,
        &mut rng,
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn rfc7748_public_key_vector() {
        // RFC 7748 section 6.1, Alice.
        let sk = KxSecretKey::from_bytes(&hex32(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        assert_eq!(
            hex::encode(sk.public_key().to_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn secret_key_round_trip() {
        let sk = KxSecretKey::generate();
        let again = KxSecretKey::from_bytes(&sk.to_bytes());
        assert_eq!(sk.public_key(), again.public_key());
        assert_ne!(sk.public_key(), KxSecretKey::generate().public_key());
        let pk = sk.public_key();
        assert_eq!(KxPublicKey::from_bytes(&pk.to_bytes()), Ok(pk));
    }

    #[test]
    fn debug_prints_no_key_material() {
        let sk = KxSecretKey::from_bytes(&[0x5a; 32]);
        let dbg = format!("{sk:?}");
        assert_eq!(dbg, "KxSecretKey(..)");
        assert!(!dbg.contains("5a5a"));
    }

    /// Low-order points on Curve25519 and their non-canonical aliases (libsodium's list).
    const LOW_ORDER: [&str; 7] = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];

    #[test]
    fn all_zero_and_low_order_points_refused() {
        // BI-20: all-zero and low-order X25519 points, with and without the top bit set.
        for k in LOW_ORDER {
            let mut b = hex32(k);
            assert_eq!(
                KxPublicKey::from_bytes(&b),
                Err(CryptoError::InvalidKey),
                "{k}"
            );
            b[31] |= 0x80;
            assert_eq!(
                KxPublicKey::from_bytes(&b),
                Err(CryptoError::InvalidKey),
                "{k}+hi"
            );
        }
    }

    #[test]
    fn low_order_probe_alone_catches_canonical_low_order_points() {
        // BI-20: the DH probe itself (not only the canonical/top-bit filters) refuses these.
        for k in &LOW_ORDER[..5] {
            assert!(is_low_order(&hex32(k)), "{k}");
        }
        let pk = KxSecretKey::from_bytes(&[7u8; 32]).public_key();
        assert!(!is_low_order(&pk.to_bytes()));
    }

    #[test]
    fn non_canonical_and_wrong_length_refused() {
        // BI-20: u >= p (not low order) and a set top bit are refused; bad lengths too.
        let non = hex32("f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        assert!(KxPublicKey::from_bytes(&non).is_err());
        let mut pk = KxSecretKey::from_bytes(&[7u8; 32]).public_key().to_bytes();
        pk[31] |= 0x80;
        assert!(KxPublicKey::from_bytes(&pk).is_err());
        assert!(KxPublicKey::from_bytes(&[9u8; 31]).is_err());
        assert!(KxPublicKey::from_bytes(&[9u8; 33]).is_err());
        assert!(KxPublicKey::from_bytes(&[]).is_err());
    }

    #[test]
    fn hpke_round_trip() {
        let sk = KxSecretKey::generate();
        let (enc, ct) = hpke_seal(&sk.public_key(), b"info", b"aad", b"secret keys").unwrap();
        assert_eq!(enc.len(), 32);
        assert_ne!(ct, b"secret keys");
        let pt = hpke_open(&sk, &enc, b"info", b"aad", &ct).unwrap();
        assert_eq!(pt.as_slice(), b"secret keys");
    }

    #[test]
    fn hpke_seals_are_randomised() {
        let pk = KxSecretKey::generate().public_key();
        let a = hpke_seal(&pk, b"i", b"a", b"p").unwrap();
        let b = hpke_seal(&pk, b"i", b"a", b"p").unwrap();
        assert_ne!(a.0, b.0);
        assert_ne!(a.1, b.1);
    }

    #[test]
    fn hpke_vector_seal_is_deterministic_and_opens() {
        // The vector-only entry point: the same ikmE gives the same enc and ciphertext, a
        // different one a different enc, and the result opens like any HPKE seal.
        let sk = KxSecretKey::from_bytes(&[3u8; 32]);
        let pk = sk.public_key();
        let a = hpke_seal_with_ikm_for_vectors(&pk, b"i", b"a", b"pt", &[9; 32]).unwrap();
        let b = hpke_seal_with_ikm_for_vectors(&pk, b"i", b"a", b"pt", &[9; 32]).unwrap();
        let c = hpke_seal_with_ikm_for_vectors(&pk, b"i", b"a", b"pt", &[8; 32]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.0, c.0);
        assert_eq!(
            hpke_open(&sk, &a.0, b"i", b"a", &a.1).unwrap().as_slice(),
            b"pt"
        );
    }

    #[test]
    fn hpke_wrong_key_info_aad_refused_uniformly() {
        // MS-01, MS-05, MS-15: wrong recipient, info (account/device/epoch) or AAD => the one
        // uniform Decrypt error.
        let sk = KxSecretKey::generate();
        let (enc, ct) = hpke_seal(&sk.public_key(), b"info", b"aad", b"pt").unwrap();
        let other = KxSecretKey::generate();
        assert_eq!(
            hpke_open(&other, &enc, b"info", b"aad", &ct).unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            hpke_open(&sk, &enc, b"infx", b"aad", &ct).unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            hpke_open(&sk, &enc, b"info", b"aax", &ct).unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            hpke_open(&sk, &enc[..31], b"info", b"aad", &ct).unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            hpke_open(&sk, &enc, b"info", b"aad", &ct[..ct.len() - 1]).unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            hpke_open(&sk, &enc, b"info", b"aad", &[]).unwrap_err(),
            CryptoError::Decrypt
        );
    }

    #[test]
    fn hpke_low_order_encapsulated_key_refused() {
        // BI-20: an all-zero / low-order ephemeral key gives an all-zero DH; refused.
        let sk = KxSecretKey::generate();
        let (_, ct) = hpke_seal(&sk.public_key(), b"i", b"a", b"p").unwrap();
        for k in LOW_ORDER {
            assert_eq!(
                hpke_open(&sk, &hex32(k), b"i", b"a", &ct).unwrap_err(),
                CryptoError::Decrypt
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn hpke_any_bit_flip_refused(
            pt in proptest::collection::vec(any::<u8>(), 0..200),
            in_enc in any::<bool>(),
            bit in any::<usize>(),
        ) {
            // MS-05, MS-16: any altered bit of enc or ciphertext => Decrypt.
            let sk = KxSecretKey::from_bytes(&[3u8; 32]);
            let (mut enc, mut ct) = hpke_seal(&sk.public_key(), b"i", b"a", &pt).unwrap();
            let opened = hpke_open(&sk, &enc, b"i", b"a", &ct).unwrap();
            prop_assert_eq!(opened.as_slice(), pt.as_slice());
            let target = if in_enc { &mut enc } else { &mut ct };
            let i = bit % (target.len() * 8);
            target[i / 8] ^= 1 << (i % 8);
            prop_assert_eq!(
                hpke_open(&sk, &enc, b"i", b"a", &ct).unwrap_err(),
                CryptoError::Decrypt
            );
        }
    }
}
