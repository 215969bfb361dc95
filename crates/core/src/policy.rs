//! Merge policies of a collection.
//!
//! A collection's policy decides how concurrent versions of one record combine (see
//! [`crate::merge::resolve`]). It travels as text (`"lww"`, `"fields"`, `"manual"`) inside
//! the encrypted collection descriptor.

use std::fmt;
use std::str::FromStr;

/// How concurrent versions of a record are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Last writer wins: the version with the largest `(hlc, device)` is the value.
    #[default]
    Lww,
    /// Per-field last writer wins on JSON objects.
    Fields,
    /// Concurrent versions stay as siblings (a conflict) until a device writes a resolution.
    Manual,
}

/// A policy name that is not one of the three known ones.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// Returned by `Policy::from_str` for any other text.
    #[error("unknown policy {0:?}: expected one of lww, fields, manual")]
    Unknown(String),
}

impl Policy {
    /// All policies, in a fixed order.
    pub const ALL: [Policy; 3] = [Policy::Lww, Policy::Fields, Policy::Manual];

    /// The wire / CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Lww => "lww",
            Policy::Fields => "fields",
            Policy::Manual => "manual",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, PolicyError> {
        match s {
            "lww" => Ok(Policy::Lww),
            "fields" => Ok(Policy::Fields),
            "manual" => Ok(Policy::Manual),
            other => Err(PolicyError::Unknown(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for p in Policy::ALL {
            assert_eq!(p.as_str().parse::<Policy>().unwrap(), p);
            assert_eq!(p.to_string(), p.as_str());
        }
        assert_eq!(Policy::default(), Policy::Lww);
    }

    #[test]
    fn unknown_lists_choices() {
        let err = "LWW".parse::<Policy>().unwrap_err();
        assert_eq!(err, PolicyError::Unknown("LWW".into()));
        let msg = err.to_string();
        assert!(
            msg.contains("lww") && msg.contains("fields") && msg.contains("manual"),
            "{msg}"
        );
    }
}
