//! [`Check`]: which check an object from the server (or a push) failed, as sync reports
//! and errors name it.

use std::fmt;

use serde::Serialize;

/// The check an object from the server (or a push) failed; shown and serialised by its
/// short name (`signature`, `roster`, `chain`, ...).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// A batch or page larger than the protocol allows.
    Size,
    /// Bytes that do not decode.
    Decode,
    /// An unknown cipher suite.
    Suite,
    /// An author that is not a device of the verified roster.
    Author,
    /// A signature that does not verify.
    Signature,
    /// Another account's object.
    Account,
    /// Another collection's batch.
    Collection,
    /// A roster head this device has not verified (a roster fork, MS-12).
    Roster,
    /// A gap, repeat or fork in an author's chain of batches.
    Chain,
    /// An unknown key epoch.
    Epoch,
    /// A ciphertext that does not match its key commitment.
    Commitment,
    /// A ciphertext that does not decrypt.
    Decrypt,
    /// Malformed mutations inside a batch.
    Mutations,
    /// A clock too far ahead or out of order.
    Clock,
    /// A batch signed with a key that is not its author's.
    Signer,
    /// A batch that was never verified.
    Verify,
    /// The server refused this device's push.
    Push,
    /// A collection descriptor that does not verify.
    Descriptor,
    /// A collection whose pinned policy could not be applied.
    Pin,
    /// A log cursor that moved back or a page with inconsistent indices.
    Cursor,
}

impl Check {
    /// The short name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Decode => "decode",
            Self::Suite => "suite",
            Self::Author => "author",
            Self::Signature => "signature",
            Self::Account => "account",
            Self::Collection => "collection",
            Self::Roster => "roster",
            Self::Chain => "chain",
            Self::Epoch => "epoch",
            Self::Commitment => "commitment",
            Self::Decrypt => "decrypt",
            Self::Mutations => "mutations",
            Self::Clock => "clock",
            Self::Signer => "signer",
            Self::Verify => "verify",
            Self::Push => "push",
            Self::Descriptor => "descriptor",
            Self::Pin => "pin",
            Self::Cursor => "cursor",
        }
    }

    /// The check a batch verification error names.
    pub(crate) fn of(error: &sealsync_core::BatchError) -> Self {
        use sealsync_core::BatchError as E;
        match error {
            E::TooLarge { .. } => Self::Size,
            E::Malformed(_) => Self::Decode,
            E::Suite(_) => Self::Suite,
            E::UnknownDevice(_) => Self::Author,
            E::Signature => Self::Signature,
            E::WrongAccount => Self::Account,
            E::WrongCollection => Self::Collection,
            E::UnknownRosterHead(_) => Self::Roster,
            E::Seq(_) | E::Chain(_) => Self::Chain,
            E::UnknownEpoch(_) => Self::Epoch,
            E::Commitment => Self::Commitment,
            E::Decrypt => Self::Decrypt,
            E::BadMutation(_) => Self::Mutations,
            E::ClockAhead { .. } | E::ClockOrder { .. } => Self::Clock,
            E::KeyMismatch => Self::Signer,
            _ => Self::Verify,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Check {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
