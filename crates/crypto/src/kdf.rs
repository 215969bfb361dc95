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
    /// Default parameters for new secrets: 64 MiB, 3 passes, 1 lane.
    ///
    /// Why above the floor: the floor is the weakest setting still accepted from stored or
    /// received data (OWASP's minimum); new secrets get the margin of RFC 9106's
    /// memory-constrained recommendation (64 MiB, t = 3), about three times the floor's
    /// cost per guess against a user-chosen key-store passphrase on a stolen disk (CD-09),
    /// for about 0.1 to 0.2 s per derivation, paid once per command or enrollment. One lane,
    /// because the `argon2` crate computes lanes sequentially here.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };
    /// Hard floor: anything weaker in any component is refused (MS-06). 19 MiB, 2 passes,
    /// 1 lane (the OWASP minimum). Tests that need speed use it explicitly.
    pub const FLOOR: KdfParams = KdfParams {
        m_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };
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
#[derive(ZeroizeOnDrop)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SALT: &[u8] = b"sealsync-salt-16";

    fn secret(bytes: [u8; 20]) -> RecoverySecret {
        RecoverySecret { bytes }
    }

    #[test]
    fn params_floor_and_ceiling() {
        // MS-06: anything weaker than the floor in any component is refused, and so are
        // resource-exhaustion parameters.
        let d = KdfParams::FLOOR;
        assert_eq!(d.check(), Ok(()));
        assert_eq!(KdfParams::DEFAULT.check(), Ok(()));
        // The default is strictly above the floor in cost (issue 5 defect 6: the default must not be the floor).
        let def = KdfParams::DEFAULT;
        assert!(def.m_kib >= d.m_kib && def.t_cost >= d.t_cost && def.p_cost >= d.p_cost);
        assert!(def.m_kib > d.m_kib && def.t_cost > d.t_cost);
        let ok_high = KdfParams {
            m_kib: KdfParams::MAX_M_KIB,
            t_cost: 16,
            p_cost: 16,
        };
        assert_eq!(ok_high.check(), Ok(()));
        for bad in [
            KdfParams {
                m_kib: d.m_kib - 1,
                ..d
            },
            KdfParams { t_cost: 1, ..d },
            KdfParams { p_cost: 0, ..d },
            KdfParams {
                m_kib: 64,
                t_cost: 1,
                p_cost: 1,
            },
            KdfParams {
                m_kib: 0,
                t_cost: 0,
                p_cost: 0,
            },
            KdfParams {
                m_kib: KdfParams::MAX_M_KIB + 1,
                ..d
            },
            KdfParams { t_cost: 17, ..d },
            KdfParams { p_cost: 17, ..d },
            KdfParams {
                m_kib: u32::MAX,
                t_cost: u32::MAX,
                p_cost: u32::MAX,
            },
        ] {
            assert_eq!(bad.check(), Err(CryptoError::KdfParams), "{bad:?}");
        }
    }

    #[test]
    fn weak_params_refused_before_deriving() {
        // MS-06: a downgraded parameter set from the server is refused by every entry point,
        // before any derivation (these would otherwise succeed quickly).
        let weak = KdfParams {
            m_kib: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let mut out = [0u8; 32];
        assert_eq!(
            argon2id(b"pw", SALT, weak, &mut out),
            Err(CryptoError::KdfParams)
        );
        assert_eq!(out, [0u8; 32]);
        assert_eq!(
            derive_recovery_keys(&secret([1; 20]), SALT, weak).unwrap_err(),
            CryptoError::KdfParams
        );
        assert_eq!(
            passphrase_key(b"pw", SALT, weak).unwrap_err(),
            CryptoError::KdfParams
        );
    }

    #[test]
    fn short_salt_refused() {
        let mut out = [0u8; 32];
        assert_eq!(
            argon2id(b"pw", b"short", KdfParams::FLOOR, &mut out),
            Err(CryptoError::Kdf)
        );
    }

    #[test]
    fn recovery_keys_depend_on_secret_and_salt() {
        let a = derive_recovery_keys(&secret([1; 20]), SALT, KdfParams::FLOOR).unwrap();
        let a2 = derive_recovery_keys(&secret([1; 20]), SALT, KdfParams::FLOOR).unwrap();
        let b = derive_recovery_keys(&secret([2; 20]), SALT, KdfParams::FLOOR).unwrap();
        let c =
            derive_recovery_keys(&secret([1; 20]), b"another-salt-16b", KdfParams::FLOOR).unwrap();
        assert_eq!(a.signing.verifying_key(), a2.signing.verifying_key());
        assert_eq!(a.blob_key.expose(), a2.blob_key.expose());
        assert_ne!(a.signing.verifying_key(), b.signing.verifying_key());
        assert_ne!(a.blob_key.expose(), c.blob_key.expose());
        assert_ne!(a.blob_key.expose(), &*a.signing.to_seed());
        assert_eq!(format!("{a:?}"), "RecoveryKeys(..)");
    }

    #[test]
    fn passphrase_key_depends_on_passphrase() {
        let a = passphrase_key(b"one", SALT, KdfParams::FLOOR).unwrap();
        let b = passphrase_key(b"two", SALT, KdfParams::FLOOR).unwrap();
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn recovery_display_format() {
        let s = RecoverySecret::generate();
        let shown = s.display();
        assert_eq!(shown.len(), 39);
        let groups: Vec<&str> = shown.split('-').collect();
        assert_eq!(groups.len(), 8);
        assert!(groups.iter().all(|g| g.len() == 4));
        assert_eq!(format!("{s:?}"), "RecoverySecret(..)");
        assert_ne!(RecoverySecret::generate().expose(), s.expose());
    }

    #[test]
    fn recovery_parse_typo_tolerance() {
        // Known value: bytes 0..20 in Crockford base32 (cross-checked with Python).
        let want = secret(core::array::from_fn(|i| i as u8));
        assert_eq!(&*want.display(), "000G-40R4-0M30-E209-185G-R38E-1W81-24GK");
        for typed in [
            "000G-40R4-0M30-E209-185G-R38E-1W81-24GK",
            "000g-40r4-0m30-e209-185g-r38e-1w81-24gk",
            "000G40R40M30E209185GR38E1W8124GK",
            "  000G 40R4 0M30 E209 185G R38E 1W81 24GK ",
            "OOOG-4OR4-OM3O-E2O9-I85G-R38E-LW8l-24GK",
            "000G--40R4-0M30-E209-185G-R38E-1W81-24GK\n",
        ] {
            let parsed = RecoverySecret::parse(typed).unwrap();
            assert_eq!(parsed.expose(), want.expose(), "{typed}");
        }
    }

    #[test]
    fn recovery_parse_rejects_bad_text() {
        for bad in [
            "",
            "000G-40R4-0M30-E209-185G-R38E-1W81-24G",
            "000G-40R4-0M30-E209-185G-R38E-1W81-24GKK",
            "000G-40R4-0M30-E209-185G-R38E-1W81-24GU",
            "000G-40R4-0M30-E209-185G-R38E-1W81-24G!",
            "000G_40R4_0M30_E209_185G_R38E_1W81_24GK",
        ] {
            assert_eq!(
                RecoverySecret::parse(bad).unwrap_err(),
                CryptoError::Encoding,
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn recovery_display_parse_round_trip(bytes in any::<[u8; 20]>(), lower in any::<bool>()) {
            let s = secret(bytes);
            let shown = s.display();
            let text = if lower { shown.to_lowercase() } else { shown.to_string() };
            let parsed = RecoverySecret::parse(&text).unwrap();
            prop_assert_eq!(parsed.expose(), &bytes);
        }

        #[test]
        fn recovery_parse_never_panics(text in ".{0,64}") {
            let _ = RecoverySecret::parse(&text);
        }
    }
}
