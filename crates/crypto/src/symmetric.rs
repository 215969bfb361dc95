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

/// `HKDF(ikm = storage_key, info = "local-index-key")`: the key of a device's local field
/// index ([`index_term`]), derived from its local storage key so that it needs no storage of
/// its own and is separate from every other use of that key.
pub fn local_index_key(storage_key: &SymmetricKey) -> SymmetricKey {
    let mut out = SymmetricKey { bytes: [0u8; 32] };
    hkdf(&storage_key.bytes, b"local-index-key", &mut out.bytes);
    out
}

/// `HMAC-SHA256(index_key, "sealsync/v1/index-term" || lp(collection) || lp(field) ||
/// lp(value))`: the term under which a local field index stores a record whose `field`
/// holds `value` (its canonical encoding), so that the index holds no plaintext value.
pub fn index_term(
    index_key: &SymmetricKey,
    collection: &str,
    field: &str,
    value: &[u8],
) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &index_key.bytes);
    let mut msg = Vec::with_capacity(23 + 12 + collection.len() + field.len() + value.len());
    msg.extend_from_slice(b"sealsync/v1/index-term");
    lp(&mut msg, collection.as_bytes());
    lp(&mut msg, field.as_bytes());
    lp(&mut msg, value);
    let tag = hmac::sign(&key, &msg);
    let mut term = [0u8; 32];
    term.copy_from_slice(tag.as_ref());
    term
}

/// Length of the fresh random salt drawn for every sealed object (batch, descriptor,
/// recovery blob, key envelope): 256 bits, so two seals never share a key even when every
/// other identity field repeats (a home directory restored from a backup).
pub const OBJECT_SALT_LEN: usize = 32;
/// Shortest object salt a receiver accepts (128 bits).
pub const MIN_OBJECT_SALT_LEN: usize = 16;
/// Longest object salt a receiver accepts.
pub const MAX_OBJECT_SALT_LEN: usize = 64;

/// A fresh [`OBJECT_SALT_LEN`]-byte object salt from the OS RNG.
pub fn object_salt() -> [u8; OBJECT_SALT_LEN] {
    random_array()
}

/// Refuses an object salt outside [`MIN_OBJECT_SALT_LEN`]..=[`MAX_OBJECT_SALT_LEN`] bytes
/// ([`CryptoError::Salt`]).
pub fn check_object_salt(salt: &[u8]) -> Result<(), CryptoError> {
    if (MIN_OBJECT_SALT_LEN..=MAX_OBJECT_SALT_LEN).contains(&salt.len()) {
        Ok(())
    } else {
        Err(CryptoError::Salt)
    }
}

/// The kind of object an [`ObjectKey`] encrypts; each has its own HKDF label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectLabel {
    /// A batch of mutations (label `"batch"`).
    Batch,
    /// A collection descriptor (label `"collection"`).
    Collection,
    /// The recovery blob (label `"recovery"`).
    Recovery,
}

impl ObjectLabel {
    fn label(self) -> &'static [u8] {
        match self {
            ObjectLabel::Batch => b"batch",
            ObjectLabel::Collection => b"collection",
            ObjectLabel::Recovery => b"recovery",
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
    /// `HKDF(ikm = key, info = label || lp(identity) || lp(salt))` -> 64 bytes, split into
    /// the AES key and the commitment. `salt` is the object's fresh random salt, carried in
    /// its signed header; one outside [`MIN_OBJECT_SALT_LEN`]..=[`MAX_OBJECT_SALT_LEN`]
    /// bytes is [`CryptoError::Salt`].
    pub fn derive(
        key: &SymmetricKey,
        label: ObjectLabel,
        identity: &[u8],
        salt: &[u8],
    ) -> Result<Self, CryptoError> {
        check_object_salt(salt)?;
        let label = label.label();
        let mut info = Vec::with_capacity(label.len() + 8 + identity.len() + salt.len());
        info.extend_from_slice(label);
        lp(&mut info, identity);
        lp(&mut info, salt);
        let mut okm = Zeroizing::new([0u8; 64]);
        hkdf(&key.bytes, &info, okm.as_mut_slice());
        let mut out = ObjectKey {
            key: [0u8; 32],
            commitment: [0u8; 32],
        };
        out.key.copy_from_slice(&okm[..32]);
        out.commitment.copy_from_slice(&okm[32..]);
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SALT: [u8; 16] = [0x5a; 16];

    fn ck() -> SymmetricKey {
        SymmetricKey::from_bytes(&[0x11; 32]).unwrap()
    }

    #[test]
    fn symmetric_key_lengths() {
        assert!(SymmetricKey::from_bytes(&[0u8; 32]).is_ok());
        for n in [0, 16, 31, 33, 64] {
            assert_eq!(
                SymmetricKey::from_bytes(&vec![0u8; n]).unwrap_err(),
                CryptoError::InvalidKey
            );
        }
        let k = SymmetricKey::generate();
        assert_eq!(
            SymmetricKey::from_bytes(k.expose()).unwrap().expose(),
            k.expose()
        );
        assert_ne!(SymmetricKey::generate().expose(), k.expose());
    }

    #[test]
    fn debug_prints_no_key_material() {
        let k = SymmetricKey::from_bytes(&[0xab; 32]).unwrap();
        assert_eq!(format!("{k:?}"), "SymmetricKey(..)");
        let o = ObjectKey::derive(&k, ObjectLabel::Batch, b"id", &SALT).unwrap();
        let dbg = format!("{o:?}");
        assert_eq!(dbg, "ObjectKey(..)");
        assert!(!dbg.contains(&hex::encode(o.commitment())));
    }

    #[test]
    fn index_terms_separate_inputs_and_keys() {
        let storage = ck();
        let k = local_index_key(&storage);
        assert_ne!(k.expose(), storage.expose());
        let t = index_term(&k, "c", "f", b"1");
        assert_eq!(t, index_term(&k, "c", "f", b"1"));
        assert_ne!(t, index_term(&k, "c2", "f", b"1"));
        assert_ne!(t, index_term(&k, "c", "g", b"1"));
        assert_ne!(t, index_term(&k, "c", "f", b"2"));
        // Length prefixes: moving bytes between fields changes the term.
        assert_ne!(
            index_term(&k, "ab", "c", b"1"),
            index_term(&k, "a", "bc", b"1")
        );
        assert_ne!(t, index_term(&storage, "c", "f", b"1"));
    }

    #[test]
    fn collection_derivations_separate_inputs() {
        // MS-13, MS-18: account, name, collection id and epoch all change the output.
        let n = ck();
        let a = collection_id(&n, "alice", "notes");
        assert_ne!(a, collection_id(&n, "alice", "notez"));
        assert_ne!(a, collection_id(&n, "bob", "notes"));
        // lp() keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(collection_id(&n, "ab", "c"), collection_id(&n, "a", "bc"));
        assert_ne!(
            a,
            collection_id(&SymmetricKey::generate(), "alice", "notes")
        );
        let k1 = collection_key(&n, "alice", &a, 1);
        assert_ne!(k1.expose(), collection_key(&n, "alice", &a, 2).expose());
        assert_ne!(k1.expose(), collection_key(&n, "bob", &a, 1).expose());
        assert_ne!(
            k1.expose(),
            collection_key(&n, "alice", &[0u8; 16], 1).expose()
        );
        assert_eq!(k1.expose(), collection_key(&n, "alice", &a, 1).expose());
    }

    #[test]
    fn object_keys_separate_label_and_identity() {
        // MS-04, MS-14, MS-17: label and identity both change key and commitment.
        let b = ObjectKey::derive(&ck(), ObjectLabel::Batch, b"id", &SALT).unwrap();
        let c = ObjectKey::derive(&ck(), ObjectLabel::Collection, b"id", &SALT).unwrap();
        let b2 = ObjectKey::derive(&ck(), ObjectLabel::Batch, b"id2", &SALT).unwrap();
        assert_ne!(b.commitment(), c.commitment());
        assert_ne!(b.commitment(), b2.commitment());
        assert_ne!(b.key, c.key);
        let ct = b.seal(b"hdr", b"data");
        assert!(c.open(&b.commitment(), b"hdr", &ct).is_err());
    }

    #[test]
    fn salt_changes_key_and_is_checked() {
        // MS-17 (key reuse after a restore, issue defect 3): the same identity under two
        // salts gives two keys and two commitments; a short or absurd salt is refused.
        let a = ObjectKey::derive(&ck(), ObjectLabel::Batch, b"id", &[1; 32]).unwrap();
        let b = ObjectKey::derive(&ck(), ObjectLabel::Batch, b"id", &[2; 32]).unwrap();
        assert_ne!(a.key, b.key);
        assert_ne!(a.commitment(), b.commitment());
        let ct = a.seal(b"h", b"p");
        assert_eq!(
            b.open(&a.commitment(), b"h", &ct),
            Err(CryptoError::Commitment)
        );
        // lp() keeps identity and salt apart.
        let c = ObjectKey::derive(&ck(), ObjectLabel::Batch, b"id\x01", &[1; 32]).unwrap();
        assert_ne!(a.commitment(), c.commitment());
        for n in [0, 1, 15, 65, 200] {
            assert_eq!(
                ObjectKey::derive(&ck(), ObjectLabel::Batch, b"id", &vec![7; n]).unwrap_err(),
                CryptoError::Salt
            );
        }
        for n in [16, 32, 64] {
            assert!(ObjectKey::derive(&ck(), ObjectLabel::Batch, b"id", &vec![7; n]).is_ok());
        }
        assert_ne!(object_salt(), object_salt());
        assert_eq!(object_salt().len(), OBJECT_SALT_LEN);
    }

    #[test]
    fn object_round_trip() {
        let k = ObjectKey::derive(&ck(), ObjectLabel::Batch, b"identity", &SALT).unwrap();
        let ct = k.seal(b"header", b"mutations");
        assert_eq!(ct.len(), 9 + TAG_LEN);
        assert_eq!(
            k.open(&k.commitment(), b"header", &ct).unwrap(),
            b"mutations"
        );
        let empty = k.seal(b"", b"");
        assert_eq!(k.open(&k.commitment(), b"", &empty).unwrap(), b"");
    }

    #[test]
    fn commitment_checked_first() {
        // MS-42: a ciphertext is only opened under the key its header commits to. Even the
        // right AES key with a wrong commitment is refused with Commitment, before decryption.
        let k = ObjectKey::derive(&ck(), ObjectLabel::Batch, b"identity", &SALT).unwrap();
        let other = ObjectKey::derive(&ck(), ObjectLabel::Batch, b"other", &SALT).unwrap();
        let ct = k.seal(b"h", b"p");
        let mut bad = k.commitment();
        bad[31] ^= 1;
        assert_eq!(k.open(&bad, b"h", &ct), Err(CryptoError::Commitment));
        assert_eq!(k.open(&bad[..31], b"h", &ct), Err(CryptoError::Commitment));
        assert_eq!(k.open(&[], b"h", &ct), Err(CryptoError::Commitment));
        // A second key presented with the first key's commitment is refused outright.
        assert_eq!(
            other.open(&k.commitment(), b"h", &ct),
            Err(CryptoError::Commitment)
        );
        // Garbage ciphertext with a bad commitment still reports Commitment (checked first).
        assert_eq!(k.open(&bad, b"h", &[]), Err(CryptoError::Commitment));
    }

    #[test]
    fn object_tamper_refused() {
        // MS-16, MS-17: altered ciphertext, AAD or truncated input => Decrypt.
        let k = ObjectKey::derive(&ck(), ObjectLabel::Batch, b"identity", &SALT).unwrap();
        let ct = k.seal(b"header", b"payload");
        let c = k.commitment();
        assert_eq!(k.open(&c, b"headex", &ct), Err(CryptoError::Decrypt));
        assert_eq!(
            k.open(&c, b"header", &ct[..ct.len() - 1]),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            k.open(&c, b"header", &ct[..TAG_LEN - 1]),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(k.open(&c, b"header", &[]), Err(CryptoError::Decrypt));
    }

    #[test]
    fn random_nonce_round_trip_and_layout() {
        let k = SymmetricKey::generate();
        let a = seal_random_nonce(&k, b"aad", b"plaintext");
        let b = seal_random_nonce(&k, b"aad", b"plaintext");
        assert_eq!(a.len(), NONCE_LEN + 9 + TAG_LEN);
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert_eq!(
            open_random_nonce(&k, b"aad", &a).unwrap().as_slice(),
            b"plaintext"
        );
        assert_eq!(
            open_random_nonce(&k, b"aad", &b).unwrap().as_slice(),
            b"plaintext"
        );
    }

    #[test]
    fn random_nonce_tamper_refused() {
        // MS-16, MS-05: wrong key, AAD, truncation => one Decrypt error.
        let k = SymmetricKey::generate();
        let d = seal_random_nonce(&k, b"aad", b"plaintext");
        let other = SymmetricKey::generate();
        assert_eq!(
            open_random_nonce(&other, b"aad", &d).unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            open_random_nonce(&k, b"aax", &d).unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            open_random_nonce(&k, b"aad", &d[..d.len() - 1]).unwrap_err(),
            CryptoError::Decrypt
        );
        for n in [0, 1, NONCE_LEN, NONCE_LEN + TAG_LEN - 1] {
            assert_eq!(
                open_random_nonce(&k, b"aad", &d[..n]).unwrap_err(),
                CryptoError::Decrypt
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn object_any_bit_flip_refused(
            pt in proptest::collection::vec(any::<u8>(), 0..300),
            aad in proptest::collection::vec(any::<u8>(), 1..40),
            in_aad in any::<bool>(),
            bit in any::<usize>(),
        ) {
            // MS-16, MS-17: any flipped bit in ciphertext or AAD is refused.
            let k = ObjectKey::derive(&ck(), ObjectLabel::Batch, &aad, &SALT).unwrap();
            let mut ct = k.seal(&aad, &pt);
            prop_assert_eq!(k.open(&k.commitment(), &aad, &ct).unwrap(), pt);
            let mut aad2 = aad;
            let target = if in_aad { &mut aad2 } else { &mut ct };
            let i = bit % (target.len() * 8);
            target[i / 8] ^= 1 << (i % 8);
            prop_assert_eq!(k.open(&k.commitment(), &aad2, &ct), Err(CryptoError::Decrypt));
        }

        #[test]
        fn random_nonce_any_bit_flip_refused(
            pt in proptest::collection::vec(any::<u8>(), 0..300),
            bit in any::<usize>(),
        ) {
            // MS-16: any flipped bit of nonce, ciphertext or tag is refused.
            let k = SymmetricKey::from_bytes(&[5u8; 32]).unwrap();
            let mut d = seal_random_nonce(&k, b"a", &pt);
            let opened = open_random_nonce(&k, b"a", &d).unwrap();
            prop_assert_eq!(opened.as_slice(), pt.as_slice());
            let i = bit % (d.len() * 8);
            d[i / 8] ^= 1 << (i % 8);
            prop_assert_eq!(open_random_nonce(&k, b"a", &d).unwrap_err(), CryptoError::Decrypt);
        }
    }
}
