//! Ed25519 signatures with domain separation (one context label per object kind) and
//! strict verification (`verify_strict`, canonical encodings, no weak keys).

use core::fmt;

use ed25519_dalek::Signer as _;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::error::CryptoError;
use crate::hash::{random_array, sha256_parts};

/// The kind of object a signature is for; each has a distinct label so a signature made for
/// one kind never verifies as another (MS-13, MS-14).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigContext {
    /// A sealed batch of mutations.
    Batch,
    /// A collection descriptor.
    Collection,
    /// A key envelope (HPKE-sealed account keys).
    Envelope,
    /// A roster entry.
    Roster,
    /// An enrollment request: proof that the enrolling device holds its signing key.
    Enroll,
}

impl SigContext {
    /// The context label that starts every signed message of this kind.
    pub fn label(self) -> &'static str {
        match self {
            SigContext::Batch => "sealsync/v1/batch",
            SigContext::Collection => "sealsync/v1/collection",
            SigContext::Envelope => "sealsync/v1/envelope",
            SigContext::Roster => "sealsync/v1/roster",
            SigContext::Enroll => "sealsync/v1/enroll",
        }
    }
}

/// The exact bytes that are signed:
/// `label || 0x00 || u64be(len(header)) || header || body`.
pub fn signed_message(ctx: SigContext, header: &[u8], body: &[u8]) -> Vec<u8> {
    let label = ctx.label().as_bytes();
    let mut m = Vec::with_capacity(label.len() + 9 + header.len() + body.len());
    m.extend_from_slice(label);
    m.push(0);
    m.extend_from_slice(&(header.len() as u64).to_be_bytes());
    m.extend_from_slice(header);
    m.extend_from_slice(body);
    m
}

/// An Ed25519 signing key. Zeroized on drop; `Debug` prints no key material.
#[derive(Clone, ZeroizeOnDrop)]
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// A fresh key from the OS RNG.
    pub fn generate() -> Self {
        let seed = Zeroizing::new(random_array::<32>());
        Self::from_seed(&seed)
    }

    /// The key whose 32-byte seed (RFC 8032 secret key) is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            inner: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte seed, for storing the key.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.inner.to_bytes())
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            inner: self.inner.verifying_key(),
        }
    }

    /// Signs [`signed_message`]`(ctx, header, body)`.
    pub fn sign(&self, ctx: SigContext, header: &[u8], body: &[u8]) -> [u8; 64] {
        let msg = signed_message(ctx, header, body);
        self.inner.sign(&msg).to_bytes()
    }
}

/// An Ed25519 public key that is canonically encoded and not of small order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyingKey {
    inner: ed25519_dalek::VerifyingKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", hex::encode(self.inner.as_bytes()))
    }
}

/// The group order l = 2^252 + 27742317777372353535851937790883648493, little-endian.
const GROUP_ORDER_LE: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// Whether the little-endian scalar `s` is fully reduced (`s < l`). Public data, so the
/// comparison need not be constant time.
fn scalar_is_canonical(s: &[u8]) -> bool {
    for (a, b) in s.iter().rev().zip(GROUP_ORDER_LE.iter().rev()) {
        if a != b {
            return a < b;
        }
    }
    false // s == l
}

impl VerifyingKey {
    /// Refuses wrong length, non-canonical encodings and weak (small-order) keys (BI-06).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: &[u8; 32] = bytes.try_into().map_err(|_| CryptoError::InvalidKey)?;
        let inner =
            ed25519_dalek::VerifyingKey::from_bytes(arr).map_err(|_| CryptoError::InvalidKey)?;
        // ZIP-215 decompression accepts y >= p and "negative zero" x; re-encoding the point
        // must give back exactly the input.
        if inner.to_edwards().compress().as_bytes() != arr {
            return Err(CryptoError::InvalidKey);
        }
        if inner.is_weak() {
            return Err(CryptoError::InvalidKey);
        }
        Ok(Self { inner })
    }

    /// The 32-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.inner.to_bytes()
    }

    /// `verify_strict` over [`signed_message`]`(ctx, header, body)`; a signature of the wrong
    /// length or with a non-canonical `S` is refused.
    pub fn verify(
        &self,
        ctx: SigContext,
        header: &[u8],
        body: &[u8],
        sig: &[u8],
    ) -> Result<(), CryptoError> {
        let arr: &[u8; 64] = sig.try_into().map_err(|_| CryptoError::BadSignature)?;
        // verify_strict already refuses s >= l unless some crate in the build enables
        // ed25519-dalek's `legacy_compatibility`; check here so that cannot weaken us.
        if !scalar_is_canonical(&arr[32..]) {
            return Err(CryptoError::BadSignature);
        }
        let sig = ed25519_dalek::Signature::from_bytes(arr);
        let msg = signed_message(ctx, header, body);
        self.inner
            .verify_strict(&msg, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }
}

/// `H("sealsync/v1/device-id" || sign_pk)[..16]`: a self-certifying device id.
pub fn device_id(sign_pk: &VerifyingKey) -> [u8; 16] {
    let h = sha256_parts(&[b"sealsync/v1/device-id", &sign_pk.to_bytes()]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [SigContext; 5] = [
        SigContext::Batch,
        SigContext::Collection,
        SigContext::Envelope,
        SigContext::Roster,
        SigContext::Enroll,
    ];

    fn key() -> SigningKey {
        SigningKey::from_seed(&[9u8; 32])
    }

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn labels_are_distinct_and_versioned() {
        // MS-13: a distinct context string per signature kind.
        let labels: Vec<_> = ALL.iter().map(|c| c.label()).collect();
        for (i, a) in labels.iter().enumerate() {
            assert!(a.starts_with("sealsync/v1/"));
            for b in &labels[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(SigContext::Batch.label(), "sealsync/v1/batch");
        assert_eq!(SigContext::Roster.label(), "sealsync/v1/roster");
    }

    #[test]
    fn signed_message_layout() {
        let m = signed_message(SigContext::Envelope, b"hd", b"xyz");
        let mut want = b"sealsync/v1/envelope\x00".to_vec();
        want.extend_from_slice(&2u64.to_be_bytes());
        want.extend_from_slice(b"hdxyz");
        assert_eq!(m, want);
    }

    #[test]
    fn sign_verify_round_trip_every_context() {
        let sk = key();
        let vk = sk.verifying_key();
        for ctx in ALL {
            let sig = sk.sign(ctx, b"header", b"body");
            assert_eq!(vk.verify(ctx, b"header", b"body", &sig), Ok(()));
        }
    }

    #[test]
    fn wrong_context_refused() {
        // MS-13, MS-14, BI-06: a signature for one object kind never verifies as another.
        let sk = key();
        let vk = sk.verifying_key();
        for signed in ALL {
            let sig = sk.sign(signed, b"header", b"body");
            for checked in ALL.into_iter().filter(|c| *c != signed) {
                assert_eq!(
                    vk.verify(checked, b"header", b"body", &sig),
                    Err(CryptoError::BadSignature)
                );
            }
        }
    }

    #[test]
    fn header_body_boundary_is_bound() {
        // MS-22: moving bytes between header and body breaks the signature.
        let sk = key();
        let sig = sk.sign(SigContext::Batch, b"ab", b"c");
        let vk = sk.verifying_key();
        assert!(vk.verify(SigContext::Batch, b"a", b"bc", &sig).is_err());
        assert!(vk.verify(SigContext::Batch, b"abc", b"", &sig).is_err());
    }

    #[test]
    fn wrong_key_and_wrong_length_refused() {
        // MS-23: only the author's key verifies.
        let sk = key();
        let other = SigningKey::from_seed(&[10u8; 32]).verifying_key();
        let sig = sk.sign(SigContext::Batch, b"h", b"b");
        assert!(other.verify(SigContext::Batch, b"h", b"b", &sig).is_err());
        let vk = sk.verifying_key();
        assert!(
            vk.verify(SigContext::Batch, b"h", b"b", &sig[..63])
                .is_err()
        );
        let mut long = sig.to_vec();
        long.push(0);
        assert!(vk.verify(SigContext::Batch, b"h", b"b", &long).is_err());
        assert!(vk.verify(SigContext::Batch, b"h", b"b", &[]).is_err());
    }

    #[test]
    fn all_zero_signature_refused() {
        // BI-06: all-zero signature (R = small-order point, S = 0).
        let vk = key().verifying_key();
        assert_eq!(
            vk.verify(SigContext::Batch, b"h", b"b", &[0u8; 64]),
            Err(CryptoError::BadSignature)
        );
    }

    /// Adds the group order l to the little-endian scalar `s` (no overflow for s < 2^253).
    fn add_l(s: &mut [u8]) {
        let mut carry = 0u16;
        for (x, l) in s.iter_mut().zip(GROUP_ORDER_LE) {
            let v = u16::from(*x) + u16::from(l) + carry;
            *x = v as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0);
    }

    #[test]
    fn malleated_signature_refused() {
        // BI-06: S + l is the classic malleability; verify_strict plus our check refuse it.
        let sk = key();
        let vk = sk.verifying_key();
        let mut sig = sk.sign(SigContext::Batch, b"h", b"b");
        add_l(&mut sig[32..]);
        assert_eq!(
            vk.verify(SigContext::Batch, b"h", b"b", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn scalar_canonical_boundaries() {
        let mut l = GROUP_ORDER_LE;
        assert!(!scalar_is_canonical(&l));
        l[0] -= 1;
        assert!(scalar_is_canonical(&l));
        assert!(scalar_is_canonical(&[0u8; 32]));
        assert!(!scalar_is_canonical(&[0xff; 32]));
    }

    #[test]
    fn small_order_keys_refused() {
        // BI-06: all eight small-order points (and the all-zero key) are weak keys.
        for k in [
            "0100000000000000000000000000000000000000000000000000000000000000",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "0000000000000000000000000000000000000000000000000000000000000080",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        ] {
            assert_eq!(
                VerifyingKey::from_bytes(&hex32(k)),
                Err(CryptoError::InvalidKey),
                "{k}"
            );
        }
    }

    #[test]
    fn non_canonical_keys_refused() {
        // BI-06: non-canonical encodings of the identity (y = p + 1, x = -0).
        for k in [
            "0100000000000000000000000000000000000000000000000000000000000080",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ] {
            assert!(VerifyingKey::from_bytes(&hex32(k)).is_err(), "{k}");
        }
        // BI-06: for each small y with a point on the curve, the encoding of y + p decodes
        // (ZIP-215) to the same point but must be refused; the canonical one is accepted
        // unless it is weak.
        let mut seen = 0;
        for y in 2u8..19 {
            let mut canon = [0u8; 32];
            canon[0] = y;
            if ed25519_dalek::VerifyingKey::from_bytes(&canon).is_err() {
                continue;
            }
            let mut non = hex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
            non[0] += y;
            assert_eq!(VerifyingKey::from_bytes(&non), Err(CryptoError::InvalidKey));
            let dalek = ed25519_dalek::VerifyingKey::from_bytes(&canon).unwrap();
            assert_eq!(VerifyingKey::from_bytes(&canon).is_ok(), !dalek.is_weak());
            seen += 1;
        }
        assert!(seen > 0, "no non-canonical test point found");
    }

    #[test]
    fn key_from_bytes_round_trip_and_lengths() {
        let vk = key().verifying_key();
        assert_eq!(VerifyingKey::from_bytes(&vk.to_bytes()), Ok(vk));
        assert!(VerifyingKey::from_bytes(&vk.to_bytes()[..31]).is_err());
        assert!(VerifyingKey::from_bytes(&[]).is_err());
        assert!(VerifyingKey::from_bytes(&[1u8; 33]).is_err());
    }

    #[test]
    fn seed_round_trip_and_generate() {
        let sk = SigningKey::generate();
        let again = SigningKey::from_seed(&sk.to_seed());
        assert_eq!(sk.verifying_key(), again.verifying_key());
        assert_ne!(
            SigningKey::generate().verifying_key(),
            SigningKey::generate().verifying_key()
        );
    }

    #[test]
    fn debug_prints_no_key_material() {
        let sk = key();
        let dbg = format!("{sk:?}");
        assert_eq!(dbg, "SigningKey(..)");
        assert!(!dbg.contains(&hex::encode(*sk.to_seed())));
    }

    #[test]
    fn device_id_depends_on_key() {
        let a = device_id(&key().verifying_key());
        let b = device_id(&SigningKey::from_seed(&[10u8; 32]).verifying_key());
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn any_bit_flip_in_signed_data_refused(
            header in proptest::collection::vec(any::<u8>(), 0..64),
            body in proptest::collection::vec(any::<u8>(), 1..64),
            which in 0usize..3,
            bit in any::<usize>(),
        ) {
            // MS-23, BI-06: any change of header, body or signature is refused.
            let sk = key();
            let vk = sk.verifying_key();
            let mut sig = sk.sign(SigContext::Batch, &header, &body).to_vec();
            let (mut h, mut b) = (header, body);
            let target: &mut Vec<u8> = match which {
                0 if !h.is_empty() => &mut h,
                0 | 1 => &mut b,
                _ => &mut sig,
            };
            let i = bit % (target.len() * 8);
            target[i / 8] ^= 1 << (i % 8);
            prop_assert!(vk.verify(SigContext::Batch, &h, &b, &sig).is_err());
        }
    }
}
