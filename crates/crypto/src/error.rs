//! The one error type of the crate.
//!
//! Every failure to open a ciphertext (AEAD or HPKE) is reported as the single
//! [`CryptoError::Decrypt`] variant, whatever went wrong inside, so that callers cannot
//! build an error oracle from the reactions (MS-05).

/// Errors returned by `sealsync-crypto`.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// Key bytes were refused: wrong length, a non-canonical encoding, or a weak
    /// (small-order / low-order / all-zero) public key (BI-06, BI-20).
    #[error("invalid key")]
    InvalidKey,
    /// A signature had the wrong length, a non-canonical encoding, or did not verify
    /// (strictly) over the expected message and context.
    #[error("signature check failed")]
    BadSignature,
    /// An AEAD or HPKE ciphertext could not be opened (wrong key, altered ciphertext,
    /// altered associated data, truncated input, ...). Deliberately uniform (MS-05).
    #[error("decryption failed")]
    Decrypt,
    /// The key commitment stored with a ciphertext does not match the key derived by the
    /// receiver, so the ciphertext is refused before any decryption is attempted (MS-42).
    #[error("key commitment mismatch")]
    Commitment,
    /// Argon2id parameters are below the floor [`crate::KdfParams::FLOOR`] or absurdly high
    /// (more than 1 GiB of memory, more than 16 passes or lanes) (MS-06).
    #[error("key derivation parameters refused")]
    KdfParams,
    /// Argon2id refused its inputs (for example a salt shorter than 8 bytes, or an output
    /// length it does not support).
    #[error("key derivation failed")]
    Kdf,
    /// Text that should hold a recovery secret or a pairing code is not valid Crockford
    /// base32 of the expected length.
    #[error("invalid encoding")]
    Encoding,
    /// An object salt is missing, shorter than 16 bytes or longer than 64 bytes.
    #[error("object salt length refused")]
    Salt,
    /// HPKE sealing failed (the recipient key was refused by the HPKE implementation).
    #[error("HPKE sealing failed")]
    Hpke,
}
