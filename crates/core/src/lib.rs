//! Sealsync core: the pure logic shared by devices and the server.
//!
//! Records, hybrid logical clocks, merge policies, state hashes, sealed batches and their
//! verification, the device roster, key envelopes, collection descriptors and the recovery
//! blob. No I/O, no async: everything here is deterministic given its inputs (apart from
//! fresh keys and nonces drawn from the OS RNG by `sealsync-crypto`). The formats are
//! specified in `docs/protocol.md`.
#![forbid(unsafe_code)]

pub mod batch;
pub mod collection;
pub mod enroll;
pub mod envelope;
pub mod error;
pub mod hlc;
pub mod ids;
pub mod keys;
pub mod merge;
pub mod merkle;
pub mod pairing;
pub mod policy;
pub mod recovery;
pub mod roster;
pub mod state;
pub mod verify;

#[cfg(test)]
mod testkit;

pub use batch::{
    BatchDraft, ChainCheck, ChainState, MAX_BATCH_BYTES, MAX_BATCH_MUTATIONS, MAX_KEY_BYTES,
    MAX_VALUE_BYTES, SealedBatch, check_chain, mutation_version, open_batch, open_batch_with_keys,
    seal_batch, seal_batch_with_salt,
};
pub use collection::{
    Descriptor, MAX_DESCRIPTOR_BYTES, VerifiedDescriptor, descriptor_collection_id,
    descriptor_hash, open_descriptor, pinned_descriptor, seal_descriptor,
    seal_descriptor_with_salt, verify_descriptor,
};
pub use enroll::{sign_enroll_request, verify_enroll_request};
pub use envelope::{
    PURPOSE_ACCOUNT_KEYS, envelope_recipient, open_envelope, seal_envelope,
    seal_envelope_for_vectors, seal_envelope_with_salt,
};
pub use error::{
    BatchError, CollectionError, EnvelopeError, KeysError, RecoveryError, RosterError,
};
pub use hlc::{ClockError, Hlc, HlcClock, MAX_DRIFT_MS, within_drift};
pub use ids::{BatchHash, CollectionId, DeviceId, IdError, VersionId};
pub use keys::AccountKeys;
pub use merge::{Resolved, Version, explain, resolve};
pub use pairing::{ApprovedDevice, Approver, Confirmed, DeviceKeys, Joiner, PairingError};
pub use policy::{Policy, PolicyError};
pub use recovery::{open_recovery_blob, seal_recovery_blob, seal_recovery_blob_with_salt};
pub use roster::{
    CollectionPin, GenesisParams, MAX_DEVICE_NAME_BYTES, MAX_ROSTER_CREATED_MS, NewMember,
    ROSTER_CLOCK_TOLERANCE_MS, Roster, RosterMember, roster_entry_hash,
};
pub use state::{collection_root, combined_root, leaf_hash, state_root};
pub use verify::{VerifiedHeader, batch_hash, verify_batch};
