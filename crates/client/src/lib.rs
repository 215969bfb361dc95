//! Sealsync's device library: an end-to-end-encrypted, offline-first store that an app
//! embeds, and that keeps itself in sync with the account's other devices through a
//! Sealsync server which stores only signed ciphertext.
//!
//! A [`Replica`] is one device's replica: its local store (SQLite, record values encrypted
//! with a local storage key), its key store and its sync engine. Reads and writes are
//! local and work offline; a write is durable when the call returns, and
//! [`Replica::transaction`] commits writes to several records and collections at once.
//! Values are bytes, or serde types through [`Replica::put_json`], [`Replica::get_json`]
//! and [`Replica::patch`]. A sync (by hand with [`Replica::sync`], or in the background
//! with the driver, [`Replica::start_sync`]) pushes this device's edits sealed under the
//! account keys and pulls, verifies and applies the other devices' edits. Anything from the server that fails a check is refused as a whole
//! and leaves local state unchanged.
//!
//! # Example
//!
//! The first device of a new account: enroll it, write and read, follow changes, and let
//! the driver sync. (The hidden lines of this example start a real server on
//! `127.0.0.1` in a temporary directory and issue the enrollment bundle, as an operator
//! would with `sealsync admin enroll`.)
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let url = format!("https://{}", listener.local_addr()?);
//! # let data = dir.path().join("server");
//! # sealsync_server::init(&data, &url)?;
//! # let server = sealsync_server::Server::from_listener(&data, listener).await?;
//! # let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
//! # let server = tokio::spawn(server.run(async move {
//! #     let _ = stopped.await;
//! # }));
//! # let bundle = sealsync_server::enroll_ticket(&data, "acme", Duration::from_secs(600), None)?;
//! # let home = dir.path().join("laptop");
//! use std::time::Duration;
//!
//! use sealsync_client::{ChangeFilter, EnrollOptions, Origin, Replica, SyncOptions};
//!
//! // `bundle` is the one-line enrollment bundle the server's operator gave the user;
//! // `home` is a directory the app keeps for this device.
//! let enrolled =
//!     Replica::enroll(&home, &bundle, EnrollOptions::new("laptop").new_account(true)).await?;
//! // The account's recovery secret, shown once: the user writes it down.
//! assert!(enrolled.recovery_secret.is_some());
//! let replica = enrolled.replica;
//! // At the next start of the app: `let replica = Replica::open(&home)?;`
//!
//! // Local writes and reads: synchronous, offline, durable when `put` returns.
//! let mut changes = replica.subscribe(ChangeFilter::all().collection("notes"))?;
//! replica.put("notes", "groceries", b"milk, eggs")?;
//! assert_eq!(
//!     replica.get("notes", "groceries")?.as_deref(),
//!     Some(&b"milk, eggs"[..])
//! );
//!
//! // Every committed change reaches the subscribers once, local writes at once.
//! let change = changes.next().await.expect("the replica is open")?;
//! assert_eq!(change.key, "groceries");
//! assert_eq!(change.origin, Origin::Local);
//!
//! // The driver syncs now, after every local write, when other devices push, and every
//! // minute; its status is a `tokio::sync::watch` channel for the UI.
//! let driver = replica.start_sync(SyncOptions::new())?;
//! let mut status = driver.status();
//! let synced = tokio::time::timeout(
//!     Duration::from_secs(20),
//!     status.wait_for(|s| {
//!         s.stopped || (s.last_synced.is_some() && s.pending_edits + s.pending_batches == 0)
//!     }),
//! )
//! .await??
//! .clone();
//! assert!(synced.last_error.is_none(), "{:?}", synced.last_error);
//! assert!(!synced.stopped);
//! driver.stop().await;
//! # drop(replica);
//! # let _ = stop_server.send(());
//! # let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
//! # Ok(())
//! # }
//! ```
//!
//! A second device enrolls without `new_account` and stays pending until it is paired
//! with a trusted one: the trusted device runs [`Replica::begin_approval`], shows the
//! one-time [`Approval::code`] to the user and awaits [`Replica::finish_approval`], while
//! the new device awaits [`Replica::join`] with the code typed in (run both at once; the
//! server relays a SPAKE2 exchange it cannot take part in). [`Replica::pending_devices`]
//! lists the devices waiting. A device can also join with the recovery secret
//! ([`EnrollOptions::recovery`]). `crates/client/examples/inspection.rs` pairs two devices
//! and syncs them both with the driver:
//! `cargo run -p sealsync-client --example inspection`.
//!
//! # What a sync does
//!
//! [`Replica::sync`] speaks `docs/protocol.md` over HTTP/2 and mutual TLS 1.3, with the
//! server's CA pinned by the enrollment bundle. It extends the verified roster of the
//! account's devices (on a pending device it only completes a confirmed pairing),
//! exchanges collection descriptors, pushes the sealed batches of the outbox, and pulls,
//! verifies and applies the other devices' batches. The server sees blinded collection
//! ids, never their names, and never a key or a value in clear. Each sync returns a
//! [`SyncReport`] and leaves its outcome in [`Replica::status`]; [`Replica::progress`]
//! follows a running one. Refusals in one collection are listed in
//! [`SyncReport::errors`] while the rest of the sync goes on.
//!
//! Edits are stamped with a hybrid logical clock read from trusted time: the system clock,
//! pulled back if it runs ahead of the server's clock (learned at enrollment and at every
//! sync) by more than half the drift bound. Edits that a fast clock stamped too far ahead
//! for the server are re-stamped before they are sealed
//! ([`SyncReport::restamped_versions`]); their version ids change, nothing is lost.
//!
//! # Threading and handles
//!
//! [`Replica`] is `Clone + Send + Sync`; clones are cheap handles on the same replica, to
//! share between an app's UI and its background tasks.
//!
//! - **Reads and local writes** ([`Replica::get`], [`Replica::put`], [`Replica::delete`],
//!   [`Replica::list`], [`Replica::scan`], [`Replica::find`], ...) are synchronous. They
//!   wait at most for one local transaction (another handle's write, or one local step of
//!   a sync), never for the network. They may be called from async code, but they do
//!   blocking SQLite I/O, and a write ends with an fsync: in an async UI where a few
//!   milliseconds matter, call them through `tokio::task::spawn_blocking` (or your
//!   executor's equivalent). A [`Replica::transaction`] holds the local lock and SQLite's
//!   write lock while its closure runs: keep the closure short, and use only its
//!   [`Transaction`] inside (calling the `Replica` from inside it deadlocks).
//! - **Network operations** ([`Replica::sync`], [`Replica::begin_approval`],
//!   [`Replica::finish_approval`], [`Replica::join`], [`Replica::pending_devices`], the
//!   driver, and the change feed's poller) run on the replica's own threads, a small
//!   tokio runtime (two worker threads) started on first use and ended when the last
//!   handle is dropped. Their futures can be awaited from any executor, and the app's executor
//!   threads never run their SQLite transactions or their crypto.
//! - **Several handles and processes on one home** are fine: handles opened separately
//!   with [`Replica::open`], in this process or another (the `sealsync` CLI while the app
//!   runs), share the home through the database; every change is one transaction, and
//!   each handle re-reads what another may have changed. Their changes reach
//!   [`Replica::subscribe`] feeds too, within [`feed::POLL`]. One sync runs at a time per
//!   home: a second one waits for the first, up to [`SYNC_LOCK_WAIT`], then fails with
//!   [`SyncError::Busy`] having done nothing.
//!
//! # Cancellation
//!
//! Dropping the future of a network operation (say, [`Replica::sync`] inside a
//! `tokio::time::timeout`), or stopping the driver ([`SyncHandle::stop`], or dropping the
//! [`SyncHandle`]), cancels the operation at its next step and loses nothing: each step
//! of a sync is one local transaction, so a cancelled sync leaves what it had committed,
//! and the next sync goes on from there. What the library has acknowledged to the user is
//! durable: once [`Replica::put`] (or `delete`, `patch`, `resolve`, a `transaction`) has
//! returned `Ok`, the edit is on disk and will be pushed by a later sync. A write that
//! returns `Err` changed nothing, and a transaction whose closure returns `Err` (or
//! panics) writes nothing.
//!
//! # Errors
//!
//! Each kind of operation has its own error type, so that a `match` lists only what that
//! operation can meet: [`OpenError`] (`open`, `open_with`), [`EnrollError`] (`enroll`),
//! [`ReadError`] (reads, `subscribe`), [`WriteError`] (local writes and the operations of
//! a [`Transaction`]), [`SyncError`] (`sync`, `start_sync`, the driver's
//! [`SyncStatus::last_error`]) and [`PairingError`] (`begin_approval`, `finish_approval`,
//! `join`, `pending_devices`). Failures of the device's own storage are a [`LocalError`]
//! inside them, failures talking to the server a [`NetError`]; none holds a type of a
//! third-party crate, and an `Internal` variant is a defect to report.
//!
//! Every error type is `#[non_exhaustive]`: match the variants the app handles (say
//! [`OpenError::NotEnrolled`], [`PairingError::WrongCode`], [`ReadError::NoIndex`]) and
//! keep a fallback arm. [`SyncError::is_retryable`] (and [`NetError::is_retryable`],
//! [`LocalError::is_retryable`]) says whether the same operation may succeed later with
//! nobody changing anything: a network failure or timeout, a busy or failing server (HTTP
//! 5xx, 408, 429), another sync of the home still running, a busy local database. The
//! driver retries exactly those, with backoff ([`Backoff`]), and stops on the others,
//! saying why in [`SyncStatus::last_error`].
//!
//! Messages are short sentences for people, with no secrets in them, and they name no
//! command of the `sealsync` CLI (the CLI adds its own hints), so an app can show them
//! as they are.
//!
//! # Policies
//!
//! Each collection has a merge policy, fixed when it is created
//! ([`Replica::create_collection`]); [`Replica::put`] into a collection that does not exist
//! yet creates it with `lww`. If two devices create the same collection offline with
//! different policies, the first one synced wins, and the other device adopts it
//! ([`SyncReport::policy_changes`]). Every version is kept ([`Replica::history`] says why
//! each won or lost).
//!
//! - `lww` (last writer wins): the value is that of the version with the latest hybrid
//!   logical clock (ties broken by device id).
//! - `fields`: values must be JSON objects (anything else is refused with
//!   [`WriteError::InvalidInput`]), and a put is a patch: the top-level fields it names
//!   replace those fields whole (no deep merge), the record's other fields keep their
//!   values, and a field given as `null` is stored as `null`, not removed.
//!   [`Replica::patch`] does the same and says so (it refuses a collection with another
//!   policy); [`Replica::put_json`] of a serde type that serializes to an object does too.
//!   Each field is last writer wins on its own, so two devices that change different
//!   fields of one record offline both keep their change. [`Replica::get`] returns the
//!   merged object as compact JSON with its fields sorted by name ([`Replica::get_json`]
//!   deserializes it). A delete clears the whole record and a put after it starts a new
//!   one: to drop fields, delete and write again in one [`Replica::transaction`].
//! - `manual`: concurrent versions stay as siblings ([`Replica::conflicts`]) until a device
//!   writes their resolution ([`Replica::resolve`]); meanwhile `get` shows the version
//!   with the largest id.
//!
//! # Queries
//!
//! [`Replica::list`] returns a whole collection in key order; [`Replica::scan`] returns
//! the part that [`ScanOptions`] selects (a key prefix, a range, a limit, descending order;
//! [`ScanOptions::start_after`] pages on from the last key of a page), and decrypts only
//! the records it returns. Keys compare as UTF-8 bytes.
//!
//! [`Replica::create_index`] indexes a top-level JSON field of a collection's records
//! (idempotent; built at once from the live records, then kept up to date by every
//! change, local or pulled); [`Replica::find`] returns the live records whose field
//! equals a `serde_json::Value`, and fails with [`ReadError::NoIndex`] on a field with
//! no index. An index lives in this replica's database only (each device makes its own)
//! and holds keyed hashes of the field's values, never the values.
//!
//! # Transactions
//!
//! [`Replica::transaction`] runs a closure with a [`Transaction`]: its puts, deletes,
//! patches and resolutions, in any number of collections, commit together when the
//! closure returns `Ok`, and nothing is written when it returns `Err` or panics. Its reads
//! ([`Transaction::get`]) see its own writes. The closure's error type is the app's own
//! (anything that converts from [`WriteError`]), so `?` works on both. All or nothing
//! holds locally; on the wire a transaction travels as one batch per collection, so
//! another device may, for a while, see its part in one collection before its part in
//! another.
//!
//! # Passphrases and key stores
//!
//! The library reads no environment variable and prompts for nothing: everything comes
//! from [`OpenOptions`], given at enrollment ([`EnrollOptions::open`]) and at every
//! [`Replica::open_with`].
//!
//! - By default the device's secrets are sealed in `keystore.bin` under a random key kept
//!   in `keystore.key` (mode 0600) beside it, and [`Replica::open`] needs nothing else.
//! - With [`OpenOptions::passphrase`] at enrollment they are sealed under a key derived
//!   from the passphrase (Argon2id), and no key file is written; every open then needs
//!   the same passphrase ([`OpenError::PassphraseRequired`] without one,
//!   [`OpenError::WrongPassphrase`] with another).
//! - With [`OpenOptions::key_store`] the secrets live in the app's own [`KeyStore`] (an OS
//!   keyring, a hardware-backed store) instead; the same store must be given at every
//!   open.
//!
//! The home directory holds `replica.db` (the SQLite database, in WAL mode with
//! `synchronous=FULL`, beside its `-wal` and `-shm` files), the key store files
//! above, and `sync.lock` (the lock that keeps syncs of the home one at a time).
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
    /// The connection of the last sync that succeeded, and when it ended: the next sync
    /// within [`sync::KEEP_CONNECTION`] reuses it (same server, same mutual-TLS identity)
    /// instead of a new handshake.
    kept: Option<(net::Connection, std::time::Instant)>,
    /// This device's clock (ms) and the monotonic clock when the server's clock was last
    /// read: a sync over a kept connection reads it again if the device's clock jumped.
    clock_read: Option<(u64, std::time::Instant)>,
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
