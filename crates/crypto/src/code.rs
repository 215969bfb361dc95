//! Crockford base32 for human-handled strings: recovery secrets and approval codes.
//!
//! Encoding is MSB-first over the alphabet `0123456789ABCDEFGHJKMNPQRSTVWXYZ`. Decoding is
//! typo tolerant: case-insensitive, `-` and whitespace ignored, `O` read as `0`, `I` and `L`
//! read as `1`.

use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::hash::{Hash32, sha256_parts};
use crate::kx::KxPublicKey;
use crate::sign::VerifyingKey;

/// The Crockford base32 alphabet.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Number of characters in an approval code (50 bits).
const APPROVAL_CHARS: usize = 10;

/// The 5-bit value of one (already upper-cased) character, with Crockford's aliases.
fn digit_value(c: u8) -> Option<u8> {
    let c = match c {
        b'O' => b'0',
        b'I' | b'L' => b'1',
        other => other,
    };
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

/// Normalises `text` into 5-bit digit values: drops `-` and whitespace, folds case and
/// aliases. Any other character is [`CryptoError::Encoding`].
pub(crate) fn normalize(text: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len()));
    for c in text.bytes() {
        if c == b'-' || c.is_ascii_whitespace() {
            continue;
        }
        out.push(digit_value(c.to_ascii_uppercase()).ok_or(CryptoError::Encoding)?);
    }
    Ok(out)
}

/// Encodes the first `nchars * 5` bits of `data` (MSB first) into `out`. Bits beyond the end
/// of `data` read as zero.
pub(crate) fn encode_into(data: &[u8], nchars: usize, out: &mut String) {
    for i in 0..nchars {
        let mut v = 0u8;
        for b in 0..5 {
            let bit = i * 5 + b;
            let byte = data.get(bit / 8).copied().unwrap_or(0);
            v = (v << 1) | ((byte >> (7 - bit % 8)) & 1);
        }
        out.push(char::from(ALPHABET[usize::from(v)]));
    }
}

/// Packs 5-bit digits (MSB first) into `out`; `digits.len() * 5` must equal `out.len() * 8`.
pub(crate) fn decode_digits(digits: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
    if digits.len() * 5 != out.len() * 8 {
        return Err(CryptoError::Encoding);
    }
    out.fill(0);
    for (i, &d) in digits.iter().enumerate() {
        for b in 0..5 {
            let bit = i * 5 + b;
            if (d >> (4 - b)) & 1 == 1 {
                out[bit / 8] |= 1 << (7 - bit % 8);
            }
        }
    }
    Ok(())
}

/// `base32(H("sealsync/v1/approval-code" || genesis_hash || device_id || sign_pk ||
/// kx_pk))[..10]`, shown as `XXXXX-XXXXX` (50 bits).
pub fn approval_code(
    genesis_hash: &Hash32,
    device_id: &[u8; 16],
    sign_pk: &VerifyingKey,
    kx_pk: &KxPublicKey,
) -> String {
    let h = sha256_parts(&[
        b"sealsync/v1/approval-code",
        genesis_hash,
        device_id,
        &sign_pk.to_bytes(),
        &kx_pk.to_bytes(),
    ]);
    let mut digits = String::with_capacity(APPROVAL_CHARS);
    encode_into(&h, APPROVAL_CHARS, &mut digits);
    format!("{}-{}", &digits[..5], &digits[5..])
}

/// Normalises both codes (case, dashes, spaces, Crockford aliases) and compares them in
/// constant time. Codes that are not 10 valid characters never match.
pub fn approval_code_matches(expected: &str, given: &str) -> bool {
    let (Ok(a), Ok(b)) = (normalize(expected), normalize(given)) else {
        return false;
    };
    a.len() == APPROVAL_CHARS && b.len() == APPROVAL_CHARS && bool::from(a.ct_eq(&b))
}
