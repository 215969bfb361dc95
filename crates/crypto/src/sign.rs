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
}

impl SigContext {
    /// The context label that starts every signed message of this kind.
    pub fn label(self) -> &'static str {
        match self {
            SigContext::Batch => "sealsync/v1/batch",
            SigContext::Collection => "sealsync/v1/collection",
            SigContext::Envelope => "sealsync/v1/envelope",
            SigContext::Roster => "sealsync/v1/roster",
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
