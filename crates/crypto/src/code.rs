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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kx::KxSecretKey;
    use crate::sign::SigningKey;
    use proptest::prelude::*;

    #[test]
    fn encode_known_digits() {
        // "0123456789" is the 5-bit values 0..=9, MSB first.
        let mut s = String::new();
        encode_into(&[0x00, 0x44, 0x32, 0x14, 0xc7, 0x42, 0x40], 10, &mut s);
        assert_eq!(s, "0123456789");
        let mut s = String::new();
        encode_into(&[0xff; 5], 8, &mut s);
        assert_eq!(s, "ZZZZZZZZ");
    }

    #[test]
    fn normalize_folds_aliases() {
        assert_eq!(
            normalize("o-O i I l L\t01").unwrap().as_slice(),
            &[0, 0, 1, 1, 1, 1, 0, 1]
        );
        for bad in ["U", "u", "*", "é", "_"] {
            assert_eq!(normalize(bad).unwrap_err(), CryptoError::Encoding, "{bad}");
        }
    }

    #[test]
    fn decode_digits_checks_length() {
        let mut out = [0u8; 5];
        assert!(decode_digits(&[0; 7], &mut out).is_err());
        assert!(decode_digits(&[0; 9], &mut out).is_err());
        decode_digits(&[31; 8], &mut out).unwrap();
        assert_eq!(out, [0xff; 5]);
    }

    struct Inputs {
        genesis: Hash32,
        device: [u8; 16],
        sign: VerifyingKey,
        kx: KxPublicKey,
    }

    fn inputs() -> Inputs {
        Inputs {
            genesis: [0x33; 32],
            device: [0x55; 16],
            sign: SigningKey::from_seed(&[1u8; 32]).verifying_key(),
            kx: KxSecretKey::from_bytes(&[2u8; 32]).public_key(),
        }
    }

    fn code(i: &Inputs) -> String {
        approval_code(&i.genesis, &i.device, &i.sign, &i.kx)
    }

    #[test]
    fn approval_code_format() {
        let c = code(&inputs());
        assert_eq!(c.len(), 11);
        assert_eq!(&c[5..6], "-");
        assert!(
            c.bytes()
                .enumerate()
                .all(|(i, b)| i == 5 || ALPHABET.contains(&b))
        );
    }

    #[test]
    fn approval_code_changes_with_every_input() {
        // MS-10: substituting the genesis, the device id, the signing key or the kx key
        // changes the code the users compare.
        let base = code(&inputs());
        let mut i = inputs();
        i.genesis[0] ^= 1;
        assert_ne!(code(&i), base);
        let mut i = inputs();
        i.device[15] ^= 1;
        assert_ne!(code(&i), base);
        let mut i = inputs();
        i.sign = SigningKey::from_seed(&[9u8; 32]).verifying_key();
        assert_ne!(code(&i), base);
        let mut i = inputs();
        i.kx = KxSecretKey::from_bytes(&[9u8; 32]).public_key();
        assert_ne!(code(&i), base);
        assert_eq!(code(&inputs()), base);
    }

    #[test]
    fn approval_code_matching_is_typo_tolerant() {
        let c = code(&inputs());
        assert!(approval_code_matches(&c, &c));
        assert!(approval_code_matches(&c, &c.to_lowercase()));
        assert!(approval_code_matches(&c, &c.replace('-', "")));
        assert!(approval_code_matches(
            &c,
            &format!(" {} ", c.replace('-', " "))
        ));
        let aliased = c.replace('0', "O").replace('1', "l");
        assert!(approval_code_matches(&c, &aliased));
        assert!(approval_code_matches("ABCDE-01234", "abcde-oi234"));
    }

    #[test]
    fn approval_code_mismatches() {
        // MS-10: a different, truncated, padded or invalid code never matches.
        let c = code(&inputs());
        let mut wrong = c.clone().into_bytes();
        wrong[0] = if wrong[0] == b'A' { b'B' } else { b'A' };
        let wrong = String::from_utf8(wrong).unwrap();
        assert!(!approval_code_matches(&c, &wrong));
        assert!(!approval_code_matches(&c, &c[..10]));
        assert!(!approval_code_matches(&c, &format!("{c}0")));
        assert!(!approval_code_matches(&c, ""));
        assert!(!approval_code_matches("", ""));
        assert!(!approval_code_matches(&c, "UUUUU-UUUUU"));
        assert!(!approval_code_matches("0000", "0000"));
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(bytes in any::<[u8; 20]>()) {
            let mut s = String::new();
            encode_into(&bytes, 32, &mut s);
            let digits = normalize(&s.to_lowercase()).unwrap();
            let mut out = [0u8; 20];
            decode_digits(&digits, &mut out).unwrap();
            prop_assert_eq!(out, bytes);
        }

        #[test]
        fn matching_never_panics(a in ".{0,20}", b in ".{0,20}") {
            let _ = approval_code_matches(&a, &b);
        }
    }
}
