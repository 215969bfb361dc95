//! The one batch verification path, shared by the server (on push) and devices (on pull).
//!
//! Order: size; header decode (bounded) only to learn the claimed author and check suite
//! and field lengths; then the Ed25519 signature (`verify_strict`) over the exact received
//! header and ciphertext bytes with the key the caller vouches for. Nothing in the header is
//! trusted or returned before the signature verifies, and nothing is ever re-encoded.

use prost::Message;
use sealsync_crypto::{
    SUITE_V1, SigContext, VerifyingKey, check_object_salt, sha256, signed_message,
};
use sealsync_proto::{BatchHeader, Sealed};

use crate::batch::MAX_BATCH_BYTES;
use crate::error::BatchError;
use crate::hlc::{Hlc, within_drift};
use crate::ids::{BatchHash, CollectionId, DeviceId};
use crate::roster::Roster;

/// Largest encoded batch header accepted (the real ones are about 200 bytes).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// A batch header whose signature verified, with its typed ids and the batch hash.
#[derive(Clone, Debug)]
pub struct VerifiedHeader {
    /// The decoded header (authenticated).
    pub header: BatchHeader,
    /// Author (from the authenticated header).
    pub device: DeviceId,
    /// Collection (from the authenticated header).
    pub collection: CollectionId,
    /// [`batch_hash`] of the batch.
    pub hash: BatchHash,
}

impl VerifiedHeader {
    /// Refuses a batch that belongs to another log than the one it was fetched from or
    /// pushed to (MS-18): [`BatchError::WrongAccount`] / [`BatchError::WrongCollection`].
    pub fn check_log(&self, account: &str, collection: &CollectionId) -> Result<(), BatchError> {
        if self.header.account != account {
            return Err(BatchError::WrongAccount);
        }
        if self.collection != *collection {
            return Err(BatchError::WrongCollection);
        }
        Ok(())
    }

    /// Refuses a batch whose `roster_head` is not the hash of an entry of `roster`, the
    /// receiver's verified roster (genesis included): [`BatchError::UnknownRosterHead`]
    /// (MS-12). Devices call it on pull after syncing their roster; the server does not
    /// (it stores the roster it would hide).
    pub fn check_roster_head(&self, roster: &Roster) -> Result<(), BatchError> {
        let head: [u8; 32] = self
            .header
            .roster_head
            .as_slice()
            .try_into()
            .map_err(|_| BatchError::Malformed("roster head length"))?;
        if roster.contains_head(&head) {
            Ok(())
        } else {
            Err(BatchError::UnknownRosterHead(head))
        }
    }

    /// Refuses an `hlc_max` more than `MAX_DRIFT_MS` ahead of `now_ms` (CD-08; the server's
    /// check on push).
    pub fn check_clock(&self, now_ms: u64) -> Result<(), BatchError> {
        let hlc = Hlc(self.header.hlc_max);
        if within_drift(hlc, now_ms) {
            Ok(())
        } else {
            Err(BatchError::ClockAhead {
                hlc,
                limit: Hlc::from_parts(now_ms.saturating_add(crate::MAX_DRIFT_MS), u16::MAX),
            })
        }
    }
}

/// `H(signed_message(Batch, header, ciphertext))`: identifies a batch (the signature is
/// deterministic and strictly verified, so it adds nothing).
pub fn batch_hash(sealed: &Sealed) -> BatchHash {
    sha256(&signed_message(
        SigContext::Batch,
        &sealed.header,
        &sealed.ciphertext,
    ))
}

/// THE verification path: size, header decode, suite, id, hash and salt lengths (salt 16 to
/// 64 bytes), seq range, then
/// the signature with the key `key_for(author)` returns (`None` =>
/// [`BatchError::UnknownDevice`]). Returns the authenticated header.
pub fn verify_batch(
    sealed: &Sealed,
    key_for: impl Fn(&DeviceId) -> Option<VerifyingKey>,
) -> Result<VerifiedHeader, BatchError> {
    let len = sealed.encoded_len();
    if len > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge {
            len,
            limit: MAX_BATCH_BYTES,
        });
    }
    let header: BatchHeader = sealsync_proto::decode_limited(&sealed.header, MAX_HEADER_BYTES)
        .map_err(|_| BatchError::Malformed("header does not decode"))?;
    if header.suite != SUITE_V1 {
        return Err(BatchError::Suite(header.suite));
    }
    let device = DeviceId::from_slice(&header.device_id)
        .map_err(|_| BatchError::Malformed("device id length"))?;
    let collection = CollectionId::from_slice(&header.collection_id)
        .map_err(|_| BatchError::Malformed("collection id length"))?;
    if header.prev_batch_hash.len() != 32 {
        return Err(BatchError::Malformed("prev batch hash length"));
    }
    if header.key_commitment.len() != 32 {
        return Err(BatchError::Malformed("key commitment length"));
    }
    if header.roster_head.len() != 32 {
        return Err(BatchError::Malformed("roster head length"));
    }
    // Defect 3 of issue 5: a header without a fresh salt could reuse a key and nonce.
    check_object_salt(&header.salt).map_err(|_| BatchError::Malformed("salt length"))?;
    if header.seq == 0 || header.seq == u64::MAX {
        return Err(BatchError::Seq(header.seq));
    }
    let key = key_for(&device).ok_or(BatchError::UnknownDevice(device))?;
    key.verify(
        SigContext::Batch,
        &sealed.header,
        &sealed.ciphertext,
        &sealed.signature,
    )
    .map_err(|_| BatchError::Signature)?;
    Ok(VerifiedHeader {
        header,
        device,
        collection,
        hash: batch_hash(sealed),
    })
}
