//! Password and recovery-secret key derivation (Argon2id) with a hard parameter floor, and
//! the recovery secret itself.

use core::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::code::{decode_digits, encode_into, normalize};
use crate::error::CryptoError;
use crate::hash::random_array;
use crate::sign::SigningKey;
use crate::symmetric::SymmetricKey;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Lanes (parallelism).
    pub p_cost: u32,
}

impl KdfParams {
    /// Default parameters for new secrets: 19 MiB, 2 passes, 1 lane (OWASP minimum).
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };
    /// Hard floor: anything weaker in any component is refused (MS-06).
    pub const FLOOR: KdfParams = KdfParams::DEFAULT;
    /// Ceiling on memory (1 GiB) to refuse resource-exhaustion parameters.
    pub const MAX_M_KIB: u32 = 1024 * 1024;
    /// Ceiling on passes.
    pub const MAX_T_COST: u32 = 16;
    /// Ceiling on lanes.
    pub const MAX_P_COST: u32 = 16;

    /// Refuses parameters below [`KdfParams::FLOOR`] or above the ceilings (more than 1 GiB,
    /// t > 16, p > 16) with [`CryptoError::KdfParams`].
    pub fn check(&self) -> Result<(), CryptoError> {
        let f = Self::FLOOR;
        let below = self.m_kib < f.m_kib || self.t_cost < f.t_cost || self.p_cost < f.p_cost;
        let above = self.m_kib > Self::MAX_M_KIB
            || self.t_cost > Self::MAX_T_COST
            || self.p_cost > Self::MAX_P_COST;
        if below || above {
            return Err(CryptoError::KdfParams);
        }
        Ok(())
    }
}

/// Argon2id (v0x13) of `secret` with `salt` into `out`. Checks `params` against the floor
/// first (MS-06); Argon2 input errors (salt shorter than 8 bytes, output shorter than 4
/// bytes) are [`CryptoError::Kdf`].
pub fn argon2id(
    secret: &[u8],
    salt: &[u8],
    params: KdfParams,
    out: &mut [u8],
) -> Result<(), CryptoError> {
    params.check()?;
    let p = Params::new(params.m_kib, params.t_cost, params.p_cost, Some(out.len()))
        .map_err(|_| CryptoError::Kdf)?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(secret, salt, out)
        .map_err(|_| CryptoError::Kdf)
}

/// Number of random bytes in a recovery secret.
const RECOVERY_BYTES: usize = 20;
/// Base32 characters in a recovery secret (160 bits / 5).
const RECOVERY_CHARS: usize = 32;

/// The account recovery secret: 20 random bytes shown once to the user. Zeroized on drop;
/// `Debug` prints `RecoverySecret(..)`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct RecoverySecret {
    bytes: [u8; RECOVERY_BYTES],
}

impl fmt::Debug for RecoverySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoverySecret(..)")
    }
}

impl RecoverySecret {
    /// A fresh secret from the OS RNG.
    pub fn generate() -> Self {
        Self {
            bytes: random_array(),
        }
    }

    /// Parses Crockford base32: case-insensitive, `-` and spaces ignored, `O` -> `0`,
    /// `I`/`L` -> `1`. Anything else, or not exactly 32 characters, is
    /// [`CryptoError::Encoding`].
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let digits = normalize(text)?;
        if digits.len() != RECOVERY_CHARS {
            return Err(CryptoError::Encoding);
        }
        let mut s = RecoverySecret {
            bytes: [0u8; RECOVERY_BYTES],
        };
        decode_digits(&digits, &mut s.bytes)?;
        Ok(s)
    }

    /// `XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX` (32 base32 characters in 8 groups).
    pub fn display(&self) -> Zeroizing<String> {
        let mut plain = Zeroizing::new(String::with_capacity(RECOVERY_CHARS));
        encode_into(&self.bytes, RECOVERY_CHARS, &mut plain);
        let mut out = Zeroizing::new(String::with_capacity(RECOVERY_CHARS + 7));
        for (i, c) in plain.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            out.push(c);
        }
        out
    }

    /// The raw secret bytes (the Argon2id input).
    pub fn expose(&self) -> &[u8; RECOVERY_BYTES] {
        &self.bytes
    }
}

/// Keys derived from the recovery secret. Zeroized on drop (via the fields); `Debug` prints
/// no key material.
pub struct RecoveryKeys {
    /// Ed25519 recovery key; its public key is in the roster genesis.
    pub signing: SigningKey,
    /// AES-256-GCM key sealing the recovery blob.
    pub blob_key: SymmetricKey,
}

impl fmt::Debug for RecoveryKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryKeys(..)")
    }
}

/// `Argon2id(secret, salt, params)` -> 64 bytes: Ed25519 seed || blob key. Checks `params`
/// against the floor first (MS-06).
pub fn derive_recovery_keys(
    secret: &RecoverySecret,
    salt: &[u8],
    params: KdfParams,
) -> Result<RecoveryKeys, CryptoError> {
    params.check()?;
    let mut okm = Zeroizing::new([0u8; 64]);
    argon2id(&secret.bytes, salt, params, okm.as_mut_slice())?;
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&okm[..32]);
    Ok(RecoveryKeys {
        signing: SigningKey::from_seed(&seed),
        blob_key: SymmetricKey::from_bytes(&okm[32..])?,
    })
}

/// Key for the device key store when the user sets a passphrase: `Argon2id(passphrase,
/// salt, params)` -> 32 bytes. Checks `params` against the floor first (MS-06).
pub fn passphrase_key(
    passphrase: &[u8],
    salt: &[u8],
    params: KdfParams,
) -> Result<SymmetricKey, CryptoError> {
    params.check()?;
    let mut okm = Zeroizing::new([0u8; 32]);
    argon2id(passphrase, salt, params, okm.as_mut_slice())?;
    SymmetricKey::from_bytes(okm.as_slice())
}
