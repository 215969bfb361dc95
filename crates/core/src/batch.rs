//! Sealing and opening batches, and per-author chain continuity.
//!
//! A batch is one device's mutations in one collection. Its clear `BatchHeader` is the AEAD
//! associated data and is signed together with the ciphertext, so nothing can be moved to
//! another account, collection, device, seq or epoch (MS-17, MS-18). The object key is
//! derived from the batch identity and a fresh random salt carried in the signed header, so
//! the all-zero nonce never repeats under one key, even when a device restored from a backup
//! seals another batch at a seq it already used.
//! Verification of the signature lives in [`crate::verify`]; this module seals, checks the
//! chain and opens.

use prost::Message;
use sealsync_crypto::{
    CryptoError, ObjectKey, ObjectLabel, SUITE_V1, SigContext, SigningKey, SymmetricKey, lp,
    object_salt,
};
use sealsync_proto::{BatchHeader, Mutation, MutationList, Sealed};
use zeroize::Zeroizing;

use crate::error::BatchError;
use crate::hlc::Hlc;
use crate::ids::{BatchHash, CollectionId, DeviceId, VersionId};
use crate::keys::AccountKeys;
use crate::merge::Version;
use crate::verify::{VerifiedHeader, batch_hash};

/// Largest encoded `Sealed` batch (BI-01).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Most mutations in one batch.
pub const MAX_BATCH_MUTATIONS: usize = 4096;
/// Longest record key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest record value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Everything needed to seal one batch.
#[derive(Clone, Debug)]
pub struct BatchDraft {
    /// Account name.
    pub account: String,
    /// Blinded collection id.
    pub collection: CollectionId,
    /// Author; must be the device id of the signing key.
    pub device: DeviceId,
    /// 1, 2, 3, ... per (device, collection).
    pub seq: u64,
    /// Hash of this device's previous batch in the collection (zeros for seq 1).
    pub prev_hash: BatchHash,
    /// Key epoch the collection key belongs to.
    pub epoch: u32,
    /// Hash of the newest roster entry the author verified (MS-12).
    pub roster_head: [u8; 32],
    /// Mutations, HLCs strictly increasing.
    pub mutations: Vec<Mutation>,
}

/// A sealed batch with its decoded header and hash.
#[derive(Clone, Debug)]
pub struct SealedBatch {
    /// What travels.
    pub sealed: Sealed,
    /// The header inside `sealed.header`.
    pub header: BatchHeader,
    /// [`batch_hash`] of `sealed`.
    pub hash: BatchHash,
}

/// The object-key identity of a batch:
/// `lp(account) || collection_id || device_id || u64be(seq) || u32be(epoch)`.
pub(crate) fn batch_identity(
    account: &str,
    collection: &[u8],
    device: &[u8],
    seq: u64,
    epoch: u32,
) -> Vec<u8> {
    let mut id = Vec::with_capacity(4 + account.len() + 16 + 16 + 8 + 4);
    lp(&mut id, account.as_bytes());
    id.extend_from_slice(collection);
    id.extend_from_slice(device);
    id.extend_from_slice(&seq.to_be_bytes());
    id.extend_from_slice(&epoch.to_be_bytes());
    id
}

/// Checks limits and clocks of a mutation list: not empty, at most
/// [`MAX_BATCH_MUTATIONS`], key/value sizes, 24-byte `supersedes`, HLCs strictly increasing
/// and all `> after`, and (when given) `<= limit`.
pub(crate) fn check_mutations(
    mutations: &[Mutation],
    after: Hlc,
    limit: Option<Hlc>,
) -> Result<(), BatchError> {
    if mutations.is_empty() {
        return Err(BatchError::BadMutation("empty batch".into()));
    }
    if mutations.len() > MAX_BATCH_MUTATIONS {
        return Err(BatchError::BadMutation(format!(
            "{} mutations, limit {MAX_BATCH_MUTATIONS}",
            mutations.len()
        )));
    }
    let mut prev = after;
    for (i, m) in mutations.iter().enumerate() {
        if m.key.len() > MAX_KEY_BYTES {
            return Err(BatchError::BadMutation(format!(
                "mutation {i}: key of {} bytes",
                m.key.len()
            )));
        }
        if m.value.len() > MAX_VALUE_BYTES {
            return Err(BatchError::BadMutation(format!(
                "mutation {i}: value of {} bytes",
                m.value.len()
            )));
        }
        if m.supersedes.iter().any(|s| s.len() != VersionId::LEN) {
            return Err(BatchError::BadMutation(format!(
                "mutation {i}: supersedes id of wrong length"
            )));
        }
        let hlc = Hlc(m.hlc);
        if let Some(limit) = limit
            && hlc > limit
        {
            return Err(BatchError::ClockAhead { hlc, limit });
        }
        if hlc <= prev {
            return Err(BatchError::ClockOrder { hlc, after: prev });
        }
        prev = hlc;
    }
    Ok(())
}

/// Checks limits and HLC order, sets `hlc_max` to the last mutation's HLC, draws a fresh
/// 32-byte salt, derives the object key, encrypts with the header as associated data and
/// signs the exact bytes.
pub fn seal_batch(
    draft: BatchDraft,
    signing: &SigningKey,
    collection_key: &SymmetricKey,
) -> Result<SealedBatch, BatchError> {
    seal_batch_with_salt(draft, signing, collection_key, &object_salt())
}

/// [`seal_batch`] with the salt given (16 to 64 bytes), for test vectors: a salt must never
/// be reused with the same collection key and identity. Anything else than fresh random
/// bytes belongs in tests only.
pub fn seal_batch_with_salt(
    draft: BatchDraft,
    signing: &SigningKey,
    collection_key: &SymmetricKey,
    salt: &[u8],
) -> Result<SealedBatch, BatchError> {
    if DeviceId(sealsync_crypto::device_id(&signing.verifying_key())) != draft.device {
        return Err(BatchError::KeyMismatch);
    }
    if draft.seq == 0 || draft.seq == u64::MAX {
        return Err(BatchError::Seq(draft.seq));
    }
    check_mutations(&draft.mutations, Hlc(0), None)?;
    // Refuse before encoding so a huge draft never gets copied (CF-17).
    let payload: usize = draft
        .mutations
        .iter()
        .map(|m| m.key.len() + m.value.len())
        .sum();
    if payload > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge {
            len: payload,
            limit: MAX_BATCH_BYTES,
        });
    }
    // `check_mutations` refused an empty list, so `last()` is `Some`.
    let hlc_max = draft.mutations.last().map_or(0, |m| m.hlc);
    let identity = batch_identity(
        &draft.account,
        &draft.collection.0,
        &draft.device.0,
        draft.seq,
        draft.epoch,
    );
    let key = ObjectKey::derive(collection_key, ObjectLabel::Batch, &identity, salt)
        .map_err(|_| BatchError::Malformed("salt length"))?;
    let header = BatchHeader {
        suite: SUITE_V1,
        account: draft.account,
        collection_id: draft.collection.0.to_vec(),
        device_id: draft.device.0.to_vec(),
        seq: draft.seq,
        prev_batch_hash: draft.prev_hash.to_vec(),
        key_epoch: draft.epoch,
        hlc_max,
        witness: Vec::new(),
        roster_head: draft.roster_head.to_vec(),
        key_commitment: key.commitment().to_vec(),
        salt: salt.to_vec(),
    };
    let header_bytes = sealsync_proto::encode(&header);
    let plaintext = Zeroizing::new(sealsync_proto::encode(&MutationList {
        mutations: draft.mutations,
    }));
    let ciphertext = key.seal(&header_bytes, &plaintext);
    let signature = signing
        .sign(SigContext::Batch, &header_bytes, &ciphertext)
        .to_vec();
    let sealed = Sealed {
        header: header_bytes,
        ciphertext,
        signature,
    };
    let len = sealed.encoded_len();
    if len > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge {
            len,
            limit: MAX_BATCH_BYTES,
        });
    }
    let hash = batch_hash(&sealed);
    Ok(SealedBatch {
        sealed,
        header,
        hash,
    })
}

/// What a receiver knows of one author's chain in one collection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainState {
    /// Seq of the last applied batch (0 = none).
    pub last_seq: u64,
    /// Hash of the last applied batch (zeros = none).
    pub last_hash: BatchHash,
    /// `hlc_max` of the last applied batch.
    pub last_hlc: Hlc,
}

impl ChainState {
    /// The state after applying the batch `v` (which `check_chain` called `Next`).
    pub fn advance(&self, v: &VerifiedHeader) -> ChainState {
        ChainState {
            last_seq: v.header.seq,
            last_hash: v.hash,
            last_hlc: Hlc(v.header.hlc_max),
        }
    }
}

/// Where a batch stands relative to its author's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainCheck {
    /// `seq == last_seq + 1` and `prev_batch_hash == last_hash`: apply it.
    Next,
    /// Already applied (same seq, same hash): a no-op (MS-25, NA-08).
    Duplicate,
    /// A later seq than the next one: hold it until the gap is filled, or refuse (MS-26).
    Gap {
        /// The seq that is due.
        expected: u64,
        /// The seq received.
        got: u64,
    },
    /// Does not extend the chain: a different batch at an applied seq, a batch whose
    /// `prev_batch_hash` is not the last hash, or an old seq whose hash is unknown (CD-05).
    Fork {
        /// Seq of the offending batch.
        seq: u64,
    },
}

/// Classifies `header` against the author's chain. `Duplicate` only when `seq <= last_seq`
/// AND its hash equals the known hash of that seq (`state.last_hash` for `last_seq`,
/// `known_hash_at(seq)` below it; unknown counts as a fork). Seq 0 is a `Gap` that can
/// never be filled; arithmetic never overflows (BI-07, MS-31).
pub fn check_chain(
    state: &ChainState,
    header: &VerifiedHeader,
    known_hash_at: impl Fn(u64) -> Option<BatchHash>,
) -> ChainCheck {
    let seq = header.header.seq;
    let expected = state.last_seq.saturating_add(1);
    if seq == 0 {
        return ChainCheck::Gap { expected, got: 0 };
    }
    if seq <= state.last_seq {
        let known = if seq == state.last_seq {
            Some(state.last_hash)
        } else {
            known_hash_at(seq)
        };
        return match known {
            Some(h) if h == header.hash => ChainCheck::Duplicate,
            _ => ChainCheck::Fork { seq },
        };
    }
    if seq != expected {
        return ChainCheck::Gap { expected, got: seq };
    }
    if header.header.prev_batch_hash.as_slice() == state.last_hash.as_slice() {
        ChainCheck::Next
    } else {
        ChainCheck::Fork { seq }
    }
}

/// Commitment, decryption, decoding and per-mutation checks (limits; HLCs strictly
/// increasing, `> chain.last_hlc` and `<= hlc_max`). Returns the mutations, or an error and
/// nothing: it never partially succeeds.
pub fn open_batch(
    v: &VerifiedHeader,
    sealed: &Sealed,
    collection_key: &SymmetricKey,
    chain: &ChainState,
) -> Result<Vec<Mutation>, BatchError> {
    if batch_hash(sealed) != v.hash {
        return Err(BatchError::NotVerified);
    }
    let h = &v.header;
    let identity = batch_identity(&h.account, &v.collection.0, &v.device.0, h.seq, h.key_epoch);
    let key = ObjectKey::derive(collection_key, ObjectLabel::Batch, &identity, &h.salt)
        .map_err(|_| BatchError::Malformed("salt length"))?;
    let plaintext = Zeroizing::new(
        key.open(&h.key_commitment, &sealed.header, &sealed.ciphertext)
            .map_err(|e| match e {
                CryptoError::Commitment => BatchError::Commitment,
                _ => BatchError::Decrypt,
            })?,
    );
    let list: MutationList = sealsync_proto::decode_limited(&plaintext, MAX_BATCH_BYTES)
        .map_err(|_| BatchError::BadMutation("mutation list does not decode".into()))?;
    check_mutations(&list.mutations, chain.last_hlc, Some(Hlc(h.hlc_max)))?;
    Ok(list.mutations)
}

/// [`open_batch`] with the collection key taken from `keys` for the header's epoch
/// ([`BatchError::UnknownEpoch`] when it is not held: MS-08).
pub fn open_batch_with_keys(
    v: &VerifiedHeader,
    sealed: &Sealed,
    keys: &AccountKeys,
    chain: &ChainState,
) -> Result<Vec<Mutation>, BatchError> {
    let epoch = v.header.key_epoch;
    let ck = keys
        .collection_key(&v.header.account, &v.collection, epoch)
        .ok_or(BatchError::UnknownEpoch(epoch))?;
    open_batch(v, sealed, &ck, chain)
}

/// The record key and [`Version`] carried by a mutation written by `author`. `supersedes`
/// entries of the wrong length are dropped (`open_batch` already refused those).
pub fn mutation_version(m: &Mutation, author: DeviceId) -> (String, Version) {
    let version = Version {
        id: VersionId::new(Hlc(m.hlc), author),
        deleted: m.deleted,
        value: if m.deleted {
            Vec::new()
        } else {
            m.value.clone()
        },
        supersedes: m
            .supersedes
            .iter()
            .filter_map(|s| VersionId::from_slice(s).ok())
            .collect(),
    };
    (m.key.clone(), version)
}
