//! The pairing PAKE: SPAKE2 over the Ed25519 group (RustCrypto `spake2`, A/B mode) keyed
//! by a [`PairingCode`], and the key-confirmation MACs derived from its output.
//!
//! Roles: the approving (trusted) device is SPAKE2 side A, the new device side B. The
//! identities are the two 16-byte device ids (`idA` = approver, `idB` = new device). The
//! password is `"sealsync/v1/pairing-code" || code` (5 bytes). The SPAKE2 output `K`
//! (32 bytes) is the HKDF-SHA256 input key material (no salt) of two MAC keys with distinct
//! labels: `mac_a = HKDF(K, info = "sealsync/v1/pairing/mac-a")` (the approver proves it
//! knows the code and confirms the account's genesis and roster head) and
//! `mac_b = HKDF(K, info = "sealsync/v1/pairing/mac-b")` (the new device proves it knows
//! the code and binds its keys). Tags are HMAC-SHA256 over transcripts built by
//! `sealsync_core::pairing`, compared in constant time.
//!
//! Randomness is injected: each side's SPAKE2 scalar is drawn from a 32-byte seed through a
//! SHA-256 counter stream ([`SeedStream`]), so a pairing can be replayed exactly for test
//! vectors. Devices pass a fresh seed from the OS RNG.

use core::convert::Infallible;
use core::fmt;

use aws_lc_rs::hmac;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::code::PairingCode;
use crate::error::CryptoError;
use crate::hash::sha256_parts;

/// Label prefixed to the code to form the SPAKE2 password.
const PASSWORD_LABEL: &[u8] = b"sealsync/v1/pairing-code";
/// HKDF info of the approver's MAC key.
const MAC_A_LABEL: &[u8] = b"sealsync/v1/pairing/mac-a";
/// HKDF info of the new device's MAC key.
const MAC_B_LABEL: &[u8] = b"sealsync/v1/pairing/mac-b";
/// Domain label of the seed stream.
const STREAM_LABEL: &[u8] = b"sealsync/v1/pairing/scalar";
/// Length of a SPAKE2 message: one side byte and a compressed Edwards point.
pub const PAKE_MESSAGE_BYTES: usize = 33;

/// Which end of a pairing this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PakeSide {
    /// The trusted device that shows the code (SPAKE2 side A).
    Approver,
    /// The new device on which the code is typed (SPAKE2 side B).
    Device,
}

/// A deterministic byte stream: block `i` is `SHA-256("sealsync/v1/pairing/scalar" ||
/// seed || u64be(i))`. It is the SPAKE2 scalar's RNG (the scalar is the first 64 bytes
/// reduced modulo the group order), so a seed fixes the PAKE message.
#[derive(Zeroize, ZeroizeOnDrop)]
struct SeedStream {
    seed: [u8; 32],
    block: [u8; 32],
    counter: u64,
    used: usize,
}

impl SeedStream {
    fn new(seed: &[u8; 32]) -> Self {
        Self {
            seed: *seed,
            block: [0; 32],
            counter: 0,
            used: 32,
        }
    }
}

impl rand::TryRng for SeedStream {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for byte in dst {
            if self.used == 32 {
                self.block = sha256_parts(&[STREAM_LABEL, &self.seed, &self.counter.to_be_bytes()]);
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
        Ok(())
    }
}

impl rand::TryCryptoRng for SeedStream {}

/// One side's SPAKE2 state between sending its message and receiving the peer's.
pub struct PakeState {
    inner: Spake2<Ed25519Group>,
    side: PakeSide,
}

impl fmt::Debug for PakeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PakeState")
            .field("side", &self.side)
            .finish_non_exhaustive()
    }
}

/// Starts SPAKE2 as `side` with the code as password and the two device ids as the
/// identities; the scalar comes from `seed`. Returns the state and the message to send.
pub fn pake_start(
    side: PakeSide,
    code: &PairingCode,
    approver_id: &[u8; 16],
    device_id: &[u8; 16],
    seed: &[u8; 32],
) -> (PakeState, Vec<u8>) {
    let mut pw = Zeroizing::new(Vec::with_capacity(PASSWORD_LABEL.len() + 5));
    pw.extend_from_slice(PASSWORD_LABEL);
    pw.extend_from_slice(code.expose());
    let password = Password::new(pw.as_slice());
    let id_a = Identity::new(approver_id);
    let id_b = Identity::new(device_id);
    let mut rng = SeedStream::new(seed);
    let (inner, msg) = match side {
        PakeSide::Approver => {
            Spake2::<Ed25519Group>::start_a_with_rng(&password, &id_a, &id_b, &mut rng)
        }
        PakeSide::Device => {
            Spake2::<Ed25519Group>::start_b_with_rng(&password, &id_a, &id_b, &mut rng)
        }
    };
    (PakeState { inner, side }, msg)
}

impl PakeState {
    /// Which side this state is.
    pub fn side(&self) -> PakeSide {
        self.side
    }

    /// Finishes SPAKE2 with the peer's message and derives the two MAC keys. A message of
    /// the wrong length, from the wrong side or not a valid point is
    /// [`CryptoError::InvalidKey`]. A wrong code is *not* detected here: it shows as a MAC
    /// that does not verify.
    pub fn finish(self, peer_msg: &[u8]) -> Result<PairingKeys, CryptoError> {
        let k = Zeroizing::new(
            self.inner
                .finish(peer_msg)
                .map_err(|_| CryptoError::InvalidKey)?,
        );
        Ok(PairingKeys::from_shared(&k))
    }
}

/// The two key-confirmation MAC keys of one pairing. Zeroized on drop; `Debug` prints
/// nothing secret.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PairingKeys {
    mac_a: [u8; 32],
    mac_b: [u8; 32],
}

impl fmt::Debug for PairingKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingKeys(..)")
    }
}

fn hkdf32(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, ikm);
    let mut out = [0u8; 32];
    // Invariant: 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
    hk.expand(info, &mut out)
        .expect("HKDF-SHA256 expands 32 bytes");
    out
}

fn tag(key: &[u8; 32], transcript: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let t = hmac::sign(&key, transcript);
    let mut out = [0u8; 32];
    out.copy_from_slice(t.as_ref());
    out
}

fn verify(key: &[u8; 32], transcript: &[u8], given: &[u8]) -> Result<(), CryptoError> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    // aws-lc-rs compares the tags in constant time.
    hmac::verify(&key, transcript, given).map_err(|_| CryptoError::BadSignature)
}

impl PairingKeys {
    /// The keys derived from a SPAKE2 output `k` (see the module documentation).
    pub fn from_shared(k: &[u8]) -> Self {
        Self {
            mac_a: hkdf32(k, MAC_A_LABEL),
            mac_b: hkdf32(k, MAC_B_LABEL),
        }
    }

    /// The approver's tag over `transcript`.
    pub fn mac_a(&self, transcript: &[u8]) -> [u8; 32] {
        tag(&self.mac_a, transcript)
    }

    /// The new device's tag over `transcript`.
    pub fn mac_b(&self, transcript: &[u8]) -> [u8; 32] {
        tag(&self.mac_b, transcript)
    }

    /// Checks the approver's tag in constant time ([`CryptoError::BadSignature`] if wrong).
    pub fn verify_a(&self, transcript: &[u8], given: &[u8]) -> Result<(), CryptoError> {
        verify(&self.mac_a, transcript, given)
    }

    /// Checks the new device's tag in constant time ([`CryptoError::BadSignature`] if
    /// wrong).
    pub fn verify_b(&self, transcript: &[u8], given: &[u8]) -> Result<(), CryptoError> {
        verify(&self.mac_b, transcript, given)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 16] = [0xaa; 16];
    const B: [u8; 16] = [0xbb; 16];

    fn run(code_a: &PairingCode, code_b: &PairingCode) -> (PairingKeys, PairingKeys) {
        let (sa, ma) = pake_start(PakeSide::Approver, code_a, &A, &B, &[1; 32]);
        let (sb, mb) = pake_start(PakeSide::Device, code_b, &A, &B, &[2; 32]);
        assert_eq!(ma.len(), PAKE_MESSAGE_BYTES);
        assert_eq!(mb.len(), PAKE_MESSAGE_BYTES);
        (sa.finish(&mb).unwrap(), sb.finish(&ma).unwrap())
    }

    #[test]
    fn same_code_gives_same_keys_and_macs_verify() {
        let code = PairingCode::from_bytes([1, 2, 3, 4, 5]);
        let (ka, kb) = run(&code, &code);
        let t = b"transcript";
        kb.verify_b(t, &ka.mac_b(t)).unwrap();
        ka.verify_a(t, &kb.mac_a(t)).unwrap();
        // The two labels give different keys: a tag of one role never passes as the other.
        assert_ne!(ka.mac_a(t), ka.mac_b(t));
        assert!(ka.verify_a(t, &ka.mac_b(t)).is_err());
    }

    #[test]
    fn wrong_code_makes_every_mac_fail() {
        // MS-10: a guess of the code that is off by one bit gives unrelated keys.
        let (ka, kb) = run(
            &PairingCode::from_bytes([1, 2, 3, 4, 5]),
            &PairingCode::from_bytes([1, 2, 3, 4, 4]),
        );
        let t = b"transcript";
        assert_eq!(kb.verify_b(t, &ka.mac_b(t)), Err(CryptoError::BadSignature));
        assert_eq!(ka.verify_a(t, &kb.mac_a(t)), Err(CryptoError::BadSignature));
    }

    #[test]
    fn identities_enter_the_key() {
        let code = PairingCode::from_bytes([9; 5]);
        let (sa, ma) = pake_start(PakeSide::Approver, &code, &A, &B, &[1; 32]);
        let (sb, mb) = pake_start(PakeSide::Device, &code, &A, &[0xbc; 16], &[2; 32]);
        let ka = sa.finish(&mb).unwrap();
        let kb = sb.finish(&ma).unwrap();
        assert!(kb.verify_b(b"t", &ka.mac_b(b"t")).is_err());
    }

    #[test]
    fn seeds_fix_the_messages() {
        let code = PairingCode::from_bytes([7; 5]);
        let (_, m1) = pake_start(PakeSide::Approver, &code, &A, &B, &[3; 32]);
        let (_, m2) = pake_start(PakeSide::Approver, &code, &A, &B, &[3; 32]);
        let (_, m3) = pake_start(PakeSide::Approver, &code, &A, &B, &[4; 32]);
        assert_eq!(m1, m2);
        assert_ne!(m1, m3);
        assert_eq!(m1[0], b'A');
        let (_, mb) = pake_start(PakeSide::Device, &code, &A, &B, &[3; 32]);
        assert_eq!(mb[0], b'B');
    }

    #[test]
    fn malformed_peer_messages_are_refused() {
        let code = PairingCode::from_bytes([7; 5]);
        for bad in [vec![], vec![b'B'; 10], vec![b'A'; 33], vec![b'B'; 34]] {
            let (s, _) = pake_start(PakeSide::Approver, &code, &A, &B, &[1; 32]);
            assert_eq!(s.finish(&bad).unwrap_err(), CryptoError::InvalidKey);
        }
        // Some 32-byte strings are not points at all; those are refused too.
        let refused = (0u8..32)
            .filter(|i| {
                let (s, _) = pake_start(PakeSide::Approver, &code, &A, &B, &[1; 32]);
                let mut m = vec![b'B'];
                m.extend_from_slice(&[*i; 32]);
                s.finish(&m).is_err()
            })
            .count();
        assert!(refused > 0);
        // A's own message reflected back to A is refused (wrong side byte).
        let (s, m) = pake_start(PakeSide::Approver, &code, &A, &B, &[1; 32]);
        assert!(s.finish(&m).is_err());
    }

    #[test]
    fn seed_stream_is_sha256_counter_mode() {
        use rand::TryRng as _;
        let mut s = SeedStream::new(&[5; 32]);
        let mut out = [0u8; 40];
        s.try_fill_bytes(&mut out).unwrap();
        let b0 = sha256_parts(&[STREAM_LABEL, &[5; 32], &0u64.to_be_bytes()]);
        let b1 = sha256_parts(&[STREAM_LABEL, &[5; 32], &1u64.to_be_bytes()]);
        assert_eq!(&out[..32], &b0);
        assert_eq!(&out[32..], &b1[..8]);
    }
}
