//! Typed identifiers: device, collection and version ids.
//!
//! Each id is a fixed-size byte array wrapped in its own type so that one kind can never be
//! passed where another is expected (MS-13). All of them print as lowercase hex and parse
//! back from it.

use std::fmt;
use std::str::FromStr;

use crate::hlc::Hlc;

/// Hash of a sealed batch (`H(signed message)`), 32 bytes.
pub type BatchHash = [u8; 32];

/// Why an id could not be built from bytes or text.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IdError {
    /// The input had the wrong number of bytes (or hex digits / 2) for this id type.
    #[error("{kind} must be {expected} bytes, got {got}")]
    WrongLength {
        /// Which id type was being parsed.
        kind: &'static str,
        /// Bytes required.
        expected: usize,
        /// Bytes offered.
        got: usize,
    },
    /// The text contained a character that is not a hex digit.
    #[error("{kind} is not valid hex")]
    BadHex {
        /// Which id type was being parsed.
        kind: &'static str,
    },
}

macro_rules! byte_id {
    ($(#[$meta:meta])* $name:ident, $len:expr, $kind:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Number of bytes in this id.
            pub const LEN: usize = $len;

            /// Builds the id from a slice of exactly [`Self::LEN`] bytes.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
                let arr: [u8; $len] = bytes.try_into().map_err(|_| IdError::WrongLength {
                    kind: $kind,
                    expected: $len,
                    got: bytes.len(),
                })?;
                Ok(Self(arr))
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex form (the same as `Display`).
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                if s.len() != 2 * $len {
                    return Err(IdError::WrongLength { kind: $kind, expected: $len, got: s.len() / 2 });
                }
                let bytes = hex::decode(s).map_err(|_| IdError::BadHex { kind: $kind })?;
                Self::from_slice(&bytes)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
    };
}

byte_id!(
    /// A device id: `H("sealsync/v1/device-id" || sign_pk)[..16]`, self-certifying.
    DeviceId,
    16,
    "device id"
);

byte_id!(
    /// A collection id: the blinded (HMAC) name of a collection, 16 bytes.
    CollectionId,
    16,
    "collection id"
);

byte_id!(
    /// A version id: `u64be(hlc) || device_id`. Byte order is the global mutation order.
    VersionId,
    24,
    "version id"
);

impl VersionId {
    /// The version id of a mutation stamped `hlc` by `device`.
    pub fn new(hlc: Hlc, device: DeviceId) -> Self {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&hlc.0.to_be_bytes());
        out[8..].copy_from_slice(&device.0);
        Self(out)
    }

    /// The HLC part.
    pub fn hlc(&self) -> Hlc {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        Hlc(u64::from_be_bytes(b))
    }

    /// The device part.
    pub fn device(&self) -> DeviceId {
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.0[8..]);
        DeviceId(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d = DeviceId([0xab; 16]);
        let s = d.to_string();
        assert_eq!(s, "ab".repeat(16));
        assert_eq!(format!("{d:?}"), s);
        assert_eq!(s.parse::<DeviceId>().unwrap(), d);
        assert_eq!("AB".repeat(16).parse::<DeviceId>().unwrap(), d);
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(
            DeviceId::from_slice(&[0; 15]),
            Err(IdError::WrongLength {
                kind: "device id",
                expected: 16,
                got: 15
            })
        );
        assert!(matches!(
            "zz".repeat(16).parse::<CollectionId>(),
            Err(IdError::BadHex { .. })
        ));
        assert!(matches!(
            "ab".parse::<CollectionId>(),
            Err(IdError::WrongLength { .. })
        ));
        // Multi-byte characters must not panic on odd lengths.
        assert!("é".repeat(16).parse::<DeviceId>().is_err());
    }

    #[test]
    fn version_id_parts_and_order() {
        let a = VersionId::new(Hlc(5), DeviceId([9; 16]));
        let b = VersionId::new(Hlc(6), DeviceId([1; 16]));
        let c = VersionId::new(Hlc(6), DeviceId([2; 16]));
        assert_eq!(a.hlc(), Hlc(5));
        assert_eq!(a.device(), DeviceId([9; 16]));
        assert!(a < b && b < c, "order is (hlc, device)");
        assert_eq!(VersionId::from_slice(&a.0).unwrap(), a);
        assert_eq!(a.to_string().parse::<VersionId>().unwrap(), a);
    }
}
