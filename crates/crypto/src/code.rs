//! Crockford base32 for human-handled strings: recovery secrets and pairing codes.
//!
//! Encoding is MSB-first over the alphabet `0123456789ABCDEFGHJKMNPQRSTVWXYZ`. Decoding is
//! typo tolerant: case-insensitive, `-` and whitespace ignored, `O` read as `0`, `I` and `L`
//! read as `1`.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::CryptoError;
use crate::hash::random_array;

/// The Crockford base32 alphabet.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

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

/// Random bytes in a pairing code (40 bits).
pub const PAIRING_CODE_BYTES: usize = 5;
/// Base32 characters in a pairing code (40 bits / 5).
pub const PAIRING_CODE_CHARS: usize = 8;

/// A one-time pairing code: 40 random bits made by the approving device, shown as
/// `XXXX-XXXX` (Crockford base32) and typed on the new device. It is the SPAKE2 password
/// of one pairing attempt ([`crate::pake`]); a wrong guess costs the attacker the whole
/// attempt, so the odds of one online guess are 2^-40. Zeroized on drop; `Debug` prints
/// `PairingCode(..)`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PairingCode {
    bytes: [u8; PAIRING_CODE_BYTES],
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingCode(..)")
    }
}

impl PairingCode {
    /// A fresh code from the OS RNG.
    pub fn generate() -> Self {
        Self {
            bytes: random_array(),
        }
    }

    /// The code with these bytes (for test vectors).
    pub fn from_bytes(bytes: [u8; PAIRING_CODE_BYTES]) -> Self {
        Self { bytes }
    }

    /// Parses a typed code: Crockford base32, case-insensitive, `-` and spaces ignored,
    /// `O` read as `0`, `I`/`L` as `1`. Anything else, or not exactly 8 characters, is
    /// [`CryptoError::Encoding`].
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let digits = normalize(text)?;
        if digits.len() != PAIRING_CODE_CHARS {
            return Err(CryptoError::Encoding);
        }
        let mut code = Self {
            bytes: [0u8; PAIRING_CODE_BYTES],
        };
        decode_digits(&digits, &mut code.bytes)?;
        Ok(code)
    }

    /// `XXXX-XXXX`.
    pub fn display(&self) -> Zeroizing<String> {
        let mut plain = Zeroizing::new(String::with_capacity(PAIRING_CODE_CHARS));
        encode_into(&self.bytes, PAIRING_CODE_CHARS, &mut plain);
        Zeroizing::new(format!("{}-{}", &plain[..4], &plain[4..]))
    }

    /// The raw code bytes (the PAKE password input).
    pub fn expose(&self) -> &[u8; PAIRING_CODE_BYTES] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn pairing_code_format_and_round_trip() {
        let code = PairingCode::from_bytes([0xff, 0, 0x12, 0x34, 0x56]);
        let shown = code.display();
        assert_eq!(shown.len(), 9);
        assert_eq!(&shown[4..5], "-");
        assert!(
            shown
                .bytes()
                .enumerate()
                .all(|(i, b)| i == 4 || ALPHABET.contains(&b))
        );
        let back = PairingCode::parse(&shown).unwrap();
        assert_eq!(back.expose(), code.expose());
        // Typo tolerant: case, dashes, spaces and Crockford aliases.
        let typed = format!(" {} ", shown.to_lowercase().replace('-', " "));
        assert_eq!(PairingCode::parse(&typed).unwrap().expose(), code.expose());
        assert_eq!(
            PairingCode::parse("0O1I-lL00").unwrap().expose(),
            PairingCode::parse("0011-1100").unwrap().expose()
        );
    }

    #[test]
    fn pairing_code_refuses_bad_text() {
        for bad in [
            "",
            "ABCD-EFG",
            "ABCD-EFGHJ",
            "ABCD-EFGU",
            "ABCD_EFGH",
            "ABCDEFGH\u{e9}",
        ] {
            assert_eq!(
                PairingCode::parse(bad).unwrap_err(),
                CryptoError::Encoding,
                "{bad}"
            );
        }
        assert_eq!(format!("{:?}", PairingCode::generate()), "PairingCode(..)");
    }

    #[test]
    fn generated_codes_differ() {
        let a = PairingCode::generate();
        let b = PairingCode::generate();
        assert_ne!(a.expose(), b.expose());
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
        fn parsing_never_panics(a in ".{0,20}") {
            let _ = PairingCode::parse(&a);
        }
    }
}
