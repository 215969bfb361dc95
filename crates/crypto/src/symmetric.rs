//! Symmetric keys: HKDF-SHA256 derivations (collection keys, per-object keys with key
//! commitment), HMAC-SHA256 blinded collection ids, and AES-256-GCM (aws-lc-rs).

use core::fmt;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, RandomizedNonceKey, UnboundKey};
use aws_lc_rs::hmac;
use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::CryptoError;
use crate::hash::{lp, random_array};

/// HKDF salt for every derivation of protocol version 1.
const HKDF_SALT: &[u8] = b"sealsync/v1";
/// AES-GCM nonce length.
const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;

/// HKDF-SHA256 with salt `"sealsync/v1"`.
fn hkdf(ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), ikm);
    // Invariant: every caller asks for 32 or 64 bytes, far below HKDF-SHA256's limit of
    // 255 * 32 = 8160 bytes, the only failure condition of `expand`.
    hk.expand(info, out)
        .expect("HKDF output length within 255 * HashLen");
}

/// A 256-bit symmetric key. Zeroized on drop; `Debug` prints no key material.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SymmetricKey {
    bytes: [u8; 32],
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKey(..)")
    }
}

impl SymmetricKey {
    /// A fresh key from the OS RNG.
    pub fn generate() -> Self {
        Self {
            bytes: random_array(),
        }
    }

    /// The key made of exactly these 32 bytes; any other length is [`CryptoError::InvalidKey`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::InvalidKey)?;
        Ok(Self { bytes })
    }

    /// The raw key bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.bytes
    }
}

/// `HKDF(ikm = root, info = "collection-key" || lp(account) || collection_id || u32be(epoch))`.
pub fn collection_key(
    root: &SymmetricKey,
    account: &str,
    collection_id: &[u8; 16],
    epoch: u32,
) -> SymmetricKey {
    let mut info = Vec::with_capacity(14 + 4 + account.len() + 16 + 4);
    info.extend_from_slice(b"collection-key");
    lp(&mut info, account.as_bytes());
    info.extend_from_slice(collection_id);
    info.extend_from_slice(&epoch.to_be_bytes());
    let mut out = SymmetricKey { bytes: [0u8; 32] };
    hkdf(&root.bytes, &info, &mut out.bytes);
    out
}

/// `HMAC-SHA256(naming_key, "sealsync/v1/collection-id" || lp(account) || lp(name))[..16]`.
pub fn collection_id(naming_key: &SymmetricKey, account: &str, name: &str) -> [u8; 16] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &naming_key.bytes);
    let mut msg = Vec::with_capacity(25 + 8 + account.len() + name.len());
    msg.extend_from_slice(b"sealsync/v1/collection-id");
    lp(&mut msg, account.as_bytes());
    lp(&mut msg, name.as_bytes());
    let tag = hmac::sign(&key, &msg);
    let mut id = [0u8; 16];
    id.copy_from_slice(&tag.as_ref()[..16]);
    id
}

/// The kind of object an [`ObjectKey`] encrypts; each has its own HKDF label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectLabel {
    /// A batch of mutations (label `"batch"`).
    Batch,
    /// A collection descriptor (label `"collection"`).
    Collection,
}

impl ObjectLabel {
    fn label(self) -> &'static [u8] {
        match self {
            ObjectLabel::Batch => b"batch",
            ObjectLabel::Collection => b"collection",
        }
    }
}

/// A per-object AES-256-GCM key plus its 32-byte key commitment. Zeroized on drop; `Debug`
/// prints no key material.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ObjectKey {
    key: [u8; 32],
    commitment: [u8; 32],
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObjectKey(..)")
    }
}

/// An AES-256-GCM key object for `bytes`.
fn aes_key(bytes: &[u8; 32]) -> LessSafeKey {
    // Invariant: `UnboundKey::new` fails only when the key length does not match the
    // algorithm; AES-256-GCM takes exactly 32 bytes.
    let unbound = UnboundKey::new(&aead::AES_256_GCM, bytes).expect("32-byte AES-256 key");
    LessSafeKey::new(unbound)
}

impl ObjectKey {
    /// `HKDF(ikm = collection_key, info = label || lp(identity))` -> 64 bytes, split into the
    /// AES key and the commitment.
    pub fn derive(collection_key: &SymmetricKey, label: ObjectLabel, identity: &[u8]) -> Self {
        let label = label.label();
        let mut info = Vec::with_capacity(label.len() + 4 + identity.len());
        info.extend_from_slice(label);
        lp(&mut info, identity);
        let mut okm = Zeroizing::new([0u8; 64]);
        hkdf(&collection_key.bytes, &info, okm.as_mut_slice());
        let mut out = ObjectKey {
            key: [0u8; 32],
            commitment: [0u8; 32],
        };
        out.key.copy_from_slice(&okm[..32]);
        out.commitment.copy_from_slice(&okm[32..]);
        out
    }

    /// The key commitment to put in the object's header.
    pub fn commitment(&self) -> [u8; 32] {
        self.commitment
    }

    /// AES-256-GCM with the all-zero nonce (the key is unique per object), `aad` = header.
    ///
    /// # Panics
    /// Panics if `plaintext` exceeds AES-GCM's limit of about 64 GiB, which the protocol's
    /// size limits rule out.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let key = aes_key(&self.key);
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        // Invariant: sealing fails only for inputs beyond GCM's ~2^36-byte limit, which the
        // protocol's message limits (a few MiB) rule out.
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0u8; NONCE_LEN]),
            Aad::from(aad),
            &mut buf,
        )
        .expect("AES-GCM input within size limit");
        buf
    }

    /// Checks `expected_commitment` in constant time first ([`CryptoError::Commitment`]),
    /// then opens ([`CryptoError::Decrypt`] on any failure).
    pub fn open(
        &self,
        expected_commitment: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        if expected_commitment.len() != self.commitment.len()
            || !bool::from(self.commitment.ct_eq(expected_commitment))
        {
            return Err(CryptoError::Commitment);
        }
        if ciphertext.len() < TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let key = aes_key(&self.key);
        let mut buf = ciphertext.to_vec();
        let len = key
            .open_in_place(
                Nonce::assume_unique_for_key([0u8; NONCE_LEN]),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// AES-256-GCM with a random 96-bit nonce; output `nonce || ciphertext || tag`. For data at
/// rest (device key store, local value encryption, recovery blob).
///
/// # Panics
/// Panics if `plaintext` exceeds AES-GCM's limit (about 64 GiB) or the RNG fails.
pub fn seal_random_nonce(key: &SymmetricKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    // Invariant: a 32-byte key always matches AES-256-GCM.
    let k = RandomizedNonceKey::new(&aead::AES_256_GCM, &key.bytes).expect("32-byte AES-256 key");
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    // Invariant: fails only for oversize input (ruled out by protocol limits) or RNG failure
    // (no safe fallback exists).
    let nonce = k
        .seal_in_place_append_tag(Aad::from(aad), &mut buf)
        .expect("AES-GCM seal with random nonce");
    let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&buf);
    out
}

/// Opens the output of [`seal_random_nonce`]; any failure is [`CryptoError::Decrypt`].
pub fn open_random_nonce(
    key: &SymmetricKey,
    aad: &[u8],
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if data.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Decrypt);
    }
    let (nonce, ct) = data.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
    let k = RandomizedNonceKey::new(&aead::AES_256_GCM, &key.bytes)
        .map_err(|_| CryptoError::Decrypt)?;
    let mut buf = Zeroizing::new(ct.to_vec());
    let len = k
        .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
        .map_err(|_| CryptoError::Decrypt)?
        .len();
    buf.truncate(len);
    Ok(buf)
}
