//! Hashing and small encoding helpers: SHA-256, length prefixes, OS randomness.

use sha2::{Digest, Sha256};

/// A SHA-256 output.
pub type Hash32 = [u8; 32];

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash32 {
    Sha256::digest(data).into()
}

/// SHA-256 of the concatenation of `parts` (no separators: callers use [`lp`] where the
/// parts have variable length).
pub fn sha256_parts(parts: &[&[u8]]) -> Hash32 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Appends `u32be(len(x)) || x` to `out`.
///
/// # Panics
/// Panics if `x` is longer than `u32::MAX` bytes; every input of the protocol is bounded
/// far below that (`MAX_MESSAGE_BYTES`), so such a call is a programming error.
pub fn lp(out: &mut Vec<u8>, x: &[u8]) {
    // Invariant: all protocol fields are bounded by the 4 MiB-scale message limits, far below
    // 4 GiB; a longer input would be a caller bug, and silently truncating the length would
    // make two different tuples collide, so panicking is the only safe answer.
    let len = u32::try_from(x.len()).expect("lp: field longer than 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(x);
}

/// `N` bytes from the operating system's cryptographically secure RNG.
///
/// # Panics
/// Panics if the OS RNG fails, which on supported platforms only happens when the system is
/// unusable; continuing with predictable bytes would be far worse than stopping.
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill_random(&mut out);
    out
}

/// Fills `out` from the OS RNG (see [`random_array`] for the panic condition).
pub(crate) fn fill_random(out: &mut [u8]) {
    // Invariant: getrandom only fails when the kernel RNG is unavailable; there is no safe
    // fallback for key generation, so this is a deliberate hard stop.
    getrandom::fill(out).expect("OS random number generator failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        // FIPS 180-2 test vector "abc".
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn sha256_parts_is_concatenation() {
        assert_eq!(sha256_parts(&[b"a", b"", b"bc"]), sha256(b"abc"));
        assert_eq!(sha256_parts(&[]), sha256(b""));
    }

    #[test]
    fn lp_prefixes_length() {
        let mut out = Vec::new();
        lp(&mut out, b"abc");
        lp(&mut out, b"");
        assert_eq!(out, [0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0]);
    }

    #[test]
    fn lp_separates_tuples() {
        // ("ab", "c") and ("a", "bc") must not encode alike (MS-13).
        let mut a = Vec::new();
        lp(&mut a, b"ab");
        lp(&mut a, b"c");
        let mut b = Vec::new();
        lp(&mut b, b"a");
        lp(&mut b, b"bc");
        assert_ne!(a, b);
    }

    #[test]
    fn random_arrays_differ() {
        let a: [u8; 32] = random_array();
        let b: [u8; 32] = random_array();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
