//! Error types of the crate's sealed objects: account keys, batches, roster, envelopes,
//! collection descriptors and the recovery blob.
//!
//! Every variant names one failed check. Decryption failures are deliberately uniform
//! (one variant, no detail) so they cannot serve as an oracle (MS-05).

use crate::batch::ChainCheck;
use crate::hlc::Hlc;
use crate::ids::{CollectionId, DeviceId};

/// Why an encoded [`crate::AccountKeys`] was refused.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KeysError {
    /// The bytes are not a protobuf `AccountKeys`.
    #[error("account keys do not decode")]
    Malformed,
    /// A key is not 32 bytes, no epoch is present, an epoch is 0 or listed twice.
    #[error("account keys are invalid: {0}")]
    Invalid(&'static str),
}

/// Why a batch was refused. [`BatchError::check`] gives the short name of the failed check.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The encoded batch is larger than [`crate::MAX_BATCH_BYTES`] (BI-01).
    #[error("size check failed: {len} bytes exceeds {limit}")]
    TooLarge {
        /// Encoded size of the `Sealed` batch.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The header does not decode, or an id / hash in it has the wrong length (BI-03).
    #[error("decode check failed: {0}")]
    Malformed(&'static str),
    /// The header names a suite other than `SUITE_V1` (MS-07).
    #[error("suite check failed: unknown suite {0}")]
    Suite(u32),
    /// The author is not a device whose key the caller knows (MS-11, MS-23).
    #[error("author check failed: unknown device {0}")]
    UnknownDevice(DeviceId),
    /// The signature does not verify with the author's key over the exact bytes (MS-23).
    #[error("signature check failed")]
    Signature,
    /// The header names another account than the log it came from (MS-18).
    #[error("account check failed")]
    WrongAccount,
    /// The header names another collection than the log it came from (MS-18).
    #[error("collection check failed")]
    WrongCollection,
    /// `seq` is 0 or `u64::MAX`, which no valid chain contains (BI-07, MS-31).
    #[error("sequence check failed: seq {0} is out of range")]
    Seq(u64),
    /// The batch does not extend the author's chain (replay, gap or fork: MS-25, MS-26, BI-07).
    #[error("chain check failed: {0:?}")]
    Chain(ChainCheck),
    /// The header's `roster_head` is not the hash of an entry of the receiver's verified
    /// roster (genesis included): the author was shown a roster entry this device was not,
    /// a roster fork by the server (MS-12). Checked after the signature, so the head is the
    /// author's own claim.
    #[error(
        "roster check failed: the author's roster head {} is not an entry of the verified roster (roster fork?)",
        hex::encode(.0)
    )]
    UnknownRosterHead([u8; 32]),
    /// The caller holds no key for the header's key epoch (MS-08).
    #[error("epoch check failed: unknown key epoch {0}")]
    UnknownEpoch(u32),
    /// The key commitment in the header does not match the derived key (MS-42).
    #[error("commitment check failed")]
    Commitment,
    /// The ciphertext or its associated data was altered (MS-16, MS-17, MS-18).
    #[error("decrypt check failed")]
    Decrypt,
    /// The mutation list does not decode, is empty or too long, or a key, value or
    /// `supersedes` id breaks the limits.
    #[error("mutations check failed: {0}")]
    BadMutation(String),
    /// A mutation is later than the header's `hlc_max`, or `hlc_max` is beyond the drift bound
    /// from the checker's clock (CD-08).
    #[error("clock check failed: hlc {hlc:?} is later than allowed {limit:?}")]
    ClockAhead {
        /// The offending clock value.
        hlc: Hlc,
        /// The largest value allowed.
        limit: Hlc,
    },
    /// Mutation clocks do not strictly increase, or are not later than the author's
    /// previous batch (BI-19).
    #[error("clock check failed: hlc {hlc:?} is not after {after:?}")]
    ClockOrder {
        /// The offending clock value.
        hlc: Hlc,
        /// The value it must exceed.
        after: Hlc,
    },
    /// Sealing: the signing key's device id is not the draft's device.
    #[error("signer check failed: the signing key does not belong to the batch's device")]
    KeyMismatch,
    /// Opening: the `Sealed` passed is not the batch the `VerifiedHeader` came from.
    #[error("verify check failed: batch differs from the verified one")]
    NotVerified,
}

impl BatchError {
    /// Short name of the failed check for reports and logs: `"size"`, `"decode"`, `"suite"`,
    /// `"author"`, `"signature"`, `"account"`, `"collection"`, `"roster"`, `"chain"`,
    /// `"epoch"`, `"commitment"`, `"decrypt"`, `"mutations"`, `"clock"`, `"signer"`,
    /// `"verify"`.
    pub fn check(&self) -> &'static str {
        match self {
            BatchError::TooLarge { .. } => "size",
            BatchError::Malformed(_) => "decode",
            BatchError::Suite(_) => "suite",
            BatchError::UnknownDevice(_) => "author",
            BatchError::Signature => "signature",
            BatchError::WrongAccount => "account",
            BatchError::WrongCollection => "collection",
            BatchError::UnknownRosterHead(_) => "roster",
            BatchError::Seq(_) | BatchError::Chain(_) => "chain",
            BatchError::UnknownEpoch(_) => "epoch",
            BatchError::Commitment => "commitment",
            BatchError::Decrypt => "decrypt",
            BatchError::BadMutation(_) => "mutations",
            BatchError::ClockAhead { .. } | BatchError::ClockOrder { .. } => "clock",
            BatchError::KeyMismatch => "signer",
            BatchError::NotVerified => "verify",
        }
    }
}

/// Why a roster entry (or a whole roster) was refused.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RosterError {
    /// The entry body does not decode, or a field has the wrong length (BI-03).
    #[error("roster entry does not decode: {0}")]
    Malformed(&'static str),
    /// The entry names a suite other than `SUITE_V1` (MS-07).
    #[error("roster entry has unknown suite {0}")]
    Suite(u32),
    /// The entry is for another account.
    #[error("roster entry is for another account")]
    WrongAccount,
    /// A genesis that is not seq 0, not op GENESIS, has a non-zero prev hash or is not
    /// self-signed by its subject.
    #[error("not a valid genesis entry: {0}")]
    NotGenesis(&'static str),
    /// A public key in the entry is invalid or weak (BI-06, BI-20).
    #[error("roster entry carries an invalid public key")]
    BadKey,
    /// The subject's device id is not the hash of its signing key (CD-07).
    #[error("subject device id does not match its signing key")]
    DeviceIdMismatch,
    /// The signature does not verify with the signer's key (MS-11).
    #[error("roster entry signature check failed")]
    Signature,
    /// The genesis's recovery KDF parameters are below the floor or absurd (MS-06), or the
    /// recovery salt has a bad length.
    #[error("recovery KDF parameters refused")]
    KdfParams,
    /// The entry's seq is not the next one (a gap, or an old seq passed to `apply`).
    #[error("roster seq {got} where {expected} was expected")]
    Seq {
        /// The next seq of the roster.
        expected: u64,
        /// The entry's seq.
        got: u64,
    },
    /// `prev_hash` is not the hash of the roster's head (MS-12).
    #[error("roster entry {seq} does not chain to the head")]
    PrevHash {
        /// The entry's seq.
        seq: u64,
    },
    /// The signer is not a current member (MS-11).
    #[error("roster entry signed by non-member {0}")]
    NotMember(DeviceId),
    /// An op other than `ADD` after the genesis, or a recovery signature on another op.
    #[error("roster op {0} is not allowed here")]
    Op(i32),
    /// The subject is already a member.
    #[error("device {0} is already in the roster")]
    AlreadyMember(DeviceId),
    /// A different entry at a seq already applied: the roster was forked (MS-10, MS-12).
    #[error("roster fork at seq {seq}")]
    Fork {
        /// Seq where the histories differ.
        seq: u64,
    },
    /// The entry's `epoch` is not the roster's current key epoch.
    #[error("roster entry names epoch {got} where the roster is at {expected}")]
    Epoch {
        /// The roster's current epoch.
        expected: u32,
        /// The entry's epoch.
        got: u32,
    },
    /// The entry's `created_ms` is zero, absurdly far in the future, or more than the
    /// tolerance before the previous entry's (BI-19).
    #[error("roster entry creation time {0} ms cannot be right")]
    CreatedAt(u64),
    /// A `COLLECTION` entry for a collection already pinned: its policy is fixed by the
    /// first one.
    #[error("collection {0} is already pinned in the roster")]
    AlreadyPinned(CollectionId),
    /// The descriptor inside a `COLLECTION` entry is refused.
    #[error("pinned collection descriptor refused: {0}")]
    Descriptor(CollectionError),
}

/// Why a key envelope could not be sealed or was refused.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The header does not decode or an id has the wrong length (BI-03).
    #[error("envelope does not decode: {0}")]
    Malformed(&'static str),
    /// Unknown suite (MS-07).
    #[error("envelope has unknown suite {0}")]
    Suite(u32),
    /// Purpose is not `"account-keys"` (MS-14).
    #[error("envelope has unexpected purpose")]
    Purpose,
    /// The envelope is for another account.
    #[error("envelope is for another account")]
    WrongAccount,
    /// The sender is not in the verified roster (MS-11, MS-15).
    #[error("envelope sender {0} is not in the roster")]
    NotMember(DeviceId),
    /// The envelope is addressed to another device (MS-15).
    #[error("envelope is addressed to another device")]
    WrongRecipient,
    /// The signature does not verify with the sender's roster key (MS-01).
    #[error("envelope signature check failed")]
    Signature,
    /// HPKE open failed (altered ciphertext, header or key: MS-01, MS-05).
    #[error("envelope decryption failed")]
    Decrypt,
    /// The decrypted keys are invalid, or do not match the header's epoch.
    #[error("envelope keys are invalid: {0}")]
    Keys(KeysError),
    /// Sealing: the signing key is not the sender's, or HPKE refused the recipient key.
    #[error("envelope could not be sealed: {0}")]
    Seal(&'static str),
    /// The header's roster head is not an entry of the recipient's verified roster, or the
    /// sender was not yet a member at that entry (MS-12, MS-15).
    #[error("envelope names a roster head unknown to this device")]
    RosterHead,
}

/// Why a collection descriptor could not be sealed or was refused.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CollectionError {
    /// The header or the decrypted info does not decode (BI-03).
    #[error("collection descriptor does not decode: {0}")]
    Malformed(&'static str),
    /// Unknown suite (MS-07).
    #[error("collection descriptor has unknown suite {0}")]
    Suite(u32),
    /// The descriptor is for another account (MS-18).
    #[error("collection descriptor is for another account")]
    WrongAccount,
    /// The author is not in the verified roster (MS-11, MS-23).
    #[error("collection descriptor author {0} is not in the roster")]
    NotMember(DeviceId),
    /// The signature does not verify with the author's roster key (MS-23).
    #[error("collection descriptor signature check failed")]
    Signature,
    /// No key for the header's epoch (MS-08).
    #[error("collection descriptor uses unknown key epoch {0}")]
    UnknownEpoch(u32),
    /// The key commitment does not match (MS-42).
    #[error("collection descriptor commitment check failed")]
    Commitment,
    /// Decryption failed (MS-16).
    #[error("collection descriptor decryption failed")]
    Decrypt,
    /// The policy text is not `lww`, `fields` or `manual`.
    #[error("collection descriptor has unknown policy")]
    Policy,
    /// The decrypted name does not blind to the header's collection id (MS-17).
    #[error("collection name does not match the collection id")]
    NameMismatch,
    /// Sealing: the signing key is not the device's, or the keys lack the current epoch.
    #[error("collection descriptor could not be sealed: {0}")]
    Seal(&'static str),
    /// The descriptor is not the one the roster pins for its collection (another one was
    /// pinned first, or none is pinned yet).
    #[error("collection descriptor is not the one pinned in the roster")]
    NotPinned,
}

/// Why the recovery blob could not be opened.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RecoveryError {
    /// The header does not decode (BI-03).
    #[error("recovery blob does not decode")]
    Malformed,
    /// Unknown suite (MS-07).
    #[error("recovery blob has unknown suite {0}")]
    Suite(u32),
    /// The blob is for another account.
    #[error("recovery blob is for another account")]
    WrongAccount,
    /// The blob is bound to another roster genesis (MS-10).
    #[error("recovery blob is bound to another genesis")]
    WrongGenesis,
    /// Wrong recovery secret or altered blob (one uniform error: MS-05).
    #[error("recovery blob decryption failed")]
    Decrypt,
    /// The decrypted account keys are invalid.
    #[error("recovery blob keys are invalid: {0}")]
    Keys(KeysError),
}
