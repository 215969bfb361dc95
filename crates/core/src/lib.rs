//! Sealsync core: the pure logic shared by devices and the server.
//!
//! Records, hybrid logical clocks, merge policies, state hashes, sealed batches and their
//! verification, the device roster, key envelopes, collection descriptors and the recovery
//! blob. No I/O, no async: everything here is deterministic given its inputs (apart from
//! fresh keys and nonces drawn from the OS RNG by `sealsync-crypto`). The formats are
//! specified in `docs/protocol.md`.
#![forbid(unsafe_code)]

pub mod hlc;
pub mod ids;
pub mod merge;
pub mod policy;
pub mod state;

pub use hlc::{ClockError, Hlc, HlcClock, MAX_DRIFT_MS, within_drift};
pub use ids::{BatchHash, CollectionId, DeviceId, IdError, VersionId};
pub use merge::{Resolved, Version, explain, resolve};
pub use policy::{Policy, PolicyError};
pub use state::{collection_root, combined_root, leaf_hash, state_root};
