//! Sealsync device library: a [`Replica`] is one device's encrypted local store, key store
//! and sync engine.
//!
//! - Local edits (`put`, `delete`, `resolve`) are durable when the call returns and work
//!   offline; collections are addressed by name (blinded for the server once the account
//!   keys are known). [`Replica::transaction`] groups edits across collections into one
//!   atomic commit ([`Transaction`]); [`Replica::put_json`], [`Replica::get_json`] and
//!   [`Replica::patch`] (top-level fields of a `fields` collection) take serde types.
//! - [`Replica::sync`] speaks `docs/protocol.md` over HTTP/2 and mutual TLS 1.3: it extends
//!   the verified roster (on a pending device it only completes a confirmed pairing),
//!   exchanges collection
//!   descriptors, pushes sealed batches from the outbox and pulls, verifies and applies other
//!   devices' batches. Anything from the server that fails a check is refused as a whole and
//!   leaves local state unchanged.
//! - [`Replica::scan`] reads a key range or prefix of a collection ([`ScanOptions`]),
//!   decrypting only what it returns; [`Replica::find`] looks records up by a top-level JSON
//!   field through an index made by [`Replica::create_index`], which stores keyed hashes of
//!   the field's values, never the values (`query`).
//! - Edits are stamped with a hybrid logical clock read from trusted time: the system
//!   clock, pulled back if it runs ahead of the server's clock (learned at enrollment and
//!   at every sync) by more than half the drift bound (`clock`, NA-10).
//! - [`Replica::enroll`] joins an account with a bundle from `sealsync admin enroll`, as its
//!   first device of a new account (creating the account keys, roster genesis and recovery
//!   secret), as a pending device, or with the recovery secret. A pending device becomes
//!   trusted by pairing: a trusted device runs [`Replica::begin_approval`] (which makes a
//!   one-time code) and [`Replica::finish_approval`], the new device [`Replica::join`] with
//!   that code; the two run SPAKE2 through the server (`pairing`).
//!
//! Files in the home directory: `replica.db` (SQLite, values encrypted with a local storage
//! key), `keystore.bin` (sealed device secrets) and `keystore.key` (0600, only when no
//! passphrase is set through `SEALSYNC_PASSPHRASE`).
#![forbid(unsafe_code)]

mod check;
mod clock;
mod clock_repair;
mod collections;
mod devices;
pub mod driver;
mod enroll;
mod error;
pub mod errors;
pub mod feed;
mod handle;
pub mod keystore;
mod net;
mod options;
mod pairing;
pub mod progress;
mod pull;
mod queries;
mod query;
mod refresh;
mod replica;
mod restore;
mod rollback;
mod store;
mod sync;
mod sync_lock;
#[cfg(test)]
mod testutil;
mod txn;
mod types;
mod worker;

use std::path::PathBuf;

use sealsync_core::Roster;

pub use check::Check;
pub use driver::{Backoff, SyncHandle, SyncNowError, SyncOptions, SyncStatus};
pub use error::StorageError;
pub use errors::{
    EnrollError, LocalError, NetError, OpenError, PairingError, ReadError, SyncError, WriteError,
};
pub use feed::{Change, ChangeFilter, Changes, Lagged, Origin};
pub use handle::Replica;
pub use keystore::{DeviceSecrets, FileKeyStore, KeyStore, KeyStoreError, Protection};
pub use options::{OpenOptions, Timeouts};
pub use pairing::Approval;
pub use progress::{SyncProgress, Transfer};
pub use query::ScanOptions;
#[doc(hidden)]
pub use sealsync_core::{DeviceId, Policy, VersionId};
pub use sync_lock::SYNC_LOCK_WAIT;
pub use txn::Transaction;
pub use types::{
    ChangedKey, CollectionStatus, Conflict, ConflictVersion, DeviceState, EnrollOptions, Enrolled,
    HistoryEntry, LastError, PendingDeviceInfo, PolicyChange, Status, SyncIssue, SyncReport,
};

/// Largest record key in bytes.
pub const MAX_KEY_BYTES: usize = sealsync_core::MAX_KEY_BYTES;
/// Largest record value in bytes.
pub const MAX_VALUE_BYTES: usize = sealsync_core::MAX_VALUE_BYTES;

/// One open view of a device's replica: local store, keys and sync state. A [`Replica`]
/// handle holds two (one for local operations, one for the sync engine); each has its own
/// SQLite connection. `Debug` prints no secrets.
pub(crate) struct Core {
    home: PathBuf,
    store: store::Store,
    secrets: DeviceSecrets,
    keystore: std::sync::Arc<dyn KeyStore>,
    /// Connect and request timeouts for this core's connections.
    timeouts: Timeouts,
    /// Bumped after this core commits pulled changes (wakes the replica's change feeds).
    commits: Option<std::sync::Arc<tokio::sync::watch::Sender<u64>>>,
    /// Progress of this replica's syncs (shared by its cores).
    progress: progress::ProgressSink,
    device_id: DeviceId,
    account: String,
    name: String,
    server_url: String,
    state: DeviceState,
    /// The verified roster; `None` while pending (no genesis is trusted before pairing).
    roster: Option<Roster>,
    /// Length and modification time of the key store file when `secrets` was read: another
    /// handle that saves new secrets changes them (see `refresh`).
    keystore_stamp: Option<(u64, std::time::SystemTime)>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("home", &self.home)
            .field("device_id", &self.device_id)
            .field("account", &self.account)
            .field("name", &self.name)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
